import { createRequire } from 'node:module';
import type SaxModule from 'sax';
import type { OsFacts, PatchCategory, PendingPatch, PinnedPackage } from '../domain/index.js';
import { CommandFailedError, ParseError } from '../errors.js';
import type { Command, ScriptCommand } from '../ports/adapter.js';
import {
  classify,
  explicitEvr,
  normalizeSeverity,
  parseRpmInstalledVersions,
  rpmInstalledVersionsCommand,
  rpmPins,
} from './dnf.js';
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
  parseEvr,
  parseInstalledRpms,
  type RebootInference,
  RPM_QA_FORMAT,
  readSections,
  type Section,
  sectionExit,
  sectionNumber,
} from './rpm-reboot.js';

// sax is loaded on the first zypper parse, not on import: most users never scan a SUSE host, and
// `import { createFleet } from '@fleetward/core'` should load only what every user needs.
let saxModule: typeof SaxModule | undefined;
function loadSax(): typeof SaxModule {
  saxModule ??= createRequire(import.meta.url)('sax') as typeof SaxModule;
  return saxModule;
}

/** The C locale keeps zypper's messages (inside and outside the XML) in the English the parser reads. */
const ZYPPER_ENV: Readonly<Record<string, string>> = Object.freeze({ LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' });

const MARKERS = [
  'zypper-scan',
  'list-updates',
  'list-updates-exit',
  'list-patches',
  'list-patches-exit',
  'patch-info',
  'patch-info-exit',
  'needs-rebooting',
  'needs-rebooting-exit',
  'reboot-needed',
  'installed',
  'installed-exit',
  'btime',
  'end',
] as const;
type Marker = (typeof MARKERS)[number];

/**
 * The scan script. It is constant text: nothing is interpolated into it.
 *
 * zypper runs with `--no-refresh`, so a scan reads the repository caches the last refresh left and
 * never downloads (the same contract as the apt and dnf scans), and without root: a normal user's
 * zypper does not take the zypp lock, so a scan also works while another zypper holds it (as root
 * it would exit 7).
 *
 * `list-patches` XML does not say which packages a patch updates. `info -t patch` does, in the
 * patch's `Conflicts` (a patch conflicts with every build older than the one it ships), for any
 * number of patches in one run; the names come from the list-patches XML, and only names made of
 * the characters patch names use reach it, as separate words with globbing off.
 */
const SCAN_SCRIPT = `# Fleetward zypper scan. Read-only: lists from the repository caches, never refreshes or installs.
# sudo's env_reset may drop the command's environment; the parser needs zypper's English.
LC_ALL=C LANG=C LANGUAGE=C
export LC_ALL LANG LANGUAGE
echo '@@fleetward:zypper-scan 1'
echo '@@fleetward:list-updates' >&2
out=$(zypper --non-interactive --no-refresh --xmlout list-updates)
rc=$?
echo '@@fleetward:list-updates'
printf '%s\\n' "$out"
echo "@@fleetward:list-updates-exit $rc"
echo '@@fleetward:list-patches' >&2
lp=$(zypper --non-interactive --no-refresh --xmlout list-patches)
rc=$?
echo '@@fleetward:list-patches'
printf '%s\\n' "$lp"
echo "@@fleetward:list-patches-exit $rc"
names=$(printf '%s\\n' "$lp" | awk '{
  s = $0
  while (match(s, /<update kind="patch" name="[A-Za-z0-9][A-Za-z0-9_.:+-]*"/)) {
    t = substr(s, RSTART, RLENGTH)
    sub(/^<update kind="patch" name="/, "", t)
    sub(/"$/, "", t)
    print t
    s = substr(s, RSTART + RLENGTH)
  }
}')
echo '@@fleetward:patch-info' >&2
out=''
rc=0
if [ -n "$names" ]; then
  set -f
  # shellcheck disable=SC2086 # one word per patch name; awk admitted only [A-Za-z0-9_.:+-]
  set -- $names
  set +f
  out=$(zypper --non-interactive --no-refresh --xmlout info -t patch "$@")
  rc=$?
fi
echo '@@fleetward:patch-info'
printf '%s\\n' "$out"
echo "@@fleetward:patch-info-exit $rc"
echo '@@fleetward:needs-rebooting' >&2
out=$(zypper --non-interactive --no-refresh needs-rebooting)
rc=$?
echo '@@fleetward:needs-rebooting'
printf '%s\\n' "$out"
echo "@@fleetward:needs-rebooting-exit $rc"
if [ -e /run/reboot-needed ]; then
  echo '@@fleetward:reboot-needed yes'
else
  echo '@@fleetward:reboot-needed no'
fi
echo '@@fleetward:installed' >&2
out=$(rpm -qa --qf '${RPM_QA_FORMAT}')
rc=$?
echo '@@fleetward:installed'
printf '%s\\n' "$out"
echo "@@fleetward:installed-exit $rc"
echo '@@fleetward:btime'
awk '$1 == "btime" { print $2 }' /proc/stat
echo '@@fleetward:end'
`;

/** An element of zypper's XML output, reduced to what the parser reads. */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own text, entities decoded, child elements' text excluded. */
  text: string;
}

/**
 * Parses zypper's `--xmlout` output into element trees, one per XML document. One section may hold
 * several documents when zypper ran more than once, so the text is cut at each `<?xml` declaration.
 * @throws ParseError on text outside a document or a document that is not well-formed (truncated
 *   output, garbage).
 */
export function parseZypperXml(text: string, what: string): XmlElement[] {
  const chunks = text.split(/(?=<\?xml[\s?])/);
  if (chunks.length > 0 && !chunks[0]!.startsWith('<?xml')) {
    const lead = chunks.shift()!;
    if (lead.trim() !== '')
      throw new ParseError(`${what} output is not zypper XML: ${lead.trim().slice(0, 200)}`);
  }
  const roots: XmlElement[] = [];
  for (const chunk of chunks) {
    const stack: XmlElement[] = [];
    let root: XmlElement | undefined;
    const parser = loadSax().parser(true, { trim: false, normalize: false });
    // Attributes are collected here, not from sax's tag object, which is a plain object that drops
    // `__proto__`. Without a prototype, an attribute named `__proto__` or `constructor` stays data
    // and a missing one never resolves to an Object.prototype member.
    let attributes: Record<string, string> = Object.create(null);
    parser.onattribute = ({ name, value }) => {
      if (!Object.hasOwn(attributes, name)) attributes[name] = value;
    };
    parser.onopentag = (tag) => {
      const el: XmlElement = { name: tag.name, attributes, children: [], text: '' };
      attributes = Object.create(null);
      const parent = stack.at(-1);
      if (parent) parent.children.push(el);
      else root = el;
      stack.push(el);
    };
    parser.onclosetag = () => {
      stack.pop();
    };
    parser.ontext = (t) => {
      const top = stack.at(-1);
      if (top) top.text += t;
    };
    parser.oncdata = parser.ontext;
    // sax reports problems found at the end (an unclosed root: cut output) only to onerror. The
    // first one stops the parse: sax would go on and build an error for every later character.
    parser.onerror = (e) => {
      throw e;
    };
    try {
      parser.write(chunk).close();
    } catch (error) {
      throw new ParseError(
        `${what} output is not well-formed zypper XML: ${(error as Error).message.split('\n')[0]}`,
        {
          cause: error,
          details: { excerpt: chunk.slice(0, 500) },
        },
      );
    }
    if (!root) throw new ParseError(`${what} output holds an XML declaration but no element`);
    roots.push(root);
  }
  return roots;
}

function* descendants(el: XmlElement, name: string): Generator<XmlElement> {
  // Depth-first with an explicit stack: hostile XML nests deeper than the call stack goes.
  const stack = [...el.children].reverse();
  while (stack.length > 0) {
    const c = stack.pop()!;
    if (c.name === name) yield c;
    for (let i = c.children.length - 1; i >= 0; i--) stack.push(c.children[i]!);
  }
}

/** A `<message>` of zypper's XML stream. */
export interface ZypperMessage {
  type: string;
  text: string;
}

function messagesOf(roots: readonly XmlElement[]): ZypperMessage[] {
  return roots.flatMap((r) =>
    [...descendants(r, 'message')].map((m) => ({ type: m.attributes['type'] ?? '', text: m.text })),
  );
}

/** One `<update kind="package">` of `zypper --xmlout list-updates`. */
export interface ZypperPackageUpdate {
  name: string;
  arch: string;
  edition: Evr;
  /** The installed edition; `null` when zypper does not say. */
  editionOld: Evr | null;
  /** The repository alias. */
  repo: string;
}

/** One `<update kind="patch">` of `zypper --xmlout list-patches`. */
export interface ZypperPatch {
  name: string;
  /** `needed`, `optional` (an optional patch zypper would not apply by default), `applied`… */
  status: string;
  category: string;
  severity: string;
  repo: string;
}

function updatesOf(roots: readonly XmlElement[], kind: string, what: string): XmlElement[] {
  const lists = roots.flatMap((r) => [...descendants(r, 'update-list')]);
  if (lists.length === 0) throw new ParseError(`${what} output has no <update-list>`);
  return lists.flatMap((l) => l.children.filter((c) => c.name === 'update' && c.attributes['kind'] === kind));
}

function repoOf(update: XmlElement): string {
  return update.children.find((c) => c.name === 'source')?.attributes['alias'] ?? '';
}

/**
 * Reads the package updates of `zypper --xmlout list-updates`.
 * @throws ParseError when there is no update list or an update lacks a name, arch or edition.
 */
export function parseListUpdates(roots: readonly XmlElement[]): ZypperPackageUpdate[] {
  return updatesOf(roots, 'package', 'zypper list-updates').map((u) => {
    const a = u.attributes;
    const edition = parseEvr(a['edition'] ?? '');
    const old = a['edition-old'] === undefined ? null : parseEvr(a['edition-old']);
    if (!a['name'] || !a['arch'] || !edition || (a['edition-old'] !== undefined && !old)) {
      throw new ParseError(
        `zypper list-updates has an update without name, arch or edition: ${JSON.stringify(a)}`,
      );
    }
    return { name: a['name'], arch: a['arch'], edition, editionOld: old, repo: repoOf(u) };
  });
}

/**
 * Reads the patches of `zypper --xmlout list-patches`.
 * @throws ParseError when there is no update list or a patch has no name.
 */
export function parseListPatches(roots: readonly XmlElement[]): ZypperPatch[] {
  return updatesOf(roots, 'patch', 'zypper list-patches').map((u) => {
    const a = u.attributes;
    if (!a['name'])
      throw new ParseError(`zypper list-patches has a patch without a name: ${JSON.stringify(a)}`);
    return {
      name: a['name'],
      status: a['status'] ?? '',
      category: a['category'] ?? '',
      severity: a['severity'] ?? '',
      repo: repoOf(u),
    };
  });
}

/** A build a patch ships, from one `name[.arch] < edition` of its conflicts. */
export interface PatchPackage {
  name: string;
  /** `null` for a noarch package, which zypper prints without an arch. */
  arch: string | null;
  edition: Evr;
}

/** Architectures zypper appends to package names in dependencies (`glibc.x86_64 < 2.31-150300.9.1`). */
const ARCHES = new Set([
  'noarch',
  'x86_64',
  'i386',
  'i486',
  'i586',
  'i686',
  'aarch64',
  'armv6hl',
  'armv7hl',
  'ppc64',
  'ppc64le',
  's390x',
  'riscv64',
]);

/**
 * Reads the package builds of each patch from the text of `zypper --xmlout info -t patch` (one
 * `<message type="info">` per patch, holding `Label : value` lines). A patch conflicts with every
 * build older than the one it ships: `Conflicts : name < 1.2-3` when there is one, else
 * `Conflicts : [N]` followed by N indented lines. zypper adds a `.noarch` twin to each
 * arch-qualified entry, which matches no installed package and is harmless.
 */
export function parsePatchInfo(messages: readonly ZypperMessage[]): Map<string, PatchPackage[]> {
  const out = new Map<string, PatchPackage[]>();
  for (const m of messages) {
    if (m.type !== 'info' || !/^Name\s*:/m.test(m.text)) continue;
    let name = '';
    const conflicts: string[] = [];
    let label = '';
    for (const line of m.text.split('\n')) {
      // Split at the first colon: `/^([A-Z][A-Za-z ]*?)\s*:/` backtracks quadratically on blanks.
      const colon = line.indexOf(':');
      const head = colon < 0 ? '' : line.slice(0, colon).trimEnd();
      const field =
        colon < 0 || !/^[A-Z][A-Za-z ]*$/.test(head) ? null : /^ ?(.*)$/.exec(line.slice(colon + 1));
      if (field) {
        label = head;
        const value = field[1]!.trim();
        if (label === 'Name') name = value;
        else if (label === 'Conflicts' && !/^\[\d+\]$/.test(value) && value !== '') conflicts.push(value);
        continue;
      }
      if (label === 'Conflicts' && /^\s+\S/.test(line)) conflicts.push(line.trim());
    }
    if (name === '') continue;
    const packages: PatchPackage[] = [];
    for (const c of conflicts) {
      const d = /^(\S+) < (\S+)$/.exec(c);
      const edition = d ? parseEvr(d[2]!) : null;
      if (!d || !edition) continue;
      const dot = d[1]!.lastIndexOf('.');
      const suffix = dot > 0 ? d[1]!.slice(dot + 1) : '';
      packages.push(
        ARCHES.has(suffix)
          ? { name: d[1]!.slice(0, dot), arch: suffix, edition }
          : { name: d[1]!, arch: null, edition },
      );
    }
    out.set(name, packages);
  }
  return out;
}

/**
 * zypper patch categories to the domain's: `security` stays; `recommended` (SUSE's bug fixes) and
 * `bugfix` are bugfix; `optional`, `feature` and `enhancement` are enhancement; `document`, `yast` and
 * anything else are other.
 */
export function patchCategory(category: string): PatchCategory {
  switch (category.trim().toLowerCase()) {
    case 'security':
      return 'security';
    case 'recommended':
    case 'bugfix':
      return 'bugfix';
    case 'optional':
    case 'feature':
    case 'enhancement':
      return 'enhancement';
    default:
      return 'other';
  }
}

/** Patch statuses of pending work; `optional` patches are needed but not applied by default. */
const PENDING_STATUS = new Set(['needed', 'optional', '']);

/** zypper's exit codes (`man zypper`, EXIT CODES). */
const EXIT = {
  OK: 0,
  ERR_ZYPP: 4,
  NO_REPOS: 6,
  ZYPP_LOCKED: 7,
  INF_UPDATE_NEEDED: 100,
  INF_SEC_UPDATE_NEEDED: 101,
  INF_REBOOT_NEEDED: 102,
  INF_RESTART_NEEDED: 103,
  INF_CAP_NOT_FOUND: 104,
  INF_REPOS_SKIPPED: 106,
} as const;

/** Exit codes after which zypper's listing is complete (or, for 106, complete for the repositories it read). */
const SUCCESS = new Set<number>([
  EXIT.OK,
  EXIT.INF_UPDATE_NEEDED,
  EXIT.INF_SEC_UPDATE_NEEDED,
  EXIT.INF_REBOOT_NEEDED,
  EXIT.INF_REPOS_SKIPPED,
]);

/** A message on one line, shortened: libzypp's error history can run to dozens of lines. */
function oneLine(text: string): string {
  const flat = text.trim().replace(/\s*\n\s*/g, ' ');
  return flat.length > 240 ? `${flat.slice(0, 240)}…` : flat;
}

function zypperFailure(
  what: string,
  status: number,
  messages: readonly ZypperMessage[],
  errLines: readonly string[],
) {
  const errors = messages
    .filter((m) => m.type === 'error' || m.type === 'warning')
    .map((m) => oneLine(m.text));
  const shown = (errors.length > 0 ? errors : errLines.map((l) => l.trim()).filter((l) => l !== '')).slice(
    -3,
  );
  const text = shown.join(' | ') || 'no message';
  if (status === EXIT.ZYPP_LOCKED) {
    return new CommandFailedError(`zypper ${what}: the zypp lock is held (exit 7): ${text}`, {
      retryable: true,
      details: { exitCode: status },
    });
  }
  if (status === EXIT.INF_RESTART_NEEDED) {
    return new CommandFailedError(`zypper ${what}: zypper updated itself (exit 103); re-run the scan`, {
      retryable: true,
      details: { exitCode: status },
    });
  }
  if (status === EXIT.NO_REPOS) {
    return new CommandFailedError(
      `zypper ${what}: no repositories are defined, nothing can be scanned: ${text}`,
      {
        details: { exitCode: status },
      },
    );
  }
  return new CommandFailedError(`zypper ${what} failed (exit ${status}): ${text}`, {
    // A libzypp error (exit 4) is mostly a repository or cache that could not be read this time.
    retryable: status === EXIT.ERR_ZYPP,
    details: { exitCode: status },
  });
}

/**
 * Problems of a listing that still succeeded (exit 106: repositories skipped), one line each. Both
 * listings read the same repositories and report the same problems, so the lines name no command
 * and the caller's de-duplication keeps one of each.
 */
function problemsOf(messages: readonly ZypperMessage[]): string[] {
  return messages
    .filter((m) => m.type === 'warning' || m.type === 'error')
    .map((m) => `zypper: ${oneLine(m.text)}`);
}

function parseSection(
  stdout: Map<Marker, Section>,
  stderr: Map<Marker, string[]>,
  body: Marker,
  exit: Marker,
  what: string,
): { status: number; roots: XmlElement[]; messages: ZypperMessage[] } {
  const status = sectionExit(stdout, exit, 'zypper');
  const text = (stdout.get(body)?.lines ?? []).join('\n');
  let roots: XmlElement[] = [];
  if (SUCCESS.has(status)) {
    roots = parseZypperXml(text, `zypper ${what}`);
  } else {
    // A failed zypper's XML explains the failure; when it is not readable, stderr has to do.
    try {
      roots = parseZypperXml(text, `zypper ${what}`);
    } catch {
      roots = [];
    }
    throw zypperFailure(what, status, messagesOf(roots), stderr.get(body) ?? []);
  }
  const messages = messagesOf(roots);
  if (messages.some((m) => /^No repositories defined/.test(m.text.trim()))) {
    throw zypperFailure(what, EXIT.NO_REPOS, messages, []);
  }
  return { status, roots, messages };
}

/**
 * Parses the output of the zypper scan script. See {@link PackageManagerDriver.parseScan}.
 * @throws ParseError when the output was truncated, lacks the markers, or zypper's XML is not
 *   well-formed or lacks its update list.
 * @throws CommandFailedError when the script did not start or zypper failed: lock held (exit 7,
 *   retryable), zypper updated itself (103, retryable: re-run), no repositories (6, or the "No
 *   repositories defined" warning zypper gives with exit 0), a libzypp error (4, retryable), others.
 */
function parseScan(output: CommandOutput): ParsedScan {
  if (output.truncated) {
    throw new ParseError('zypper scan output was truncated; a partial package list is not reported');
  }
  if (output.exitCode !== 0 && !output.stdout.includes('@@fleetward:zypper-scan')) {
    throw new CommandFailedError(
      `zypper scan script did not start (exit ${output.exitCode ?? 'signal'}): ${output.stderr.trim().slice(0, 500)}`,
      { details: { exitCode: output.exitCode } },
    );
  }
  const { stdout, stderr } = readSections(output, MARKERS, 'zypper');
  const warnings: string[] = [];

  const lu = parseSection(stdout, stderr, 'list-updates', 'list-updates-exit', 'list-updates');
  const lp = parseSection(stdout, stderr, 'list-patches', 'list-patches-exit', 'list-patches');
  const installedStatus = sectionExit(stdout, 'installed-exit', 'zypper');
  if (installedStatus !== 0) {
    const lines = (stderr.get('installed') ?? []).slice(-3).join(' | ') || 'no message';
    throw new CommandFailedError(`rpm -qa (installed packages) failed (exit ${installedStatus}): ${lines}`, {
      details: { exitCode: installedStatus },
    });
  }
  for (const s of [lu, lp]) {
    if (s.status === EXIT.INF_REPOS_SKIPPED) warnings.push(...problemsOf(s.messages));
  }
  const updates = parseListUpdates(lu.roots);
  // Applied, not-needed and retracted patches are history, not pending work.
  const patches = parseListPatches(lp.roots).filter((p) => PENDING_STATUS.has(p.status));

  // Patch details are classification only: when they cannot be read, the updates are still right.
  let info = new Map<string, PatchPackage[]>();
  const infoStatus = sectionExit(stdout, 'patch-info-exit', 'zypper');
  const infoText = (stdout.get('patch-info')?.lines ?? []).join('\n');
  if (SUCCESS.has(infoStatus) || infoStatus === EXIT.INF_CAP_NOT_FOUND) {
    const messages =
      infoText.trim() === '' ? [] : messagesOf(parseZypperXml(infoText, 'zypper info -t patch'));
    info = parsePatchInfo(messages);
    if (infoStatus === EXIT.INF_CAP_NOT_FOUND) warnings.push(...problemsOf(messages));
  } else {
    warnings.push(
      `zypper info -t patch failed (exit ${infoStatus}); updates are reported without their patches`,
    );
  }

  const pending: PendingPatch[] = [];
  const used = new Set<string>();
  for (const u of updates) {
    const covering = patches.filter((p) =>
      (info.get(p.name) ?? []).some(
        (b) =>
          b.name === u.name &&
          (b.arch === null || b.arch === u.arch) &&
          compareEvr(b.edition, u.edition) <= 0 &&
          (u.editionOld === null || compareEvr(b.edition, u.editionOld) > 0),
      ),
    );
    for (const p of covering) used.add(p.name);
    const classified = covering.map((p) => ({
      category: patchCategory(p.category),
      severity: normalizeSeverity(p.severity),
    }));
    pending.push({
      name: u.name,
      arch: u.arch,
      installedVersion: u.editionOld ? formatEvr(u.editionOld) : null,
      candidateVersion: formatEvr(u.edition),
      origins: [{ origin: u.repo, archive: '' }],
      ...classify(classified),
      advisories: [...new Set(covering.map((p) => p.name))].sort(),
      held: false,
      keptBack: false,
      isNew: false,
    });
  }
  pending.sort((a, b) => (a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1));
  for (const p of patches) {
    if (used.has(p.name)) continue;
    const what = `zypper patch ${p.name} (${p.category || 'no category'}, status ${p.status || 'unknown'})`;
    warnings.push(
      info.has(p.name)
        ? `${what} applies, but no package update zypper lists ships it (a locked package, or one installed in several architectures)`
        : `${what} applies, but zypper gave no package information for it`,
    );
  }

  const installed = parseInstalledRpms(stdout.get('installed')?.lines ?? []);
  const listedReboot = lu.status === EXIT.INF_REBOOT_NEEDED || lp.status === EXIT.INF_REBOOT_NEEDED;
  const reboot = rebootOf(stdout, installed, listedReboot);
  warnings.push(...reboot.warnings);
  return {
    patches: checkScannedPatches('zypper', pending),
    rebootRequired: reboot.rebootRequired,
    rebootPackages: reboot.rebootPackages,
    warnings: [...new Set(warnings)],
  };
}

/**
 * `zypper needs-rebooting` answers with its exit code: 102 when libzypp flagged a reboot
 * (/run/reboot-needed, written after installing a package listed in /etc/zypp/needreboot), 0 when
 * not. zypper older than 1.14 lacks the command; then the flag file itself, else kernel install
 * times decide. A listing that exited 102 says the same.
 */
function rebootOf(
  stdout: Map<Marker, Section>,
  installed: readonly InstalledRpm[],
  listedReboot: boolean,
): RebootInference {
  const status = sectionExit(stdout, 'needs-rebooting-exit', 'zypper');
  if (status === EXIT.INF_REBOOT_NEEDED || listedReboot) {
    return { rebootRequired: true, rebootPackages: [], warnings: [] };
  }
  if (status === EXIT.OK) return { rebootRequired: false, rebootPackages: [], warnings: [] };
  const flag = stdout.get('reboot-needed')?.arg;
  if (flag !== 'yes' && flag !== 'no') {
    throw new ParseError(`zypper scan reboot-needed marker is "${flag ?? ''}", not yes or no`);
  }
  if (flag === 'yes') return { rebootRequired: true, rebootPackages: [], warnings: [] };
  // SUSE's uname -r (5.14.21-150500.55.19-default) is not the package's version-release.arch.
  return inferKernelReboot(installed, sectionNumber(stdout.get('btime')), null, { compareRunning: false });
}

// ---------------------------------------------------------------------------------------------
// Installing: exact pins, the simulated transaction, the install itself.
// ---------------------------------------------------------------------------------------------

/**
 * The capabilities that select exactly the pinned builds: `name.arch=E:V-R` (`name=E:V-R` when the
 * arch is unknown), read with `--name` so that a name is only ever a package name. Without
 * `--name`, zypper falls back to any provider of the capability when no package has that name and
 * version. The epoch is always written (see {@link explicitEvr}).
 */
function zypperPins(packages: readonly PinnedPackage[]): string[] {
  return rpmPins(packages).map((p) => `${p.name}${p.arch ? `.${p.arch}` : ''}=${explicitEvr(p.evr)}`);
}

/** `zypper install` without prompts, from the repository caches (refreshing is {@link zypperRefreshCommand}'s). */
const ZYPPER_INSTALL = ['--non-interactive', '--no-refresh', '--xmlout', 'install'] as const;
/**
 * The install options of the simulation and the install alike, so that what was simulated is what
 * gets installed: `--no-recommends` (a patch pulls in what is required, not what is recommended),
 * `--no-force-resolution` (a dependency problem is an error, never solved by removing packages;
 * non-interactive zypper then cancels, exit 4), `--name` (see {@link zypperPins}). Licenses are not
 * auto-agreed: a package that asks for a license confirmation fails, for a person to accept.
 */
const ZYPPER_INSTALL_OPTIONS = ['--no-recommends', '--no-force-resolution', '--name'] as const;

/** What a section of zypper's `<install-summary>` does to its solvables. */
const SUMMARY_SECTIONS: Readonly<Record<string, 'new' | 'upgrade' | 'downgrade' | 'reinstall' | 'remove'>> = {
  'to-install': 'new',
  'to-upgrade': 'upgrade',
  'to-upgrade-change-arch': 'upgrade',
  'to-downgrade': 'downgrade',
  'to-downgrade-change-arch': 'downgrade',
  'to-reinstall': 'reinstall',
  'to-remove': 'remove',
};

/** zypper's note, on every dry run, that packages not downloaded yet were not checked for file conflicts. */
const FILECONFLICT_NOTE = /excluded from file conflicts check because/;

/** Warning and error messages worth keeping, one line each. */
function noteworthy(messages: readonly ZypperMessage[]): string[] {
  const out: string[] = [];
  for (const m of messages) {
    if ((m.type === 'warning' || m.type === 'error') && !FILECONFLICT_NOTE.test(m.text)) {
      out.push(`zypper: ${oneLine(m.text)}`);
    }
    // rpm's own output (a .rpmnew file, a scriptlet warning) comes as info "Additional rpm output".
    if (m.type === 'info' && m.text.startsWith('Additional rpm output:')) {
      for (const line of m.text.split('\n')) {
        if (/^\s*warning:/i.test(line)) out.push(`rpm: ${line.trim()}`);
      }
    }
  }
  return out;
}

/** The `Problem:` descriptions of the solver's prompts: why a transaction could not be resolved. */
function solverProblems(roots: readonly XmlElement[]): string[] {
  return roots
    .flatMap((r) => [...descendants(r, 'prompt')])
    .flatMap((p) => p.children.filter((c) => c.name === 'description').map((c) => c.text.trim()))
    .filter((t) => /^Problem/.test(t))
    .map(oneLine);
}

/**
 * The failure of an install or its simulation: the lock (7) and zypper's self-update (103) are
 * retryable, a libzypp error (4) too unless it is a dependency problem the solver reported, which
 * stays until the plan changes; a pin zypper cannot find (104) and the rest are not.
 */
function installFailure(what: string, status: number | null, roots: XmlElement[], stderr: string) {
  const problems = solverProblems(roots);
  const errors = messagesOf(roots)
    .filter((m) => m.type === 'error')
    .map((m) => oneLine(m.text));
  const shown = [...errors, ...problems];
  if (shown.length === 0) {
    shown.push(
      ...stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '')
        .slice(-3),
    );
  }
  const text = shown.join(' | ') || 'no message';
  const details = { exitCode: status, errors: shown };
  if (status === EXIT.ZYPP_LOCKED) {
    return new CommandFailedError(`zypper ${what}: the zypp lock is held (exit 7): ${text}`, {
      retryable: true,
      details,
    });
  }
  if (status === EXIT.INF_RESTART_NEEDED) {
    return new CommandFailedError(`zypper ${what}: zypper updated itself (exit 103); run it again`, {
      retryable: true,
      details,
    });
  }
  if (status === EXIT.INF_CAP_NOT_FOUND) {
    return new CommandFailedError(`zypper ${what}: a pinned package was not found (exit 104): ${text}`, {
      details,
    });
  }
  return new CommandFailedError(`zypper ${what} failed (exit ${status ?? 'signal'}): ${text}`, {
    retryable: status === EXIT.ERR_ZYPP && problems.length === 0,
    details,
  });
}

/** Exit codes after which an install (or its simulation) did what it was asked. */
const INSTALL_SUCCESS = new Set<number>([EXIT.OK, EXIT.INF_REBOOT_NEEDED, EXIT.INF_REPOS_SKIPPED]);

/** zypper's XML, or `[]` when it is unreadable: for reading the reason of a failure only. */
function xmlOrNothing(text: string, what: string): XmlElement[] {
  try {
    return parseZypperXml(text, what);
  } catch {
    return [];
  }
}

/**
 * Parses the `<install-summary>` of `zypper --xmlout install --dry-run`: `to-install` are new
 * packages, `to-upgrade`, `to-downgrade` (a warning) and `to-reinstall` replace installed ones,
 * `to-remove` are removals. `to-change-arch` and `to-change-vendor` repeat packages of those lists
 * and only add a warning. Solvables that are not packages (products follow their release packages)
 * are reported as warnings, not pinned.
 * @throws ParseError when the output was truncated, is not well-formed, or has no install summary.
 * @throws CommandFailedError when zypper failed (see {@link installFailure}).
 */
function parseSimulateInstall(output: CommandOutput): ResolvedTransaction {
  if (output.truncated) throw new ParseError('zypper install simulation output was truncated');
  const status = output.exitCode;
  if (status === null || !INSTALL_SUCCESS.has(status)) {
    throw installFailure(
      'install simulation',
      status,
      xmlOrNothing(output.stdout, 'zypper install'),
      output.stderr,
    );
  }
  const roots = parseZypperXml(output.stdout, 'zypper install --dry-run');
  const summary = roots.flatMap((r) => [...descendants(r, 'install-summary')]);
  if (summary.length !== 1) {
    throw new ParseError(`zypper install --dry-run output has ${summary.length} <install-summary>, not one`, {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const warnings = noteworthy(messagesOf(roots));
  const install: ResolvedTransaction['install'] = [];
  const remove: string[] = [];
  for (const section of summary[0]!.children) {
    const kind = Object.hasOwn(SUMMARY_SECTIONS, section.name) ? SUMMARY_SECTIONS[section.name] : undefined;
    for (const s of section.children.filter((c) => c.name === 'solvable')) {
      const a = s.attributes;
      const label = `${a['type'] ?? '?'} ${a['name'] ?? '?'} ${a['edition'] ?? ''}`.trim();
      if (kind === undefined) {
        if (section.name === 'to-change-arch')
          warnings.push(`zypper would change the architecture of ${label}`);
        if (section.name === 'to-change-vendor') warnings.push(`zypper would change the vendor of ${label}`);
        continue;
      }
      if (a['type'] !== 'package') {
        warnings.push(`zypper would also ${kind === 'remove' ? 'remove' : 'install'} ${label}`);
        continue;
      }
      const edition = parseEvr(a['edition'] ?? '');
      if (!a['name'] || !a['arch'] || !edition) {
        throw new ParseError(`zypper install summary has a solvable without name, arch or edition: ${label}`);
      }
      if (kind === 'remove') {
        remove.push(a['name']);
        continue;
      }
      if (kind === 'downgrade') warnings.push(`zypper would downgrade ${a['name']} to ${formatEvr(edition)}`);
      if (kind === 'reinstall') warnings.push(`zypper would reinstall ${a['name']} ${formatEvr(edition)}`);
      install.push({ name: a['name'], version: formatEvr(edition), arch: a['arch'], isNew: kind === 'new' });
    }
  }
  return { install, remove: [...new Set(remove)], warnings: [...new Set(warnings)] };
}

/**
 * Checks an install: 0 is success, 102 success with a reboot to do (libzypp flagged one), 106
 * success from the repositories that could be read (a pin in a skipped one would have been 104).
 * Everything else fails (see {@link installFailure}). zypper's warnings and rpm's `warning:` lines
 * are returned; unreadable XML after a successful exit is a warning, not a failure, because the
 * packages are installed and the executor verifies their versions next.
 */
function parseInstall(output: CommandOutput): { rebootRequired: boolean; warnings: string[] } {
  const status = output.exitCode;
  if (status === null || !INSTALL_SUCCESS.has(status)) {
    throw installFailure('install', status, xmlOrNothing(output.stdout, 'zypper install'), output.stderr);
  }
  const warnings: string[] = [];
  try {
    const roots = parseZypperXml(output.stdout, 'zypper install');
    warnings.push(...noteworthy(messagesOf(roots)));
    const removed = roots
      .flatMap((r) => [...descendants(r, 'install-summary')])
      .flatMap((s) => s.children.filter((c) => c.name === 'to-remove'))
      .flatMap((s) => s.children.map((c) => c.attributes['name'] ?? '?'));
    for (const name of removed) warnings.push(`zypper removed ${name}`);
  } catch (error) {
    warnings.push(`zypper install output was not understood: ${(error as Error).message}`);
  }
  return { rebootRequired: status === EXIT.INF_REBOOT_NEEDED, warnings: [...new Set(warnings)] };
}

/**
 * The zypper driver (SLES, openSUSE).
 *
 * Pending updates are `zypper list-updates` (package updates zypper would install), classified by
 * the patches of `zypper list-patches` that ship them: a patch covers an update when its
 * `info -t patch` conflicts name a build of the same name (and arch, when given) newer than the
 * installed one and not newer than the candidate. The category is the patch's, mapped to the
 * domain's (`security` stays; `recommended` and `bugfix` are bugfix; `optional`, `feature` and
 * `enhancement` are enhancement; anything else is other); the severity is zypper's (critical,
 * important, moderate, low; empty is `unspecified`). A package covered by several patches lists them
 * all and takes the highest category and, within it, the worst severity. A package no patch covers
 * (a repository without patches) is `unknown` / `unspecified`. A needed patch that no listed update
 * ships (a locked package, or one installed in two architectures, which zypper does not update) is
 * reported as a warning.
 *
 * Exit codes: 0, 100, 101 and 102 are success (102 flags a reboot); 106 (repositories skipped) is a
 * success with a warning per skipped repository, because the other repositories' results are exact
 * and one dead mirror should not hide them; 7 (lock), 103 (zypper updated itself) and 4 fail
 * retryably; 6 and every other code fail.
 *
 * The scan runs without sudo and with `--no-refresh`; see {@link zypperRefreshCommand}.
 *
 * Installs pin exact builds (`zypper install --name 'name.arch=E:V-R'`), simulated first with
 * `--dry-run` and read from the XML install summary; both run as root (zypper refuses `install`
 * to a normal user, dry run or not) with the same options. zypper cannot be told to refuse removals: the
 * plan refuses a simulation that removes anything, and the executor simulates again right before
 * installing (the drift check), so a removal is caught before the install runs. Installed versions
 * come from `rpm -q`.
 */
export const zypperDriver: PackageManagerDriver = {
  manager: 'zypper',
  supports(os: OsFacts): boolean {
    return os.packageManager === 'zypper';
  },
  scanCommand(): ScriptCommand {
    return { interpreter: ['sh', '-s'], sudo: false, env: { ...ZYPPER_ENV }, script: SCAN_SCRIPT };
  },
  parseScan,
  // As root: zypper refuses `install` to a normal user even with --dry-run ("Root privileges are
  // required", exit 5). A root dry run takes the zypp lock, so a busy zypper fails it retryably (7).
  simulateInstallCommand(packages: readonly PinnedPackage[]): Command {
    return {
      argv: ['zypper', ...ZYPPER_INSTALL, '--dry-run', ...ZYPPER_INSTALL_OPTIONS, ...zypperPins(packages)],
      sudo: true,
      env: { ...ZYPPER_ENV },
    };
  },
  parseSimulateInstall,
  installCommand(packages: readonly PinnedPackage[]): Command {
    return {
      argv: ['zypper', ...ZYPPER_INSTALL, ...ZYPPER_INSTALL_OPTIONS, ...zypperPins(packages)],
      sudo: true,
      env: { ...ZYPPER_ENV },
    };
  },
  parseInstall,
  installedVersionsCommand: rpmInstalledVersionsCommand,
  parseInstalledVersions: parseRpmInstalledVersions,
};

/** `zypper --non-interactive refresh`: refreshes the repository caches a scan reads. Needs root and the network. */
export function zypperRefreshCommand(): Command {
  return { argv: ['zypper', '--non-interactive', 'refresh'], sudo: true, env: { ...ZYPPER_ENV } };
}
