import type { Duplex } from 'node:stream';
import {
  type FleetwardError,
  HostKeyMismatchError,
  redact,
  type Server,
  TransportError,
} from '@fleetward/core';
import { type AuthenticationType, type AuthHandlerMiddleware, Client, type ClientChannel } from 'ssh2';
import { type HostKeyVerdict, type HostKeyVerifier, hostKeyAlgorithmsFor } from './host-keys.js';
import type { ParsedCredentials, SshAdapterConfig } from './options.js';
import type { ConnectionPool, Lease, PoolLimits } from './pool.js';

const ERRNO_MEANING: Record<string, string> = {
  ECONNREFUSED: 'connection refused (nothing listens on that port)',
  ECONNRESET: 'connection reset by the peer',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed temporarily',
  EPIPE: 'connection closed by the peer',
};

/**
 * Tunnels through one bastion connection. OpenSSH's MaxSessions does not count `direct-tcpip`
 * channels, so a bastion connection can carry many more targets than a target carries commands.
 */
const TUNNELS_PER_BASTION_CONNECTION = 256;

/** One SSH hop: the target, or a bastion on the way to it. */
export interface Hop {
  host: string;
  port: number;
  /** The server the command is for; absent for a bastion. */
  server?: Server;
  credentials: ParsedCredentials;
  /** Type of `credentials.privateKey`, for saying which key was tried. */
  keyType: string | undefined;
  /** `web-1 (10.0.0.5:22)`: how errors name the hop. */
  label: string;
}

/** Where a command goes: the target, and the bastion in front of it if any. */
export interface Route {
  target: Hop;
  jump: Hop | undefined;
  /** Pool key of the bastion connection. */
  jumpKey: string | undefined;
  /** `web-1 (10.0.0.5:22) via bastion 192.0.2.1:22`: how errors name the route. */
  where: string;
  /** Non-secret context that every error's `details` carries. */
  context: Record<string, unknown>;
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An error's message, with secrets redacted, for our own messages. */
export function messageOf(error: unknown): string {
  return String(redact(error instanceof Error ? error.message : String(error)));
}

/** `web-1 (10.0.0.5:22)`, or just the address when the name is the address. */
export function labelOf(name: string | undefined, host: string, port: number): string {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return name && name !== host ? `${name} (${address})` : address;
}

function hostKeyError(where: string, verdict: Extract<HostKeyVerdict, { ok: false }>, context: object) {
  const details = { ...context, ...verdict.details };
  if (verdict.kind === 'unrecorded') {
    return new TransportError(`Host key of ${where} was not accepted: ${verdict.reason}. Nothing was run.`, {
      retryable: false,
      fault: 'caller',
      details,
    });
  }
  return new HostKeyMismatchError(
    `Host key verification failed for ${where}: ${verdict.reason}. Nothing was run.`,
    {
      details,
    },
  );
}

/** Shared state of one adapter's exec capability. */
export interface SshExecContext {
  config: SshAdapterConfig;
  pool: ConnectionPool;
  verifier: HostKeyVerifier;
}

/**
 * Opens one SSH connection: TCP (or `sock`, a tunnel through a bastion), handshake with the host
 * key checked under the policy, then login. Bounded by `connectTimeoutMs`, and every failure is a
 * `FleetwardError` that names the hop, the phase and the reason.
 */
export async function dialHop(ctx: SshExecContext, hop: Hop, where: string, context: object, sock?: Duplex) {
  const target = hop.server ? { host: hop.host, port: hop.port, server: hop.server } : hop;
  const details = { ...context, host: hop.host, port: hop.port, username: hop.credentials.username };
  let expectation: Awaited<ReturnType<HostKeyVerifier['expectationFor']>>;
  try {
    expectation = await ctx.verifier.expectationFor(target);
  } catch (error) {
    sock?.destroy();
    throw new TransportError(`Cannot check the host key of ${where}: ${messageOf(error)}`, {
      cause: error,
      retryable: false,
      fault: 'caller',
      details,
    });
  }
  const { credentials, keyType } = hop;
  const methods: {
    label: string;
    type: AuthenticationType;
    auth: Parameters<Parameters<AuthHandlerMiddleware>[2]>[0];
  }[] = [];
  if (credentials.privateKey !== undefined) {
    methods.push({
      label: `publickey (${keyType ?? 'private'} key)`,
      type: 'publickey',
      auth: {
        type: 'publickey',
        username: credentials.username,
        key: credentials.privateKey,
        ...(credentials.passphrase === undefined ? {} : { passphrase: credentials.passphrase }),
      },
    });
  }
  if (credentials.agent !== undefined) {
    methods.push({
      label: 'agent',
      type: 'publickey',
      auth: { type: 'agent', username: credentials.username, agent: credentials.agent },
    });
  }
  if (credentials.password !== undefined) {
    methods.push({
      label: 'password',
      type: 'password',
      auth: { type: 'password', username: credentials.username, password: credentials.password },
    });
  }

  return new Promise<Client>((resolve, reject) => {
    const client = new Client();
    let phase = sock ? 'SSH handshake' : 'TCP connect';
    let settled = false;
    let rejected: Extract<HostKeyVerdict, { ok: false }> | undefined;
    const tried: string[] = [];
    let offered: string[] | undefined;
    let next = 0;

    const fail = (error: FleetwardError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.destroy();
      sock?.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () =>
        fail(
          new TransportError(
            `SSH connection to ${where} timed out after ${ctx.config.connectTimeoutMs} ms during ${phase}`,
            { details: { ...details, phase } },
          ),
        ),
      ctx.config.connectTimeoutMs,
    );

    client.on('connect', () => {
      phase = 'SSH handshake';
    });
    client.on('handshake', () => {
      phase = 'authentication';
    });
    client.on('ready', () => {
      if (settled) {
        client.end();
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve(client);
    });
    client.on('error', (error: Error & { level?: string }) => {
      if (settled) return;
      if (rejected) {
        fail(hostKeyError(where, rejected, context));
      } else if (error.level === 'client-authentication') {
        fail(
          new TransportError(
            `SSH login as ${credentials.username} on ${where} failed: tried ${tried.join(', ') || 'no method'}` +
              `; the server accepts ${offered?.join(', ') ?? 'none of them'}`,
            { retryable: false, fault: 'caller', details: { ...details, phase, tried, offered } },
          ),
        );
      } else {
        const code = errorCode(error);
        const why =
          code && ERRNO_MEANING[code] ? `${code}, ${ERRNO_MEANING[code]}` : (code ?? messageOf(error));
        fail(
          new TransportError(`SSH connection to ${where} failed during ${phase}: ${why}`, {
            cause: error,
            details: { ...details, phase, ...(code ? { errno: code } : {}) },
          }),
        );
      }
    });
    client.on('close', () => {
      fail(
        rejected
          ? hostKeyError(where, rejected, context)
          : new TransportError(`SSH connection to ${where} was closed by the peer during ${phase}`, {
              details: { ...details, phase },
            }),
      );
    });

    const authHandler: AuthHandlerMiddleware = (methodsLeft, _partialSuccess, callback) => {
      if (Array.isArray(methodsLeft)) offered = [...methodsLeft];
      while (next < methods.length) {
        const method = methods[next++];
        if (!method) break;
        if (Array.isArray(methodsLeft) && !methodsLeft.includes(method.type)) continue;
        tried.push(method.label);
        callback(method.auth);
        return;
      }
      // ssh2 takes `false` as "no more methods"; its typings leave that out.
      callback(false as never);
    };

    try {
      client.connect({
        host: hop.host,
        port: hop.port,
        ...(sock ? { sock: sock as never } : {}),
        username: credentials.username,
        // Our own timer covers every phase, with a message that says which one.
        readyTimeout: 0,
        keepaliveInterval: ctx.config.keepaliveIntervalMs,
        keepaliveCountMax: ctx.config.keepaliveCountMax,
        authHandler,
        algorithms: { serverHostKey: hostKeyAlgorithmsFor(expectation.keyTypes) as never },
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          ctx.verifier.verify(target, expectation, key).then(
            (verdict) => {
              if (!verdict.ok) rejected = verdict;
              verify(verdict.ok);
            },
            (error: unknown) => {
              rejected = {
                ok: false,
                kind: 'unrecorded',
                reason: `host key check failed: ${messageOf(error)}`,
                details: {},
              };
              verify(false);
            },
          );
        },
      });
    } catch (error) {
      fail(
        new TransportError(`SSH connection to ${where} could not start: ${messageOf(error)}`, {
          cause: error,
          details,
        }),
      );
    }
  });
}

/** A tunnel from the bastion to the target, bounded by `connectTimeoutMs`. */
function openTunnel(ctx: SshExecContext, jump: Lease, route: Route, jumpHop: Hop): Promise<ClientChannel> {
  const { host, port } = route.target;
  return new Promise<ClientChannel>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(
        new TransportError(
          `Bastion ${jumpHop.label} did not open a tunnel to ${route.target.label} within ${ctx.config.connectTimeoutMs} ms`,
          { details: route.context },
        ),
      );
    }, ctx.config.connectTimeoutMs);
    try {
      jump.client.forwardOut('127.0.0.1', 0, host, port, (error, stream) => {
        if (settled) {
          stream?.destroy();
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (error) {
          reject(
            new TransportError(
              `Bastion ${jumpHop.label} could not reach ${route.target.label}: ${messageOf(error)}`,
              { cause: error, details: { ...route.context, phase: 'tunnel' } },
            ),
          );
        } else {
          resolve(stream);
        }
      });
    } catch (error) {
      settled = true;
      clearTimeout(timer);
      reject(
        new TransportError(`Bastion ${jumpHop.label} connection is gone: ${messageOf(error)}`, {
          cause: error,
          details: route.context,
        }),
      );
    }
  });
}

export function limits(config: SshAdapterConfig): PoolLimits {
  return {
    maxChannels: config.maxChannelsPerConnection,
    maxConnections: config.maxConnectionsPerHost,
    idleTimeoutMs: config.idleTimeoutMs,
  };
}

/** Dials the target, through the bastion when there is one; the tunnel's slot is held while it lives. */
export async function dialTarget(ctx: SshExecContext, route: Route): Promise<Client> {
  const { jump, jumpKey } = route;
  if (!jump || jumpKey === undefined) return dialHop(ctx, route.target, route.where, route.context);
  const jumpLease = await ctx.pool.acquire(
    jumpKey,
    { ...limits(ctx.config), maxChannels: TUNNELS_PER_BASTION_CONNECTION, maxConnections: 1 },
    () => dialHop(ctx, jump, `bastion ${jump.label}`, route.context),
  );
  let tunnel: ClientChannel;
  try {
    tunnel = await openTunnel(ctx, jumpLease, route, jump);
  } catch (error) {
    jumpLease.release();
    throw error;
  }
  try {
    const client = await dialHop(ctx, route.target, route.where, route.context, tunnel);
    client.once('close', () => jumpLease.release());
    return client;
  } catch (error) {
    jumpLease.release();
    throw error;
  }
}
