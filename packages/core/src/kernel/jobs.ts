import { randomUUID } from 'node:crypto';
import type { EntityInputs, Job, TaskResult } from '../domain/index.js';
import type { StoreScope } from '../ports/store.js';

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
