import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { CERTIFICATE_FINGERPRINT_PATTERN } from '@fleetward/adapter-winrm';
import { ValidationError } from '@fleetward/core';
import { z } from 'zod';

/** A path in the configuration: `~/` is the home folder, relative paths are from the file's folder. */
const PathSchema = z.string().min(1).max(4096);
const IdLike = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]*$/, 'must be an id: letters, digits and . _ : @ -');

const JumpSchema = z.strictObject({
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535).default(22),
  user: z.string().min(1).max(64).optional(),
  identityFile: PathSchema.optional(),
});

/** The `ssh` section: how the CLI's SSH adapter logs in and trusts host keys. */
export const SshConfigSchema = z.strictObject({
  /** Login for every server that has no `fleetward.dev/ssh-user` label. @default $USER */
  user: z.string().min(1).max(64).optional(),
  /** Private key file(s) tried in order. @default the usual ~/.ssh/id_* files that exist */
  identityFile: z.union([PathSchema, z.array(PathSchema).min(1).max(16)]).optional(),
  /** Use the SSH agent at SSH_AUTH_SOCK. @default true when SSH_AUTH_SOCK is set */
  agent: z.boolean().optional(),
  /** Environment variable holding the passphrase of the identity file(s). */
  passphraseEnv: z.string().min(1).max(128).optional(),
  /** `known-hosts` (default), `pinned` (only `pinnedHostKeys`) or `tofu` (learn, then pin). */
  hostKeyPolicy: z.enum(['known-hosts', 'pinned', 'tofu']).default('known-hosts'),
  /** @default ~/.ssh/known_hosts */
  knownHostsFile: PathSchema.optional(),
  /** Fingerprints (`SHA256:…`) per host name, `[host]:port` for other ports. */
  pinnedHostKeys: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
  /** A bastion every connection goes through. */
  jumpHost: JumpSchema.optional(),
  connectTimeoutSeconds: z.number().int().min(1).max(600).optional(),
});
export type SshConfig = z.infer<typeof SshConfigSchema>;

/**
 * The `aws` section: how the CLI's AWS adapter reaches AWS. Credentials are never here: each
 * account's are in the secret store (`accounts add --role-arn`), else the SDK's default chain.
 */
export const AwsConfigSchema = z.strictObject({
  /** An endpoint every AWS call goes to (a VPC endpoint). @default AWS's public endpoints */
  endpoint: z
    .url({ protocol: /^https?$/, message: 'must be an http(s) URL' })
    .max(2048)
    .refine((url) => {
      const { username, password } = new URL(url);
      return !username && !password;
    }, 'must not hold a user or password')
    .optional(),
  /** Region of accounts without regions, of servers without one, and of STS. @default 'us-east-1' */
  defaultRegion: z
    .string()
    .regex(/^[a-z]{2}(-[a-z0-9]+){2,3}$/, 'must be an AWS region, e.g. eu-west-1')
    .optional(),
  /** Delay between two polls of a running SSM command, in milliseconds. @default 1000 */
  pollIntervalMs: z.number().int().min(1).max(60_000).optional(),
});
export type AwsConfig = z.infer<typeof AwsConfigSchema>;

/** The AWS settings in effect, and where each came from (`config` or `default`). */
export interface ResolvedAwsConfig {
  endpoint?: string;
  defaultRegion: string;
  pollIntervalMs: number;
  sources: { endpoint: Source; defaultRegion: Source; pollIntervalMs: Source };
}

/** The AWS adapter's defaults, as `config show` names them. */
export const AWS_DEFAULTS = { defaultRegion: 'us-east-1', pollIntervalMs: 1000 } as const;

/** A SHA-256 certificate fingerprint, as the WinRM adapter accepts it (colons and `sha256:` optional). */
const CertificateFingerprint = z
  .string()
  .regex(CERTIFICATE_FINGERPRINT_PATTERN, 'must be a SHA-256 fingerprint (64 hex digits)');

/**
 * The `winrm` section: how the CLI's WinRM adapter reaches Windows servers (`provider: 'winrm'`).
 * Passwords are never here: each login is a secret in the Fleet's secret store, named by the
 * server's `fleetward.dev/winrm-credentials` label or by `credentialsRef`.
 */
export const WinRmConfigSchema = z
  .strictObject({
    /** `ntlm` (NTLMv2, domain or local accounts) or `basic` (local accounts only). @default 'ntlm' */
    auth: z.enum(['ntlm', 'basic']).default('ntlm'),
    /** WinRM over HTTPS; `false` is plain HTTP (messages readable on the network). @default true */
    https: z.boolean().default(true),
    /** Port of servers that have none. @default 5986 over https, 5985 over http */
    port: z.number().int().min(1).max(65535).optional(),
    /** PEM file of the CA(s) that sign the hosts' certificates. @default the system's CAs */
    caFile: PathSchema.optional(),
    /** Certificate fingerprints (SHA-256) per server id or address: that certificate, whoever signed it. */
    pinnedCertificates: z.record(z.string().min(1).max(253), CertificateFingerprint).default({}),
    /** Secret holding the login (`{"username","password"}`) of servers without the label. */
    credentialsRef: z.string().min(1).max(256).optional(),
    connectTimeoutSeconds: z.number().int().min(1).max(600).optional(),
  })
  .superRefine((w, ctx) => {
    if (w.https) return;
    if (w.caFile !== undefined)
      ctx.addIssue({ code: 'custom', path: ['caFile'], message: 'has no effect with https: false' });
    if (Object.keys(w.pinnedCertificates).length > 0)
      ctx.addIssue({
        code: 'custom',
        path: ['pinnedCertificates'],
        message: 'has no effect with https: false',
      });
  });
export type WinRmConfig = z.infer<typeof WinRmConfigSchema>;

/** The names a rollout queue's schema may take (as `@fleetward/worker` accepts them). */
export const QUEUE_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,40}$/;
export const DEFAULT_QUEUE_SCHEMA = 'fleetward_worker';

/**
 * The `workers` section: whether script runs started by this CLI are carried out by `fleetward
 * worker` processes, which share a queue through the PostgreSQL store.
 */
export const WorkersConfigSchema = z.strictObject({
  /**
   * Script runs started here are submitted to the queue and carried out by the workers; the
   * command waits for their end. Needs a PostgreSQL store. @default false: the command runs them
   */
  enabled: z.boolean().default(false),
  /**
   * Schema of the queue's tables (pg-boss's are in `<schema>_boss`); every worker and every CLI
   * that submits must name the same one. @default 'fleetward_worker'
   */
  schema: z
    .string()
    .regex(QUEUE_SCHEMA_PATTERN, 'must be a lower-case SQL name of at most 41 characters')
    .default(DEFAULT_QUEUE_SCHEMA),
});
export type WorkersConfig = z.infer<typeof WorkersConfigSchema>;

/** The configuration file (`config.json`). Every field is optional. */
export const CliConfigSchema = z.strictObject({
  /** A SQLite file, or a `postgres://` / `postgresql://` URL. */
  store: z.string().min(1).max(4096).optional(),
  /** PostgreSQL schema holding Fleetward's tables. @default 'fleetward' */
  postgresSchema: z.string().min(1).max(63).optional(),
  tenant: IdLike.optional(),
  principal: IdLike.optional(),
  ssh: SshConfigSchema.optional(),
  /** The encrypted secret store (managed private keys). @default beside a SQLite store */
  secrets: z
    .strictObject({
      directory: PathSchema,
      /** A file holding the 32-byte key (created by `fleetward init`). */
      keyFile: PathSchema.optional(),
      /** Environment variable holding a passphrase instead of a key file. */
      passphraseEnv: z.string().min(1).max(128).optional(),
    })
    .optional(),
  aws: AwsConfigSchema.optional(),
  winrm: WinRmConfigSchema.optional(),
  workers: WorkersConfigSchema.optional(),
});
export type CliConfig = z.infer<typeof CliConfigSchema>;

/** Where a setting came from, for `fleetward config show`. */
export type Source = 'flag' | 'env' | 'config' | 'default';

/** The store the CLI opens. */
export type StoreLocation =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string; schema: string };

/** The settings after flags, environment and file were merged. */
export interface ResolvedConfig {
  /** The configuration file: the one named (--config, FLEETWARD_CONFIG) or the default path. */
  file: string;
  /** Whether that file exists and was read. */
  fileRead: boolean;
  store: StoreLocation;
  tenant: string;
  principal: string;
  ssh: SshConfig;
  secrets?: { directory: string; keyFile?: string; passphraseEnv?: string };
  /** The `aws` section with the defaults applied. */
  aws: ResolvedAwsConfig;
  /** The `winrm` section with the defaults applied, `caFile` made absolute. */
  winrm: WinRmConfig;
  /** The `workers` section with the defaults applied. */
  workers: WorkersConfig;
  sources: { store: Source; tenant: Source; principal: Source };
}

/** What the global flags said (undefined when not given). */
export interface GlobalFlags {
  config?: string;
  store?: string;
  dataDir?: string;
  tenant?: string;
  as?: string;
}

export const DEFAULT_TENANT = 'default';
export const LOCAL_ADMIN = 'local-admin';

/** The precedence, as printed in `--help`. */
export const PRECEDENCE_HELP = `Configuration (highest first):
  1. flags: --store, --tenant, --as, --config
  2. environment: FLEETWARD_STORE, FLEETWARD_TENANT, FLEETWARD_PRINCIPAL, FLEETWARD_CONFIG
  3. the configuration file: --config, FLEETWARD_CONFIG, else $XDG_CONFIG_HOME/fleetward/config.json
     (~/.config/fleetward/config.json); it names the store, tenant, principal, ssh, secrets, aws,
     winrm and workers ({"workers": {"enabled": true}}: script runs are carried out by
     "fleetward worker" processes sharing the PostgreSQL store)
  4. defaults: store $XDG_DATA_HOME/fleetward/fleetward.db (~/.local/share/fleetward), tenant
     "default", principal "local-admin"
"fleetward config show" prints the result and where each value came from.`;

function home(env: NodeJS.ProcessEnv): string {
  return env['HOME'] || homedir();
}

/** `$XDG_CONFIG_HOME/fleetward/config.json`, or `~/.config/fleetward/config.json`. */
export function defaultConfigPath(env: NodeJS.ProcessEnv): string {
  const base =
    env['XDG_CONFIG_HOME'] && isAbsolute(env['XDG_CONFIG_HOME'])
      ? env['XDG_CONFIG_HOME']
      : join(home(env), '.config');
  return join(base, 'fleetward', 'config.json');
}

/** `$XDG_DATA_HOME/fleetward`, or `~/.local/share/fleetward`. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const base =
    env['XDG_DATA_HOME'] && isAbsolute(env['XDG_DATA_HOME'])
      ? env['XDG_DATA_HOME']
      : join(home(env), '.local', 'share');
  return join(base, 'fleetward');
}

/** Expands `~/` and makes a path absolute against `base`. */
export function expandPath(path: string, base: string, env: NodeJS.ProcessEnv): string {
  if (path === '~') return home(env);
  if (path.startsWith('~/')) return join(home(env), path.slice(2));
  return resolve(base, path);
}

const isPostgresUrl = (value: string) => /^postgres(ql)?:\/\//i.test(value);

function storeLocation(value: string, base: string, env: NodeJS.ProcessEnv, schema: string): StoreLocation {
  return isPostgresUrl(value)
    ? { kind: 'postgres', url: value, schema }
    : { kind: 'sqlite', path: expandPath(value, base, env) };
}

/**
 * Reads the configuration file. A missing default file is no configuration; a missing file that
 * was named explicitly, a file that is not JSON or does not fit {@link CliConfigSchema} is an error
 * naming the file and the field.
 */
export function readConfigFile(path: string, explicit: boolean): CliConfig | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return undefined;
    throw new ValidationError(`configuration file ${path}`, [
      { path: [], message: code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? String(error)})` },
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`configuration file ${path}`, [
      { path: [], message: `is not JSON: ${error instanceof Error ? error.message : String(error)}` },
    ]);
  }
  const parsed = CliConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new ValidationError(
      `configuration file ${path}`,
      parsed.error.issues.map((i) => ({
        path: i.path as (string | number)[],
        message: i.message,
        code: i.code,
      })),
    );
  }
  return parsed.data;
}

/** Merges flags, environment, the configuration file and the defaults, in that order. */
export function resolveConfig(
  flags: GlobalFlags,
  env: NodeJS.ProcessEnv,
  cwd = process.cwd(),
): ResolvedConfig {
  const explicitFile = flags.config ?? env['FLEETWARD_CONFIG'];
  const file = explicitFile ? expandPath(explicitFile, cwd, env) : defaultConfigPath(env);
  const read = readConfigFile(file, Boolean(explicitFile));
  const config = read ?? {};
  const fileDir = resolve(file, '..');
  const schema = config.postgresSchema ?? 'fleetward';

  let store: StoreLocation;
  let storeSource: Source;
  if (flags.store) {
    store = storeLocation(flags.store, cwd, env, schema);
    storeSource = 'flag';
  } else if (flags.dataDir) {
    store = { kind: 'sqlite', path: join(expandPath(flags.dataDir, cwd, env), 'fleetward.db') };
    storeSource = 'flag';
  } else if (env['FLEETWARD_STORE']) {
    store = storeLocation(env['FLEETWARD_STORE'], cwd, env, schema);
    storeSource = 'env';
  } else if (env['FLEETWARD_HOME']) {
    store = { kind: 'sqlite', path: join(expandPath(env['FLEETWARD_HOME'], cwd, env), 'fleetward.db') };
    storeSource = 'env';
  } else if (config.store) {
    store = storeLocation(config.store, fileDir, env, schema);
    storeSource = 'config';
  } else {
    store = { kind: 'sqlite', path: join(defaultDataDir(env), 'fleetward.db') };
    storeSource = 'default';
  }

  const pick = (flag: string | undefined, envName: string, fromFile: string | undefined, fallback: string) =>
    flag
      ? { value: flag, source: 'flag' as const }
      : env[envName]
        ? { value: env[envName] as string, source: 'env' as const }
        : fromFile
          ? { value: fromFile, source: 'config' as const }
          : { value: fallback, source: 'default' as const };
  const tenant = pick(flags.tenant, 'FLEETWARD_TENANT', config.tenant, DEFAULT_TENANT);
  const principal = pick(flags.as, 'FLEETWARD_PRINCIPAL', config.principal, LOCAL_ADMIN);

  const ssh = SshConfigSchema.parse(config.ssh ?? {});
  const paths = (p: string) => expandPath(p, fileDir, env);
  if (ssh.identityFile)
    ssh.identityFile = Array.isArray(ssh.identityFile)
      ? ssh.identityFile.map(paths)
      : paths(ssh.identityFile);
  if (ssh.knownHostsFile) ssh.knownHostsFile = paths(ssh.knownHostsFile);
  if (ssh.jumpHost?.identityFile) ssh.jumpHost.identityFile = paths(ssh.jumpHost.identityFile);

  let secrets: ResolvedConfig['secrets'];
  if (config.secrets) {
    secrets = {
      directory: paths(config.secrets.directory),
      ...(config.secrets.keyFile ? { keyFile: paths(config.secrets.keyFile) } : {}),
      ...(config.secrets.passphraseEnv ? { passphraseEnv: config.secrets.passphraseEnv } : {}),
    };
  } else if (store.kind === 'sqlite') {
    const dir = resolve(store.path, '..');
    secrets = { directory: join(dir, 'secrets'), keyFile: join(dir, 'secrets.key') };
  }

  const fromFile = config.aws ?? {};
  const aws: ResolvedAwsConfig = {
    ...(fromFile.endpoint ? { endpoint: fromFile.endpoint } : {}),
    defaultRegion: fromFile.defaultRegion ?? AWS_DEFAULTS.defaultRegion,
    pollIntervalMs: fromFile.pollIntervalMs ?? AWS_DEFAULTS.pollIntervalMs,
    sources: {
      endpoint: fromFile.endpoint ? 'config' : 'default',
      defaultRegion: fromFile.defaultRegion ? 'config' : 'default',
      pollIntervalMs: fromFile.pollIntervalMs ? 'config' : 'default',
    },
  };

  const winrm = WinRmConfigSchema.parse(config.winrm ?? {});
  if (winrm.caFile) winrm.caFile = paths(winrm.caFile);

  return {
    file,
    fileRead: read !== undefined,
    store,
    tenant: tenant.value,
    principal: principal.value,
    ssh,
    ...(secrets ? { secrets } : {}),
    aws,
    winrm,
    workers: WorkersConfigSchema.parse(config.workers ?? {}),
    sources: { store: storeSource, tenant: tenant.source, principal: principal.source },
  };
}

/** The store location for messages: a PostgreSQL URL without its password. */
export function describeStore(store: StoreLocation): string {
  if (store.kind === 'sqlite') return store.path;
  try {
    const url = new URL(store.url);
    if (url.password) url.password = '***';
    return `${url.toString()} (schema ${store.schema})`;
  } catch {
    return '(a PostgreSQL URL that does not parse)';
  }
}
