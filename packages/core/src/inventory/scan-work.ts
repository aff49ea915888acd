import type { AuditInput, ScanResult, ScanResultInput, Server, TaskResult } from '../domain/index.js';
import { scanServer } from '../engine/scan.js';
import { stopsOperation } from '../engine/stop.js';
import { ConflictError, type FleetwardError, toFleetwardError, ValidationError } from '../errors.js';
import { type CallContext, createCallContext } from '../kernel/context.js';
import { jobLogger, logServerFailed, runningElsewhere, taskId as taskIdOf } from '../kernel/jobs.js';
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
import { carryHistory, finishScanJob, latestSucceeded, recordOs } from './scan.js';

/** A scan of one server done by a worker, not written yet. */
interface ScannedServer {
  server: Server | undefined;
  serverId: string;
  running: TaskResult;
  scanned?: Omit<ScanResultInput, 'tenantId' | 'serverId' | 'scannedAt' | 'status'>;
  error?: FleetwardError;
}

/** How a scan task that ended counts (scans have no error budget; a changed host key stops them). */
function outcomeOf(task: TaskResult, server: Pick<Server, 'id' | 'name'>): RolloutServerOutcome {
  const state = task.status === 'succeeded' ? 'succeeded' : task.status === 'failed' ? 'failed' : 'cancelled';
  const stop = task.error ? stopsOperation(task.error, server) : undefined;
  return {
    state,
    countsAgainstBudget: false,
    ...(stop ? { stopRollout: stop.reason } : {}),
    ...(task.error ? { code: task.error.code } : {}),
  };
}

/**
 * The worker side of scans ({@link RolloutWork}): the run is the scan's job (`runId` is the job
 * id). A scan only reads, so a scan left running by a worker that died is simply scanned again by
 * the worker that takes it over. Each server's result (the scan result and the task) is written
 * with others of the same job in one transaction; the job's end, its audit record, webhook and
 * after-scan hooks are written by `finish`, as in one process.
 */
export function createScanRolloutWork(runtime: Runtime): RolloutWork {
  const claims = new WeakMap<ClaimedServer, TaskResult>();
  const unrecorded = new WeakMap<UnrecordedResult, ScannedServer>();
  // The context of a scan's requester, loaded once per scan a worker works on (the newest few kept).
  const contexts = new Map<string, Promise<{ ctx: CallContext; actor: AuditInput['actor'] }>>();
  const contextOf = (ref: RolloutRef): Promise<{ ctx: CallContext; actor: AuditInput['actor'] }> => {
    const key = `${ref.tenantId}\u0000${ref.runId}`;
    let found = contexts.get(key);
    if (!found) {
      found = (async () => {
        const job = await runtime.store.jobs.require(ref.tenantId, ref.runId);
        const ctx = createCallContext(runtime, { tenantId: ref.tenantId, principalId: job.requestedBy });
        const principal = await ctx.principal();
        return { ctx, actor: { principalId: job.requestedBy, kind: principal?.kind ?? 'human' } };
      })();
      found.catch(() => contexts.delete(key));
      if (contexts.size >= 64) contexts.delete(contexts.keys().next().value as string);
      contexts.set(key, found);
    }
    return found;
  };
  const nameOf = (serverId: string) => ({ id: serverId, name: serverId });

  return {
    async claim(ref, serverIds, options) {
      const { tenantId, runId: jobId } = ref;
      for (let attempt = 0; ; attempt++) {
        try {
          const out = await runtime.store.transaction(async (tx) => {
            const answers: Array<RolloutServerOutcome | RunningElsewhere | ClaimedServer> = [];
            for (const serverId of serverIds) {
              const task = await tx.taskResults.require(tenantId, taskIdOf(jobId, serverId));
              const elsewhere = await runningElsewhere(task, options.workerId, options.ownerAlive);
              if (elsewhere) {
                answers.push(elsewhere);
                continue;
              }
              if (task.status !== 'pending' && task.status !== 'running') {
                answers.push(outcomeOf(task, nameOf(serverId)));
                continue;
              }
              // Pending, or left running by a worker that is gone: a scan reads only, so it runs (again).
              const running = await tx.taskResults.update(
                tenantId,
                task.id,
                {
                  status: 'running',
                  attempt: task.attempt + 1,
                  startedAt: runtime.clock.now().toISOString(),
                  details: { ...task.details, workerId: options.workerId },
                },
                { expectedVersion: task.version },
              );
              const handle: ClaimedServer = { claimed: true, ref, serverId };
              claims.set(handle, running);
              answers.push(handle);
            }
            return answers;
          });
          for (const answer of out) {
            if ('claimed' in answer) {
              runtime.events.emit('scan.server.started', { tenantId, jobId, serverId: answer.serverId });
            }
          }
          return out;
        } catch (error) {
          if (!(error instanceof ConflictError) || attempt >= 4) throw error;
        }
      }
    },

    async carryOut(handle, signal) {
      const running = claims.get(handle);
      if (!running) {
        throw new ValidationError('ClaimedServer', [
          { path: [], message: 'was not made by this RolloutWork (or is not a result of claim)' },
        ]);
      }
      claims.delete(handle);
      const { tenantId } = handle.ref;
      const result: ScannedServer = { server: undefined, serverId: handle.serverId, running };
      try {
        const server = await runtime.store.servers.get(tenantId, handle.serverId);
        result.server = server;
        if (!server)
          throw new ValidationError('Server', [
            { path: ['id'], message: `server ${handle.serverId} no longer exists` },
          ]);
        const timeoutMs = running.details?.['timeoutMs'];
        result.scanned = await scanServer(server, {
          adapter: runtime.adapterFor(server),
          drivers: runtime.drivers,
          signal,
          ...(typeof timeoutMs === 'number' ? { timeoutMs } : {}),
        });
      } catch (thrown) {
        result.error = toFleetwardError(thrown, `scanning ${result.server?.name ?? handle.serverId}`);
      }
      const out: UnrecordedResult = { unrecorded: true, ref: handle.ref, serverId: handle.serverId };
      unrecorded.set(out, result);
      return out;
    },

    async record(results, workerId) {
      const scans = results.map((r, i) => {
        const scan = unrecorded.get(r);
        if (!scan) {
          throw new ValidationError('UnrecordedResult', [
            { path: [i], message: 'was not made by this RolloutWork (or is not a result of carryOut)' },
          ]);
        }
        return { ref: r.ref, scan };
      });
      const byJob = new Map<string, number[]>();
      for (const [i, { ref }] of scans.entries()) {
        const key = `${ref.tenantId}\u0000${ref.runId}`;
        byJob.set(key, [...(byJob.get(key) ?? []), i]);
      }
      const outcomes = new Array<RolloutServerOutcome | RunningElsewhere>(results.length);
      for (const indexes of byJob.values()) {
        const { tenantId, runId: jobId } = scans[indexes[0]!]!.ref;
        for (let attempt = 0; ; attempt++) {
          try {
            const written = await runtime.store.transaction(async (tx) => {
              const out: Array<{ outcome: RolloutServerOutcome | RunningElsewhere; saved?: ScanResult }> = [];
              for (const i of indexes) {
                const { scan } = scans[i]!;
                const current = await tx.taskResults.require(tenantId, scan.running.id);
                const server = scan.server ?? nameOf(scan.serverId);
                const owner = current.details?.['workerId'];
                if (current.status === 'running' && owner !== workerId) {
                  // Taken over (scanned again) by a worker that took this one for dead: it reports the server.
                  out.push({ outcome: { runningOn: String(owner) } });
                  continue;
                }
                if (current.status !== 'running') {
                  out.push({ outcome: outcomeOf(current, server) });
                  continue;
                }
                const scannedAt = runtime.clock.now().toISOString();
                let saved: ScanResult;
                if (scan.scanned) {
                  const history = carryHistory(
                    await latestSucceeded(tx, tenantId, scan.serverId),
                    scan.scanned.patches ?? [],
                    scannedAt,
                  );
                  // What the adapter returned comes first: the facade's own fields can never be overridden.
                  saved = await tx.scanResults.create({
                    ...scan.scanned,
                    ...history,
                    serverId: scan.serverId,
                    jobId,
                    scannedAt,
                    status: 'succeeded',
                    tenantId,
                  });
                } else {
                  const failure = { code: scan.error!.code, message: scan.error!.message.slice(0, 4000) };
                  saved = await tx.scanResults.create({
                    tenantId,
                    serverId: scan.serverId,
                    jobId,
                    scannedAt,
                    status: 'failed',
                    error: failure,
                  });
                }
                const task = await tx.taskResults.update(
                  tenantId,
                  current.id,
                  {
                    status: saved.status === 'succeeded' ? 'succeeded' : 'failed',
                    finishedAt: scannedAt,
                    ...(saved.error ? { error: saved.error } : {}),
                  },
                  { expectedVersion: current.version },
                );
                out.push({ outcome: outcomeOf(task, server), saved });
              }
              return out;
            });
            for (const [k, i] of indexes.entries()) {
              outcomes[i] = written[k]!.outcome;
              const saved = written[k]!.saved;
              if (!saved) continue;
              const { scan } = scans[i]!;
              if (saved.status === 'succeeded') {
                if (scan.scanned?.os) {
                  const { ctx } = await contextOf(scans[i]!.ref);
                  await recordOs(ctx, scan.serverId, scan.scanned.os);
                }
                runtime.events.emit('scan.server.completed', {
                  tenantId,
                  jobId,
                  serverId: scan.serverId,
                  result: saved,
                });
              } else {
                runtime.events.emit('scan.server.failed', {
                  tenantId,
                  jobId,
                  serverId: scan.serverId,
                  error: saved.error!,
                });
                logServerFailed(
                  jobLogger(runtime.logger, { tenantId, id: jobId, kind: 'scan' }),
                  scan.serverId,
                  saved.error!,
                );
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
      const job = await runtime.store.jobs.require(ref.tenantId, ref.runId);
      if (job.status !== 'running') return; // a redelivered end
      const { ctx, actor } = await contextOf(ref);
      const results = await runtime.store.scanResults.listAll(ref.tenantId, { where: { jobId: job.id } });
      // What stopped it: the first changed host key among the results, named as the server is.
      const stopped =
        end.status === 'stopped' ? results.find((r) => r.error?.code === 'HOST_KEY_MISMATCH') : undefined;
      const stopServer = stopped
        ? await runtime.store.servers.get(ref.tenantId, stopped.serverId)
        : undefined;
      const stoppedBy = stopped
        ? stopsOperation(stopped.error, stopServer ?? nameOf(stopped.serverId))
        : undefined;
      await finishScanJob(ctx, {
        job,
        actor,
        total: job.serverIds.length,
        results,
        notStarted: end.untouched,
        ...(stoppedBy ? { stoppedBy } : {}),
        cancelled: end.status === 'cancelled',
      });
    },

    async cancelRequested() {
      // A scan has no cancellation of its own: the starting call's signal stops only its wait.
      return false;
    },

    async waveStarted() {
      // A scan is one wave and announces no wave (`scan.started` is emitted where it starts).
    },
  };
}
