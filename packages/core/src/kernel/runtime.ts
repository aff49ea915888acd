import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import { type AccessOptions, AccessOptionsSchema } from '../domain/access.js';
import type { AuditInput, AuditRecord, ScanResult, Server } from '../domain/index.js';
import { validate } from '../domain/index.js';
import { DEFAULT_DRIVERS } from '../engine/scan.js';
import { CapabilityMissingError, toFleetwardError, ValidationError } from '../errors.js';
import type { PackageManagerDriver } from '../os/driver.js';
import { type Adapter, type AdapterContext, CAPABILITIES } from '../ports/adapter.js';
import { type Clock, systemClock } from '../ports/clock.js';
import { isLogger, type Logger } from '../ports/logger.js';
import type { RolloutQueue } from '../ports/rollouts.js';
import type { SecretStore } from '../ports/secret-store.js';
import type { Store, StoreScope } from '../ports/store.js';
import { AuditGroupCommit } from './audit-commit.js';
import type { FleetEvents } from './events.js';
import { noteSecrets, RedactingLogger, SecretValues } from './log.js';

/** What a runtime is built from: the options of `createFleet`. */
export interface RuntimeOptions {
  store: Store;
  /** Adapters by registration name. A server uses `server.adapter`, else the one named like its provider. */
  adapters: Adapter[];
  secrets?: SecretStore;
  clock?: Clock;
  /** OS drivers for exec-based scanning. @default the built-in drivers */
  drivers?: readonly PackageManagerDriver[];
  /** Servers scanned at once. @default 32 */
  scanConcurrency?: number;
  /** Rules of just-in-time access: approvals needed, pending TTL, longest duration, ticket check. */
  access?: AccessOptions;
  /**
   * Ed25519 private key (PKCS#8 PEM or KeyObject) that signs audit checkpoints
   * (`audit.checkpoint()`); see `generateAuditSigningKey`. Keep it out of the store.
   */
  auditSigningKey?: string | KeyObject;
  /**
   * Where operator logs go: jobs started and finished with their summary, servers failing in a
   * job, runs taken over from a dead process, and (for the workers made over this runtime) outbox
   * deliveries failing, scheduler and sweeper errors. A pino logger fits as it is; see
   * {@link Logger} for the levels. Every record is redacted first: no private key, password,
   * token, `Authorization` value, secret script parameter or SecretStore value reaches it.
   * @default nothing is logged
   */
  logger?: Logger;
  /**
   * Where started runs are carried out: without it (the embedded default) the process that starts a
   * run executes it; with a queue (`@fleetward/worker` on PostgreSQL) the run is submitted and
   * worker processes carry out its servers, while the starting call waits for the end. Script
   * runs go through it; the other workflows still run in the starting process.
   * @default undefined: in process
   */
  rollouts?: RolloutQueue;
}

/** What an {@link AfterScanHook} is told about a finished scan. */
export interface FinishedScan {
  runtime: Runtime;
  tenantId: string;
  jobId: string;
  /** Who ran the scan, as its audit records name them. */
  actor: AuditInput['actor'];
  /** One result per scanned server, failed ones included. */
  results: readonly ScanResult[];
}

/**
 * Work another module attaches to every scan that found anything (the facade attaches the opening
 * of change requests). Called after the scan's job committed, in registration order. A hook must
 * not throw: it audits its own failures, because a scan that succeeded stays succeeded.
 */
export type AfterScanHook = (scan: FinishedScan) => Promise<void>;

/**
 * What every module runs on, shared by all calls of all tenants: the store, the clock, secrets,
 * the in-process event bus, adapters and OS drivers, and the options given to `createFleet`.
 * It holds no tenant and no actor; a {@link CallContext} adds those. The Fleet is a Runtime.
 */
export class Runtime {
  /** In-process events; listeners run synchronously and must not throw. */
  readonly events = new EventEmitter<FleetEvents>();
  readonly store: Store;
  readonly clock: Clock;
  /** Where credentials live; workflows that need one fail with a typed error without it. */
  readonly secrets: SecretStore | undefined;
  readonly drivers: readonly PackageManagerDriver[];
  readonly scanConcurrency: number;
  readonly accessOptions: AccessOptions;
  readonly auditSigningKey: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
  /**
   * The `logger` option behind the SDK's redaction (see {@link RedactingLogger}); silent without
   * one. Modules and workers log through it, never to the option directly.
   */
  readonly logger: RedactingLogger;
  /** The `rollouts` option: where started runs are carried out, or undefined for this process. */
  readonly rollouts: RolloutQueue | undefined;
  /** Run after every scan with at least one success; see {@link AfterScanHook}. */
  readonly afterScan: AfterScanHook[] = [];
  readonly #adapters = new Map<string, Adapter>();
  /** The records appended outside a transaction, committed together with their concurrent peers. */
  readonly #auditCommit: AuditGroupCommit;

  /** @throws ValidationError for bad options; CapabilityMissingError for an adapter that can do nothing. */
  constructor(options: RuntimeOptions) {
    this.store = options.store;
    this.#auditCommit = new AuditGroupCommit(options.store);
    this.clock = options.clock ?? systemClock;
    if (options.logger !== undefined && !isLogger(options.logger)) {
      throw new ValidationError('FleetOptions', [
        {
          path: ['logger'],
          message: 'must have the methods error, warn, info and debug (a pino logger fits)',
        },
      ]);
    }
    // Every value that passes through the SecretStore is known to the logger, which scrubs it.
    const known = new SecretValues();
    this.secrets = options.secrets ? noteSecrets(options.secrets, known) : undefined;
    this.logger = new RedactingLogger(options.logger, known);
    this.rollouts = options.rollouts;
    this.drivers = options.drivers ?? DEFAULT_DRIVERS;
    this.scanConcurrency = options.scanConcurrency ?? 32;
    this.accessOptions = validate(AccessOptionsSchema, options.access ?? {}, 'FleetOptions.access');
    this.auditSigningKey = options.auditSigningKey ? signingKeyPair(options.auditSigningKey) : undefined;
    if (!Number.isInteger(this.scanConcurrency) || this.scanConcurrency < 1) {
      throw new ValidationError('FleetOptions', [
        { path: ['scanConcurrency'], message: 'must be a positive integer' },
      ]);
    }
    for (const [i, adapter] of options.adapters.entries()) {
      if (!adapter?.name) {
        throw new ValidationError('FleetOptions', [
          { path: ['adapters', i, 'name'], message: 'is required' },
        ]);
      }
      if (!CAPABILITIES.some((c) => adapter[c] !== undefined)) {
        throw new CapabilityMissingError(
          `adapter ${adapter.name} has none of the capabilities ${CAPABILITIES.join(', ')}`,
        );
      }
      if (this.#adapters.has(adapter.name)) {
        throw new ValidationError('FleetOptions', [
          { path: ['adapters', i, 'name'], message: `duplicate adapter ${adapter.name}` },
        ]);
      }
      this.#adapters.set(adapter.name, adapter);
    }
    const context: AdapterContext = {
      secrets: this.secrets,
      account: (tenantId, accountId) => this.store.accounts.get(tenantId, accountId),
      logger: this.logger,
    };
    for (const adapter of this.#adapters.values()) adapter.attach?.(context);
  }

  /**
   * The adapter that reaches `server`: the one named by `server.adapter`, else the one named like
   * its provider.
   * @throws CapabilityMissingError when no such adapter is registered.
   */
  adapterFor(server: Server): Adapter {
    const name = server.adapter ?? server.provider;
    const adapter = this.#adapters.get(name);
    if (!adapter) {
      throw new CapabilityMissingError(
        `no adapter named ${JSON.stringify(name)} is registered for server ${server.name}`,
      );
    }
    return adapter;
  }

  /** The adapter registered under `name` (an account's provider), or undefined. */
  adapterNamed(name: string): Adapter | undefined {
    return this.#adapters.get(name);
  }

  /**
   * Appends an audit record through `scope` (a transaction, or the store for a record of its own,
   * group-committed with the records other callers append at the same time) and announces it as
   * `audit.recorded` once the current job of the event loop is done.
   */
  async audit(scope: StoreScope, input: AuditInput): Promise<AuditRecord> {
    // Outside a transaction (a read, a denial): committed with the concurrent callers' records
    // (see `AuditGroupCommit`), each caller still waiting for its own.
    const record = await (scope === this.store ? this.#auditCommit.append(input) : scope.audit.append(input));
    queueMicrotask(() => this.events.emit('audit.recorded', record));
    return record;
  }

  /**
   * {@link Runtime.audit} for several records of one tenant in one stretch of its chain
   * (`AuditLog.appendMany`): the chain is locked and its head read once for all of them.
   */
  async auditMany(scope: StoreScope, inputs: readonly AuditInput[]): Promise<AuditRecord[]> {
    const records = await scope.audit.appendMany(inputs);
    queueMicrotask(() => {
      for (const record of records) this.events.emit('audit.recorded', record);
    });
    return records;
  }

  /**
   * Commits the audit records still waiting, closes every adapter, then the store; the first
   * adapter failure is thrown after the store closed.
   */
  async close(): Promise<void> {
    // Records still waiting for their commit are written before the store closes.
    await this.#auditCommit.drain();
    const errors: unknown[] = [];
    for (const adapter of this.#adapters.values()) {
      try {
        await adapter.close?.();
      } catch (error) {
        errors.push(error);
      }
    }
    await this.store.close();
    if (errors.length) throw toFleetwardError(errors[0], 'closing adapters');
  }
}

function signingKeyPair(key: string | KeyObject): { privateKey: KeyObject; publicKey: KeyObject } {
  try {
    const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519')
      throw new Error('not an Ed25519 private key');
    return { privateKey, publicKey: createPublicKey(privateKey) };
  } catch (error) {
    throw new ValidationError('FleetOptions', [
      { path: ['auditSigningKey'], message: `must be an Ed25519 private key: ${(error as Error).message}` },
    ]);
  }
}
