import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  IdSchema,
  type Job,
  matchesSelector,
  type PatchPlan,
  type PatchPolicy,
  type PatchPolicyInput,
  type PlannedServer,
  type ScanResult,
  type Server,
  validate,
} from '../domain/index.js';
import { checkEntityInput, RemoveOptionsSchema, validateOptions } from '../domain/options.js';
import { runCommand } from '../engine/exec.js';
import { AuthorizationError, ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import { scanTargets } from '../inventory/scan.js';
import { newestScan } from '../inventory/scans.js';
import { resolveTargets, TargetsSchema } from '../inventory/targets.js';
import { denied, refused } from '../kernel/call-audit.js';
import type { CallContext } from '../kernel/context.js';
import type { PackageManagerDriver } from '../os/driver.js';
import { canonicalJson } from '../util/canonical-json.js';
import { type ExecuteOptions, executePlan } from './execute.js';
import { describeExclusions, selectPatches, unapprovedExclusions } from './selection.js';
import { validateWindow } from './window.js';

export const PlanOptionsSchema = z.strictObject({
  /** The policy to plan: its project, selection rules, rollout and approvers. */
  policyId: IdSchema,
  /** Limit the plan to these of the project's servers. @default every server of the project */
  targets: TargetsSchema.optional(),
  /** Rescan servers whose latest successful scan is older than this. @default 3_600_000 (1 h) */
  maxScanAgeMs: z.number().int().min(0).default(3_600_000),
});
/** Options of `patch.planPatchRun`. */
export type PlanOptions = z.input<typeof PlanOptionsSchema>;

export const ApproveOptionsSchema = z.strictObject({
  /** The hash of the plan the approver reviewed. */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
  /** Why the approver agrees, kept with the approval. */
  comment: z.string().max(2000).optional(),
});
/** Options of `patch.approvePlan`: the reviewed hash and an optional comment. */
export type ApproveOptions = z.input<typeof ApproveOptionsSchema>;

/** The fields of a patch policy that `patch.policies.update` may change. */
export type PatchPolicyChanges = Partial<Omit<PatchPolicyInput, 'tenantId' | 'id'>>;

/**
 * Patch policies of the tenant: which patches a project's servers get, how they roll out, who
 * approves. Written with `patch.policy` on the policy's project, read with `patch.read`; every
 * call is audited.
 */
export interface PatchPoliciesApi {
  /**
   * Adds a patch policy to a project. Its maintenance window, if any, must parse.
   * @throws ValidationError for input that does not fit the policy schema or a window that does not
   * parse; NotFoundError when the project does not exist; AlreadyExistsError for a taken id;
   * AuthorizationError.
   */
  add(input: Omit<PatchPolicyInput, 'tenantId'>): Promise<PatchPolicy>;
  /**
   * Changes a policy, compare-and-swap on `expectedVersion`. Plans made from it keep their content;
   * execution reads the policy as it is then (its window, exclusions and backups).
   * @throws NotFoundError; ConflictError for a stale version; ValidationError; AuthorizationError.
   */
  update(id: string, changes: PatchPolicyChanges, options: { expectedVersion: number }): Promise<PatchPolicy>;
  /** The policy. @throws NotFoundError when there is none; AuthorizationError. */
  get(id: string): Promise<PatchPolicy>;
  /**
   * Removes a policy (with `expectedVersion`, only that version); resolves `false` when there was
   * none. Plans made from it stay as they are, content, hash and approvals, for the record; but
   * approving or executing needs the policy, so its plans that still await approval or are
   * approved can no longer go on.
   * @throws ConflictError while a plan of it is executing (a run, or a paused one, reads the
   * policy until it ends) or for a stale version; ValidationError for a malformed id or options;
   * AuthorizationError (`patch.policy` on the policy's project).
   */
  remove(id: string, options?: { expectedVersion?: number }): Promise<boolean>;
  /** Every patch policy of the tenant. @throws AuthorizationError without `patch.read` anywhere. */
  list(): Promise<PatchPolicy[]>;
}

/**
 * Patching of a session (`fleet.as(actor).patch`): policies, plans, approvals and execution. A
 * plan is content-addressed (its hash), approved by others than its requester, and executed only
 * as approved.
 */
export interface PatchApi {
  /** Patch policies of the tenant. */
  readonly policies: PatchPoliciesApi;
  /**
   * Plans a patch run: per server the exact set to install (dependencies resolved by a simulation
   * on the host), what is held back and why, waves and the stop condition, and a content hash that
   * approvals attach to. Servers without a successful scan newer than `maxScanAgeMs` are scanned
   * first. Needs `patch.plan` on every server of the plan. A server that cannot be planned is in
   * the plan with `blocked` set rather than failing the call.
   * @throws ValidationError for bad options, targets outside the policy's project, or a plan that
   * would cover no server; NotFoundError for an unknown policy, project or target; AuthorizationError.
   */
  planPatchRun(options: PlanOptions): Promise<PatchPlan>;
  /** The plan. @throws NotFoundError when there is none; AuthorizationError without `patch.read`. */
  getPlan(planId: string): Promise<PatchPlan>;
  /**
   * Approves the plan with this hash. The requester never approves their own plan; when the policy
   * names approvers only they count; the plan is approved when `approvers.required` distinct
   * approvers agree on its current hash.
   * @throws AuthorizationError (audited as a deny) for the requester or a principal the policy does
   * not name; ConflictError when the hash is not the plan's, the plan no longer awaits approval, or
   * the caller already approved it; NotFoundError; ValidationError.
   */
  approvePlan(planId: string, options: ApproveOptions): Promise<PatchPlan>;
  /**
   * Secondary approval of excluded packages. The plan is rebuilt with them included and saved as a
   * new plan awaiting approval; the old plan is superseded and its approvals do not carry over (the
   * content changed, so does the hash). The original requester stays the requester.
   * @throws ValidationError for a package the plan does not hold back as excluded; AuthorizationError
   * for the plan's requester; ConflictError when the plan no longer awaits approval; NotFoundError.
   */
  approveExclusions(planId: string, packages: string[]): Promise<PatchPlan>;
  /**
   * Executes an approved plan: one task per server, wave by wave inside the policy's maintenance
   * window, stopping when the error budget is spent. Call it again after a crash to resume; no
   * server is patched twice. Progress is announced with `patch.*` events; the run's end commits
   * with its audit record and its `patch.run.completed` webhook. Without `waitForWindow`, a plan
   * outside its window resolves a `pending` job at once.
   * @throws ConflictError (audited) when the plan is not approved, lacks approvals of its current
   * hash, or is being executed by another process; ValidationError for bad options; NotFoundError;
   * AuthorizationError without `patch.execute` on every server.
   */
  executePlan(planId: string, options?: ExecuteOptions): Promise<Job>;
}

/** The excluded packages a secondary approval names, as the plan lists them. */
const ExclusionPackagesSchema = z.array(z.string().min(1).max(256)).min(1).max(1000);

/** The parts of a plan its hash covers. @inline */
type PlanBody = Pick<PatchPlan, 'policyId' | 'projectId' | 'servers' | 'waves' | 'stopCondition'>;

/** The content hash approvals attach to: everything that decides what will be installed where. */
export function planHash(plan: PlanBody): string {
  const { policyId, projectId, servers, waves, stopCondition } = plan;
  return createHash('sha256')
    .update(canonicalJson({ policyId, projectId, servers, waves, stopCondition }))
    .digest('hex');
}

/** Puts each server into the first wave whose selector matches; the rest go into a last wave. */
export function assignWaves(policy: PatchPolicy, servers: Server[]): PatchPlan['waves'] {
  const ordered = [...servers].sort((a, b) => (a.id < b.id ? -1 : 1));
  const waves = policy.rollout.waves.map((w) => ({ name: w.name, serverIds: [] as string[] }));
  const rest: string[] = [];
  for (const server of ordered) {
    const index = policy.rollout.waves.findIndex((w) => matchesSelector(server, w.selector));
    if (index >= 0) waves[index]!.serverIds.push(server.id);
    else rest.push(server.id);
  }
  if (rest.length) waves.push({ name: waves.length ? 'remaining' : 'all', serverIds: rest });
  return waves.filter((w) => w.serverIds.length > 0);
}

function stopCondition(policy: PatchPolicy, total: number): PatchPlan['stopCondition'] {
  const budget = policy.rollout.errorBudget;
  const maxFailures = 'count' in budget ? budget.count : Math.floor((budget.percent * total) / 100);
  return {
    errorBudget: budget,
    maxFailures,
    unreachableCountsAsError: policy.rollout.unreachableCountsAsError,
    onBudgetSpent: policy.rollout.onBudgetSpent,
  };
}

/** Creates the patch module on a session's call context (execution lives in ./execute.ts). */
export function createPatchApi(internals: () => CallContext): PatchApi {
  const policyResources = (projectId: string) => [{ type: 'patch-policy', projectId }];

  async function driverFor(ctx: CallContext, server: Server): Promise<PackageManagerDriver | undefined> {
    const os = (await ctx.runtime.store.servers.get(ctx.tenantId, server.id))?.os ?? server.os;
    return os ? ctx.runtime.drivers.find((d) => d.supports(os)) : undefined;
  }

  async function planServer(
    ctx: CallContext,
    policy: PatchPolicy,
    server: Server,
    scan: ScanResult | undefined,
    approvedExclusions: ReadonlySet<string>,
  ): Promise<PlannedServer> {
    if (scan?.status !== 'succeeded') {
      return {
        serverId: server.id,
        scanId: scan?.id ?? 'none',
        selected: [],
        resolved: [],
        heldBack: [],
        blocked: `no successful scan: ${scan?.error?.message ?? 'never scanned'}`,
      };
    }
    const selection = selectPatches(policy, scan.patches, approvedExclusions);
    const heldBack = selection.heldBack.map(({ patch, reason }) => ({
      name: patch.name,
      version: patch.candidateVersion,
      reason:
        reason.kind === 'excluded'
          ? `excluded by ${reason.pattern}`
          : reason.kind === 'held'
            ? reason.detail
            : reason.kind === 'category'
              ? `category ${reason.category} not in policy`
              : `severity ${reason.severity} below ${reason.minimum}`,
      needsSecondaryApproval: reason.kind === 'excluded',
    }));
    const selected = selection.selected.map((p) => ({
      name: p.name,
      version: p.candidateVersion,
      arch: p.arch,
    }));
    const base = { serverId: server.id, scanId: scan.id, selected, heldBack };
    if (selected.length === 0) return { ...base, resolved: [] };
    const adapter = ctx.runtime.adapterFor(server);
    const driver = await driverFor(ctx, server);
    // Nothing to resolve: the adapter installs by itself, or the driver installs exactly the
    // selection (Windows Update), so the selection is the transaction.
    if ((adapter.install && !adapter.exec) || (driver?.installsExactlySelection && driver.installCommand)) {
      return { ...base, resolved: selected.map((p) => ({ ...p, isNew: false })) };
    }
    if (!driver?.simulateInstallCommand || !driver.parseSimulateInstall) {
      return { ...base, resolved: [], blocked: 'no driver can simulate the install on this host' };
    }
    try {
      const output = await runCommand(adapter, server, driver.simulateInstallCommand(selected), {
        timeoutMs: 300_000,
      });
      const tx = driver.parseSimulateInstall(output);
      if (tx.remove.length) {
        return {
          ...base,
          resolved: [],
          blocked: `the transaction would remove packages: ${tx.remove.join(', ')}`,
        };
      }
      const resolved = [...tx.install].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      // Exclusions hold for the whole transaction: an excluded package must not slip in as a
      // dependency of an approved one. Listed as held back, it can get its secondary approval.
      const excluded = unapprovedExclusions(policy, resolved, selected, approvedExclusions);
      if (excluded.length) {
        return {
          ...base,
          heldBack: [
            ...heldBack,
            ...excluded
              .filter((e) => !heldBack.some((h) => h.name === e.name))
              .map((e) => ({
                name: e.name,
                version: e.version,
                reason: `excluded by ${e.pattern}; the transaction pulls it in as a dependency`,
                needsSecondaryApproval: true,
              })),
          ],
          resolved: [],
          blocked: `the transaction would install excluded packages without their secondary approval: ${describeExclusions(excluded)}`,
        };
      }
      return { ...base, resolved };
    } catch (error) {
      const e = toFleetwardError(error, `simulating the install on ${server.name}`);
      return {
        ...base,
        resolved: [],
        blocked: `install simulation failed: ${e.code}: ${e.message.slice(0, 500)}`,
      };
    }
  }

  async function buildPlan(
    ctx: CallContext,
    options: z.output<typeof PlanOptionsSchema>,
    approvedExclusions: ReadonlySet<string>,
  ): Promise<{ body: PlanBody; servers: Server[] }> {
    const store = ctx.runtime.store;
    const policy = await store.patchPolicies.require(ctx.tenantId, options.policyId);
    const project = await store.projects.require(ctx.tenantId, policy.projectId);
    let servers = await store.servers.listAll(ctx.tenantId, { selector: project.selector });
    if (options.targets) {
      const wanted = new Set((await resolveTargets(store, ctx.tenantId, options.targets)).map((s) => s.id));
      const outside = [...wanted].filter((id) => !servers.some((s) => s.id === id));
      if (outside.length) {
        throw new ValidationError('PlanOptions', [
          { path: ['targets'], message: `servers outside project ${project.id}: ${outside.join(', ')}` },
        ]);
      }
      servers = servers.filter((s) => wanted.has(s.id));
    }
    if (servers.length === 0) {
      throw new ValidationError('PlanOptions', [
        { path: ['targets'], message: 'the plan would cover no server' },
      ]);
    }
    await ctx.authorize(
      'patch.plan',
      servers.map((server) => ({ type: 'server', server })),
      { type: 'patch-policy', id: policy.id },
    );
    const now = ctx.runtime.clock.now().getTime();
    const scans = new Map<string, ScanResult | undefined>();
    const stale: string[] = [];
    for (const server of servers) {
      const scan = newestScan(
        await store.scanResults.listAll(ctx.tenantId, { where: { serverId: server.id } }),
      );
      if (scan?.status !== 'succeeded' || now - Date.parse(scan.scannedAt) > options.maxScanAgeMs)
        stale.push(server.id);
      scans.set(server.id, scan);
    }
    if (stale.length) {
      const outcome = await scanTargets(ctx, { serverIds: stale });
      for (const result of outcome.results) scans.set(result.serverId, result);
    }
    const planned: PlannedServer[] = [];
    for (const server of servers) {
      planned.push(await planServer(ctx, policy, server, scans.get(server.id), approvedExclusions));
    }
    return {
      servers,
      body: {
        policyId: policy.id,
        projectId: project.id,
        servers: planned,
        waves: assignWaves(policy, servers),
        stopCondition: stopCondition(policy, servers.length),
      },
    };
  }

  async function savePlan(
    ctx: CallContext,
    body: PlanBody,
    servers: Server[],
    extra: Partial<PatchPlan> = {},
  ) {
    const principal = await ctx.authorize('patch.plan', [], { type: 'patch-policy', id: body.policyId });
    const hash = planHash(body);
    return ctx.write(
      'patch.plan',
      servers.map((server) => ({ type: 'server', server })),
      { type: 'patch-plan', id: '(new)' },
      async (tx) => {
        if (extra.id) {
          const previous = await tx.patchPlans.require(ctx.tenantId, extra.id);
          await tx.patchPlans.update(
            ctx.tenantId,
            previous.id,
            { status: 'superseded' },
            { expectedVersion: previous.version },
          );
        }
        return tx.patchPlans.create({
          id: randomUUID(),
          requestedBy: extra.requestedBy ?? principal.id,
          status: 'awaiting-approval',
          ...body,
          hash,
          exclusionApprovals: extra.exclusionApprovals ?? [],
          tenantId: ctx.tenantId,
        });
      },
      (plan) => ({
        planId: plan.id,
        hash: plan.hash,
        servers: plan.servers.length,
        packages: plan.servers.reduce((n, s) => n + s.resolved.length, 0),
        blocked: plan.servers.filter((s) => s.blocked).map((s) => s.serverId),
      }),
    );
  }

  return {
    policies: {
      add: (input: Omit<PatchPolicyInput, 'tenantId'>): Promise<PatchPolicy> => {
        const ctx = internals();
        checkEntityInput('patchPolicies', input, ctx.tenantId, 'PatchPolicyInput');
        return ctx.write(
          'patch.policy',
          policyResources(input.projectId),
          { type: 'patch-policy', id: input.id ?? '(new)' },
          async (tx) => {
            await tx.projects.require(ctx.tenantId, input.projectId);
            const policy = await tx.patchPolicies.create({
              ...input,
              tenantId: ctx.tenantId,
            } as PatchPolicyInput);
            if (policy.window) validateWindow(policy.window);
            return policy;
          },
        );
      },
      update: async (id: string, changes: PatchPolicyChanges, options: { expectedVersion: number }) => {
        const ctx = internals();
        const current = await ctx.runtime.store.patchPolicies.require(ctx.tenantId, id);
        return ctx.write(
          'patch.policy',
          policyResources(current.projectId),
          { type: 'patch-policy', id },
          async (tx) => {
            const policy = await tx.patchPolicies.update(ctx.tenantId, id, changes, options);
            if (policy.window) validateWindow(policy.window);
            return policy;
          },
        );
      },
      get: async (id: string) => {
        const ctx = internals();
        const policy = await ctx.runtime.store.patchPolicies.require(ctx.tenantId, id);
        return ctx.read(
          'patch.read',
          policyResources(policy.projectId),
          { type: 'patch-policy', id },
          async () => policy,
        );
      },
      remove: async (id: string, options: { expectedVersion?: number } = {}): Promise<boolean> => {
        const ctx = internals();
        validate(IdSchema, id, 'policyId');
        const opts = validateOptions(RemoveOptionsSchema, options, 'RemoveOptions');
        const current = await ctx.runtime.store.patchPolicies.get(ctx.tenantId, id);
        return ctx.write(
          'patch.policy',
          // An unknown policy has no project: telling that it is gone takes patch.policy tenant-wide.
          current ? policyResources(current.projectId) : [{ type: 'patch-policy' }],
          { type: 'patch-policy', id },
          async (tx) => {
            if (!current) return false;
            const executing = (await tx.patchPlans.listAll(ctx.tenantId, { where: { policyId: id } })).filter(
              (p) => p.status === 'executing',
            );
            if (executing.length) {
              throw new ConflictError(
                `patch policy ${id} is in use by executing plan ${executing.map((p) => p.id).join(', ')}; let the run end (or resume and finish it) first`,
                { retryable: false },
              );
            }
            return tx.patchPolicies.delete(ctx.tenantId, id, opts);
          },
          (removed) =>
            removed && current
              ? { policyId: id, projectId: current.projectId }
              : { policyId: id, removed: false },
        );
      },
      list: async () => {
        const ctx = internals();
        return ctx.read('patch.read', [], { type: 'patch-policy', id: '*' }, () =>
          ctx.runtime.store.patchPolicies.listAll(ctx.tenantId),
        );
      },
    },

    planPatchRun: async (options: PlanOptions): Promise<PatchPlan> => {
      const ctx = internals();
      const parsed = validate(PlanOptionsSchema, options, 'PlanOptions');
      const { body, servers } = await buildPlan(ctx, parsed, new Set());
      return savePlan(ctx, body, servers);
    },

    getPlan: async (planId: string): Promise<PatchPlan> => {
      const ctx = internals();
      const plan = await ctx.runtime.store.patchPlans.require(ctx.tenantId, planId);
      return ctx.read(
        'patch.read',
        [{ type: 'patch-plan', id: planId, projectId: plan.projectId }],
        { type: 'patch-plan', id: planId },
        async () => plan,
      );
    },

    approvePlan: async (planId: string, options: ApproveOptions): Promise<PatchPlan> => {
      const ctx = internals();
      const parsed = validate(ApproveOptionsSchema, options, 'ApproveOptions');
      const store = ctx.runtime.store;
      const plan = await store.patchPlans.require(ctx.tenantId, planId);
      const policy = await store.patchPolicies.require(ctx.tenantId, plan.policyId);
      const servers = await store.servers.listAll(ctx.tenantId, {
        selector: { ids: plan.servers.map((s) => s.serverId) },
      });
      const resources = servers.map((server) => ({ type: 'server' as const, server }));
      const principal = await ctx.authorize('patch.approve', resources, { type: 'patch-plan', id: planId });
      const refuse = async (reason: string) => {
        await ctx.runtime.audit(store, {
          tenantId: ctx.tenantId,
          actor: { principalId: principal.id, kind: principal.kind },
          action: 'patch.approve',
          target: { type: 'patch-plan', id: planId },
          decision: 'deny',
          result: 'denied',
          reason,
        });
        throw new AuthorizationError(reason, {
          allowed: false,
          action: 'patch.approve',
          principalId: principal.id,
          resource: { type: 'patch-plan', id: planId },
          reason,
        });
      };
      if (principal.id === plan.requestedBy) await refuse('the requester of a plan cannot approve it');
      if (policy.approvers.principalIds.length && !policy.approvers.principalIds.includes(principal.id)) {
        await refuse(`${principal.id} is not an approver of policy ${policy.id}`);
      }
      return ctx.write(
        'patch.approve',
        resources,
        { type: 'patch-plan', id: planId },
        async (tx) => {
          const current = await tx.patchPlans.require(ctx.tenantId, planId);
          if (parsed.hash !== current.hash) {
            throw new ConflictError(
              `plan ${planId} has hash ${current.hash}, not the reviewed ${parsed.hash}: review it again`,
            );
          }
          if (current.status !== 'awaiting-approval') {
            throw new ConflictError(
              `plan ${planId} is ${current.status}; only a plan awaiting approval can be approved`,
            );
          }
          if (current.approvals.some((a) => a.principalId === principal.id)) {
            throw new ConflictError(`${principal.id} has already approved plan ${planId}`);
          }
          const approvals = [
            ...current.approvals,
            {
              principalId: principal.id,
              at: ctx.runtime.clock.now().toISOString(),
              hash: parsed.hash,
              ...(parsed.comment ? { comment: parsed.comment } : {}),
            },
          ];
          const status =
            approvals.filter((a) => a.hash === current.hash).length >= policy.approvers.required
              ? 'approved'
              : 'awaiting-approval';
          return tx.patchPlans.update(
            ctx.tenantId,
            planId,
            { approvals, status },
            { expectedVersion: current.version },
          );
        },
        (p) => ({ hash: p.hash, status: p.status, approvals: p.approvals.length }),
      );
    },

    executePlan: (planId: string, options?: ExecuteOptions): Promise<Job> =>
      executePlan(internals(), planId, options),

    approveExclusions: async (planId: string, input: string[]): Promise<PatchPlan> => {
      const ctx = internals();
      const store = ctx.runtime.store;
      const packages = validate(ExclusionPackagesSchema, input, 'packages');
      const plan = await store.patchPlans.require(ctx.tenantId, planId);
      const servers = await store.servers.listAll(ctx.tenantId, {
        selector: { ids: plan.servers.map((s) => s.serverId) },
      });
      const target = { type: 'patch-plan', id: planId };
      const principal = await ctx.authorize(
        'patch.approve',
        servers.map((server) => ({ type: 'server', server })),
        target,
      );
      // Refusals after the allow decision are audited (rule 1); the requester's is a deny.
      const refuse = async (error: Error) => refused(ctx, principal, 'patch.approve', target, error);
      const excluded = new Set(
        plan.servers.flatMap((s) => s.heldBack.filter((h) => h.needsSecondaryApproval).map((h) => h.name)),
      );
      const unknown = packages.flatMap((p, i) =>
        excluded.has(p) ? [] : [{ path: [i], message: `not excluded in this plan: ${p.slice(0, 256)}` }],
      );
      if (unknown.length) throw await refuse(new ValidationError('packages', unknown));
      if (principal.id === plan.requestedBy) {
        throw await denied(
          ctx,
          'patch.approve',
          target,
          'the requester of a plan cannot give its secondary approval',
        );
      }
      if (plan.status !== 'awaiting-approval') {
        throw await refuse(new ConflictError(`plan ${planId} is ${plan.status}`));
      }
      const exclusionApprovals = [
        ...plan.exclusionApprovals,
        { principalId: principal.id, at: ctx.runtime.clock.now().toISOString(), packages },
      ];
      const approved = new Set(exclusionApprovals.flatMap((a) => a.packages));
      const { body } = await buildPlan(
        ctx,
        {
          policyId: plan.policyId,
          targets: { serverIds: plan.servers.map((s) => s.serverId) },
          maxScanAgeMs: 3_600_000,
        },
        approved,
      );
      // The original requester stays the requester: a secondary approval must not launder who asked.
      return savePlan(ctx, body, servers, { id: planId, exclusionApprovals, requestedBy: plan.requestedBy });
    },
  };
}
