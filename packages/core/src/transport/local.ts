import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { plainRecord } from '../domain/common.js';
import type { OutputSummary, Server } from '../domain/index.js';
import { validate } from '../domain/validate.js';
import {
  AbortedError,
  CommandFailedError,
  type FleetwardError,
  TimeoutError,
  TransportError,
} from '../errors.js';
import type { Adapter, Command, ExecCapability, ExecOptions, ExecResult } from '../ports/adapter.js';
import { buildArgv, ENV_NAME_PATTERN } from '../util/command.js';
import { OutputCollector } from '../util/output.js';

/** `setTimeout` silently turns longer delays into 1 ms, so every delay is capped here. */
const MAX_TIMER_MS = 2_147_483_647;
const DEFAULT_TIMEOUT_MS = 300_000;
const DEFAULT_MAX_OUTPUT_BYTES = 1_048_576;
/** How often to look whether a signalled process group has gone, during the grace period. */
const GROUP_POLL_MS = 25;
/**
 * After the kill, how long to wait for the output pipes to close once the program has exited. A
 * grandchild that left the group (`setsid`) may hold them open for ever.
 */
const DRAIN_AFTER_KILL_MS = 250;
/**
 * After SIGKILL, how long to wait for the program's exit to be reported before settling anyway
 * (it may run as another user under sudo and be out of our reach).
 */
const EXIT_AFTER_KILL_MS = 5_000;
/** Used when the orchestrator itself has no PATH, so that `sh`, `env` and `sudo` can be found. */
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Variables passed on from this process unless `inheritEnv` is set. */
const BASE_ENV_NAMES = ['PATH', 'HOME', 'LANG'] as const;
/** Spawn errors that mean the program cannot be run, as opposed to this machine being in trouble. */
const NOT_RUNNABLE = new Set(['ENOENT', 'EACCES', 'ENOEXEC', 'ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG']);

/** Options of {@link createLocalAdapter}. */
export const LocalAdapterOptionsSchema = z.strictObject({
  /** Registration name. @default 'local' */
  name: z.string().min(1).max(64).default('local'),
  /**
   * Pass this process's whole environment to commands. Off by default: the orchestrator's
   * environment typically holds cloud credentials, tokens and database URLs, and a command (or a
   * script from the catalogue) must not be able to read them. Only `PATH`, `HOME` and `LANG` are
   * passed on.
   * @default false
   */
  inheritEnv: z.boolean().default(false),
  /** Variables added to (or replacing) the base environment of every command; `Command.env` wins over these. */
  env: plainRecord(
    z.string().regex(ENV_NAME_PATTERN, 'must be an environment variable name'),
    z.string().refine((v) => !v.includes('\0'), 'must not contain NUL bytes'),
  ).default({}),
  /** After SIGTERM on timeout or abort, wait this long for the process group to exit before SIGKILL. @default 2000 */
  killGraceMs: z.number().int().min(0).max(MAX_TIMER_MS).default(2000),
  /** Used when `ExecOptions.timeoutMs` is not given. @default 300_000 */
  defaultTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(DEFAULT_TIMEOUT_MS),
  /** Used when `ExecOptions.maxOutputBytes` is not given. @default 1_048_576 */
  defaultMaxOutputBytes: z
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .default(DEFAULT_MAX_OUTPUT_BYTES),
  /**
   * Whether commands already run as root, so `sudo: true` adds nothing.
   * @default `process.getuid() === 0`
   */
  isRoot: z.boolean().optional(),
});

/** Options of {@link createLocalAdapter}; see {@link LocalAdapterOptionsSchema}. */
export type LocalAdapterOptions = z.input<typeof LocalAdapterOptionsSchema>;

const ExecOptionsSchema = z.object({
  timeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).optional(),
  maxOutputBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  signal: z.instanceof(AbortSignal).optional(),
  onOutput: z.custom<NonNullable<ExecOptions['onOutput']>>((v) => typeof v === 'function').optional(),
});

type Config = z.output<typeof LocalAdapterOptionsSchema> & { isRoot: boolean };

function baseEnv(config: Config): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  if (config.inheritEnv) {
    for (const [name, value] of Object.entries(process.env)) if (value !== undefined) env[name] = value;
  } else {
    for (const name of BASE_ENV_NAMES) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    env.PATH ??= FALLBACK_PATH;
  }
  return { ...env, ...config.env };
}

function programOf(command: Command): string | undefined {
  return 'interpreter' in command ? command.interpreter[0] : command.argv[0];
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Signals every process of a group. Returns false once the group is known to be gone, so it is
 * never signalled again: its id could by then belong to an unrelated group, and we may be root.
 */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    // EPERM: members exist but run as another user (e.g. root under sudo). They still count as alive.
    return errnoOf(error) === 'EPERM';
  }
}

function run(
  config: Config,
  server: Server,
  command: Command,
  options: ExecOptions,
  timeoutMs: number,
  maxOutputBytes: number,
): Promise<ExecResult> {
  const built = buildArgv(command, { isRoot: config.isRoot });
  const program = programOf(command) ?? '';
  const context = { serverId: server?.id, serverName: server?.name, adapter: config.name, program };
  const { signal, onOutput } = options;

  if (signal?.aborted) {
    return Promise.reject(
      new AbortedError('Command aborted before it started', { cause: signal.reason, details: context }),
    );
  }

  return new Promise<ExecResult>((resolve, reject) => {
    const started = performance.now();
    const stdout = new OutputCollector(maxOutputBytes);
    const stderr = new OutputCollector(maxOutputBytes);
    let child: ChildProcess;
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let closed = false;
    let groupAlive = true;
    let killing:
      | { error: (partial: Record<string, unknown>) => FleetwardError; done: boolean; draining: boolean }
      | undefined;
    const timers = new Set<NodeJS.Timeout>();

    const later = (ms: number, fn: () => void) => {
      const timer = setTimeout(
        () => {
          timers.delete(timer);
          fn();
        },
        Math.min(ms, MAX_TIMER_MS),
      );
      timers.add(timer);
    };

    const sendToGroup = (sig: NodeJS.Signals | 0) => {
      if (groupAlive && child.pid !== undefined) groupAlive = signalGroup(child.pid, sig);
    };

    const summaries = (): { stdout: OutputSummary; stderr: OutputSummary } => ({
      stdout: stdout.summary(),
      stderr: stderr.summary(),
    });

    const cleanup = () => {
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      signal?.removeEventListener('abort', onAbort);
    };

    const fail = (error: FleetwardError) => {
      if (settled) return;
      cleanup();
      // A grandchild that left the group may still hold our pipes; do not leak the descriptors.
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      reject(error);
    };

    const finishKill = () => {
      if (settled || !killing?.done || exit === undefined) return;
      const { error } = killing;
      if (closed) {
        fail(error(partial()));
      } else if (!killing.draining) {
        killing.draining = true;
        later(DRAIN_AFTER_KILL_MS, () => fail(error(partial())));
      }
    };

    const partial = (): Record<string, unknown> => ({
      ...context,
      ...summaries(),
      exitCode: exit?.code ?? null,
      signal: exit?.signal ?? null,
      durationMs: Math.round(performance.now() - started),
    });

    /**
     * SIGTERM to the whole group (the command's children too, not only the program we started),
     * SIGKILL to whatever is left after the grace period, then settle with `error`.
     */
    const kill = (error: (partial: Record<string, unknown>) => FleetwardError) => {
      if (settled || killing) return;
      killing = { error, done: false, draining: false };
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      sendToGroup('SIGTERM');
      const deadline = performance.now() + config.killGraceMs;
      const poll = () => {
        sendToGroup(0);
        const left = deadline - performance.now();
        if (groupAlive && left > 0) {
          later(Math.min(GROUP_POLL_MS, left), poll);
          return;
        }
        sendToGroup('SIGKILL');
        if (killing) killing.done = true;
        // The call must end even if the exit is never reported.
        later(EXIT_AFTER_KILL_MS, () => fail(error(partial())));
        finishKill();
      };
      poll();
    };

    const onAbort = () => {
      kill((details) => new AbortedError('Command aborted', { cause: signal?.reason, details }));
    };

    const env = { ...baseEnv(config), ...built.env };
    const [file, ...args] = built.argv;
    try {
      child = spawn(file ?? '', args, {
        shell: false,
        // Makes the command a process-group leader, so a timeout or abort can kill what it started.
        detached: true,
        env,
        stdio: [built.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (error) {
      reject(new TransportError(`Could not start "${program}" locally`, { cause: error, details: context }));
      return;
    }

    child.on('error', (error) => {
      if (child.pid !== undefined) return; // Failures of a later kill(); handled where we signal.
      const code = errnoOf(error);
      if (code !== undefined && NOT_RUNNABLE.has(code)) {
        fail(
          new CommandFailedError(`Cannot run "${file}": ${code === 'ENOENT' ? 'program not found' : code}`, {
            cause: error,
            details: { ...context, errno: code },
          }),
        );
      } else {
        fail(
          new TransportError(`Could not start "${file}" locally: ${code ?? 'unknown error'}`, {
            cause: error,
            details: context,
          }),
        );
      }
    });

    const feed = (stream: 'stdout' | 'stderr', collector: OutputCollector) => (chunk: Buffer) => {
      collector.push(chunk);
      try {
        onOutput?.(stream, chunk);
      } catch {
        // A faulty listener must neither crash the orchestrator nor kill a root command halfway.
      }
    };
    child.stdout?.on('data', feed('stdout', stdout));
    child.stderr?.on('data', feed('stderr', stderr));
    const onReadError = (stream: 'stdout' | 'stderr') => (error: Error) =>
      // The summary would no longer cover everything the command wrote, so the result cannot be trusted.
      kill(
        (details) =>
          new TransportError(`Reading ${stream} of "${program}" failed: ${errnoOf(error) ?? error.message}`, {
            cause: error,
            details,
          }),
      );
    child.stdout?.on('error', onReadError('stdout'));
    child.stderr?.on('error', onReadError('stderr'));

    child.on('exit', (code, sig) => {
      exit = { code, signal: sig };
      finishKill();
    });

    child.on('close', () => {
      closed = true;
      if (settled) return;
      if (killing) {
        finishKill();
        return;
      }
      if (exit === undefined) return;
      cleanup();
      resolve({
        exitCode: exit.code,
        signal: exit.signal,
        ...summaries(),
        durationMs: Math.round(performance.now() - started),
      });
    });

    if (child.pid !== undefined && child.stdin && built.stdin !== undefined) {
      child.stdin.on('error', (error) => {
        const code = errnoOf(error);
        // The program may exit, or close stdin, without reading it all: its exit status tells.
        if (code === 'EPIPE' || code === 'ECONNRESET' || code === 'ERR_STREAM_DESTROYED') return;
        // Anything else may have cut the input short, e.g. half a script fed to `sh -s`: stop it.
        kill(
          (details) =>
            new TransportError(`Writing standard input of "${program}" failed: ${code ?? 'unknown error'}`, {
              cause: error,
              details,
            }),
        );
      });
      child.stdin.end(built.stdin, 'utf8');
    }

    if (child.pid !== undefined) {
      later(timeoutMs, () =>
        kill(
          (details) => new TimeoutError(`Command "${program}" timed out after ${timeoutMs} ms`, { details }),
        ),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    }
  });
}

/**
 * An adapter that runs commands on this machine, for the orchestrator host itself, tests and
 * demos. POSIX only (it kills process groups).
 *
 * - The `Server` passed to `exec` is not used to choose where to run: the command always runs
 *   here. Its id and name only go into error details, to say which server the call was for.
 * - No shell is involved (`shell: false`): argv elements reach the program exactly.
 * - Commands get a minimal environment (`PATH`, `HOME`, `LANG`, plus `options.env` and
 *   `Command.env`), not this process's: see `inheritEnv`.
 * - Each command leads its own process group. On timeout or abort the group gets SIGTERM, then
 *   SIGKILL after `killGraceMs`; the call then rejects with `TimeoutError` / `AbortedError`
 *   whose `details` carry the partial output summaries. Children the command leaves running after
 *   a normal exit are left alone, as they would be over SSH.
 * - A program that cannot be started (not found, not executable) rejects with
 *   `CommandFailedError` naming the program: nothing ran, so there is no exit code to report,
 *   and retrying will not help. Other start failures (e.g. out of processes) reject with the
 *   retryable `TransportError`.
 * - Without `Command.stdin` (or a script) standard input is empty, so a program that reads it
 *   ends instead of waiting forever.
 * - The call resolves once the program has exited and its output pipes are closed: a background
 *   child that keeps them open keeps the call running (up to the timeout), as over SSH.
 *
 * @throws ValidationError when `options` are invalid.
 */
export function createLocalAdapter(options: LocalAdapterOptions = {}): Adapter {
  const parsed = validate(LocalAdapterOptionsSchema, options, 'LocalAdapterOptions');
  const config: Config = { ...parsed, isRoot: parsed.isRoot ?? process.getuid?.() === 0 };

  const exec: ExecCapability = {
    async exec(server: Server, command: Command, execOptions: ExecOptions = {}): Promise<ExecResult> {
      validate(ExecOptionsSchema, execOptions, 'ExecOptions');
      return run(
        config,
        server,
        command,
        execOptions,
        execOptions.timeoutMs ?? config.defaultTimeoutMs,
        execOptions.maxOutputBytes ?? config.defaultMaxOutputBytes,
      );
    },
  };

  return { name: config.name, exec };
}
