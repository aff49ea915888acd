import type { OsFacts, OsFamily, PackageManager } from '../domain/index.js';
import { ParseError } from '../errors.js';
import type { Command, ScriptCommand } from '../ports/adapter.js';
import type { CommandOutput } from './driver.js';

/** Reads the os-release file of a host; its stdout goes to {@link parseOsRelease}. */
export const OS_RELEASE_COMMAND: Command = Object.freeze({ argv: Object.freeze(['cat', '/etc/os-release']) });

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_ID = 64;
const MAX_VERSION_ID = 64;
const MAX_PRETTY_NAME = 256;

/**
 * Reads one os-release value the way a POSIX shell would: double-quoted parts honour the
 * backslash escapes of `"`, `\`, `$` and backtick, single-quoted parts are literal, and an unquoted
 * backslash escapes the next character. Returns `undefined` for an unterminated quote.
 */
function unquote(raw: string): string | undefined {
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (c === '"') {
      i++;
      let closed = false;
      while (i < raw.length) {
        const d = raw[i]!;
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        const next = raw[i + 1];
        if (d === '\\' && next !== undefined && '"\\$`'.includes(next)) {
          out += next;
          i += 2;
          continue;
        }
        out += d;
        i++;
      }
      if (!closed) return undefined;
    } else if (c === "'") {
      const end = raw.indexOf("'", i + 1);
      if (end < 0) return undefined;
      out += raw.slice(i + 1, end);
      i = end + 1;
    } else if (c === '\\') {
      const next = raw[i + 1];
      if (next !== undefined) out += next;
      i += 2;
    } else if (c === ' ' || c === '\t') {
      // An unquoted blank ends the shell word; what follows is not part of the value.
      break;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Parses `KEY=value` lines; later assignments win, as when a shell sources the file. */
function parseAssignments(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    if (!KEY.test(key)) continue;
    const value = unquote(line.slice(eq + 1));
    if (value === undefined) continue;
    values.set(key, value);
  }
  return values;
}

const DEBIAN_IDS = new Set(['debian', 'ubuntu']);
const RHEL_IDS = new Set(['rhel', 'centos', 'fedora', 'rocky', 'almalinux', 'ol', 'amzn']);
const SUSE_IDS = new Set(['sles', 'sled', 'suse']);

function familyOf(id: string): OsFamily | undefined {
  if (DEBIAN_IDS.has(id)) return 'debian';
  if (RHEL_IDS.has(id)) return 'rhel';
  if (SUSE_IDS.has(id) || id.startsWith('opensuse')) return 'suse';
  return undefined;
}

function major(versionId: string): number | undefined {
  const m = /^(\d+)/.exec(versionId);
  return m ? Number(m[1]) : undefined;
}

function rhelManager(id: string, versionId: string): PackageManager {
  const v = major(versionId);
  if (v === undefined) return 'dnf';
  // Amazon Linux numbers releases 2 and 2018.03 (yum) versus 2022+ (dnf).
  if (id === 'amzn') return v >= 2022 ? 'dnf' : 'yum';
  // Fedora has shipped dnf since 22; older Fedora is not a target.
  if (id === 'fedora') return 'dnf';
  // Enterprise Linux got dnf with release 8; EL7 and older (CentOS, RHEL, Oracle, clones) only have yum.
  return v < 8 ? 'yum' : 'dnf';
}

/**
 * Parses `/etc/os-release` (freedesktop.org format) into {@link OsFacts}.
 *
 * The family comes from `ID`, else from the first `ID_LIKE` entry Fleetward knows: Debian and Ubuntu
 * (apt), the Red Hat family (dnf, or yum for EL7 and older and for Amazon Linux 2), and SUSE (zypper).
 * Anything else is `unknown`, with no package manager.
 *
 * @throws ParseError when there is no non-empty `ID`, or it is longer than 64 characters.
 */
export function parseOsRelease(text: string): OsFacts {
  const values = parseAssignments(text);
  const rawId = values.get('ID');
  if (rawId === undefined || rawId === '') {
    throw new ParseError('os-release has no ID line', { details: { excerpt: text.slice(0, 200) } });
  }
  if (rawId.length > MAX_ID) {
    throw new ParseError(`os-release ID is longer than ${MAX_ID} characters`, {
      details: { excerpt: rawId.slice(0, 100) },
    });
  }
  // The spec makes ID lower-case; folding guards against files that break that rule.
  const id = rawId.toLowerCase();
  const versionId = (values.get('VERSION_ID') ?? '').slice(0, MAX_VERSION_ID);
  const prettyName = (values.get('PRETTY_NAME') ?? '').slice(0, MAX_PRETTY_NAME);
  const like = (values.get('ID_LIKE') ?? '').toLowerCase().split(/\s+/).filter(Boolean);

  let family: OsFamily = familyOf(id) ?? 'unknown';
  // The ID that decided the family: a derivative is managed like the distribution it follows.
  let basis = id;
  if (family === 'unknown') {
    for (const candidate of like) {
      const f = familyOf(candidate);
      if (f) {
        family = f;
        basis = candidate;
        break;
      }
    }
  }

  const facts: OsFacts = { family, id, versionId, prettyName };
  if (family === 'debian') facts.packageManager = 'apt';
  else if (family === 'rhel') facts.packageManager = rhelManager(basis, versionId);
  else if (family === 'suse') facts.packageManager = 'zypper';
  return facts;
}

/**
 * Prints a host's OS facts in one round trip: `/etc/os-release` (each line prefixed with `|`, so
 * no line of the file can pass for a marker; read by the shell itself, no process started), whether
 * it could be read, and `uname -r -m`,
 * between `@@fleetward:` markers, closed by `@@fleetward:os-end`. Constant text. A scan script can
 * follow it in the same shell (see `scanServer`); its output then starts after `os-end`.
 */
export const OS_FACTS_SCRIPT = `echo '@@fleetward:os-release'
rc=1
if [ -r /etc/os-release ]; then
  rc=0
  while IFS= read -r l || [ -n "$l" ]; do printf '|%s\\n' "$l"; done < /etc/os-release
else
  echo 'cannot read /etc/os-release: it does not exist or is not readable' >&2
fi
echo "@@fleetward:os-release-exit $rc"
echo '@@fleetward:uname'
uname -r -m
echo '@@fleetward:os-end'
`;

/** The line that ends {@link OS_FACTS_SCRIPT}'s output. */
export const OS_FACTS_END = '@@fleetward:os-end';

/** Runs {@link OS_FACTS_SCRIPT} alone, without sudo. */
export const OS_FACTS_COMMAND: ScriptCommand = Object.freeze({
  interpreter: Object.freeze(['sh', '-s']),
  script: OS_FACTS_SCRIPT,
});

/** What {@link OS_FACTS_SCRIPT} printed, split from what a scan script printed after it. */
export interface OsFactsOutput {
  /** The os-release file, or `null` when it could not be read. */
  osRelease: string | null;
  /** Why it could not be read: the shell's message or the exit status. */
  failure: string;
  /** `uname -r -m`: kernel release and architecture, when uname printed them. */
  kernel?: string;
  arch?: string;
  /** The rest of the output, for the scan script's parser (its stdout after `os-end`). */
  rest: CommandOutput;
}

/**
 * Splits the output of {@link OS_FACTS_SCRIPT} (alone or followed by a scan script) into the OS
 * facts and the rest. Lines before the first marker (a login banner) are not ours.
 * @throws ParseError when the markers are missing or out of order.
 */
export function splitOsFacts(output: CommandOutput): OsFactsOutput {
  const lines = output.stdout.split('\n');
  const start = lines.indexOf('@@fleetward:os-release');
  const end = lines.indexOf(OS_FACTS_END, start + 1);
  const exitAt = lines.findIndex((l, i) => i > start && l.startsWith('@@fleetward:os-release-exit '));
  const unameAt = lines.indexOf('@@fleetward:uname', exitAt + 1);
  if (start < 0 || exitAt < 0 || unameAt < 0 || end < unameAt) {
    throw new ParseError('OS detection output does not have the expected @@fleetward markers', {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const status = lines[exitAt]!.slice('@@fleetward:os-release-exit '.length);
  const release = lines
    .slice(start + 1, exitAt)
    .filter((l) => l.startsWith('|'))
    .map((l) => l.slice(1))
    .join('\n');
  const [kernel, arch] = (lines[unameAt + 1] ?? '').trim().split(/\s+/);
  // The shell's complaint about the file precedes any scan script's marked stderr.
  const stderr = output.stderr.split('\n');
  const firstMarker = stderr.findIndex((l) => l.startsWith('@@fleetward:'));
  const ownStderr = (firstMarker < 0 ? stderr : stderr.slice(0, firstMarker)).join('\n').trim();
  return {
    osRelease: status === '0' ? release : null,
    failure: ownStderr || `exit ${status}`,
    ...(kernel && unameAt + 1 < end ? { kernel } : {}),
    ...(arch && unameAt + 1 < end ? { arch } : {}),
    rest: { ...output, stdout: lines.slice(end + 1).join('\n') },
  };
}
