import type { RolloutQueue, RolloutRef, RolloutSubmission } from '@fleetward/core';
import { ValidationError } from '@fleetward/core';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { z } from 'zod';
import { Coordinator, END_QUEUE, type QueueLimit, type RolloutState, TASK_QUEUE } from './coordinator.js';

export type { QueueLimit, RolloutState } from './coordinator.js';

import { migrate } from './schema.js';

const SCHEMA = /^[a-z_][a-z0-9_]{0,40}$/;

export const RolloutQueueOptionsSchema = z
  .strictObject({
    /** A pool to use (the caller's: the queue never ends it). Give this or `connectionString`. */
    pool: z
      .custom<pg.Pool>(
        (v) =>
          typeof (v as pg.Pool | undefined)?.connect === 'function' &&
          typeof (v as pg.Pool | undefined)?.query === 'function',
        { message: 'must be a pg.Pool' },
      )
      .optional(),
    /** A PostgreSQL URL; the queue opens and closes its own pool. @default the PG* environment variables */
    connectionString: z.string().min(1).optional(),
    /**
     * Schema of the queue's tables; pg-boss keeps its job tables in `<schema>_boss`. Every process
     * that submits or works must name the same one. @default 'fleetward_worker'
     */
    schema: z
      .string()
      .regex(SCHEMA, 'must be a lower-case SQL name of at most 41 characters')
      .default('fleetward_worker'),
    /** Attempts of a job after one that failed (the store was unreachable, say). @default 20 */
    retryLimit: z.number().int().min(0).max(1000).default(20),
    /** Seconds before a failed job is offered again. @default 5 */
    retryDelaySeconds: z.number().int().min(0).max(3600).default(5),
    /**
     * Seconds after which pg-boss gives up on an active job: a backstop only, since a dead
     * worker's tasks are taken over by the heartbeat. Keep it above the longest task. @default 172_800
     */
    expireInSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .default(172_800),
    /** Run pg-boss's maintenance (archiving, expiry) in this process: workers do, submitters need not. @default true */
    supervise: z.boolean().default(true),
  })
  .refine((o) => !(o.pool && o.connectionString), {
    message: 'give either pool or connectionString, not both',
    path: ['connectionString'],
  });
export type RolloutQueueOptions = z.input<typeof RolloutQueueOptionsSchema>;

const LIMIT_NAME = z.string().min(1).max(256);

/** A cap as `setLimit` takes it: `maxInFlight: null` removes it. */
export const QueueLimitSchema = z.strictObject({
  /** The tenant, or `*` for the default of every tenant. */
  tenantId: LIMIT_NAME,
  /** The account (`Server.accountId`), or `*` for the default of every account; none for the tenant's own cap. */
  accountId: LIMIT_NAME.optional(),
  maxInFlight: z.number().int().min(1).max(1_000_000).nullable(),
});
export type QueueLimitInput = z.input<typeof QueueLimitSchema>;

/**
 * The {@link RolloutQueue} on PostgreSQL: give it to `createFleet({ rollouts })` in every process
 * that starts runs, and to {@link createWorker} in every worker process.
 */
export interface PostgresRolloutQueue extends RolloutQueue {
  /** The schema of its tables. */
  readonly schema: string;
  /** Where a run's rollout stands, or undefined when it was never submitted. */
  state(ref: RolloutRef): Promise<RolloutState | undefined>;
  /** Tasks waiting on the queue (not yet taken by a worker). */
  depth(): Promise<number>;
  /**
   * Sets a cap on servers in flight (queued or running) over all runs: a tenant's
   * (`{ tenantId, maxInFlight }`), or one account's (`{ tenantId, accountId, maxInFlight }`); `*` as
   * `tenantId` or `accountId` sets the default of every tenant or account without a cap of its own.
   * `maxInFlight: null` removes the cap. Kept in PostgreSQL, so every process applies the same caps;
   * a cap lowered below what is in flight now starts nothing more until it is under it again.
   * @throws ValidationError for a bad cap.
   */
  setLimit(limit: QueueLimitInput): Promise<void>;
  /** Every cap set. */
  limits(): Promise<QueueLimit[]>;
  /** Stops pg-boss and closes the pool when the queue opened it. */
  close(): Promise<void>;
}

/** What a worker reaches beneath the queue: the coordinator and pg-boss. */
export interface QueueInternals {
  coordinator: Coordinator;
  boss: PgBoss;
}

const internals = new WeakMap<PostgresRolloutQueue, QueueInternals>();

/** The coordinator and pg-boss of a queue made by {@link createRolloutQueue}. */
export function queueInternals(queue: PostgresRolloutQueue): QueueInternals {
  const found = internals.get(queue);
  if (!found) {
    throw new ValidationError('WorkerOptions', [
      { path: ['queue'], message: 'must be a queue made by createRolloutQueue' },
    ]);
  }
  return found;
}

/**
 * Opens the rollout queue on PostgreSQL: creates (or migrates) its schema and pg-boss's, and the
 * two pg-boss queues (per-server tasks, rollout ends).
 *
 * pg-boss carries the jobs: it fetches with `SKIP LOCKED` so workers never take the same job,
 * retries failed ones, expires stuck ones and archives old ones, and it inserts jobs through the
 * caller's connection, so a rollout's decision and the jobs it queues commit in one transaction.
 * The rollout itself (waves, concurrency, error budget) is kept in the queue's own tables.
 *
 * @throws ValidationError for bad options; the driver's error when PostgreSQL is unreachable.
 */
export async function createRolloutQueue(options: RolloutQueueOptions = {}): Promise<PostgresRolloutQueue> {
  const parsed = RolloutQueueOptionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new ValidationError(
      'RolloutQueueOptions',
      parsed.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message })),
    );
  }
  const opts = parsed.data;
  const ownsPool = !opts.pool;
  const pool =
    opts.pool ?? new pg.Pool(opts.connectionString ? { connectionString: opts.connectionString } : {});
  if (ownsPool) pool.on('error', () => {});
  const boss = new PgBoss({
    db: { executeSql: (text, values) => pool.query(text, values) },
    schema: `${opts.schema}_boss`,
    supervise: opts.supervise,
    schedule: false,
    migrate: true,
  });
  // pg-boss reports maintenance errors as events; without a listener they would crash the process.
  boss.on('error', () => {});
  try {
    await migrate(pool, opts.schema);
    await boss.start();
    for (const name of [TASK_QUEUE, END_QUEUE]) {
      if (!(await boss.getQueue(name))) await boss.createQueue(name, { name, policy: 'standard' });
    }
  } catch (error) {
    await boss.stop({ graceful: false, close: false }).catch(() => undefined);
    if (ownsPool) await pool.end().catch(() => undefined);
    throw error;
  }
  const coordinator = new Coordinator(pool, opts.schema, boss, {
    retryLimit: opts.retryLimit,
    retryDelaySeconds: opts.retryDelaySeconds,
    expireInSeconds: opts.expireInSeconds,
  });
  let closed = false;
  const queue: PostgresRolloutQueue = {
    name: `postgres:${opts.schema}`,
    schema: opts.schema,
    submit: (submission: RolloutSubmission) => coordinator.submit(submission),
    isActive: (ref: RolloutRef) => coordinator.isActive(ref),
    cancel: (ref: RolloutRef) => coordinator.cancelRun(ref),
    state: (ref: RolloutRef) => coordinator.state(ref),
    depth: () => boss.getQueueSize(TASK_QUEUE),
    async setLimit(limit: QueueLimitInput) {
      const parsed = QueueLimitSchema.safeParse(limit);
      if (!parsed.success) {
        throw new ValidationError(
          'QueueLimit',
          parsed.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message })),
        );
      }
      await coordinator.setLimit(parsed.data as Parameters<Coordinator['setLimit']>[0]);
    },
    limits: () => coordinator.limits(),
    async close() {
      if (closed) return;
      closed = true;
      await boss.stop({ graceful: false, close: false, wait: true }).catch(() => undefined);
      if (ownsPool) await pool.end();
    },
  };
  internals.set(queue, { coordinator, boss });
  return queue;
}
