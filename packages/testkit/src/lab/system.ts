/**
 * Running system commands for the lab: argv only (never a shell on the test machine), a fixed
 * environment, and synchronous variants for exit handlers, which cannot await.
 */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { LabCommandError, LabError } from './errors.js';

/** System directories first: a user's PATH (pyenv shims, npm bins) must not pick lab tools. */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** PATH for commands the lab runs, inside hosts and out. */
export const SYSTEM_PATH = SYSTEM_DIRS.join(':');

/** Environment variable that marks every process the lab starts, so cleanup finds orphans. */
export const LAB_MARKER_ENV = 'FLEETWARD_LAB_ID';

const found = new Map<string, string | undefined>();

/** Absolute path of an executable, looked up in the system directories then PATH. */
export function findBinary(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  if (found.has(name)) return found.get(name);
  const dirs = [...SYSTEM_DIRS, ...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/'))];
  const path = dirs.map((d) => join(d, name)).find(isExecutable);
  found.set(name, path);
  return path;
}

/** Like {@link findBinary}, but throws when the executable is missing. */
export function binary(name: string): string {
  const path = findBinary(name);
  if (path === undefined) throw new LabError(`the lab needs ${name}, which is not installed`);
  return path;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Environment of lab commands on the test machine: nothing inherited but the marker. */
export function systemEnv(labId?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: SYSTEM_PATH, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: '/root' };
  if (labId !== undefined) env[LAB_MARKER_ENV] = labId;
  return env;
}

export interface CommandResult {
  exitCode: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Extra file descriptors, passed to the child as fd 3, 4, ... */
  fds?: number[];
  /** Reject with `LabCommandError` unless the exit code is one of these. */
  okCodes?: readonly number[];
}

const MAX_OUTPUT = 64 * 1024 * 1024;

/** Exit status the way a shell reports it: 128 + signal number when a signal ended the process. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal === null ? 0 : osConstants.signals[signal]);
}

/**
 * Runs `file args` in its own process group (so a timeout or abort kills everything it
 * started) and collects its output.
 */
/**
 * Collects a spawned child's output (at most `maxOutput` bytes kept), kills its process group on
 * timeout or abort, feeds it `input`, and resolves when its pipes close.
 */
export function collectChild(
  child: ChildProcess,
  options: { input?: string | Uint8Array; timeoutMs?: number; signal?: AbortSignal; maxOutput: number },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size <= options.maxOutput) into.push(chunk);
    };
    child.stdout?.on('data', collect(stdout));
    child.stderr?.on('data', collect(stderr));
    const kill = () => killGroup(child);
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(kill, options.timeoutMs);
    options.signal?.addEventListener('abort', kill, { once: true });
    child.on('error', (error) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', kill);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', kill);
      resolve({
        exitCode: exitStatus(code, signal),
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
    // A child that exits without reading stdin makes the write fail with EPIPE; that is its business.
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input ?? '');
  });
}

export async function run(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const argv = [file, ...args];
  const spawnOptions: SpawnOptions = {
    env: options.env ?? systemEnv(),
    stdio: ['pipe', 'pipe', 'pipe', ...(options.fds ?? [])],
    detached: true,
  };
  const child = spawn(file, args, spawnOptions);
  const result = await collectChild(child, {
    maxOutput: MAX_OUTPUT,
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.okCodes && !options.okCodes.includes(result.exitCode)) throw commandError(argv, result);
  return result;
}

/** `run` that rejects unless the command exits 0. */
export function runOk(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return run(file, args, { okCodes: [0], ...options });
}

/** Synchronous `run`, for exit handlers and cleanup. Never throws for a failed command. */
export function runSync(
  file: string,
  args: readonly string[],
  options: { input?: string } = {},
): CommandResult {
  const result = spawnSync(file, args, {
    env: systemEnv(),
    input: options.input ?? '',
    encoding: 'utf8',
    timeout: 30_000,
    maxBuffer: MAX_OUTPUT,
  });
  return {
    exitCode: result.error ? 127 : exitStatus(result.status, result.signal),
    signal: result.signal,
    stdout: result.stdout ?? '',
    stderr: result.error ? String(result.error) : (result.stderr ?? ''),
  };
}

export function commandError(argv: readonly string[], result: CommandResult): LabCommandError {
  const output = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-20).join('\n');
  return new LabCommandError(
    `${argv.join(' ')} exited with ${result.exitCode}${output ? `:\n${output}` : ''}`,
    argv,
    result.exitCode,
    result.stdout,
    result.stderr,
  );
}

/** Kills a detached child and everything in its process group. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Quotes a word for a POSIX shell script the lab generates. */
export function shq(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), which tells a pid from its reuse. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive and is still the process that had `startTime`. */
export function isProcessAlive(pid: number, startTime?: string): boolean {
  const now = processStartTime(pid);
  if (now === undefined) return false;
  return startTime === undefined || now === startTime;
}

/** Pids of every process, from /proc. */
export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

/** Value of one environment variable of another process, or undefined (gone, kernel thread). */
export function processEnv(pid: number, name: string): string | undefined {
  try {
    const prefix = `${name}=`;
    const entry = readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .find((e) => e.startsWith(prefix));
    return entry?.slice(prefix.length);
  } catch {
    return undefined;
  }
}

/** Blocks the thread for `ms` (exit handlers and the CLI's cleanup only). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
