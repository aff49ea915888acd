import type { OsFacts, PackageManager, PatchCategory, PendingPatch, Severity } from '../domain/index.js';
import { CommandFailedError, ParseError } from '../errors.js';
import type { Command, ScriptCommand } from '../ports/adapter.js';
import type { CommandOutput, PackageManagerDriver, ParsedScan } from './driver.js';
import {
  compareEvr,
  type Evr,
  formatEvr,
  type InstalledRpm,
  inferKernelReboot,
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
echo '@@fleetward:updateinfo-list' >&2
out=$(${tool} -C -q --color=never updateinfo list updates)
rc=$?
echo '@@fleetward:updateinfo-list'
printf '%s\\n' "$out"
echo "@@fleetward:updateinfo-list-exit $rc"
echo '@@fleetward:updateinfo-info' >&2
out=$(${tool} -C -q --color=never updateinfo info updates)
rc=$?
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
    const m = /^\s*([A-Za-z][A-Za-z ]*?)\s*:(?: (.*))?$/.exec(line);
    if (!m) continue;
    const label = m[1]!;
    const value = (m[2] ?? '').trim();
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
    patches,
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
