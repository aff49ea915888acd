import type { Adapter } from '@fleetward/core';
import { validate } from '@fleetward/core';
import { createWinRmExec } from './exec.js';
import { createWinRmLogin } from './login.js';
import { type WinRmAdapterOptions, WinRmAdapterOptionsSchema } from './options.js';
import { ConnectionPool } from './pool.js';

/**
 * An adapter that runs commands on Windows servers over WinRM (WS-Management, WinRS), with the
 * `exec` and `login` capabilities.
 *
 * - Target: `server.address ?? server.name`, port `server.port ?? options.port ?? 5986` (5985 over
 *   http), path `/wsman`; login from `credentialsFor(server)` or `credentials`, by NTLMv2 (the
 *   connection it authenticated is reused for the command's messages, and kept idle for
 *   `idleTimeoutMs` for the next command with the same login) or Basic.
 * - HTTPS by default; the certificate must chain to `ca` (or the system CAs) and match the host
 *   name, or match the pinned `certificateFingerprint`; a certificate that is not trusted rejects
 *   with `TransportError` (`details.reason: 'certificate-not-trusted'`), one that does not match
 *   the pin with `HostKeyMismatchError`, before any request (or password) is sent.
 * - Each command runs in its own shell as `powershell.exe -EncodedCommand` of a constant runner
 *   script: argv and env values arrive base64-encoded in single-quoted literals and are decoded
 *   by the script, so no value is ever PowerShell syntax; stdin (or the script of a script
 *   command) travels on the command's stdin with WS-Man `Send`. When the runner would make the
 *   command line longer than 8,191 characters, it travels on stdin too, behind a small bootstrap.
 * - Output is received until the command is done (exit code kept), capped with honest
 *   truncation; PowerShell's CLIXML error stream is turned into readable text.
 * - Timeout and abort cut the pending Receive, send Signal terminate and delete the shell, and
 *   reject with `TimeoutError` / `AbortedError` carrying the partial output. The shell is always
 *   deleted.
 * - A refused login rejects with a non-retryable `TransportError` (`details.phase:
 *   'authentication'`); a SOAP fault with `WsmanFaultError` (its `wsmanCode`).
 * - `login.probe(server, { username, password }, { timeoutMs })` proves a password on a
 *   connection and shell of its own (never a pooled one): `cmd.exe /c exit 0`, then the shell is
 *   deleted and the connection closed. The certificate is checked as for `exec` (a pin mismatch
 *   throws `HostKeyMismatchError`, nothing sent); a 401 is `{ ok: false, refused: true }` (Windows
 *   does not tell a wrong password from an expired one or a locked-out account, so the message
 *   names all three); unreachable, timed out or untrusted is `refused: false`. A private key is
 *   not tried (`refused: false`, saying WinRM logs in with passwords); `sudo` has no meaning on
 *   Windows and is ignored.
 *
 * @throws ValidationError (subject `WinRmAdapterOptions`) when `options` are invalid; secrets are
 *   never part of the message.
 */
export function createWinRmAdapter(options: WinRmAdapterOptions): Adapter {
  const config = validate(WinRmAdapterOptionsSchema, options, 'WinRmAdapterOptions');
  if (!config.https) {
    process.emitWarning(
      `WinRM adapter "${config.name}" uses plain HTTP: messages${config.auth === 'basic' ? ' and passwords' : ''} cross the network unencrypted`,
      { code: 'FLEETWARD_WINRM_HTTP' },
    );
  }
  const pool = new ConnectionPool(config.idleTimeoutMs);
  return {
    name: config.name,
    exec: createWinRmExec(config, pool),
    login: createWinRmLogin(config),
    close: async () => pool.close(),
  };
}

export { WsmanFaultError } from './errors.js';
export { certificateFingerprintOf, normalizeFingerprint } from './http.js';
export {
  CERTIFICATE_FINGERPRINT_PATTERN,
  type WinRmAdapterOptions,
  WinRmAdapterOptionsSchema,
  type WinRmCredentials,
  WinRmCredentialsSchema,
} from './options.js';
export {
  buildPowerShellInvocation,
  buildRunnerScript,
  ClixmlDecoder,
  encodePowerShell,
  MAX_COMMAND_LINE,
  type PowerShellInvocation,
} from './powershell.js';
export { escapeXml, type WsmanFault } from './wsman.js';
