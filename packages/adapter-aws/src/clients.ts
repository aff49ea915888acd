import { createHash } from 'node:crypto';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EC2InstanceConnectClient } from '@aws-sdk/client-ec2-instance-connect';
import { S3Client } from '@aws-sdk/client-s3';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import { type Account, type AdapterContext, ConflictError, NotFoundError } from '@fleetward/core';
import { type CredentialSource, createStsClient, credentialSourceOf } from './credentials.js';
import { awsCode } from './errors.js';
import type { AwsAdapterConfig, AwsClients } from './options.js';

/** Which account a call is for: a server's `tenantId` and `accountId`, or an account itself. */
export interface AccountScope {
  tenantId: string;
  accountId: string;
  /** The account, when the caller has it (discovery); otherwise it is read through the Fleet. */
  account?: Account;
}

/** Error codes with which AWS says that temporary credentials have expired. */
const EXPIRED_CODES = new Set(['ExpiredToken', 'ExpiredTokenException', 'RequestExpired']);

/** How long an account's credential source is trusted before the account and secret are read again. */
const SOURCE_TTL_MS = 60_000;

interface AccountEntry {
  checkedAt: number;
  /** Hash of the account's `credentialsRef` and the secret's value: a change means new clients. */
  fingerprint: string;
  source: CredentialSource;
  clients: Map<string, AwsClients>;
}

/**
 * Keeps the SDK clients of each account and region, with the account's credentials: read from
 * the Fleet's secret store under the account's `credentialsRef` (see `AwsAccountCredentialsSchema`),
 * re-read every minute so that a changed secret takes effect, or the adapter's own.
 */
export class ClientCache {
  readonly #config: AwsAdapterConfig;
  #context: AdapterContext | undefined;
  #sts: STSClient | undefined;
  readonly #accounts = new Map<string, AccountEntry>();
  readonly #pending = new Map<string, Promise<AccountEntry>>();
  readonly #injected = new Map<string, AwsClients>();
  /** Clients replaced while calls may still use them; destroyed by `close`. */
  readonly #retired: AwsClients[] = [];

  constructor(config: AwsAdapterConfig) {
    this.#config = config;
  }

  /** @throws ConflictError when the adapter is already attached to another Fleet. */
  attach(context: AdapterContext): void {
    if (this.#context && this.#context !== context) {
      throw new ConflictError(
        `adapter ${this.#config.name} is already attached to another Fleet; create one adapter per Fleet`,
      );
    }
    this.#context = context;
  }

  /** The account a server belongs to, through the Fleet (undefined when not attached or unknown). */
  async account(scope: AccountScope): Promise<Account | undefined> {
    return scope.account ?? (await this.#context?.account(scope.tenantId, scope.accountId));
  }

  /**
   * The clients of `scope`'s account in `region`.
   * @throws NotFoundError when the account, or the secret its `credentialsRef` names, does not exist.
   * @throws ValidationError when that secret is not a valid credentials document.
   */
  async get(scope: AccountScope, region: string): Promise<AwsClients> {
    const factory = this.#config.clients;
    if (factory) {
      const key = `${scope.tenantId}\u0000${scope.accountId}\u0000${region}`;
      let clients = this.#injected.get(key);
      if (!clients) {
        clients = factory(scope.accountId, region, scope.tenantId);
        this.#injected.set(key, clients);
      }
      return clients;
    }
    const entry = await this.#entry(scope);
    let clients = entry.clients.get(region);
    if (!clients) {
      clients = this.#create(entry.source, region);
      entry.clients.set(region, clients);
    }
    return clients;
  }

  /**
   * Runs `op` with the clients of `scope` in `region`. When AWS answers that the account's
   * temporary credentials expired, they are renewed and `op` runs once more: AWS refused the
   * first call before doing anything.
   */
  async send<T>(scope: AccountScope, region: string, op: (clients: AwsClients) => Promise<T>): Promise<T> {
    const clients = await this.get(scope, region);
    try {
      return await op(clients);
    } catch (error) {
      const entry = this.#accounts.get(accountKey(scope));
      if (!EXPIRED_CODES.has(awsCode(error) ?? '') || entry?.source.kind !== 'assumed') throw error;
      entry.source.invalidate();
      this.#retire(entry);
      return op(await this.get(scope, region));
    }
  }

  async #entry(scope: AccountScope): Promise<AccountEntry> {
    const key = accountKey(scope);
    const entry = this.#accounts.get(key);
    if (entry && Date.now() - entry.checkedAt < SOURCE_TTL_MS) return entry;
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#read(scope, entry).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  async #read(scope: AccountScope, previous: AccountEntry | undefined): Promise<AccountEntry> {
    const key = accountKey(scope);
    const context = this.#context;
    const account = await this.account(scope);
    if (!account && context) throw new NotFoundError('account', scope.accountId);
    const ref = account?.credentialsRef;
    const value = ref !== undefined ? await context?.secrets?.get(ref) : undefined;
    const fingerprint = createHash('sha256')
      .update(`${ref ?? ''}\u0000${value ?? ''}`)
      .digest('hex');
    if (previous && previous.fingerprint === fingerprint) {
      previous.checkedAt = Date.now();
      return previous;
    }
    const source: CredentialSource = account
      ? await credentialSourceOf(account, context?.secrets, () => this.#stsClient(), this.#config)
      : { kind: 'base' };
    if (previous) this.#retire(previous);
    const entry: AccountEntry = { checkedAt: Date.now(), fingerprint, source, clients: new Map() };
    this.#accounts.set(key, entry);
    return entry;
  }

  #stsClient(): STSClient {
    this.#sts ??= createStsClient(this.#config);
    return this.#sts;
  }

  #retire(entry: AccountEntry): void {
    this.#retired.push(...entry.clients.values());
    entry.clients.clear();
  }

  #create(source: CredentialSource, region: string): AwsClients {
    const c = this.#config;
    const credentials =
      source.kind === 'static'
        ? source.identity
        : source.kind === 'assumed'
          ? source.provider
          : c.credentials;
    const common = {
      region,
      maxAttempts: c.maxAttempts,
      ...(c.endpoint ? { endpoint: c.endpoint } : {}),
      ...(credentials ? { credentials: credentials as never } : {}),
    };
    return {
      ssm: new SSMClient(common),
      ec2: new EC2Client(common),
      // Path-style: bucket names with dots, and endpoints that are not AWS (a VPC endpoint, a fake).
      s3: new S3Client({ ...common, forcePathStyle: c.endpoint !== undefined, followRegionRedirects: true }),
      instanceConnect: new EC2InstanceConnectClient(common),
    };
  }

  /** Destroys the clients this cache created (injected ones belong to the caller) and detaches. */
  close(): void {
    const all = [...this.#retired, ...[...this.#accounts.values()].flatMap((e) => [...e.clients.values()])];
    for (const clients of all) {
      clients.ssm.destroy();
      clients.ec2.destroy();
      clients.s3?.destroy();
      clients.instanceConnect?.destroy();
    }
    this.#sts?.destroy();
    this.#sts = undefined;
    this.#retired.length = 0;
    this.#accounts.clear();
    this.#injected.clear();
    this.#context = undefined;
  }
}

const accountKey = (scope: AccountScope): string => `${scope.tenantId}\u0000${scope.accountId}`;
