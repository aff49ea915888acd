import { type EC2InstanceConnectClient, SendSSHPublicKeyCommand } from '@aws-sdk/client-ec2-instance-connect';
import {
  AbortedError,
  AuthorizationError,
  type EphemeralKeyOffer,
  type FleetwardError,
  generateEd25519KeyPair,
  NotFoundError,
  PublicKeyLineSchema,
  type Server,
  ValidationError,
  validate,
} from '@fleetward/core';
import { z } from 'zod';
import { awsCode, awsError, sanitized } from './errors.js';

/** How long EC2 Instance Connect keeps a pushed public key: the login must start within it. */
export const INSTANCE_CONNECT_KEY_LIFETIME_MS = 60_000;

/** The server label naming the SSH login of a server, as the CLI uses it. */
export const SSH_USER_LABEL = 'fleetward.dev/ssh-user';

/** An EC2 instance id, as discovery stores it in `server.providerId`. */
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

/**
 * A login EC2 Instance Connect accepts (1 to 32 characters) that is also a POSIX login name the
 * SSH adapter accepts: no space, quote, `;` or line break can reach either of them.
 */
const OsUserSchema = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/,
    'must be a login name: a letter or _, then up to 31 of A-Z a-z 0-9 _ . -',
  );

/**
 * Returns the EC2 Instance Connect client for a server's region. `server` tells the account
 * (`server.tenantId`, `server.accountId`) whose credentials the client must use.
 */
export type InstanceConnectClientFactory = (region: string, server: Server) => EC2InstanceConnectClient;

const fn = <T>(what: string) =>
  z.custom<T>((v) => typeof v === 'function', { message: `must be a function (${what})` });

/** Options of {@link instanceConnectCredentials}; see each field. */
export const InstanceConnectOptionsSchema = z.strictObject({
  /**
   * Gives the SDK client that sends `SendSSHPublicKey`, e.g.
   * `(region) => new EC2InstanceConnectClient({ region })`. Called once per tenant, account and
   * region; the client is kept and stays the caller's (it is never destroyed here).
   */
  client: fn<InstanceConnectClientFactory>('(region, server) => EC2InstanceConnectClient'),
  /** Login on instances whose server has no `osUserLabel` label. @default 'ec2-user' */
  osUser: OsUserSchema.default('ec2-user'),
  /** Server label whose value, when present, is the login on that server. @default 'fleetward.dev/ssh-user' */
  osUserLabel: z.string().min(1).max(317).default(SSH_USER_LABEL),
  /**
   * How long after a push its key is handed out again for the same server and login instead of
   * a new one. `0` pushes a new key on every call. With a window, the SSH adapter sees the same
   * login for that long and reuses its pooled connections (no push at all for a command on one);
   * a connection it opens in the window logs in with a key EC2 still holds for at least 60 s
   * minus the window. At most 40 000, leaving 20 s for the login. @default 0
   */
  reuseKeyForMs: z.number().int().min(0).max(40_000).default(0),
});

/** Options of {@link instanceConnectCredentials}; see {@link InstanceConnectOptionsSchema}. */
export type InstanceConnectOptions = z.input<typeof InstanceConnectOptionsSchema>;

/**
 * A login made for one SSH connection: a key pair generated for it, whose public half EC2
 * Instance Connect holds for {@link INSTANCE_CONNECT_KEY_LIFETIME_MS}. Assignable to the SSH
 * adapter's `SshCredentials`.
 */
export interface InstanceConnectLogin {
  /** The instance's OS user the key was pushed for. */
  username: string;
  /** The fresh private key, OpenSSH format, unencrypted; it exists only in this process. */
  privateKey: string;
}

/**
 * The `credentialsFor` of `createSshAdapter`: a fresh login for an EC2 instance, `undefined` for
 * any other server (the SSH adapter then uses its own `credentials`).
 */
export type InstanceConnectCredentials = (server: Server) => Promise<InstanceConnectLogin | undefined>;

/** EC2 Instance Connect's own code for refused credentials or rights. */
const EIC_AUTH_CODES = new Set(['AuthException']);

/**
 * Keyless SSH to EC2 instances: credentials for `createSshAdapter({ credentialsFor })` that push a
 * freshly generated Ed25519 public key with EC2 Instance Connect (`SendSSHPublicKey`) and log in
 * with its private key. No key stays on the instance: EC2 serves a pushed key to sshd for 60
 * seconds, and the SSH adapter only needs it for the login.
 *
 * - A server is served when `server.provider` is `'aws'`, `server.providerId` is an instance id
 *   (`i-…`) and `server.region` is set; for any other server it resolves `undefined`.
 * - The login is the server's `osUserLabel` label, else `osUser`. A login that is not a plain
 *   login name rejects with `ValidationError` before any AWS call.
 * - Every call makes a new key pair and pushes it, unless `reuseKeyForMs` says otherwise. The SSH
 *   adapter asks for credentials on every `exec` and pools connections per login, so by default
 *   every command opens its own connection: see the README, "Keyless SSH (EC2 Instance Connect)".
 *
 * @throws ValidationError (subject `InstanceConnectOptions`) when `options` are invalid.
 * @returns a function that rejects with `ValidationError` (bad login), `NotFoundError` (EC2
 *   Instance Connect does not know the instance in that account and region), `AuthorizationError`
 *   (AWS refused the credentials or rights) or `TransportError` (throttling once the SDK's retries
 *   are spent, instance not running, any other failure), with a sanitized copy of the SDK error as
 *   the cause.
 */
export function instanceConnectCredentials(options: InstanceConnectOptions): InstanceConnectCredentials {
  const config = validate(InstanceConnectOptionsSchema, options, 'InstanceConnectOptions');
  const clients = new Map<string, EC2InstanceConnectClient>();
  const clientFor = (region: string, server: Server): EC2InstanceConnectClient => {
    const key = JSON.stringify([server.tenantId, server.accountId, region]);
    let client = clients.get(key);
    if (!client) {
      client = config.client(region, server);
      clients.set(key, client);
    }
    return client;
  };
  return instanceConnectCredentialsWith(config, async (server, region, command) => {
    await clientFor(region, server).send(command);
  });
}

/** Sends `SendSSHPublicKey` for `server` in `region`, with the credentials of the server's account. */
export type SendSshPublicKey = (
  server: Server,
  region: string,
  command: SendSSHPublicKeyCommand,
) => Promise<void>;

/** {@link instanceConnectCredentials} with the sending given: the AWS adapter's per-account clients. */
export function instanceConnectCredentialsWith(
  config: Pick<z.output<typeof InstanceConnectOptionsSchema>, 'osUser' | 'osUserLabel' | 'reuseKeyForMs'>,
  send: SendSshPublicKey,
): InstanceConnectCredentials {
  const push = async (server: Server, instanceId: string, region: string, username: string) => {
    const { privateKey, publicKey } = generateEd25519KeyPair('fleetward-instance-connect');
    try {
      await send(
        server,
        region,
        new SendSSHPublicKeyCommand({
          InstanceId: instanceId,
          InstanceOSUser: username,
          SSHPublicKey: publicKey,
        }),
      );
    } catch (error) {
      throw instanceConnectError(error, instanceId, region);
    }
    return { username, privateKey };
  };

  // Keyed by everything that names the instance and the login; a failed push is never reused.
  const recent = new Map<string, { pushedAt: number; login: Promise<InstanceConnectLogin> }>();
  const reused = (key: string, make: () => Promise<InstanceConnectLogin>): Promise<InstanceConnectLogin> => {
    const now = performance.now();
    for (const [k, entry] of recent) if (now - entry.pushedAt >= config.reuseKeyForMs) recent.delete(k);
    const hit = recent.get(key);
    if (hit) return hit.login;
    // Counted from before the push: EC2's 60 s start no earlier.
    const login = make();
    recent.set(key, { pushedAt: now, login });
    login.catch(() => {
      if (recent.get(key)?.login === login) recent.delete(key);
    });
    return login;
  };

  return async (server) => {
    const instanceId = server.providerId;
    const region = server.region;
    if (server.provider !== 'aws' || !instanceId || !INSTANCE_ID.test(instanceId) || !region)
      return undefined;
    const username = osUserOf(server, config.osUser, config.osUserLabel);
    if (config.reuseKeyForMs === 0) return push(server, instanceId, region, username);
    const key = JSON.stringify([server.tenantId, server.id, server.accountId, region, instanceId, username]);
    return { ...(await reused(key, () => push(server, instanceId, region, username))) };
  };
}

/**
 * The AWS adapter's `ephemeralKeys.offer`: pushes the caller's own public key for `login` with
 * `SendSSHPublicKey` (through `send`: the server's account's credentials), so that the instance's
 * sshd accepts it for {@link INSTANCE_CONNECT_KEY_LIFETIME_MS}. Nothing is written on the instance.
 * `expiresAt` counts from before the push: EC2's 60 seconds start no earlier.
 * @throws ValidationError before any AWS call when the server is not an EC2 instance with a region
 *   (provider `aws`, `providerId` `i-…`), the login is not a plain login name or the key is not
 *   one OpenSSH public key line.
 * @throws AbortedError when `signal` fired (before the push, or after it: the key may then be held).
 * @throws NotFoundError, AuthorizationError, TransportError as {@link instanceConnectCredentials}.
 */
export async function offerInstanceConnectKey(
  server: Server,
  offer: EphemeralKeyOffer,
  send: SendSshPublicKey,
): Promise<{ expiresAt: string }> {
  const instanceId = server.providerId;
  const region = server.region;
  if (server.provider !== 'aws' || !instanceId || !INSTANCE_ID.test(instanceId) || !region) {
    throw new ValidationError('EphemeralKeyOffer', [
      {
        path: ['server'],
        message: `${server.name} is not an EC2 instance Fleetward can push keys to (provider aws, an i-… providerId and a region)`,
      },
    ]);
  }
  const issues = [
    ...(OsUserSchema.safeParse(offer.login).success
      ? []
      : [
          {
            path: ['login'],
            message: 'must be a login name: a letter or _, then up to 31 of A-Z a-z 0-9 _ . -',
          },
        ]),
    ...(PublicKeyLineSchema.safeParse(offer.publicKey).success
      ? []
      : [{ path: ['publicKey'], message: 'must be one OpenSSH public key line' }]),
  ];
  if (issues.length) throw new ValidationError('EphemeralKeyOffer', issues);
  if (offer.signal?.aborted) throw new AbortedError('the key was not offered: aborted');
  const started = Date.now();
  try {
    await send(
      server,
      region,
      new SendSSHPublicKeyCommand({
        InstanceId: instanceId,
        InstanceOSUser: offer.login,
        SSHPublicKey: offer.publicKey,
      }),
    );
  } catch (error) {
    throw instanceConnectError(error, instanceId, region);
  }
  if (offer.signal?.aborted) throw new AbortedError('aborted after the key was pushed');
  return { expiresAt: new Date(started + INSTANCE_CONNECT_KEY_LIFETIME_MS).toISOString() };
}

function osUserOf(server: Server, fallback: string, label: string): string {
  const labelled = server.labels?.[label];
  if (labelled === undefined) return fallback;
  const parsed = OsUserSchema.safeParse(labelled);
  if (!parsed.success) {
    throw new ValidationError('InstanceConnect.osUser', [
      { path: ['labels', label], message: parsed.error.issues[0]?.message ?? 'must be a login name' },
    ]);
  }
  return parsed.data;
}

function instanceConnectError(error: unknown, instanceId: string, region: string): FleetwardError {
  const operation = 'SendSSHPublicKey';
  const code = awsCode(error);
  const details = { operation, awsCode: code, instanceId, region };
  if (code === 'EC2InstanceNotFoundException') {
    return new NotFoundError('EC2 instance', instanceId, { cause: sanitized(error), details });
  }
  if (code !== undefined && EIC_AUTH_CODES.has(code)) {
    const cause = sanitized(error);
    return new AuthorizationError(
      `AWS ${operation} failed for instance ${instanceId} in ${region}: ${code}: ${cause.message}`,
      { reason: 'aws-refused', awsCode: code },
      { cause, details },
    );
  }
  return awsError(error, operation, `instance ${instanceId} in ${region}`);
}
