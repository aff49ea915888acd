import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  type Adapter,
  type ClaimedServer,
  type Clock,
  createFleet,
  decideRolloutEnd,
  type Fleet,
  type Logger,
  type RedactingLogger,
  type RolloutServerOutcome,
  type RunningElsewhere,
  type SecretStore,
  type Store,
  toFleetwardError,
  type UnrecordedResult,
  ValidationError,
} from '@fleetward/core';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import {
  type ClaimedTask,
  type Coordinator,
  END_QUEUE,
  type EndJobData,
  type WaveAnnouncement,
} from './coordinator.js';
import { WorkerMetrics } from './metrics.js';
import { createRolloutQueue, type PostgresRolloutQueue, queueInternals } from './queue.js';

/** The tuning options of {@link createWorker}, checked when it starts. */
export const WorkerOptionsSchema = z.strictObject({
  /** Tasks this worker runs at once. @default 16 */
  concurrency: z.number().int().min(1).max(1024).default(16),
  /** How often an idle worker looks for work. @default 500 */
  pollIntervalMs: z.number().int().min(10).max(60_000).default(500),
  /** How often the worker tells the others it is alive, takes over dead workers' tasks and looks for cancellations. @default 5_000 */
  heartbeatMs: z.number().int().min(50).max(600_000).default(5_000),
  /** A worker silent this long is dead: its running tasks are taken over. At least three heartbeats. @default 30_000 */
  takeoverMs: z.number().int().min(150).max(3_600_000).default(30_000),
  /** On stop, how long running tasks may take to finish before they are aborted. @default 30_000 */
  shutdownTimeoutMs: z.number().int().min(0).max(3_600_000).default(30_000),
  /** This worker's id in the queue's tables and in tasks it runs. @default `<hostname>-<pid>-<random>` */
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/)
    .optional(),
  /** Stop gracefully on SIGTERM and SIGINT, then exit: for a worker that is the whole process (the CLI). @default false */
  handleSignals: z.boolean().default(false),
});

/** Options of {@link createWorker}: where the work comes from, what it runs with, how much at once. */
export type WorkerOptions = z.input<typeof WorkerOptionsSchema> &
  (
    | {
        /** The Fleet whose `rolloutWork` carries out the tasks; built with `rollouts: queue`. */
        fleet: Fleet;
        /** The queue the Fleet submits to. */
        queue: PostgresRolloutQueue;
      }
    | {
        /** The store every process of the deployment shares (PostgreSQL). */
        store: Store;
        adapters: Adapter[];
        secrets?: SecretStore;
        clock?: Clock;
        logger?: Logger;
        /** A pool for the queue (the caller's), or a URL; give one. */
        pool?: pg.Pool;
        connectionString?: string;
        /** The queue's schema. @default 'fleetward_worker' */
        schema?: string;
      }
  );

/** How a worker is doing, for a health check. */
export interface WorkerHealth {
  status: 'running' | 'stopping' | 'stopped';
  id: string;
  /** Tasks running now. */
  inFlight: number;
  /** When the last heartbeat reached PostgreSQL (ISO), if any did. */
  lastHeartbeatAt?: string;
  /** The last error of the work loop or the heartbeat, while it has not recovered. */
  lastError?: string;
}

/** A worker process's handle: started by {@link createWorker}. */
export interface Worker {
  readonly id: string;
  /** The queue it takes work from (a Fleet in this process can submit to it too). */
  readonly queue: PostgresRolloutQueue;
  readonly fleet: Fleet;
  health(): WorkerHealth;
  /** The worker's metrics in Prometheus's text format. */
  metrics(): Promise<string>;
  /** The content type of {@link Worker.metrics}'s answer. */
  readonly metricsContentType: string;
  /**
   * Stops taking work, lets running tasks finish (up to `shutdownTimeoutMs`, then aborts them and
   * records how they ended), reports them, leaves the worker table and closes what it opened.
   */
  stop(): Promise<void>;
}

/** A finished task waiting for its result to be written (if it is not yet) and counted. */
interface Pending {
  task: ClaimedTask;
  result: RolloutServerOutcome | UnrecordedResult;
  /** When the worker took it, for the duration metric. */
  started: number;
  settle: () => void;
}

const keyOf = (task: ClaimedTask) => `${task.rollout}\u0000${task.server}`;

interface Running {
  task: ClaimedTask;
  controller: AbortController;
}

/**
 * Starts a worker: takes the per-server tasks of runs from the PostgreSQL queue, `concurrency` at
 * a time, carries each out through the Fleet's `rolloutWork`, and reports it to its rollout, which
 * starts the next servers. Runs in any number of processes on any number of machines; a run
 * started anywhere is carried out by whichever workers are up.
 *
 * Every `heartbeatMs` it records that it is alive, takes over the running tasks of workers silent
 * for `takeoverMs` (a script they were running is failed as interrupted, never run twice), and
 * stops the rollouts of runs whose cancellation was requested.
 *
 * @throws ValidationError for bad options; the driver's error when PostgreSQL is unreachable.
 */
export async function createWorker(options: WorkerOptions): Promise<Worker> {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('WorkerOptions', [{ path: [], message: 'must be an object' }]);
  }
  type Either = Partial<Extract<WorkerOptions, { fleet: Fleet }>> &
    Partial<Omit<Extract<WorkerOptions, { store: Store }>, keyof z.input<typeof WorkerOptionsSchema>>>;
  const {
    fleet: givenFleet,
    queue: givenQueue,
    store,
    adapters,
    secrets,
    clock,
    logger,
    pool,
    connectionString,
    schema,
    ...rest
  } = options as Either;
  const parsed = WorkerOptionsSchema.safeParse(rest);
  const issues = parsed.success
    ? []
    : parsed.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message }));
  if (givenFleet !== undefined && givenQueue === undefined) {
    issues.push({ path: ['queue'], message: 'is required with fleet: the queue the Fleet submits to' });
  }
  if (givenFleet === undefined && (store === undefined || adapters === undefined)) {
    issues.push({ path: ['store'], message: 'give fleet and queue, or store and adapters' });
  }
  if (parsed.success && parsed.data.takeoverMs < 3 * parsed.data.heartbeatMs) {
    issues.push({ path: ['takeoverMs'], message: 'must be at least three heartbeats (heartbeatMs × 3)' });
  }
  if (!parsed.success || issues.length) throw new ValidationError('WorkerOptions', issues);
  const opts = parsed.data;
  let queue: PostgresRolloutQueue;
  let fleet: Fleet;
  let owned = false;
  if (givenFleet && givenQueue) {
    queue = givenQueue;
    fleet = givenFleet;
    if (fleet.rollouts !== queue) {
      throw new ValidationError('WorkerOptions', [
        {
          path: ['fleet'],
          message: 'must be created with `rollouts: queue`, so that runs it starts go to the workers',
        },
      ]);
    }
  } else {
    queue = await createRolloutQueue({
      ...(pool ? { pool } : {}),
      ...(connectionString ? { connectionString } : {}),
      ...(schema ? { schema } : {}),
    });
    fleet = createFleet({
      store: store as Store,
      adapters: adapters as Adapter[],
      ...(secrets ? { secrets } : {}),
      ...(clock ? { clock } : {}),
      ...(logger ? { logger } : {}),
      rollouts: queue,
    });
    owned = true;
  }
  const worker = new PostgresWorker(fleet, queue, opts, owned);
  await worker.start();
  return worker;
}

type ParsedOptions = z.output<typeof WorkerOptionsSchema>;

class PostgresWorker implements Worker {
  readonly id: string;
  readonly queue: PostgresRolloutQueue;
  readonly fleet: Fleet;
  readonly metricsContentType: string;
  readonly #opts: ParsedOptions;
  readonly #owned: boolean;
  readonly #coordinator: Coordinator;
  readonly #boss: PgBoss;
  readonly #log: RedactingLogger;
  readonly #metrics: WorkerMetrics;
  readonly #running = new Map<string, Running>();
  /** Rollouts seen cancelled: a task of one taken afterwards starts aborted (its workflow records it cancelled). */
  readonly #cancelled = new Set<string>();
  /** Finished tasks waiting to be counted; flushed together, so a busy worker takes each rollout's lock once per batch. */
  #completions: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #status: WorkerHealth['status'] = 'running';
  #lastHeartbeatAt: string | undefined;
  #lastError: string | undefined;
  #wake: (() => void) | undefined;
  #woken = false;
  /** A task was left without an outcome on stop: the worker does not leave the table, so it is taken over. */
  #abandoned = false;
  #loop: Promise<void> | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #onSignal = () => {
    this.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };

  constructor(fleet: Fleet, queue: PostgresRolloutQueue, opts: ParsedOptions, owned: boolean) {
    this.fleet = fleet;
    this.queue = queue;
    this.#opts = opts;
    this.#owned = owned;
    this.id =
      opts.id ??
      `${hostname()
        .replace(/[^A-Za-z0-9._-]/g, '-')
        .slice(0, 60)}-${process.pid}-${randomUUID().slice(0, 8)}`;
    ({ coordinator: this.#coordinator, boss: this.#boss } = queueInternals(queue));
    this.#log = fleet.logger.child({ workerId: this.id });
    this.#metrics = new WorkerMetrics(this.id, queue, () => this.#running.size);
    this.metricsContentType = this.#metrics.contentType;
  }

  async start(): Promise<void> {
    await this.#coordinator.heartbeat(this.id, hostname(), process.pid);
    this.#lastHeartbeatAt = new Date().toISOString();
    this.#heartbeat = setInterval(() => {
      this.#beating ??= this.#beat().finally(() => {
        this.#beating = undefined;
      });
    }, this.#opts.heartbeatMs);
    this.#loop = this.#work();
    if (this.#opts.handleSignals) {
      process.once('SIGTERM', this.#onSignal);
      process.once('SIGINT', this.#onSignal);
    }
    this.#log.info({ concurrency: this.#opts.concurrency, queue: this.queue.name }, 'worker started');
  }

  health(): WorkerHealth {
    return {
      status: this.#status,
      id: this.id,
      inFlight: this.#running.size,
      ...(this.#lastHeartbeatAt ? { lastHeartbeatAt: this.#lastHeartbeatAt } : {}),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  metrics(): Promise<string> {
    return this.#metrics.text();
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#status = 'stopping';
    process.off('SIGTERM', this.#onSignal);
    process.off('SIGINT', this.#onSignal);
    this.#signalWake();
    await this.#loop;
    this.#log.info({ running: this.#running.size }, 'worker stopping: waiting for running tasks');
    const drained = await this.#drain(this.#opts.shutdownTimeoutMs);
    if (!drained) {
      this.#log.warn({ running: this.#running.size }, 'worker stopping: aborting tasks still running');
      for (const r of this.#running.values()) r.controller.abort();
      await this.#drain(30_000);
    }
    clearInterval(this.#heartbeat);
    await this.#beating;
    if (this.#running.size === 0 && !this.#abandoned) {
      await this.#coordinator.leave(this.id).catch(() => undefined);
    }
    if (this.#owned) {
      await this.queue.close().catch(() => undefined);
      await this.fleet.close().catch(() => undefined);
    }
    this.#status = 'stopped';
    this.#log.info({}, 'worker stopped');
  }

  /** Waits until nothing runs (or `ms` passed); true when nothing runs. */
  async #drain(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (this.#running.size > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await this.#flushing;
    return this.#running.size === 0;
  }

  /**
   * Waits `ms` ('timer'), or less when a task frees a slot or the worker stops ('wake'; also when
   * that happened since the last wait).
   */
  #idle(ms: number): Promise<'timer' | 'wake'> {
    if (this.#woken) {
      this.#woken = false;
      return Promise.resolve('wake');
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (how: 'timer' | 'wake') => {
        clearTimeout(timer);
        this.#woken = false;
        this.#wake = undefined;
        resolve(how);
      };
      timer = setTimeout(() => done('timer'), ms);
      this.#wake = () => done('wake');
    });
  }

  #signalWake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /**
   * The loop: take tasks when a quarter of the slots are free (or the poll interval passed with
   * any slot free), so that tasks are taken, claimed in the store and later written in batches
   * rather than one by one; record run ends waiting on the queue.
   */
  async #work(): Promise<void> {
    const batch = Math.max(1, Math.floor(this.#opts.concurrency / 4));
    let timedOut = true;
    while (this.#status === 'running') {
      try {
        const ended: boolean = timedOut ? await this.#takeEnd() : false;
        const free = this.#opts.concurrency - this.#running.size;
        if (free > 0 && (timedOut || free >= batch)) {
          const tasks = await this.#coordinator.claim(this.id, free);
          if (tasks.length) await this.#take(tasks);
        }
        this.#lastError = undefined;
        timedOut = ended ? true : (await this.#idle(this.#opts.pollIntervalMs)) === 'timer';
      } catch (error) {
        this.#lastError = (error as Error).message;
        this.#log.error({ err: toFleetwardError(error, 'the worker loop') }, 'worker could not take work');
        timedOut = (await this.#idle(this.#opts.pollIntervalMs)) === 'timer';
      }
    }
  }

  /** Records one rollout's end if one is waiting; true when it did. */
  async #takeEnd(): Promise<boolean> {
    const [job] = await this.#boss.fetch<EndJobData>(END_QUEUE, { batchSize: 1 });
    if (!job) return false;
    try {
      const found = await this.#coordinator.tally(job.data.rollout, job.data.generation);
      if (found) {
        const end = decideRolloutEnd(found.tally);
        await this.fleet.rolloutWork.finish(found.ref, {
          status: end.status,
          ...(end.reason ? { reason: end.reason } : {}),
          untouched: end.untouched,
        });
      }
      await this.#coordinator.ended(job.data.rollout, job.data.generation, job.id);
      this.#metrics.rolloutsEnded.inc();
    } catch (error) {
      const failure = toFleetwardError(error, `recording the end of rollout ${job.data.rollout}`);
      this.#log.error(
        { err: failure, rollout: job.data.rollout },
        'worker could not record a run’s end: retried',
      );
      await this.#boss
        .fail(END_QUEUE, job.id, { code: failure.code, message: failure.message })
        .catch(() => undefined);
    }
    return true;
  }

  /**
   * Takes tasks this worker got from the queue: they hold slots at once; their tasks are claimed
   * in the store run by run (one transaction each), then each claimed one is carried out. A task
   * already past pending is reported as it stands, or given back to the live worker running it.
   */
  async #take(tasks: readonly ClaimedTask[]): Promise<void> {
    const byRun = new Map<string, ClaimedTask[]>();
    for (const task of tasks) {
      const controller = new AbortController();
      if (this.#cancelled.has(task.rollout)) controller.abort();
      this.#running.set(keyOf(task), { task, controller });
      byRun.set(task.rollout, [...(byRun.get(task.rollout) ?? []), task]);
    }
    for (const group of byRun.values()) {
      const started = performance.now();
      let claimed: Awaited<ReturnType<Fleet['rolloutWork']['claim']>>;
      try {
        claimed = await this.#retry('claiming tasks in the store', () => this.#claimInStore(group));
      } catch {
        // Stopping while the store is unreachable: the tasks stay this worker's, for a takeover.
        for (const task of group) this.#running.delete(keyOf(task));
        continue;
      }
      claimed.forEach((c, i) => {
        const task = group[i]!;
        if ('claimed' in c) {
          this.#start(task, c, started);
        } else if ('runningOn' in c) {
          // Another worker, alive, runs it (it was taken for dead): the server is its again.
          this.#settle(task, this.#coordinator.reassign(task, this.id, c.runningOn));
        } else {
          this.#settle(task, this.#report(task, c, started));
        }
      });
    }
  }

  #claimInStore(group: readonly ClaimedTask[]) {
    return this.fleet.rolloutWork.claim(
      group[0]!.ref,
      group.map((t) => t.server),
      {
        workerId: this.id,
        ownerAlive: (owner) =>
          owner === this.id ? Promise.resolve(false) : this.#coordinator.alive(owner, this.#opts.takeoverMs),
      },
    );
  }

  /** Frees the task's slot once `work` (its report, or its hand-over) is done. */
  #settle(task: ClaimedTask, work: Promise<void>): void {
    work
      .catch((error: unknown) => {
        this.#log.error(
          { err: error, rollout: task.rollout, serverId: task.server },
          'worker could not report a task',
        );
      })
      .finally(() => {
        this.#running.delete(keyOf(task));
        this.#signalWake();
      });
  }

  /**
   * Carries out a claimed task and reports it. If the work throws (it should not: a failed
   * command is a result), the task is claimed again, which finds it running under this worker and
   * settles it as the workflow's takeover rule says (a script that may have run is failed as
   * interrupted, never run again).
   */
  #start(task: ClaimedTask, server: ClaimedServer, started: number): void {
    const { controller } = this.#running.get(keyOf(task))!;
    const work = async () => {
      let claimed = server;
      let result: RolloutServerOutcome | UnrecordedResult | RunningElsewhere | undefined;
      for (let attempt = 0; result === undefined; attempt++) {
        try {
          result = await this.fleet.rolloutWork.carryOut(claimed, controller.signal);
        } catch (error) {
          const failure = toFleetwardError(error, `server ${task.server} of run ${task.ref.runId}`);
          this.#log.warn(
            { err: failure, runId: task.ref.runId, serverId: task.server, attempt },
            'worker task failed: settling it',
          );
          // Claimed again: the workflow settles it (a script is failed as interrupted) or hands
          // it back to be done again (a scan, which only reads).
          const [again] = await this.#retry('settling a failed task', () => this.#claimInStore([task]));
          if (again && 'claimed' in again) claimed = again;
          else result = again;
        }
      }
      if ('runningOn' in result) return this.#coordinator.reassign(task, this.id, result.runningOn);
      return this.#report(task, result, started);
    };
    this.#settle(task, work());
  }

  /**
   * Queues a finished task for writing and counting. Resolves at once, or once it is counted when
   * more than twice `concurrency` results already wait.
   */
  #report(
    task: ClaimedTask,
    result: RolloutServerOutcome | UnrecordedResult,
    started: number,
  ): Promise<void> {
    const counted = new Promise<void>((settle) => {
      this.#completions.push({ task, result, started, settle });
      this.#flushing ??= this.#flush().finally(() => {
        this.#flushing = undefined;
      });
    });
    // The task's slot frees as soon as its result waits for the flush, so the worker takes more
    // work while a batch is written; once the flush is far behind, slots wait for it (backpressure).
    return this.#completions.length > 2 * this.#opts.concurrency ? counted : Promise.resolve();
  }

  /**
   * Group commit: every finished task waiting is written in one go (`rolloutWork.record`: one
   * transaction per run, so the tenant's audit chain is locked and flushed once per batch, not
   * once per server), then counted into its rollout (one transaction per rollout). While one batch
   * is written the next gathers. A failure is retried until it works: the results are safe in
   * memory and nothing is written twice; if this worker dies first, its tasks are taken over.
   */
  async #flush(): Promise<void> {
    while (this.#completions.length) {
      const batch = this.#completions;
      this.#completions = [];
      const unrecorded = batch.filter((b) => 'unrecorded' in b.result);
      let written: Awaited<ReturnType<Fleet['rolloutWork']['record']>>;
      try {
        written = await this.#retry('writing finished tasks', () =>
          unrecorded.length
            ? this.fleet.rolloutWork.record(
                unrecorded.map((b) => b.result as UnrecordedResult),
                this.id,
              )
            : Promise.resolve([]),
        );
      } catch {
        // Stopping with the store unreachable: these tasks stay this worker's, for a takeover.
        for (const b of [...batch, ...this.#completions.splice(0)]) b.settle();
        return;
      }
      const counted: Pending[] = [];
      for (const b of batch) {
        const i = unrecorded.indexOf(b);
        const result = i >= 0 ? written[i]! : b.result;
        if ('runningOn' in result) {
          // Taken over meanwhile by a live worker (this one was taken for dead): it reports the server.
          await this.#coordinator.reassign(b.task, this.id, result.runningOn).catch(() => undefined);
          b.settle();
          continue;
        }
        b.result = result;
        counted.push(b);
      }
      const completions = counted.map((b) => ({
        rollout: b.task.rollout,
        server: b.task.server,
        outcome: b.result as RolloutServerOutcome,
      }));
      const jobIds = new Map(counted.map((b) => [`${b.task.rollout}\u0000${b.task.server}`, b.task.jobId]));
      // Waves the counting started, kept over retries (each rollout's part commits on its own).
      const announced: WaveAnnouncement[] = [];
      try {
        if (completions.length) {
          await this.#retry('counting finished tasks', () =>
            this.#coordinator.complete(completions, jobIds, announced),
          );
        }
      } catch {
        for (const b of [...counted, ...this.#completions.splice(0)]) b.settle();
        return;
      } finally {
        for (const { ref, start } of announced) {
          await this.fleet.rolloutWork.waveStarted(ref, start).catch((error: unknown) => {
            this.#log.warn(
              { err: error, runId: ref.runId, wave: start.wave },
              'worker could not announce a wave',
            );
          });
        }
      }
      const now = performance.now();
      for (const b of counted) {
        this.#metrics.observe(b.task.ref.kind, b.result as RolloutServerOutcome, (now - b.started) / 1000);
        b.settle();
      }
    }
  }

  /**
   * Tries `fn` until it works, pausing longer each time (up to a minute). Once the worker is
   * stopping it gives up instead (throws): the tasks concerned stay this worker's, and the worker
   * stays in the table until its heartbeat goes silent, so another worker takes them over.
   */
  async #retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        const failure = toFleetwardError(error, what);
        this.#lastError = failure.message;
        if (this.#status !== 'running') {
          this.#abandoned = true;
          throw failure;
        }
        this.#log.error({ err: failure, attempt }, `worker failed ${what}: retrying`);
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(60_000, this.#opts.pollIntervalMs * 2 ** Math.min(attempt, 12))),
        );
      }
    }
  }

  async #beat(): Promise<void> {
    try {
      await this.#coordinator.heartbeat(this.id, hostname(), process.pid);
      this.#lastHeartbeatAt = new Date().toISOString();
      const taken = await this.#coordinator.reap(this.#opts.takeoverMs);
      if (taken > 0) {
        this.#metrics.takeovers.inc(taken);
        this.#log.warn({ tasks: taken }, 'tasks of a dead worker taken over');
      }
      for (const { id, ref, cancelled } of await this.#coordinator.activeRollouts()) {
        if (!cancelled) {
          if (!(await this.fleet.rolloutWork.cancelRequested(ref))) continue;
          await this.#coordinator.cancel(id);
          this.#log.info(
            { runId: ref.runId, tenantId: ref.tenantId },
            'run cancelled: its rollout starts no further server',
          );
        }
        this.#cancelled.add(id);
        for (const r of this.#running.values()) if (r.task.rollout === id) r.controller.abort();
      }
    } catch (error) {
      this.#lastError = (error as Error).message;
      this.#log.error({ err: toFleetwardError(error, 'the worker heartbeat') }, 'worker heartbeat failed');
    }
  }
}
