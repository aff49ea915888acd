import { type ChildProcess, spawn } from 'node:child_process';
import { constants, tmpdir } from 'node:os';
import { CommandOutput } from './commands.js';

/** What Fleetward's WinRM runner script says to run: its `$fw_argv`, `$fw_env` and `$fw_has_stdin`. */
export interface RunnerCommand {
  argv: string[];
  env: Record<string, string>;
  hasStdin: boolean;
}

/** The three literal assignments every runner starts with; the values hold base64, `_`, `=`, names and spaces. */
const RUNNER_HEAD =
  /^\$fw_argv = '([A-Za-z0-9+/=_ ]*)'\r?\n\$fw_env = '([A-Za-z0-9+/=_ ]*)'\r?\n\$fw_has_stdin = '([01])'\r?\n/;
/** The bootstrap sent when the runner is too long for the command line: it runs the first stdin line. */
const BOOTSTRAP =
  /^function fw_dec\(\[string\]\$s\) \{[^\r\n]*\}\r?\n\. \(\[scriptblock\]::Create\(\(fw_dec \(\[Console\]::In\.ReadLine\(\)\)\)\)\)\s*$/;

/** Output a child may have written ahead of `Receive` before its pipes are paused. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;

const fromBase64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

/** The command of a runner script, or undefined when `script` is not Fleetward's runner. */
export function parseRunnerScript(script: string): RunnerCommand | undefined {
  const head = RUNNER_HEAD.exec(script);
  if (!head) return undefined;
  const argv = (head[1] as string)
    .split(' ')
    .filter((word) => word !== '')
    .map((word) => fromBase64(word.slice(1)));
  const env: Record<string, string> = {};
  for (const pair of (head[2] as string).split(' ')) {
    const at = pair.indexOf('=');
    if (at > 0) env[pair.slice(0, at)] = fromBase64(pair.slice(at + 1));
  }
  return argv.length === 0 ? undefined : { argv, env, hasStdin: head[3] === '1' };
}

/** Whether `script` is the bootstrap that reads the runner from the first line of stdin. */
export function isRunnerBootstrap(script: string): boolean {
  return BOOTSTRAP.test(script);
}

/** What a Windows host would report for a process that ended with `code` or was killed by `signal`. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  // WinRM carries an exit code only; a signal death is reported as a POSIX shell reports it.
  return 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
}

/** Where the runner's child runs: the shell's environment and working directory. */
export interface RunnerHost {
  env: Record<string, string>;
  workingDirectory: string | undefined;
}

/**
 * Plays Fleetward's runner on this machine: reads the runner (from the command line, or from the
 * first stdin line behind the bootstrap) and the stdin line, then runs the program as a child
 * process in a process group of its own, its output streamed into `output`.
 */
export class RunnerProcess {
  readonly output = new CommandOutput();
  readonly #host: RunnerHost;
  #runner: RunnerCommand | undefined;
  #stdin = '';
  #child: ChildProcess | undefined;
  #state: 'reading' | 'running' | 'ended' = 'reading';

  /** `script` is the decoded `-EncodedCommand`: a runner, or the bootstrap. */
  constructor(script: string, host: RunnerHost) {
    this.#host = host;
    this.#runner = parseRunnerScript(script);
    if (this.#runner && !this.#runner.hasStdin) this.#start(Buffer.alloc(0));
  }

  /** Whether `script` (a decoded `-EncodedCommand`) is one this class runs. */
  static accepts(script: string): boolean {
    return parseRunnerScript(script) !== undefined || isRunnerBootstrap(script);
  }

  /** The child's pid (and process group), once it started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Bytes the client sent on stdin; `end` when it said `End="true"`. */
  stdin(bytes: Buffer, end: boolean): void {
    if (this.#state !== 'reading') return;
    this.#stdin += bytes.toString('latin1');
    for (let line = this.#nextLine(end); line !== undefined; line = this.#nextLine(end)) {
      this.#readLine(line);
      if (this.#state !== 'reading') return;
    }
    if (!end) return;
    // At the end of input ReadLine returns null: the bootstrap has no runner to run, the runner an empty stdin.
    if (this.#runner) this.#start(Buffer.alloc(0));
    else this.#fail('fleetward fake: stdin ended before the runner script\r\n', 1);
  }

  /** One stdin line as the runner reads it: the runner itself behind the bootstrap, then stdin. */
  #readLine(line: string): void {
    if (this.#runner) {
      this.#start(Buffer.from(line, 'base64'));
      return;
    }
    this.#runner = parseRunnerScript(fromBase64(line));
    if (!this.#runner) this.#fail('fleetward fake: stdin did not start with a runner script\r\n', 1);
    else if (!this.#runner.hasStdin) this.#start(Buffer.alloc(0));
  }

  /**
   * Sends `signal` to the child's process group (ctrl_c: SIGINT; terminate, shell Delete:
   * SIGKILL, as Windows ends every process of the command's job); before the start, the command
   * ends without running.
   */
  kill(signal: 'SIGINT' | 'SIGKILL'): void {
    if (this.#state === 'reading') {
      this.#state = 'ended';
      this.output.finish(exitCodeOf(null, signal));
      return;
    }
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  }

  #nextLine(end: boolean): string | undefined {
    const at = this.#stdin.indexOf('\n');
    if (at < 0) {
      if (!end || this.#stdin === '') return undefined;
      const last = this.#stdin;
      this.#stdin = '';
      return last.replace(/\r$/, '');
    }
    const line = this.#stdin.slice(0, at).replace(/\r$/, '');
    this.#stdin = this.#stdin.slice(at + 1);
    return line;
  }

  #fail(message: string, exitCode: number): void {
    this.#state = 'ended';
    this.output.push('stderr', Buffer.from(message, 'utf8'));
    this.output.finish(exitCode);
  }

  #start(input: Buffer): void {
    const runner = this.#runner as RunnerCommand;
    this.#state = 'running';
    const [program, ...args] = runner.argv as [string, ...string[]];
    const cwd = this.#host.workingDirectory?.startsWith('/') ? this.#host.workingDirectory : tmpdir();
    const child = spawn(program, args, {
      cwd,
      env: { PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin', ...this.#host.env, ...runner.env },
      stdio: 'pipe',
      shell: false,
      detached: true,
    });
    this.#child = child;
    const { output } = this;
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return;
      this.#state = 'ended';
      if (error.code === 'ENOENT') {
        // What the runner's CommandNotFoundException handler prints and exits with.
        this.#fail(
          `The term '${program}' is not recognized as the name of a cmdlet, function, script file, or operable program. ` +
            'Check the spelling of the name, or if a path was included, verify that the path is correct and try again.\r\n',
          127,
        );
      } else {
        this.#fail(`${error.message}\r\n`, 1);
      }
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
    const pipes = [child.stdout, child.stderr];
    const relay = (stream: 'stdout' | 'stderr') => (data: Buffer) => {
      output.push(stream, data);
      if (output.pendingBytes > HIGH_WATER_BYTES) for (const pipe of pipes) pipe?.pause();
    };
    child.stdout?.on('data', relay('stdout'));
    child.stderr?.on('data', relay('stderr'));
    output.onDrained(() => {
      if (output.pendingBytes <= HIGH_WATER_BYTES) for (const pipe of pipes) pipe?.resume();
    });
    child.on('close', (code, signal) => {
      this.#state = 'ended';
      output.finish(exitCodeOf(code, signal));
    });
  }
}
