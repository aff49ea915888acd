import { randomUUID } from 'node:crypto';
import type { EntityInputs, Job, TaskResult } from '../domain/index.js';
import type { StoreScope } from '../ports/store.js';
import type { RedactingLogger } from './log.js';

/** What {@link startJob} needs: the job's fields and how each server's task starts. */
export interface StartJobInput {
  tenantId: string;
  kind: Job['kind'];
  requestedBy: string;
  serverIds: readonly string[];
  /** ISO time the job starts. */
  startedAt: string;
  /** A sentence on why, kept on the job. */
  reason?: string;
  /** @default a random UUID */
  jobId?: string;
  /** The first state of every task. @default `{ status: 'pending' }` */
  task?: Pick<EntityInputs['taskResults'], 'status'> &
    Partial<Pick<EntityInputs['taskResults'], 'step' | 'details'>>;
}

/**
 * The live worker running `task`, when another worker than `workerId` runs it: a task `running`
 * under a worker whose heartbeat `ownerAlive` confirms is that worker's to report. Undefined for a
 * task not running, running under `workerId`, or left by a worker that is gone.
 */
export async function runningElsewhere(
  task: TaskResult,
  workerId: string,
  ownerAlive: (workerId: string) => Promise<boolean>,
): Promise<{ runningOn: string } | undefined> {
  if (task.status !== 'running') return undefined;
  const owner = task.details?.['workerId'];
  if (typeof owner !== 'string' || owner === workerId) return undefined;
  return (await ownerAlive(owner)) ? { runningOn: owner } : undefined;
}

/** The id of the task of `serverId` in job `jobId`: one task per server and job. */
export function taskId(jobId: string, serverId: string): string {
  return `${jobId}:${serverId}`;
}

/**
 * Creates a running job and one task per server through `tx`, so the job, its tasks and whatever
 * else the caller writes in `tx` (the run's state, its audit record) commit together: a crash
 * leaves either all of them or none. Task ids are {@link taskId}.
 */
export async function startJob(
  tx: StoreScope,
  input: StartJobInput,
): Promise<{ job: Job; tasks: Map<string, TaskResult> }> {
  const jobId = input.jobId ?? randomUUID();
  const job = await tx.jobs.create({
    tenantId: input.tenantId,
    id: jobId,
    kind: input.kind,
    status: 'running',
    requestedBy: input.requestedBy,
    serverIds: [...input.serverIds],
    startedAt: input.startedAt,
    ...(input.reason !== undefined ? { reason: input.reason } : {}),
  });
  const tasks = new Map<string, TaskResult>();
  const first = input.task ?? { status: 'pending' as const };
  for (const serverId of input.serverIds) {
    tasks.set(
      serverId,
      await tx.taskResults.create({
        ...first,
        tenantId: input.tenantId,
        id: taskId(jobId, serverId),
        jobId,
        serverId,
      }),
    );
  }
  return { job, tasks };
}

const JOB_NAMES: Record<Job['kind'], string> = {
  scan: 'scan',
  patch: 'patch run',
  script: 'script run',
  'key-rotation': 'key rotation',
  access: 'access job',
};

/** A job's records: bound to its tenant, id and kind. */
export function jobLogger(
  logger: RedactingLogger,
  job: Pick<Job, 'tenantId' | 'id' | 'kind'>,
): RedactingLogger {
  return logger.child({ tenantId: job.tenantId, jobId: job.id, kind: job.kind });
}

/**
 * Tells the operator (info) that `job` started, or was resumed, once its start has committed:
 * how many servers, who asked, and the workflow's own ids in `fields`.
 */
export function logJobStarted(log: RedactingLogger, job: Job, fields: Record<string, unknown> = {}): void {
  log.info(
    { servers: job.serverIds.length, requestedBy: job.requestedBy, ...fields },
    `${JOB_NAMES[job.kind]} ${fields['resumed'] === true ? 'resumed' : 'started'}`,
  );
}

/**
 * Tells the operator that `job` ended (or paused: status `pending`), once its end has committed:
 * its status, summary, reason and duration. A job that failed, partly failed or was stopped is a
 * warning; any other end is information.
 */
export function logJobFinished(
  log: RedactingLogger,
  job: Job,
  now: Date,
  fields: Record<string, unknown> = {},
): void {
  const bad = job.status === 'failed' || job.status === 'partial' || job.status === 'stopped';
  const started = job.startedAt ? Date.parse(job.startedAt) : Number.NaN;
  log[bad ? 'warn' : 'info'](
    {
      status: job.status,
      ...(job.summary ?? {}),
      ...(job.reason ? { reason: job.reason } : {}),
      ...(Number.isNaN(started) ? {} : { durationMs: Math.max(0, now.getTime() - started) }),
      ...fields,
    },
    `${JOB_NAMES[job.kind]} ${job.status === 'pending' ? 'paused' : 'finished'}`,
  );
}

/**
 * Tells the operator that a server failed in a job: its id, the error's code and message (never
 * the command's output). A changed host key is an error (a person must check the server before
 * anything runs there again); any other failure a warning.
 */
export function logServerFailed(
  log: RedactingLogger,
  serverId: string,
  error: { code: string; message: string },
  fields: Record<string, unknown> = {},
): void {
  log[error.code === 'HOST_KEY_MISMATCH' ? 'error' : 'warn'](
    { serverId, code: error.code, error: error.message, ...fields },
    error.code === 'HOST_KEY_MISMATCH' ? 'server host key changed' : 'server failed',
  );
}
