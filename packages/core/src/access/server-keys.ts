import type { Server } from '../domain/index.js';
import { runCommand } from '../engine/exec.js';
import { CommandFailedError, ConflictError, NotFoundError, ParseError } from '../errors.js';
import type { Adapter, Command } from '../ports/adapter.js';
import { UnsafePathError, type UnsafePathReason } from '../util/safe-fs.js';
import { parseSshdVersion, type SshdVersion } from './sshd-version.js';

/**
 * What Fleetward does to `authorized_keys` on a server, over `exec`. Every script here is a
 * constant: logins, hashes and instants reach it as positional arguments and file content on
 * standard input, never as shell text.
 */

const TIMEOUT_MS = 60_000;

/** The login does not exist on the server (so neither do its keys). */
export class NoSuchLoginError extends NotFoundError {
  constructor(login: string, server: Server) {
    super('login', `${login} on ${server.name}`, { details: { login, serverId: server.id } });
  }
}

/** Exit codes of the scripts below, so failures can be told apart. */
const NO_SUCH_USER = 67;
const UNSAFE_PATH = 73;
const CHANGED = 75;

/** The sshd the server runs (`sshd -V`, else the client's `ssh -V`); undefined when unknown. */
export async function sshdVersionOf(adapter: Adapter, server: Server): Promise<SshdVersion | undefined> {
  const out = await runCommand(
    adapter,
    server,
    {
      interpreter: ['sh', '-s'],
      script: `for s in /usr/sbin/sshd /usr/local/sbin/sshd /usr/bin/sshd; do
  if [ -x "$s" ]; then "$s" -V 2>&1; exit 0; fi
done
ssh -V 2>&1
exit 0
`,
    },
    { timeoutMs: TIMEOUT_MS, maxOutputBytes: 64 * 1024 },
  );
  return parseSshdVersion(`${out.stdout}\n${out.stderr}`);
}

/**
 * The instant as `YYYYMMDDHHMMSS` in the server's own time zone, which sshd before 9.1 reads
 * `expiry-time` in. Asked of the server for that instant (not an offset taken now), so a daylight
 * saving change before expiry is accounted for. TZ is dropped: sshd runs without the caller's.
 */
export async function hostLocalTime(adapter: Adapter, server: Server, at: Date): Promise<string> {
  const seconds = Math.floor(at.getTime() / 1000);
  const out = await runCommand(
    adapter,
    server,
    { argv: ['env', '-u', 'TZ', 'date', '-d', `@${seconds}`, '+%Y%m%d%H%M%S'] },
    { timeoutMs: TIMEOUT_MS, maxOutputBytes: 4096 },
  );
  const value = out.stdout.trim();
  if (out.exitCode !== 0 || !/^\d{14}$/.test(value)) {
    throw new ParseError(`could not read the local time of ${server.name}: ${out.stderr.trim() || value}`);
  }
  return value;
}

/** `authorized_keys` of one login as read: its path, content and hash (`absent` when there is none). */
export interface AuthorizedKeysFile {
  path: string;
  text: string;
  hash: string;
}

/*
 * Shared by the scripts below. Root works in a folder its user controls, so nothing is done by a
 * name that user could swap: the scripts `cd -P` into `.ssh` and check afterwards that the folder
 * they are in is the one at `~/.ssh` (same device and inode, `~/.ssh` not a link), then use
 * names relative to it; a file is opened once and the opened file is checked to be the one at
 * the name (a link at the name has its own inode). `unsafe` names what was refused and why.
 */
const ENTER_SSH_DIR = `unsafe() { printf 'unsafe:%s:%s\\n' "$1" "$2" >&2; exit ${UNSAFE_PATH}; }
enter_ssh_dir() {
  if [ -L "$dir" ]; then unsafe symbolic-link "$dir"; fi
  cd -P -- "$dir" || unsafe not-a-directory "$dir"
  if [ "$(stat -c '%d:%i' .)" != "$(stat -c '%d:%i' -- "$dir")" ]; then unsafe folder-replaced "$dir"; fi
}
open_keys() {
  if [ -L authorized_keys ]; then unsafe symbolic-link "$f"; fi
  if [ ! -f authorized_keys ]; then unsafe not-a-regular-file "$f"; fi
  exec 3<authorized_keys
  if [ "$(stat -L -c '%d:%i' /dev/fd/3)" != "$(stat -c '%d:%i' authorized_keys)" ]; then unsafe symbolic-link "$f"; fi
}
`;

const USER_OF = `entry=$(getent passwd -- "$1") || { echo "no such user: $1" >&2; exit ${NO_SUCH_USER}; }
home=$(printf '%s\\n' "$entry" | cut -d: -f6)
uid=$(printf '%s\\n' "$entry" | cut -d: -f3)
gid=$(printf '%s\\n' "$entry" | cut -d: -f4)
dir="$home/.ssh"; f="$dir/authorized_keys"
`;

const READ_SCRIPT = `set -eu
${USER_OF}${ENTER_SSH_DIR}printf '%s\\n' "$f"
if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then echo absent; exit 0; fi
enter_ssh_dir
if [ ! -e authorized_keys ] && [ ! -L authorized_keys ]; then echo absent; exit 0; fi
open_keys
sha256sum <&3 | cut -d' ' -f1
exec 3<&-
open_keys
cat <&3
`;

/** What a script refused (exit {@link UNSAFE_PATH}), as a typed error naming the path. */
function unsafePath(server: Server, login: string, stderr: string): UnsafePathError {
  const match = /^unsafe:([a-z-]+):(.*)$/m.exec(stderr);
  const reason = (match?.[1] ?? 'folder-replaced') as UnsafePathReason;
  const path = match?.[2] ?? `~${login}/.ssh`;
  const what: Record<string, string> = {
    'symbolic-link': 'is a symbolic link',
    'not-a-directory': 'is not a directory',
    'not-a-regular-file': 'is not a regular file',
    'wrong-owner': `is not owned by ${login}`,
    'folder-replaced': 'was replaced while it was being worked on',
  };
  return new UnsafePathError(
    path,
    reason,
    `${path} (login ${login} on ${server.name}) ${what[reason] ?? reason}: Fleetward reads and writes authorized_keys only in the login's own .ssh directory, never through a link`,
  );
}

/** Reads a login's `authorized_keys` (as root, through sudo when the login is not root). */
export async function readAuthorizedKeys(
  adapter: Adapter,
  server: Server,
  login: string,
): Promise<AuthorizedKeysFile> {
  const out = await runCommand(
    adapter,
    server,
    { argv: ['sh', '-c', READ_SCRIPT, 'fleetward-read-keys', login], sudo: true },
    { timeoutMs: TIMEOUT_MS, maxOutputBytes: 8 * 1024 * 1024 },
  );
  if (out.exitCode === NO_SUCH_USER) throw new NoSuchLoginError(login, server);
  if (out.exitCode === UNSAFE_PATH) throw unsafePath(server, login, out.stderr);
  if (out.exitCode !== 0) {
    throw new CommandFailedError(
      `reading authorized_keys of ${login} on ${server.name} failed: ${out.stderr.trim()}`,
      {
        details: { serverId: server.id, exitCode: out.exitCode },
      },
    );
  }
  if (out.truncated)
    throw new ParseError(`authorized_keys of ${login} on ${server.name} is larger than 8 MiB`);
  const first = out.stdout.indexOf('\n');
  const second = out.stdout.indexOf('\n', first + 1);
  if (first < 0 || second < 0)
    throw new ParseError(`unexpected answer reading authorized_keys on ${server.name}`);
  const path = out.stdout.slice(0, first);
  const hash = out.stdout.slice(first + 1, second);
  if (hash !== 'absent' && !/^[a-f0-9]{64}$/.test(hash)) {
    throw new ParseError(`unexpected hash reading authorized_keys on ${server.name}`);
  }
  return { path, hash, text: hash === 'absent' ? '' : out.stdout.slice(second + 1) };
}

/*
 * Replaces the file only if it still has the hash it was read with (compare-and-swap), through a
 * temporary file in the same directory: written, fsynced, renamed over the old one, so sshd sees
 * the old file or the new one and never half of it. Mode 0600 and the login's ownership are set
 * before the rename; SELinux labels are restored where restorecon exists. A symbolic link in
 * place of `.ssh` or the file is refused, and so is a `.ssh` the login does not own: root must
 * not write where the user points it (a link in a path component above `.ssh` can lead to
 * another login's folder). The temporary file is opened once (for appending, so a link planted
 * at its name truncates nothing), checked to be the empty file mktemp made, and from then on
 * reached only through that descriptor (`/dev/fd/4`); `mv -T` renames over the name itself.
 */
const WRITE_SCRIPT = `set -eu
expected=$2
${USER_OF}${ENTER_SSH_DIR}made=
if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then
  mkdir -m 700 -- "$dir"
  made=$(stat -c '%d:%i' -- "$dir")
fi
enter_ssh_dir
owner=$(stat -c '%u' .)
if [ "$owner" != "$uid" ]; then
  if [ -n "$made" ] && [ "$owner" = "$(id -u)" ] && [ "$(stat -c '%d:%i' .)" = "$made" ]; then
    chown -- "$uid:$gid" .
  else
    unsafe wrong-owner "$dir"
  fi
fi
if command -v flock >/dev/null 2>&1; then exec 9<.; flock -x -w 30 9; fi
if [ -e authorized_keys ] || [ -L authorized_keys ]; then
  open_keys
  current=$(sha256sum <&3 | cut -d' ' -f1)
  exec 3<&-
else
  current=absent
fi
if [ "$current" != "$expected" ]; then echo "$f changed since it was read" >&2; exit ${CHANGED}; fi
tmp=$(mktemp ./.authorized_keys.fleetward.XXXXXX)
trap 'rm -f -- "$tmp"' EXIT
exec 4>>"$tmp"
if [ "$(stat -L -c '%d:%i:%u:%s' /dev/fd/4)" != "$(stat -c '%d:%i' -- "$tmp"):$(id -u):0" ]; then
  unsafe symbolic-link "$dir/\${tmp#./}"
fi
cat >&4
chmod 600 /dev/fd/4
chown -- "$uid:$gid" /dev/fd/4
sync -- /dev/fd/4 2>/dev/null || sync
mv -T -f -- "$tmp" authorized_keys
trap - EXIT
if [ "$(stat -c '%d:%i' authorized_keys)" != "$(stat -L -c '%d:%i' /dev/fd/4)" ]; then
  echo "$f changed while it was being written" >&2; exit ${CHANGED}
fi
if command -v restorecon >/dev/null 2>&1; then restorecon -- authorized_keys || true; fi
sync -- . 2>/dev/null || true
sha256sum /dev/fd/4 | cut -d' ' -f1
`;

/**
 * Writes a login's `authorized_keys` if it is unchanged since it was read with `expectedHash`.
 * @throws ConflictError when someone else changed it in between: read again and redo the edit.
 */
export async function writeAuthorizedKeys(
  adapter: Adapter,
  server: Server,
  login: string,
  expectedHash: string,
  text: string,
): Promise<{ hash: string }> {
  const command: Command = {
    argv: ['sh', '-c', WRITE_SCRIPT, 'fleetward-write-keys', login, expectedHash],
    stdin: text,
    sudo: true,
  };
  const out = await runCommand(adapter, server, command, {
    timeoutMs: TIMEOUT_MS,
    maxOutputBytes: 64 * 1024,
  });
  if (out.exitCode === CHANGED) {
    throw new ConflictError(
      `authorized_keys of ${login} on ${server.name} changed while it was being edited`,
    );
  }
  if (out.exitCode === NO_SUCH_USER) throw new NoSuchLoginError(login, server);
  if (out.exitCode === UNSAFE_PATH) throw unsafePath(server, login, out.stderr);
  if (out.exitCode !== 0) {
    throw new CommandFailedError(
      `writing authorized_keys of ${login} on ${server.name} failed: ${out.stderr.trim().slice(0, 500)}`,
      { details: { serverId: server.id, exitCode: out.exitCode } },
    );
  }
  return { hash: out.stdout.trim() };
}

/**
 * Reads, edits and writes back `authorized_keys` with compare-and-swap, redoing the edit when the
 * file changed in between (a few times, then the conflict is reported).
 */
export async function editAuthorizedKeys(
  adapter: Adapter,
  server: Server,
  login: string,
  edit: (current: AuthorizedKeysFile) => string | undefined,
): Promise<AuthorizedKeysFile> {
  for (let attempt = 1; ; attempt++) {
    const current = await readAuthorizedKeys(adapter, server, login);
    const next = edit(current);
    if (next === undefined || next === current.text) return current;
    try {
      const { hash } = await writeAuthorizedKeys(adapter, server, login, current.hash, next);
      return { path: current.path, text: next, hash };
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= 4) throw error;
    }
  }
}

/*
 * Every login's file, read as READ_SCRIPT reads one (no links, each in a subshell that enters its
 * `.ssh`). A refused file is reported as a `\035login\tproblem\tpath` line and the others are
 * still read; the function below then refuses the whole inventory, so that keys sshd would honour
 * through a link are never silently left out of it.
 */
const INVENTORY_SCRIPT = `set -u
getent passwd | while IFS=: read -r name _ uid _ _ home _; do
  [ -n "$home" ] || continue
  dir="$home/.ssh"; f="$dir/authorized_keys"
  ( unsafe() { printf '\\035%s\\t%s\\t%s\\n' "$name" "$1" "$2"; exit 0; }
    if [ -L "$dir" ]; then unsafe symbolic-link "$dir"; fi
    [ -d "$dir" ] || exit 0
    cd -P -- "$dir" 2>/dev/null || exit 0
    if [ "$(stat -c '%d:%i' .)" != "$(stat -c '%d:%i' -- "$dir")" ]; then unsafe folder-replaced "$dir"; fi
    if [ -L authorized_keys ]; then unsafe symbolic-link "$f"; fi
    [ -f authorized_keys ] || exit 0
    exec 3<authorized_keys || exit 0
    if [ "$(stat -L -c '%d:%i' /dev/fd/3)" != "$(stat -c '%d:%i' authorized_keys)" ]; then unsafe symbolic-link "$f"; fi
    printf '\\036%s\\n' "$name"
    tr -d '\\035\\036' <&3
    printf '\\n'
  )
done
`;

/** Every login's `authorized_keys` on the server, by login. */
export async function readAllAuthorizedKeys(adapter: Adapter, server: Server): Promise<Map<string, string>> {
  const out = await runCommand(
    adapter,
    server,
    { argv: ['sh', '-c', INVENTORY_SCRIPT, 'fleetward-key-inventory'], sudo: true },
    { timeoutMs: TIMEOUT_MS, maxOutputBytes: 32 * 1024 * 1024 },
  );
  if (out.exitCode !== 0) {
    throw new CommandFailedError(`listing authorized keys on ${server.name} failed: ${out.stderr.trim()}`, {
      details: { serverId: server.id, exitCode: out.exitCode },
    });
  }
  const refused: { login: string; reason: string; path: string }[] = [];
  // The script strips \035 from file contents, so a line starting with it is always a refusal.
  const lines = out.stdout.split('\n');
  for (const line of lines) {
    if (!line.startsWith('\u001d')) continue;
    const [login = '', reason = '', ...path] = line.slice(1).split('\t');
    refused.push({ login, reason, path: path.join('\t') });
  }
  const text = lines.filter((line) => !line.startsWith('\u001d')).join('\n');
  if (refused.length) {
    const first = refused[0]!;
    const error = unsafePath(server, first.login, `unsafe:${first.reason}:${first.path}`);
    if (refused.length === 1) throw error;
    throw new UnsafePathError(
      error.filePath,
      error.reason,
      `${error.issues[0]!.message}; ${refused.length - 1} more refused: ${refused
        .slice(1, 6)
        .map((r) => r.path)
        .join(', ')}`,
    );
  }
  const files = new Map<string, string>();
  for (const block of text.split('\u001e').slice(1)) {
    const newline = block.indexOf('\n');
    if (newline < 0) continue;
    files.set(block.slice(0, newline), block.slice(newline + 1));
  }
  return files;
}

const LOG_SCRIPT = `for f in /var/log/auth.log /var/log/secure /var/log/fleetward-lab/sshd.log; do
  if [ -r "$f" ]; then printf '%s\\n' "$f"; tail -n 20000 -- "$f"; exit 0; fi
done
if command -v journalctl >/dev/null 2>&1; then
  echo journal
  journalctl --no-pager -o short-iso -n 20000 _COMM=sshd 2>/dev/null
  exit 0
fi
echo none
`;

/** The tail of the server's sshd log, and where it came from (`none` when there is none to read). */
export async function readSshdLog(
  adapter: Adapter,
  server: Server,
): Promise<{ source: string; text: string }> {
  const out = await runCommand(
    adapter,
    server,
    { argv: ['sh', '-c', LOG_SCRIPT, 'fleetward-sshd-log'], sudo: true },
    { timeoutMs: TIMEOUT_MS, maxOutputBytes: 16 * 1024 * 1024 },
  );
  const newline = out.stdout.indexOf('\n');
  if (out.exitCode !== 0 || newline < 0) return { source: 'none', text: '' };
  return { source: out.stdout.slice(0, newline), text: out.stdout.slice(newline + 1) };
}
