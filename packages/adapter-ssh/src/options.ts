import type { Server } from '@fleetward/core';
import { z } from 'zod';

/** `setTimeout` silently turns longer delays into 1 ms, so every delay is capped here. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A SHA-256 host key fingerprint exactly as `ssh-keygen -l` prints it. */
export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

const fn = <T>(what: string) =>
  z.custom<T>((v) => typeof v === 'function', { message: `must be a function (${what})` });

const SecretSchema = z.union([z.string().min(1), z.instanceof(Buffer)]);

/**
 * How to log in to a host. At least one method must be given; they are tried in the order
 * private key, agent, password, each only if the server still offers it.
 */
export const SshCredentialsSchema = z
  .strictObject({
    /** Login name on the server. `root` means `Command.sudo` adds nothing. */
    username: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/, 'must be a POSIX login name'),
    /** Private key (OpenSSH or PEM format): ed25519, ECDSA or RSA. */
    privateKey: SecretSchema.optional(),
    /** Passphrase that decrypts `privateKey`. */
    passphrase: SecretSchema.optional(),
    /** Password for `password` authentication. */
    password: z.string().min(1).optional(),
    /** Path of an ssh-agent socket, e.g. `process.env.SSH_AUTH_SOCK`. */
    agent: z.string().min(1).optional(),
  })
  .refine((c) => c.privateKey !== undefined || c.password !== undefined || c.agent !== undefined, {
    message: 'give at least one of privateKey, agent or password',
  })
  .refine((c) => c.passphrase === undefined || c.privateKey !== undefined, {
    message: 'passphrase without privateKey',
    path: ['passphrase'],
  });

/** How to log in to a host; see {@link SshCredentialsSchema}. */
export type SshCredentials = z.input<typeof SshCredentialsSchema>;

/** A bastion that target connections are tunnelled through (`ssh -J`). */
export const JumpHostSchema = z.strictObject({
  /** Address or name of the bastion, as this process reaches it. */
  host: z.string().min(1).max(253),
  /** @default 22 */
  port: z.number().int().min(1).max(65535).default(22),
  /** Login on the bastion. @default the adapter's `credentials` */
  credentials: SshCredentialsSchema.optional(),
});

/** A bastion; see {@link JumpHostSchema}. */
export type JumpHost = z.input<typeof JumpHostSchema>;

/** What {@link SshAdapterOptions.onHostKeyLearned} receives under the `tofu` policy. */
export interface LearnedHostKey {
  /** `host` for port 22, `[host]:port` otherwise: the name used in known_hosts. */
  hostName: string;
  host: string;
  port: number;
  /** Key type, e.g. `ssh-ed25519`. */
  keyType: string;
  /** `SHA256:...` as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** The line that records this key in a known_hosts file. */
  knownHostsLine: string;
}

/** Options of {@link createSshAdapter}. */
export const SshAdapterOptionsSchema = z
  .strictObject({
    /** Registration name. @default 'ssh' */
    name: z.string().min(1).max(64).default('ssh'),
    /** Login used for every server that `credentialsFor` does not cover. */
    credentials: SshCredentialsSchema.optional(),
    /**
     * Per-server login, e.g. fetched from a `SecretStore`. Called for every `exec`, so that a
     * changed credential takes effect (and is proven by a real login) on the next command.
     * Returning `undefined` falls back to `credentials`.
     */
    credentialsFor: fn<(server: Server) => Promise<SshCredentials | undefined>>(
      'server => Promise<SshCredentials | undefined>',
    ).optional(),
    /**
     * How host keys are verified.
     * - `pinned`: the key's fingerprint must be in `pinnedHostKeys` (or `pinnedHostKeysFor`).
     * - `known-hosts`: the key must be listed for the host in `knownHostsFile`.
     * - `tofu`: as `known-hosts` (and pins) for a known host; a host never seen is trusted once,
     *   its key recorded (`onHostKeyLearned`, `knownHostsFile`) and enforced from then on.
     * A key that does not match rejects with `HostKeyMismatchError` before anything runs.
     */
    hostKeyPolicy: z.enum(['pinned', 'known-hosts', 'tofu']),
    /**
     * Fingerprints (`SHA256:...`) allowed per host name: `host` for port 22, `[host]:port`
     * otherwise (the known_hosts convention). Pin every key type the host has, or at least the
     * one negotiated (ed25519 is preferred).
     */
    pinnedHostKeys: z
      .record(z.string().min(1), z.array(z.string().regex(FINGERPRINT_PATTERN, 'must be SHA256:<base64>')))
      .default({}),
    /** Fingerprints allowed for a server, in addition to `pinnedHostKeys`. */
    pinnedHostKeysFor: fn<(server: Server) => Promise<readonly string[] | undefined>>(
      'server => Promise<string[] | undefined>',
    ).optional(),
    /**
     * An OpenSSH known_hosts file: read on every new connection (hashed `|1|` entries,
     * `[host]:port`, patterns and `@revoked` are understood). Under `tofu`, learned keys are
     * appended to it.
     */
    knownHostsFile: z.string().min(1).optional(),
    /** Called once per host key learned under `tofu`, before the connection is used. */
    onHostKeyLearned: fn<(key: LearnedHostKey) => void | Promise<void>>('key => void').optional(),
    /** Bastion for every server that `jumpHostFor` does not cover. */
    jumpHost: JumpHostSchema.optional(),
    /** Per-server bastion; `undefined` falls back to `jumpHost` (`null` means connect directly). */
    jumpHostFor: fn<(server: Server) => Promise<JumpHost | null | undefined>>(
      'server => Promise<JumpHost | null | undefined>',
    ).optional(),
    /** Bound on TCP connect, handshake and login, for each hop. @default 20_000 */
    connectTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(20_000),
    /** Interval of SSH keepalives on open connections; 0 turns them off. @default 15_000 */
    keepaliveIntervalMs: z.number().int().min(0).max(MAX_TIMER_MS).default(15_000),
    /** Unanswered keepalives after which a connection is dropped. @default 3 */
    keepaliveCountMax: z.number().int().min(1).max(1000).default(3),
    /** Commands run at once over one connection (OpenSSH's MaxSessions defaults to 10). @default 8 */
    maxChannelsPerConnection: z.number().int().min(1).max(64).default(8),
    /** Connections kept to one host with one login. @default 2 */
    maxConnectionsPerHost: z.number().int().min(1).max(64).default(2),
    /** An unused connection is closed after this long. @default 60_000 */
    idleTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(60_000),
    /** Used when `ExecOptions.timeoutMs` is not given; counted from the command's start. @default 300_000 */
    defaultTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(300_000),
    /** Used when `ExecOptions.maxOutputBytes` is not given. @default 1_048_576 */
    defaultMaxOutputBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(1_048_576),
    /**
     * Bound on a whole `exec` call: credentials, connecting (every hop), waiting for a free
     * channel and running. Passed before the command started, the call rejects with
     * `TimeoutError` and nothing ran; after, the command is killed as on `timeoutMs`.
     * @default no bound beyond `connectTimeoutMs` per hop and `timeoutMs`
     */
    deadlineMs: z.number().int().min(1).max(MAX_TIMER_MS).optional(),
    /** After SIGTERM on timeout or abort, wait this long for the command to exit before SIGKILL. @default 2000 */
    killGraceMs: z.number().int().min(0).max(MAX_TIMER_MS).default(2000),
  })
  .superRefine((o, ctx) => {
    if (o.hostKeyPolicy === 'known-hosts' && o.knownHostsFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['knownHostsFile'],
        message: "required when hostKeyPolicy is 'known-hosts'",
      });
    }
    if (o.credentials === undefined && o.credentialsFor === undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentials'], message: 'give credentials or credentialsFor' });
    }
  });

/**
 * Options of {@link createSshAdapter}; see {@link SshAdapterOptionsSchema}.
 *
 * @useDeclaredType
 */
export type SshAdapterOptions = z.input<typeof SshAdapterOptionsSchema>;

/** Options after validation and defaults. */
export type SshAdapterConfig = z.output<typeof SshAdapterOptionsSchema>;

/** Credentials after validation. */
export type ParsedCredentials = z.output<typeof SshCredentialsSchema>;
