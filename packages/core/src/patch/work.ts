import type { AuditInput, Job, PatchPlan, PatchPolicy, TaskResult } from '../domain/index.js';
import { validate } from '../domain/index.js';
import { ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import { type CallContext, createCallContext } from '../kernel/context.js';
import { jobLogger, runningElsewhere, taskId as taskIdOf } from '../kernel/jobs.js';
import type { Runtime } from '../kernel/runtime.js';
import type {
  ClaimedServer,
  RolloutEnd,
  RolloutRef,
  RolloutServerOutcome,
  RolloutWork,
  RunningElsewhere,
  UnrecordedResult,
} from '../ports/rollouts.js';
import {
  announceWave,
  countTasks,
  ExecuteOptionsSchema,
  endByCounts,
  markNotStarted,
  recordRunEnd,
  type ServerEnd,
  type ServerEnding,
  ServerPatcher,
  serverWorkOptions,
  TaskTakenOver,
  WINDOW_CLOSING,
} from './execute.js';
import { canStartWithin } from './window.js';

/** Runs a worker keeps loaded (plan, policy, job, requester), the newest first. */
const LOADED_RUNS = 64;

/** A patch run as a worker sees it. */
interface LoadedRun {
  ctx: CallContext;
  plan: PatchPlan;
  policy: PatchPolicy;
  job: Job;
  actor: AuditInput['actor'];
  /** The tasks this worker works on, as last written; one patcher per worker id. */
  patchers: Map<string, ServerPatcher>;
}

/** A patched server whose end is not written yet. */
interface PatchedServer {
  run: LoadedRun;
  patcher: ServerPatcher;
  serverName: string;
  /** Undefined when another worker took the task over while this one worked on it. */
  end?: ServerEnd;
}

/** How a task that ended counts in its rollout. */
function outcomeOf(task: TaskResult): RolloutServerOutcome {
  const code = task.error ? { code: task.error.code } : {};
  switch (task.status) {
    case 'succeeded':
      return { state: 'succeeded', countsAgainstBudget: false };
    case 'skipped':
      return { state: 'skipped', countsAgainstBudget: false, ...code };
    case 'cancelled':
      return { state: 'cancelled', countsAgainstBudget: false, ...code };
    default:
      return {
        state: 'failed',
        countsAgainstBudget: task.details?.['countsAgainstBudget'] !== false,
        ...code,
      };
  }
}

/**
 * The worker side of patch runs ({@link RolloutWork}): the run is the plan (`runId` is the plan's
 * id), its job the plan's job. Each server is patched step by step as in one process, every step
 * written before and after it runs; a task left running by a worker that died is taken over by
 * the next worker, which continues from the last step done (as a resumed run does in one process),
 * since a patch step is safe to carry on: the install pins exact versions, a reboot is proven by a
 * new boot id. A worker's writes check that the task is still its own, so a worker taken for dead
 * stops at its next step instead of racing the worker that took over.
 */
export function createPatchRolloutWork(runtime: Runtime): RolloutWork {
  const loaded = new Map<string, Promise<LoadedRun>>();
  const claims = new WeakMap<ClaimedServer, { run: LoadedRun; patcher: ServerPatcher }>();
  const unrecorded = new WeakMap<UnrecordedResult, PatchedServer>();

  const load = async (ref: RolloutRef): Promise<LoadedRun> => {
    const { tenantId, runId: planId } = ref;
    const plan = await runtime.store.patchPlans.require(tenantId, planId);
    if (!plan.jobId) {
      throw new ConflictError(`plan ${planId} has no job: it was never executed`);
    }
    const job = await runtime.store.jobs.require(tenantId, plan.jobId);
    const policy = await runtime.store.patchPolicies.require(tenantId, plan.policyId);
    const ctx = createCallContext(runtime, { tenantId, principalId: job.requestedBy });
    const principal = await ctx.principal();
    return {
      ctx,
      plan,
      policy,
      job,
      actor: { principalId: job.requestedBy, kind: principal?.kind ?? 'human' },
      patchers: new Map(),
    };
  };
  const cached = (ref: RolloutRef): Promise<LoadedRun> => {
    const key = `${ref.tenantId}\u0000${ref.runId}`;
    let found = loaded.get(key);
    if (!found) {
      found = load(ref);
      found.catch(() => loaded.delete(key));
      if (loaded.size >= LOADED_RUNS) loaded.delete(loaded.keys().next().value as string);
      loaded.set(key, found);
    }
    return found;
  };
  const patcherOf = (run: LoadedRun, workerId: string, task: TaskResult): ServerPatcher => {
    let patcher = run.patchers.get(workerId);
    if (!patcher) {
      const parsed = ExecuteOptionsSchema.safeParse(task.details?.['execution'] ?? {});
      const opts = serverWorkOptions(
        parsed.success ? parsed.data : validate(ExecuteOptionsSchema, {}, 'ExecuteOptions'),
      );
      patcher = new ServerPatcher(
        run.ctx,
        { plan: run.plan, policy: run.policy, job: run.job, tasks: new Map() },
        opts,
        jobLogger(runtime.logger, run.job).child({ workerId }),
        { actor: run.actor },
        workerId,
      );
      run.patchers.set(workerId, patcher);
    }
    return patcher;
  };
  const expectedServerMs = (task: TaskResult): number => {
    const parsed = ExecuteOptionsSchema.safeParse(task.details?.['execution'] ?? {});
    return parsed.success ? parsed.data.expectedServerMs : 900_000;
  };

  return {
    async claim(ref, serverIds, options) {
      const run = await cached(ref);
      const { tenantId } = ref;
      const window = run.policy.window;
      for (let attempt = 0; ; attempt++) {
        try {
          const claimed: Array<{ task: TaskResult } | RolloutServerOutcome | RunningElsewhere> =
            await runtime.store.transaction(async (tx) => {
              const answers: Array<{ task: TaskResult } | RolloutServerOutcome | RunningElsewhere> = [];
              for (const serverId of serverIds) {
                const task = await tx.taskResults.require(tenantId, taskIdOf(run.job.id, serverId));
                const elsewhere = await runningElsewhere(task, options.workerId, options.ownerAlive);
                if (elsewhere) {
                  answers.push(elsewhere);
                  continue;
                }
                if (task.status !== 'pending' && task.status !== 'running') {
                  answers.push(outcomeOf(task));
                  continue;
                }
                if (
                  task.status === 'pending' &&
                  window &&
                  !canStartWithin(window, runtime.clock.now(), expectedServerMs(task))
                ) {
                  // Not touched: the run stops starting servers; its end records this one as not started.
                  answers.push({ state: 'skipped', countsAgainstBudget: false, stopRollout: WINDOW_CLOSING });
                  continue;
                }
                // Pending, or left running by a worker (or process) that is gone: patched from its
                // last step done, under this worker.
                const running = await tx.taskResults.update(
                  tenantId,
                  task.id,
                  {
                    status: 'running',
                    attempt: task.attempt + 1,
                    ...(task.status === 'pending' ? { startedAt: runtime.clock.now().toISOString() } : {}),
                    details: { ...task.details, workerId: options.workerId },
                  },
                  { expectedVersion: task.version },
                );
                answers.push({ task: running });
              }
              return answers;
            });
          return claimed.map((answer, i) => {
            if (!('task' in answer)) return answer;
            const patcher = patcherOf(run, options.workerId, answer.task);
            patcher.tasks.set(answer.task.serverId, answer.task);
            const handle: ClaimedServer = { claimed: true, ref, serverId: serverIds[i]! };
            claims.set(handle, { run, patcher });
            return handle;
          });
        } catch (error) {
          if (!(error instanceof ConflictError) || attempt >= 4) throw error;
        }
      }
    },

    async carryOut(handle) {
      // The signal is not passed on: a package manager is never killed mid-transaction; a
      // cancelled or stopping worker's patch finishes its server (or is taken over from its last step).
      const entry = claims.get(handle);
      if (!entry) {
        throw new ValidationError('ClaimedServer', [
          { path: [], message: 'was not made by this RolloutWork (or is not a result of claim)' },
        ]);
      }
      claims.delete(handle);
      const { run, patcher } = entry;
      const result: PatchedServer = { run, patcher, serverName: handle.serverId };
      try {
        const server = await runtime.store.servers.get(run.ctx.tenantId, handle.serverId);
        if (server) result.serverName = server.name;
        result.end = await patcher.work(handle.serverId, server);
      } catch (error) {
        if (!(error instanceof TaskTakenOver)) {
          result.end = {
            status: 'failed',
            failure: `${toFleetwardError(error, `patching ${result.serverName}`).message}`,
          };
        }
      }
      const out: UnrecordedResult = { unrecorded: true, ref: handle.ref, serverId: handle.serverId };
      unrecorded.set(out, result);
      return out;
    },

    async record(results, workerId) {
      const patched = results.map((r, i) => {
        const found = unrecorded.get(r);
        if (!found) {
          throw new ValidationError('UnrecordedResult', [
            { path: [i], message: 'was not made by this RolloutWork (or is not a result of carryOut)' },
          ]);
        }
        return found;
      });
      const byRun = new Map<LoadedRun, number[]>();
      for (const [i, p] of patched.entries()) byRun.set(p.run, [...(byRun.get(p.run) ?? []), i]);
      const outcomes = new Array<RolloutServerOutcome | RunningElsewhere>(results.length);
      for (const [run, indexes] of byRun) {
        const { tenantId } = run.ctx;
        for (let attempt = 0; ; attempt++) {
          try {
            const written = await runtime.store.transaction(async (tx) => {
              const out: Array<{ outcome: RolloutServerOutcome | RunningElsewhere; ending?: ServerEnding }> =
                [];
              for (const i of indexes) {
                const p = patched[i]!;
                const serverId = results[i]!.serverId;
                const current = await tx.taskResults.require(tenantId, taskIdOf(run.job.id, serverId));
                const owner = current.details?.['workerId'];
                if (current.status === 'running' && owner !== workerId) {
                  // Taken over by a worker that took this one for dead: it patches and reports the server.
                  out.push({ outcome: { runningOn: String(owner) } });
                  continue;
                }
                if (current.status !== 'running' || !p.end) {
                  out.push({ outcome: outcomeOf(current) });
                  continue;
                }
                const ending = p.patcher.ending(serverId, p.serverName, current, p.end);
                const saved = await tx.taskResults.update(tenantId, current.id, ending.changes as never, {
                  expectedVersion: current.version,
                });
                if (ending.audit) await runtime.audit(tx, ending.audit);
                p.patcher.tasks.set(serverId, saved);
                out.push({
                  outcome: {
                    ...outcomeOf(saved),
                    ...(ending.hostKeyStop ? { stopRollout: ending.hostKeyStop } : {}),
                  },
                  ending,
                });
              }
              return out;
            });
            for (const [k, i] of indexes.entries()) {
              const { outcome, ending } = written[k]!;
              outcomes[i] = outcome;
              const p = patched[i]!;
              if (ending && p.end) {
                p.patcher.announce(results[i]!.serverId, p.end, ending);
                p.patcher.tasks.delete(results[i]!.serverId);
              }
            }
            break;
          } catch (error) {
            if (!(error instanceof ConflictError) || attempt >= 4) throw error;
          }
        }
      }
      return outcomes;
    },

    async finish(ref, end: RolloutEnd) {
      loaded.delete(`${ref.tenantId}\u0000${ref.runId}`);
      const run = await load(ref);
      // A redelivered end, or a run that ended another way.
      if (run.job.status !== 'running') return;
      const tasks = new Map(
        (await runtime.store.taskResults.listAll(ref.tenantId, { where: { jobId: run.job.id } })).map((t) => [
          t.serverId,
          t,
        ]),
      );
      const log = jobLogger(runtime.logger, run.job);
      const patcher = new ServerPatcher(
        run.ctx,
        { plan: run.plan, policy: run.policy, job: run.job, tasks },
        serverWorkOptions(validate(ExecuteOptionsSchema, {}, 'ExecuteOptions')),
        log,
        { actor: run.actor },
      );
      const hostKey = [...tasks.values()].find(
        (t) => t.status === 'failed' && t.error?.code === 'HOST_KEY_MISMATCH',
      );
      let outcome: { status: Job['status']; reason?: string };
      if (end.status === 'cancelled') {
        await markNotStarted(patcher, 'cancelled', 'not started: the run was cancelled');
        outcome = { status: 'cancelled', reason: 'cancelled by the caller' };
      } else if (hostKey) {
        // Not a pause, whatever the budget says: a server that may be an impostor needs a person first.
        const server = await runtime.store.servers.get(ref.tenantId, hostKey.serverId);
        const reason = `the host key of ${server?.name ?? hostKey.serverId} changed (at ${hostKey.step ?? 'unknown'}); no other server is started`;
        await markNotStarted(patcher, 'skipped', `not started: ${reason}`);
        outcome = { status: 'stopped', reason };
      } else if (end.status === 'paused') {
        // The untouched servers stay pending for a resume that acknowledges the failures.
        outcome = {
          status: 'pending',
          reason: `${end.reason ?? 'paused'}; execute again with acknowledgeFailures to continue`,
        };
      } else if (end.status === 'stopped') {
        await markNotStarted(patcher, 'skipped', `not started: ${end.reason ?? 'the run was stopped'}`);
        outcome = { status: 'stopped', reason: end.reason ?? 'stopped' };
      } else {
        // Servers the rollout never reached (none, unless it was stopped) are not started.
        await markNotStarted(patcher, 'skipped', 'not started');
        outcome = endByCounts(countTasks(tasks.values()));
      }
      await recordRunEnd(run.ctx, {
        plan: run.plan,
        job: run.job,
        actor: run.actor,
        outcome,
        counts: countTasks(tasks.values()),
        log,
      });
      if (outcome.status === 'stopped' || outcome.status === 'pending') {
        patcher.escalate({ kind: 'run-stopped', reason: outcome.reason ?? 'stopped' });
      }
    },

    async cancelRequested() {
      // A patch run is cancelled through the queue (`RolloutQueue.cancel`), by its starting call's signal.
      return false;
    },

    async waveStarted(ref, start) {
      const run = await cached(ref);
      announceWave(run.ctx, run.plan, run.job.id, start);
    },
  };
}
