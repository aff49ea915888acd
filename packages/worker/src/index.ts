/**
 * Worker processes on PostgreSQL: the per-server tasks of runs carried out by any number of
 * workers through a durable pg-boss queue, with each run's waves, concurrency and error budget
 * kept across all of them, dead workers' tasks taken over, and Prometheus metrics.
 *
 * @module @fleetward/worker
 */
export {
  createRolloutQueue,
  type PostgresRolloutQueue,
  type QueueLimit,
  type QueueLimitInput,
  QueueLimitSchema,
  type RolloutQueueOptions,
  RolloutQueueOptionsSchema,
  type RolloutState,
} from './queue.js';
export {
  createWorker,
  type Worker,
  type WorkerHealth,
  type WorkerOptions,
  WorkerOptionsSchema,
} from './worker.js';
