import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Resource } from '../authz/evaluate.js';
import {
  type AuditInput,
  type EntityInputs,
  type Principal,
  type Runbook,
  type RunbookRun,
  type Server,
  validate,
} from '../domain/index.js';
import type { RebootServerState, RunbookStep, RunbookStepState } from '../domain/runbook.js';
import { verifiedReboot } from '../engine/reboot.js';
import { stopsOperation } from '../engine/stop.js';
import {
  AbortedError,
  CapabilityMissingError,
  ConflictError,
  type FleetwardError,
  NotFoundError,
  TransportError,
  toFleetwardError,
} from '../errors.js';
import { scanTargets } from '../inventory/scan.js';
import type { CallContext } from '../kernel/context.js';
import type { RunLease } from '../kernel/lease.js';
import { enqueue } from '../kernel/outbox.js';
import type { StoreScope } from '../ports/store.js';
import { AbortFanout } from '../util/abort-fanout.js';
import { Mutex } from '../util/mutex.js';
import { sleep } from '../util/sleep.js';
import {
  executeRollout,
  type KnownServerState,
  planWaves,
  type ServerOutcome,
  stopConditionFor,
} from './rollout.js';
import {
  cancelRun,
  type ExecuteRunOptions,
  planRun,
  resumeRun,
  runResults,
  type ScriptRunResults,
  startRun,
} from './run.js';

/** How a start, resume or approval executes a runbook run in this process. */
export const ExecuteRunbookOptionsSchema = z.strictObject({
  /** Identifies this process in the run's lease (and in the leases of its script runs). @default a random id */
  holder: z.string().min(1).max(200).optional(),
  /** How long the run's lease lasts without renewal: a crashed process's run can be resumed after this. @default 60_000 */
  leaseTtlMs: z.number().int().min(1000).default(60_000),
  /** How often the executing process looks for a cancellation made by another process. @default 1000 */
  cancelPollMs: z.number().int().min(50).max(60_000).default(1000),
  /** How often a wait step looks at the Fleet's clock. @default 1000 */
  waitPollMs: z.number().int().min(10).max(60_000).default(1000),
  /**
   * Return as soon as the run reaches a wait step that is not over, with the run `waiting` and its
   * lease released, instead of waiting in this call; `resume` later waits only what is left.
   * @default false
   */
  returnWhenWaiting: z.boolean().default(false),
});
export type ExecuteRunbookOptions = z.input<typeof ExecuteRunbookOptionsSchema> & { signal?: AbortSignal };
type ParsedOptions = z.output<typeof ExecuteRunbookOptionsSchema>;

const TERMINAL = new Set<RunbookRun['status']>(['succeeded', 'failed', 'cancelled']);
const SCRIPT_TERMINAL = new Set(['succeeded', 'failed', 'partial', 'stopped', 'cancelled']);

/** Whether a run has ended (it can be neither resumed nor cancelled). */
export const isTerminal = (run: RunbookRun) => TERMINAL.has(run.status);

export const runbookResource = (name: string): Resource => ({ type: 'runbook', id: name });
const scriptResource = (name: string): Resource => ({ type: 'script', id: name });
const serverResources = (servers: Iterable<Server>): Resource[] =>
  [...servers].map((server) => ({ type: 'server', server }));

type RunChanges = Partial<Omit<EntityInputs['runbookRuns'], 'tenantId' | 'id'>>;
type StepPatch = Partial<RunbookStepState>;

/** `steps` with step `i` changed. */
export function withStep(
  steps: readonly RunbookStepState[],
  i: number,
  patch: StepPatch,
): RunbookStepState[] {
  return steps.map((s, j) => (j === i ? { ...s, ...patch } : s));
}

/**
 * Authorizes running a runbook version on `servers`: `script.run` on every server and on every
 * script its steps run, and `patch.scan` on every server when it has a scan step. A denial is
 * audited and thrown before anything happens.
 */
export async function authorizeRunbook(
  ctx: CallContext,
  runbook: Runbook,
  servers: Iterable<Server>,
  target: NonNullable<AuditInput['target']>,
): Promise<{ principal: Principal; rule: AuditInput['rule'] }> {
  const onServers = serverResources(servers);
  const scripts = [...new Set(runbook.steps.flatMap((s) => (s.kind === 'script' ? [s.script] : [])))];
  const decided = await ctx.decide('script.run', [...onServers, ...scripts.map(scriptResource)], target);
  if (runbook.steps.some((s) => s.kind === 'scan')) await ctx.authorize('patch.scan', onServers, target);
  return decided;
}

/** Loads the servers of a run that still exist. */
export async function loadServers(ctx: CallContext, ids: readonly string[]): Promise<Map<string, Server>> {
  const servers = new Map<string, Server>();
  for (const id of ids) {
    const server = await ctx.runtime.store.servers.get(ctx.tenantId, id);
    if (server) servers.set(id, server);
  }
  return servers;
}

/** What a step handler decided. */
type StepOutcome =
  | {
      status: 'succeeded' | 'failed';
      result?: Record<string, unknown>;
      error?: { code: string; message: string };
      patch?: StepPatch;
      /**
       * Work that must commit with the step's end (the webhook's outbox message): run inside the
       * transaction that records it. Resolving an error fails the step instead, in that transaction.
       */
      inTransaction?: (
        tx: StoreScope,
        run: RunbookRun,
      ) => Promise<{ result: Record<string, unknown> } | { error: { code: string; message: string } }>;
    }
  | { pause: 'awaiting-approval' | 'waiting' };

const errorOf = (error: FleetwardError) => ({ code: error.code, message: error.message.slice(0, 4000) });

/**
 * Executes one run from wherever the store says it is, step after step, writing every step's
 * start and end (with its audit record) before going on. Shared by start, resume, approval and
 * cancel. The caller holds the run's lease.
 */
export class RunbookExecution {
  readonly #ctx: CallContext;
  readonly #opts: ParsedOptions;
  readonly #holder: string;
  readonly #actor: AuditInput['actor'];
  readonly #abort = new AbortController();
  /**
   * Set when the caller's signal fired (the process is shutting down), as opposed to a cancellation
   * asked for through the store: the run then stops where it is and stays resumable.
   */
  #detached = false;
  readonly #runbook: Runbook;
  readonly #servers: Map<string, Server>;
  readonly #lease: RunLease;
  #run: RunbookRun;

  constructor(
    ctx: CallContext,
    opts: ParsedOptions,
    holder: string,
    principal: Principal,
    run: RunbookRun,
    runbook: Runbook,
    servers: Map<string, Server>,
    lease: RunLease,
  ) {
    this.#ctx = ctx;
    this.#opts = opts;
    this.#holder = holder;
    this.#actor = { principalId: principal.id, kind: principal.kind };
    this.#run = run;
    this.#runbook = runbook;
    this.#servers = servers;
    this.#lease = lease;
  }

  #now(): string {
    return this.#ctx.runtime.clock.now().toISOString();
  }

  #base(): Record<string, unknown> {
    const run = this.#run;
    return { runId: run.id, runbook: run.runbookName, revision: run.revision, contentHash: run.contentHash };
  }

  #audit(
    action: 'runbook.run' | 'runbook.step',
    result: AuditInput['result'],
    details: Record<string, unknown>,
    reason?: string,
  ): AuditInput {
    return {
      tenantId: this.#ctx.tenantId,
      actor: this.#actor,
      action,
      target: { type: 'runbook-run', id: this.#run.id },
      decision: 'allow',
      result,
      ...(reason ? { reason: reason.slice(0, 2000) } : {}),
      ...(this.#run.ticket ? { ticket: this.#run.ticket } : {}),
      details: { ...this.#base(), ...details },
    };
  }

  /**
   * Changes the run in a transaction over what the store has now (so that approvals and
   * cancellation requests written by others are kept), with its audit records.
   */
  async #update(
    change: (current: RunbookRun, tx: StoreScope) => Promise<RunChanges> | RunChanges,
    audits: (updated: RunbookRun) => AuditInput[] = () => [],
    after?: (tx: StoreScope, updated: RunbookRun) => Promise<void>,
  ): Promise<RunbookRun> {
    const ctx = this.#ctx;
    for (let attempt = 0; ; attempt++) {
      try {
        this.#run = await ctx.runtime.store.transaction(async (tx) => {
          const current = await tx.runbookRuns.require(ctx.tenantId, this.#run.id);
          const changes = await change(current, tx);
          const updated = await tx.runbookRuns.update(ctx.tenantId, current.id, changes, {
            expectedVersion: current.version,
          });
          for (const audit of audits(updated)) await ctx.runtime.audit(tx, audit);
          await after?.(tx, updated);
          return updated;
        });
        return this.#run;
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= 3) throw error;
      }
    }
  }

  /**
   * Runs the steps from the run's current one until it ends or pauses, and resolves the run as the
   * store has it then. `resumed` says whether an earlier call had started it.
   *
   * @throws ConflictError when this process lost the run's lease (no further step starts), or when
   *   a script step's run is being executed by another process; the run stays resumable.
   */
  async execute(signal: AbortSignal | undefined, resumed: boolean): Promise<RunbookRun> {
    const ctx = this.#ctx;
    const onAbort = () => {
      this.#detached = true;
      this.#abort.abort();
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#lease.watchCancel(
      async () =>
        (await ctx.runtime.store.runbookRuns.get(ctx.tenantId, this.#run.id))?.cancelRequested === true,
      this.#opts.cancelPollMs,
      () => {
        this.#detached = false;
        this.#abort.abort();
      },
    );
    try {
      // A run looked at again while it still waits (an approval, or a wait it may return from) is
      // handed back as it is, with one record of the call: rule 1 holds for a resume that finds
      // nothing to do too.
      if (resumed && this.#stillPaused()) {
        const at = this.#runbook.steps[this.#run.currentStep]?.id ?? null;
        await ctx.runtime.audit(
          ctx.runtime.store,
          this.#audit('runbook.run', 'success', { resumed: false, paused: this.#run.status, step: at }),
        );
        return this.#run;
      }
      if (resumed) {
        const at = this.#runbook.steps[this.#run.currentStep]?.id ?? null;
        await this.#update(
          () => ({}),
          () => [this.#audit('runbook.run', 'started', { resumed: true, step: at })],
        );
      }
      ctx.runtime.events.emit('runbook.run.started', {
        tenantId: ctx.tenantId,
        runId: this.#run.id,
        runbook: this.#run.runbookName,
        contentHash: this.#run.contentHash,
        resumed,
      });
      for (;;) {
        if (!this.#lease.held) {
          throw new ConflictError(
            `this process lost the lease of runbook run ${this.#run.id}: it started no further step; resume it if no other process does`,
          );
        }
        if (this.#detached) throw this.#detachedError();
        if (this.#abort.signal.aborted || this.#run.cancelRequested) return await this.endCancelled();
        const i = this.#run.currentStep;
        const step = this.#runbook.steps[i];
        if (!step) return await this.#end();
        const outcome = await this.#step(step, i);
        if ('pause' in outcome) {
          ctx.runtime.events.emit('runbook.run.paused', {
            tenantId: ctx.tenantId,
            runId: this.#run.id,
            stepId: step.id,
            status: outcome.pause,
            ...(this.#run.steps[i]?.waitUntil ? { until: this.#run.steps[i]!.waitUntil! } : {}),
          });
          return this.#run;
        }
        await this.#finishStep(step, i, outcome);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  #detachedError(): AbortedError {
    return new AbortedError(
      `runbook run ${this.#run.id} was interrupted (its caller was aborted); it stays resumable with resume()`,
    );
  }

  /** Whether the run waits on an approval still missing, or (returning when waiting) on a wait not over. */
  #stillPaused(): boolean {
    const run = this.#run;
    const step = this.#runbook.steps[run.currentStep];
    const state = run.steps[run.currentStep];
    if (!step || state?.status !== 'running' || run.cancelRequested) return false;
    if (step.kind === 'approval') {
      return run.approvals.filter((a) => a.stepId === step.id).length < step.approvals;
    }
    return (
      step.kind === 'wait' &&
      this.#opts.returnWhenWaiting &&
      state.waitUntil !== undefined &&
      Date.parse(state.waitUntil) > this.#ctx.runtime.clock.now().getTime()
    );
  }

  /** Marks a step as started (again, when resumed), with its audit record. */
  async #enter(step: RunbookStep, i: number): Promise<void> {
    const ctx = this.#ctx;
    const before = this.#run.steps[i]!;
    const resumed = before.status === 'running';
    const status: RunbookRun['status'] =
      step.kind === 'approval' ? 'awaiting-approval' : step.kind === 'wait' ? 'waiting' : 'running';
    const waitUntil =
      step.kind === 'wait' && !before.waitUntil
        ? new Date(ctx.runtime.clock.now().getTime() + step.durationSeconds * 1000).toISOString()
        : undefined;
    await this.#update(
      (current) => ({
        status,
        steps: withStep(current.steps, i, {
          status: 'running',
          attempt: current.steps[i]!.attempt + 1,
          startedAt: current.steps[i]!.startedAt ?? this.#now(),
          ...(waitUntil ? { waitUntil } : {}),
        }),
      }),
      (updated) => [
        this.#audit('runbook.step', 'started', {
          stepId: step.id,
          kind: step.kind,
          index: i,
          attempt: updated.steps[i]!.attempt,
          resumed,
          ...(waitUntil ? { waitUntil } : {}),
        }),
      ],
    );
    ctx.runtime.events.emit('runbook.step.started', {
      tenantId: ctx.tenantId,
      runId: this.#run.id,
      stepId: step.id,
      kind: step.kind,
      index: i,
      attempt: this.#run.steps[i]!.attempt,
    });
  }

  async #step(step: RunbookStep, i: number): Promise<StepOutcome> {
    const state = this.#run.steps[i]!;
    // An approval step that is already waiting is only looked at again: nothing was interrupted.
    if (!(step.kind === 'approval' && state.status === 'running')) await this.#enter(step, i);
    try {
      switch (step.kind) {
        case 'script':
          return await this.#script(step, i);
        case 'scan':
          return await this.#scan(step);
        case 'reboot':
          return await this.#reboot(step, i);
        case 'wait':
          return await this.#wait(step, i);
        case 'approval':
          return await this.#approval(step);
        case 'webhook':
          return this.#webhook(step);
      }
    } catch (thrown) {
      // A conflict leaves the step running for a resume (another process has its script run, or
      // the lease is gone), and so does a shutdown of this process; anything else is the step's
      // failure.
      if (thrown instanceof ConflictError) throw thrown;
      if (this.#detached && thrown instanceof AbortedError) throw thrown;
      return { status: 'failed', error: errorOf(toFleetwardError(thrown, `step ${step.id}`)) };
    }
  }

  /**
   * The script run of a script step: planned once (its id kept with the step), then started,
   * resumed after a crash, or read when it has ended already.
   */
  async #script(step: Extract<RunbookStep, { kind: 'script' }>, i: number): Promise<StepOutcome> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    const state = this.#run.steps[i]!;
    const pinned = state.script;
    if (!pinned) throw new NotFoundError('pinned script version of step', step.id);
    let scriptRun = state.scriptRunId
      ? await store.scriptRuns.get(ctx.tenantId, state.scriptRunId)
      : undefined;
    if (!scriptRun) {
      scriptRun = await planRun(ctx, {
        script: pinned.name,
        version: pinned.contentHash,
        params: state.params ?? {},
        targets: { serverIds: this.#run.serverIds },
        rollout: step.rollout,
        timeoutMs: step.timeoutMs,
        ...(this.#run.ticket ? { ticket: this.#run.ticket } : {}),
      });
      const id = scriptRun.id;
      await this.#update((current) => ({ steps: withStep(current.steps, i, { scriptRunId: id }) }));
    }
    const options: ExecuteRunOptions = {
      holder: this.#holder,
      leaseTtlMs: this.#opts.leaseTtlMs,
      cancelPollMs: this.#opts.cancelPollMs,
      signal: this.#abort.signal,
    };
    let results: ScriptRunResults;
    if (scriptRun.status === 'awaiting-start') results = await startRun(ctx, scriptRun.id, options);
    else if (SCRIPT_TERMINAL.has(scriptRun.status)) results = await runResults(ctx, scriptRun.id);
    else results = await resumeRun(ctx, scriptRun.id, options);
    const run = results.run;
    const result = {
      scriptRunId: run.id,
      script: run.scriptName,
      revision: run.revision,
      contentHash: run.contentHash,
      status: run.status,
      counts: results.counts,
    };
    if (run.status === 'succeeded') return { status: 'succeeded', result };
    const hostKey = results.servers.some((s) =>
      stopsOperation(s.error, { id: s.serverId, name: s.serverId }),
    );
    return {
      status: 'failed',
      result,
      error: {
        code: hostKey ? 'HOST_KEY_MISMATCH' : 'SCRIPT_RUN_FAILED',
        message:
          `script run ${run.id} of ${run.scriptName} ended ${run.status}${run.reason ? `: ${run.reason}` : ''}`.slice(
            0,
            4000,
          ),
      },
    };
  }

  /** A fleet scan of the run's servers: read-only, so a resumed step simply scans again. */
  async #scan(step: Extract<RunbookStep, { kind: 'scan' }>): Promise<StepOutcome> {
    const outcome = await scanTargets(
      this.#ctx,
      { serverIds: this.#run.serverIds },
      { signal: this.#abort.signal, timeoutMs: step.timeoutMs },
    );
    const failed = outcome.results.filter((r) => r.status === 'failed');
    const result = {
      jobId: outcome.job.id,
      status: outcome.job.status,
      total: outcome.results.length,
      succeeded: outcome.results.length - failed.length,
      failed: failed.length,
      failedServers: failed.slice(0, 100).map((r) => r.serverId),
      pendingPatches: outcome.results.reduce((n, r) => n + r.patches.length, 0),
      rebootRequired: outcome.results
        .filter((r) => r.rebootRequired)
        .slice(0, 100)
        .map((r) => r.serverId),
    };
    const patch = { jobId: outcome.job.id };
    // A scan stopped by a changed host key stops the runbook too, whatever `failWhen` tolerates.
    const hostKey = failed.find((r) => stopsOperation(r.error, { id: r.serverId, name: r.serverId }));
    if (hostKey && !this.#abort.signal.aborted) {
      return {
        status: 'failed',
        result,
        patch,
        error: {
          code: 'HOST_KEY_MISMATCH',
          message: (outcome.job.reason ?? hostKey.error!.message).slice(0, 4000),
        },
      };
    }
    const fails =
      this.#abort.signal.aborted ||
      (step.failWhen === 'any' && failed.length > 0) ||
      (step.failWhen === 'all' && failed.length === outcome.results.length);
    if (!fails) return { status: 'succeeded', result, patch };
    const first = failed[0];
    return {
      status: 'failed',
      result,
      patch,
      error: {
        code: this.#abort.signal.aborted ? 'ABORTED' : 'SCAN_FAILED',
        message: this.#abort.signal.aborted
          ? 'the scan was cancelled'
          : `${failed.length} of ${outcome.results.length} server(s) could not be scanned${
              first ? `, e.g. ${first.serverId}: ${first.error?.message ?? 'failed'}` : ''
            }`.slice(0, 4000),
      },
    };
  }

  /**
   * Reboots the servers as the step's rollout says. Each server's progress (boot id before, reboot
   * requested, boot id after) is written before the next phase, so a resumed step re-checks the
   * boot id rather than rebooting a server twice.
   */
  async #reboot(step: Extract<RunbookStep, { kind: 'reboot' }>, i: number): Promise<StepOutcome> {
    const ctx = this.#ctx;
    const ids = this.#run.serverIds;
    const mutex = new Mutex();
    const save = (serverId: string, patch: Partial<RebootServerState>) =>
      mutex.run(() =>
        this.#update((current) => {
          const servers = { ...(current.steps[i]!.servers ?? {}) };
          servers[serverId] = { ...(servers[serverId] ?? { status: 'pending' }), ...patch };
          return { steps: withStep(current.steps, i, { servers }) };
        }),
      );
    if (!this.#run.steps[i]!.servers) {
      const servers = Object.fromEntries(ids.map((id) => [id, { status: 'pending' as const }]));
      await this.#update((current) => ({ steps: withStep(current.steps, i, { servers }) }));
    }
    const serverState = (id: string) => this.#run.steps[i]!.servers?.[id] ?? { status: 'pending' as const };
    const known = new Map<string, KnownServerState>(
      ids.map((id) => {
        const s = serverState(id);
        // A server that was mid-reboot when the process died is taken up again from its progress.
        const state = s.status === 'running' ? 'pending' : s.status;
        return [id, { state, ...(s.countsAgainstBudget === false ? { countsAgainstBudget: false } : {}) }];
      }),
    );
    const present = ids.flatMap((id) => {
      const server = this.#servers.get(id);
      return server ? [server] : [];
    });
    const waves = planWaves(step.rollout.waves, present);
    const missing = ids.filter((id) => !this.#servers.has(id));
    if (missing.length) waves.push({ name: 'missing', serverIds: missing });
    const stopCondition = stopConditionFor(step.rollout, ids.length);
    // Each server's reboot gets a signal of its own: the run's keeps one listener at any scale.
    const serverSignals = new AbortFanout(this.#abort.signal);

    const runServer = async (serverId: string): Promise<ServerOutcome> => {
      const server = this.#servers.get(serverId);
      await save(serverId, { status: 'running' });
      try {
        if (!server) throw new CapabilityMissingError(`server ${serverId} no longer exists in the inventory`);
        const progress = serverState(serverId);
        const done = await serverSignals.run((signal) =>
          verifiedReboot({
            adapter: ctx.runtime.adapterFor(server),
            server,
            progress: { bootIdBefore: progress.bootIdBefore, rebootRequestedAt: progress.rebootRequestedAt },
            record: (p) => save(serverId, p).then(() => undefined),
            timeoutMs: step.timeoutMs,
            pollIntervalMs: step.pollIntervalMs,
            now: () => ctx.runtime.clock.now(),
            signal,
          }),
        );
        await save(serverId, {
          status: 'succeeded',
          bootIdAfter: done.bootIdAfter,
          countsAgainstBudget: false,
        });
        return { state: 'succeeded', countsAgainstBudget: false };
      } catch (thrown) {
        const error = toFleetwardError(thrown, `rebooting ${server?.name ?? serverId}`);
        if (error instanceof AbortedError) {
          await save(serverId, { status: 'cancelled', error: errorOf(error) });
          return { state: 'cancelled', countsAgainstBudget: false };
        }
        // Unreachable before anything was asked of it: the budget's `unreachableCountsAsError` decides.
        const unreachable = error instanceof TransportError && !serverState(serverId).rebootRequestedAt;
        const countsAgainstBudget = !(unreachable && !step.rollout.unreachableCountsAsError);
        await save(serverId, { status: 'failed', error: errorOf(error), countsAgainstBudget });
        const stop = stopsOperation(error, server ?? { id: serverId, name: serverId });
        return {
          state: 'failed',
          countsAgainstBudget,
          ...(stop ? { stopRollout: stop.reason } : {}),
        };
      }
    };

    const outcome = await executeRollout({
      waves,
      stopCondition,
      maxConcurrency: step.rollout.maxConcurrency,
      states: known,
      signal: this.#abort.signal,
      checkStop: () => (this.#lease.held ? undefined : 'this process lost the run’s lease'),
      runServer,
    }).finally(() => serverSignals.close());
    for (const id of outcome.untouched) {
      await save(id, {
        status: outcome.status === 'cancelled' ? 'cancelled' : 'not-started',
        error: { code: 'NOT_STARTED', message: `not rebooted: ${outcome.reason ?? 'the step stopped'}` },
      });
    }
    const servers = this.#run.steps[i]!.servers ?? {};
    const result = {
      status: outcome.status,
      counts: outcome.counts,
      bootIds: Object.fromEntries(
        Object.entries(servers)
          .slice(0, 1000)
          .map(([id, s]) => [id, { before: s.bootIdBefore ?? null, after: s.bootIdAfter ?? null }]),
      ),
    };
    if (outcome.status === 'succeeded') return { status: 'succeeded', result };
    const failed = Object.entries(servers).filter(([, s]) => s.status === 'failed');
    const hostKey = failed.some(([id, s]) => stopsOperation(s.error, { id, name: id }));
    return {
      status: 'failed',
      result,
      error: {
        code: hostKey ? 'HOST_KEY_MISMATCH' : 'REBOOT_FAILED',
        message: `${failed.length} server(s) did not reboot as verified${
          failed[0] ? `, e.g. ${failed[0][0]}: ${failed[0][1].error?.message ?? 'failed'}` : ''
        }${outcome.reason ? `; ${outcome.reason}` : ''}`.slice(0, 4000),
      },
    };
  }

  /** Waits until the step's persisted deadline, on the Fleet's clock. */
  async #wait(step: Extract<RunbookStep, { kind: 'wait' }>, i: number): Promise<StepOutcome> {
    const ctx = this.#ctx;
    const until = this.#run.steps[i]!.waitUntil!;
    const deadline = Date.parse(until);
    const remaining = () => deadline - ctx.runtime.clock.now().getTime();
    if (remaining() > 0) {
      ctx.runtime.events.emit('runbook.step.waiting', {
        tenantId: ctx.tenantId,
        runId: this.#run.id,
        stepId: step.id,
        until,
        remainingMs: remaining(),
      });
    }
    for (;;) {
      const left = remaining();
      if (left <= 0) break;
      if (this.#opts.returnWhenWaiting) return { pause: 'waiting' };
      try {
        await sleep(Math.min(left, this.#opts.waitPollMs), this.#abort.signal);
      } catch {
        // Shutting down: the deadline is in the store, so a resumed run waits only what is left.
        if (this.#detached) throw this.#detachedError();
        return { status: 'failed', error: { code: 'ABORTED', message: 'the wait was cancelled' } };
      }
      if (!this.#lease.held) {
        throw new ConflictError(
          `this process lost the lease of runbook run ${this.#run.id} while waiting at step ${step.id}; resume it if no other process does`,
        );
      }
    }
    return { status: 'succeeded', result: { waitUntil: until, durationSeconds: step.durationSeconds } };
  }

  /** Succeeds once enough approvals are recorded (see `approveStep`); pauses the run until then. */
  async #approval(step: Extract<RunbookStep, { kind: 'approval' }>): Promise<StepOutcome> {
    const approvals = this.#run.approvals.filter((a) => a.stepId === step.id);
    if (approvals.length >= step.approvals) {
      return { status: 'succeeded', result: { approvedBy: approvals.map((a) => a.principalId) } };
    }
    if (this.#run.status !== 'awaiting-approval') {
      await this.#update(() => ({ status: 'awaiting-approval' }));
    }
    return { pause: 'awaiting-approval' };
  }

  /** One outbox message for the endpoint, written by the transaction that ends the step. */
  #webhook(step: Extract<RunbookStep, { kind: 'webhook' }>): StepOutcome {
    const ctx = this.#ctx;
    return {
      status: 'succeeded',
      inTransaction: async (tx, run) => {
        const endpoint = await tx.webhookEndpoints.get(ctx.tenantId, step.endpointId);
        if (!endpoint) {
          return {
            error: { code: 'NOT_FOUND', message: `webhook endpoint ${step.endpointId} does not exist` },
          };
        }
        if (endpoint.disabled) {
          return {
            error: {
              code: 'ENDPOINT_DISABLED',
              message: `webhook endpoint ${endpoint.id} is disabled${endpoint.disabledReason ? `: ${endpoint.disabledReason}` : ''}`,
            },
          };
        }
        const now = ctx.runtime.clock.now();
        const message = await enqueue(tx, {
          tenantId: ctx.tenantId,
          channel: 'webhook',
          destinationId: endpoint.id,
          eventType: step.event,
          payload: {
            tenantId: ctx.tenantId,
            runId: run.id,
            runbook: { name: run.runbookName, revision: run.revision, contentHash: run.contentHash },
            step: { id: step.id, ...(step.title ? { title: step.title } : {}) },
            ...(step.message ? { message: step.message } : {}),
            startedBy: run.startedBy,
            ...(run.ticket ? { ticket: run.ticket } : {}),
            params: run.params,
            serverIds: run.serverIds.slice(0, 1000),
            steps: run.steps.map((s) => ({ stepId: s.stepId, kind: s.kind, status: s.status })),
            at: now.toISOString(),
          },
          nextAttemptAt: now,
        });
        return {
          result: {
            endpointId: endpoint.id,
            event: step.event,
            outboxId: message.id,
            deliveryId: message.deliveryId,
          },
        };
      },
    };
  }

  /** Records a step's end and where the run goes next, with the step's audit record. */
  async #finishStep(
    step: RunbookStep,
    i: number,
    outcome: Extract<StepOutcome, { status: string }>,
  ): Promise<void> {
    const ctx = this.#ctx;
    let ended: RunbookStepState | undefined;
    await this.#update(
      async (current, tx) => {
        let status = outcome.status;
        let result = outcome.result;
        let error = outcome.error;
        if (outcome.inTransaction) {
          const done = await outcome.inTransaction(tx, current);
          if ('error' in done) {
            status = 'failed';
            error = done.error;
          } else result = { ...result, ...done.result };
        }
        let steps = withStep(current.steps, i, {
          ...outcome.patch,
          status,
          finishedAt: this.#now(),
          ...(result ? { result } : {}),
          ...(error ? { error } : {}),
        });
        let next = i + 1;
        if (status === 'failed') {
          // A changed host key stops the runbook whatever the step says: rule 6 of the design.
          const policy = error?.code === 'HOST_KEY_MISMATCH' ? 'stop' : step.onFailure;
          const applied = typeof policy === 'object' ? 'goto' : policy;
          steps = withStep(steps, i, { onFailureApplied: applied });
          const resumeAt =
            policy === 'stop'
              ? steps.length
              : policy === 'continue'
                ? i + 1
                : this.#runbook.steps.findIndex((s) => s.id === policy.goto);
          for (let j = i + 1; j < resumeAt; j++) {
            if (steps[j]!.status === 'pending') steps = withStep(steps, j, { status: 'skipped' });
          }
          next = resumeAt;
        }
        ended = steps[i];
        return { steps, currentStep: next, status: 'running' };
      },
      (updated) => {
        const s = updated.steps[i]!;
        return [
          this.#audit(
            'runbook.step',
            s.status === 'succeeded' ? 'success' : 'failure',
            {
              stepId: step.id,
              kind: step.kind,
              index: i,
              status: s.status,
              ...(s.onFailureApplied ? { onFailure: s.onFailureApplied } : {}),
              ...(s.error ? { code: s.error.code } : {}),
              ...(s.result ? { result: s.result } : {}),
              next: this.#runbook.steps[updated.currentStep]?.id ?? null,
            },
            s.error?.message,
          ),
        ];
      },
    );
    const s = ended!;
    ctx.runtime.events.emit('runbook.step.completed', {
      tenantId: ctx.tenantId,
      runId: this.#run.id,
      stepId: step.id,
      kind: step.kind,
      status: s.status === 'succeeded' ? 'succeeded' : 'failed',
      ...(s.error ? { error: s.error } : {}),
    });
  }

  /** Ends the run after its last step: failed when a step failed and was not tolerated. */
  async #end(): Promise<RunbookRun> {
    return this.#finishRun(undefined);
  }

  /**
   * Ends the run as cancelled: the step under way failed as cancelled, later ones skipped. Keeps
   * the reason `cancel` gave (who cancelled, and why).
   */
  async endCancelled(reason?: string): Promise<RunbookRun> {
    return this.#finishRun(reason ?? 'cancelled');
  }

  async #finishRun(cancelReason: string | undefined): Promise<RunbookRun> {
    const ctx = this.#ctx;
    let reasonOut: string | undefined;
    let announce = () => {};
    const run = await this.#update(
      (current) => {
        let steps = current.steps;
        const cancelled = cancelReason !== undefined;
        let reason: string | undefined;
        if (cancelled) {
          reason = current.reason?.startsWith('cancelled by ') ? current.reason : cancelReason;
          steps = steps.map((s) =>
            s.status === 'running'
              ? {
                  ...s,
                  status: 'failed' as const,
                  finishedAt: this.#now(),
                  error: { code: 'CANCELLED', message: `the run was cancelled: ${reason}`.slice(0, 4000) },
                }
              : s.status === 'pending'
                ? { ...s, status: 'skipped' as const }
                : s,
          );
        }
        const failed = steps.filter((s) => s.status === 'failed' && s.onFailureApplied !== 'continue');
        const status: RunbookRun['status'] = cancelled ? 'cancelled' : failed.length ? 'failed' : 'succeeded';
        if (!cancelled && failed[0]) {
          reason = `step ${failed[0].stepId} failed: ${failed[0].error?.message ?? 'failed'}`;
        }
        reasonOut = reason;
        return {
          status,
          steps,
          finishedAt: this.#now(),
          ...(reason ? { reason: reason.slice(0, 2000) } : {}),
        };
      },
      () => [],
      async (tx, updated) => {
        const recorded = await ctx.record(tx, {
          audit: this.#audit(
            'runbook.run',
            updated.status === 'succeeded' ? 'success' : 'failure',
            {
              status: updated.status,
              steps: updated.steps.map((s) => ({ stepId: s.stepId, status: s.status })),
              failed: updated.steps.filter((s) => s.status === 'failed').map((s) => s.stepId),
              tolerated: updated.steps
                .filter((s) => s.status === 'failed' && s.onFailureApplied === 'continue')
                .map((s) => s.stepId),
              skipped: updated.steps.filter((s) => s.status === 'skipped').map((s) => s.stepId),
            },
            updated.reason,
          ),
          outbox: {
            eventType: 'runbook.run.completed',
            payload: {
              tenantId: ctx.tenantId,
              ...this.#base(),
              status: updated.status,
              ...(updated.reason ? { reason: updated.reason } : {}),
              startedBy: updated.startedBy,
              ...(updated.ticket ? { ticket: updated.ticket } : {}),
              steps: updated.steps.map((s) => ({ stepId: s.stepId, status: s.status })),
            },
          },
          event: {
            name: 'runbook.run.completed',
            args: [
              {
                tenantId: ctx.tenantId,
                runId: updated.id,
                runbook: updated.runbookName,
                contentHash: updated.contentHash,
                status: updated.status,
                ...(reasonOut ? { reason: reasonOut } : {}),
              },
            ],
          },
        });
        announce = recorded.emit;
      },
    );
    announce();
    return run;
  }

  /**
   * Cancels the script run of the step under way, when one was left behind by a process that is
   * gone; its own cancel deals with a script run still executing somewhere.
   */
  async cancelLeftovers(reason: string): Promise<void> {
    const ctx = this.#ctx;
    const state = this.#run.steps[this.#run.currentStep];
    if (state?.status !== 'running' || !state.scriptRunId) return;
    const scriptRun = await ctx.runtime.store.scriptRuns.get(ctx.tenantId, state.scriptRunId);
    if (!scriptRun || SCRIPT_TERMINAL.has(scriptRun.status)) return;
    await cancelRun(ctx, scriptRun.id, { reason });
  }
}

/** A random lease holder for this process. */
export const newHolder = () => `${process.pid}-${randomUUID()}`;

/** Parses execution options. */
export const parseExecuteOptions = (options: Omit<ExecuteRunbookOptions, 'signal'>): ParsedOptions =>
  validate(ExecuteRunbookOptionsSchema, options, 'ExecuteRunbookOptions');
