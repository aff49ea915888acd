import type { Server } from '../domain/index.js';
import { runCommand } from '../engine/exec.js';
import { CommandFailedError, ConflictError, NotFoundError, ParseError } from '../errors.js';
import type { Adapter, Command } from '../ports/adapter.js';
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

const READ_SCRIPT = `set -eu
entry=$(getent passwd -- "$1") || { echo "no such user: $1" >&2; exit ${NO_SUCH_USER}; }
home=$(printf '%s\\n' "$entry" | cut -d: -f6)
f="$home/.ssh/authorized_keys"
printf '%s\\n' "$f"
if [ -f "$f" ]; then
  sha256sum < "$f" | cut -d' ' -f1
  cat -- "$f"
else
  echo absent
fi
`;

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
 * place of `.ssh` or the file is refused: root must not write where the user points it.
 */
const WRITE_SCRIPT = `set -eu
login=$1; expected=$2
entry=$(getent passwd -- "$login") || { echo "no such user: $login" >&2; exit ${NO_SUCH_USER}; }
home=$(printf '%s\\n' "$entry" | cut -d: -f6)
uid=$(printf '%s\\n' "$entry" | cut -d: -f3)
gid=$(printf '%s\\n' "$entry" | cut -d: -f4)
dir="$home/.ssh"; f="$dir/authorized_keys"
if [ -L "$dir" ] || [ -L "$f" ]; then echo "$dir or $f is a symbolic link; refusing to write through it" >&2; exit ${UNSAFE_PATH}; fi
if [ ! -d "$dir" ]; then mkdir -m 700 -- "$dir"; chown -- "$uid:$gid" "$dir"; fi
if command -v flock >/dev/null 2>&1; then exec 9<"$dir"; flock -x -w 30 9; fi
if [ -f "$f" ]; then current=$(sha256sum < "$f" | cut -d' ' -f1); else current=absent; fi
if [ "$current" != "$expected" ]; then echo "$f changed since it was read" >&2; exit ${CHANGED}; fi
tmp=$(mktemp "$dir/.authorized_keys.fleetward.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod 600 -- "$tmp"
chown -- "$uid:$gid" "$tmp"
sync -- "$tmp" 2>/dev/null || sync
mv -f -- "$tmp" "$f"
trap - EXIT
if command -v restorecon >/dev/null 2>&1; then restorecon -- "$f" || true; fi
sync -- "$dir" 2>/dev/null || true
sha256sum < "$f" | cut -d' ' -f1
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

const INVENTORY_SCRIPT = `set -u
getent passwd | while IFS=: read -r name _ uid _ _ home _; do
  f="$home/.ssh/authorized_keys"
  if [ -n "$home" ] && [ -f "$f" ] && [ ! -L "$f" ]; then
    printf '\\036%s\\n' "$name"
    cat -- "$f" | tr -d '\\036'
    printf '\\n'
  fi
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
  const files = new Map<string, string>();
  for (const block of out.stdout.split('\u001e').slice(1)) {
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
