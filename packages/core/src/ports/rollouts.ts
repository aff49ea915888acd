import type { Wave } from '../domain/index.js';

/** The workflows whose per-server tasks a {@link RolloutQueue} can carry. */
export type RolloutKind = 'script' | 'scan' | 'patch';

/** Names one run of one workflow: what a worker loads to carry out a task of it. */
export interface RolloutRef {
  kind: RolloutKind;
  tenantId: string;
  runId: string;
}

/** A server's state when its rollout is handed over: only `pending` servers are started. */
export interface SubmittedServerState {
  state: 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'not-started' | 'cancelled';
  /** False for a failure that does not count against the budget (unreachable, when allowed). */
  countsAgainstBudget?: boolean;
}

/**
 * A run handed to a {@link RolloutQueue}: its waves, limits and every server's state. The run's
 * job, tasks and start audit record are committed before it is submitted.
 */
export interface RolloutSubmission extends RolloutRef {
  jobId: string;
  /** The waves in order; each wave's servers in the order they start. */
  waves: readonly Wave[];
  /** Servers of this run running at once, over all workers. */
  maxConcurrency: number;
  /** The run stops starting servers once more than this many counted failures were recorded. */
  maxFailures: number;
  /** What a spent budget does: stop (untouched servers are not started) or pause (they wait for a resume). */
  onBudgetSpent: 'stop' | 'pause';
  /**
   * Each server's account (`Server.accountId`): the queue keeps per-account caps over all runs with
   * it. A server not listed belongs to no account.
   */
  accounts?: Readonly<Record<string, string>>;
  /** Every server's state now (a resumed run has servers past `pending`). */
  states: Readonly<Record<string, SubmittedServerState>>;
  /** Failures recorded before this submission no longer count (a resume that acknowledges them). */
  acknowledgeFailures: boolean;
}

/** How one server's task ended, as a worker reports it to the queue. */
export interface RolloutServerOutcome {
  /** `skipped`: left alone on purpose, not a failure (a patch that drifted since approval, say). */
  state: 'succeeded' | 'failed' | 'skipped' | 'cancelled';
  /** False for a failure that does not count against the budget. */
  countsAgainstBudget: boolean;
  /** Stop starting servers of the whole run, with this reason (e.g. a changed host key). */
  stopRollout?: string;
  /** The failure's error code (`COMMAND_FAILED`, `TIMEOUT`, `INTERRUPTED`, …), for metrics. */
  code?: string;
}

/** A task another worker, alive, is running: that worker reports it. */
export interface RunningElsewhere {
  /** The worker running it. */
  runningOn: string;
}

/** A task a worker took (pending → running under it): opaque, for {@link RolloutWork.carryOut}. */
export interface ClaimedServer {
  readonly claimed: true;
  readonly ref: RolloutRef;
  readonly serverId: string;
}

/**
 * A task whose work is done but whose result is not written yet: a worker gathers several and
 * writes them together with {@link RolloutWork.record} (one transaction, one turn of the audit
 * chain). Opaque: only the `RolloutWork` that made it can write it.
 */
export interface UnrecordedResult {
  readonly unrecorded: true;
  readonly ref: RolloutRef;
  readonly serverId: string;
}

/** How a whole rollout ended, as the queue hands it to the worker that records the end. */
export interface RolloutEnd {
  status: 'succeeded' | 'failed' | 'partial' | 'stopped' | 'paused' | 'cancelled';
  reason?: string;
  /** Servers never started: recorded as not started (or cancelled), or kept pending by a pause. */
  untouched: string[];
}

/** A wave of a rollout whose first servers were just started (its index in the submission's waves). */
export interface WaveStart {
  wave: number;
  /** The wave's servers not yet finished, in order. */
  serverIds: string[];
}

/** What a submission started at once: the waves whose first servers it queued. */
export interface RolloutSubmitted {
  wavesStarted: WaveStart[];
}

/**
 * Where a run's per-server tasks go when they are carried out by worker processes rather than by
 * the process that started the run (`@fleetward/worker` implements it on PostgreSQL). Set as the
 * `rollouts` option of `createFleet`: a started run is then submitted here, and whichever workers
 * are up carry it out, keeping its waves, concurrency and error budget across all of them.
 */
export interface RolloutQueue {
  /** For error messages and logs. */
  readonly name: string;
  /**
   * Hands a run over. Idempotent for a run whose rollout is already active (a second submit is a
   * no-op); a run whose earlier rollout ended (paused) is submitted afresh. Answers the waves it
   * started, which the submitting workflow announces (a worker announces those it starts later).
   */
  submit(submission: RolloutSubmission): Promise<RolloutSubmitted>;
  /** True while the run's rollout has servers queued or running on workers, or its end is not yet recorded. */
  isActive(ref: RolloutRef): Promise<boolean>;
  /**
   * Starts no further server of the run: its rollout ends as cancelled once nothing of it runs any
   * more (the workers abort what they run of it at their next heartbeat; a workflow that must not be
   * interrupted, like a patch, lets its running servers finish). Nothing happens for a run that is
   * not active.
   */
  cancel(ref: RolloutRef): Promise<void>;
}

/**
 * The work a worker process does for a {@link RolloutQueue}: one server's task of a run, and the
 * recording of a run's end. A `Fleet` provides it as `fleet.rolloutWork`.
 */
export interface RolloutWork {
  /**
   * Takes the tasks of `serverIds` in the run for `workerId`, in one transaction, and answers for
   * each, in order: a {@link ClaimedServer} (the task was pending and is now running here: carry
   * it out), or the outcome of a task that is past `pending` (a finished one's recorded outcome; one
   * left running by a worker that died (`ownerAlive` false), or by this worker itself before it
   * gave the task up, settled as the workflow's takeover rule says: a script is failed as
   * interrupted), or {@link RunningElsewhere} when another live worker runs it.
   */
  claim(
    ref: RolloutRef,
    serverIds: readonly string[],
    options: { workerId: string; ownerAlive: (workerId: string) => Promise<boolean> },
  ): Promise<Array<RolloutServerOutcome | RunningElsewhere | ClaimedServer>>;
  /** Does the work of a claimed task (runs the script); its result is written by `record`. */
  carryOut(server: ClaimedServer, signal: AbortSignal): Promise<UnrecordedResult>;
  /**
   * Writes carried-out results with their audit records, those of one run in one transaction,
   * and answers how each counts, in order. A result is never written over a task another worker
   * took meanwhile (it took this one for dead): a task it settled answers its recorded outcome, one
   * it runs now answers {@link RunningElsewhere} (that worker reports it).
   * Safe to call again with the same results after a failure (nothing is written twice).
   */
  record(
    results: readonly UnrecordedResult[],
    workerId: string,
  ): Promise<Array<RolloutServerOutcome | RunningElsewhere>>;
  /** Records the run's end (untouched servers, job, run, audit, outbox). A run that already ended is left alone. */
  finish(ref: RolloutRef, end: RolloutEnd): Promise<void>;
  /** Whether someone asked for the run to be cancelled: its running tasks are then aborted. */
  cancelRequested(ref: RolloutRef): Promise<boolean>;
  /**
   * Announces that a wave of the run started (its first servers were queued) on this process's
   * events, as the workflow does in one process (`script.wave.started`, `patch.wave.started`).
   */
  waveStarted(ref: RolloutRef, start: WaveStart): Promise<void>;
}
