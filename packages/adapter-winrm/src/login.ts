import {
  HostKeyMismatchError,
  type LoginCapability,
  type LoginCredentials,
  type LoginProbe,
  type LoginProbeOptions,
  type Server,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { WsmanFaultError } from './errors.js';
import { toWinRmLogin } from './exec.js';
import { normalizeFingerprint, type WinRmLogin, WsmanConnection } from './http.js';
import { MAX_TIMER_MS, type WinRmAdapterConfig } from './options.js';
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
  signalBody,
} from './wsman.js';

const DEFAULT_PROBE_TIMEOUT_MS = 20_000;
/** Bound on Signal and Delete after the probe, so that it still ends when the host stops answering. */
const CLEANUP_TIMEOUT_MS = 5_000;
/** The smallest thing a login can run: cmd.exe's own `exit`, no profile, no PowerShell. */
const PROBE_PROGRAM = 'cmd.exe';
const PROBE_ARGUMENTS = ['/c', 'exit', '0'];

/** The one password login given; `DOMAIN\\user` names a domain account, as for `credentials`. */
function loginOf(credentials: { username: string; password: string }): WinRmLogin {
  return toWinRmLogin(credentials, 'LoginProbe.credentials');
}

/** A password, or `undefined` for a key login (which WinRM cannot use). */
function passwordOf(input: LoginCredentials): string | undefined {
  if ('password' in input && input.password !== undefined) {
    if ('privateKey' in input && input.privateKey !== undefined) {
      throw new ValidationError('LoginProbe.credentials', [
        { path: [], message: 'give privateKey or password, not both' },
      ]);
    }
    return input.password;
  }
  return undefined;
}

/** Why a failed probe failed, as {@link LoginProbe} says it. */
function outcomeOf(error: unknown, timedOut: string | undefined): LoginProbe {
  if (error instanceof HostKeyMismatchError) throw error;
  if (timedOut !== undefined) return { ok: false, refused: false, message: timedOut };
  if (error instanceof TransportError && error.details.reason === 'login-refused') {
    // Windows answers a bare 401 for every failed logon over WinRM: which one it was is not said.
    return {
      ok: false,
      refused: true,
      message: `${error.message}: the password is wrong or has expired, or the account is locked out or disabled (WinRM does not say which)`,
    };
  }
  // Anything else (unreachable, untrusted certificate, a SOAP fault) proves nothing either way.
  return { ok: false, refused: false, message: error instanceof Error ? error.message : String(error) };
}

/** One probe's connection and shell, so that the cleanup knows what to undo. */
interface ProbeRun {
  conn: WsmanConnection;
  operationTimeoutSec: number;
  shellId?: string;
  commandId?: string;
  done: boolean;
  /** Set once the probe's time is up: no further message is started. */
  timedOut?: string;
}

function call(run: ProbeRun, action: string, body: string, what: string, options?: Record<string, string>) {
  if (run.timedOut !== undefined && what !== 'Signal' && what !== 'Delete') {
    return Promise.reject(new Error(run.timedOut));
  }
  const envelope = buildEnvelope(
    {
      to: run.conn.endpoint,
      action,
      operationTimeoutSec: run.operationTimeoutSec,
      ...(run.shellId === undefined ? {} : { shellId: run.shellId }),
      ...(options ? { options } : {}),
    },
    body,
  );
  return run.conn.call(envelope, what);
}

/** Create, Command, Receive until done: resolves the exit code of the probe command. */
async function runProbeCommand(run: ProbeRun): Promise<number | null> {
  run.shellId = parseShellId(
    await call(run, ACTIONS.create, createShellBody(), 'Create', { WINRS_NOPROFILE: 'TRUE' }),
  );
  const commandId = parseCommandId(
    await call(run, ACTIONS.command, commandBody(PROBE_PROGRAM, PROBE_ARGUMENTS), 'Command', {
      WINRS_SKIP_CMD_SHELL: 'TRUE',
    }),
  );
  run.commandId = commandId;
  for (;;) {
    try {
      const received = parseReceive(
        await call(run, ACTIONS.receive, receiveBody(commandId), 'Receive'),
        commandId,
      );
      if (received.done) {
        run.done = true;
        return received.exitCode;
      }
    } catch (error) {
      if (!(error instanceof WsmanFaultError && error.wsmanCode === RECEIVE_TIMED_OUT)) throw error;
    }
  }
}

/** Ends the command if it still runs and deletes the shell; the probe's verdict does not depend on it. */
async function cleanUp(run: ProbeRun): Promise<void> {
  if (run.shellId === undefined) return;
  const timer = setTimeout(() => run.conn.interrupt(), CLEANUP_TIMEOUT_MS);
  try {
    if (run.commandId !== undefined && !run.done) {
      await call(run, ACTIONS.signal, signalBody(run.commandId), 'Signal').catch(() => undefined);
    }
    await call(run, ACTIONS.delete, '', 'Delete').catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The `login` capability over WinRM: proves a password logs in by running `cmd.exe /c exit 0` in
 * a shell of its own, over a connection of its own (never one from the pool, whose NTLM
 * handshake was made with the adapter's login), then deletes the shell and closes the connection.
 *
 * - The certificate is checked exactly as for `exec` (`ca`, `certificateFingerprint`,
 *   `certificateFingerprintFor`): a pin mismatch throws `HostKeyMismatchError`, an untrusted
 *   certificate answers `{ ok: false, refused: false }`; neither sends a request.
 * - The adapter's `auth` (NTLM or Basic) carries exactly the given username and password;
 *   `DOMAIN\user` names a domain account.
 * - A 401 answers `refused: true`. Windows gives the same 401 for a wrong password, an expired
 *   one, a locked-out or a disabled account, so the message names them all.
 * - A private key answers `{ ok: false, refused: false }` without connecting: WinRM logs in with
 *   passwords. Giving both a key and a password is a `ValidationError`.
 * - `sudo` has no meaning on Windows and is ignored: a login that runs a command is proven;
 *   whether it is an administrator is not checked.
 * - `timeoutMs` bounds the probe (connect, TLS, every message; @default 20 s); deleting the shell
 *   afterwards may take up to 5 s more.
 */
export function createWinRmLogin(config: WinRmAdapterConfig): LoginCapability {
  return {
    async probe(
      server: Server,
      input: LoginCredentials,
      options: LoginProbeOptions = {},
    ): Promise<LoginProbe> {
      const password = passwordOf(input);
      if (password === undefined) {
        return {
          ok: false,
          refused: false,
          message: `WinRM logs in with passwords, not keys: the key for ${input.username} was not tried on ${server.name}`,
        };
      }
      const login = loginOf({ username: input.username, password });
      const timeoutMs = Math.min(options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS, MAX_TIMER_MS);
      const host = server.address ?? server.name;
      const port = server.port ?? config.port ?? (config.https ? 5986 : 5985);
      const pinned = (await config.certificateFingerprintFor?.(server)) ?? config.certificateFingerprint;
      const run: ProbeRun = {
        conn: new WsmanConnection({
          host,
          port,
          https: config.https,
          path: config.path,
          auth: config.auth,
          login,
          ca: config.ca,
          certificateFingerprint: pinned === undefined ? undefined : normalizeFingerprint(pinned),
          connectTimeoutMs: Math.min(config.connectTimeoutMs, timeoutMs),
          requestTimeoutMs: timeoutMs,
        }),
        operationTimeoutSec: Math.max(1, Math.min(config.operationTimeoutSec, Math.floor(timeoutMs / 1000))),
        done: false,
      };
      const timer = setTimeout(() => {
        run.timedOut = `WinRM login probe as ${input.username} on ${host}:${port} got no answer in ${timeoutMs} ms`;
        run.conn.interrupt();
      }, timeoutMs);
      try {
        const exitCode = await runProbeCommand(run);
        if (exitCode !== 0) {
          return {
            ok: false,
            refused: false,
            message: `${input.username} logged in on ${host}:${port} but "${PROBE_PROGRAM} ${PROBE_ARGUMENTS.join(' ')}" exited with ${exitCode}`,
          };
        }
        return { ok: true };
      } catch (error) {
        return outcomeOf(error, run.timedOut);
      } finally {
        clearTimeout(timer);
        await cleanUp(run);
        run.conn.close();
      }
    },
  };
}
