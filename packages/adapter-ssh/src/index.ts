import type { Adapter } from '@fleetward/core';
import { validate } from '@fleetward/core';
import { HostKeyVerifier } from './host-keys.js';
import { createSshLogin } from './login.js';
import { type SshAdapterOptions, SshAdapterOptionsSchema } from './options.js';
import { ConnectionPool } from './pool.js';
import { createSshExec } from './transport.js';

/**
 * An adapter that runs commands on servers over SSH (ssh2), with the `exec` and `login` capabilities.
 *
 * - Target: `server.address ?? server.name`, port `server.port ?? 22`; login from
 *   `credentialsFor(server)` or `credentials` (key, with passphrase, agent or password).
 * - Host keys are verified under `hostKeyPolicy` (`pinned`, `known-hosts` or opt-in `tofu`); a
 *   key that does not match rejects with `HostKeyMismatchError` before anything runs.
 * - The command reaches the remote login shell as one string built with `buildArgv` (env as
 *   `env K=V` words, `sudo -n --` for a non-root login asking for root) and `quoteArgv`: no value
 *   is ever shell syntax. Script text and `stdin` travel on the channel's standard input.
 * - A Windows server (`server.os.family === 'windows'`, OpenSSH for Windows) gets no shell line:
 *   the exec request is `powershell.exe` with `-EncodedCommand` of core's PowerShell runner (the
 *   same invocation as the WinRM adapter), and stdin carries the input as base64. `sudo` does not
 *   apply there: commands run as the login, which must be an administrator. A timeout or an
 *   abort closes the channel (see the README's caveat on what Windows then does).
 * - Connections are pooled per server and login (`maxChannelsPerConnection` commands each, up to
 *   `maxConnectionsPerHost`), kept alive, closed when idle, and replaced after a drop. A command is
 *   retried on a fresh connection only when it provably never reached the server.
 * - Timeout and abort send SIGTERM, then SIGKILL, to the command's process group (with `kill` on
 *   a second channel, plus an SSH signal request) and reject with `TimeoutError` / `AbortedError`
 *   carrying the partial output.
 * - A host that cannot be reached, refuses the login or drops the connection rejects with a
 *   `TransportError` naming it, the phase and the reason, within `connectTimeoutMs`.
 * - `sudo` that wants a password rejects with `CommandFailedError`
 *   (`details.reason: 'sudo-password-required'`).
 *
 * @throws ValidationError (subject `SshAdapterOptions`) when `options` are invalid; secrets are never
 *   part of the message.
 */
export function createSshAdapter(options: SshAdapterOptions): Adapter {
  const config = validate(SshAdapterOptionsSchema, options, 'SshAdapterOptions');
  const pool = new ConnectionPool();
  const ctx = { config, pool, verifier: new HostKeyVerifier(config) };
  const exec = createSshExec(ctx);
  return {
    name: config.name,
    exec,
    login: createSshLogin(ctx),
    close: () => pool.close(),
  };
}

export {
  fingerprintOf,
  hostFieldMatches,
  type KnownHostEntry,
  knownHostsName,
  parseKnownHosts,
} from './host-keys.js';
export {
  FINGERPRINT_PATTERN,
  type JumpHost,
  JumpHostSchema,
  type LearnedHostKey,
  type SshAdapterOptions,
  SshAdapterOptionsSchema,
  type SshCredentials,
  SshCredentialsSchema,
} from './options.js';
