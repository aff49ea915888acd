import type {
  OsFacts,
  PackageManager,
  PatchCategory,
  PendingPatch,
  PinnedPackage,
  Severity,
} from '../domain/index.js';
import { CommandFailedError, ParseError, ValidationError, type ValidationIssue } from '../errors.js';
import type { Command, ScriptCommand } from '../ports/adapter.js';
import {
  type CommandOutput,
  checkScannedPatches,
  type PackageManagerDriver,
  type ParsedScan,
  type ResolvedTransaction,
} from './driver.js';
import {
  compareEvr,
  type Evr,
  formatEvr,
  type InstalledRpm,
  inferKernelReboot,
  isKernelPackage,
  parseEvr,
  parseInstalledRpms,
  type RebootInference,
  RPM_QA_FORMAT,
  readSections,
  type Section,
  sectionExit,
  sectionNumber,
} from './rpm-reboot.js';

/** The C locale keeps dnf's and yum's messages in the English the parser reads. */
const RPM_ENV: Readonly<Record<string, string>> = Object.freeze({ LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' });

type RpmTool = 'dnf' | 'yum';

const MARKERS = [
  'rpm-scan',
  'check-update',
  'check-update-exit',
  'updateinfo-list',
  'updateinfo-list-exit',
  'updateinfo-info',
  'updateinfo-info-exit',
  'needs-restarting',
  'needs-restarting-exit',
  'installed',
  'installed-exit',
  'uname',
  'btime',
  'end',
] as const;
type Marker = (typeof MARKERS)[number];

/**
 * The scan script of one tool. It is constant text (the tool name is one of two literals): no
 * value is ever interpolated into it.
 *
 * Every tool runs with `-C`: from the metadata cache the last refresh (the `dnf-makecache` timer,
 * `yum makecache`, or {@link dnfRefreshCommand}) left, never downloading. That keeps a scan
 * read-only, offline and lock-free, and lets it run without root: as a normal user dnf and yum read
 * the system cache only when `-C` is given (without it they build a private cache per user and
 * download all metadata again).
 *
 * dnf's check-update runs without `-q`: quiet mode also hides the "Ignoring repositories" notice of
 * a repository skipped under `skip_if_unavailable`, which would turn a broken repository into a
 * silent "no updates". yum needs `-q` to drop its plugin chatter and does report skipped repositories.
 *
 * Each tool's stderr goes to the script's stderr after the same marker, so the parser can tell which
 * tool said what, and the two streams are never merged into one parse.
 *
 * Every run loads the metadata again, so `updateinfo list` runs only when check-update listed
 * updates (exit 100), and `updateinfo info` only when the list named advisories: a host with
 * nothing pending costs one check-update (plus needs-restarting) and gets the same result.
 */
function scanScript(tool: RpmTool): string {
  const checkUpdate =
    tool === 'dnf' ? 'dnf -C --color=never check-update' : 'yum -C -q --color=never check-update';
  const needsRestarting =
    tool === 'dnf'
      ? `out=$(dnf -C -q --color=never needs-restarting -r)
rc=$?`
      : `# yum-utils ships needs-restarting; without it the parser falls back to kernel installation times.
if command -v needs-restarting >/dev/null 2>&1; then
  out=$(needs-restarting -r)
  rc=$?
else
  out=''
  rc=127
fi`;
  return `# Fleetward ${tool} scan. Read-only: lists from the metadata cache, never refreshes or installs.
# sudo's env_reset may drop the command's environment; the parser needs the tools' English.
LC_ALL=C LANG=C LANGUAGE=C
export LC_ALL LANG LANGUAGE
echo '@@fleetward:rpm-scan 1 ${tool}'
echo '@@fleetward:check-update' >&2
out=$(${checkUpdate})
rc=$?
echo '@@fleetward:check-update'
printf '%s\\n' "$out"
echo "@@fleetward:check-update-exit $rc"
cu=$rc
echo '@@fleetward:updateinfo-list' >&2
out=''
rc=0
# Each run loads the metadata again. With nothing to update (0), or a check-update that failed and
# fails the scan, no advisory can classify anything.
if [ "$cu" -eq 100 ]; then
  out=$(${tool} -C -q --color=never updateinfo list updates)
  rc=$?
fi
listed=$out
listrc=$rc
echo '@@fleetward:updateinfo-list'
printf '%s\\n' "$out"
echo "@@fleetward:updateinfo-list-exit $rc"
echo '@@fleetward:updateinfo-info' >&2
out=''
rc=0
# info only adds the severities of the advisories the list named.
if [ "$listrc" -eq 0 ] && [ -n "$listed" ]; then
  out=$(${tool} -C -q --color=never updateinfo info updates)
  rc=$?
fi
echo '@@fleetward:updateinfo-info'
printf '%s\\n' "$out"
echo "@@fleetward:updateinfo-info-exit $rc"
echo '@@fleetward:needs-restarting' >&2
${needsRestarting}
echo '@@fleetward:needs-restarting'
printf '%s\\n' "$out"
echo "@@fleetward:needs-restarting-exit $rc"
echo '@@fleetward:installed' >&2
out=$(rpm -qa --qf '${RPM_QA_FORMAT}')
rc=$?
echo '@@fleetward:installed'
printf '%s\\n' "$out"
echo "@@fleetward:installed-exit $rc"
echo '@@fleetward:uname'
uname -r
echo '@@fleetward:btime'
awk '$1 == "btime" { print $2 }' /proc/stat
echo '@@fleetward:end'
`;
}

const SCRIPTS: Readonly<Record<RpmTool, string>> = Object.freeze({
  dnf: scanScript('dnf'),
  yum: scanScript('yum'),
});

/** One row of `check-update`: the update dnf or yum would install for one name and arch. */
export interface RpmUpdate {
  name: string;
  arch: string;
  evr: Evr;
  repo: string;
}

/** What `dnf check-update` / `yum -q check-update` printed, structured. */
export interface CheckUpdateList {
  updates: RpmUpdate[];
  /** From dnf's "Last metadata expiration check: … ago" line; `null` when it printed none. */
  metadataAgeSeconds: number | null;
}

const NAME_ARCH = /^(\S+)\.([A-Za-z0-9_]+)$/;
const METADATA_AGE = /^Last metadata expiration check: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d) ago/;

function splitNameArch(text: string): { name: string; arch: string } | null {
  const m = NAME_ARCH.exec(text);
  return m ? { name: m[1]!, arch: m[2]! } : null;
}

/**
 * Parses the stdout of `dnf check-update` or `yum -q check-update`.
 *
 * Everything up to the first blank line (the list's empty heading) is dnf's preamble: the metadata
 * age, and what plugins such as subscription-manager say. After it come rows
 * `name.arch [epoch:]version-release repo`, which yum wraps onto indented continuation lines when a
 * name is long. The "Obsoleting Packages" list that may
 * follow repeats packages already listed and is not read.
 * @throws ParseError on a line after the preamble that is not part of a row.
 */
export function parseCheckUpdate(text: string): CheckUpdateList {
  const lines = text.split('\n');
  // Both tools print the (empty) heading of the list before the first row, so output without a
  // blank line has no rows: dnf with nothing to update prints only its preamble.
  const blank = lines.findIndex((l) => l.trim() === '');
  const preamble = blank < 0 ? lines : lines.slice(0, blank);
  const body = blank < 0 ? [] : lines.slice(blank + 1);

  let metadataAgeSeconds: number | null = null;
  for (const line of preamble) {
    const m = METADATA_AGE.exec(line);
    if (m) {
      metadataAgeSeconds =
        Number(m[1] ?? 0) * 86_400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
      if (!Number.isSafeInteger(metadataAgeSeconds)) {
        throw new ParseError(`Out-of-range metadata age in check-update: ${line.slice(0, 200)}`);
      }
    }
  }

  const updates: RpmUpdate[] = [];
  let pending: string[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    const [nameArch, evrText, repo] = pending;
    const na = nameArch === undefined ? null : splitNameArch(nameArch);
    const evr = evrText === undefined ? null : parseEvr(evrText);
    if (pending.length !== 3 || !na || !evr || repo === undefined) {
      throw new ParseError(`Unrecognized check-update row: ${pending.join(' ').slice(0, 200)}`);
    }
    updates.push({ ...na, evr, repo });
    pending = [];
  };
  for (const line of body) {
    if (line.trim() === '') continue;
    if (/^Obsoleting Packages\s*$/.test(line)) break;
    // yum's security plugin notes installed security updates between the rows.
    if (/^Security: /.test(line)) continue;
    const tokens = line.trim().split(/\s+/);
    if (/^\S/.test(line)) {
      flush();
      pending = tokens;
    } else {
      if (pending.length === 0) throw new ParseError(`Unexpected check-update continuation line: ${line}`);
      pending.push(...tokens);
    }
    if (pending.length >= 3) flush();
  }
  flush();
  return { updates, metadataAgeSeconds };
}

/** The advisory type, as updateinfo names it (`unknown` when the label is not one dnf knows). */
export type AdvisoryType = 'security' | 'bugfix' | 'enhancement' | 'newpackage' | 'unknown';

/** One row of `updateinfo list`: an advisory and one package build it ships. */
export interface AdvisoryPackage {
  id: string;
  type: AdvisoryType;
  /** The severity in the label (`Critical/Sec.`); only security rows carry one. */
  severity: string | null;
  name: string;
  arch: string;
  evr: Evr;
}

const ADVISORY_TYPES = new Set<string>(['security', 'bugfix', 'enhancement', 'newpackage', 'unknown']);

/** Splits `name-[epoch:]version-release.arch`, the NEVRA form updateinfo prints. */
export function parseNevra(text: string): { name: string; arch: string; evr: Evr } | null {
  const m = /^(.+)-((?:\d+:)?[^\s:-]+-[^\s:-]+)\.([A-Za-z0-9_]+)$/.exec(text);
  if (!m) return null;
  const evr = parseEvr(m[2]!);
  return evr ? { name: m[1]!, arch: m[3]!, evr } : null;
}

/**
 * Parses `updateinfo list` (dnf 4 and yum 3 print the same rows): `ID LABEL NEVRA`, where the label
 * is `Severity/Sec.` for security advisories (`Unknown/Sec.` when they carry no severity; Amazon
 * Linux writes severities in lower case) and the type name for the others.
 * @throws ParseError on a row not of that shape.
 */
export function parseUpdateinfoList(text: string): AdvisoryPackage[] {
  const out: AdvisoryPackage[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || /^updateinfo list done$/.test(line.trim())) continue;
    const fields = line.trim().split(/\s+/);
    const nevra = fields.length === 3 ? parseNevra(fields[2]!) : null;
    if (!nevra) throw new ParseError(`Unrecognized updateinfo list row: ${line.slice(0, 200)}`);
    const label = fields[1]!;
    const sec = /^([A-Za-z]+)\/Sec\.$/.exec(label);
    let type: AdvisoryType;
    let severity: string | null = null;
    if (sec) {
      type = 'security';
      severity = sec[1]!;
    } else if (ADVISORY_TYPES.has(label.toLowerCase())) {
      type = label.toLowerCase() as AdvisoryType;
    } else {
      throw new ParseError(`Unrecognized advisory label "${label}" in updateinfo list row: ${line}`);
    }
    out.push({ id: fields[0]!, type, severity, ...nevra });
  }
  return out;
}

/** The fields of one advisory in `updateinfo info`. */
export interface AdvisoryInfo {
  id: string;
  type: string;
  severity: string;
}

/**
 * Parses `updateinfo info`: blocks headed by a title between two lines of `=`, then `Label: value`
 * lines with right-aligned labels (`Label : value` in yum). Continuation lines of a multi-line value
 * have an empty label, so a description can never pass for a field.
 * Only the id, type and severity are read; an advisory without a severity gets `''`.
 */
export function parseUpdateinfoInfo(text: string): Map<string, AdvisoryInfo> {
  const out = new Map<string, AdvisoryInfo>();
  let inTitle = false;
  let current: AdvisoryInfo | undefined;
  const done = () => {
    if (current && current.id !== '') out.set(current.id, current);
    current = undefined;
  };
  for (const line of text.split('\n')) {
    if (/^=+$/.test(line.trim()) && line.trim().length >= 10) {
      if (!inTitle) done();
      inTitle = !inTitle;
      continue;
    }
    if (inTitle) continue;
    // Split at the first colon rather than with `/^\s*([A-Za-z][A-Za-z ]*?)\s*:/`: the lazy label
    // before `\s*` backtracks quadratically on a long run of blanks without a colon.
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const label = line.slice(0, colon).trim();
    const rest = /^(?: (.*))?$/.exec(line.slice(colon + 1));
    if (!rest || !/^[A-Za-z][A-Za-z ]*$/.test(label)) continue;
    const value = (rest[1] ?? '').trim();
    if (label === 'Update ID') {
      done();
      current = { id: value, type: '', severity: '' };
    } else if (current && label === 'Type') {
      current.type = value;
    } else if (current && label === 'Severity') {
      current.severity = value;
    }
  }
  done();
  return out;
}

/** Maps a vendor severity word to the domain's; unknown words and `None` are `unspecified`. */
export function normalizeSeverity(text: string | null | undefined): Severity {
  switch ((text ?? '').trim().toLowerCase()) {
    case 'critical':
      return 'critical';
    case 'important':
    case 'high':
      return 'important';
    case 'moderate':
    case 'medium':
      return 'moderate';
    case 'low':
      return 'low';
    default:
      return 'unspecified';
  }
}

const SEVERITY_RANK: Record<Severity, number> = {
  critical: 4,
  important: 3,
  moderate: 2,
  low: 1,
  unspecified: 0,
};
const CATEGORY_RANK: Record<PatchCategory, number> = {
  security: 4,
  bugfix: 3,
  enhancement: 2,
  other: 1,
  unknown: 0,
};

/** The worst of some severities. */
export function mostSevere(severities: readonly Severity[]): Severity {
  return severities.reduce<Severity>((a, b) => (SEVERITY_RANK[b] > SEVERITY_RANK[a] ? b : a), 'unspecified');
}

/**
 * Classifies a package from the advisories that cover its update: the category is the highest of
 * security > bugfix > enhancement > other among them, and the severity the worst among the
 * advisories of that category (so several security advisories give the most severe one). With no
 * advisory at all the category is `unknown`: the source published no classification for this
 * update, which says nothing about whether it fixes a vulnerability.
 */
export function classify(advisories: readonly { category: PatchCategory; severity: Severity }[]): {
  category: PatchCategory;
  severity: Severity;
} {
  if (advisories.length === 0) return { category: 'unknown', severity: 'unspecified' };
  const category = advisories.reduce<PatchCategory>(
    (a, b) => (CATEGORY_RANK[b.category] > CATEGORY_RANK[a] ? b.category : a),
    'unknown',
  );
  const severity = mostSevere(advisories.filter((a) => a.category === category).map((a) => a.severity));
  return { category, severity };
}

/** updateinfo types to categories: `newpackage` and unrecognized types are classified, but as `other`. */
function advisoryCategory(type: AdvisoryType): PatchCategory {
  if (type === 'security' || type === 'bugfix' || type === 'enhancement') return type;
  return 'other';
}

/**
 * Reads `needs-restarting -r` (dnf-plugins-core, or yum-utils on EL7). It answers only when its
 * sentence agrees with its exit code: 1 with "Reboot is required", 0 with "should not be" (dnf) or
 * "is probably not" (yum) "necessary". Anything else (the plugin is not installed, it failed) is no
 * answer, and the caller falls back to kernel install times.
 */
export function parseNeedsRestarting(
  exitCode: number,
  lines: readonly string[],
): { rebootRequired: boolean; rebootPackages: string[] } | null {
  const text = lines.join('\n');
  if (exitCode === 1 && /^Reboot is required/m.test(text)) {
    const packages = new Set<string>();
    for (const line of lines) {
      // dnf lists `  * name`; yum lists `  name -> version`.
      const m = /^\s+\*\s+(\S+)\s*$/.exec(line) ?? /^\s+(\S+) -> \S+/.exec(line);
      if (m) packages.add(m[1]!);
    }
    return { rebootRequired: true, rebootPackages: [...packages].sort() };
  }
  if (exitCode === 0 && /^Reboot (?:should not be|is probably not) necessary/m.test(text)) {
    return { rebootRequired: false, rebootPackages: [] };
  }
  return null;
}

/** Metadata older than this earns a warning: the scan shows what the host knew then. */
const STALE_METADATA_SECONDS = 7 * 86_400;

function toolFailure(tool: RpmTool, what: string, status: number, errLines: readonly string[]) {
  const shown = errLines
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-5);
  const text = shown.join(' | ');
  let hint = '';
  if (/Cache-only enabled but no cache/i.test(text)) {
    hint = ` (the metadata cache is empty: refresh it as root with \`${tool} makecache\`)`;
  }
  return new CommandFailedError(`${tool} ${what} failed (exit ${status}): ${text || 'no message'}${hint}`, {
    retryable: /lock/i.test(text),
    details: { exitCode: status, stderr: shown },
  });
}

function newest<T extends Evr>(items: readonly T[]): T | undefined {
  return items.reduce<T | undefined>((a, b) => (a === undefined || compareEvr(b, a) > 0 ? b : a), undefined);
}

/**
 * Parses the output of a dnf or yum scan script.
 * @throws ParseError when the output was truncated, lacks the markers, or a tool's output is not in
 *   its known form.
 * @throws CommandFailedError when the script did not start, check-update failed (exit other than 0
 *   or 100: no cache, no enabled repositories, a broken repository) or rpm could not list packages.
 */
function parseRpmScan(tool: RpmTool, output: CommandOutput): ParsedScan {
  if (output.truncated) {
    throw new ParseError(`${tool} scan output was truncated; a partial package list is not reported`);
  }
  if (output.exitCode !== 0 && !output.stdout.includes('@@fleetward:rpm-scan')) {
    throw new CommandFailedError(
      `${tool} scan script did not start (exit ${output.exitCode ?? 'signal'}): ${output.stderr.trim().slice(0, 500)}`,
      { details: { exitCode: output.exitCode } },
    );
  }
  const { stdout, stderr } = readSections(output, MARKERS, tool);
  const body = (m: Marker): string[] => stdout.get(m)?.lines ?? [];
  const errs = (m: Marker): string[] => stderr.get(m) ?? [];
  const warnings: string[] = [];

  const checkStatus = sectionExit(stdout, 'check-update-exit', tool);
  if (checkStatus !== 0 && checkStatus !== 100) {
    throw toolFailure(tool, 'check-update', checkStatus, errs('check-update'));
  }
  const installedStatus = sectionExit(stdout, 'installed-exit', tool);
  if (installedStatus !== 0) {
    throw toolFailure(tool, 'rpm -qa (installed packages)', installedStatus, errs('installed'));
  }
  const list = parseCheckUpdate(body('check-update').join('\n'));
  // check-update's exit code is its own summary: 100 exactly when it lists updates.
  if ((checkStatus === 100) !== list.updates.length > 0) {
    throw new ParseError(
      `${tool} check-update exited ${checkStatus} but listed ${list.updates.length} updates`,
      { details: { excerpt: body('check-update').join('\n').slice(0, 500) } },
    );
  }
  for (const line of errs('check-update')) warnings.push(`${tool}: ${line.trim()}`);
  if (list.metadataAgeSeconds !== null && list.metadataAgeSeconds > STALE_METADATA_SECONDS) {
    const days = Math.floor(list.metadataAgeSeconds / 86_400);
    warnings.push(
      `${tool} metadata was last refreshed ${days} days ago: updates published since are not listed`,
    );
  }

  let advisories: AdvisoryPackage[] = [];
  const listStatus = sectionExit(stdout, 'updateinfo-list-exit', tool);
  if (listStatus === 0) {
    advisories = parseUpdateinfoList(body('updateinfo-list').join('\n'));
  } else {
    const why = errs('updateinfo-list').slice(-3).join(' | ') || 'no message';
    warnings.push(
      `${tool} updateinfo list failed (exit ${listStatus}: ${why}); updates are reported without advisories`,
    );
  }
  let info = new Map<string, AdvisoryInfo>();
  const infoStatus = sectionExit(stdout, 'updateinfo-info-exit', tool);
  if (infoStatus === 0) {
    info = parseUpdateinfoInfo(body('updateinfo-info').join('\n'));
  } else if (listStatus === 0 && advisories.length > 0) {
    warnings.push(
      `${tool} updateinfo info failed (exit ${infoStatus}); only security advisories carry a severity`,
    );
  }

  const installed = parseInstalledRpms(body('installed'));
  const byName = new Map<string, InstalledRpm[]>();
  for (const p of installed) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);

  const seen = new Set<string>();
  const patches: PendingPatch[] = [];
  for (const u of list.updates) {
    const key = `${u.name}.${u.arch}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const sameName = byName.get(u.name) ?? [];
    // Installonly packages (kernels) are installed in several versions: the newest is what updates.
    // A package that changes architecture (x86_64 to noarch) updates whatever arch is installed.
    const current = newest(sameName.filter((p) => p.arch === u.arch)) ?? newest(sameName);
    if (!current) warnings.push(`${tool} lists an update of ${key}, which rpm does not list as installed`);
    const covering = advisories.filter(
      (a) =>
        a.name === u.name &&
        a.arch === u.arch &&
        compareEvr(a.evr, u.evr) <= 0 &&
        (current === undefined || compareEvr(a.evr, current) > 0),
    );
    const classified = covering.map((a) => ({
      category: advisoryCategory(a.type),
      // info carries every advisory's severity; the list label only security ones.
      severity: normalizeSeverity(info.get(a.id)?.severity || a.severity),
    }));
    patches.push({
      name: u.name,
      arch: u.arch,
      installedVersion: current ? formatEvr(current) : null,
      candidateVersion: formatEvr(u.evr),
      origins: [{ origin: u.repo, archive: '' }],
      ...classify(classified),
      advisories: [...new Set(covering.map((a) => a.id))].sort(),
      held: false,
      keptBack: false,
      isNew: false,
    });
  }
  patches.sort((a, b) => (a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1));

  const reboot = rebootOf(tool, stdout, installed);
  warnings.push(...reboot.warnings);
  return {
    patches: checkScannedPatches(tool, patches),
    rebootRequired: reboot.rebootRequired,
    rebootPackages: reboot.rebootPackages,
    warnings: [...new Set(warnings)],
  };
}

function rebootOf(tool: RpmTool, stdout: Map<Marker, Section>, installed: InstalledRpm[]): RebootInference {
  const status = sectionExit(stdout, 'needs-restarting-exit', tool);
  const answer = parseNeedsRestarting(status, stdout.get('needs-restarting')?.lines ?? []);
  if (answer) return { ...answer, warnings: [] };
  const uname = (stdout.get('uname')?.lines ?? []).join('').trim();
  return inferKernelReboot(installed, sectionNumber(stdout.get('btime')), uname === '' ? null : uname, {
    compareRunning: true,
  });
}

// ---------------------------------------------------------------------------------------------
// Installing: exact pins, the simulated transaction, the install itself and the verification.
// ---------------------------------------------------------------------------------------------

/** RPM package names: no leading `-` (an option to every tool), no glob, group (`@`) or path (`/`). */
export const RPM_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/;
/** `[epoch:]version-release`, exactly one `-`: the form dnf, zypper and the scans print. */
export const RPM_VERSION = /^([0-9]+:)?[A-Za-z0-9._+~^]+-[A-Za-z0-9._+~^]+$/;
/** An architecture, or `''` when unknown. */
const RPM_ARCH = /^[A-Za-z0-9_]*$/;

/** A pin checked against the RPM grammar, its version split. */
export interface RpmPin {
  name: string;
  evr: Evr;
  /** `''` when the plan does not know it. */
  arch: string;
}

/**
 * Checks pinned packages before they become argv. argv cannot become shell syntax, but a value
 * starting with `-` would be read as an option, and a glob, `@group` or `/path` would make the
 * tool install something other than the pinned build.
 * @throws ValidationError naming each bad field (`0.name`, `1.version`, `2.arch`), or the empty list.
 */
export function rpmPins(packages: readonly PinnedPackage[]): RpmPin[] {
  const issues: ValidationIssue[] = [];
  if (packages.length === 0) issues.push({ path: [], message: 'no packages to install' });
  const pins: RpmPin[] = [];
  packages.forEach((p, i) => {
    const evr = RPM_VERSION.test(p.version) ? parseEvr(p.version) : null;
    if (!RPM_NAME.test(p.name)) {
      issues.push({ path: [i, 'name'], message: `not an RPM package name: ${JSON.stringify(p.name)}` });
    }
    if (!evr) {
      issues.push({
        path: [i, 'version'],
        message: `not an RPM [epoch:]version-release: ${JSON.stringify(p.version)}`,
      });
    }
    if (!RPM_ARCH.test(p.arch)) {
      issues.push({ path: [i, 'arch'], message: `not an RPM architecture: ${JSON.stringify(p.arch)}` });
    }
    if (evr) pins.push({ name: p.name, evr, arch: p.arch });
  });
  if (issues.length) throw new ValidationError('packages', issues);
  return pins;
}

/**
 * `E:V-R` with the epoch always written: `name-1.0-1` would also match a build `1:1.0-1` in rpm's
 * dependency semantics (a missing epoch matches any), `name-0:1.0-1` matches only epoch 0.
 */
export function explicitEvr(evr: Evr): string {
  return `${evr.epoch}:${evr.version}-${evr.release}`;
}

/**
 * The transaction options of every simulation and install, the same for both so that what was
 * simulated is what gets installed:
 * - `installonly_limit=0`: with the default of 3, installing a kernel erases the oldest one; a
 *   patch run never removes anything (as apt's `--no-remove`), so kernels are kept, and the old
 *   ones are the administrator's to clean (the executor's preflight checks free space on /boot);
 * - `clean_requirements_on_remove=False`: nothing is removed as "no longer needed";
 * - `exit_on_lock=True`: a held lock fails at once (exit 200, retryable) instead of waiting
 *   until the command times out;
 * - dnf only: `install_weak_deps=False` (a patch pulls in what is required, not what is recommended,
 *   as zypper's `--no-recommends`), and `strict=True` (a pinned build that cannot be installed is an
 *   error, never silently skipped, whatever the host's dnf.conf says). yum 3 knows neither and warns
 *   about unknown options.
 */
function transactionOptions(tool: RpmTool): string[] {
  const common = [
    '--setopt=installonly_limit=0',
    '--setopt=clean_requirements_on_remove=False',
    '--setopt=exit_on_lock=True',
  ];
  return tool === 'dnf' ? [...common, '--setopt=install_weak_deps=False', '--setopt=strict=True'] : common;
}

/**
 * The subcommand and arguments that select exactly the pinned builds. With every architecture known
 * it is `install-nevra name-E:V-R.arch` (dnf 4, and yum since EL7): each argument is read as a
 * NEVRA and nothing else, never as a provide or another name. Without an architecture it is
 * `install`: dnf reads `name-E:V-R` as a NEVR (and then as a provide, which a string with an epoch
 * never is); yum 3 has no arch-less form with an epoch, so it gets `name-V-R` when the epoch is 0
 * and refuses a non-zero epoch without an architecture.
 * @throws ValidationError as {@link rpmPins}, and for yum's epoch without architecture.
 */
function installArgs(tool: RpmTool, packages: readonly PinnedPackage[]): string[] {
  const pins = rpmPins(packages);
  if (pins.every((p) => p.arch !== '')) {
    return ['install-nevra', ...pins.map((p) => `${p.name}-${explicitEvr(p.evr)}.${p.arch}`)];
  }
  if (tool === 'yum') {
    const issues: ValidationIssue[] = pins.flatMap((p, i) =>
      p.arch === '' && p.evr.epoch !== 0
        ? [
            {
              path: [i, 'arch'],
              message: `yum cannot pin epoch ${p.evr.epoch} of ${p.name} without its arch`,
            },
          ]
        : [],
    );
    if (issues.length) throw new ValidationError('packages', issues);
  }
  return [
    'install',
    ...pins.map((p) => {
      const evr = tool === 'yum' && p.arch === '' ? formatEvr(p.evr) : explicitEvr(p.evr);
      return `${p.name}-${evr}${p.arch ? `.${p.arch}` : ''}`;
    }),
  ];
}

/** What a section of a dnf or yum transaction table does to its packages. */
type RowKind = 'new' | 'upgrade' | 'downgrade' | 'reinstall' | 'remove' | 'skip' | 'note';

/** Section headings of dnf 4 and yum 3 transaction tables. */
const TRANSACTION_SECTIONS: Readonly<Record<string, RowKind>> = {
  Installing: 'new',
  'Installing dependencies': 'new',
  'Installing weak dependencies': 'new',
  'Installing group/module packages': 'new',
  'Installing group packages': 'new',
  'Installing for dependencies': 'new',
  Upgrading: 'upgrade',
  Updating: 'upgrade',
  'Updating for dependencies': 'upgrade',
  Downgrading: 'downgrade',
  Reinstalling: 'reinstall',
  Removing: 'remove',
  'Removing dependent packages': 'remove',
  'Removing unused dependencies': 'remove',
  'Removing for dependencies': 'remove',
  'Skipping packages with conflicts': 'skip',
  'Skipping packages with broken dependencies': 'skip',
  'Skipping packages with broken dependencies or part of a group': 'skip',
  'Skipped (dependency problems)': 'skip',
  'Not installed': 'skip',
  'Not available': 'skip',
  'Installing module profiles': 'note',
  'Disabling module profiles': 'note',
  'Enabling module streams': 'note',
  'Switching module streams': 'note',
  'Disabling modules': 'note',
  'Resetting modules': 'note',
  'Installing Environment Groups': 'note',
  'Upgrading Environment Groups': 'note',
  'Removing Environment Groups': 'note',
  'Installing Groups': 'note',
  'Upgrading Groups': 'note',
  'Removing Groups': 'note',
};

/** The summary words and the sections each one counts. */
const SUMMARY_KINDS: Readonly<Record<string, RowKind>> = {
  Install: 'new',
  Upgrade: 'upgrade',
  Update: 'upgrade',
  Downgrade: 'downgrade',
  Reinstall: 'reinstall',
  Remove: 'remove',
  Erase: 'remove',
  Skip: 'skip',
};

/** One package row of a transaction table. */
export interface RpmTransactionRow {
  kind: Exclude<RowKind, 'note'>;
  /** The section heading, e.g. `Installing dependencies`. */
  section: string;
  name: string;
  arch: string;
  evr: Evr;
  repo: string;
  /** `name.arch` of the installed packages it obsoletes (the `replacing` lines): they are erased. */
  replacing: { name: string; arch: string; evr: Evr }[];
}

/** A dnf or yum transaction table, structured. */
export interface RpmTransaction {
  rows: RpmTransactionRow[];
  /** Rows of module and group sections, `Section: text`, which install no package by themselves. */
  notes: string[];
  /** The counts of the "Transaction Summary", by action word (`Install`, `Upgrade`…). */
  summary: Map<string, number>;
}

const SUMMARY_LINE = /^(\w+)\s+(?:(\d+) Packages?)?\s*(?:\(\s*\+?\s*(\d+) Dependent packages?\s*\))?\s*$/;
const REPLACING = /^\s+replacing\s+(\S+)\.([A-Za-z0-9_]+)\s+(\S+)\s*$/;

/**
 * Parses the transaction table dnf 4 and yum 3 print before their prompt: a heading between two
 * lines of `=` (which may wrap), sections (`Upgrading:`, `Installing dependencies:`…) of rows
 * ` name arch [epoch:]version-release repo size`, where a value wider than its column pushes the
 * rest of the row onto an indented continuation line, and `replacing name.arch evr` lines under a
 * package that obsoletes an installed one. Then `Transaction Summary` and its counts.
 *
 * The counts are checked against the rows (the check vuls makes on apt's summary): a table whose
 * rows do not add up was cut or misread, and the transaction it describes is not trusted.
 * @returns `null` when the text holds no table (dnf had nothing to do, or failed before resolving).
 * @throws ParseError on an unknown section, a row that is not `name arch evr repo`, a table without
 *   its summary, or counts that disagree with the rows.
 */
export function parseRpmTransaction(text: string): RpmTransaction | null {
  const lines = text.split('\n');
  const rule = (l: string | undefined) => l !== undefined && /^=+\s*$/.test(l) && l.trim().length >= 10;
  const open = lines.findIndex(rule);
  if (open < 0) return null;
  const close = lines.findIndex((l, i) => i > open && rule(l));
  const heading = lines.slice(open + 1, close < 0 ? open + 1 : close).join(' ');
  if (close < 0 || !/\bPackage\b/.test(heading) || !/\bVersion\b/.test(heading)) {
    throw new ParseError('transaction table has no "Package … Version" heading', {
      details: { excerpt: lines.slice(open, open + 5).join('\n') },
    });
  }
  const rows: RpmTransactionRow[] = [];
  const notes: string[] = [];
  let section = '';
  let kind: RowKind | undefined;
  let tokens: string[] = [];
  let current: RpmTransactionRow | undefined;
  /** Ends the pending row; returns it when it is a package row. */
  const flush = (): RpmTransactionRow | undefined => {
    if (tokens.length === 0) return undefined;
    const row = tokens;
    tokens = [];
    if (kind === undefined) throw new ParseError(`transaction row outside a section: ${row.join(' ')}`);
    if (kind === 'note') {
      notes.push(`${section}: ${row.join(' ')}`);
      return undefined;
    }
    const [name, arch, evrText, repo] = row;
    const evr = evrText === undefined ? null : parseEvr(evrText);
    if (name === undefined || arch === undefined || !/^[A-Za-z0-9_]+$/.test(arch) || !evr) {
      throw new ParseError(`Unrecognized transaction row in "${section}": ${row.join(' ').slice(0, 200)}`);
    }
    const parsed: RpmTransactionRow = { kind, section, name, arch, evr, repo: repo ?? '', replacing: [] };
    rows.push(parsed);
    return parsed;
  };
  let i = close + 1;
  for (; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === 'Transaction Summary') break;
    if (line.trim() === '') continue;
    const replacing = REPLACING.exec(line);
    if (replacing) {
      current = flush() ?? current;
      const evr = parseEvr(replacing[3]!);
      if (!current || !evr) throw new ParseError(`Unrecognized transaction line: ${line.slice(0, 200)}`);
      current.replacing.push({ name: replacing[1]!, arch: replacing[2]!, evr });
      continue;
    }
    if (/^\S.*:$/.test(line)) {
      flush();
      current = undefined;
      // dnf's "Skipping packages with conflicts:" heading goes on with "(add '--best' … upgrade):".
      if (line.startsWith('(') && kind === 'skip') continue;
      section = line.slice(0, -1);
      // Own keys only: a heading such as "constructor" must not find Object.prototype's.
      kind = Object.hasOwn(TRANSACTION_SECTIONS, section) ? TRANSACTION_SECTIONS[section] : undefined;
      if (kind === undefined) throw new ParseError(`Unknown transaction section "${section}"`);
      continue;
    }
    if (/^ \S/.test(line)) {
      current = flush() ?? current;
      tokens = line.trim().split(/\s+/);
    } else if (/^\s{2,}\S/.test(line) && tokens.length > 0) {
      tokens.push(...line.trim().split(/\s+/));
    } else {
      throw new ParseError(`Unrecognized transaction line: ${line.slice(0, 200)}`);
    }
  }
  flush();
  if (i >= lines.length) {
    throw new ParseError('transaction table has no "Transaction Summary": the output was cut');
  }
  const summary = new Map<string, number>();
  for (let j = i + 1; j < lines.length; j++) {
    const line = lines[j]!;
    if (rule(line)) continue;
    if (line.trim() === '') break;
    const m = SUMMARY_LINE.exec(line.trim());
    if (m && Object.hasOwn(SUMMARY_KINDS, m[1]!)) {
      summary.set(m[1]!, Number(m[2] ?? 0) + Number(m[3] ?? 0));
    }
  }
  for (const k of new Set(Object.values(SUMMARY_KINDS))) {
    const words = Object.keys(SUMMARY_KINDS).filter((w) => SUMMARY_KINDS[w] === k);
    const said = words.reduce<number | undefined>(
      (sum, w) => (summary.has(w) ? (sum ?? 0) + summary.get(w)! : sum),
      undefined,
    );
    const listed = rows.filter((r) => r.kind === k).length;
    // yum 3 does not summarize the rows it skips, and dnf 4 has no "Reinstall" line: a missing
    // line is no disagreement for those two.
    if ((said ?? 0) !== listed && !(said === undefined && (k === 'skip' || k === 'reinstall'))) {
      throw new ParseError(
        `transaction summary (${words[0]} ${said ?? 0}) disagrees with the table (${listed} rows)`,
        { details: { excerpt: lines.slice(open, open + 40).join('\n') } },
      );
    }
  }
  return { rows, notes, summary };
}

/** A held lock: dnf with exit_on_lock, dnf waiting (the command timed out), yum 3. */
const RPM_LOCK =
  /already locked by|Waiting for process with pid|another copy is running|holding the yum lock/i;

/**
 * The failure of a dnf or yum simulation or install, with the tool's own error lines: the
 * `Error:` block on stderr (with its `Problem:` lines) and the unmatched arguments dnf reports on
 * stdout. Retryable when another dnf, yum or PackageKit holds the lock.
 */
function transactionFailure(tool: RpmTool, what: string, output: CommandOutput): CommandFailedError {
  const stderr = output.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => !['', 'Error:', 'Operation aborted.', 'Exiting on user command'].includes(l));
  const stdout = output.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(?:Error|No match for argument|Problem|Existing lock|Waiting for process)/.test(l));
  const shown = [...stdout, ...stderr].slice(0, 12);
  const text = shown.join(' | ').slice(0, 1500);
  const all = `${output.stdout}\n${output.stderr}`;
  let hint = '';
  if (/Cache-only enabled but no cache/i.test(all)) {
    hint = ` (the metadata cache is empty: refresh it as root with \`${tool} makecache\`)`;
  }
  return new CommandFailedError(
    `${tool} ${what} failed (exit ${output.exitCode ?? 'signal'}): ${text || 'no message'}${hint}`,
    { retryable: RPM_LOCK.test(all), details: { exitCode: output.exitCode, errors: shown } },
  );
}

/** `warning:` lines of rpm (a `.rpmnew` file, a scriptlet) and dnf's `Warning:` lines. */
function rpmWarnings(output: CommandOutput): string[] {
  return `${output.stdout}\n${output.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^warning:|scriptlet failed|Error in \S+ scriptlet/i.test(l));
}

/** The removals of a transaction: its removed rows, and what its packages obsolete. */
function removalsOf(tx: RpmTransaction): string[] {
  const removed = tx.rows.filter((r) => r.kind === 'remove').map((r) => r.name);
  // A package that obsoletes an older build of its own name replaces it; that is its upgrade.
  const obsoleted = tx.rows.flatMap((r) => r.replacing.filter((o) => o.name !== r.name).map((o) => o.name));
  return [...new Set([...removed, ...obsoleted])];
}

/**
 * Reads the transaction of `--assumeno`. dnf answers its own prompt "no", says "Operation aborted."
 * and exits 1; yum 3 says "Exiting on user command" and exits 1 too. So exit 1 is the normal outcome
 * only with both a complete transaction table and that message: anything else with exit 1 (a
 * package not found, a dependency problem, a held lock) is a failure. Exit 0 is "Nothing to do"
 * (every pin already installed); exit 0 after a table would mean the tool did not stop at its
 * prompt, which a simulation must never let pass.
 */
function parseSimulation(tool: RpmTool, output: CommandOutput): ResolvedTransaction {
  if (output.truncated) throw new ParseError(`${tool} install simulation output was truncated`);
  const aborted = /^(?:Operation aborted\.|Exiting on user command)$/m.test(
    `${output.stdout}\n${output.stderr}`,
  );
  if (output.exitCode !== 0 && !(output.exitCode === 1 && aborted)) {
    throw transactionFailure(tool, 'install simulation', output);
  }
  const tx = parseRpmTransaction(output.stdout);
  if (output.exitCode === 0) {
    if (tx && tx.rows.length > 0) {
      throw new ParseError(`${tool} exited 0 after printing a transaction: it did not stop at --assumeno`);
    }
    return { install: [], remove: [], warnings: rpmWarnings(output) };
  }
  if (!tx) throw transactionFailure(tool, 'install simulation', output);

  const warnings = rpmWarnings(output);
  const install: ResolvedTransaction['install'] = [];
  for (const r of tx.rows) {
    if (r.kind === 'remove') continue;
    if (r.kind === 'skip') {
      warnings.push(`${tool} would skip ${r.name}-${formatEvr(r.evr)}.${r.arch} (${r.section})`);
      continue;
    }
    if (r.kind === 'downgrade') warnings.push(`${tool} would downgrade ${r.name} to ${formatEvr(r.evr)}`);
    if (r.kind === 'reinstall') warnings.push(`${tool} would reinstall ${r.name} ${formatEvr(r.evr)}`);
    install.push({ name: r.name, version: formatEvr(r.evr), arch: r.arch, isNew: r.kind === 'new' });
  }
  for (const n of tx.notes) warnings.push(`${tool} would also change: ${n}`);
  return { install, remove: removalsOf(tx), warnings: [...new Set(warnings)] };
}

/**
 * Checks an install's output: exit 0 is success (dnf and yum exit 1 on any failure, 200 on a held
 * lock). A successful install's table is read once more for what it did beyond the pins, as
 * warnings: removals (which the simulation should have caught), downgrades, rpm's warnings. It never
 * turns a finished install into a failure: the executor verifies the installed versions next.
 */
function parseInstallOutput(tool: RpmTool, output: CommandOutput) {
  if (output.exitCode !== 0) throw transactionFailure(tool, 'install', output);
  const warnings = rpmWarnings(output);
  let rebootRequired = false;
  try {
    const tx = parseRpmTransaction(output.stdout);
    for (const name of tx ? removalsOf(tx) : []) warnings.push(`${tool} removed ${name}`);
    for (const r of tx?.rows ?? []) {
      if (r.kind === 'downgrade') warnings.push(`${tool} downgraded ${r.name} to ${formatEvr(r.evr)}`);
    }
    // A new kernel runs only after a reboot; other restarts are for needs-restarting to tell.
    rebootRequired = (tx?.rows ?? []).some(
      (r) => (r.kind === 'new' || r.kind === 'upgrade') && isKernelPackage(r.name),
    );
  } catch (error) {
    warnings.push(`${tool} install output was not understood: ${(error as Error).message}`);
  }
  if (output.truncated) warnings.push(`${tool} install output was truncated`);
  return { rebootRequired, warnings: [...new Set(warnings)] };
}

/** The `rpm -q` format of {@link rpmInstalledVersionsCommand}; rpm expands the `\t` and `\n`. */
const RPM_Q_FORMAT = '%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n';

/**
 * `rpm -q` of the names, one tab-separated line per installed build. It reads the rpmdb, which every
 * user may read, so it runs without sudo; `--` keeps a name from ever being an option.
 * @throws ValidationError for a name outside the RPM grammar, or no name at all.
 */
export function rpmInstalledVersionsCommand(names: readonly string[]): Command {
  const issues: ValidationIssue[] = names.flatMap((n, i) =>
    RPM_NAME.test(n) ? [] : [{ path: [i], message: `not an RPM package name: ${JSON.stringify(n)}` }],
  );
  if (names.length === 0) issues.push({ path: [], message: 'no package names' });
  if (issues.length) throw new ValidationError('names', issues);
  return { argv: ['rpm', '-q', '--qf', RPM_Q_FORMAT, '--', ...names], env: { ...RPM_ENV } };
}

/**
 * Parses {@link rpmInstalledVersionsCommand}: name to `[epoch:]version-release`, in the form of the
 * scans' candidate versions. rpm exits with the number of names that are not installed and says
 * `package NAME is not installed` for each: their absence is the answer. A name installed more than
 * once (kernels, or two architectures) maps to its newest build, which is the one an install of a
 * newer build puts there.
 * @throws CommandFailedError when rpm failed otherwise (an `error:` line, no exit status, a non-zero
 *   exit without any "not installed" line).
 * @throws ParseError on a line in neither form.
 */
export function parseRpmInstalledVersions(output: CommandOutput): Map<string, string> {
  const errors = output.stderr.split('\n').filter((l) => /^error:/.test(l.trim()));
  const absent = output.stdout.split('\n').filter((l) => /^package \S+ is not installed$/.test(l.trim()));
  if (output.exitCode === null || errors.length > 0 || (output.exitCode !== 0 && absent.length === 0)) {
    const shown = errors.length ? errors : output.stderr.split('\n').filter((l) => l.trim() !== '');
    throw new CommandFailedError(
      `rpm -q failed (exit ${output.exitCode ?? 'signal'}): ${shown.slice(0, 5).join(' | ') || 'no message'}`,
      { details: { exitCode: output.exitCode } },
    );
  }
  const newestByName = new Map<string, Evr>();
  for (const line of output.stdout.split('\n')) {
    if (line.trim() === '' || /^package \S+ is not installed$/.test(line.trim())) continue;
    const m = /^([^\t\s]+)\t(\d+)\t([^\t\s]+)\t([^\t\s]+)\t([^\t\s]+)$/.exec(line);
    if (!m) throw new ParseError(`Unrecognized rpm -q line: ${line.slice(0, 200)}`);
    const evr: Evr = { epoch: Number(m[2]), version: m[3]!, release: m[4]! };
    if (!Number.isSafeInteger(evr.epoch))
      throw new ParseError(`Out-of-range epoch in rpm -q line: ${line.slice(0, 200)}`);
    const seen = newestByName.get(m[1]!);
    if (!seen || compareEvr(evr, seen) > 0) newestByName.set(m[1]!, evr);
  }
  return new Map([...newestByName].map(([name, evr]) => [name, formatEvr(evr)]));
}

function makeDriver(tool: RpmTool): PackageManagerDriver {
  const manager: PackageManager = tool;
  return {
    manager,
    supports(os: OsFacts): boolean {
      return os.packageManager === manager;
    },
    scanCommand(): ScriptCommand {
      return { interpreter: ['sh', '-s'], sudo: false, env: { ...RPM_ENV }, script: SCRIPTS[tool] };
    },
    parseScan(output: CommandOutput): ParsedScan {
      return parseRpmScan(tool, output);
    },
    // As root: dnf and yum refuse `install` to a normal user even with --assumeno ("This command
    // has to be run with superuser privileges"). From the metadata cache (`-C`) like the scan, so
    // it never downloads; the transaction table is printed at log level info, so no `-q`.
    simulateInstallCommand(packages: readonly PinnedPackage[]): Command {
      return {
        argv: [
          tool,
          '-C',
          '--color=never',
          '--assumeno',
          ...transactionOptions(tool),
          ...installArgs(tool, packages),
        ],
        sudo: true,
        env: { ...RPM_ENV },
      };
    },
    parseSimulateInstall(output: CommandOutput): ResolvedTransaction {
      return parseSimulation(tool, output);
    },
    // Not `-C`: a cache-only run cannot download the packages. `metadata_expire=-1` instead keeps
    // the metadata the simulation read (no refresh between plan and install); the pins are exact
    // either way, so a refresh could only make a pinned build unavailable, never change it.
    installCommand(packages: readonly PinnedPackage[]): Command {
      return {
        argv: [
          tool,
          '-y',
          '--color=never',
          '--setopt=metadata_expire=-1',
          ...transactionOptions(tool),
          ...installArgs(tool, packages),
        ],
        sudo: true,
        env: { ...RPM_ENV },
      };
    },
    parseInstall(output: CommandOutput) {
      return parseInstallOutput(tool, output);
    },
    installedVersionsCommand: rpmInstalledVersionsCommand,
    parseInstalledVersions: parseRpmInstalledVersions,
  };
}

/**
 * The dnf driver (RHEL, Rocky, Alma, Oracle Linux 8+, Fedora, Amazon Linux 2023).
 *
 * Pending updates are `dnf check-update`'s (exit 100 means "updates listed", not failure), with the
 * installed versions from `rpm -qa`. Advisories come from `updateinfo list updates` (type, and the
 * severity of security ones) and `updateinfo info updates` (the severity of every advisory); an
 * advisory covers an update when it ships a build of the same name and arch newer than the installed
 * one and not newer than the candidate. A package covered by several advisories lists all their ids
 * and takes the highest category and, within it, the worst severity. An update no advisory covers
 * (a repository without updateinfo, as on CentOS or third-party repositories) is `unknown` /
 * `unspecified`. A pending reboot comes from `dnf needs-restarting -r`, or, where that plugin is
 * missing, from kernel packages installed after boot.
 *
 * The scan reads the metadata cache (`-C`) and runs without sudo; see {@link dnfRefreshCommand}.
 *
 * Installs pin exact builds (`install-nevra name-E:V-R.arch`). The simulation is the same command
 * with `--assumeno`, from the cache, as root (dnf refuses `install` to a normal user even then),
 * read from dnf's transaction table. dnf has no `--no-remove`: without `--allowerasing` it never
 * erases for a conflict, `installonly_limit=0` stops it erasing old kernels, and the one removal
 * left, a package obsoleting an installed one, shows in the simulation, which the plan refuses and
 * the executor repeats right before installing (the drift check). Installed versions come from
 * `rpm -q`, the newest build of each name.
 */
export const dnfDriver: PackageManagerDriver = makeDriver('dnf');

/**
 * The yum driver (EL7 and older, Amazon Linux 2): the same scan and parser as {@link dnfDriver} with
 * yum's commands (`yum -C -q check-update`, `yum updateinfo list updates`) and yum-utils'
 * `needs-restarting -r` when it is installed.
 */
export const yumDriver: PackageManagerDriver = makeDriver('yum');

/** `dnf -q makecache`: refreshes the metadata cache a scan reads. Needs root and the network. */
export function dnfRefreshCommand(): Command {
  return { argv: ['dnf', '-q', 'makecache'], sudo: true, env: { ...RPM_ENV } };
}

/** `yum -q makecache fast`: refreshes the metadata cache a yum scan reads. Needs root and the network. */
export function yumRefreshCommand(): Command {
  return { argv: ['yum', '-q', 'makecache', 'fast'], sudo: true, env: { ...RPM_ENV } };
}
