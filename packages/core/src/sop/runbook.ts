import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { plainRecord } from '../domain/common.js';
import {
  type ParameterValue,
  type Runbook,
  type RunbookRun,
  type Server,
  validate,
} from '../domain/index.js';
import {
  objectArgument,
  ReasonOptionsSchema,
  VersionOptionsSchema,
  validateOptions,
} from '../domain/options.js';
import {
  RunbookNameSchema,
  RunbookParametersSchema,
  type RunbookRunStatus,
  RunbookRunStatusSchema,
  type RunbookStep,
  RunbookStepIdSchema,
  type RunbookStepState,
  RunbookStepsSchema,
} from '../domain/runbook.js';
import {
  AuthorizationError,
  ConflictError,
  NotFoundError,
  ValidationError,
  type ValidationIssue,
} from '../errors.js';
import { refused } from '../kernel/call-audit.js';

export type { RunbookEvents } from '../kernel/events.js';

import { resolveTargets, TargetsSchema } from '../inventory/targets.js';
import type { CallContext } from '../kernel/context.js';
import { RunLease } from '../kernel/lease.js';
import type { StoreScope } from '../ports/store.js';
import { canonicalJson } from '../util/canonical-json.js';
import { resolveParameters } from './params.js';
import { approvalState, findVersion } from './repository.js';
import {
  authorizeRunbook,
  type ExecuteRunbookOptions,
  isTerminal,
  loadServers,
  newHolder,
  parseExecuteOptions,
  RunbookExecution,
  runbookResource,
  withStep,
} from './runbook-steps.js';
import {
  type AddedVersion,
  type VersionedContent,
  type VersionRef,
  VersionRefSchema,
  versionAuditDetails,
  versionedContent,
} from './versioned.js';

/** What a caller gives to define (a new version of) a runbook. */
export const DefineRunbookInputSchema = z
  .strictObject({
    name: RunbookNameSchema,
    description: z.string().max(4000).optional(),
    parameters: RunbookParametersSchema,
    steps: RunbookStepsSchema,
  })
  .superRefine((input, ctx) => {
    const declared = new Set(input.parameters.map((p) => p.name));
    input.steps.forEach((step, i) => {
      if (step.kind !== 'script') return;
      for (const [name, value] of Object.entries(step.params)) {
        if (typeof value === 'object' && !declared.has(value.param)) {
          ctx.addIssue({
            code: 'custom',
            path: ['steps', i, 'params', name],
            message: `names ${value.param}, which is not a parameter of the runbook`,
          });
        }
      }
    });
  });
export type DefineRunbookInput = z.input<typeof DefineRunbookInputSchema>;
/** A definition after parsing, defaults filled in. @inline */
type ParsedDefinition = z.output<typeof DefineRunbookInputSchema>;

/** What to run, where, with which parameters. */
export const StartRunbookInputSchema = z.strictObject({
  runbook: RunbookNameSchema,
  /** A revision number or a content hash. @default the current version */
  version: VersionRefSchema.optional(),
  targets: TargetsSchema,
  /** Values of the runbook's parameters. */
  params: plainRecord(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
  /** The change ticket the run belongs to, carried into its audit records and script runs. */
  ticket: z.string().trim().min(1).max(128).optional(),
});
export type StartRunbookInput = z.input<typeof StartRunbookInputSchema>;

export const ApproveStepOptionsSchema = z.strictObject({
  /** The step the approver reviewed: refused when the run waits on another one. */
  stepId: RunbookStepIdSchema.optional(),
  comment: z.string().max(2000).optional(),
  /**
   * Once the step has all its approvals, continue the run in this call, with the rights of the
   * principal who started it. Otherwise it waits for `resume`. @default true
   */
  continueRun: z.boolean().default(true),
});
export type ApproveStepOptions = z.input<typeof ApproveStepOptionsSchema>;

/**
 * The content hash of a runbook version: sha256 over the canonical JSON of its description,
 * parameters and steps, with defaults filled in, so equal definitions hash equal however written.
 */
export function runbookContentHash(
  content: Pick<ParsedDefinition, 'description' | 'parameters' | 'steps'>,
): string {
  const document = {
    format: 'fleetward-runbook/1',
    description: content.description,
    parameters: RunbookParametersSchema.parse(content.parameters),
    steps: RunbookStepsSchema.parse(content.steps),
  };
  return createHash('sha256').update(canonicalJson(document)).digest('hex');
}

/** The versions of runbooks: added, found and listed like every versioned content. */
const runbooks: VersionedContent<Runbook> = versionedContent('runbook', (scope) => scope.runbooks);

/**
 * A version of a runbook: the current one, or the one with this revision number or content hash.
 * @throws NotFoundError when there is none.
 */
export const findRunbookVersion = (
  scope: StoreScope,
  tenantId: string,
  name: string,
  version?: VersionRef,
): Promise<Runbook> => runbooks.find(scope, tenantId, name, version);

/** Adds a version unless the current one has the same content hash (then `created` is false). */
function addRunbookVersion(
  tx: StoreScope,
  tenantId: string,
  input: ParsedDefinition,
  createdBy: string,
): Promise<AddedVersion<Runbook>> {
  const contentHash = runbookContentHash(input);
  return runbooks.add(tx, tenantId, { name: input.name, contentHash, createdBy }, (identity) =>
    tx.runbooks.create({
      ...(input.description === undefined ? {} : { description: input.description }),
      parameters: input.parameters,
      steps: input.steps,
      ...identity,
    }),
  );
}

/** Checks what the steps refer to in the store: scripts (and versions) and webhook endpoints. */
async function referenceIssues(
  scope: StoreScope,
  tenantId: string,
  steps: readonly RunbookStep[],
  prefix: (string | number)[],
): Promise<ValidationIssue[]> {
  const issues: ValidationIssue[] = [];
  for (const [i, step] of steps.entries()) {
    if (step.kind === 'script') {
      try {
        await findVersion(scope, tenantId, step.script, step.version);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        issues.push({
          path: [...prefix, i, step.version === undefined ? 'script' : 'version'],
          message: `no script ${step.script}${step.version === undefined ? '' : ` version ${step.version}`} in the repository`,
        });
      }
    } else if (step.kind === 'webhook') {
      if (!(await scope.webhookEndpoints.get(tenantId, step.endpointId))) {
        issues.push({
          path: [...prefix, i, 'endpointId'],
          message: `no webhook endpoint ${step.endpointId}`,
        });
      }
    }
  }
  return issues;
}

/** The parameters one script step passes: literals, and the run's values it names. */
function stepParams(
  step: Extract<RunbookStep, { kind: 'script' }>,
  runParams: Record<string, ParameterValue>,
): Record<string, ParameterValue> {
  const out: Record<string, ParameterValue> = {};
  for (const [name, value] of Object.entries(step.params)) {
    if (typeof value !== 'object') out[name] = value;
    else if (Object.hasOwn(runParams, value.param)) out[name] = runParams[value.param]!;
  }
  return out;
}

/** How a start refers to the steps' paths in its errors. */
const SUBJECT = 'StartRunbookInput';

/**
 * Runbooks of a session (`session.runbooks`): versioned, ordered lists of steps (script, scan,
 * reboot, wait, approval, webhook), each with its own `onFailure`, run as persisted, resumable
 * state machines and audited step by step (`runbook.run`, `runbook.step`, `runbook.approve`).
 */
export interface RunbookApi {
  /**
   * Adds a version of a runbook (creating it on its first version); needs `script.write` on the
   * runbook. A definition equal to the current version adds nothing and resolves the current
   * version. The scripts (and versions) and webhook endpoints the steps name must exist.
   * @throws ValidationError naming the path of each bad step field (unknown kind, duplicate id,
   *   a goto that does not point forward, a missing script or endpoint).
   * @throws AuthorizationError without `script.write` on the runbook.
   * @throws ConflictError when another version of the runbook was added at the same time.
   */
  define(input: DefineRunbookInput): Promise<Runbook>;
  /**
   * The current version of a runbook, or the one with this revision number or content hash.
   * @default options.version the current version
   * @throws ValidationError for unknown options; AuthorizationError without `script.read`.
   * @throws NotFoundError when the runbook (or that version of it) does not exist.
   */
  get(name: string, options?: { version?: number | string }): Promise<Runbook>;
  /**
   * The current version of every runbook, by name.
   * @throws AuthorizationError without `script.read` not limited to some runbooks.
   */
  list(): Promise<Runbook[]>;
  /**
   * Starts a run and resolves with it when it ends, or pauses at an approval step
   * (`awaiting-approval`) or, with `returnWhenWaiting`, at a wait step (`waiting`). The targets
   * are resolved to servers now; the version of every script step is pinned now (and a risky one
   * must be approved now); every parameter is checked now. Needs `script.run` on every server and
   * every script of the runbook, and `patch.scan` on every server when it has a scan step.
   * @throws ValidationError naming the path of each problem: input, options, parameters, targets
   *   that choose no server or servers a step cannot run on, missing scripts or endpoints.
   * @throws NotFoundError for an unknown runbook or version.
   * @throws AuthorizationError when a permission is missing, or (audited) when a risky script of
   *   a step is not current and approved.
   * @throws ConflictError when another process executes the run (it stays resumable).
   */
  start(input: StartRunbookInput, options?: ExecuteRunbookOptions): Promise<RunbookRun>;
  /**
   * Continues a run from the step the store has it at: after the process executing it died (once
   * its lease expired), after `approveStep` with `continueRun: false`, or at a wait step left with
   * `returnWhenWaiting`. A step that was running when its process died is taken up again: a
   * script step resumes its script run (servers that were mid-script are failed as interrupted,
   * never run twice), a wait step waits what is left, a reboot step re-checks each server's boot
   * id (and reboots only servers whose reboot was never asked for), a scan step scans again
   * (read-only), an approval step counts its approvals, and a webhook step enqueues its message
   * (it had not: the message commits with the step's end).
   * @throws ConflictError while another process executes it, or when it has ended.
   * @throws ValidationError for bad options; NotFoundError; AuthorizationError as for `start`.
   */
  resume(runId: string, options?: ExecuteRunbookOptions): Promise<RunbookRun>;
  /**
   * Approves the approval step the run waits on (`runbook.approve`). The principal who started
   * the run cannot, nor anyone twice, nor anyone outside the step's `approvers`. With the step's
   * last approval the step succeeds, and (unless `continueRun: false`) the run continues in this
   * call with the rights of the principal who started it; `execute` are the options of that.
   * @default options.continueRun true
   * @throws ValidationError for options that do not fit {@link ApproveStepOptionsSchema}.
   * @throws NotFoundError for an unknown run.
   * @throws AuthorizationError without `runbook.approve`, or (audited) for the starter or a
   *   principal outside the step's `approvers`.
   * @throws ConflictError when the run awaits no approval (or of another step), moved on
   *   meanwhile, or the caller approved the step already; and what `resume` throws.
   */
  approveStep(
    runId: string,
    options?: ApproveStepOptions,
    execute?: ExecuteRunbookOptions,
  ): Promise<RunbookRun>;
  /**
   * Cancels a run. One that nobody executes (paused, or its process gone) ends at once, and a
   * script run its current step left behind is cancelled too; one executing in a process is
   * marked, and that process stops it (killing running scripts, starting no further step).
   * @throws ValidationError for unknown options; NotFoundError; AuthorizationError as for `start`.
   * @throws ConflictError when the run has ended.
   */
  cancel(runId: string, options?: { reason?: string }): Promise<RunbookRun>;
  /**
   * A run with every step's state.
   * @throws NotFoundError; AuthorizationError without `script.read` on the run's runbook.
   */
  getRun(runId: string): Promise<RunbookRun>;
  /**
   * Runs of a runbook (or of every runbook), newest first, optionally only those in `status`.
   * @throws ValidationError for unknown options; AuthorizationError without `script.read`.
   */
  listRuns(options?: { runbook?: string; status?: RunbookRunStatus }): Promise<RunbookRun[]>;
}

const ListRunbookRunsOptionsSchema = z.strictObject({
  runbook: RunbookNameSchema.optional(),
  status: RunbookRunStatusSchema.optional(),
});

/**
 * Runbooks of a session (`session.runbooks`): versioned, ordered lists of steps (script, scan,
 * reboot, wait, approval, webhook), each with its own `onFailure`, run as persisted, resumable
 * state machines and audited step by step (`runbook.run`, `runbook.step`, `runbook.approve`).
 */
export function createRunbookApi(internals: () => CallContext): RunbookApi {
  const readRunbook = <T>(name: string, target: { type: string; id: string }, fn: () => Promise<T>) =>
    internals().read('script.read', [runbookResource(name)], target, fn);

  /** Loads, authorizes and executes a run in this process, under its lease. */
  const execute = async (
    ctx: CallContext,
    runId: string,
    options: ExecuteRunbookOptions,
    mode: 'start' | 'resume',
  ): Promise<RunbookRun> => {
    const { signal, ...rest } = objectArgument(options, 'ExecuteRunbookOptions', true);
    const opts = parseExecuteOptions(rest);
    const store = ctx.runtime.store;
    const run = await store.runbookRuns.require(ctx.tenantId, runId);
    if (isTerminal(run)) throw new ConflictError(`runbook run ${runId} has ended (${run.status})`);
    const runbook = await store.runbooks.require(ctx.tenantId, run.runbookId);
    const servers = await loadServers(ctx, run.serverIds);
    const target = { type: 'runbook-run', id: runId };
    const { principal } = await authorizeRunbook(ctx, runbook, servers.values(), target);
    const holder = opts.holder ?? newHolder();
    const lease = await RunLease.acquire(
      ctx.runtime.store,
      `runbook-run:${ctx.tenantId}:${runId}`,
      holder,
      opts.leaseTtlMs,
      ctx.runtime.logger.child({ tenantId: ctx.tenantId, runbookRunId: runId }),
    );
    if (!lease) {
      throw await refused(
        ctx,
        principal,
        'runbook.run',
        target,
        new ConflictError(`runbook run ${runId} is being executed by another process`),
      );
    }
    try {
      // Read again under the lease: another process may have moved the run on while we waited.
      const fresh = await store.runbookRuns.require(ctx.tenantId, runId);
      if (isTerminal(fresh)) {
        throw await refused(
          ctx,
          principal,
          'runbook.run',
          target,
          new ConflictError(`runbook run ${runId} has ended (${fresh.status})`),
        );
      }
      const execution = new RunbookExecution(ctx, opts, holder, principal, fresh, runbook, servers, lease);
      return await execution.execute(signal, mode === 'resume');
    } finally {
      await lease.release();
    }
  };

  /**
   * Everything a start checks against the store before anything is written: parameters, the
   * pinned version of each script step (approved when risky) and its parameters, OS families,
   * webhook endpoints.
   */
  const prepareSteps = async (
    ctx: CallContext,
    runbook: Runbook,
    servers: Server[],
    runParams: Record<string, ParameterValue>,
  ): Promise<{ states: RunbookStepState[]; risky: { name: string; reason: string }[] }> => {
    const store = ctx.runtime.store;
    const issues = await referenceIssues(store, ctx.tenantId, runbook.steps, ['steps']);
    const risky: { name: string; reason: string }[] = [];
    const states: RunbookStepState[] = [];
    for (const [i, step] of runbook.steps.entries()) {
      const state: RunbookStepState = { stepId: step.id, kind: step.kind, status: 'pending', attempt: 0 };
      if (step.kind === 'script' && !issues.some((x) => x.path[1] === i)) {
        const script = await findVersion(store, ctx.tenantId, step.script, step.version);
        const params = stepParams(step, runParams);
        for (const name of Object.keys(params)) {
          if (script.parameters.find((p) => p.name === name)?.secret) {
            issues.push({
              path: ['steps', i, 'params', name],
              message: `is a secret parameter of ${script.name}: a runbook keeps its values in clear and cannot pass it`,
            });
          }
        }
        try {
          state.params = resolveParameters(script.parameters, params).plain;
        } catch (error) {
          if (!(error instanceof ValidationError)) throw error;
          for (const issue of error.issues)
            issues.push({ ...issue, path: ['steps', i, 'params', ...issue.path] });
        }
        const wrongOs = servers.filter(
          (s) =>
            script.osFamilies.length > 0 &&
            s.os?.family !== undefined &&
            s.os.family !== 'unknown' &&
            !script.osFamilies.includes(s.os.family),
        );
        for (const s of wrongOs.slice(0, 20)) {
          issues.push({
            path: ['targets'],
            message: `${s.name} runs ${s.os!.family}; script ${script.name} of step ${step.id} is for ${script.osFamilies.join(', ')}`,
          });
        }
        const approval = await approvalState(store, ctx.tenantId, script);
        if (!approval.satisfied) risky.push({ name: script.name, reason: approval.reason ?? 'not approved' });
        state.script = { name: script.name, revision: script.revision, contentHash: script.contentHash };
      }
      states.push(state);
    }
    if (issues.length) throw new ValidationError(SUBJECT, issues);
    return { states, risky };
  };

  return {
    define: async (input) => {
      const ctx = internals();
      const parsed = validate(DefineRunbookInputSchema, input, 'DefineRunbookInput');
      const target = { type: 'runbook', id: parsed.name };
      await ctx.authorize('script.write', [runbookResource(parsed.name)], target);
      const issues = await referenceIssues(ctx.runtime.store, ctx.tenantId, parsed.steps, ['steps']);
      if (issues.length) throw new ValidationError('DefineRunbookInput', issues);
      const { version } = await ctx.write(
        'script.write',
        [runbookResource(parsed.name)],
        target,
        (tx) => addRunbookVersion(tx, ctx.tenantId, parsed, ctx.actor.principalId),
        (r) => ({
          runbook: r.version.name,
          ...versionAuditDetails(r),
          steps: r.version.steps.map((s) => `${s.id}:${s.kind}`),
        }),
      );
      return version;
    },

    get: async (name, options = {}) => {
      const { version } = validateOptions(VersionOptionsSchema, options, 'GetRunbookOptions');
      return readRunbook(name, { type: 'runbook', id: name }, () =>
        findRunbookVersion(internals().runtime.store, internals().tenantId, name, version),
      );
    },

    list: async () => {
      const ctx = internals();
      return ctx.read('script.read', [{ type: 'runbook' }], { type: 'runbook', id: '*' }, () =>
        runbooks.latest(ctx.runtime.store, ctx.tenantId),
      );
    },

    start: async (input, options = {}) => {
      const ctx = internals();
      const parsed = validate(StartRunbookInputSchema, input, SUBJECT);
      // Checked before the run is stored: a bad option must not leave a run behind.
      const { signal: _signal, ...executeOptions } = objectArgument(options, 'ExecuteRunbookOptions', true);
      parseExecuteOptions(executeOptions);
      const store = ctx.runtime.store;
      const runbook = await findRunbookVersion(store, ctx.tenantId, parsed.runbook, parsed.version);
      const servers = await resolveTargets(store, ctx.tenantId, parsed.targets);
      if (servers.length === 0) {
        throw new ValidationError(SUBJECT, [{ path: ['targets'], message: 'the run would cover no server' }]);
      }
      const runId = randomUUID();
      const target = { type: 'runbook-run', id: runId };
      const { principal, rule } = await authorizeRunbook(ctx, runbook, servers, target);
      let runParams: Record<string, ParameterValue>;
      try {
        runParams = resolveParameters(runbook.parameters, parsed.params).plain;
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        throw new ValidationError(
          SUBJECT,
          error.issues.map((issue) => ({ ...issue, path: ['params', ...issue.path] })),
        );
      }
      const { states, risky } = await prepareSteps(ctx, runbook, servers, runParams);
      const actor = { principalId: principal.id, kind: principal.kind };
      if (risky.length) {
        const reason = risky.map((r) => r.reason).join('; ');
        await ctx.runtime.audit(store, {
          tenantId: ctx.tenantId,
          actor,
          action: 'runbook.run',
          target,
          decision: 'deny',
          result: 'denied',
          reason: reason.slice(0, 2000),
          details: { runbook: runbook.name, revision: runbook.revision, contentHash: runbook.contentHash },
        });
        throw new AuthorizationError(`runbook ${runbook.name} refused: ${reason}`, {
          allowed: false,
          action: 'script.run',
          principalId: principal.id,
          resource: { type: 'script', id: risky[0]!.name },
          reason,
        });
      }
      const now = ctx.runtime.clock.now().toISOString();
      await store.transaction(async (tx) => {
        const run = await tx.runbookRuns.create({
          tenantId: ctx.tenantId,
          id: runId,
          runbookId: runbook.id,
          runbookName: runbook.name,
          revision: runbook.revision,
          contentHash: runbook.contentHash,
          startedBy: principal.id,
          targets: parsed.targets,
          serverIds: servers.map((s) => s.id),
          params: runParams,
          status: 'running',
          ...(parsed.ticket ? { ticket: parsed.ticket } : {}),
          currentStep: 0,
          steps: states,
          startedAt: now,
        });
        await ctx.runtime.audit(tx, {
          tenantId: ctx.tenantId,
          actor,
          action: 'runbook.run',
          target,
          decision: 'allow',
          ...(rule ? { rule } : {}),
          result: 'started',
          ...(run.ticket ? { ticket: run.ticket } : {}),
          details: {
            runId,
            runbook: runbook.name,
            revision: runbook.revision,
            contentHash: runbook.contentHash,
            servers: run.serverIds.length,
            serverIds: run.serverIds.slice(0, 1000),
            params: runParams,
            steps: runbook.steps.map((s) => `${s.id}:${s.kind}`),
            scripts: states.flatMap((s) => (s.script ? [{ step: s.stepId, ...s.script }] : [])),
          },
        });
      });
      return execute(ctx, runId, options, 'start');
    },

    resume: (runId, options = {}) => execute(internals(), runId, options, 'resume'),

    approveStep: async (runId, options = {}, executeOptions = {}) => {
      const ctx = internals();
      const parsed = validate(ApproveStepOptionsSchema, options, 'ApproveStepOptions');
      const store = ctx.runtime.store;
      const run = await store.runbookRuns.require(ctx.tenantId, runId);
      const runbook = await store.runbooks.require(ctx.tenantId, run.runbookId);
      const target = { type: 'runbook-run', id: runId };
      const principal = await ctx.authorize('runbook.approve', [runbookResource(run.runbookName)], target);
      const i = run.currentStep;
      const step = runbook.steps[i];
      if (run.status !== 'awaiting-approval' || step?.kind !== 'approval') {
        throw new ConflictError(
          `runbook run ${runId} is ${run.status}${step ? ` at step ${step.id}` : ''}: it awaits no approval`,
        );
      }
      if (parsed.stepId !== undefined && parsed.stepId !== step.id) {
        throw new ConflictError(
          `runbook run ${runId} awaits approval of step ${step.id}, not ${parsed.stepId}`,
        );
      }
      const details = {
        runId,
        runbook: run.runbookName,
        revision: run.revision,
        contentHash: run.contentHash,
        stepId: step.id,
      };
      const refuse = async (reason: string): Promise<never> => {
        await ctx.runtime.audit(store, {
          tenantId: ctx.tenantId,
          actor: { principalId: principal.id, kind: principal.kind },
          action: 'runbook.approve',
          target,
          decision: 'deny',
          result: 'denied',
          reason,
          details,
        });
        throw new AuthorizationError(reason, {
          allowed: false,
          action: 'runbook.approve',
          principalId: principal.id,
          resource: { type: 'runbook', id: run.runbookName },
          reason,
        });
      };
      if (principal.id === run.startedBy) {
        await refuse(`${principal.id} started runbook run ${runId} and cannot approve its steps`);
      }
      if (step.approvers && !step.approvers.includes(principal.id)) {
        await refuse(`step ${step.id} may be approved only by ${step.approvers.join(', ')}`);
      }
      const actor = { principalId: principal.id, kind: principal.kind };
      let done = false;
      let count = 0;
      const { saved: updated, announce } = await store.transaction(async (tx) => {
        const current = await tx.runbookRuns.require(ctx.tenantId, runId);
        if (current.status !== 'awaiting-approval' || current.currentStep !== i) {
          throw new ConflictError(
            `runbook run ${runId} moved on while it was being approved (${current.status})`,
          );
        }
        if (current.approvals.some((a) => a.stepId === step.id && a.principalId === principal.id)) {
          throw new ConflictError(
            `${principal.id} has already approved step ${step.id} of runbook run ${runId}`,
          );
        }
        const at = ctx.runtime.clock.now().toISOString();
        const approvals = [
          ...current.approvals,
          {
            stepId: step.id,
            principalId: principal.id,
            at,
            ...(parsed.comment ? { comment: parsed.comment } : {}),
          },
        ];
        const approvedBy = approvals.filter((a) => a.stepId === step.id).map((a) => a.principalId);
        count = approvedBy.length;
        done = count >= step.approvals;
        const saved = await tx.runbookRuns.update(
          ctx.tenantId,
          runId,
          done
            ? {
                approvals,
                steps: withStep(current.steps, i, {
                  status: 'succeeded',
                  finishedAt: at,
                  result: { approvedBy },
                }),
                currentStep: i + 1,
                status: 'running',
              }
            : { approvals },
          { expectedVersion: current.version },
        );
        const approved = await ctx.record(tx, {
          audit: {
            actor,
            action: 'runbook.approve',
            target,
            decision: 'allow',
            result: 'success',
            ...(run.ticket ? { ticket: run.ticket } : {}),
            details: {
              ...details,
              approvals: count,
              required: step.approvals,
              ...(parsed.comment ? { comment: parsed.comment } : {}),
            },
          },
          event: {
            name: 'runbook.step.approved',
            args: [
              {
                tenantId: ctx.tenantId,
                runId,
                stepId: step.id,
                principalId: principal.id,
                approvals: count,
                required: step.approvals,
              },
            ],
          },
        });
        const completed = done
          ? await ctx.record(tx, {
              audit: {
                actor,
                action: 'runbook.step',
                target,
                decision: 'allow',
                result: 'success',
                ...(run.ticket ? { ticket: run.ticket } : {}),
                details: {
                  ...details,
                  kind: 'approval',
                  index: i,
                  status: 'succeeded',
                  result: { approvedBy },
                  next: runbook.steps[i + 1]?.id ?? null,
                },
              },
              event: {
                name: 'runbook.step.completed',
                args: [
                  { tenantId: ctx.tenantId, runId, stepId: step.id, kind: 'approval', status: 'succeeded' },
                ],
              },
            })
          : undefined;
        return { saved, announce: [approved.emit, ...(completed ? [completed.emit] : [])] };
      });
      for (const emit of announce) emit();
      if (!done) return updated;
      if (!parsed.continueRun) return updated;
      // The approver approves; the run goes on with the authority of whoever started it.
      const starter = ctx.as(run.startedBy);
      return createRunbookApi(() => starter).resume(runId, executeOptions);
    },

    cancel: async (runId, options = {}) => {
      const ctx = internals();
      const { reason: given } = validateOptions(ReasonOptionsSchema, options, 'CancelRunbookOptions');
      const store = ctx.runtime.store;
      const run = await store.runbookRuns.require(ctx.tenantId, runId);
      const runbook = await store.runbooks.require(ctx.tenantId, run.runbookId);
      const servers = await loadServers(ctx, run.serverIds);
      const target = { type: 'runbook-run', id: runId };
      const { principal } = await authorizeRunbook(ctx, runbook, servers.values(), target);
      if (isTerminal(run)) {
        throw await refused(
          ctx,
          principal,
          'runbook.cancel',
          target,
          new ConflictError(`runbook run ${runId} has ended (${run.status})`),
        );
      }
      const reason = `cancelled by ${principal.id}${given ? `: ${given.slice(0, 500)}` : ''}`;
      const opts = parseExecuteOptions({});
      const lease = await RunLease.acquire(
        ctx.runtime.store,
        `runbook-run:${ctx.tenantId}:${runId}`,
        `cancel-${randomUUID()}`,
        opts.leaseTtlMs,
        ctx.runtime.logger.child({ tenantId: ctx.tenantId, runbookRunId: runId }),
      );
      if (lease) {
        try {
          const fresh = await store.runbookRuns.require(ctx.tenantId, runId);
          if (isTerminal(fresh)) throw new ConflictError(`runbook run ${runId} has ended (${fresh.status})`);
          const execution = new RunbookExecution(
            ctx,
            opts,
            `cancel-${randomUUID()}`,
            principal,
            fresh,
            runbook,
            servers,
            lease,
          );
          await execution.cancelLeftovers(reason);
          return await execution.endCancelled(reason);
        } finally {
          await lease.release();
        }
      }
      return store.transaction(async (tx) => {
        const current = await tx.runbookRuns.require(ctx.tenantId, runId);
        if (isTerminal(current))
          throw new ConflictError(`runbook run ${runId} has ended (${current.status})`);
        const saved = await tx.runbookRuns.update(
          ctx.tenantId,
          runId,
          { cancelRequested: true, reason },
          { expectedVersion: current.version },
        );
        await ctx.runtime.audit(tx, {
          tenantId: ctx.tenantId,
          actor: { principalId: principal.id, kind: principal.kind },
          action: 'runbook.cancel',
          target,
          decision: 'allow',
          result: 'success',
          reason,
          details: { runId, runbook: run.runbookName, contentHash: run.contentHash, requested: true },
        });
        return saved;
      });
    },

    getRun: async (runId) => {
      const ctx = internals();
      const run = await ctx.runtime.store.runbookRuns.require(ctx.tenantId, runId);
      return readRunbook(run.runbookName, { type: 'runbook-run', id: runId }, async () => run);
    },

    listRuns: async (input = {}) => {
      const ctx = internals();
      const options = validateOptions(ListRunbookRunsOptionsSchema, input, 'ListRunbookRunsOptions');
      const resource = options.runbook ? runbookResource(options.runbook) : { type: 'runbook' };
      return ctx.read('script.read', [resource], { type: 'runbook-run', id: '*' }, async () => {
        const runs = await ctx.runtime.store.runbookRuns.listAll(ctx.tenantId, {
          where: {
            ...(options.runbook ? { runbookName: options.runbook } : {}),
            ...(options.status ? { status: options.status } : {}),
          },
        });
        return runs.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
      });
    },
  };
}
