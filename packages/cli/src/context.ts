import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AwsAdapterOptions } from '@fleetward/adapter-aws';
import { createSshAdapter, type SshCredentials } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  createFleet,
  createLocalAdapter,
  type Fleet,
  type FleetSession,
  type Logger,
  NotFoundError,
  type SecretStore,
  type Server,
  type Store,
  ValidationError,
} from '@fleetward/core';
import { openFileSecretStore } from '@fleetward/secret-store-file';
import { createSqliteStore } from '@fleetward/store-sqlite';
import type { PostgresRolloutQueue } from '@fleetward/worker';
import {
  describeStore,
  LOCAL_ADMIN,
  type ResolvedAwsConfig,
  type ResolvedConfig,
  type SshConfig,
} from './config.js';
import { lazyAdapter } from './lazy-adapter.js';
import { winRmAdapterFrom } from './winrm.js';

export { DEFAULT_TENANT, LOCAL_ADMIN } from './config.js';
export { lazyAdapter } from './lazy-adapter.js';
export const LOCAL_SERVER = 'localhost';
/** Server label naming the SSH login for that server (else `ssh.user` of the configuration). */
export const SSH_USER_LABEL = 'fleetward.dev/ssh-user';

export interface CliContext {
  fleet: Fleet;
  session: FleetSession;
  config: ResolvedConfig;
  /** Aborted on SIGINT and SIGTERM: long operations stop and release what they hold. */
  signal: AbortSignal;
  /** The queue the Fleet submits script runs to, when workers carry them out. */
  queue?: PostgresRolloutQueue;
  /** Closes the Fleet (adapters and store), then the queue. */
  close(): Promise<void>;
}

/** A rollout queue to open with the Fleet: its script runs are then carried out by `fleetward worker` processes. */
export interface QueueChoice {
  /** Schema of the queue's tables. @default the configuration's `workers.schema` */
  schema?: string;
  /** Run pg-boss's maintenance (archiving, expiry) in this process: workers do, submitters need not. */
  supervise: boolean;
  /** Who asks for the queue, for the error on a SQLite store: `fleetward worker`, say. */
  purpose: string;
}

const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

function readKey(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ValidationError(what, [
      { path: [], message: `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` },
    ]);
  }
}

/** The SSH adapter the configuration describes, with OpenSSH's defaults where it is silent. */
export function sshAdapterFrom(ssh: SshConfig, env: NodeJS.ProcessEnv): Adapter {
  const home = env['HOME'] ?? '';
  const identityFiles = ssh.identityFile
    ? Array.isArray(ssh.identityFile)
      ? ssh.identityFile
      : [ssh.identityFile]
    : DEFAULT_IDENTITIES.map((name) => join(home, '.ssh', name)).filter((p) => existsSync(p));
  const agent = ssh.agent === false ? undefined : env['SSH_AUTH_SOCK'] || undefined;
  const passphrase = ssh.passphraseEnv ? env[ssh.passphraseEnv] : undefined;
  let key: Buffer | undefined;
  const privateKey = () => {
    if (key === undefined && identityFiles[0]) key = readKey(identityFiles[0], 'ssh.identityFile');
    return key;
  };
  const defaultUser = ssh.user ?? env['USER'] ?? env['LOGNAME'] ?? 'root';
  const credentialsFor = async (server: Server): Promise<SshCredentials> => {
    const k = privateKey();
    if (!k && !agent) {
      throw new ValidationError('ssh configuration', [
        {
          path: ['ssh', 'identityFile'],
          message: `no way to log in to ${server.id}: no identity file (~/.ssh/id_ed25519, id_ecdsa, id_rsa) and no SSH agent (SSH_AUTH_SOCK); set ssh.identityFile in the configuration file`,
        },
      ]);
    }
    return {
      username: server.labels[SSH_USER_LABEL] ?? defaultUser,
      ...(k ? { privateKey: k } : {}),
      ...(k && passphrase ? { passphrase } : {}),
      ...(agent ? { agent } : {}),
    };
  };
  const knownHostsFile = ssh.knownHostsFile ?? join(home, '.ssh', 'known_hosts');
  const jump = ssh.jumpHost;
  return createSshAdapter({
    credentialsFor,
    hostKeyPolicy: ssh.hostKeyPolicy,
    pinnedHostKeys: ssh.pinnedHostKeys,
    ...(ssh.hostKeyPolicy === 'pinned' ? {} : { knownHostsFile }),
    ...(jump
      ? {
          jumpHost: {
            host: jump.host,
            port: jump.port,
            credentials: {
              username: jump.user ?? defaultUser,
              ...(jump.identityFile
                ? { privateKey: readKey(jump.identityFile, 'ssh.jumpHost.identityFile') }
                : privateKey()
                  ? { privateKey: privateKey() as Buffer }
                  : {}),
              ...(agent ? { agent } : {}),
            },
          },
        }
      : {}),
    ...(ssh.connectTimeoutSeconds ? { connectTimeoutMs: ssh.connectTimeoutSeconds * 1000 } : {}),
  });
}

/**
 * The AWS adapter the configuration describes. It makes no AWS call until a command uses it, and
 * loads the AWS SDK only then (see {@link lazyAdapter}): the SDK clients take most of a second to
 * load, which commands that reach no AWS server need not pay.
 * Accounts with `credentialsRef` use the credentials stored under it; the others, and the
 * assuming of roles, use `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) of
 * `env` when it has them, else the SDK's default chain (`AWS_PROFILE`, SSO, instance roles…).
 */
export function awsAdapterFrom(aws: ResolvedAwsConfig, env: NodeJS.ProcessEnv): Adapter {
  const accessKeyId = env['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY'];
  const sessionToken = env['AWS_SESSION_TOKEN'];
  const options: AwsAdapterOptions = {
    defaultRegion: aws.defaultRegion,
    pollIntervalMs: aws.pollIntervalMs,
    ...(aws.endpoint ? { endpoint: aws.endpoint } : {}),
    ...(accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
      : {}),
  };
  return lazyAdapter('aws', AWS_CAPABILITIES, async () => {
    const { createAwsAdapter } = await import('@fleetward/adapter-aws');
    return createAwsAdapter(options);
  });
}

/** The capabilities of `createAwsAdapter` (a test checks that they are all of them). */
export const AWS_CAPABILITIES = ['exec', 'discover', 'snapshot', 'ephemeralKeys'] as const;

async function openStore(config: ResolvedConfig, create: boolean): Promise<Store> {
  const where = config.store;
  if (where.kind === 'sqlite') {
    if (!create && !existsSync(where.path)) {
      throw new NotFoundError('store', where.path, {
        details: {
          hint: 'Run "fleetward init" to create it, or point --store (FLEETWARD_STORE) at an existing one.',
        },
      });
    }
    if (create) await mkdir(dirname(where.path), { recursive: true, mode: 0o700 });
    return createSqliteStore({ path: where.path });
  }
  // Loaded only when asked for: a SQLite user never needs the pg driver.
  const { createPostgresStore } = await import('@fleetward/store-postgres');
  return createPostgresStore({ connectionString: where.url, schema: where.schema });
}

async function openSecrets(
  config: ResolvedConfig,
  env: NodeJS.ProcessEnv,
  create: boolean,
): Promise<SecretStore | undefined> {
  const s = config.secrets;
  if (!s) return undefined;
  if (s.passphraseEnv) {
    const passphrase = env[s.passphraseEnv];
    if (!passphrase) return undefined;
    return openFileSecretStore({ directory: s.directory, key: { passphrase } });
  }
  if (!s.keyFile) return undefined;
  if (!existsSync(s.keyFile)) {
    if (!create) return undefined;
    await mkdir(dirname(s.keyFile), { recursive: true, mode: 0o700 });
    await writeFile(s.keyFile, randomBytes(32), { mode: 0o600, flag: 'wx' });
  }
  return openFileSecretStore({ directory: s.directory, key: readKey(s.keyFile, 'secrets.keyFile') });
}

/** The queue `options` ask for, else the configured one (`workers.enabled`), else none. */
function queueChoice(config: ResolvedConfig, asked: QueueChoice | undefined): QueueChoice | undefined {
  const choice =
    asked ??
    (config.workers.enabled
      ? { supervise: false, purpose: '"workers": {"enabled": true} in the configuration' }
      : undefined);
  if (choice && config.store.kind === 'sqlite') {
    throw new ValidationError(
      'store',
      [
        {
          path: [],
          message: `${config.store.path} is SQLite: ${choice.purpose} needs a PostgreSQL store, through which the workers share their queue`,
        },
      ],
      {
        details: {
          hint: `Give a postgres:// store (--store, FLEETWARD_STORE or "store" in the configuration)${asked ? '' : ', or remove "workers" from the configuration'}. On SQLite, script runs are carried out by the command that starts them.`,
        },
      },
    );
  }
  return choice;
}

async function openQueue(
  url: string,
  schema: string,
  choice: QueueChoice,
  store: Store,
): Promise<PostgresRolloutQueue> {
  try {
    // Loaded only when asked for, like the PostgreSQL store: most commands never need pg-boss.
    const { createRolloutQueue } = await import('@fleetward/worker');
    return await createRolloutQueue({ connectionString: url, schema, supervise: choice.supervise });
  } catch (error) {
    await store.close();
    throw error;
  }
}

/**
 * Opens the store the configuration names with the local, SSH, AWS and WinRM adapters, as the configured
 * principal of the configured tenant. Creates nothing: a missing SQLite file is a NotFoundError
 * whose hint says to run `fleetward init` (only `init` passes `create`).
 *
 * With `queue`, or when the configuration says workers carry out runs (`workers.enabled`), it also
 * opens the rollout queue on the PostgreSQL store and builds the Fleet with `rollouts: queue`.
 *
 * @throws ValidationError when a queue is asked for on a SQLite store.
 */
export async function openContext(
  config: ResolvedConfig,
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  options: { create?: boolean; logger?: Logger; queue?: QueueChoice } = {},
): Promise<CliContext> {
  const choice = queueChoice(config, options.queue);
  const store = await openStore(config, options.create ?? false);
  let secrets: SecretStore | undefined;
  let aws: Adapter;
  let winrm: Adapter;
  try {
    secrets = await openSecrets(config, env, options.create ?? false);
    aws = awsAdapterFrom(config.aws, env);
    winrm = winRmAdapterFrom(config.winrm);
  } catch (error) {
    await store.close();
    throw error;
  }
  const queue =
    choice && config.store.kind === 'postgres'
      ? await openQueue(config.store.url, choice.schema ?? config.workers.schema, choice, store)
      : undefined;
  const fleet = createFleet({
    store,
    adapters: [createLocalAdapter(), sshAdapterFrom(config.ssh, env), aws, winrm],
    ...(secrets ? { secrets } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(queue ? { rollouts: queue } : {}),
  });
  return {
    fleet,
    session: fleet.as({ tenantId: config.tenant, principalId: config.principal }),
    config,
    signal,
    ...(queue ? { queue } : {}),
    async close() {
      try {
        await fleet.close();
      } finally {
        await queue?.close();
      }
    },
  };
}

/**
 * `fleetward init`: the store (and its folder), the tenant with its first administrator, and a
 * `localhost` server for this machine. Running it again changes nothing and says so.
 */
export async function initialise(
  ctx: CliContext,
  input: { tenantName: string; adminName: string; localhost: boolean },
): Promise<{ created: boolean; store: string; tenant: string; admin: string; localhost: boolean }> {
  const { fleet, config } = ctx;
  const admin = config.principal === LOCAL_ADMIN ? LOCAL_ADMIN : config.principal;
  const result = await fleet.ensureTenant({
    tenant: { id: config.tenant, name: input.tenantName },
    admin: { id: admin, name: input.adminName, kind: 'human', affiliation: 'employee' },
  });
  let addedLocal = false;
  if (input.localhost && !(await ctx.session.servers.get(LOCAL_SERVER))) {
    await ctx.session.servers.add({
      id: LOCAL_SERVER,
      name: LOCAL_SERVER,
      accountId: 'local',
      provider: 'local',
      labels: { 'fleetward.dev/local': 'true' },
    });
    addedLocal = true;
  }
  return {
    created: result.created || addedLocal,
    store: describeStore(config.store),
    tenant: config.tenant,
    admin,
    localhost: input.localhost,
  };
}
