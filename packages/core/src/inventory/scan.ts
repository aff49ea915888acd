import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { z } from 'zod';
import type { AuditInput, Job, ScanResult, ScanResultInput, Server, ServerInput } from '../domain/index.js';
import { validateOptions } from '../domain/options.js';
import { scanServer } from '../engine/scan.js';
import { type OperationStop, OperationStopLatch } from '../engine/stop.js';
import { AbortedError, ConflictError, toFleetwardError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import {
  jobLogger,
  logJobFinished,
  logJobStarted,
  logServerFailed,
  startJob,
  taskId as taskIdOf,
} from '../kernel/jobs.js';
import type { StoreScope } from '../ports/store.js';
import { AbortFanout } from '../util/abort-fanout.js';
import { newestScan } from './scans.js';
import { resolveTargets, type Targets, validateTargets } from './targets.js';

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

type PendingPatchInput = NonNullable<ScanResultInput['patches']>[number];

/** The newest successful scan of a server (the one a new scan carries history from). */
export async function latestSucceeded(
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

/**
 * Scans the targeted servers for pending patches, `concurrency` at a time, and stores one
 * ScanResult per server (failed scans included, with their error). Progress is announced with
 * `scan.*` events. Every server must be allowed `patch.scan`, or nothing runs.
 */
export async function scanTargets(
  ctx: CallContext,
  targets: Targets,
  options: ScanOptions = {},
): Promise<ScanOutcome> {
  const fleet = ctx.runtime;
  const store = fleet.store;
  const tenantId = ctx.tenantId;
  const parsedTargets = validateTargets(targets);
  validateOptions(ScanOptionsSchema, options, 'ScanOptions');
  const servers = await resolveTargets(store, tenantId, parsedTargets);
  const { principal, rule } = await ctx.decide(
    'patch.scan',
    servers.map((server) => ({ type: 'server', server })),
    { type: 'scan', id: servers.length === 1 ? servers[0]!.id : `${servers.length} servers` },
  );
  if (options.signal?.aborted) throw new AbortedError('scan aborted before it started');
  const concurrency = options.concurrency ?? fleet.scanConcurrency;
  const actor = { principalId: principal.id, kind: principal.kind };
  const jobId = randomUUID();
  const startedAt = fleet.clock.now().toISOString();

  const begun = await store.transaction(async (tx) => {
    const { job: created } = await startJob(tx, {
      tenantId,
      jobId,
      kind: 'scan',
      requestedBy: principal.id,
      serverIds: servers.map((s) => s.id),
      startedAt,
      // Workers read the scan's time limit from its tasks.
      ...(fleet.rollouts && options.timeoutMs
        ? { task: { status: 'pending', details: { timeoutMs: options.timeoutMs } } }
        : {}),
    });
    const { emit } = await ctx.record(tx, {
      audit: {
        actor,
        action: 'patch.scan',
        target: { type: 'job', id: jobId },
        decision: 'allow',
        ...(rule ? { rule } : {}),
        result: 'started',
        details: { servers: servers.length },
      },
      event: { name: 'scan.started', args: [{ tenantId, jobId, total: servers.length }] },
    });
    return { created, emit };
  });
  let job = begun.created;
  begun.emit();
  const log = jobLogger(fleet.logger, job);
  logJobStarted(log, job, { concurrency });

  if (fleet.rollouts) {
    // Workers scan the servers, `concurrency` at a time over all of them; this call waits for the end.
    await fleet.rollouts.submit({
      kind: 'scan',
      tenantId,
      runId: jobId,
      jobId,
      waves: [{ name: 'all', serverIds: servers.map((s) => s.id) }],
      accounts: Object.fromEntries(servers.map((s) => [s.id, s.accountId])),
      maxConcurrency: concurrency,
      maxFailures: servers.length,
      onBudgetSpent: 'stop',
      states: {},
      acknowledgeFailures: false,
    });
    return waitForScan(ctx, jobId, options.signal);
  }

  const queue = new PQueue({ concurrency });
  const results: ScanResult[] = [];
  const stop = new OperationStopLatch();
  const notStarted: Server[] = [];
  // Each server's scan gets a signal of its own: the caller's keeps one listener at any scale.
  const serverSignals = new AbortFanout(options.signal);
  const scanOne = async (server: Server) => {
    const taskId = taskIdOf(jobId, server.id);
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
      const scanned = await serverSignals.run((signal) =>
        scanServer(server, {
          adapter,
          drivers: fleet.drivers,
          ...(options.signal ? { signal } : {}),
          ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
        }),
      );
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
      if (scanned.os) await recordOs(ctx, server.id, scanned.os);
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
      if (!options.signal?.aborted) logServerFailed(log, server.id, failure);
    }
    results.push(result);
  };
  try {
    await Promise.all(servers.map((server) => queue.add(() => scanOne(server))));
  } finally {
    serverSignals.close();
  }

  job = await finishScanJob(ctx, {
    job,
    actor,
    total: servers.length,
    results,
    notStarted: notStarted.map((server) => server.id),
    ...(stop.stopped ? { stoppedBy: stop.stopped } : {}),
    cancelled: options.signal?.aborted === true,
  });
  results.sort((a, b) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0));
  return { job, results };
}

/**
 * Waits for a scan carried out by workers to end, and answers like an in-process scan. An abort of
 * `signal` stops the wait only (AbortedError): a scan has no cancellation, and the workers finish it.
 */
async function waitForScan(
  ctx: CallContext,
  jobId: string,
  signal: AbortSignal | undefined,
): Promise<ScanOutcome> {
  const store = ctx.runtime.store;
  for (;;) {
    const job = await store.jobs.require(ctx.tenantId, jobId);
    if (job.status !== 'running') {
      const results = await store.scanResults.listAll(ctx.tenantId, { where: { jobId } });
      results.sort((a, b) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0));
      return { job, results };
    }
    if (signal?.aborted) {
      throw new AbortedError(`stopped waiting for scan ${jobId}: the workers carry on and finish it`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** What {@link finishScanJob} ends a scan's job with. */
export interface ScanEnd {
  job: Job;
  /** Who ran the scan, as its audit records name them. */
  actor: AuditInput['actor'];
  total: number;
  /** One result per scanned server. */
  results: readonly ScanResult[];
  /** Servers never scanned: after a stop, or a cancellation. */
  notStarted: readonly string[];
  /** What stopped the scan (a changed host key), if anything did. */
  stoppedBy?: OperationStop;
  cancelled: boolean;
}

/**
 * Ends a scan's job, however it was carried out (in this process or by workers): servers not
 * scanned are recorded as skipped (or cancelled), the job gets its status and summary, and its
 * audit record, webhook and event commit together; then the after-scan hooks run. A job no longer
 * `running` was ended already (two workers given the same end): nothing is written or run again.
 */
export async function finishScanJob(ctx: CallContext, end: ScanEnd): Promise<Job> {
  const fleet = ctx.runtime;
  const store = fleet.store;
  const tenantId = ctx.tenantId;
  const { job, actor, total, results, notStarted, stoppedBy } = end;
  const jobId = job.id;
  const failed = results.filter((r) => r.status === 'failed').length;
  const succeeded = results.length - failed;
  const status = end.cancelled
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
  const completion = { tenantId, jobId, status, total, succeeded, failed };
  const ended = await store.transaction(async (tx) => {
    const current = await tx.jobs.require(tenantId, jobId);
    // Ended already (a second worker given the same end): written once, announced once.
    if (current.status !== 'running') return { finished: current, emit: undefined };
    for (const serverId of notStarted) {
      const task = await tx.taskResults.require(tenantId, taskIdOf(jobId, serverId));
      await tx.taskResults.update(
        tenantId,
        task.id,
        stoppedBy
          ? {
              status: 'skipped',
              error: { code: 'NOT_STARTED', message: `not scanned: ${stoppedBy.reason}` },
            }
          : {
              status: 'cancelled',
              error: { code: 'NOT_STARTED', message: 'not scanned: the scan was cancelled' },
            },
        { expectedVersion: task.version },
      );
    }
    const finished = await tx.jobs.update(
      tenantId,
      jobId,
      {
        status,
        finishedAt: fleet.clock.now().toISOString(),
        summary: { total, succeeded, failed },
        ...(reason ? { reason } : {}),
      },
      { expectedVersion: current.version },
    );
    // The job's end, its audit record and its webhook commit together, or none of them does.
    const { emit } = await ctx.record(tx, {
      audit: {
        actor,
        action: 'patch.scan',
        target: { type: 'job', id: jobId },
        decision: 'allow',
        result: failed === 0 && status !== 'cancelled' ? 'success' : 'failure',
        details: {
          status,
          total,
          succeeded,
          failed,
          pending: results.reduce((n, r) => n + r.patches.length, 0),
          ...(stoppedBy
            ? { stoppedBy: { code: stoppedBy.code, serverId: stoppedBy.serverId, reason: stoppedBy.reason } }
            : {}),
          ...(stoppedBy ? { notStarted: notStarted.slice(0, 1000) } : {}),
        },
        ...(reason ? { reason } : {}),
      },
      outbox: { eventType: 'scan.completed', payload: completion },
      event: { name: 'scan.completed', args: [completion] },
    });
    return { finished, emit };
  });
  if (!ended.emit) return ended.finished;
  ended.emit();
  logJobFinished(
    jobLogger(fleet.logger, job),
    ended.finished,
    fleet.clock.now(),
    notStarted.length ? { notStarted: notStarted.length } : {},
  );
  if (succeeded > 0) {
    // Hooks never fail the scan: each one audits its own failures (see `AfterScanHook`).
    for (const hook of fleet.afterScan) await hook({ runtime: fleet, tenantId, jobId, actor, results });
  }
  return ended.finished;
}

/** Records the OS facts a scan found on the server, when they changed (retried on a conflict). */
export async function recordOs(
  ctx: CallContext,
  serverId: string,
  os: NonNullable<ServerInput['os']>,
): Promise<void> {
  const store = ctx.runtime.store;
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await store.servers.get(ctx.tenantId, serverId);
    if (!current || JSON.stringify(current.os) === JSON.stringify(os)) return;
    try {
      await store.servers.update(ctx.tenantId, serverId, { os }, { expectedVersion: current.version });
      return;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
    }
  }
}

/** The newest scan result of each targeted server (or of every readable server). */
export async function latestScans(
  ctx: CallContext,
  targets?: Targets,
): Promise<{ server: Server; scan: ScanResult | undefined }[]> {
  const store = ctx.runtime.store;
  const servers = targets
    ? await resolveTargets(store, ctx.tenantId, validateTargets(targets))
    : await store.servers.listAll(ctx.tenantId);
  return ctx.read(
    'patch.read',
    servers.map((server) => ({ type: 'server', server })),
    { type: 'scan-results', id: '*' },
    async () => {
      const out = [];
      for (const server of servers) {
        const scans = await store.scanResults.listAll(ctx.tenantId, { where: { serverId: server.id } });
        const latest = newestScan(scans);
        out.push({ server, scan: latest });
      }
      return out;
    },
  );
}
