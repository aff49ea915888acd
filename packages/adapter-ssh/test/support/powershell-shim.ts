import { buildPowerShellInvocation, buildPowerShellRunner } from '@fleetward/core/os';

/** Where the shim goes on the lab host: first in the PATH of every login. */
export const SHIM_PATH = '/usr/local/bin/powershell.exe';
/** One line per invocation (`direct` or `bootstrap`), and `channel-closed <pid>` when the reader of its stdout went away. */
export const SHIM_LOG = '/var/log/fleetward-powershell-shim.log';

/** The runner's lines after its three assignments: constant for every command. */
function runnerTail(): string {
  return buildPowerShellRunner({ argv: ['x'] }, { stdin: 'stdin-line' })
    .slice(3)
    .join('\r\n');
}

/** The bootstrap script, taken from an invocation whose runner cannot fit the command line. */
function bootstrapScript(): string {
  const invocation = buildPowerShellInvocation({ argv: ['x', 'y'.repeat(10_000)] });
  if (!invocation.runnerOnStdin) throw new Error('expected the runner to travel on stdin');
  return Buffer.from(invocation.arguments.at(-1) ?? '', 'base64').toString('utf16le');
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/**
 * A `powershell.exe` for a Linux lab host (python3) that does what Fleetward's PowerShell runner
 * does, and nothing else: it checks the flags, decodes `-EncodedCommand` (UTF-16LE base64),
 * recognises the runner (its constant lines must be exactly core's) or the bootstrap (then reads
 * the runner from the first stdin line), reads the input line when `$fw_has_stdin` is `'1'`, and
 * executes argv with the env (no shell), feeding it the decoded input. Exit code: the program's;
 * 127 when it cannot be started.
 *
 * It proves the SSH adapter's Windows path (command string, encoding, stdin, exit codes,
 * streaming, caps, timeouts), not cmd.exe or PowerShell semantics.
 */
export function powerShellShim(): string {
  return `#!/usr/bin/python3
# Fleetward test shim standing in for powershell.exe; see packages/adapter-ssh/test/support/powershell-shim.ts.
import base64, os, re, select, subprocess, sys, threading

FLAGS = ['-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-EncodedCommand']
TAIL = base64.b64decode('${b64(runnerTail())}').decode('utf-8')
BOOTSTRAP = base64.b64decode('${b64(bootstrapScript())}').decode('utf-8')
LOG = '${SHIM_LOG}'

def fail(message, code=64):
    sys.stderr.write('powershell.exe shim: ' + message + '\\n')
    sys.exit(code)

def log(line):
    with open(LOG, 'a') as f:
        f.write(line + '\\n')

def b64(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except Exception:
        fail('not base64: ' + what)

def read_line(what):
    # Byte by byte, so nothing after the line is taken from the program's stdin.
    data = bytearray()
    while not data.endswith(b'\\n'):
        chunk = os.read(0, 1)
        if not chunk:
            break
        data += chunk
    if not data.endswith(b'\\r\\n'):
        fail(what + ' is not a CRLF-terminated line')
    return data[:-2].decode('ascii')

if sys.argv[1:-1] != FLAGS:
    fail('unexpected arguments: ' + repr(sys.argv[1:-1]))
script = b64(sys.argv[-1], '-EncodedCommand').decode('utf-16-le')
if script == BOOTSTRAP:
    log('bootstrap')
    script = b64(read_line('the runner line'), 'runner').decode('utf-8')
else:
    log('direct')
lines = script.split('\\r\\n')
argv_m = re.fullmatch(r"\\$fw_argv = '([A-Za-z0-9+/=_ ]*)'", lines[0])
env_m = re.fullmatch(r"\\$fw_env = '([A-Za-z0-9+/=_ ]*)'", lines[1] if len(lines) > 1 else '')
stdin_m = re.fullmatch(r"\\$fw_has_stdin = '([01])'", lines[2] if len(lines) > 2 else '')
if not (argv_m and env_m and stdin_m) or '\\r\\n'.join(lines[3:]) != TAIL:
    fail('not the Fleetward runner')

argv = []
for word in argv_m.group(1).split(' '):
    if word:
        if not word.startswith('_'):
            fail('argv word without _')
        argv.append(b64(word[1:], 'argv'))
if not argv:
    fail('empty argv')
env = dict(os.environb)
for entry in env_m.group(1).split(' '):
    if entry:
        name, _, value = entry.partition('=')
        if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
            fail('bad env name')
        value = b64(value, 'env')
        # As in Windows PowerShell: an empty value removes the variable.
        if value:
            env[name.encode()] = value
        else:
            env.pop(name.encode(), None)
data = b64(read_line('the input line'), 'input') if stdin_m.group(1) == '1' else None

try:
    child = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE if data is not None else None)
except OSError as error:
    sys.stderr.write('The term ' + repr(argv[0].decode('utf-8', 'replace')) + ' is not recognized: ' + str(error) + '\\n')
    sys.exit(127)

def feed():
    try:
        child.stdin.write(data)
    except BrokenPipeError:
        pass
    finally:
        try:
            child.stdin.close()
        except BrokenPipeError:
            pass

def watch():
    # The write end of a pipe reports an error once its reader closed: sshd closed the channel.
    poller = select.poll()
    poller.register(1, 0)
    while child.poll() is None:
        if poller.poll(200):
            log('channel-closed ' + str(child.pid))
            return

if data is not None:
    threading.Thread(target=feed, daemon=True).start()
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
`;
}
