import type { OsFacts, PatchOrigin, PendingPatch, PinnedPackage } from '../domain/index.js';
import { CommandFailedError, ParseError, ValidationError } from '../errors.js';
import type { Command, ScriptCommand } from '../ports/adapter.js';
import {
  type CommandOutput,
  checkScannedPatches,
  type PackageManagerDriver,
  type ParsedScan,
  type ResolvedTransaction,
} from './driver.js';

/**
 * Environment of every apt command: the C locale keeps messages in the English the parser reads,
 * and `noninteractive` keeps debconf from ever waiting on a prompt.
 */
const APT_ENV: Readonly<Record<string, string>> = Object.freeze({
  LC_ALL: 'C',
  LANG: 'C',
  LANGUAGE: 'C',
  DEBIAN_FRONTEND: 'noninteractive',
});

/** Marker lines of the scan script, in the order it prints them. */
const MARKERS = [
  'apt-scan',
  'apt-get-simulate',
  'apt-get-simulate-exit',
  'apt-cache-policy',
  'apt-cache-policy-exit',
  'apt-cache-policy-sources',
  'apt-cache-policy-sources-exit',
  'apt-mark-showhold',
  'apt-mark-showhold-exit',
  'reboot-required',
  'reboot-required-pkgs',
  'end',
] as const;
type Marker = (typeof MARKERS)[number];

/**
 * The scan script. It is constant text: nothing is interpolated into it.
 *
 * Package names reach `apt-cache policy` only after awk has checked them against Debian's package
 * name grammar (optionally `:arch`), and through `xargs`, so they are argv, never shell syntax.
 * Every section is printed with `printf '%s\n'` so the following marker always starts a line.
 */
const SCAN_SCRIPT = `# Fleetward apt scan. Read-only: simulates, never installs, never refreshes lists.
# sudo's env_reset may drop the command's environment; the parser needs apt's English messages.
LC_ALL=C LANG=C LANGUAGE=C DEBIAN_FRONTEND=noninteractive
export LC_ALL LANG LANGUAGE DEBIAN_FRONTEND
echo '@@fleetward:apt-scan 1'
sim=$(apt-get -s -V -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false dist-upgrade 2>&1)
rc=$?
echo '@@fleetward:apt-get-simulate'
printf '%s\\n' "$sim"
echo "@@fleetward:apt-get-simulate-exit $rc"
names=''
case $sim in
*'have been kept back:'* | *'deferred due to phasing:'*) names=$(printf '%s\\n' "$sim" | awk '
  /^The following packages have been kept back:$/ { k = 1; next }
  /^The following upgrades have been deferred due to phasing:$/ { k = 1; next }
  k && /^[ \\t]/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?$/) print $i
    next
  }
  { k = 0 }
') ;;
esac
echo '@@fleetward:apt-cache-policy'
out=''
rc=0
if [ -n "$names" ]; then
  out=$(printf '%s\\n' "$names" | xargs -r apt-cache policy 2>&1)
  rc=$?
fi
printf '%s\\n' "$out"
echo "@@fleetward:apt-cache-policy-exit $rc"
echo '@@fleetward:apt-cache-policy-sources'
out=''
rc=0
if [ -n "$names" ]; then
  out=$(apt-cache policy 2>&1)
  rc=$?
fi
printf '%s\\n' "$out"
echo "@@fleetward:apt-cache-policy-sources-exit $rc"
echo '@@fleetward:apt-mark-showhold'
out=''
rc=0
# apt-mark loads the whole cache; dpkg's status file says whether any package is held at all.
grep -q '^Status: hold ' /var/lib/dpkg/status 2>/dev/null
if [ $? -ne 1 ]; then
  out=$(apt-mark showhold 2>&1)
  rc=$?
fi
printf '%s\\n' "$out"
echo "@@fleetward:apt-mark-showhold-exit $rc"
if [ -e /var/run/reboot-required ]; then
  echo '@@fleetward:reboot-required yes'
else
  echo '@@fleetward:reboot-required no'
fi
echo '@@fleetward:reboot-required-pkgs'
if [ -f /var/run/reboot-required.pkgs ]; then
  printf '%s\\n' "$(cat /var/run/reboot-required.pkgs)"
fi
echo '@@fleetward:end'
`;

const MARKER_LINE = /^@@fleetward:([a-z][a-z-]*)(?: (.*))?$/;
/**
 * A count of apt's summary line. No machine has 2^53 packages: a count beyond that is output that
 * was damaged or forged, refused rather than rounded into a number that compares equal to others.
 */
function summaryCount(digits: string, line: string): number {
  const n = Number(digits);
  if (!Number.isSafeInteger(n)) {
    throw new ParseError(`apt-get summary has an impossible count ${digits.slice(0, 30)}`, {
      details: { excerpt: line.slice(0, 500) },
    });
  }
  return n;
}

const SUMMARY =
  /^(\d+) upgraded, (\d+) newly installed, ((?:\d+ (?:reinstalled|downgraded), )*)(\d+) to remove and (\d+) not upgraded\.$/;
/** `Inst NAME [OLD] (NEW ORIGINS [ARCH])` with optional trailing bracket groups; no `[OLD]` means NEW. */
const INST = /^Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*?)(?: \[([^\]\s]+)\])?\)(?: .*)?$/;
const REMV = /^Remv (\S+)(?: \[([^\]]*)\])?/;
/** A line of a `-V` package list: `   name (old => new)`. */
const VERBOSE_UPGRADE = /^\s+(\S+) \((\S+) => (\S+)\)$/;
const KEPT_BACK_HEADERS = new Set([
  'The following packages have been kept back:',
  'The following upgrades have been deferred due to phasing:',
]);

/**
 * The command that lists pending apt updates.
 *
 * It reads the package lists as they are on the host and does NOT run `apt-get update`: a scan is
 * read-only and cheap, and refreshing is a separate, explicit step ({@link refreshCommand}). A host
 * whose lists are stale reports stale results.
 *
 * The script prints, between `@@fleetward:` marker lines: the output and exit status of
 * `apt-get -s -V dist-upgrade`; `apt-cache policy` of the packages the simulation keeps back (held,
 * phased or blocked), plus the global `apt-cache policy` that names each source's release, both
 * only when something is kept back; `apt-mark showhold`, only when dpkg's status file records a
 * hold; and the reboot-required flag and package list. On a host with nothing kept back or held,
 * apt's cache is loaded once, by the simulation: the `Inst` lines carry the origins.
 *
 * It runs without sudo: a simulation with `Debug::NoLocking` reads only world-readable state, so
 * scanning needs no root and a login without sudo rights can still be scanned.
 */
function scanCommand(): ScriptCommand {
  return { interpreter: ['sh', '-s'], sudo: false, env: { ...APT_ENV }, script: SCAN_SCRIPT };
}

/** `apt-get -q update`: refreshes the package lists a scan reads. Needs root and the network. */
export function refreshCommand(): Command {
  return { argv: ['apt-get', '-q', 'update'], sudo: true, env: { ...APT_ENV } };
}

/**
 * Whether a candidate's origin is a security archive: the release label names security
 * (`Debian-Security`) or the archive is a `-security` pocket (`12/oldstable-security`,
 * `22.04/jammy-security`, `22.04/jammy-infra-security`).
 */
export function isSecurityOrigin(origin: PatchOrigin): boolean {
  return /security/i.test(origin.origin) || /-security(?:[/]|$)/i.test(origin.archive);
}

/**
 * Splits one origin of an `Inst` line. apt prints `Label:Version/Archive` (or `Label:Archive`, or only
 * the archive when the release has no label). Labels may contain spaces and, in principle, colons,
 * while versions and suites cannot, so the split is at the last colon.
 */
function parseInstOrigin(text: string): PatchOrigin {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { origin: '', archive: text };
  return { origin: text.slice(0, colon), archive: text.slice(colon + 1) };
}

/** One package of an `apt-get -s` simulation. */
export interface AptSimulatedInstall {
  name: string;
  arch: string;
  /** `null` for a package the transaction would newly install. */
  installedVersion: string | null;
  candidateVersion: string;
  origins: PatchOrigin[];
}

/** A package the simulation lists but would not install (held, phased, or blocked by dependencies). */
export interface AptKeptBack {
  name: string;
  installedVersion: string;
  candidateVersion: string;
}

/** What an `apt-get -s -V dist-upgrade` prints, structured. */
export interface AptSimulation {
  installs: AptSimulatedInstall[];
  removals: { name: string; version: string | null }[];
  keptBack: AptKeptBack[];
  /** `W:` lines, verbatim. */
  warnings: string[];
  /** `E:` lines, verbatim. */
  errors: string[];
  /**
   * The counts of the closing summary line; `other` sums the optional reinstalled and downgraded
   * counts. `null` only when apt stopped with `E:` lines before printing it.
   */
  summary: {
    upgraded: number;
    newlyInstalled: number;
    other: number;
    toRemove: number;
    notUpgraded: number;
  } | null;
}

/**
 * Parses the output (stdout and stderr together) of `apt-get -s -V dist-upgrade` in the C locale.
 * `E:` lines are returned in `errors`, not thrown: whether they are fatal is the caller's call.
 * @throws ParseError when there is neither a summary line nor an `E:` line, an `Inst` line does not
 *   have apt's shape, a kept-back line is not in `-V` form, or the summary counts disagree with the
 *   `Inst` and `Remv` lines.
 */
export function parseAptSimulation(text: string): AptSimulation {
  const installs: AptSimulatedInstall[] = [];
  const removals: { name: string; version: string | null }[] = [];
  const keptBack: AptKeptBack[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  let summary: AptSimulation['summary'] = null;
  let inKeptBack = false;

  for (const line of text.split('\n')) {
    if (inKeptBack) {
      if (/^\s/.test(line)) {
        const m = VERBOSE_UPGRADE.exec(line);
        if (!m) throw new ParseError(`apt kept-back line is not in "name (old => new)" form: ${line}`);
        keptBack.push({ name: m[1]!, installedVersion: m[2]!, candidateVersion: m[3]! });
        continue;
      }
      inKeptBack = false;
    }
    if (KEPT_BACK_HEADERS.has(line)) {
      inKeptBack = true;
    } else if (line.startsWith('Inst ')) {
      const m = INST.exec(line);
      if (!m) throw new ParseError(`Unrecognized apt Inst line: ${line}`);
      const originText = m[4]!.trim();
      installs.push({
        name: m[1]!,
        arch: m[5] ?? '',
        installedVersion: m[2] ?? null,
        candidateVersion: m[3]!,
        origins: originText === '' ? [] : originText.split(', ').map(parseInstOrigin),
      });
    } else if (line.startsWith('Remv ')) {
      const m = REMV.exec(line);
      if (m) removals.push({ name: m[1]!, version: m[2] ?? null });
    } else if (line.startsWith('W:')) {
      warnings.push(line);
    } else if (line.startsWith('E:')) {
      errors.push(line);
    } else {
      const m = SUMMARY.exec(line);
      if (m) {
        const other = [...m[3]!.matchAll(/(\d+) /g)].reduce((sum, x) => sum + summaryCount(x[1]!, line), 0);
        summary = {
          upgraded: summaryCount(m[1]!, line),
          newlyInstalled: summaryCount(m[2]!, line),
          other: summaryCount(String(other), line),
          toRemove: summaryCount(m[4]!, line),
          notUpgraded: summaryCount(m[5]!, line),
        };
      }
    }
  }

  if (!summary) {
    if (errors.length > 0) return { installs, removals, keptBack, warnings, errors, summary };
    throw new ParseError('apt-get simulation output has no "N upgraded, N newly installed" summary line', {
      details: { excerpt: text.slice(0, 500) },
    });
  }
  // vuls' check: a summary that disagrees with the listed actions means lines were lost or misread.
  // Counted by name: apt counts packages, and a name printed twice is still one package.
  const replaced = new Set(installs.filter((i) => i.installedVersion !== null).map((i) => i.name)).size;
  const added = new Set(installs.filter((i) => i.installedVersion === null).map((i) => i.name)).size;
  if (replaced !== summary.upgraded + summary.other || added !== summary.newlyInstalled) {
    throw new ParseError(
      `apt-get summary (${summary.upgraded} upgraded, ${summary.newlyInstalled} newly installed) ` +
        `disagrees with its Inst lines (${replaced} upgrades, ${added} new)`,
    );
  }
  if (new Set(removals.map((r) => r.name)).size !== summary.toRemove) {
    throw new ParseError(
      `apt-get summary (${summary.toRemove} to remove) disagrees with its Remv lines (${removals.length})`,
    );
  }
  return { installs, removals, keptBack, warnings, errors, summary };
}

/** A source line of `apt-cache policy`, without its priority: `URI suite/component arch Packages`. */
interface PolicySource {
  uri: string;
  /** `bookworm-security/main`, or `./` style for flat repositories. */
  dist: string;
  arch: string;
}

/** The `apt-cache policy NAME…` view of one package. */
export interface AptPolicy {
  installed: string | null;
  candidate: string | null;
  /** Each version of the version table, with the sources that carry it (the dpkg status file excluded). */
  versions: { version: string; sources: { key: string; uri: string; dist: string; arch: string }[] }[];
}

const POLICY_VERSION = /^ (?:\*\*\*| {3}) (\S+) (-?\d+)(?: .*)?$/;
const POLICY_SOURCE = /^\s+(-?\d+) (\S.*)$/;

function splitSource(text: string): PolicySource {
  const fields = text.trim().split(/\s+/);
  if (fields.at(-1) === 'Packages') fields.pop();
  return { uri: fields[0] ?? '', dist: fields[1] ?? '', arch: fields[2] ?? '' };
}

/**
 * Parses `apt-cache policy NAME…` in the C locale: per package, installed and candidate versions and
 * the version table. Every source line under a version is kept (not just the first one), because a
 * candidate is often in both `-updates` and `-security`, and only the second may say security.
 */
export function parseAptCachePolicy(text: string): Map<string, AptPolicy> {
  const result = new Map<string, AptPolicy>();
  let current: AptPolicy | undefined;
  let version: AptPolicy['versions'][number] | undefined;
  for (const line of text.split('\n')) {
    const header = /^(\S+):$/.exec(line);
    if (header) {
      current = { installed: null, candidate: null, versions: [] };
      version = undefined;
      result.set(header[1]!, current);
      continue;
    }
    if (!current) continue;
    const field = /^ {2}(Installed|Candidate): (.*)$/.exec(line);
    if (field) {
      const value = field[2]!.trim();
      const v = value === '(none)' ? null : value;
      if (field[1] === 'Installed') current.installed = v;
      else current.candidate = v;
      continue;
    }
    const ver = POLICY_VERSION.exec(line);
    if (ver) {
      version = { version: ver[1]!, sources: [] };
      current.versions.push(version);
      continue;
    }
    const src = POLICY_SOURCE.exec(line);
    if (src && version) {
      const key = src[2]!.trim();
      // The dpkg status file records what is installed; it is not where a candidate comes from.
      if (key === '/var/lib/dpkg/status') continue;
      version.sources.push({ key, ...splitSource(key) });
    }
  }
  return result;
}

/** The release of one source, from the `release v=…,o=…,a=…,l=…` line of a global `apt-cache policy`. */
interface ReleaseInfo {
  label: string;
  version: string;
  archive: string;
}

function parseReleaseLines(text: string): Map<string, ReleaseInfo> {
  const releases = new Map<string, ReleaseInfo>();
  let key: string | undefined;
  for (const line of text.split('\n')) {
    const src = /^ (-?\d+) (\S.*)$/.exec(line);
    if (src) {
      key = src[2]!.trim();
      continue;
    }
    const rel = /^\s+release (.*)$/.exec(line);
    if (rel && key !== undefined) {
      const kv = new Map<string, string>();
      for (const part of rel[1]!.split(',')) {
        const eq = part.indexOf('=');
        if (eq > 0) kv.set(part.slice(0, eq), part.slice(eq + 1));
      }
      releases.set(key, { label: kv.get('l') ?? '', version: kv.get('v') ?? '', archive: kv.get('a') ?? '' });
      key = undefined;
    }
  }
  return releases;
}

/**
 * The origins of a kept-back candidate, in the same `Label` / `Version/Archive` form as the `Inst`
 * lines, so that policies and the security test treat kept-back and installable packages alike.
 * When a source has no release line (flat repositories, or the global policy was not printed), the
 * origin is the source URI and the archive its suite (`bookworm-security`, component dropped).
 */
function keptBackOrigins(
  sources: AptPolicy['versions'][number]['sources'],
  releases: Map<string, ReleaseInfo>,
): PatchOrigin[] {
  const out: PatchOrigin[] = [];
  for (const s of sources) {
    const rel = releases.get(s.key);
    const origin: PatchOrigin =
      rel && rel.archive !== ''
        ? { origin: rel.label, archive: rel.version !== '' ? `${rel.version}/${rel.archive}` : rel.archive }
        : { origin: s.uri, archive: s.dist.split('/')[0] ?? '' };
    if (!out.some((o) => o.origin === origin.origin && o.archive === origin.archive)) out.push(origin);
  }
  return out;
}

function splitSections(output: CommandOutput): Map<Marker, { arg: string; lines: string[] }> {
  const known = new Set<string>(MARKERS);
  const sections = new Map<Marker, { arg: string; lines: string[] }>();
  const seen: string[] = [];
  let current: { arg: string; lines: string[] } | undefined;
  for (const line of output.stdout.split('\n')) {
    const m = MARKER_LINE.exec(line);
    if (m) {
      const name = m[1]!;
      if (seen.includes('end')) break;
      if (!known.has(name)) throw new ParseError(`Unknown marker in apt scan output: ${line}`);
      seen.push(name);
      current = { arg: m[2] ?? '', lines: [] };
      sections.set(name as Marker, current);
      continue;
    }
    // Lines before the first marker (a login banner, say) are not ours; lines after `end` neither.
    if (current && !seen.includes('end')) current.lines.push(line);
  }
  if (seen.join(' ') !== MARKERS.join(' ')) {
    throw new ParseError('apt scan output does not have the expected @@fleetward markers', {
      details: { expected: MARKERS, found: seen, excerpt: output.stdout.slice(0, 500) },
    });
  }
  return sections;
}

function exitStatus(sections: Map<Marker, { arg: string }>, marker: Marker): number {
  const arg = sections.get(marker)?.arg ?? '';
  if (!/^\d+$/.test(arg)) throw new ParseError(`apt scan marker ${marker} has no exit status: "${arg}"`);
  return Number(arg);
}

function failure(what: string, status: number, lines: string[], errors: string[]): CommandFailedError {
  const shown = errors.length > 0 ? errors : lines.filter((l) => l.trim() !== '').slice(-5);
  const retryable = errors.some((e) => /Could not get lock|Unable to acquire|Unable to lock/i.test(e));
  return new CommandFailedError(`${what} failed (exit ${status}): ${shown.join(' | ')}`, {
    retryable,
    details: { exitCode: status, errors },
  });
}

/**
 * Parses the output of the scan script. See {@link PackageManagerDriver.parseScan}.
 * @throws ParseError when the output was truncated, lacks the markers, or is not apt's output.
 * @throws CommandFailedError when the script did not start or an apt tool failed (`E:` lines or a
 *   non-zero exit); it is retryable when apt reported a held lock.
 */
function parseScan(output: CommandOutput): ParsedScan {
  if (output.truncated) {
    throw new ParseError('apt scan output was truncated; a partial package list is not reported');
  }
  if (output.exitCode !== 0 && !output.stdout.includes('@@fleetward:apt-scan')) {
    throw new CommandFailedError(
      `apt scan script did not start (exit ${output.exitCode ?? 'signal'}): ${output.stderr.trim().slice(0, 500)}`,
      { details: { exitCode: output.exitCode } },
    );
  }
  const sections = splitSections(output);
  const lines = (m: Marker): string[] => sections.get(m)?.lines ?? [];
  const isError = (l: string) => l.startsWith('E:');

  // Failures first: a failed apt prints no summary, and that is its failure, not a parse problem.
  for (const [body, exit, what] of [
    ['apt-get-simulate', 'apt-get-simulate-exit', 'apt-get dist-upgrade simulation'],
    ['apt-cache-policy', 'apt-cache-policy-exit', 'apt-cache policy (kept-back packages)'],
    ['apt-cache-policy-sources', 'apt-cache-policy-sources-exit', 'apt-cache policy'],
    ['apt-mark-showhold', 'apt-mark-showhold-exit', 'apt-mark showhold'],
  ] as const) {
    const status = exitStatus(sections, exit);
    const errors = lines(body).filter(isError);
    if (status !== 0 || errors.length > 0) throw failure(what, status, lines(body), errors);
  }
  const sim = parseAptSimulation(lines('apt-get-simulate').join('\n'));
  const summary = sim.summary;
  if (!summary) throw new ParseError('apt-get simulation output has no summary line');

  const reboot = sections.get('reboot-required')?.arg;
  if (reboot !== 'yes' && reboot !== 'no') {
    throw new ParseError(`apt scan reboot-required marker is "${reboot ?? ''}", not yes or no`);
  }

  const warnings: string[] = [...sim.warnings];
  for (const body of ['apt-cache-policy', 'apt-cache-policy-sources', 'apt-mark-showhold'] as const) {
    for (const l of lines(body)) if (l.startsWith('W:')) warnings.push(l);
  }
  for (const r of sim.removals) {
    warnings.push(`apt would remove ${r.name}${r.version ? ` ${r.version}` : ''} to complete the upgrade`);
  }

  const held = new Set(
    lines('apt-mark-showhold')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !/^[WN]:/.test(l)),
  );
  const isHeld = (name: string) => held.has(name) || held.has(name.replace(/:[^:]+$/, ''));

  const patches = new Map<string, PendingPatch>();
  for (const i of sim.installs) {
    if (patches.has(i.name)) continue;
    patches.set(i.name, {
      name: i.name,
      arch: i.arch,
      installedVersion: i.installedVersion,
      candidateVersion: i.candidateVersion,
      origins: i.origins,
      category: i.origins.some(isSecurityOrigin) ? 'security' : 'other',
      severity: 'unspecified',
      advisories: [],
      held: isHeld(i.name),
      keptBack: false,
      isNew: i.installedVersion === null,
    });
  }

  const policies = parseAptCachePolicy(lines('apt-cache-policy').join('\n'));
  const releases = parseReleaseLines(lines('apt-cache-policy-sources').join('\n'));
  for (const k of sim.keptBack) {
    if (patches.has(k.name)) continue;
    const policy = policies.get(k.name) ?? policies.get(k.name.replace(/:[^:]+$/, ''));
    const candidate = policy?.versions.find((v) => v.version === k.candidateVersion);
    if (!candidate) {
      warnings.push(
        `apt-cache policy does not list ${k.name} ${k.candidateVersion}; its origins are unknown`,
      );
    }
    const origins = candidate ? keptBackOrigins(candidate.sources, releases) : [];
    const qualifier = /:([^:]+)$/.exec(k.name);
    patches.set(k.name, {
      name: k.name,
      // apt-cache policy names index architectures (amd64 even for `all` packages), so the
      // architecture stays unknown unless apt qualified the name.
      arch: qualifier?.[1] ?? '',
      installedVersion: k.installedVersion,
      candidateVersion: k.candidateVersion,
      origins,
      category: origins.some(isSecurityOrigin) ? 'security' : 'other',
      severity: 'unspecified',
      advisories: [],
      held: isHeld(k.name),
      keptBack: true,
      isNew: false,
    });
  }
  if (summary.notUpgraded > sim.keptBack.length) {
    warnings.push(
      `apt reports ${summary.notUpgraded} packages not upgraded but lists ${sim.keptBack.length} as kept back`,
    );
  }

  const rebootPackages = [
    ...new Set(
      lines('reboot-required-pkgs')
        .map((l) => l.trim())
        .filter((l) => l !== ''),
    ),
  ];
  return {
    patches: checkScannedPatches(
      'apt',
      [...patches.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    ),
    rebootRequired: reboot === 'yes',
    rebootPackages,
    warnings: [...new Set(warnings)],
  };
}

/**
 * The apt driver (Debian, Ubuntu and derivatives). Pending updates come from a dist-upgrade
 * simulation: `Inst` lines are installable updates (new dependencies included, `isNew`), and the
 * kept-back list gives held, phased or blocked packages (`keptBack`, `held` when `apt-mark` holds
 * them). A held package with no newer candidate is not a pending patch. A package is `security`
 * when any of its origins is a security archive; apt has no severity, so it is `unspecified`.
 */
/** Debian policy: lower-case alphanumerics and `+ - .`, starting alphanumeric; `:arch` qualifier allowed. */
const APT_NAME = /^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?$/;
/** Debian version: optional epoch, upstream version and revision; never starts with `-`. */
const APT_VERSION = /^([0-9]+:)?[0-9A-Za-z][0-9A-Za-z.+~-]*$/;

/**
 * Checks names and versions before they become argv. argv cannot become shell syntax, but a value
 * starting with `-` would be read as an option by apt.
 */
function aptPins(packages: readonly PinnedPackage[]): string[] {
  const issues = packages.flatMap((p, i) => [
    ...(APT_NAME.test(p.name)
      ? []
      : [{ path: [i, 'name'], message: `not a Debian package name: ${JSON.stringify(p.name)}` }]),
    ...(APT_VERSION.test(p.version)
      ? []
      : [{ path: [i, 'version'], message: `not a Debian version: ${JSON.stringify(p.version)}` }]),
  ]);
  if (packages.length === 0) issues.push({ path: [], message: 'no packages to install' });
  if (issues.length) throw new ValidationError('packages', issues);
  return packages.map((p) => `${p.name}=${p.version}`);
}

const APT_INSTALL_OPTIONS = [
  '-o',
  'Dpkg::Options::=--force-confdef',
  '-o',
  'Dpkg::Options::=--force-confold',
  // Refuse any transaction that would remove a package: a patch run never uninstalls.
  '--no-remove',
];

function aptFailure(output: CommandOutput, what: string): CommandFailedError {
  const text = `${output.stdout}\n${output.stderr}`;
  const errors = text.split('\n').filter((l) => l.startsWith('E:'));
  const lock = errors.some((l) => /Could not get lock|Unable to acquire the dpkg frontend lock/.test(l));
  return new CommandFailedError(
    `${what} failed (exit ${output.exitCode}): ${errors.join(' ') || text.trim().slice(-500)}`,
    {
      retryable: lock,
      details: { exitCode: output.exitCode },
    },
  );
}

export const aptDriver: PackageManagerDriver = {
  manager: 'apt',
  supports(os: OsFacts): boolean {
    return os.packageManager === 'apt' || os.family === 'debian';
  },
  scanCommand,
  parseScan,
  simulateInstallCommand(packages: readonly PinnedPackage[]): Command {
    return {
      argv: [
        'apt-get',
        '-s',
        '-V',
        '-o',
        'Debug::NoLocking=1',
        // Without `--no-remove`: apt would only say "remove is disabled"; the simulation must name
        // what the transaction removes (Remv lines), for the plan and the executor to refuse it.
        // The install itself keeps `--no-remove` as a second guard.
        ...APT_INSTALL_OPTIONS.filter((o) => o !== '--no-remove'),
        'install',
        ...aptPins(packages),
      ],
      env: { ...APT_ENV },
    };
  },
  parseSimulateInstall(output: CommandOutput): ResolvedTransaction {
    if (output.truncated) throw new ParseError('apt-get simulation output was truncated');
    const text = `${output.stdout}\n${output.stderr}`;
    if (output.exitCode !== 0) throw aptFailure(output, 'apt-get install simulation');
    const sim = parseAptSimulation(text);
    if (sim.errors.length) throw aptFailure(output, 'apt-get install simulation');
    return {
      install: sim.installs.map((i) => ({
        name: i.name,
        version: i.candidateVersion,
        arch: i.arch,
        isNew: i.installedVersion === null,
      })),
      remove: sim.removals.map((r) => r.name),
      warnings: sim.warnings,
    };
  },
  installCommand(packages: readonly PinnedPackage[]): Command {
    return {
      argv: ['apt-get', '-y', '-q', ...APT_INSTALL_OPTIONS, 'install', ...aptPins(packages)],
      sudo: true,
      env: { ...APT_ENV },
    };
  },
  parseInstall(output: CommandOutput) {
    if (output.exitCode !== 0) throw aptFailure(output, 'apt-get install');
    const warnings = `${output.stdout}\n${output.stderr}`.split('\n').filter((l) => l.startsWith('W:'));
    return { rebootRequired: false, warnings };
  },
  installedVersionsCommand(names: readonly string[]): Command {
    const bad = names.flatMap((n, i) =>
      APT_NAME.test(n) ? [] : [{ path: [i], message: `not a Debian package name: ${JSON.stringify(n)}` }],
    );
    if (bad.length) throw new ValidationError('names', bad);
    return {
      argv: [
        'dpkg-query',
        '-W',
        '-f',
        // dpkg-query's own format syntax, not a template: it must reach dpkg-query literally.
        // biome-ignore lint/suspicious/noTemplateCurlyInString: see above
        '${binary:Package}\t${Version}\t${db:Status-Abbrev}\n',
        '--',
        ...names,
      ],
      env: { ...APT_ENV },
    };
  },
  parseInstalledVersions(output: CommandOutput): Map<string, string> {
    // dpkg-query exits 1 when some names are unknown; their absence is the answer.
    if (output.exitCode !== 0 && output.exitCode !== 1) throw aptFailure(output, 'dpkg-query');
    const versions = new Map<string, string>();
    for (const line of output.stdout.split('\n')) {
      const [pkg, version, status] = line.split('\t');
      if (!pkg || !version || !status?.startsWith('ii')) continue;
      versions.set(pkg.replace(/:[a-z0-9-]+$/, ''), version);
      versions.set(pkg, version);
    }
    return versions;
  },
};
