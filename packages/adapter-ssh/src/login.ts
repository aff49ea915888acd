import {
  FleetwardError,
  type LoginCapability,
  type LoginCredentials,
  type LoginProbe,
  type Server,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import type { Client } from 'ssh2';
import { dialHop, type Hop, labelOf, messageOf, type SshExecContext } from './connect.js';
import type { SshCredentials } from './options.js';
import { parseCredentials } from './transport.js';

const DEFAULT_PROBE_TIMEOUT_MS = 20_000;

/** Runs one command on a fresh client; resolves its exit code (null when it ended by a signal). */
function runOnce(client: Client, command: string, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`"${command}" did not finish in ${timeoutMs} ms`)),
      timeoutMs,
    );
    client.exec(command, (error, channel) => {
      if (error) {
        clearTimeout(timer);
        reject(error);
        return;
      }
      let code: number | null = null;
      channel.on('exit', (exitCode: number | null) => {
        code = exitCode;
      });
      channel.on('close', () => {
        clearTimeout(timer);
        resolve(code);
      });
      channel.resume();
      channel.stderr.resume();
    });
  });
}

/** Exactly the one credential given: a probe never falls back from a key to a password. */
function sshCredentialsOf(input: LoginCredentials): SshCredentials {
  const key = 'privateKey' in input ? input.privateKey : undefined;
  const password = 'password' in input ? input.password : undefined;
  if (key !== undefined && password !== undefined) {
    throw new ValidationError('LoginProbe.credentials', [
      { path: [], message: 'give privateKey or password, not both' },
    ]);
  }
  if (key !== undefined) return { username: input.username, privateKey: key };
  // Neither (a caller outside TypeScript): the schema says what is missing.
  return password === undefined ? { username: input.username } : { username: input.username, password };
}

/**
 * The `login` capability over SSH: a connection of its own for every probe — never one from the
 * pool, which may have logged in with another key — with the host key checked as for `exec`.
 * A key is tried by `publickey` authentication, a password by `password` authentication only
 * (never keyboard-interactive): a server that does not offer it answers `refused: true`.
 * Bastions are not used: a probe proves the key on the target itself, so a server behind a
 * bastion answers `{ ok: false, refused: false }` unless it is directly reachable.
 */
export function createSshLogin(ctx: SshExecContext): LoginCapability {
  return {
    async probe(server: Server, input, options = {}): Promise<LoginProbe> {
      const { credentials, keyType } = parseCredentials(sshCredentialsOf(input), 'LoginProbe.credentials');
      const host = server.address ?? server.name;
      const port = server.port ?? 22;
      const hop: Hop = { host, port, server, credentials, keyType, label: labelOf(server.name, host, port) };
      const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
      let client: Client | undefined;
      try {
        client = await dialHop(ctx, hop, hop.label, {
          serverId: server.id,
          serverName: server.name,
          adapter: ctx.config.name,
          probe: true,
        });
        const code = await runOnce(client, 'true', timeoutMs);
        if (code !== 0) return { ok: false, refused: false, message: `"true" exited with ${code}` };
        if (options.sudo && credentials.username !== 'root') {
          const sudo = await runOnce(client, 'sudo -n true', timeoutMs);
          if (sudo !== 0) {
            return {
              ok: false,
              refused: true,
              message: `${credentials.username} logged in but "sudo -n true" exited with ${sudo}`,
            };
          }
        }
        return { ok: true };
      } catch (error) {
        if (error instanceof ValidationError) throw error;
        if (error instanceof FleetwardError && !(error instanceof TransportError)) throw error;
        const phase = error instanceof TransportError ? error.details.phase : undefined;
        return { ok: false, refused: phase === 'authentication', message: messageOf(error) };
      } finally {
        client?.end();
      }
    },
  };
}
