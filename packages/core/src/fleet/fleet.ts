import { createPrivateKey, createPublicKey, type KeyObject, randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import PQueue from 'p-queue';
import { z } from 'zod';
import { type AccessApi, type AccessOptions, AccessOptionsSchema, createAccessApi } from '../access/api.js';
import { createKeysApi, type KeysApi } from '../access/keys.js';
import { type AuditApi, createAuditApi, type VerifyAuditLogOptions } from '../audit/api.js';
import type { AuditLogVerification } from '../audit/export.js';
import { AuditQuerySchema } from '../audit/options.js';
import type { Action } from '../authz/actions.js';
import { compileAuthorization } from '../authz/compiled.js';
import {
  type AuthorizationContext,
  type Decision,
  evaluateAnywhere,
  type Resource,
} from '../authz/evaluate.js';
import { createComplianceApi } from '../compliance/api.js';
import {
  type AccountInput,
  type AuditInput,
  type AuditRecord,
  type EntityInputs,
  IdSchema,
  type Job,
  matchesSelector,
  type Principal,
  type ProjectInput,
  type ScanResult,
  type ScanResultInput,
  type Server,
  type ServerInput,
  ServerSchemas,
  type ServerSelector,
  ServerSelectorSchema,
  validate,
} from '../domain/index.js';
import {
  ListOptionsSchema,
  objectArgument,
  RemoveOptionsSchema,
  validateOptions,
} from '../domain/options.js';
import { DEFAULT_DRIVERS, scanServer } from '../engine/scan.js';
import { OperationStopLatch } from '../engine/stop.js';
import {
  AbortedError,
  AuthorizationError,
  CapabilityMissingError,
  ConflictError,
  NotFoundError,
  toFleetwardError,
  ValidationError,
} from '../errors.js';
import { requestChangesForScan } from '../integrations/requests.js';
import { newestScan } from '../inventory/scans.js';
import { resolveTargets, type Targets, validateTargets } from '../inventory/targets.js';
import { createNotifyApi, type NotifyApi } from '../notify/api.js';
import { enqueueEvent } from '../notify/outbox.js';
import type { PackageManagerDriver } from '../os/driver.js';
import { createPatchApi, type PatchApi } from '../patch/plan.js';
import { type Adapter, CAPABILITIES } from '../ports/adapter.js';
import { type Clock, systemClock } from '../ports/clock.js';
import type { SecretStore } from '../ports/secret-store.js';
import type { AuditQuery, ListOptions, Store, StoreScope } from '../ports/store.js';
import { buildComplianceReport, emailComplianceReport, type ReportScopeInput } from '../report/build.js';
import { createScheduleApi } from '../schedule/api.js';
import { createScriptApi } from '../sop/api.js';
import { createRunbookApi } from '../sop/runbook.js';
import type { FleetEvents } from './events.js';
import {
  impersonationOf,
  type ReachGuard,
  ReachWideningRefusal,
  snapshotReach,
  wideningOf,
} from './reach-guard.js';

export interface FleetOptions {
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
}

/** Who acts: a principal of a tenant. */
export interface Actor {
  tenantId: string;
  principalId: string;
  /**
   * When the embedding application last verified this principal's second factor (ISO time).
   * Rules with `mfaWithinMinutes` (e.g. for approvals) count only when it is recent enough.
   */
  mfaVerifiedAt?: string;
}

const ScanOptionsSchema = z.strictObject({
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
  concurrency: z.number().int().min(1).max(1000).optional(),
  timeoutMs: z.number().int().min(1).max(86_400_000).optional(),
});

export interface ScanOptions {
  signal?: AbortSignal;
  /** @default the fleet's scanConcurrency */
  concurrency?: number;
  /** Per-server time limit. @default 600_000 */
  timeoutMs?: number;
}

export interface ScanOutcome {
  job: Job;
  /** One per targeted server, in server-id order; failed scans have `status: 'failed'` and `error`. */
  results: ScanResult[];
}

const ActorSchema = z.strictObject({
  tenantId: z.string().min(1),
  principalId: z.string().min(1),
  mfaVerifiedAt: z.iso.datetime({ offset: true }).optional(),
});

/** The built-in role a bootstrapped tenant's first admin gets. */
export const TENANT_ADMIN_ROLE_ID = 'tenant-admin';

export interface BootstrapTenantInput {
  tenant: { id: string; name: string };
  admin: Omit<EntityInputs['principals'], 'tenantId'> & { id: string };
}

/**
 * The way in to everything: a Fleet over one store and a set of adapters. Calls go through
 * `fleet.as(actor)`, which authorizes each one and leaves an audit record whether it was allowed
 * or not.
 */
export class Fleet {
  readonly events = new EventEmitter<FleetEvents>();
  readonly store: Store;
  readonly clock: Clock;
  readonly secrets: SecretStore | undefined;
  readonly drivers: readonly PackageManagerDriver[];
  readonly scanConcurrency: number;
  readonly accessOptions: AccessOptions;
  readonly auditSigningKey: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
  readonly #adapters = new Map<string, Adapter>();

  constructor(options: FleetOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.secrets = options.secrets;
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
  }

  /** The adapter that reaches `server`. */
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

  /** Calls made as `actor`: authorized and audited one by one. */
  as(actor: Actor): FleetSession {
    return new FleetSession(this, validate(ActorSchema, actor, 'Actor'));
  }

  /**
   * Creates a tenant with its first admin principal, bound to the built-in `tenant-admin` role
   * (every action on everything of the tenant). Audited as the `system` actor. Fails with
   * `AlreadyExistsError` when the tenant exists. Only code that holds the Fleet can do this: it
   * is how an embedding application sets up a customer.
   */
  async bootstrapTenant(input: BootstrapTenantInput): Promise<{ tenantId: string; adminId: string }> {
    const tenantId = input.tenant.id;
    await this.store.transaction(async (tx) => {
      await tx.tenants.create({ tenantId, id: tenantId, name: input.tenant.name });
      await tx.principals.create({ ...input.admin, tenantId });
      await tx.roles.create({
        tenantId,
        id: TENANT_ADMIN_ROLE_ID,
        name: 'Tenant admin',
        description: 'Every action on everything of the tenant.',
        rules: [{ effect: 'allow', actions: ['*'] }],
      });
      await tx.roleBindings.create({ tenantId, principalId: input.admin.id, roleId: TENANT_ADMIN_ROLE_ID });
      await this.audit(tx, {
        tenantId,
        actor: { principalId: 'system', kind: 'system' },
        action: 'tenant.bootstrap',
        target: { type: 'tenant', id: tenantId },
        decision: 'allow',
        result: 'success',
        details: { adminId: input.admin.id },
      });
    });
    return { tenantId, adminId: input.admin.id };
  }

  /** Appends an audit record and announces it. */
  async audit(scope: StoreScope, input: AuditInput): Promise<AuditRecord> {
    const record = await scope.audit.append(input);
    queueMicrotask(() => this.events.emit('audit.recorded', record));
    return record;
  }

  /** Closes every adapter, then the store. */
  async close(): Promise<void> {
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

/** Creates a {@link Fleet}. */
export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}

type PendingPatchInput = NonNullable<ScanResultInput['patches']>[number];

async function latestSucceeded(
  scope: StoreScope,
  tenantId: string,
  serverId: string,
): Promise<ScanResult | undefined> {
  const scans = await scope.scanResults.listAll(tenantId, { where: { serverId, status: 'succeeded' } });
  return newestScan(scans);
}

/**
 * Carries patch history from the previous successful scan: each still-pending package keeps the
 * date it was first seen, and packages that stopped being pending mark the server as updated.
 */
export function carryHistory(
  previous: ScanResult | undefined,
  patches: readonly PendingPatchInput[],
  scannedAt: string,
): { patches: PendingPatchInput[]; lastUpdatedAt?: string } {
  const seen = new Map((previous?.patches ?? []).map((p) => [p.name, p.firstSeenAt ?? previous!.scannedAt]));
  const now = new Set(patches.map((p) => p.name));
  const installedSince = (previous?.patches ?? []).some((p) => !now.has(p.name));
  const lastUpdatedAt = installedSince ? scannedAt : previous?.lastUpdatedAt;
  return {
    patches: patches.map((p) => ({ ...p, firstSeenAt: seen.get(p.name) ?? scannedAt })),
    ...(lastUpdatedAt ? { lastUpdatedAt } : {}),
  };
}

/** The session's machinery, for workflow modules. Not part of the public API. */
export interface SessionInternals {
  fleet: Fleet;
  tenantId: string;
  actor: Actor;
  /** Decides `action` on every resource; any denial is audited and thrown before anything happens. */
  authorize(action: Action, resources: Resource[], target?: AuditInput['target']): Promise<Principal>;
  /** As `authorize`, also returning the rule that allowed it, for the caller's audit record. */
  decide(
    action: Action,
    resources: Resource[],
    target?: AuditInput['target'],
  ): Promise<{ principal: Principal; rule: AuditInput['rule'] }>;
  /**
   * Authorizes, runs `fn` in a transaction with its success audit record; audits a failure too.
   * With a `guard`, also refuses a change that would widen the caller's reach (see `ReachGuard`).
   */
  write<T>(
    action: Action,
    resources: Resource[],
    target: NonNullable<AuditInput['target']>,
    fn: (tx: StoreScope) => Promise<T>,
    details?: (result: T) => Record<string, unknown>,
    guard?: ReachGuard,
  ): Promise<T>;
  read<T>(
    action: Action,
    resources: Resource[],
    target: NonNullable<AuditInput['target']>,
    fn: () => Promise<T>,
  ): Promise<T>;
  scan(targets: Targets, options?: ScanOptions): Promise<ScanOutcome>;
  /** The session itself, for workflows built on its other APIs. */
  session: FleetSession;
}

type ServerChanges = Partial<Omit<ServerInput, 'tenantId' | 'id'>>;

const BindRoleOptionsSchema = z.strictObject({
  /** Limit the binding to servers of these projects; absent means tenant-wide. */
  projectIds: z.array(IdSchema).min(1).max(1000).optional(),
});
/** Options of `iam.bindRole`. */
export type BindRoleOptions = z.input<typeof BindRoleOptionsSchema>;
type ProjectChanges = Partial<Omit<ProjectInput, 'tenantId' | 'id'>>;

/** The API as one principal of one tenant. Every method authorizes, then audits. */
export class FleetSession {
  readonly #fleet: Fleet;
  readonly actor: Actor;

  constructor(fleet: Fleet, actor: Actor) {
    this.#fleet = fleet;
    this.actor = actor;
  }

  /** What workflow modules (patch, access, sop) need from a session: authorize, audit, write. */
  protected internals(): SessionInternals {
    return {
      fleet: this.#fleet,
      tenantId: this.#tenantId,
      actor: this.actor,
      authorize: (action, resources, target) => this.#authorize(action, resources, target),
      decide: (action, resources, target) => this.#decide(action, resources, target),
      write: (action, resources, target, fn, details, guard) =>
        this.#write(action, resources, target, fn, details, guard),
      read: (action, resources, target, fn) => this.#read(action, resources, target, fn),
      scan: (targets, options) => this.scan(targets, options),
      session: this,
    };
  }

  get #tenantId() {
    return this.actor.tenantId;
  }

  async #principal(): Promise<Principal | undefined> {
    return this.#fleet.store.principals.get(this.#tenantId, this.actor.principalId);
  }

  /**
   * Decides `action` on every resource. Any denial is audited and thrown as AuthorizationError
   * before anything happens.
   */
  async #authorize(action: Action, resources: Resource[], target?: AuditInput['target']): Promise<Principal> {
    return (await this.#decide(action, resources, target)).principal;
  }

  /** As `#authorize`, also returning the rule that allowed the first resource (for the audit record). */
  async #decide(
    action: Action,
    resources: Resource[],
    target?: AuditInput['target'],
  ): Promise<{ principal: Principal; rule: AuditInput['rule'] }> {
    const store = this.#fleet.store;
    const principal = await this.#principal();
    const actorKind = principal?.kind ?? 'human';
    const deny = async (decision: Decision, denied: Decision[]) => {
      await this.#fleet.audit(store, {
        tenantId: this.#tenantId,
        actor: { principalId: this.actor.principalId, kind: actorKind },
        action,
        ...(target ? { target } : {}),
        decision: 'deny',
        result: 'denied',
        reason: decision.reason,
        details: {
          denied: denied
            .slice(0, 100)
            .map((d) => ({ resource: d.resource, reason: d.reason, matched: d.matched })),
        },
      });
      this.#fleet.events.emit('authz.denied', decision);
      throw new AuthorizationError(
        `${this.actor.principalId} may not ${action}: ${decision.reason}`,
        decision,
      );
    };
    if (!principal) {
      const decision: Decision = {
        allowed: false,
        action,
        principalId: this.actor.principalId,
        resource: target ?? { type: 'tenant' },
        reason: 'unknown principal',
      };
      return deny(decision, [decision]);
    }
    const ctx = await this.#context(principal);
    // Compiled once per call: a scan or plan over thousands of servers decides each in microseconds.
    const authz = compileAuthorization(ctx);
    // An empty set is no free pass: the principal must be allowed the action somewhere.
    const decisions = resources.length
      ? resources.map((r) => authz.decide(action, r))
      : [evaluateAnywhere(ctx, action, target ?? { type: 'tenant' })];
    const denied = decisions.filter((d) => !d.allowed);
    if (denied.length) await deny(denied[0]!, denied);
    const matched = decisions[0]?.matched;
    const rule = matched
      ? { roleId: matched.roleId, bindingId: matched.bindingId, ruleIndex: matched.ruleIndex }
      : undefined;
    return { principal, rule };
  }

  /**
   * Runs a write with its audit record in one transaction; a failure is audited too. With a
   * `guard`, the change is also decided on what it results in: it is refused (and audited as
   * denied) when it would widen the caller's own reach, or hand another principal something the
   * caller could not do itself (see `reach-guard.ts`).
   */
  async #write<T>(
    action: Action,
    resources: Resource[],
    target: NonNullable<AuditInput['target']>,
    fn: (tx: StoreScope) => Promise<T>,
    details: (result: T) => Record<string, unknown> = () => ({}),
    guard?: ReachGuard,
  ): Promise<T> {
    const { principal, rule } = await this.#decide(action, resources, target);
    const actor = { principalId: principal.id, kind: principal.kind };
    try {
      return await this.#fleet.store.transaction(async (tx) => {
        const now = this.#fleet.clock.now();
        const caller = {
          principalId: principal.id,
          mfaVerifiedAt: this.actor.mfaVerifiedAt ? new Date(this.actor.mfaVerifiedAt) : undefined,
        };
        const before = guard ? await snapshotReach(tx, this.#tenantId, guard, caller, now) : undefined;
        const impersonation =
          guard?.impersonates && before
            ? impersonationOf(before, principal.id, guard.impersonates)
            : undefined;
        if (impersonation) throw new ReachWideningRefusal(action, principal.id, target, impersonation);
        const result = await fn(tx);
        if (guard && before) {
          const after = await snapshotReach(tx, this.#tenantId, guard, caller, now);
          const widening = wideningOf(before, after, principal.id);
          if (widening) throw new ReachWideningRefusal(action, principal.id, target, widening);
        }
        await this.#fleet.audit(tx, {
          tenantId: this.#tenantId,
          actor,
          action,
          target,
          decision: 'allow',
          ...(rule ? { rule } : {}),
          result: 'success',
          details: details(result),
        });
        return result;
      });
    } catch (error) {
      if (error instanceof ReachWideningRefusal) {
        await this.#fleet.audit(this.#fleet.store, {
          tenantId: this.#tenantId,
          actor,
          action,
          target,
          decision: 'deny',
          result: 'denied',
          reason: error.decision.reason,
          details: { widening: true },
        });
        this.#fleet.events.emit('authz.denied', error.decision);
        throw error;
      }
      const failure = toFleetwardError(error, action);
      await this.#fleet.audit(this.#fleet.store, {
        tenantId: this.#tenantId,
        actor,
        action,
        target,
        decision: 'allow',
        result: 'failure',
        reason: failure.message.slice(0, 2000),
        details: { code: failure.code },
      });
      throw failure;
    }
  }

  /** Audits a successful read. Reads are audited too: "who looked at what" is an audit question. */
  async #read<T>(
    action: Action,
    resources: Resource[],
    target: NonNullable<AuditInput['target']>,
    fn: () => Promise<T>,
  ) {
    const { principal, rule } = await this.#decide(action, resources, target);
    const result = await fn();
    await this.#fleet.audit(this.#fleet.store, {
      tenantId: this.#tenantId,
      actor: { principalId: principal.id, kind: principal.kind },
      action,
      target,
      decision: 'allow',
      ...(rule ? { rule } : {}),
      result: 'success',
    });
    return result;
  }

  /** Principals and role bindings of the tenant (the access-management issue deepens this). */
  readonly iam = {
    addPrincipal: async (input: Omit<EntityInputs['principals'], 'tenantId'>) =>
      objectArgument(input, 'Principal') &&
      this.#write(
        'iam.write',
        [{ type: 'principal' }],
        { type: 'principal', id: input.id ?? '(new)' },
        (tx) => tx.principals.create({ ...input, tenantId: this.#tenantId } as EntityInputs['principals']),
      ),
    /**
     * Binds a role to a principal, tenant-wide or for some projects. Refused (`AuthorizationError`)
     * when it would widen the caller's own reach or give the principal anything the caller may not
     * do itself; unknown option fields (`tenantId` among them) are a `ValidationError`.
     */
    bindRole: async (principalId: string, roleId: string, options: BindRoleOptions = {}) => {
      const { projectIds } = validate(BindRoleOptionsSchema, options, 'BindRoleOptions');
      return this.#write(
        'iam.write',
        [{ type: 'role-binding' }],
        { type: 'principal', id: principalId },
        async (tx) => {
          await tx.principals.require(this.#tenantId, principalId);
          await tx.roles.require(this.#tenantId, roleId);
          return tx.roleBindings.create({
            principalId,
            roleId,
            ...(projectIds ? { projectIds } : {}),
            tenantId: this.#tenantId,
          });
        },
        (b) => ({ bindingId: b.id, roleId, ...(projectIds ? { projectIds } : {}) }),
        { principals: [principalId], servers: 'all', others: true },
      );
    },
    listPrincipals: () =>
      this.#read('iam.read', [{ type: 'principal' }], { type: 'principal', id: '*' }, () =>
        this.#fleet.store.principals.listAll(this.#tenantId),
      ),
  };

  /** Shareable reports (render them with `renderHtml`, `renderCsv`, `renderJson`). */
  readonly reports = {
    /** The data of a compliance and pending-patch report for the tenant, a project or an account. */
    compliance: (scope: ReportScopeInput, options?: { title?: string; securityOnly?: boolean }) =>
      buildComplianceReport(this.internals(), scope, options),
    /** Queues a compliance report for email to stakeholders through the outbox (SMTP integration). */
    emailCompliance: (
      scope: ReportScopeInput,
      options: {
        integrationId: string;
        to: string[];
        subject?: string;
        brand?: { name: string; color?: string };
      },
    ) => emailComplianceReport(this.internals(), scope, options),
  };

  /** Scheduled scans of projects. */
  readonly schedules = createScheduleApi(() => this.internals());

  /** Patch policies, plans and approvals. */
  readonly patch: PatchApi = createPatchApi(() => this.internals());
  readonly notify: NotifyApi = createNotifyApi(() => this.internals());
  readonly compliance = createComplianceApi(() => this.internals());
  readonly scripts = createScriptApi(() => this.internals());
  readonly runbooks = createRunbookApi(() => this.internals());
  /** Just-in-time access: requests, approvals, server-enforced grants, revocation. */
  readonly access: AccessApi = createAccessApi(() => this.internals());
  /** Managed SSH keys with one caretaker each, key inventory, lockout-proof rotation. */
  readonly keys: KeysApi = createKeysApi(() => this.internals());
  /** The audit log: queries, verification, export for offline checks, signed checkpoints. */
  readonly audit: AuditApi = createAuditApi(() => this.internals());

  /** Verifies the tenant's audit chain (and the checkpoints given); see `audit.verify`. */
  verifyAuditLog(options?: VerifyAuditLogOptions): Promise<AuditLogVerification> {
    return this.audit.verify(options);
  }

  // ---- inventory ----------------------------------------------------------------------------

  readonly servers = {
    add: async (input: Omit<ServerInput, 'tenantId'>): Promise<Server> => {
      objectArgument(input, 'ServerInput');
      const candidate = { ...input, tenantId: this.#tenantId } as ServerInput;
      const resulting = ServerSchemas.input.safeParse(candidate);
      return this.#write(
        'inventory.write',
        [
          { type: 'server-inventory' },
          ...(resulting.success ? [{ type: 'server' as const, server: resulting.data as Server }] : []),
        ],
        { type: 'server', id: input.id ?? '(new)' },
        (tx) => tx.servers.create(candidate),
        (s) => ({ serverId: s.id, name: s.name }),
      );
    },
    update: async (
      id: string,
      changes: ServerChanges,
      options: { expectedVersion: number },
    ): Promise<Server> => {
      const current = await this.#fleet.store.servers.get(this.#tenantId, id);
      if (!current) throw new NotFoundError('server', id);
      return this.#write(
        'inventory.write',
        [{ type: 'server', server: current }],
        { type: 'server', id },
        (tx) => tx.servers.update(this.#tenantId, id, changes, options),
        undefined,
        { principals: 'all', servers: [id], others: false },
      );
    },
    remove: async (id: string, options: { expectedVersion?: number } = {}): Promise<boolean> => {
      validateOptions(RemoveOptionsSchema, options, 'RemoveOptions');
      const current = await this.#fleet.store.servers.get(this.#tenantId, id);
      if (!current) return false;
      return this.#write(
        'inventory.write',
        [{ type: 'server', server: current }],
        { type: 'server', id },
        (tx) => tx.servers.delete(this.#tenantId, id, options),
      );
    },
    get: async (id: string): Promise<Server | undefined> => {
      const server = await this.#fleet.store.servers.get(this.#tenantId, id);
      if (!server) return undefined;
      return this.#read(
        'inventory.read',
        [{ type: 'server', server }],
        { type: 'server', id },
        async () => server,
      );
    },
    /** Servers the principal may read, matching the options. Servers it may not read are left out. */
    list: async (input: ListOptions<Server> = {}): Promise<Server[]> => {
      const options = validateOptions(ListOptionsSchema, input, 'ListOptions') as ListOptions<Server>;
      const servers = await this.#fleet.store.servers.list(this.#tenantId, options);
      // No gate on the list itself: each server is decided on its own, and unreadable ones are left out.
      return this.#read('inventory.read', [], { type: 'server-inventory', id: '*' }, async () =>
        this.#filterReadable(servers),
      );
    },
  };

  /** The servers a selector given as input chooses, as resources; none for a selector that is not valid. */
  async #chosenBy(selector: unknown): Promise<Resource[]> {
    if (selector === undefined) return [];
    const parsed = ServerSelectorSchema.safeParse(selector);
    if (!parsed.success) return [];
    const servers = await this.#fleet.store.servers.listAll(this.#tenantId);
    return servers
      .filter((server) => matchesSelector(server, parsed.data))
      .map((server) => ({ type: 'server', server }));
  }

  async #filterReadable(servers: Server[]): Promise<Server[]> {
    const principal = await this.#principal();
    if (!principal) return [];
    const ctx = await this.#context(principal);
    const authz = compileAuthorization(ctx);
    return servers.filter((server) => authz.decide('inventory.read', { type: 'server', server }).allowed);
  }

  async #context(principal: Principal): Promise<AuthorizationContext> {
    const store = this.#fleet.store;
    const [bindings, roles, projects] = await Promise.all([
      store.roleBindings.listAll(this.#tenantId, { where: { principalId: principal.id } }),
      store.roles.listAll(this.#tenantId),
      store.projects.listAll(this.#tenantId),
    ]);
    return {
      principal,
      bindings,
      roles: new Map(roles.map((r) => [r.id, r])),
      projects: new Map(projects.map((p) => [p.id, p])),
      now: this.#fleet.clock.now(),
      mfaVerifiedAt: this.actor.mfaVerifiedAt ? new Date(this.actor.mfaVerifiedAt) : undefined,
    };
  }

  readonly accounts = {
    add: async (input: Omit<AccountInput, 'tenantId'>) =>
      objectArgument(input, 'AccountInput') &&
      this.#write(
        'inventory.write',
        [{ type: 'account' }],
        { type: 'account', id: input.id ?? '(new)' },
        (tx) => tx.accounts.create({ ...input, tenantId: this.#tenantId } as AccountInput),
      ),
    list: () =>
      this.#read('inventory.read', [{ type: 'account' }], { type: 'account', id: '*' }, () =>
        this.#fleet.store.accounts.listAll(this.#tenantId),
      ),
  };

  readonly projects = {
    /**
     * Adds a project. Needs `inventory.write` on the project and on every server its selector
     * chooses; refused when principals already bound to the project id would gain anything the
     * caller may not do itself.
     */
    add: async (input: Omit<ProjectInput, 'tenantId'>) =>
      objectArgument(input, 'ProjectInput') &&
      this.#write(
        'inventory.write',
        [
          { type: 'project', ...(input.id ? { id: input.id, projectId: input.id } : {}) },
          ...(await this.#chosenBy(input.selector)),
        ],
        { type: 'project', id: input.id ?? '(new)' },
        (tx) => tx.projects.create({ ...input, tenantId: this.#tenantId } as ProjectInput),
        undefined,
        input.id ? { principals: { boundToProject: input.id }, servers: 'all', others: false } : undefined,
      ),
    /**
     * Changes a project. A new selector needs `inventory.write` on every server it chooses, and is
     * refused when it would widen the caller's reach or give a principal bound to the project
     * anything the caller may not do itself.
     */
    update: async (id: string, changes: ProjectChanges, options: { expectedVersion: number }) =>
      this.#write(
        'inventory.write',
        [{ type: 'project', id, projectId: id }, ...(await this.#chosenBy(changes?.selector))],
        { type: 'project', id },
        (tx) => tx.projects.update(this.#tenantId, id, changes, options),
        undefined,
        { principals: { boundToProject: id }, servers: 'all', others: false },
      ),
    /** Removes a project; refused when that would lift a deny that a project-bound role imposed. */
    remove: async (id: string, options: { expectedVersion?: number } = {}) =>
      validateOptions(RemoveOptionsSchema, options, 'RemoveOptions') &&
      this.#write(
        'inventory.write',
        [{ type: 'project', id, projectId: id }],
        { type: 'project', id },
        (tx) => tx.projects.delete(this.#tenantId, id, options),
        undefined,
        { principals: { boundToProject: id }, servers: 'all', others: false },
      ),
    get: (id: string) =>
      this.#read('inventory.read', [{ type: 'project', id, projectId: id }], { type: 'project', id }, () =>
        this.#fleet.store.projects.get(this.#tenantId, id),
      ),
    list: () =>
      this.#read('inventory.read', [{ type: 'project' }], { type: 'project', id: '*' }, () =>
        this.#fleet.store.projects.listAll(this.#tenantId),
      ),
    /** The servers a project's selector chooses now. */
    servers: async (id: string) => {
      const project = await this.#fleet.store.projects.require(this.#tenantId, id);
      return this.servers.list({ selector: project.selector, limit: 10_000 });
    },
  };

  /** Servers matching a selector, for callers that think in selectors. */
  async selectServers(selector: ServerSelector): Promise<Server[]> {
    return this.servers.list({
      selector: validate(ServerSelectorSchema, selector, 'ServerSelector'),
      limit: 10_000,
    });
  }

  // ---- scanning -----------------------------------------------------------------------------

  /**
   * Scans the targeted servers for pending patches, `concurrency` at a time, and stores one
   * ScanResult per server (failed scans included, with their error). Progress is announced with
   * `scan.*` events. Every server must be allowed `patch.scan`, or nothing runs.
   */
  async scan(targets: Targets, options: ScanOptions = {}): Promise<ScanOutcome> {
    const fleet = this.#fleet;
    const store = fleet.store;
    const tenantId = this.#tenantId;
    const parsedTargets = validateTargets(targets);
    validateOptions(ScanOptionsSchema, options, 'ScanOptions');
    const servers = await resolveTargets(store, tenantId, parsedTargets);
    const { principal, rule } = await this.#decide(
      'patch.scan',
      servers.map((server) => ({ type: 'server', server })),
      { type: 'scan', id: servers.length === 1 ? servers[0]!.id : `${servers.length} servers` },
    );
    if (options.signal?.aborted) throw new AbortedError('scan aborted before it started');
    const concurrency = options.concurrency ?? fleet.scanConcurrency;
    const actor = { principalId: principal.id, kind: principal.kind };
    const jobId = randomUUID();
    const startedAt = fleet.clock.now().toISOString();

    let job = await store.transaction(async (tx) => {
      const created = await tx.jobs.create({
        tenantId,
        id: jobId,
        kind: 'scan',
        status: 'running',
        requestedBy: principal.id,
        serverIds: servers.map((s) => s.id),
        startedAt,
      });
      for (const server of servers) {
        await tx.taskResults.create({
          tenantId,
          id: `${jobId}:${server.id}`,
          jobId,
          serverId: server.id,
          status: 'pending',
        });
      }
      await fleet.audit(tx, {
        tenantId,
        actor,
        action: 'patch.scan',
        target: { type: 'job', id: jobId },
        decision: 'allow',
        ...(rule ? { rule } : {}),
        result: 'started',
        details: { servers: servers.length },
      });
      return created;
    });
    fleet.events.emit('scan.started', { tenantId, jobId, total: servers.length });

    const queue = new PQueue({ concurrency });
    const results: ScanResult[] = [];
    const stop = new OperationStopLatch();
    const notStarted: Server[] = [];
    const scanOne = async (server: Server) => {
      const taskId = `${jobId}:${server.id}`;
      // After a changed host key, or once the caller gave up (an HTTP client hanging up aborts the
      // signal), no further server is touched; those already scanning finish or are cancelled.
      if (stop.stopped || options.signal?.aborted) {
        notStarted.push(server);
        return;
      }
      const running = await store.taskResults.update(
        tenantId,
        taskId,
        { status: 'running', attempt: 1, startedAt: fleet.clock.now().toISOString() },
        { expectedVersion: 1 },
      );
      fleet.events.emit('scan.server.started', { tenantId, jobId, serverId: server.id });
      let result: ScanResult;
      try {
        const adapter = fleet.adapterFor(server);
        const scanned = await scanServer(server, {
          adapter,
          drivers: fleet.drivers,
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
        });
        result = await store.transaction(async (tx) => {
          const scannedAt = fleet.clock.now().toISOString();
          const history = carryHistory(
            await latestSucceeded(tx, tenantId, server.id),
            scanned.patches ?? [],
            scannedAt,
          );
          // What the adapter returned comes first: the facade's own fields can never be overridden.
          const saved = await tx.scanResults.create({
            ...scanned,
            ...history,
            serverId: server.id,
            jobId,
            scannedAt,
            status: 'succeeded',
            tenantId,
          });
          await tx.taskResults.update(
            tenantId,
            taskId,
            { status: 'succeeded', finishedAt: saved.scannedAt },
            { expectedVersion: running.version },
          );
          return saved;
        });
        if (scanned.os) await this.#recordOs(server.id, scanned.os);
        fleet.events.emit('scan.server.completed', { tenantId, jobId, serverId: server.id, result });
      } catch (thrown) {
        const error = toFleetwardError(thrown, `scanning ${server.name}`);
        stop.note(error, server);
        const failure = { code: error.code, message: error.message.slice(0, 4000) };
        result = await store.transaction(async (tx) => {
          const saved = await tx.scanResults.create({
            tenantId,
            serverId: server.id,
            jobId,
            scannedAt: fleet.clock.now().toISOString(),
            status: 'failed',
            error: failure,
          });
          await tx.taskResults.update(
            tenantId,
            taskId,
            {
              status: options.signal?.aborted ? 'cancelled' : 'failed',
              finishedAt: saved.scannedAt,
              error: failure,
            },
            { expectedVersion: running.version },
          );
          return saved;
        });
        fleet.events.emit('scan.server.failed', { tenantId, jobId, serverId: server.id, error: failure });
      }
      results.push(result);
    };
    await Promise.all(servers.map((server) => queue.add(() => scanOne(server))));

    const failed = results.filter((r) => r.status === 'failed').length;
    const succeeded = results.length - failed;
    const stoppedBy = stop.stopped;
    const status = options.signal?.aborted
      ? 'cancelled'
      : stoppedBy && notStarted.length > 0
        ? 'stopped'
        : failed === 0
          ? 'succeeded'
          : succeeded === 0
            ? 'failed'
            : 'partial';
    const reason = stoppedBy
      ? `${stoppedBy.reason}${notStarted.length ? `; ${notStarted.length} server(s) not scanned` : ''}`.slice(
          0,
          2000,
        )
      : undefined;
    job = await store.transaction(async (tx) => {
      for (const server of notStarted) {
        await tx.taskResults.update(
          tenantId,
          `${jobId}:${server.id}`,
          stoppedBy
            ? {
                status: 'skipped',
                error: { code: 'NOT_STARTED', message: `not scanned: ${stoppedBy.reason}` },
              }
            : {
                status: 'cancelled',
                error: { code: 'NOT_STARTED', message: 'not scanned: the scan was cancelled' },
              },
          { expectedVersion: 1 },
        );
      }
      const finished = await tx.jobs.update(
        tenantId,
        jobId,
        {
          status,
          finishedAt: fleet.clock.now().toISOString(),
          summary: { total: servers.length, succeeded, failed },
          ...(reason ? { reason } : {}),
        },
        { expectedVersion: job.version },
      );
      await fleet.audit(tx, {
        tenantId,
        actor,
        action: 'patch.scan',
        target: { type: 'job', id: jobId },
        decision: 'allow',
        result: failed === 0 && status !== 'cancelled' ? 'success' : 'failure',
        details: {
          status,
          total: servers.length,
          succeeded,
          failed,
          pending: results.reduce((n, r) => n + r.patches.length, 0),
          ...stop.details(),
          ...(stoppedBy ? { notStarted: notStarted.map((s) => s.id).slice(0, 1000) } : {}),
        },
        ...(reason ? { reason } : {}),
      });
      // The webhook is written with the job's completion: it commits, or neither does.
      await enqueueEvent(tx, {
        tenantId,
        eventType: 'scan.completed',
        payload: { tenantId, jobId, status, total: servers.length, succeeded, failed },
        now: fleet.clock.now(),
      });
      return finished;
    });
    fleet.events.emit('scan.completed', {
      tenantId,
      jobId,
      status,
      total: servers.length,
      succeeded,
      failed,
    });
    if (succeeded > 0) await this.#requestChanges(results, jobId, actor);
    results.sort((a, b) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0));
    return { job, results };
  }

  /** Opens change requests for what the scan found (see `requestChangesForScan`); never fails the scan. */
  async #requestChanges(results: ScanResult[], jobId: string, actor: AuditInput['actor']): Promise<void> {
    const fleet = this.#fleet;
    const tenantId = this.#tenantId;
    try {
      const scanned = results.filter((r) => r.status === 'succeeded').map((r) => r.serverId);
      for (const request of await requestChangesForScan(fleet.store, tenantId, scanned, fleet.clock.now())) {
        await fleet.audit(fleet.store, {
          tenantId,
          actor,
          action: 'patch.plan',
          target: { type: 'change-request', id: request.id },
          decision: 'allow',
          result: 'started',
          details: {
            projectId: request.projectId,
            integrationId: request.integrationId,
            pendingSetHash: request.pendingSetHash,
            jobId,
          },
        });
      }
    } catch (thrown) {
      const error = toFleetwardError(thrown, 'requesting changes');
      await fleet.audit(fleet.store, {
        tenantId,
        actor,
        action: 'patch.plan',
        target: { type: 'job', id: jobId },
        decision: 'allow',
        result: 'failure',
        reason: error.message.slice(0, 2000),
        details: { code: error.code },
      });
    }
  }

  async #recordOs(serverId: string, os: NonNullable<ServerInput['os']>): Promise<void> {
    const store = this.#fleet.store;
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await store.servers.get(this.#tenantId, serverId);
      if (!current || JSON.stringify(current.os) === JSON.stringify(os)) return;
      try {
        await store.servers.update(this.#tenantId, serverId, { os }, { expectedVersion: current.version });
        return;
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
  }

  /** The newest scan result of each targeted server (or of every readable server). */
  async latestScans(targets?: Targets): Promise<{ server: Server; scan: ScanResult | undefined }[]> {
    const store = this.#fleet.store;
    const servers = targets
      ? await resolveTargets(store, this.#tenantId, validateTargets(targets))
      : await store.servers.listAll(this.#tenantId);
    return this.#read(
      'patch.read',
      servers.map((server) => ({ type: 'server', server })),
      { type: 'scan-results', id: '*' },
      async () => {
        const out = [];
        for (const server of servers) {
          const scans = await store.scanResults.listAll(this.#tenantId, { where: { serverId: server.id } });
          const latest = newestScan(scans);
          out.push({ server, scan: latest });
        }
        return out;
      },
    );
  }

  /** The tenant's audit records. */
  async auditLog(query: AuditQuery = {}): Promise<AuditRecord[]> {
    validateOptions(AuditQuerySchema, query, 'AuditQuery');
    return this.#read('audit.read', [{ type: 'audit' }], { type: 'audit', id: '*' }, () =>
      this.#fleet.store.audit.list(this.#tenantId, query),
    );
  }
}
