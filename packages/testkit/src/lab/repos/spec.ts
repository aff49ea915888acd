/**
 * Grammar checks and file names shared by the apt and RPM builders. Every value that ends up
 * in a control file, a spec file or a file name passes through here first, so a bad spec fails
 * with a message naming the field instead of as a cryptic dpkg-deb/rpmbuild error (or worse, as
 * an injected control field or spec directive).
 */
import type { AdvisorySeverity, AdvisorySpec, AdvisoryType, LabPackageSpec } from './types.js';

/** The maintainer every lab package names; `.invalid` so nothing ever mails it. */
export const LAB_MAINTAINER = 'Fleetward Lab <lab@fleetward.invalid>';

/**
 * Timestamp (2026-01-01) stamped into every lab package. dpkg-deb and rpmbuild honour
 * SOURCE_DATE_EPOCH, so rebuilding an unchanged spec gives byte-identical files and a
 * republished repository does not change the checksums of packages a client already knows.
 */
export const LAB_SOURCE_DATE_EPOCH = '1767225600';

/**
 * Lab package names: Debian policy's grammar (lower case, at least two characters), which is
 * also a valid RPM name, so one spec can be built for both families.
 */
export const LAB_PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/**
 * Upstream versions: must start with a digit (dpkg insists) and may not contain `-` (RPM
 * forbids it in Version) or `:` (no epochs in the lab).
 */
export const LAB_VERSION = /^[0-9][A-Za-z0-9.+~]*$/;

/** Debian revisions / RPM releases: the characters both grammars accept. */
export const LAB_RELEASE = /^[A-Za-z0-9.+~]+$/;

/** Debian architecture names (`all`, `amd64`, `arm64`); `_` would break `.deb` file names. */
export const DEB_ARCH = /^[a-z0-9][a-z0-9-]*$/;

/** RPM architecture names (`noarch`, `x86_64`, `aarch64`). */
export const RPM_ARCH = /^[A-Za-z0-9_]+$/;

/** apt suite / codename: one path segment of `dists/`. */
export const APT_SUITE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** Advisory ids as real vendors spell them (`RHSA-2026:0001`, `SUSE-SU-2026:0001-1`). */
export const ADVISORY_ID = /^[A-Za-z0-9][A-Za-z0-9:._-]*$/;

const ISO_DATE = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?Z?)?$/;
const CVE_ID = /^CVE-\d{4}-\d{4,}$/;
// Tabs and newlines are not rejected here: callers that need one line check for them.
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const LINE_BREAKING = /[\u0000-\u001f\u007f]/;

const ADVISORY_TYPES: readonly AdvisoryType[] = ['security', 'bugfix', 'enhancement'];
const ADVISORY_SEVERITIES: readonly AdvisorySeverity[] = ['Critical', 'Important', 'Moderate', 'Low'];

// The same spec may be built for both families, so common architecture names translate.
const DEB_TO_RPM_ARCH: Readonly<Record<string, string>> = {
  all: 'noarch',
  amd64: 'x86_64',
  arm64: 'aarch64',
  i386: 'i686',
  ppc64el: 'ppc64le',
};
const RPM_TO_DEB_ARCH: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(DEB_TO_RPM_ARCH).map(([deb, rpm]) => [rpm, deb]),
);

/** A spec with every default applied, for one package family. */
export interface ResolvedPackage {
  name: string;
  version: string;
  release: string;
  arch: string;
  summary: string;
  depends: string[];
  replaces: string[];
}

function fail(where: string, field: string, value: unknown, why: string): never {
  throw new Error(`${where}: invalid ${field} ${JSON.stringify(value)}: ${why}`);
}

function checkString(where: string, field: string, value: unknown, re: RegExp, why: string): string {
  if (typeof value !== 'string' || !re.test(value)) fail(where, field, value, why);
  return value;
}

/** Checks free text that lands on a single line of a control file, Release file or spec file. */
export function checkOneLine(where: string, field: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') fail(where, field, value, 'must be non-empty text');
  if (LINE_BREAKING.test(value)) fail(where, field, value, 'must be one line without control characters');
  return value.trim();
}

function whereOf(spec: Partial<LabPackageSpec>): string {
  return `package ${typeof spec?.name === 'string' ? JSON.stringify(spec.name) : '(unnamed)'}`;
}

function resolve(spec: LabPackageSpec, family: 'deb' | 'rpm'): ResolvedPackage {
  if (typeof spec !== 'object' || spec === null) throw new Error('package spec must be an object');
  const where = whereOf(spec);
  const name = checkString(
    where,
    'name',
    spec.name,
    LAB_PACKAGE_NAME,
    'use lower-case letters, digits, "+", "-", "." (at least 2 characters, starting alphanumeric)',
  );
  const version = checkString(
    where,
    'version',
    spec.version,
    LAB_VERSION,
    'must start with a digit and use only letters, digits, ".", "+", "~" (no "-" or epoch)',
  );
  const release = checkString(
    where,
    'release',
    spec.release ?? '1',
    LAB_RELEASE,
    'use only letters, digits, ".", "+", "~"',
  );
  const rawArch = spec.arch ?? (family === 'deb' ? 'all' : 'noarch');
  const arch =
    family === 'deb'
      ? checkString(where, 'arch', RPM_TO_DEB_ARCH[rawArch] ?? rawArch, DEB_ARCH, 'not a Debian architecture')
      : checkString(where, 'arch', DEB_TO_RPM_ARCH[rawArch] ?? rawArch, RPM_ARCH, 'not an RPM architecture');
  const summary =
    spec.summary === undefined
      ? `Fleetward lab package ${name}`
      : checkOneLine(where, 'summary', spec.summary);
  if (spec.depends !== undefined && !Array.isArray(spec.depends)) {
    fail(where, 'depends', spec.depends, 'must be an array of package names');
  }
  const depends = (spec.depends ?? []).map((dep, i) =>
    checkString(where, `depends[${i}]`, dep, LAB_PACKAGE_NAME, 'not a lab package name'),
  );
  if (spec.replaces !== undefined && !Array.isArray(spec.replaces)) {
    fail(where, 'replaces', spec.replaces, 'must be an array of package names');
  }
  const replaces = (spec.replaces ?? []).map((other, i) =>
    checkString(where, `replaces[${i}]`, other, LAB_PACKAGE_NAME, 'not a lab package name'),
  );
  return { name, version, release, arch, summary, depends, replaces };
}

/** Validates a spec for Debian and applies defaults (`release` 1, `arch` all; `noarch` → `all`). */
export function resolveDebPackage(spec: LabPackageSpec): ResolvedPackage {
  return resolve(spec, 'deb');
}

/** Validates a spec for RPM and applies defaults (`release` 1, `arch` noarch; `all` → `noarch`). */
export function resolveRpmPackage(spec: LabPackageSpec): ResolvedPackage {
  return resolve(spec, 'rpm');
}

/**
 * Throws an Error naming the offending field if `spec` cannot be built as both a .deb and an
 * .rpm.
 */
export function validateLabPackageSpec(spec: LabPackageSpec): void {
  resolve(spec, 'deb');
  resolve(spec, 'rpm');
}

/** `labdemo_1.1-1_all.deb`: the name Debian tools give the package file. */
export function debFileName(spec: LabPackageSpec): string {
  const p = resolveDebPackage(spec);
  return `${p.name}_${p.version}-${p.release}_${p.arch}.deb`;
}

/** `labdemo-1.1-1.noarch.rpm`: the name rpmbuild gives the package file. */
export function rpmFileName(spec: LabPackageSpec): string {
  const p = resolveRpmPackage(spec);
  return `${p.name}-${p.version}-${p.release}.${p.arch}.rpm`;
}

/** File name of `spec`'s package for `family`. */
export function packageFileName(spec: LabPackageSpec, family: 'deb' | 'rpm'): string {
  return family === 'deb' ? debFileName(spec) : rpmFileName(spec);
}

/** `1.1-1`: the full version string both dpkg and rpm print (no epoch in the lab). */
export function packageVersion(spec: LabPackageSpec): string {
  const p = resolveDebPackage(spec);
  return `${p.version}-${p.release}`;
}

/** Content of `/usr/share/fleetward-lab/<name>` in both families, so a test can see what is installed. */
export function labFileContent(p: ResolvedPackage): string {
  return `${p.version}-${p.release}\n`;
}

/** A stable key for "is this the same build?": two different specs for one file name are a bug. */
export function buildKey(p: ResolvedPackage): string {
  return JSON.stringify([p.name, p.version, p.release, p.arch, p.summary, [...p.depends], [...p.replaces]]);
}

/** Converts `2026-01-15` or an ISO date-time to updateinfo's `2026-01-15 00:00:00`. */
export function updateinfoDate(where: string, field: string, value: unknown): string {
  const m = typeof value === 'string' ? ISO_DATE.exec(value) : null;
  if (!m || Number.isNaN(Date.parse(`${m[1]}T00:00:00Z`))) {
    fail(where, field, value, 'expected an ISO date like 2026-01-15 or 2026-01-15T08:30:00Z');
  }
  const time = m[2] ?? '00:00:00';
  return `${m[1]} ${time.length === 5 ? `${time}:00` : time}`;
}

/** A validated advisory with its packages resolved for RPM. */
export interface ResolvedAdvisory {
  id: string;
  type: AdvisoryType;
  severity: AdvisorySeverity | undefined;
  title: string;
  description: string;
  issued: string;
  updated: string | undefined;
  cves: string[];
  rebootSuggested: boolean;
  packages: ResolvedPackage[];
}

/** Validates an advisory, naming the field on error. */
export function resolveAdvisory(advisory: AdvisorySpec): ResolvedAdvisory {
  if (typeof advisory !== 'object' || advisory === null) throw new Error('advisory must be an object');
  const where = `advisory ${typeof advisory.id === 'string' ? JSON.stringify(advisory.id) : '(no id)'}`;
  const id = checkString(where, 'id', advisory.id, ADVISORY_ID, 'use letters, digits, ":", ".", "_", "-"');
  if (!ADVISORY_TYPES.includes(advisory.type)) {
    fail(where, 'type', advisory.type, `expected one of ${ADVISORY_TYPES.join(', ')}`);
  }
  if (advisory.severity !== undefined && !ADVISORY_SEVERITIES.includes(advisory.severity)) {
    fail(where, 'severity', advisory.severity, `expected one of ${ADVISORY_SEVERITIES.join(', ')} or absent`);
  }
  const title = checkOneLine(where, 'title', advisory.title);
  let description = title;
  if (advisory.description !== undefined) {
    if (typeof advisory.description !== 'string' || CONTROL_CHARS.test(advisory.description)) {
      fail(where, 'description', advisory.description, 'must be text without control characters');
    }
    description = advisory.description;
  }
  const cves = (advisory.cves ?? []).map((cve, i) =>
    checkString(where, `cves[${i}]`, cve, CVE_ID, 'expected CVE-YYYY-NNNN'),
  );
  if (!Array.isArray(advisory.packages) || advisory.packages.length === 0) {
    fail(where, 'packages', advisory.packages, 'an advisory must ship at least one package');
  }
  return {
    id,
    type: advisory.type,
    severity: advisory.severity,
    title,
    description,
    issued: updateinfoDate(where, 'issued', advisory.issued),
    updated: advisory.updated === undefined ? undefined : updateinfoDate(where, 'updated', advisory.updated),
    cves,
    rebootSuggested: advisory.rebootSuggested === true,
    packages: advisory.packages.map(resolveRpmPackage),
  };
}
