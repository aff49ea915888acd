import type { AccessApi } from '../access/api.js';
import { createAccessApi } from '../access/api.js';
import { createKeysApi, type KeysApi } from '../access/keys.js';
import { type AuditApi, createAuditApi, type VerifyAuditLogOptions } from '../audit/api.js';
import type { AuditLogVerification } from '../audit/export.js';
import { AuditQuerySchema } from '../audit/options.js';
import { type ComplianceApi, createComplianceApi } from '../compliance/api.js';
import type { AuditRecord, EntityInputs, ScanResult, Server, ServerSelector } from '../domain/index.js';
import { objectArgument, validateOptions } from '../domain/options.js';
import { AlreadyExistsError, ConflictError, ValidationError } from '../errors.js';
import { createIamApi, type IamApi, TENANT_ADMIN_ROLE_ID } from '../iam/api.js';
import {
  type AccountsApi,
  createInventoryApi,
  type InventoryDiscoveryApi,
  type ProjectsApi,
  type ServersApi,
} from '../inventory/api.js';
import { latestScans, type ScanOptions, type ScanOutcome, scanTargets } from '../inventory/scan.js';
import { createScanRolloutWork } from '../inventory/scan-work.js';
import type { Targets } from '../inventory/targets.js';
import type { Actor } from '../kernel/actor.js';
import { type CallContext, createCallContext } from '../kernel/context.js';
import { Runtime, type RuntimeOptions } from '../kernel/runtime.js';
import { createNotifyApi, type NotifyApi } from '../notify/api.js';
import { openChangeRequestsAfterScan } from '../patch/change-requests.js';
import { createPatchApi, type PatchApi } from '../patch/plan.js';
import { createPatchRolloutWork } from '../patch/work.js';
import type { RolloutKind, RolloutRef, RolloutWork } from '../ports/rollouts.js';
import type { AuditQuery } from '../ports/store.js';
import { createReportsApi, type ReportsApi } from '../report/build.js';
import { createScheduleApi, type ScheduleApi } from '../schedule/api.js';
import { createScriptApi, type ScriptApi } from '../sop/api.js';
import { createScriptRolloutWork } from '../sop/run.js';
import { createRunbookApi, type RunbookApi } from '../sop/runbook.js';

export type { Actor } from '../kernel/actor.js';

/**
 * Options of {@link createFleet}: the store, the adapters, and the runtime's settings, among them
 * `logger`: where operator logs go (a pino logger fits as it is; see `Logger` for what is logged
 * at which level). Every record is redacted before the logger sees it. @default nothing is logged
 */
export interface FleetOptions extends RuntimeOptions {}

export { TENANT_ADMIN_ROLE_ID };

export interface BootstrapTenantInput {
  tenant: { id: string; name: string };
  admin: Omit<EntityInputs['principals'], 'tenantId'> & { id: string };
}

/**
 * The way in to everything: a Fleet over one store and a set of adapters. Calls go through
 * `fleet.as(actor)`, which authorizes each one and leaves an audit record whether it was allowed
 * or not. A Fleet is the kernel's {@link Runtime} (store, clock, events, adapters) with the
 * modules composed on top.
 */
export class Fleet extends Runtime {
  /** @throws ValidationError for bad options; CapabilityMissingError for an adapter with no capability. */
  constructor(options: FleetOptions) {
    super(options);
    // A scan opens change requests for the projects whose policy asks for them.
    this.afterScan.push(openChangeRequestsAfterScan);
    const byKind: Record<RolloutKind, RolloutWork> = {
      script: createScriptRolloutWork(this),
      scan: createScanRolloutWork(this),
      patch: createPatchRolloutWork(this),
    };
    const of = (ref: RolloutRef): RolloutWork => {
      const work = byKind[ref.kind];
      if (!work)
        throw new ValidationError('RolloutRef', [
          { path: ['kind'], message: `unknown rollout kind ${JSON.stringify(ref.kind)}` },
        ]);
      return work;
    };
    this.rolloutWork = {
      claim: (ref, serverIds, options) => of(ref).claim(ref, serverIds, options),
      carryOut: (server, signal) => of(server.ref).carryOut(server, signal),
      record: async (results, workerId) => {
        // Results of one kind go to that kind's work; the order of the answer is the order given.
        const outcomes = new Array<Awaited<ReturnType<RolloutWork['record']>>[number]>(results.length);
        const kinds = new Map<RolloutKind, number[]>();
        for (const [i, r] of results.entries()) kinds.set(r.ref.kind, [...(kinds.get(r.ref.kind) ?? []), i]);
        for (const [kind, indexes] of kinds) {
          const written = await of({ kind } as RolloutRef).record(
            indexes.map((i) => results[i]!),
            workerId,
          );
          indexes.forEach((i, k) => {
            outcomes[i] = written[k]!;
          });
        }
        return outcomes;
      },
      finish: (ref, end) => of(ref).finish(ref, end),
      cancelRequested: (ref) => of(ref).cancelRequested(ref),
      waveStarted: (ref, start) => of(ref).waveStarted(ref, start),
    };
  }

  /**
   * What worker processes do for a {@link RolloutQueue}: one server's task of a submitted run, and
   * the recording of its end, acting as the principal who started the run. `@fleetward/worker`
   * calls it; an application does not need to.
   */
  readonly rolloutWork: RolloutWork;

  /**
   * Calls made as `actor`: authorized and audited one by one.
   * @throws ValidationError when `actor` is not a valid Actor.
   */
  as(actor: Actor): FleetSession {
    return new FleetSession(this, actor);
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

  /**
   * {@link Fleet.bootstrapTenant}, safe to run on every start: when the tenant already exists with
   * this name and this admin principal, nothing is written and `created` is false (also when
   * another process created it at the same moment). Setup code and examples can call it again.
   * @throws ConflictError when the tenant exists with another name or without this admin;
   * ValidationError for input that does not fit.
   */
  async ensureTenant(
    input: BootstrapTenantInput,
  ): Promise<{ tenantId: string; adminId: string; created: boolean }> {
    objectArgument(input, 'BootstrapTenantInput');
    const existing = await this.#matchingTenant(input);
    if (existing) return existing;
    try {
      return { ...(await this.bootstrapTenant(input)), created: true };
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
      const raced = await this.#matchingTenant(input);
      if (raced) return raced;
      throw error;
    }
  }

  async #matchingTenant(
    input: BootstrapTenantInput,
  ): Promise<{ tenantId: string; adminId: string; created: false } | undefined> {
    const tenantId = input.tenant?.id;
    const adminId = input.admin?.id;
    if (typeof tenantId !== 'string' || typeof adminId !== 'string') return undefined;
    const tenant = await this.store.tenants.get(tenantId, tenantId);
    if (!tenant) return undefined;
    if (tenant.name !== input.tenant.name) {
      throw new ConflictError(
        `tenant ${tenantId} already exists with the name ${JSON.stringify(tenant.name)}, not ${JSON.stringify(input.tenant.name)}`,
      );
    }
    const admin = await this.store.principals.get(tenantId, adminId);
    const bindings = admin
      ? await this.store.roleBindings.listAll(tenantId, { where: { principalId: adminId } })
      : [];
    if (!bindings.some((b) => b.roleId === TENANT_ADMIN_ROLE_ID && !b.projectIds)) {
      throw new ConflictError(
        `tenant ${tenantId} already exists, but ${adminId} is not its tenant admin: bootstrap it with its existing admin, or bind the role through iam.bindRole`,
      );
    }
    return { tenantId, adminId, created: false };
  }
}

/**
 * Creates a {@link Fleet}.
 * @throws ValidationError for bad options; CapabilityMissingError for an adapter with no capability.
 */
export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}

/** The API as one principal of one tenant: the modules, composed on one call context. */
export class FleetSession {
  readonly actor: Actor;
  readonly #ctx: CallContext;
  /** The servers of the tenant. */
  readonly servers: ServersApi;
  /** Cloud accounts and data-centre groupings. */
  readonly accounts: AccountsApi;
  /** Projects: named server selectors. */
  readonly projects: ProjectsApi;
  /** Discovery of cloud accounts' servers (`inventory.discover`). */
  readonly inventory: InventoryDiscoveryApi;
  /** Principals and role bindings. */
  readonly iam: IamApi;
  readonly #selectServers: (selector: ServerSelector) => Promise<Server[]>;

  /** @throws ValidationError when `actor` is not a valid Actor. */
  constructor(runtime: Runtime, actor: Actor) {
    this.#ctx = createCallContext(runtime, actor);
    this.actor = this.#ctx.actor;
    const inventory = createInventoryApi(this.#ctx);
    this.servers = inventory.servers;
    this.accounts = inventory.accounts;
    this.projects = inventory.projects;
    this.#selectServers = inventory.selectServers;
    this.inventory = { discover: inventory.discover };
    this.iam = createIamApi(this.#ctx);
  }

  /**
   * The readable servers a selector chooses (at most 10,000).
   * @throws ValidationError for a selector that is not valid.
   */
  selectServers(selector: ServerSelector): Promise<Server[]> {
    return this.#selectServers(selector);
  }

  /**
   * Scans the targeted servers for pending patches, `concurrency` at a time, and stores one
   * ScanResult per server (failed scans included, with their error). Progress is announced with
   * `scan.*` events; the job's end commits with its audit record and its `scan.completed` webhook.
   * Every server must be allowed `patch.scan`, or nothing runs.
   * @throws ValidationError for bad targets or options; NotFoundError for an unknown project or
   * server; AuthorizationError; AbortedError when `signal` fired before the scan started.
   */
  scan(targets: Targets, options?: ScanOptions): Promise<ScanOutcome> {
    return scanTargets(this.#ctx, targets, options);
  }

  /** The newest scan result of each targeted server (or of every server). @throws AuthorizationError. */
  latestScans(targets?: Targets): Promise<{ server: Server; scan: ScanResult | undefined }[]> {
    return latestScans(this.#ctx, targets);
  }

  /**
   * The tenant's audit records matching `query`. @throws ValidationError for a bad query;
   * AuthorizationError without `audit.read`.
   */
  async auditLog(query: AuditQuery = {}): Promise<AuditRecord[]> {
    validateOptions(AuditQuerySchema, query, 'AuditQuery');
    return this.#ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: '*' }, () =>
      this.#ctx.runtime.store.audit.list(this.#ctx.tenantId, query),
    );
  }

  /** Shareable reports (render them with `renderHtml`, `renderCsv`, `renderJson`). */
  readonly reports: ReportsApi = createReportsApi(() => this.#ctx);

  /** Scheduled scans of projects. */
  readonly schedules: ScheduleApi = createScheduleApi(() => this.#ctx);

  /** Patch policies, plans and approvals. */
  readonly patch: PatchApi = createPatchApi(() => this.#ctx);
  /** Webhook endpoints (signed, with secret rotation) and the outbox of deliveries. */
  readonly notify: NotifyApi = createNotifyApi(() => this.#ctx);
  /** Compliance standards, per-server evaluation and the summary. */
  readonly compliance: ComplianceApi = createComplianceApi(() => this.#ctx);
  /** Versioned scripts with typed parameters and approvals, and their runs rolled out in waves. */
  readonly scripts: ScriptApi = createScriptApi(() => this.#ctx);
  /** Versioned runbooks: ordered, resumable steps (script, scan, reboot, wait, approval, webhook). */
  readonly runbooks: RunbookApi = createRunbookApi(() => this.#ctx);
  /** Just-in-time access: requests, approvals, server-enforced grants, revocation. */
  readonly access: AccessApi = createAccessApi(() => this.#ctx);
  /** Managed SSH keys with one caretaker each, key inventory, lockout-proof rotation. */
  readonly keys: KeysApi = createKeysApi(() => this.#ctx);
  /** The audit log: queries, verification, export for offline checks, signed checkpoints. */
  readonly audit: AuditApi = createAuditApi(() => this.#ctx);

  /** Verifies the tenant's audit chain (and the checkpoints given); see `audit.verify`. */
  verifyAuditLog(options?: VerifyAuditLogOptions): Promise<AuditLogVerification> {
    return this.audit.verify(options);
  }
}
