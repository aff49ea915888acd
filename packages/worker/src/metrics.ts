import type { RolloutServerOutcome } from '@fleetward/core';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The queue's side of the metrics: how many tasks wait. */
interface QueueDepth {
  depth(): Promise<number>;
}

/**
 * A worker's Prometheus metrics, in a registry of its own (several workers in one process do not
 * collide), each labelled with the worker's id:
 *
 * - `fleetward_worker_queue_depth`: tasks waiting on the queue (all workers'), read when scraped;
 * - `fleetward_worker_tasks_in_flight`: tasks this worker runs now;
 * - `fleetward_worker_task_duration_seconds`: how long tasks took, by workflow and outcome;
 * - `fleetward_worker_tasks_total`: tasks finished, by workflow and outcome;
 * - `fleetward_worker_task_failures_total`: failed tasks by workflow and error code (a task whose
 *   work threw is settled by the workflow and counts once, under the code it was settled with);
 * - `fleetward_worker_takeovers_total`: tasks of dead workers this worker queued again;
 * - `fleetward_worker_rollouts_ended_total`: run ends this worker recorded.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly duration: Histogram<'kind' | 'outcome'>;
  readonly tasks: Counter<'kind' | 'outcome'>;
  readonly failures: Counter<'kind' | 'code'>;
  readonly takeovers: Counter;
  readonly rolloutsEnded: Counter;

  constructor(workerId: string, queue: QueueDepth, inFlight: () => number) {
    this.registry.setDefaultLabels({ worker: workerId });
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    new Gauge({
      name: 'fleetward_worker_queue_depth',
      help: 'Tasks waiting on the queue, not yet taken by a worker.',
      registers,
      async collect() {
        this.set(await queue.depth());
      },
    });
    new Gauge({
      name: 'fleetward_worker_tasks_in_flight',
      help: 'Tasks this worker is running now.',
      registers,
      collect() {
        this.set(inFlight());
      },
    });
    this.duration = new Histogram({
      name: 'fleetward_worker_task_duration_seconds',
      help: 'How long a task took from the worker taking it to its result being recorded.',
      labelNames: ['kind', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers,
    });
    this.tasks = new Counter({
      name: 'fleetward_worker_tasks_total',
      help: 'Tasks finished by this worker, by workflow and outcome.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.failures = new Counter({
      name: 'fleetward_worker_task_failures_total',
      help: 'Failed tasks, by workflow and error code.',
      labelNames: ['kind', 'code'],
      registers,
    });
    this.takeovers = new Counter({
      name: 'fleetward_worker_takeovers_total',
      help: 'Running tasks of dead workers that this worker queued again.',
      registers,
    });
    this.rolloutsEnded = new Counter({
      name: 'fleetward_worker_rollouts_ended_total',
      help: 'Runs whose end this worker recorded.',
      registers,
    });
  }

  /** Counts a finished task. */
  observe(kind: string, outcome: RolloutServerOutcome, seconds: number): void {
    this.duration.observe({ kind, outcome: outcome.state }, seconds);
    this.tasks.inc({ kind, outcome: outcome.state });
    if (outcome.state === 'failed') this.failures.inc({ kind, code: outcome.code ?? 'UNKNOWN' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
