/**
 * `updateinfo.xml` in the shape Red Hat and SUSE repositories ship it, which is the shape both
 * dnf (libdnf) and zypper (libzypp) parse.
 */
import { type ResolvedAdvisory, resolveAdvisory } from './spec.js';
import type { AdvisorySpec } from './types.js';

/** Escapes text for XML element content and double- or single-quoted attributes. */
export function xmlEscape(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&apos;');
}

function attrs(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => ` ${k}="${xmlEscape(v)}"`)
    .join('');
}

function renderOne(a: ResolvedAdvisory): string {
  const out = [
    `  <update${attrs({ from: 'lab@fleetward', status: 'final', type: a.type, version: '2.0' })}>`,
  ];
  out.push(`    <id>${xmlEscape(a.id)}</id>`);
  out.push(`    <title>${xmlEscape(a.title)}</title>`);
  if (a.severity !== undefined) out.push(`    <severity>${xmlEscape(a.severity)}</severity>`);
  out.push(`    <issued${attrs({ date: a.issued })}/>`);
  if (a.updated !== undefined) out.push(`    <updated${attrs({ date: a.updated })}/>`);
  if (a.cves.length === 0) {
    out.push('    <references/>');
  } else {
    out.push('    <references>');
    for (const cve of a.cves) {
      const href = `https://www.cve.org/CVERecord?id=${cve}`;
      out.push(`      <reference${attrs({ href, id: cve, type: 'cve', title: cve })}/>`);
    }
    out.push('    </references>');
  }
  out.push(`    <description>${xmlEscape(a.description)}</description>`);
  out.push('    <pkglist>', '      <collection short="lab">', '        <name>lab</name>');
  for (const p of a.packages) {
    const src = `${p.name}-${p.version}-${p.release}.src.rpm`;
    const pkg = { name: p.name, version: p.version, release: p.release, epoch: '0', arch: p.arch, src };
    out.push(`        <package${attrs(pkg)}>`);
    out.push(
      `          <filename>${xmlEscape(`${p.name}-${p.version}-${p.release}.${p.arch}.rpm`)}</filename>`,
    );
    if (a.rebootSuggested) out.push('          <reboot_suggested>True</reboot_suggested>');
    out.push('        </package>');
  }
  out.push('        </collection>', '      </pkglist>', '  </update>');
  return out.join('\n');
}

/**
 * Renders advisories as an `updateinfo.xml` document (`<updates><update type=…>…`): fixed
 * `from="lab@fleetward" status="final" version="2.0"`, `<severity>` only when given,
 * `<reference type="cve">` per CVE, one `<collection short="lab">` with every package (epoch 0,
 * `src` named like rpmbuild names it), and every text XML-escaped.
 *
 * @throws Error naming the field when an advisory spec is invalid.
 */
export function renderUpdateinfo(advisories: readonly AdvisorySpec[]): string {
  return renderResolvedUpdateinfo(advisories.map(resolveAdvisory));
}

/** {@link renderUpdateinfo} for advisories already validated by `resolveAdvisory`. */
export function renderResolvedUpdateinfo(advisories: readonly ResolvedAdvisory[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<updates>',
    ...advisories.map(renderOne),
    '</updates>',
    '',
  ].join('\n');
}
