import PQueue from 'p-queue';
import type { z } from 'zod';
import {
  matchesSelector,
  type RolloutSchema,
  type Server,
  type StopCondition,
  type Wave,
} from '../domain/index.js';

/** Waves, concurrency and error budget of a rollout (the same shape a patch policy uses). */
export type RolloutPolicy = z.output<typeof RolloutSchema>;
export type RolloutPolicyInput = z.input<typeof RolloutSchema>;

/**
 * Where one server is in a rollout. `not-started` servers were never touched because the run
 * stopped (budget spent, lease lost) before their turn; `cancelled` ones because it was cancelled.
 */
export type ServerRunState = 'pending' | 'running' | 'succeeded' | 'failed' | 'not-started' | 'cancelled';

/**
 * Puts each server into the first wave whose selector matches and the rest into a last wave
 * (`remaining`, or `all` when there are no waves). Servers are ordered by id inside each wave, and
 * empty waves are dropped, so equal inputs give equal plans.
 */
export function planWaves(waves: RolloutPolicy['waves'], servers: readonly Server[]): Wave[] {
  const ordered = [...servers].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const planned = waves.map((w) => ({ name: w.name, serverIds: [] as string[] }));
  const rest: string[] = [];
  for (const server of ordered) {
    const index = waves.findIndex((w) => matchesSelector(server, w.selector));
    if (index >= 0) planned[index]!.serverIds.push(server.id);
    else rest.push(server.id);
  }
  if (rest.length) planned.push({ name: planned.length ? 'remaining' : 'all', serverIds: rest });
  return planned.filter((w) => w.serverIds.length > 0);
}

/**
 * The stop condition of a rollout over `total` servers. A percentage budget is rounded down
 * (10% of 15 servers allows 1 failure). The rollout stops starting servers when the failures go
 * one past the budget, like SSM's MaxErrors; servers already running then still finish, so up to
 * `maxConcurrency - 1` more may fail, and the description says so.
 */
export function stopConditionFor(policy: RolloutPolicy, total: number): StopCondition {
  const budget = policy.errorBudget;
  const maxFailures = 'count' in budget ? budget.count : Math.floor((budget.percent * total) / 100);
  const budgetText =
    'count' in budget ? `${budget.count}` : `${budget.percent}% of ${total} = ${maxFailures}`;
  const worst = Math.min(total, maxFailures + Math.max(1, policy.maxConcurrency));
  const parts = [
    maxFailures === 0
      ? `stops starting servers after the first failed server of ${total}`
      : `stops starting servers once more than ${maxFailures} of ${total} servers have failed`,
    `(error budget ${budgetText})`,
  ];
  const sentences = [
    parts.join(' '),
    policy.unreachableCountsAsError
      ? 'unreachable servers count as failed'
      : 'unreachable servers are failed but do not count against the budget',
    'a script that times out counts as failed',
    policy.maxConcurrency > 1 && worst > maxFailures + 1
      ? `up to ${policy.maxConcurrency} servers run at once and those already running finish, so up to ${worst} servers may fail`
      : 'one server runs at a time, so it stops at the first failure past the budget',
    policy.onBudgetSpent === 'pause'
      ? 'then the run pauses and the remaining servers wait for a resume that acknowledges the failures'
      : 'then the run stops and the remaining servers are reported as not started',
  ];
  return {
    errorBudget: budget,
    maxFailures,
    unreachableCountsAsError: policy.unreachableCountsAsError,
    onBudgetSpent: policy.onBudgetSpent,
    description: `${sentences.join('; ')}.`,
  };
}

/** How one server ended, as the caller's `runServer` reports it (after persisting it). */
export interface ServerOutcome {
  state: 'succeeded' | 'failed' | 'cancelled';
  /** False for a failure that does not count (unreachable while `unreachableCountsAsError` is off). */
  countsAgainstBudget: boolean;
  /** Stop the whole rollout after this server, with this reason (e.g. a changed host key). */
  stopRollout?: string;
  /** The failure's error code, for metrics (`COMMAND_FAILED`, `TIMEOUT`, …). */
  code?: string;
}

/** A server's state as the store has it when the rollout (re)starts. */
export interface KnownServerState {
  state: ServerRunState;
  countsAgainstBudget?: boolean;
}

export interface ExecuteRolloutOptions {
  waves: readonly Wave[];
  stopCondition: StopCondition;
  maxConcurrency: number;
  /** Every server's current state. Only `pending` servers are started. */
  states: ReadonlyMap<string, KnownServerState>;
  /** Failures recorded before this call no longer count (resuming a run paused by its budget). */
  acknowledgeFailures?: boolean;
  /** Cancels: no server starts after it fires, and the outcome is `cancelled`. */
  signal?: AbortSignal;
  /** Asked before each server starts; a reason stops the rollout (lease lost, host key changed). */
  checkStop?: () => string | undefined;
  /**
   * Does one server's work, persists its result, and says how it ended. If it throws (the store
   * failed), no further server starts, the running ones are waited for, and the error is rethrown;
   * that server stays `running` in the store, for a resume to deal with.
   */
  runServer: (serverId: string) => Promise<ServerOutcome>;
  onWaveStarted?: (wave: Wave, serverIds: string[]) => void;
}

export interface RolloutOutcome {
  status: 'succeeded' | 'failed' | 'partial' | 'stopped' | 'paused' | 'cancelled';
  /** Why it stopped, paused or was cancelled. */
  reason?: string;
  /** Failures that counted against the budget. */
  failures: number;
  /** Servers still pending: the caller records them as not started or cancelled, or keeps them for a resume. */
  untouched: string[];
  counts: { succeeded: number; failed: number; cancelled: number; untouched: number };
}

/**
 * Runs a rollout: wave after wave, up to `maxConcurrency` servers at a time inside a wave, and no
 * further server once the error budget is spent, `checkStop` gives a reason or `signal` fires.
 * Servers that were already past `pending` (a resumed run) are never started again. The caller
 * persists every state change in `runServer`; this function only decides who runs next.
 *
 * @throws whatever `runServer` threw, once no server of this call is running any more.
 */
export async function executeRollout(options: ExecuteRolloutOptions): Promise<RolloutOutcome> {
  const { stopCondition, signal } = options;
  const states = new Map<string, ServerRunState>();
  let failures = 0;
  for (const [id, known] of options.states) {
    states.set(id, known.state);
    if (!options.acknowledgeFailures && known.state === 'failed' && known.countsAgainstBudget !== false) {
      failures++;
    }
  }
  let stopReason: string | undefined;
  let fatal: { error: unknown } | undefined;
  const budgetSpent = () => failures > stopCondition.maxFailures;
  const halted = () =>
    budgetSpent() || stopReason !== undefined || fatal !== undefined || signal?.aborted === true;

  const start = async (serverId: string) => {
    if (halted()) return;
    const reason = options.checkStop?.();
    if (reason) {
      stopReason ??= reason;
      return;
    }
    states.set(serverId, 'running');
    let outcome: ServerOutcome;
    try {
      outcome = await options.runServer(serverId);
    } catch (error) {
      // Nothing more starts, but the servers already running are waited for: returning (or
      // throwing) while they run would leave work going on that nobody records.
      fatal ??= { error };
      return;
    }
    states.set(serverId, outcome.state);
    if (outcome.state === 'failed' && outcome.countsAgainstBudget) failures++;
    if (outcome.stopRollout) stopReason ??= outcome.stopRollout;
  };

  for (const wave of options.waves) {
    if (halted()) break;
    const pending = wave.serverIds.filter((id) => (states.get(id) ?? 'pending') === 'pending');
    if (pending.length === 0) continue;
    options.onWaveStarted?.(wave, pending);
    const queue = new PQueue({ concurrency: Math.max(1, options.maxConcurrency) });
    await Promise.all(pending.map((id) => queue.add(() => start(id))));
  }

  if (fatal) throw fatal.error;

  const all = options.waves.flatMap((w) => w.serverIds);
  const untouched = all.filter((id) => (states.get(id) ?? 'pending') === 'pending');
  const count = (s: ServerRunState) => all.filter((id) => states.get(id) === s).length;
  return decideRolloutEnd({
    failures,
    maxFailures: stopCondition.maxFailures,
    onBudgetSpent: stopCondition.onBudgetSpent,
    ...(stopReason !== undefined ? { stopReason } : {}),
    cancelled: signal?.aborted === true,
    untouched,
    counts: { succeeded: count('succeeded'), failed: count('failed'), cancelled: count('cancelled') },
  });
}

/** What a rollout's end is decided on: its counters when no server of it runs any more. */
export interface RolloutTally {
  /** Failures that counted against the budget. */
  failures: number;
  maxFailures: number;
  onBudgetSpent: 'stop' | 'pause';
  /** The first reason given to stop (a changed host key, a lost lease). */
  stopReason?: string;
  cancelled: boolean;
  /** Servers never started, in wave order. */
  untouched: string[];
  /** Servers that ended each way (before this rollout or in it). */
  counts: { succeeded: number; failed: number; cancelled: number };
}

/**
 * How a rollout ended, from its tally: cancelled; stopped (or paused) when its budget was spent or
 * it was told to stop with servers left; otherwise succeeded, failed or partial by its servers.
 * {@link executeRollout} and the worker queue (`@fleetward/worker`) decide with it, so a run
 * ends the same way in one process and across many.
 */
export function decideRolloutEnd(tally: RolloutTally): RolloutOutcome {
  const { failures, maxFailures, untouched } = tally;
  const counts = { ...tally.counts, untouched: untouched.length };
  const budgetSpent = failures > maxFailures;
  const budgetText = `${failures} failed server${failures === 1 ? '' : 's'} counted, at most ${maxFailures} allowed`;
  const base = { failures, untouched, counts };
  if (tally.cancelled) return { ...base, status: 'cancelled', reason: 'cancelled' };
  // A run that spent its budget or was told to stop, with servers left, stopped (or paused);
  // one that had nothing left to stop ended like any other, and says why it exceeded its budget.
  const why = budgetSpent ? `error budget spent (${budgetText})` : tally.stopReason;
  if (why && untouched.length > 0) {
    if (budgetSpent && tally.onBudgetSpent === 'pause') {
      return {
        ...base,
        status: 'paused',
        reason: `paused: ${why}; ${untouched.length} server(s) wait for a resume that acknowledges the failures`,
      };
    }
    return { ...base, status: 'stopped', reason: `${why}; ${untouched.length} server(s) not started` };
  }
  if (counts.failed === 0 && counts.cancelled === 0) return { ...base, status: 'succeeded' };
  return { ...base, status: counts.succeeded === 0 ? 'failed' : 'partial', ...(why ? { reason: why } : {}) };
}
