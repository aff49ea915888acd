import { createHmac, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  AbortedError,
  buildArgv,
  type Command,
  CommandFailedError,
  type ExecCapability,
  type ExecOptions,
  type ExecResult,
  FleetwardError,
  Mutex,
  OutputCollector,
  type OutputSummary,
  quoteArgv,
  redact,
  type Server,
  TimeoutError,
  TransportError,
  ValidationError,
  validate,
} from '@fleetward/core';
import { isWindowsServer } from '@fleetward/core/os';
import ssh2, { type Client, type ClientChannel } from 'ssh2';
import { z } from 'zod';
import {
  dialTarget,
  type Hop,
  labelOf,
  limits,
  messageOf,
  type Route,
  type SshExecContext,
} from './connect.js';
import {
  type JumpHost,
  JumpHostSchema,
  MAX_TIMER_MS,
  type ParsedCredentials,
  type SshCredentials,
  SshCredentialsSchema,
} from './options.js';
import type { Lease } from './pool.js';
import { buildWindowsExec } from './windows.js';

// ssh2 is CommonJS: Node's ESM loader sees only some of its names (not `utils`) as named exports.
const ssh2Utils = ssh2.utils;

/** After SIGKILL, how long to wait for the server to report the end before giving up on it. */
const EXIT_AFTER_KILL_MS = 5_000;
/** After a killed command exited, how long to wait for its channel to close. */
const DRAIN_AFTER_KILL_MS = 250;
/** How much stdout may precede the pid header (login scripts that print) before we stop looking. */
const HEADER_LIMIT_BYTES = 65_536;
/** A kill helper channel that does not close by itself is closed after this long. */
const KILL_HELPER_MS = 5_000;
/** Enough of stderr to recognise sudo asking for a password, whatever `maxOutputBytes` is. */
const SUDO_PROBE_BYTES = 4096;
const SUDO_NEEDS_PASSWORD =
  /sudo: (a password is required|a terminal is required|no tty present|sorry, you must have a tty)/;

const ExecOptionsSchema = z.object({
  timeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).optional(),
  maxOutputBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  signal: z.instanceof(AbortSignal).optional(),
  onOutput: z.custom<NonNullable<ExecOptions['onOutput']>>((v) => typeof v === 'function').optional(),
});

/** Everything decided before a connection is touched. */
interface Plan extends Route {
  poolKey: string;
  /**
   * What the remote shell receives: the pid header, then `exec` of the words quoted by `quoteArgv`;
   * on a Windows server, `powershell.exe` and the flags and base64 of its invocation.
   */
  line: string;
  /** Marks the header line that carries the command's process group id on stdout (none on Windows). */
  marker: Buffer | undefined;
  stdin: Buffer | undefined;
  sudo: boolean;
  /**
   * A Windows server (OpenSSH for Windows): no process group to signal, so a timeout or an abort
   * closes the channel instead.
   */
  windows: boolean;
}

/** The command never reached the server, so running it on another connection cannot run it twice. */
class NotStartedError extends Error {
  readonly error: TransportError;
  constructor(error: TransportError) {
    super(error.message);
    this.error = error;
  }
}

/**
 * Validates credentials and decrypts the private key up front, so a wrong passphrase is a clear
 * `ValidationError` instead of an authentication failure. Messages never contain secrets.
 */
export function parseCredentials(
  input: SshCredentials,
  subject: string,
): { credentials: ParsedCredentials; keyType: string | undefined } {
  const credentials = validate(SshCredentialsSchema, input, subject);
  if (credentials.privateKey === undefined) return { credentials, keyType: undefined };
  const parsed = ssh2Utils.parseKey(credentials.privateKey, credentials.passphrase);
  if (parsed instanceof Error) {
    const reason = parsed.message;
    if (/no passphrase given/i.test(reason)) {
      throw new ValidationError(subject, [
        { path: ['passphrase'], message: 'privateKey is encrypted and no passphrase was given' },
      ]);
    }
    if (/passphrase/i.test(reason) || credentials.passphrase !== undefined) {
      throw new ValidationError(subject, [
        { path: ['passphrase'], message: 'does not decrypt privateKey (wrong passphrase?)' },
      ]);
    }
    throw new ValidationError(subject, [
      { path: ['privateKey'], message: `cannot be read: ${String(redact(reason))}` },
    ]);
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key?.isPrivateKey()) {
    throw new ValidationError(subject, [{ path: ['privateKey'], message: 'is not a private key' }]);
  }
  return { credentials, keyType: key.type };
}

/** One kill helper at a time per connection, so that helpers never exceed the server's MaxSessions. */
const helperLocks = new WeakMap<object, Mutex>();

/**
 * Runs a short command on its own channel (a `kill` for a timed-out command) and resolves when it
 * has ended or after a bound. Failures are ignored: the caller still bounds its wait for the end.
 */
function runHelper(connection: object, client: Client, line: string): Promise<void> {
  let lock = helperLocks.get(connection);
  if (!lock) {
    lock = new Mutex();
    helperLocks.set(connection, lock);
  }
  return lock.run(
    () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, KILL_HELPER_MS);
        timer.unref();
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        try {
          client.exec(line, (error, helper) => {
            if (error || !helper) {
              done();
              return;
            }
            helper.resume();
            helper.stderr.resume();
            helper.once('close', done);
            helper.end();
            setTimeout(() => helper.close(), KILL_HELPER_MS).unref();
          });
        } catch {
          // The connection is gone; so is every process group it could signal.
          done();
        }
      }),
  );
}

function normaliseSignal(name: string | undefined | null): string | null {
  if (!name) return null;
  return `SIG${name.replace(/^(SIG)+/, '')}`;
}

/**
 * Sends a signal request on the channel. ssh2's `channel.signal()` refuses once our side sent EOF
 * (which we do right after stdin), yet the protocol allows channel requests until the channel
 * closes, so the request is written through the protocol object when the channel is still open.
 */
function signalChannel(channel: ClientChannel, name: 'TERM' | 'KILL'): void {
  const internal = channel as unknown as {
    outgoing?: { id?: number; state?: string };
    _client?: { _protocol?: { signal?: (id: number, signal: string) => void } };
  };
  try {
    const state = internal.outgoing?.state;
    const protocol = internal._client?._protocol;
    if (
      (state === 'open' || state === 'eof') &&
      typeof internal.outgoing?.id === 'number' &&
      typeof protocol?.signal === 'function'
    ) {
      protocol.signal(internal.outgoing.id, name);
    } else {
      channel.signal(name);
    }
  } catch {
    // A channel that is already closing cannot be signalled, and no longer needs to be.
  }
}

interface RunArgs {
  ctx: SshExecContext;
  plan: Plan;
  lease: Lease;
  options: ExecOptions;
  timeoutMs: number;
  maxOutputBytes: number;
  deadlineAt: number | undefined;
  started: number;
}

/** Runs the planned command on a leased connection; see {@link createSshExec} for the contract. */
function runOnLease(args: RunArgs): Promise<ExecResult> {
  const { ctx, plan, lease, options, timeoutMs, maxOutputBytes, deadlineAt, started } = args;
  const { signal, onOutput } = options;
  const connection = lease.connection;

  return new Promise<ExecResult>((resolve, reject) => {
    const stdout = new OutputCollector(maxOutputBytes);
    const stderr = new OutputCollector(maxOutputBytes);
    const probe: Buffer[] = [];
    let probeBytes = 0;
    let channel: ClientChannel | undefined;
    /** The command's process group, from the header; until then stdout is held in `header`. */
    let pgid: number | undefined;
    let header: Buffer | undefined = plan.marker === undefined ? undefined : Buffer.alloc(0);
    let exit: { code: number | null; signal: string | null } | undefined;
    let ended = false;
    let settled = false;
    let killing: { error: (details: Record<string, unknown>) => FleetwardError } | undefined;
    const timers = new Set<NodeJS.Timeout>();

    const later = (ms: number, fn: () => void) => {
      const timer = setTimeout(
        () => {
          timers.delete(timer);
          fn();
        },
        Math.max(0, Math.min(ms, MAX_TIMER_MS)),
      );
      timers.add(timer);
    };
    const clearTimers = () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    };
    const summaries = (): { stdout: OutputSummary; stderr: OutputSummary } => ({
      stdout: stdout.summary(),
      stderr: stderr.summary(),
    });
    const partial = (): Record<string, unknown> => ({
      ...plan.context,
      ...summaries(),
      exitCode: exit?.code ?? null,
      signal: exit?.signal ?? null,
      durationMs: Math.round(performance.now() - started),
      exitConfirmed: exit !== undefined,
    });

    const settle = (lease_: 'release' | 'discard' | 'keep') => {
      settled = true;
      clearTimers();
      signal?.removeEventListener('abort', onAbort);
      connection.closeListeners.delete(onConnectionLost);
      if (lease_ === 'release') lease.release();
      else if (lease_ === 'discard') lease.discard();
    };
    const fail = (error: unknown, lease_: 'release' | 'discard' | 'keep') => {
      if (settled) return;
      settle(lease_);
      reject(error);
    };

    const finishKill = (confirmed: boolean) => {
      if (settled || !killing) return;
      const error = killing.error({ ...partial(), exitConfirmed: confirmed });
      // Without a confirmed end the connection is in doubt: retire it rather than reuse it.
      if (confirmed) fail(error, 'release');
      else {
        channel?.close();
        fail(error, 'discard');
      }
    };

    /**
     * Sends `sig` to the command's process group: as an SSH signal request (sshd applies those
     * with `killpg`, where it honours them) and with `kill` on a helper channel, since OpenSSH
     * refuses signal requests for root logins. The group is only signalled while the server has not
     * reported the command's end: until then its leader, and so its id, is still taken.
     */
    const signalGroup = (sig: 'TERM' | 'KILL') => {
      if (channel) signalChannel(channel, sig);
      if (pgid === undefined || exit !== undefined) return;
      const argv = ['kill', '-s', sig, '--', `-${pgid}`];
      // Under sudo the command runs as root, out of the login's reach.
      const killLine = plan.sudo
        ? `${quoteArgv(argv)} 2>/dev/null || ${quoteArgv(['sudo', '-n', ...argv])}`
        : quoteArgv(argv);
      void runHelper(connection, lease.client, killLine);
    };

    /**
     * On Windows the channel is all there is to end: OpenSSH for Windows has no signal requests and
     * no header names a process. Whether the process ends with the channel is up to the server (see
     * the README); the call settles once the channel closed, or after a bound.
     */
    const closeWindowsChannel = (opened: ClientChannel) => {
      opened.close();
      later(EXIT_AFTER_KILL_MS, () => finishKill(exit !== undefined));
    };

    /**
     * SIGTERM to the command's process group, SIGKILL after the grace period, then settle with
     * `error` once the server reports the end, or give up on it after a bound so the call ends.
     */
    const kill = (error: (details: Record<string, unknown>) => FleetwardError) => {
      if (settled || killing) return;
      killing = { error };
      clearTimers();
      if (!channel) {
        // Still opening: the command may start any moment, and is killed as soon as it does.
        later(EXIT_AFTER_KILL_MS, () => finishKill(false));
        return;
      }
      const opened = channel;
      if (exit !== undefined) {
        opened.close();
        later(DRAIN_AFTER_KILL_MS, () => finishKill(true));
        return;
      }
      if (plan.windows) {
        closeWindowsChannel(opened);
        return;
      }
      signalGroup(ctx.config.killGraceMs === 0 ? 'KILL' : 'TERM');
      later(ctx.config.killGraceMs, () => {
        signalGroup('KILL');
        later(EXIT_AFTER_KILL_MS, () => finishKill(false));
      });
    };

    const onAbort = () =>
      kill((details) => new AbortedError('Command aborted', { cause: signal?.reason, details }));

    const onConnectionLost = () => {
      if (settled || !channel) return; // While opening, ssh2 reports the loss through the exec callback.
      if (exit !== undefined && ended) {
        resolveResult();
        return;
      }
      const why = connection.lastError ? `: ${messageOf(connection.lastError)}` : '';
      fail(
        killing
          ? killing.error(partial())
          : new TransportError(
              `Connection to ${plan.where} was lost while the command ran${why}. ` +
                'It may have completed or still be running, so it is not retried.',
              { details: { ...partial(), commandMayHaveRun: true } },
            ),
        'release',
      );
    };

    const resolveResult = () => {
      if (settled) return;
      flushHeader();
      if (exit === undefined) {
        fail(
          new TransportError(`${plan.where} closed the channel without reporting how the command ended`, {
            details: { ...partial(), commandMayHaveRun: true },
          }),
          'release',
        );
        return;
      }
      const result: ExecResult = {
        exitCode: exit.code,
        signal: exit.signal,
        ...summaries(),
        durationMs: Math.round(performance.now() - started),
      };
      if (plan.sudo && exit.code === 1 && SUDO_NEEDS_PASSWORD.test(Buffer.concat(probe).toString('utf8'))) {
        fail(
          new CommandFailedError(
            `sudo on ${plan.where} requires a password for ${plan.target.credentials.username}: ` +
              'Fleetward runs sudo -n and never types one. Allow the command with NOPASSWD in sudoers, ' +
              'or log in as root. The command did not run.',
            { details: { ...plan.context, ...result, reason: 'sudo-password-required' } },
          ),
          'release',
        );
        return;
      }
      settle('release');
      resolve(result);
    };

    const feed = (stream: 'stdout' | 'stderr', collector: OutputCollector) => (chunk: Buffer) => {
      if (settled) return;
      collector.push(chunk);
      if (stream === 'stderr' && probeBytes < SUDO_PROBE_BYTES) {
        const part = chunk.subarray(0, SUDO_PROBE_BYTES - probeBytes);
        probe.push(Buffer.from(part));
        probeBytes += part.length;
      }
      try {
        onOutput?.(stream, chunk);
      } catch {
        // A faulty listener must neither crash the orchestrator nor kill a root command halfway.
      }
    };

    const feedStdout = feed('stdout', stdout);
    const flushHeader = () => {
      const held = header;
      header = undefined;
      if (held && held.length > 0) feedStdout(held);
    };
    const onStdout = (chunk: Buffer) => {
      const marker = plan.marker;
      if (header === undefined || marker === undefined) {
        feedStdout(chunk);
        return;
      }
      const held = Buffer.concat([header, chunk]);
      header = held;
      const at = held.indexOf(marker);
      const newline = at < 0 ? -1 : held.indexOf(0x0a, at + marker.length);
      if (newline >= 0) {
        const id = held.subarray(at + marker.length, newline).toString('latin1');
        if (/^[0-9]{1,10}$/.test(id) && Number(id) > 1) pgid = Number(id);
        header = undefined;
        // Whatever a login script printed before the header is not the command's output.
        const rest = held.subarray(newline + 1);
        if (rest.length > 0) feedStdout(rest);
        // Also after the call gave up waiting: a command that started late must not run on.
        if (killing) signalGroup('KILL');
      } else if (held.length > HEADER_LIMIT_BYTES) {
        // No header: the login shell did not run our prelude. Keep every byte as output.
        flushHeader();
      }
    };

    /** `stdin: false` when the command is being stopped as it starts (Windows: nothing more to feed it). */
    const attach = (opened: ClientChannel, { stdin = true } = {}) => {
      channel = opened;
      opened.on('data', onStdout);
      opened.stderr.on('data', feed('stderr', stderr));
      opened.on('end', () => {
        flushHeader();
        ended = true;
      });
      opened.on('exit', (code: number | null, sig?: string) => {
        exit = { code: typeof code === 'number' ? code : null, signal: normaliseSignal(sig) };
        if (killing && !settled) {
          // A background process may hold the output open; the command itself is gone.
          opened.close();
          later(DRAIN_AFTER_KILL_MS, () => finishKill(true));
        }
      });
      opened.on('close', () => {
        if (settled) return;
        if (connection.state === 'closed' && !(exit !== undefined && ended)) {
          onConnectionLost();
          return;
        }
        if (killing) finishKill(exit !== undefined);
        else resolveResult();
      });
      opened.on('error', (error: Error) =>
        kill(
          (details) =>
            new TransportError(`Channel to ${plan.where} failed: ${messageOf(error)}`, {
              cause: error,
              details,
            }),
        ),
      );
      if (plan.stdin === undefined || !stdin) opened.end();
      else opened.end(plan.stdin);
    };

    const onChannel = (
      error: (Error & { reason?: unknown }) | undefined,
      opened: ClientChannel | undefined,
    ) => {
      if (error || !opened) {
        const notStarted = error?.reason !== undefined || error?.message === 'No response from server';
        const transport = new TransportError(
          notStarted
            ? `Could not open a channel on ${plan.where}: ${messageOf(error)}`
            : `${plan.where} refused to run the command: ${messageOf(error)}`,
          {
            cause: error,
            details: { ...plan.context, commandMayHaveRun: !notStarted },
          },
        );
        if (settled) return;
        if (killing) {
          fail(killing.error({ ...partial(), commandMayHaveRun: !notStarted }), 'discard');
          return;
        }
        fail(notStarted ? new NotStartedError(transport) : transport, 'discard');
        return;
      }
      if (settled) {
        // The call was killed while the channel opened and has given up waiting: still make sure
        // nothing runs on. The header, once it comes, names the group to kill.
        attach(opened, { stdin: !plan.windows });
        if (plan.windows) {
          opened.close();
          return;
        }
        signalChannel(opened, 'KILL');
        setTimeout(() => opened.close(), EXIT_AFTER_KILL_MS).unref();
        return;
      }
      attach(opened, { stdin: !(killing && plan.windows) });
      if (killing && plan.windows) {
        closeWindowsChannel(opened);
      } else if (killing) {
        // Killed while opening: the group is signalled once the header names it.
        signalChannel(opened, 'KILL');
        later(EXIT_AFTER_KILL_MS, () => finishKill(false));
      }
    };

    connection.closeListeners.add(onConnectionLost);
    signal?.addEventListener('abort', onAbort, { once: true });
    const deadlineLeft = deadlineAt === undefined ? Number.POSITIVE_INFINITY : deadlineAt - performance.now();
    const byDeadline = deadlineLeft < timeoutMs;
    later(Math.min(timeoutMs, deadlineLeft), () =>
      kill(
        (details) =>
          new TimeoutError(
            byDeadline
              ? `Command on ${plan.where} was killed at the adapter's deadline of ${ctx.config.deadlineMs} ms`
              : `Command on ${plan.where} timed out after ${timeoutMs} ms`,
            { details },
          ),
      ),
    );
    try {
      lease.client.exec(plan.line, (error, opened) => onChannel(error, opened));
    } catch (error) {
      fail(
        new NotStartedError(
          new TransportError(`Connection to ${plan.where} is gone: ${messageOf(error)}`, {
            cause: error,
            details: { ...plan.context, commandMayHaveRun: false },
          }),
        ),
        'discard',
      );
    }
  });
}

/**
 * The exec request of `command` on a POSIX server: the pid header, then `exec` of the words
 * `buildArgv` made (env as `env K=V` words, `sudo -n --` for a non-root login asking for root),
 * quoted by `quoteArgv`.
 */
function buildPosixExec(
  command: Command,
  isRoot: boolean,
): { line: string; marker: Buffer; stdin: Buffer | undefined } {
  const built = buildArgv(command, { isRoot, envInArgv: true });
  // sshd starts the login shell as a session (and process group) leader, and `exec` keeps its
  // pid: so `$$` names the command's process group, which a timeout or an abort can then kill
  // even where sshd ignores signal requests (OpenSSH does for root logins). The token tells
  // the header apart from anything a login script printed before it.
  const token = `fleetward-exec-${randomBytes(16).toString('hex')}:`;
  return {
    line: `printf '%s\\n' "${token}$$" && exec ${quoteArgv(built.argv)}`,
    marker: Buffer.from(token),
    stdin: built.stdin === undefined ? undefined : Buffer.from(built.stdin, 'utf8'),
  };
}

/**
 * Waits for `work` unless the call is aborted or its deadline passes first; then rejects at once
 * (nothing has run yet) and hands a late result to `late` so that it can be released.
 */
function beforeStart<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  deadlineAt: number | undefined,
  context: Record<string, unknown>,
  late: (value: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      done = true;
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      if (done) return;
      finish();
      reject(
        new AbortedError('Command aborted before it started', {
          cause: signal?.reason,
          details: { ...context, commandMayHaveRun: false },
        }),
      );
    };
    if (signal?.aborted) {
      onAbort();
    } else {
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadlineAt !== undefined) {
        timer = setTimeout(
          () => {
            if (done) return;
            finish();
            reject(
              new TimeoutError('The adapter deadline passed before the command started', {
                details: { ...context, commandMayHaveRun: false },
              }),
            );
          },
          Math.max(0, Math.min(deadlineAt - performance.now(), MAX_TIMER_MS)),
        );
      }
    }
    work.then(
      (value) => {
        if (done) late(value);
        else {
          finish();
          resolve(value);
        }
      },
      (error: unknown) => {
        if (done) return;
        finish();
        reject(error);
      },
    );
  });
}

/**
 * The `exec` capability over SSH. See the README for the whole contract; in short:
 * commands travel as one string built by `buildArgv` + `quoteArgv`; connections are pooled per
 * server, login and bastion; a command is retried on a fresh connection only when it provably
 * never reached the server; timeouts and aborts kill the remote process group by signal request.
 * A Windows server (`isWindowsServer`) runs the command as PowerShell instead, and a timeout or an
 * abort closes its channel.
 */
export function createSshExec(ctx: SshExecContext): ExecCapability {
  const salt = randomBytes(32);
  const secretKey = (credentials: ParsedCredentials): string => {
    const mac = createHmac('sha256', salt);
    for (const part of [
      credentials.username,
      credentials.privateKey,
      credentials.passphrase,
      credentials.password,
      credentials.agent,
    ]) {
      const bytes = part === undefined ? Buffer.alloc(0) : Buffer.from(part);
      const length = Buffer.alloc(5);
      length.writeUInt8(part === undefined ? 0 : 1, 0);
      length.writeUInt32BE(bytes.length, 1);
      mac.update(length).update(bytes);
    }
    return mac.digest('hex');
  };

  const credentialsOf = async (server: Server): Promise<SshCredentials> => {
    let found: SshCredentials | undefined;
    if (ctx.config.credentialsFor) {
      try {
        found = await ctx.config.credentialsFor(server);
      } catch (error) {
        if (error instanceof FleetwardError) throw error;
        throw new TransportError(`credentialsFor failed for server ${server.name}: ${messageOf(error)}`, {
          cause: error,
          details: { serverId: server.id, serverName: server.name },
        });
      }
    }
    const credentials = found ?? ctx.config.credentials;
    if (!credentials) {
      throw new ValidationError('SshCredentials', [
        { path: [], message: `no credentials for server ${server.name} (credentialsFor returned nothing)` },
      ]);
    }
    return credentials;
  };

  const jumpOf = async (server: Server): Promise<JumpHost | undefined> => {
    const found = ctx.config.jumpHostFor ? await ctx.config.jumpHostFor(server) : undefined;
    if (found === null) return undefined;
    return found ?? ctx.config.jumpHost;
  };

  const plan = async (server: Server, command: Command): Promise<Plan> => {
    const host = server.address ?? server.name;
    const port = server.port ?? 22;
    const context = {
      serverId: server.id,
      serverName: server.name,
      adapter: ctx.config.name,
      host,
      port,
    };
    const raw = await credentialsOf(server);
    const { credentials, keyType } = parseCredentials(raw, 'SshCredentials');
    const isRoot = credentials.username === 'root';
    const windows = isWindowsServer(server);
    // Before any connection: an invalid command fails the same way whether the host is up or not.
    const request = windows
      ? { ...buildWindowsExec(command), marker: undefined }
      : buildPosixExec(command, isRoot);
    const target: Hop = { host, port, server, credentials, keyType, label: labelOf(server.name, host, port) };

    let jump: Hop | undefined;
    let jumpKey: string | undefined;
    const jumpInput = await jumpOf(server);
    if (jumpInput) {
      const jumpHost = validate(JumpHostSchema, jumpInput, 'JumpHost');
      const jumpCredentials = jumpHost.credentials
        ? parseCredentials(jumpHost.credentials, 'JumpHost.credentials')
        : { credentials, keyType };
      jump = {
        host: jumpHost.host,
        port: jumpHost.port,
        credentials: jumpCredentials.credentials,
        keyType: jumpCredentials.keyType,
        label: labelOf(undefined, jumpHost.host, jumpHost.port),
      };
      jumpKey = JSON.stringify(['jump', jump.host, jump.port, secretKey(jump.credentials)]);
    }
    // Per server entity (and so per tenant): a connection verified against one server's pins and
    // logged in with its credentials is never lent to another server's commands.
    const poolKey = JSON.stringify([
      server.tenantId,
      server.id,
      host,
      port,
      secretKey(credentials),
      jumpKey ?? null,
    ]);
    return {
      target,
      jump,
      poolKey,
      jumpKey,
      line: request.line,
      marker: request.marker,
      stdin: request.stdin,
      sudo: !windows && command.sudo === true && !isRoot,
      windows,
      where: jump ? `${target.label} via bastion ${jump.label}` : target.label,
      context: { ...context, username: credentials.username, ...(jump ? { via: jump.label } : {}) },
    };
  };

  return {
    async exec(server: Server, command: Command, options: ExecOptions = {}): Promise<ExecResult> {
      validate(ExecOptionsSchema, options, 'ExecOptions');
      const started = performance.now();
      const deadlineAt = ctx.config.deadlineMs === undefined ? undefined : started + ctx.config.deadlineMs;
      const baseContext = { serverId: server?.id, serverName: server?.name, adapter: ctx.config.name };
      if (options.signal?.aborted) {
        throw new AbortedError('Command aborted before it started', {
          cause: options.signal.reason,
          details: { ...baseContext, commandMayHaveRun: false },
        });
      }
      const thePlan = await beforeStart(
        plan(server, command),
        options.signal,
        deadlineAt,
        baseContext,
        () => {},
      );
      const timeoutMs = options.timeoutMs ?? ctx.config.defaultTimeoutMs;
      const maxOutputBytes = options.maxOutputBytes ?? ctx.config.defaultMaxOutputBytes;
      // One more try, on a fresh connection, only for a command that provably never reached the server.
      for (let attempt = 0; ; attempt++) {
        const lease = await beforeStart(
          ctx.pool.acquire(thePlan.poolKey, limits(ctx.config), () => dialTarget(ctx, thePlan)),
          options.signal,
          deadlineAt,
          thePlan.context,
          (late) => late.release(),
        );
        try {
          return await runOnLease({
            ctx,
            plan: thePlan,
            lease,
            options,
            timeoutMs,
            maxOutputBytes,
            deadlineAt,
            started,
          });
        } catch (error) {
          if (!(error instanceof NotStartedError)) throw error;
          if (attempt >= 1 || options.signal?.aborted) throw error.error;
        }
      }
    },
  };
}
