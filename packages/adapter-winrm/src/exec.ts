import { performance } from 'node:perf_hooks';
import {
  AbortedError,
  type Command,
  type ExecCapability,
  type ExecOptions,
  type ExecResult,
  type FleetwardError,
  OutputCollector,
  type Server,
  TimeoutError,
  ValidationError,
  validate,
  validateCommand,
} from '@fleetward/core';
import { z } from 'zod';
import { WsmanFaultError } from './errors.js';
import { normalizeFingerprint, type WinRmLogin, type WsmanConnection } from './http.js';
import { MAX_TIMER_MS, type WinRmAdapterConfig, WinRmCredentialsSchema } from './options.js';
import type { ConnectionPool } from './pool.js';
import { buildPowerShellInvocation, ClixmlDecoder } from './powershell.js';
import {
  ACTIONS,
  buildEnvelope,
  commandBody,
  createShellBody,
  parseCommandId,
  parseReceive,
  parseShellId,
  RECEIVE_TIMED_OUT,
  receiveBody,
  sendBody,
  signalBody,
} from './wsman.js';

/** Bytes of stdin per `Send`: base64 makes them ~64 KiB, well under `MaxEnvelopeSize` 153,600. */
const SEND_CHUNK_BYTES = 48 * 1024;
/** Bound on Signal and Delete after a timeout or abort, so that the call still ends. */
const CLEANUP_TIMEOUT_MS = 15_000;

const ExecOptionsSchema = z.object({
  timeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).optional(),
  maxOutputBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  signal: z.instanceof(AbortSignal).optional(),
  onOutput: z.custom<NonNullable<ExecOptions['onOutput']>>((v) => typeof v === 'function').optional(),
});

async function loginFor(config: WinRmAdapterConfig, server: Server): Promise<WinRmLogin> {
  const given = (await config.credentialsFor?.(server)) ?? config.credentials;
  if (given === undefined) {
    throw new ValidationError('WinRmCredentials', [
      { path: [], message: `no credentials for server ${server.name}` },
    ]);
  }
  return toWinRmLogin(given, 'WinRmCredentials');
}

/**
 * Validates a login and splits `DOMAIN\user` into domain and user (an explicit `domain` wins).
 * @throws ValidationError (subject `subject`) naming the fields, never the password.
 */
export function toWinRmLogin(given: unknown, subject: string): WinRmLogin {
  const parsed = validate(WinRmCredentialsSchema, given, subject);
  const slash = parsed.username.indexOf('\\');
  if (parsed.domain === undefined && slash > 0) {
    return {
      username: parsed.username.slice(slash + 1),
      password: parsed.password,
      domain: parsed.username.slice(0, slash),
    };
  }
  return parsed.domain === undefined
    ? { username: parsed.username, password: parsed.password }
    : { username: parsed.username, password: parsed.password, domain: parsed.domain };
}

/** The state of one command run, shared by the steps below. */
interface Run {
  conn: WsmanConnection;
  operationTimeoutSec: number;
  shellId?: string;
  commandId?: string;
  done: boolean;
  exitCode: number | null;
  /** Set when the run must stop (timeout or abort); the error to reject with. */
  halted?: (partial: Record<string, unknown>) => FleetwardError;
}

function send(
  run: Run,
  action: string,
  body: string,
  what: string,
  extra: { options?: Record<string, string> } = {},
) {
  if (run.halted && what !== 'Signal' && what !== 'Delete') throw new AbortedError('WinRM run halted');
  const envelope = buildEnvelope(
    {
      to: run.conn.endpoint,
      action,
      operationTimeoutSec: run.operationTimeoutSec,
      ...(run.shellId === undefined ? {} : { shellId: run.shellId }),
      ...(extra.options ? { options: extra.options } : {}),
    },
    body,
  );
  return run.conn.call(envelope, what);
}

async function startCommand(
  run: Run,
  program: string,
  args: string[],
  stdin: Buffer | undefined,
): Promise<void> {
  run.shellId = parseShellId(
    await send(run, ACTIONS.create, createShellBody(), 'Create', {
      options: { WINRS_NOPROFILE: 'TRUE', WINRS_CODEPAGE: '65001' },
    }),
  );
  run.commandId = parseCommandId(
    await send(run, ACTIONS.command, commandBody(program, args), 'Command', {
      options: { WINRS_CONSOLEMODE_STDIN: 'TRUE', WINRS_SKIP_CMD_SHELL: 'TRUE' },
    }),
  );
  if (stdin === undefined) return;
  const commandId = run.commandId;
  for (let at = 0; at < stdin.length || at === 0; at += SEND_CHUNK_BYTES) {
    const end = at + SEND_CHUNK_BYTES >= stdin.length;
    try {
      await send(
        run,
        ACTIONS.send,
        sendBody(commandId, stdin.subarray(at, at + SEND_CHUNK_BYTES), end),
        'Send',
      );
    } catch (error) {
      // A program that exits without reading all its input: its exit status tells what happened.
      if (error instanceof WsmanFaultError) return;
      throw error;
    }
  }
}

async function receiveUntilDone(
  run: Run,
  feed: (stream: 'stdout' | 'stderr', data: Buffer) => void,
): Promise<void> {
  const commandId = run.commandId as string;
  while (!run.done) {
    let reply: Awaited<ReturnType<WsmanConnection['call']>>;
    try {
      reply = await send(run, ACTIONS.receive, receiveBody(commandId), 'Receive', {
        options: { WSMAN_CMDSHELL_OPTION_KEEPALIVE: 'TRUE' },
      });
    } catch (error) {
      if (error instanceof WsmanFaultError && error.wsmanCode === RECEIVE_TIMED_OUT) continue;
      throw error;
    }
    const received = parseReceive(reply, commandId);
    for (const chunk of received.chunks) feed(chunk.stream, chunk.data);
    if (received.done) {
      run.done = true;
      run.exitCode = received.exitCode;
    }
  }
}

/** Terminates a command still running, then deletes the shell; failures here are not the caller's concern. */
async function cleanUp(run: Run): Promise<void> {
  if (run.shellId === undefined) return;
  if (run.commandId !== undefined && !run.done) {
    await send(run, ACTIONS.signal, signalBody(run.commandId), 'Signal').catch(() => undefined);
  }
  await send(run, ACTIONS.delete, '', 'Delete').catch(() => undefined);
}

/** The `exec` capability over WinRS: each command in its own shell, deleted afterwards. */
export function createWinRmExec(config: WinRmAdapterConfig, pool: ConnectionPool): ExecCapability {
  return {
    async exec(server: Server, command: Command, options: ExecOptions = {}): Promise<ExecResult> {
      validateCommand(command);
      validate(ExecOptionsSchema, options, 'ExecOptions');
      const timeoutMs = options.timeoutMs ?? config.defaultTimeoutMs;
      const maxOutputBytes = options.maxOutputBytes ?? config.defaultMaxOutputBytes;
      const host = server.address ?? server.name;
      const program = 'interpreter' in command ? command.interpreter[0] : command.argv[0];
      const context = { serverId: server.id, serverName: server.name, adapter: config.name, host, program };
      const { signal, onOutput } = options;
      if (signal?.aborted) {
        throw new AbortedError('Command aborted before it started', {
          cause: signal.reason,
          details: context,
        });
      }
      const login = await loginFor(config, server);
      const pinned = (await config.certificateFingerprintFor?.(server)) ?? config.certificateFingerprint;
      const invocation = buildPowerShellInvocation(command, config.powershell);
      const conn = pool.acquire({
        host,
        port: server.port ?? config.port ?? (config.https ? 5986 : 5985),
        https: config.https,
        path: config.path,
        auth: config.auth,
        login,
        ca: config.ca,
        certificateFingerprint: pinned === undefined ? undefined : normalizeFingerprint(pinned),
        connectTimeoutMs: config.connectTimeoutMs,
        requestTimeoutMs: config.operationTimeoutSec * 1000 + 30_000,
      });
      const run: Run = { conn, operationTimeoutSec: config.operationTimeoutSec, done: false, exitCode: null };
      const stdout = new OutputCollector(maxOutputBytes);
      const stderr = new OutputCollector(maxOutputBytes);
      const clixml = new ClixmlDecoder();
      const deliver = (stream: 'stdout' | 'stderr', decoded: Buffer) => {
        if (decoded.length === 0) return;
        (stream === 'stdout' ? stdout : stderr).push(decoded);
        try {
          onOutput?.(stream, decoded);
        } catch {
          // A faulty listener must neither crash the orchestrator nor stop the command halfway.
        }
      };
      const feed = (stream: 'stdout' | 'stderr', data: Buffer) =>
        deliver(stream, stream === 'stderr' ? clixml.push(data) : data);
      const started = performance.now();
      const partial = () => ({
        ...context,
        stdout: stdout.summary(),
        stderr: stderr.summary(),
        exitCode: null,
        signal: null,
        durationMs: Math.round(performance.now() - started),
      });
      const halt = (error: (partial: Record<string, unknown>) => FleetwardError) => {
        if (run.halted || run.done) return;
        run.halted = error;
        conn.interrupt();
      };
      const timer = setTimeout(
        () =>
          halt(
            (d) => new TimeoutError(`Command "${program}" timed out after ${timeoutMs} ms`, { details: d }),
          ),
        timeoutMs,
      );
      const onAbort = () =>
        halt((d) => new AbortedError('Command aborted', { cause: signal?.reason, details: d }));
      signal?.addEventListener('abort', onAbort, { once: true });
      let clean = false;
      try {
        await startCommand(run, invocation.program, invocation.arguments, invocation.stdin);
        await receiveUntilDone(run, feed);
        deliver('stderr', clixml.end());
        clean = true;
        return {
          exitCode: run.exitCode,
          signal: null,
          stdout: stdout.summary(),
          stderr: stderr.summary(),
          durationMs: Math.round(performance.now() - started),
        };
      } catch (error) {
        if (run.halted) throw run.halted(partial());
        throw error;
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const cleanupTimer = setTimeout(() => conn.interrupt(), CLEANUP_TIMEOUT_MS);
        await cleanUp(run);
        clearTimeout(cleanupTimer);
        pool.release(conn, clean && run.halted === undefined);
      }
    },
  };
}
