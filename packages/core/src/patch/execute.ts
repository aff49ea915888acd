import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { z } from 'zod';
import type {
  AuditInput,
  Job,
  PatchPlan,
  PatchPolicy,
  PinnedPackage,
  Server,
  TaskResult,
} from '../domain/index.js';
import { validate } from '../domain/index.js';
import { objectArgument } from '../domain/options.js';
import { runCommand } from '../engine/exec.js';
import { verifiedReboot } from '../engine/reboot.js';
import { isWindowsServer, scanServer } from '../engine/scan.js';
import {
  AbortedError,
  CapabilityMissingError,
  CommandFailedError,
  ConflictError,
  DriftedError,
  type FleetwardError,
  HostKeyMismatchError,
  TimeoutError,
  TransactionRefusedError,
  TransportError,
  toFleetwardError,
} from '../errors.js';
import { refused } from '../kernel/call-audit.js';
import type { CallContext, Occurrence } from '../kernel/context.js';
import type { Escalation } from '../kernel/events.js';
import { jobLogger, logJobFinished, logJobStarted, logServerFailed, startJob } from '../kernel/jobs.js';
import { RunLease } from '../kernel/lease.js';
import type { RedactingLogger } from '../kernel/log.js';
import type { PackageManagerDriver, ParsedInstall, ResolvedTransaction } from '../os/driver.js';
import { parseWindowsPreflight, windowsPreflightCommand } from '../os/windows-host.js';
import type { Command } from '../ports/adapter.js';
import type { RolloutQueue, RolloutRef, SubmittedServerState, WaveStart } from '../ports/rollouts.js';
import { scriptCommand } from '../sop/content.js';
import { sleep } from '../util/sleep.js';
import { describeExclusions, unapprovedExclusions } from './selection.js';
import { canStartWithin, nextWindow, windowAt } from './window.js';

export const ExecuteOptionsSchema = z.strictObject({
  /** Identifies this process in the run's lease. @default a random id */
  holder: z.string().min(1).max(200).optional(),
  /** Block until the maintenance window opens instead of returning a waiting job. @default false */
  waitForWindow: z.boolean().default(false),
  /** Time one server is expected to take; a server is not started unless it fits in the window. @default 900_000 */
  expectedServerMs: z.number().int().min(0).default(900_000),
  /** Limit for each command on a server. @default 1_800_000 */
  commandTimeoutMs: z.number().int().positive().default(1_800_000),
  /** How long a rebooting host may take to come back. @default 600_000 */
  rebootTimeoutMs: z.number().int().positive().default(600_000),
  /** How often to look for a rebooted host, and at the clock while waiting for the window. @default 2000 */
  pollIntervalMs: z.number().int().positive().default(2000),
  /** Minimum free space on `/` (on Windows, the system drive) before installing, in MiB. @default 200 */
  minFreeRootMiB: z.number().int().min(0).default(200),
  /**
   * Resume a run paused by a spent error budget: the failures so far no longer count against it.
   * @default false
   */
  acknowledgeFailures: z.boolean().default(false),
  /** How long the run's lease lasts without renewal: a crashed process's run can be resumed after this. @default 60_000 */
  leaseTtlMs: z.number().int().min(1000).default(60_000),
  /** Minimum free space on `/boot` (when it is a separate file system), in MiB. @default 50 */
  minFreeBootMiB: z.number().int().min(0).default(50),
});
/**
 * Options of `patch.executePlan`. `signal` cancels the run: no further server is started (one in
 * progress finishes its transaction), and the job ends `cancelled`.
 */
export type ExecuteOptions = z.input<typeof ExecuteOptionsSchema> & { signal?: AbortSignal };

const TERMINAL = new Set(['succeeded', 'failed', 'skipped', 'cancelled']);

/** Ends a server's work with an outcome; `unreachable` failures may not count against the budget. */
class ServerFailure extends Error {
  constructor(
    readonly step: string,
    readonly error: FleetwardError,
    readonly unreachable: boolean,
    readonly excerpt?: string,
  ) {
    super(error.message);
  }
}

/** The audit record of one step of one server: what ran, and how it ended. */
interface StepRecord {
  step: string;
  result: 'success' | 'failure';
  reason?: string;
  details?: Record<string, unknown>;
}

const PREFLIGHT_SCRIPT = `# Fleetward preflight: free space (KiB) of / and /boot, one line each.
df -Pk / | awk 'NR==2 { print "root " $4 " " $6 }'
if [ -d /boot ]; then df -Pk /boot | awk 'NR==2 { print "boot " $4 " " $6 }'; fi
`;

// Who holds the package manager: apt's own check takes dpkg's frontend lock (fcntl, so it must
// really be tried); dnf, yum and zypper record their holder in a pid file.
const LOCK_SCRIPT = `if command -v apt-get >/dev/null 2>&1; then
  out=$(LC_ALL=C apt-get check -q 2>&1) || printf 'locked %s\\n' "$(printf '%s' "$out" | grep -m1 'Could not get lock' || printf '%s' "$out" | tail -n 1)"
fi
for f in /var/lib/dnf/rpmdb_lock.pid /var/run/yum.pid /run/zypp.pid; do
  if [ -s "$f" ]; then
    pid=$(head -c 32 "$f" | tr -cd '0-9')
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      printf 'locked %s held by process %s (%s)\\n' "$f" "$pid" "$(cat /proc/$pid/comm 2>/dev/null)"
    fi
  fi
done
`;

// Fetches repository metadata into a throw-away folder: proves the repositories answer without
// changing the lists the approved plan was made from (a refresh could make the host drift).
const REPOS_SCRIPT = `d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
if command -v apt-get >/dev/null 2>&1; then
  mkdir -p "$d/partial"
  LC_ALL=C apt-get -q update -o Debug::NoLocking=1 -o Dir::State::Lists="$d" -o APT::Update::Post-Invoke-Success= 2>&1 | grep -E '^(Err:|W: Failed|E: )' | sed 's/^/unreachable /'
elif command -v dnf >/dev/null 2>&1; then
  LC_ALL=C dnf -q makecache --refresh --setopt=cachedir="$d" --setopt=skip_if_unavailable=False >/dev/null 2>"$d/err" || sed 's/^/unreachable /' "$d/err" | head -n 5
elif command -v zypper >/dev/null 2>&1; then
  LC_ALL=C zypper --non-interactive --cache-dir "$d" refresh >/dev/null 2>"$d/err" || sed 's/^/unreachable /' "$d/err" | head -n 5
fi
exit 0
`;

const samePins = (a: readonly PinnedPackage[], b: readonly PinnedPackage[]) =>
  JSON.stringify(a.map((p) => `${p.name}=${p.version}`).sort()) ===
  JSON.stringify(b.map((p) => `${p.name}=${p.version}`).sort());

/**
 * Executes an approved plan: a persisted state machine with one task per server, run wave by wave
 * inside the maintenance window, stopping when the error budget is spent. Safe to call again after
 * a crash: the run resumes from the store, and no server is patched twice.
 */
export async function executePlan(
  ctx: CallContext,
  planId: string,
  options: ExecuteOptions = {},
): Promise<Job> {
  const { signal, ...rest } = objectArgument(options, 'ExecuteOptions', true);
  const opts = validate(ExecuteOptionsSchema, rest, 'ExecuteOptions');
  const fleet = ctx.runtime;
  const store = fleet.store;
  const tenantId = ctx.tenantId;
  let plan = await store.patchPlans.require(tenantId, planId);
  const policy = await store.patchPolicies.require(tenantId, plan.policyId);
  const servers = new Map(
    (await store.servers.listAll(tenantId, { selector: { ids: plan.servers.map((s) => s.serverId) } })).map(
      (s) => [s.id, s],
    ),
  );
  const { principal, rule } = await ctx.decide(
    'patch.execute',
    [...servers.values()].map((server) => ({ type: 'server', server })),
    { type: 'patch-plan', id: planId },
  );
  const actor = { principalId: principal.id, kind: principal.kind };
  // Refusals after the allow decision are audited as failures of the call (rule 1).
  const refuse = (message: string) =>
    refused(
      ctx,
      principal,
      'patch.execute',
      { type: 'patch-plan', id: planId },
      new ConflictError(message),
      rule,
    );
  if (plan.status !== 'approved' && plan.status !== 'executing') {
    throw await refuse(`plan ${planId} is ${plan.status}; only an approved plan can be executed`);
  }
  if (plan.approvals.filter((a) => a.hash === plan.hash).length < policy.approvers.required) {
    throw await refuse(`plan ${planId} lacks approvals of its current hash`);
  }

  const holder = opts.holder ?? `${process.pid}-${randomUUID()}`;
  const leaseName = `patch-run:${tenantId}:${planId}`;
  const lease = await RunLease.acquire(
    store,
    leaseName,
    holder,
    opts.leaseTtlMs,
    fleet.logger.child({ tenantId, planId }),
  );
  if (!lease) throw await refuse(`plan ${planId} is being executed by another process`);
  const ref: RolloutRef = { kind: 'patch', tenantId, runId: planId };
  if (plan.status === 'executing' && (await fleet.rollouts?.isActive(ref))) {
    await lease.release();
    throw await refuse(
      `plan ${planId} is being executed by workers (${fleet.rollouts!.name}); it cannot be executed again now`,
    );
  }

  const target = { type: 'patch-plan', id: planId };
  const started = (jobId: string, resumed: boolean, details: Record<string, unknown>) =>
    ({
      audit: {
        actor,
        action: 'patch.execute',
        target,
        decision: 'allow',
        ...(rule && !resumed ? { rule } : {}),
        result: 'started',
        details: { planHash: plan.hash, jobId, ...details },
      },
      event: { name: 'patch.run.started', args: [{ tenantId, planId, jobId, resumed }] },
    }) satisfies Occurrence<'patch.run.started'>;

  try {
    const resumed = plan.status === 'executing';
    let job: Job;
    let announce: () => void;
    if (!resumed) {
      const jobId = randomUUID();
      ({ job, announce } = await store.transaction(async (tx) => {
        const { job: created } = await startJob(tx, {
          tenantId,
          jobId,
          kind: 'patch',
          requestedBy: principal.id,
          serverIds: plan.servers.map((s) => s.serverId),
          startedAt: fleet.clock.now().toISOString(),
          task: {
            status: 'pending',
            step: 'pending',
            // Workers read the per-server options from the task they carry out.
            ...(fleet.rollouts ? { details: { execution: serverWorkOptions(opts) } } : {}),
          },
        });
        plan = await tx.patchPlans.update(
          tenantId,
          planId,
          { status: 'executing', jobId },
          { expectedVersion: plan.version },
        );
        const { emit } = await ctx.record(tx, started(jobId, false, { servers: plan.servers.length }));
        return { job: created, announce: emit };
      }));
    } else {
      job = await store.jobs.require(tenantId, plan.jobId!);
      // A job still running with its lease free: the process that ran it is gone.
      if (job.status === 'running') lease.reportTakeover({ planId, jobId: job.id });
      const paused = job;
      ({ job, announce } = await store.transaction(async (tx) => {
        // A paused (or waiting) job runs again: its reason was the pause's, and no longer holds.
        const running =
          paused.status === 'running'
            ? paused
            : await tx.jobs.update(tenantId, paused.id, { status: 'running', reason: undefined } as never, {
                expectedVersion: paused.version,
              });
        const { emit } = await ctx.record(tx, started(running.id, true, { resumed: true }));
        return { job: running, announce: emit };
      }));
    }
    announce();
    const log = jobLogger(fleet.logger, job);
    logJobStarted(log, job, { planId, resumed });

    const tasks = new Map(
      (await store.taskResults.listAll(tenantId, { where: { jobId: job.id } })).map((t) => [t.serverId, t]),
    );

    if (policy.window && !windowAt(policy.window, fleet.clock.now())) {
      const next = nextWindow(policy.window, fleet.clock.now());
      fleet.events.emit('patch.run.waiting', {
        tenantId,
        planId,
        jobId: job.id,
        nextWindow: next?.start.toISOString() ?? null,
      });
      log.info(
        { planId, nextWindow: next?.start.toISOString() ?? null },
        'patch run waiting for its maintenance window',
      );
      const stillWaiting = async (why: string) => {
        job = await store.jobs.update(
          tenantId,
          job.id,
          {
            status: 'pending',
            reason: `waiting for the maintenance window${next ? ` opening ${next.start.toISOString()}` : ' (none ahead)'}${why}`,
          },
          { expectedVersion: job.version },
        );
        logJobFinished(log, job, fleet.clock.now(), { planId });
        return job;
      };
      if (!opts.waitForWindow || !next) return stillWaiting('');
      // The Fleet's clock decides when the window opens, so it is read again after every nap
      // rather than trusted to match one long timer (an injected clock need not follow the machine's).
      for (;;) {
        const now = fleet.clock.now();
        if (windowAt(policy.window, now) || signal?.aborted) break;
        const upcoming = nextWindow(policy.window, now);
        if (!upcoming) break;
        const left = upcoming.start.getTime() - now.getTime();
        await sleep(Math.max(0, Math.min(left, opts.pollIntervalMs)), signal).catch((error: unknown) => {
          if (!(error instanceof AbortedError)) throw error;
        });
      }
      // Stopped while waiting, before any server was touched: only the waiting ends. The plan
      // stays as approved and the run pending, so executing it again waits (or runs) anew.
      if (signal?.aborted && !windowAt(policy.window, fleet.clock.now())) {
        return stillWaiting(' (the caller stopped waiting; nothing was started)');
      }
    }

    const queue = fleet.rollouts;
    if (queue) {
      await submitToWorkers(ctx, queue, { plan, policy, job, tasks, servers }, opts, resumed);
      // Workers carry it out now; this call waits for its end as an in-process run would.
      await lease.release();
      return await waitForEnd(ctx, queue, plan, job.id, signal);
    }
    const patcher = new ServerPatcher(ctx, { plan, policy, job, tasks }, opts, log, {
      actor,
      ...(rule ? { rule } : {}),
    });
    const run = new RunState(patcher, servers, opts, signal, () => lease.held);
    const outcome = await run.execute();
    job = await recordRunEnd(ctx, { plan, job, actor, outcome, counts: run.counts(), log });
    if (outcome.status === 'stopped' || outcome.status === 'pending') {
      run.escalate({ kind: 'run-stopped', reason: outcome.reason ?? 'stopped' });
    }
    return job;
  } finally {
    await lease.release();
  }
}

/**
 * Hands a run to the worker queue: the tasks not finished get the per-server options (a resumed
 * run may change them), then the submission with every server's state. A task left running by a
 * process that died is submitted as not finished: the worker that takes it continues from its last
 * step done, as a resumed run in one process does.
 */
async function submitToWorkers(
  ctx: CallContext,
  queue: RolloutQueue,
  run: {
    plan: PatchPlan;
    policy: PatchPolicy;
    job: Job;
    tasks: Map<string, TaskResult>;
    servers: Map<string, Server>;
  },
  opts: z.output<typeof ExecuteOptionsSchema>,
  resumed: boolean,
): Promise<void> {
  const { plan, policy, job, tasks, servers } = run;
  if (resumed) {
    const execution = serverWorkOptions(opts);
    await ctx.runtime.store.transaction(async (tx) => {
      for (const task of tasks.values()) {
        if (TERMINAL.has(task.status)) continue;
        tasks.set(
          task.serverId,
          await tx.taskResults.update(
            ctx.tenantId,
            task.id,
            { details: { ...task.details, execution } },
            { expectedVersion: task.version },
          ),
        );
      }
    });
  }
  const states: Record<string, SubmittedServerState> = {};
  for (const task of tasks.values()) {
    states[task.serverId] =
      task.status === 'pending' || task.status === 'running'
        ? { state: 'pending' }
        : {
            state: task.status,
            countsAgainstBudget: task.details?.['countsAgainstBudget'] !== false,
          };
  }
  const { wavesStarted } = await queue.submit({
    kind: 'patch',
    tenantId: ctx.tenantId,
    runId: plan.id,
    jobId: job.id,
    waves: plan.waves,
    accounts: Object.fromEntries([...servers.values()].map((s) => [s.id, s.accountId])),
    maxConcurrency: policy.rollout.maxConcurrency,
    maxFailures: plan.stopCondition.maxFailures,
    onBudgetSpent: policy.rollout.onBudgetSpent,
    states,
    acknowledgeFailures: opts.acknowledgeFailures,
  });
  for (const start of wavesStarted) announceWave(ctx, plan, job.id, start);
}

/** Emits `patch.wave.started` for a wave the queue started, in the process that started it. */
export function announceWave(ctx: CallContext, plan: PatchPlan, jobId: string, start: WaveStart): void {
  const wave = plan.waves[start.wave];
  if (!wave) return;
  ctx.runtime.events.emit('patch.wave.started', {
    tenantId: ctx.tenantId,
    planId: plan.id,
    jobId,
    wave: wave.name,
    serverIds: start.serverIds,
  });
}

/**
 * Waits for a run carried out by workers to end (or pause), reading its job every 200 ms. An abort
 * of `signal` asks the queue once to start no further server; the call keeps waiting for the end,
 * which is then `cancelled`.
 */
async function waitForEnd(
  ctx: CallContext,
  queue: RolloutQueue,
  plan: PatchPlan,
  jobId: string,
  signal: AbortSignal | undefined,
): Promise<Job> {
  let cancelAsked = false;
  for (;;) {
    const job = await ctx.runtime.store.jobs.require(ctx.tenantId, jobId);
    if (job.status !== 'running') return job;
    if (signal?.aborted && !cancelAsked) {
      cancelAsked = true;
      await queue.cancel({ kind: 'patch', tenantId: ctx.tenantId, runId: plan.id });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Records the end of a patch run in one transaction: the job's status and summary, the plan's
 * status (a paused run's plan stays executing), the audit record, the outbox event and the
 * `patch.run.completed` event. The in-process run and the worker that ends a run both call it. A
 * job no longer `running` was ended already: nothing is written, and the job is answered as it is.
 */
export async function recordRunEnd(
  ctx: CallContext,
  input: {
    plan: PatchPlan;
    job: Job;
    actor: AuditInput['actor'];
    outcome: { status: Job['status']; reason?: string };
    counts: ReturnType<typeof countTasks>;
    log: RedactingLogger;
  },
): Promise<Job> {
  const { plan, job, actor, outcome, counts } = input;
  const fleet = ctx.runtime;
  const tenantId = ctx.tenantId;
  const planId = plan.id;
  const target = { type: 'patch-plan', id: planId };
  const ended = await fleet.store.transaction(async (tx) => {
    const current = await tx.jobs.require(tenantId, job.id);
    // Recorded already (a second worker given the same end): written once, announced once.
    if (current.status !== 'running') return { finished: current, emit: undefined };
    const finished = await tx.jobs.update(
      tenantId,
      job.id,
      {
        status: outcome.status,
        finishedAt: fleet.clock.now().toISOString(),
        summary: { total: plan.servers.length, succeeded: counts.succeeded, failed: counts.failed },
        ...(outcome.reason ? { reason: outcome.reason } : {}),
      },
      { expectedVersion: current.version },
    );
    if (outcome.status !== 'pending') {
      const currentPlan = await tx.patchPlans.require(tenantId, planId);
      await tx.patchPlans.update(
        tenantId,
        planId,
        {
          status:
            outcome.status === 'stopped'
              ? 'stopped'
              : outcome.status === 'cancelled'
                ? 'cancelled'
                : 'completed',
        },
        { expectedVersion: currentPlan.version },
      );
    }
    const reason = outcome.reason ? { reason: outcome.reason } : {};
    const { emit } = await ctx.record(tx, {
      audit: {
        actor,
        action: 'patch.execute',
        target,
        decision: 'allow',
        result: outcome.status === 'succeeded' ? 'success' : 'failure',
        ...reason,
        details: { planHash: plan.hash, jobId: job.id, status: outcome.status, ...counts },
      },
      outbox: {
        eventType: 'patch.run.completed',
        payload: {
          tenantId,
          planId,
          planHash: plan.hash,
          jobId: job.id,
          status: outcome.status,
          ...reason,
          ...counts,
        },
      },
      event: {
        name: 'patch.run.completed',
        args: [{ tenantId, planId, jobId: job.id, status: finished.status, ...reason }],
      },
    });
    return { finished, emit };
  });
  if (!ended.emit) return ended.finished;
  ended.emit();
  logJobFinished(input.log, ended.finished, fleet.clock.now(), {
    planId,
    skipped: counts.skipped,
    notStarted: counts.notStarted,
  });
  return ended.finished;
}

/** Options the per-server work reads (the rest concern the run: its lease, its window wait). */
export type ServerWorkOptions = Pick<
  z.output<typeof ExecuteOptionsSchema>,
  | 'expectedServerMs'
  | 'commandTimeoutMs'
  | 'rebootTimeoutMs'
  | 'pollIntervalMs'
  | 'minFreeRootMiB'
  | 'minFreeBootMiB'
>;

/** The per-server options as kept in a task's details for the worker that carries it out. */
export function serverWorkOptions(opts: ServerWorkOptions): ServerWorkOptions {
  return {
    expectedServerMs: opts.expectedServerMs,
    commandTimeoutMs: opts.commandTimeoutMs,
    rebootTimeoutMs: opts.rebootTimeoutMs,
    pollIntervalMs: opts.pollIntervalMs,
    minFreeRootMiB: opts.minFreeRootMiB,
    minFreeBootMiB: opts.minFreeBootMiB,
  };
}

/** How one server's patching ended, before it is written. */
export interface ServerEnd {
  status: 'succeeded' | 'failed' | 'skipped';
  failure?: ServerFailure | string;
}

/** What a server's end writes, and how the run counts it. */
export interface ServerEnding {
  changes: Partial<TaskResult>;
  audit?: AuditInput;
  error?: { code: string; message: string };
  countsAgainstBudget: boolean;
  /** Set when the server answered with another host key: the run starts no other server. */
  hostKeyStop?: string;
}

/**
 * Thrown by a save of a worker whose task was taken over by another worker (it took this one for
 * dead): this worker stops working on the server at once.
 */
export class TaskTakenOver extends Error {
  constructor(readonly owner: string | undefined) {
    super(`the task is now carried out by ${owner ?? 'no worker'}`);
  }
}

/** One execution of a plan, in memory; every decision it makes is written to the store first. */
class RunState {
  readonly #ctx: CallContext;
  readonly #plan: PatchPlan;
  readonly #policy: PatchPolicy;
  readonly #patcher: ServerPatcher;
  readonly #servers: Map<string, Server>;
  readonly #opts: z.output<typeof ExecuteOptionsSchema>;
  readonly #signal: AbortSignal | undefined;
  readonly #leaseHeld: () => boolean;
  #failures = 0;
  #stopReason: string | undefined;
  /** Set as soon as a server answers with another host key: it ends the run, whatever the budget. */
  #hostKeyStop: string | undefined;

  constructor(
    patcher: ServerPatcher,
    servers: Map<string, Server>,
    opts: z.output<typeof ExecuteOptionsSchema>,
    signal: AbortSignal | undefined,
    leaseHeld: () => boolean,
  ) {
    this.#patcher = patcher;
    this.#ctx = patcher.ctx;
    this.#plan = patcher.plan;
    this.#policy = patcher.policy;
    this.#leaseHeld = leaseHeld;
    this.#servers = servers;
    this.#opts = opts;
    this.#signal = signal;
    if (!opts.acknowledgeFailures) {
      for (const task of patcher.tasks.values()) {
        if (task.status === 'failed' && task.details?.['countsAgainstBudget'] !== false) this.#failures++;
      }
    }
  }

  counts() {
    return countTasks(this.#patcher.tasks.values());
  }

  get #budgetSpent() {
    return this.#failures > this.#plan.stopCondition.maxFailures;
  }

  escalate(e: Omit<Escalation, 'tenantId' | 'planId' | 'planHash' | 'jobId'>) {
    this.#patcher.escalate(e);
  }

  async execute(): Promise<{ status: Job['status']; reason?: string }> {
    const tasks = this.#patcher.tasks;
    for (const wave of this.#plan.waves) {
      if (this.#budgetSpent || this.#stopReason || this.#hostKeyStop || this.#signal?.aborted) break;
      const pending = wave.serverIds.filter((id) => !TERMINAL.has(tasks.get(id)?.status ?? 'pending'));
      if (pending.length === 0) continue;
      this.#ctx.runtime.events.emit('patch.wave.started', {
        tenantId: this.#ctx.tenantId,
        planId: this.#plan.id,
        jobId: this.#patcher.job.id,
        wave: wave.name,
        serverIds: pending,
      });
      const queue = new PQueue({ concurrency: this.#policy.rollout.maxConcurrency });
      await Promise.all(pending.map((id) => queue.add(() => this.#runServer(id))));
    }
    if (this.#hostKeyStop) {
      // Not a pause: a server that may be an impostor needs a person, and a new plan, first.
      await markNotStarted(this.#patcher, 'skipped', `not started: ${this.#hostKeyStop}`);
      return { status: 'stopped', reason: this.#hostKeyStop };
    }
    if (this.#budgetSpent && !this.#signal?.aborted && this.#policy.rollout.onBudgetSpent === 'pause') {
      // Paused, not ended: the untouched servers stay pending for a resume that acknowledges the failures.
      return {
        status: 'pending',
        reason: `paused: error budget spent (${this.#failures} failed servers, at most ${this.#plan.stopCondition.maxFailures} allowed); execute again with acknowledgeFailures to continue`,
      };
    }
    await markNotStarted(
      this.#patcher,
      this.#signal?.aborted ? 'cancelled' : 'skipped',
      this.#signal?.aborted
        ? 'not started: the run was cancelled'
        : this.#budgetSpent
          ? 'not started: the error budget was spent'
          : (this.#stopReason ?? 'not started'),
    );
    if (this.#signal?.aborted) return { status: 'cancelled', reason: 'cancelled by the caller' };
    if (this.#budgetSpent) {
      return {
        status: 'stopped',
        reason: `error budget spent: ${this.#failures} failed servers, at most ${this.#plan.stopCondition.maxFailures} allowed`,
      };
    }
    if (this.#stopReason) return { status: 'stopped', reason: this.#stopReason };
    return endByCounts(this.counts());
  }

  async #runServer(serverId: string): Promise<void> {
    const ctx = this.#ctx;
    if (this.#budgetSpent || this.#stopReason || this.#hostKeyStop || this.#signal?.aborted) return;
    if (!this.#leaseHeld()) {
      // Another process may own the run now: starting more servers here could patch one twice.
      this.#stopReason ??= 'this process lost the run’s lease';
      return;
    }
    const window = this.#policy.window;
    if (window && !canStartWithin(window, ctx.runtime.clock.now(), this.#opts.expectedServerMs)) {
      this.#stopReason ??= WINDOW_CLOSING;
      return;
    }
    const patcher = this.#patcher;
    const task = patcher.tasks.get(serverId)!;
    if (task.status === 'pending') {
      await patcher.save(serverId, {
        status: 'running',
        attempt: task.attempt + 1,
        startedAt: patcher.now(),
      });
    } else {
      await patcher.save(serverId, { attempt: task.attempt + 1 });
    }
    const server = this.#servers.get(serverId);
    const end = await patcher.work(serverId, server);
    const ending = patcher.ending(serverId, server?.name ?? serverId, patcher.tasks.get(serverId)!, end);
    // Before any await: servers queued behind this one must see the stop when they start.
    if (ending.hostKeyStop) this.#hostKeyStop ??= ending.hostKeyStop;
    if (ending.countsAgainstBudget) this.#failures++;
    await patcher.save(serverId, ending.changes, ending.audit);
    patcher.announce(serverId, end, ending);
  }
}

/** Why a run stops starting servers near the end of its maintenance window. */
export const WINDOW_CLOSING = 'the maintenance window closes before another server could finish';

/** Servers of a run by how their tasks ended. */
export function countTasks(tasks: Iterable<TaskResult>) {
  const counts = { succeeded: 0, failed: 0, skipped: 0, notStarted: 0 };
  for (const t of tasks) {
    if (t.status === 'succeeded') counts.succeeded++;
    else if (t.status === 'failed') counts.failed++;
    else if (t.status === 'skipped') counts.skipped++;
    else if (t.status === 'pending') counts.notStarted++;
  }
  return counts;
}

/** How a run that was not stopped ended, by its servers. */
export function endByCounts(c: ReturnType<typeof countTasks>): { status: Job['status'] } {
  if (c.failed === 0 && c.skipped === 0) return { status: 'succeeded' };
  return { status: c.succeeded === 0 && c.skipped === 0 ? 'failed' : 'partial' };
}

/** Ends the tasks never started (still pending) as skipped or cancelled, with `reason`. */
export async function markNotStarted(
  patcher: ServerPatcher,
  status: 'skipped' | 'cancelled',
  reason: string,
): Promise<void> {
  for (const task of [...patcher.tasks.values()]) {
    if (task.status !== 'pending') continue;
    await patcher.save(task.serverId, {
      status,
      finishedAt: patcher.now(),
      error: { code: 'NOT_STARTED', message: reason },
    });
  }
}

/**
 * The work on one server of a patch run, step by step, each step written before and after it runs
 * so a run taken up again (by a resumed call, or a worker taking over a dead one's task) continues
 * from the last step done. The in-process run and the worker side (`createPatchRolloutWork`) both
 * patch through it.
 */
export class ServerPatcher {
  readonly #ctx: CallContext;
  readonly #plan: PatchPlan;
  readonly #policy: PatchPolicy;
  readonly #job: Job;
  readonly #tasks: Map<string, TaskResult>;
  readonly #opts: ServerWorkOptions;
  readonly #log: RedactingLogger;
  readonly #by: Pick<AuditInput, 'actor' | 'rule'>;
  readonly #owner: string | undefined;

  /**
   * @param owner the worker carrying the tasks out: every save first checks that the task is still
   *   running under it, and throws {@link TaskTakenOver} otherwise. Undefined in one process.
   */
  constructor(
    ctx: CallContext,
    run: { plan: PatchPlan; policy: PatchPolicy; job: Job; tasks: Map<string, TaskResult> },
    opts: ServerWorkOptions,
    log: RedactingLogger,
    by: Pick<AuditInput, 'actor' | 'rule'>,
    owner?: string,
  ) {
    this.#ctx = ctx;
    this.#plan = run.plan;
    this.#policy = run.policy;
    this.#job = run.job;
    this.#tasks = run.tasks;
    this.#opts = opts;
    this.#log = log;
    this.#by = by;
    this.#owner = owner;
  }

  get ctx() {
    return this.#ctx;
  }
  get plan() {
    return this.#plan;
  }
  get policy() {
    return this.#policy;
  }
  get job() {
    return this.#job;
  }
  /** The tasks as last written, by server. */
  get tasks(): Map<string, TaskResult> {
    return this.#tasks;
  }

  now() {
    return this.#ctx.runtime.clock.now().toISOString();
  }

  escalate(e: Omit<Escalation, 'tenantId' | 'planId' | 'planHash' | 'jobId'>) {
    this.#ctx.runtime.events.emit('patch.escalation', {
      tenantId: this.#ctx.tenantId,
      planId: this.#plan.id,
      planHash: this.#plan.hash,
      jobId: this.#job.id,
      ...e,
    });
  }

  /**
   * Patches one server whose task is running (under this process or worker): every step not yet
   * done, in order. Answers how it ended; nothing of the end is written yet ({@link ending}).
   * @throws TaskTakenOver when another worker took the task over meanwhile.
   */
  async work(serverId: string, server: Server | undefined): Promise<ServerEnd> {
    const planned = this.#plan.servers.find((s) => s.serverId === serverId)!;
    if (!server) return { status: 'failed', failure: 'the server no longer exists in the inventory' };
    if (planned.blocked) return { status: 'skipped', failure: `blocked at planning: ${planned.blocked}` };
    if (planned.resolved.length === 0) return { status: 'succeeded' };
    try {
      await this.#patchServer(server, planned.resolved, planned.selected);
      return { status: 'succeeded' };
    } catch (error) {
      if (error instanceof TaskTakenOver) throw error;
      if (error instanceof ServerFailure) {
        const blocked = error.error instanceof DriftedError || error.error instanceof TransactionRefusedError;
        return { status: blocked ? 'skipped' : 'failed', failure: error };
      }
      const e = toFleetwardError(error, `patching ${server.name}`);
      return {
        status: 'failed',
        failure: new ServerFailure(this.#tasks.get(serverId)?.step ?? 'unknown', e, false),
      };
    }
  }

  /** What the end of a server writes over its task `current`, and how the run counts it. */
  ending(serverId: string, serverName: string, current: TaskResult, end: ServerEnd): ServerEnding {
    const { status, failure } = end;
    const hostKeyStop =
      failure instanceof ServerFailure && failure.error instanceof HostKeyMismatchError
        ? `the host key of ${serverName} changed (at ${failure.step}); no other server is started`
        : undefined;
    const error =
      failure instanceof ServerFailure
        ? { code: failure.error.code, message: `${failure.step}: ${failure.error.message}`.slice(0, 4000) }
        : failure
          ? { code: status === 'skipped' ? 'SKIPPED' : 'FAILED', message: failure }
          : undefined;
    const countsAgainstBudget =
      status === 'failed' &&
      !(
        failure instanceof ServerFailure &&
        failure.unreachable &&
        !this.#plan.stopCondition.unreachableCountsAsError
      );
    // A failed install keeps what the tool said of each package (Windows Update's per-update results).
    const results = failure instanceof ServerFailure ? failure.error.details?.['results'] : undefined;
    const installResults = Array.isArray(results) ? { installResults: results } : {};
    const changes: Partial<TaskResult> = {
      status,
      finishedAt: this.now(),
      ...(error ? { error } : {}),
      details: { ...current.details, countsAgainstBudget, ...installResults },
    };
    const audit =
      failure instanceof ServerFailure && error
        ? this.#stepAudit(serverId, current, {
            step: failure.step,
            result: 'failure',
            reason: `${error.code}: ${error.message}`,
            details: { code: error.code, status, ...installResults },
          })
        : undefined;
    return {
      changes,
      ...(audit ? { audit } : {}),
      ...(error ? { error } : {}),
      countsAgainstBudget,
      ...(hostKeyStop ? { hostKeyStop } : {}),
    };
  }

  /** Tells the world a server's end was written: its event, the log, an escalation for a failure. */
  announce(serverId: string, end: ServerEnd, ending: ServerEnding): void {
    const { status, failure } = end;
    const { error } = ending;
    this.#ctx.runtime.events.emit('patch.server.completed', {
      tenantId: this.#ctx.tenantId,
      planId: this.#plan.id,
      jobId: this.#job.id,
      serverId,
      status,
      ...(error ? { reason: error.message } : {}),
    });
    const step = failure instanceof ServerFailure ? { step: failure.step } : {};
    if (status === 'failed' && error) logServerFailed(this.#log, serverId, error, step);
    if (status === 'skipped' && error) {
      this.#log.info({ serverId, code: error.code, error: error.message, ...step }, 'server skipped');
    }
    if (status === 'failed') {
      this.escalate({
        kind: 'server-failed',
        serverId,
        step:
          failure instanceof ServerFailure ? failure.step : (this.#tasks.get(serverId)?.step ?? 'unknown'),
        reason: error?.message ?? 'failed',
        ...(failure instanceof ServerFailure && failure.excerpt ? { outputExcerpt: failure.excerpt } : {}),
      });
    }
  }

  /**
   * Writes the task, and with `audit` the step's audit record in the same transaction: a step
   * recorded as done in the task always has its record, and a resumed run never records it twice.
   * A worker's save checks first that the task is still running under it.
   * @throws TaskTakenOver when another worker took the task over.
   */
  async save(
    serverId: string,
    changes: Partial<TaskResult>,
    audit?: StepRecord | AuditInput,
  ): Promise<TaskResult> {
    const store = this.#ctx.runtime.store;
    for (let attempt = 0; ; attempt++) {
      try {
        const saved = await store.transaction(async (tx) => {
          const current = await tx.taskResults.require(this.#ctx.tenantId, `${this.#job.id}:${serverId}`);
          if (this.#owner !== undefined) {
            const owner = current.details?.['workerId'];
            if (current.status !== 'running' || owner !== this.#owner) {
              throw new TaskTakenOver(current.status === 'running' ? String(owner) : undefined);
            }
          }
          const updated = await tx.taskResults.update(this.#ctx.tenantId, current.id, changes as never, {
            expectedVersion: current.version,
          });
          if (audit) {
            await this.#ctx.runtime.audit(
              tx,
              'tenantId' in audit ? audit : this.#stepAudit(serverId, updated, audit),
            );
          }
          return updated;
        });
        this.#tasks.set(serverId, saved);
        return saved;
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt > 3) throw error;
      }
    }
  }

  #stepAudit(serverId: string, task: TaskResult, record: StepRecord): AuditInput {
    return {
      tenantId: this.#ctx.tenantId,
      ...this.#by,
      action: 'patch.step',
      target: { type: 'server', id: serverId },
      decision: 'allow',
      result: record.result,
      ...(record.reason ? { reason: record.reason.slice(0, 2000) } : {}),
      details: {
        planId: this.#plan.id,
        planHash: this.#plan.hash,
        jobId: this.#job.id,
        serverId,
        step: record.step,
        attempt: task.attempt,
        ...record.details,
      },
    };
  }

  async #step(serverId: string, step: string, details?: Record<string, unknown>, audit?: StepRecord) {
    const task = this.#tasks.get(serverId)!;
    await this.save(
      serverId,
      { step, ...(details ? { details: { ...task.details, ...details } } : {}) },
      audit,
    );
    this.#ctx.runtime.events.emit('patch.server.step', {
      tenantId: this.#ctx.tenantId,
      planId: this.#plan.id,
      jobId: this.#job.id,
      serverId,
      step,
    });
  }

  async #exec(server: Server, step: string, command: Command, timeoutMs = this.#opts.commandTimeoutMs) {
    try {
      // Cancellation stops new servers only: killing a package manager mid-transaction would
      // leave the host worse off than finishing (or timing out) cleanly.
      return await runCommand(this.#ctx.runtime.adapterFor(server), server, command, { timeoutMs });
    } catch (error) {
      const e = toFleetwardError(error, `${step} on ${server.name}`);
      throw new ServerFailure(step, e, e instanceof TransportError || e instanceof TimeoutError);
    }
  }

  #driver(server: Server): PackageManagerDriver {
    const os = server.os;
    const driver = os && this.#ctx.runtime.drivers.find((d) => d.supports(os));
    if (!driver?.installCommand || !driver.installedVersionsCommand || !driver.parseInstalledVersions) {
      throw new ServerFailure(
        'preflight',
        new CapabilityMissingError(`no driver can install on ${server.name}`),
        false,
      );
    }
    return driver;
  }

  async #patchServer(
    server: Server,
    resolved: PatchPlan['servers'][number]['resolved'],
    selected: PinnedPackage[],
  ) {
    const ctx = this.#ctx;
    const id = server.id;
    const driver = this.#driver(server);
    const adapter = ctx.runtime.adapterFor(server);
    const done = (step: string) =>
      (this.#tasks.get(id)!.details?.['done'] as string[] | undefined)?.includes(step) ?? false;
    const markDone = (step: string, record?: Omit<StepRecord, 'result'>) =>
      this.#step(
        id,
        step,
        { done: [...((this.#tasks.get(id)!.details?.['done'] as string[] | undefined) ?? []), step] },
        record && { ...record, result: 'success' },
      );

    if (!done('preflight')) {
      await this.#step(id, 'preflight');
      if (isWindowsServer(server)) {
        await this.#preflightWindows(server);
        await markDone('preflight', { step: 'preflight' });
      }
    }
    if (!done('preflight')) {
      if (
        (this.#policy.backups === 'pre' ||
          this.#policy.backups === 'both' ||
          this.#policy.backups === 'post') &&
        !adapter.snapshot
      ) {
        throw new ServerFailure(
          'preflight',
          new CapabilityMissingError(`policy requires backups but adapter ${adapter.name} cannot snapshot`),
          false,
        );
      }
      // Root first: the lock and repository checks run through sudo, and a sudo that refuses
      // would make them print nothing, which reads as "no lock held, repositories fine".
      const sudo = await this.#exec(server, 'preflight', { argv: ['true'], sudo: true }, 60_000);
      if (sudo.exitCode !== 0) {
        throw new ServerFailure(
          'preflight',
          new CommandFailedError(`cannot run as root: ${sudo.stderr.trim() || `exit ${sudo.exitCode}`}`),
          false,
          sudo.stderr.slice(-1000),
        );
      }
      const df = await this.#exec(
        server,
        'preflight',
        { interpreter: ['sh', '-s'], script: PREFLIGHT_SCRIPT, env: { LC_ALL: 'C' } },
        120_000,
      );
      for (const line of df.stdout.split('\n')) {
        const [which, kib] = line.split(' ');
        const min =
          which === 'root'
            ? this.#opts.minFreeRootMiB
            : which === 'boot'
              ? this.#opts.minFreeBootMiB
              : undefined;
        if (min !== undefined && Number(kib) < min * 1024) {
          throw new ServerFailure(
            'preflight',
            new CommandFailedError(
              `only ${Math.floor(Number(kib) / 1024)} MiB free on ${which === 'root' ? '/' : '/boot'}, need ${min}`,
            ),
            false,
          );
        }
      }
      const locks = await this.#exec(
        server,
        'preflight',
        { interpreter: ['sh', '-s'], script: LOCK_SCRIPT, sudo: true },
        120_000,
      );
      const held = locks.stdout.split('\n').filter((l) => l.startsWith('locked '));
      if (held.length) {
        throw new ServerFailure(
          'preflight',
          new CommandFailedError(
            `the package manager is not ready: ${held.map((l) => l.slice(7)).join('; ')}`,
            { retryable: true },
          ),
          false,
        );
      }
      const repos = await this.#exec(
        server,
        'preflight',
        { interpreter: ['sh', '-s'], script: REPOS_SCRIPT, sudo: true },
        300_000,
      );
      const unreachable = repos.stdout.split('\n').filter((l) => l.startsWith('unreachable '));
      if (unreachable.length) {
        throw new ServerFailure(
          'preflight',
          new CommandFailedError(
            `repositories are not reachable: ${unreachable
              .map((l) => l.slice(12))
              .join('; ')
              .slice(0, 1000)}`,
            { retryable: true },
          ),
          false,
        );
      }
      await markDone('preflight', { step: 'preflight' });
    }

    if (!done('install')) {
      if (!done('drift')) {
        await this.#step(id, 'drift-check');
        const fresh = await scanServer(server, {
          adapter,
          drivers: ctx.runtime.drivers,
          timeoutMs: this.#opts.commandTimeoutMs,
        }).catch((error) => {
          const e = toFleetwardError(error, `rescanning ${server.name}`);
          throw new ServerFailure('drift-check', e, e instanceof TransportError || e instanceof TimeoutError);
        });
        const pending = new Map((fresh.patches ?? []).map((p) => [p.name, p.candidateVersion]));
        const changed = selected.filter((p) => pending.get(p.name) !== p.version);
        let drift = changed.length
          ? `pending versions changed since approval: ${changed.map((p) => `${p.name} ${p.version} -> ${pending.get(p.name) ?? 'none'}`).join(', ')}`
          : '';
        let tx: ResolvedTransaction | undefined;
        if (!drift && driver.simulateInstallCommand && driver.parseSimulateInstall) {
          const simulated = await this.#exec(server, 'drift-check', driver.simulateInstallCommand(resolved));
          try {
            tx = driver.parseSimulateInstall(simulated);
          } catch (error) {
            throw new ServerFailure(
              'drift-check',
              toFleetwardError(error, 'install simulation'),
              false,
              `${simulated.stdout}\n${simulated.stderr}`.slice(-2000),
            );
          }
          if (tx.remove.length) {
            throw new ServerFailure(
              'drift-check',
              new TransactionRefusedError(
                `the transaction would remove packages: ${tx.remove.join(', ')}; a patch run never removes a package`,
                { details: { refused: 'removal', packages: tx.remove } },
              ),
              false,
            );
          }
        }
        if (!drift) this.#refuseExclusions([...(tx?.install ?? []), ...resolved], selected);
        if (!drift && tx && !samePins(tx.install, resolved))
          drift = 'the resolved transaction changed since approval';
        if (drift) throw new ServerFailure('drift-check', new DriftedError(`drifted: ${drift}`), false);
        await markDone('drift', { step: 'drift-check' });
      }
      if ((this.#policy.backups === 'pre' || this.#policy.backups === 'both') && !done('backup-pre')) {
        await this.#step(id, 'backup-pre');
        const snap = await adapter.snapshot!.snapshot(server, {
          label: `fleetward-${this.#plan.id}-pre`,
        });
        await this.#step(id, 'backup-pre', { preSnapshotId: snap.snapshotId });
        await markDone('backup-pre', { step: 'backup-pre', details: { snapshotId: snap.snapshotId } });
      }
      if (!done('pre-scripts')) {
        await this.#runScripts(server, 'pre-scripts', this.#policy.preScripts);
        await markDone(
          'pre-scripts',
          this.#policy.preScripts.length
            ? { step: 'pre-scripts', details: { scripts: this.#policy.preScripts } }
            : undefined,
        );
      }
      await this.#step(id, 'install');
      const installed = await this.#exec(server, 'install', driver.installCommand!(resolved));
      let outcome: ParsedInstall | undefined;
      try {
        outcome = driver.parseInstall?.(installed);
        if (!driver.parseInstall && installed.exitCode !== 0)
          throw new CommandFailedError(`install exited ${installed.exitCode}`);
      } catch (error) {
        throw new ServerFailure(
          'install',
          toFleetwardError(error, 'install'),
          false,
          `${installed.stdout}\n${installed.stderr}`.slice(-2000),
        );
      }
      if (outcome?.results) await this.#step(id, 'install', { installResults: outcome.results });
      await markDone('install', {
        step: 'install',
        details: {
          packages: resolved.map((p) => `${p.name}=${p.version}`),
          ...(outcome?.results ? { results: outcome.results } : {}),
          ...(outcome?.warnings.length ? { warnings: outcome.warnings } : {}),
          ...(outcome?.rebootRequired ? { rebootRequired: true } : {}),
        },
      });
    }

    if (!done('reboot')) {
      const policy = this.#policy.reboot;
      let reboot = policy === 'always';
      if (policy === 'if-required') {
        const after = await scanServer(server, {
          adapter,
          drivers: ctx.runtime.drivers,
          timeoutMs: this.#opts.commandTimeoutMs,
        }).catch((error: unknown) => {
          // Without a scan the reboot is skipped; a changed host key is not a failed scan.
          if (error instanceof HostKeyMismatchError) throw new ServerFailure('reboot', error, false);
          return undefined;
        });
        reboot = after?.rebootRequired ?? false;
      }
      if (reboot) await this.#reboot(server);
      const boot = this.#tasks.get(id)!.details ?? {};
      await markDone('reboot', {
        step: 'reboot',
        details: reboot
          ? { rebooted: true, bootIdBefore: boot['bootIdBefore'], bootIdAfter: boot['bootIdAfter'] }
          : { rebooted: false, policy },
      });
    }

    if (!done('post-scripts')) {
      await this.#runScripts(server, 'post-scripts', this.#policy.postScripts);
      await markDone(
        'post-scripts',
        this.#policy.postScripts.length
          ? { step: 'post-scripts', details: { scripts: this.#policy.postScripts } }
          : undefined,
      );
    }
    if ((this.#policy.backups === 'post' || this.#policy.backups === 'both') && !done('backup-post')) {
      await this.#step(id, 'backup-post');
      const snap = await adapter.snapshot!.snapshot(server, { label: `fleetward-${this.#plan.id}-post` });
      await this.#step(id, 'backup-post', { postSnapshotId: snap.snapshotId });
      await markDone('backup-post', { step: 'backup-post', details: { snapshotId: snap.snapshotId } });
    }
    if (!done('health')) {
      await this.#step(id, 'health');
      for (const check of this.#policy.healthChecks) {
        if (check.type === 'command') {
          const r = await this.#exec(server, 'health', { argv: check.argv }, check.timeoutSeconds * 1000);
          if (r.exitCode !== check.expectExitCode) {
            throw new ServerFailure(
              'health',
              new CommandFailedError(
                `health check ${check.argv.join(' ')} exited ${r.exitCode}, expected ${check.expectExitCode}`,
              ),
              false,
              `${r.stdout}\n${r.stderr}`.slice(-2000),
            );
          }
        } else {
          const target = server.address ?? server.name;
          // The address is a validated hostname or IP; brackets make an IPv6 literal a valid URL host.
          const host = target.includes(':') ? `[${target}]` : target;
          const url = check.url
            .replaceAll('{address}', host)
            .replaceAll('{name}', encodeURIComponent(server.name));
          const response = await fetch(url, {
            signal: AbortSignal.timeout(check.timeoutSeconds * 1000),
            redirect: 'manual',
          }).catch((error: unknown) => {
            throw new ServerFailure(
              'health',
              new CommandFailedError(`health probe ${url} failed: ${(error as Error).message}`),
              false,
            );
          });
          if (response.status !== check.expectStatus) {
            throw new ServerFailure(
              'health',
              new CommandFailedError(
                `health probe ${url} answered ${response.status}, expected ${check.expectStatus}`,
              ),
              false,
            );
          }
        }
      }
      await markDone(
        'health',
        this.#policy.healthChecks.length
          ? { step: 'health', details: { checks: this.#policy.healthChecks.length } }
          : undefined,
      );
    }

    await this.#step(id, 'verify');
    const versions = driver.parseInstalledVersions!(
      await this.#exec(server, 'verify', driver.installedVersionsCommand!(resolved.map((p) => p.name))),
      resolved,
    );
    const wrong = resolved.filter((p) => versions.get(p.name) !== p.version);
    if (wrong.length) {
      throw new ServerFailure(
        'verify',
        new CommandFailedError(
          `not at the approved versions: ${wrong.map((p) => `${p.name} is ${versions.get(p.name) ?? 'absent'}, approved ${p.version}`).join('; ')}`,
        ),
        false,
      );
    }
    await this.#step(id, 'done', undefined, {
      step: 'verify',
      result: 'success',
      details: { versions: resolved.map((p) => `${p.name}=${p.version}`) },
    });
  }

  /**
   * What a patch run checks first on Windows: an elevated administrator login (the Update Agent and
   * Task Scheduler need one), `minFreeRootMiB` free on the system drive, the Windows Update service
   * not disabled, and its installer not busy with another installation (retryable).
   */
  async #preflightWindows(server: Server) {
    const out = await this.#exec(server, 'preflight', windowsPreflightCommand(), 120_000);
    let facts: ReturnType<typeof parseWindowsPreflight>;
    try {
      facts = parseWindowsPreflight(out);
    } catch (error) {
      throw new ServerFailure(
        'preflight',
        toFleetwardError(error, 'Windows preflight'),
        false,
        `${out.stdout}\n${out.stderr}`.slice(-2000),
      );
    }
    const refuse = (message: string, retryable = false) => {
      throw new ServerFailure('preflight', new CommandFailedError(message, { retryable }), false);
    };
    if (!facts.admin) {
      refuse('the login is not an elevated administrator: Windows Update and Task Scheduler need one');
    }
    if (facts.freeMiB < this.#opts.minFreeRootMiB) {
      refuse(`only ${facts.freeMiB} MiB free on ${facts.drive}, need ${this.#opts.minFreeRootMiB}`);
    }
    if (facts.serviceStartMode.toLowerCase() === 'disabled') {
      refuse('the Windows Update service (wuauserv) is disabled');
    }
    if (facts.installerBusy === true) {
      refuse('Windows Update is busy with another installation', true);
    }
  }

  /**
   * Refuses a transaction that would install an excluded package without its secondary approval,
   * whether selected or pulled in as a dependency. Checked against the policy as it is now, so an
   * exclusion added after approval still holds.
   */
  #refuseExclusions(transaction: readonly PinnedPackage[], selected: readonly PinnedPackage[]) {
    const approved = new Set(this.#plan.exclusionApprovals.flatMap((a) => a.packages));
    const excluded = unapprovedExclusions(this.#policy, transaction, selected, approved);
    if (excluded.length === 0) return;
    throw new ServerFailure(
      'drift-check',
      new TransactionRefusedError(
        `the transaction would install excluded packages without their secondary approval: ${describeExclusions(excluded)}`,
        { details: { refused: 'exclusion', packages: excluded.map((e) => e.name) } },
      ),
      false,
    );
  }

  async #runScripts(server: Server, step: string, scriptIds: string[]) {
    if (scriptIds.length === 0) return;
    await this.#step(server.id, step);
    for (const scriptId of scriptIds) {
      const script = await this.#ctx.runtime.store.scripts.require(this.#ctx.tenantId, scriptId);
      // As root on POSIX hosts; PowerShell on Windows runs as the (administrator) login.
      const command = scriptCommand(script, server, {});
      const r = await this.#exec(server, step, { ...command, sudo: !isWindowsServer(server) });
      if (r.exitCode !== 0) {
        throw new ServerFailure(
          step,
          new CommandFailedError(
            `script ${script.name} (${script.contentHash.slice(0, 12)}) exited ${r.exitCode}`,
          ),
          false,
          `${r.stdout}\n${r.stderr}`.slice(-2000),
        );
      }
    }
  }

  async #reboot(server: Server) {
    const id = server.id;
    const details = this.#tasks.get(id)!.details ?? {};
    try {
      const { bootIdAfter } = await verifiedReboot({
        adapter: this.#ctx.runtime.adapterFor(server),
        server,
        progress: {
          bootIdBefore: details['bootIdBefore'] as string | undefined,
          rebootRequestedAt: details['rebootRequestedAt'] as string | undefined,
        },
        record: (progress) => this.#step(id, 'reboot', { ...progress }),
        timeoutMs: this.#opts.rebootTimeoutMs,
        pollIntervalMs: this.#opts.pollIntervalMs,
        now: () => this.#ctx.runtime.clock.now(),
      });
      await this.#step(id, 'reboot', { bootIdAfter });
    } catch (error) {
      const e = toFleetwardError(error, `reboot of ${server.name}`);
      throw new ServerFailure('reboot', e, e instanceof TransportError || e instanceof TimeoutError);
    }
  }
}
