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
          task: { status: 'pending', step: 'pending' },
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
      ({ emit: announce } = await ctx.record(store, started(job.id, true, { resumed: true })));
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

    const run = new RunState(ctx, plan, policy, job, tasks, servers, opts, signal, () => lease.held, log, {
      actor,
      ...(rule ? { rule } : {}),
    });
    const outcome = await run.execute();
    const counts = run.counts();
    const ended = await store.transaction(async (tx) => {
      const current = await tx.jobs.require(tenantId, job.id);
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
    job = ended.finished;
    ended.emit();
    logJobFinished(log, job, fleet.clock.now(), {
      planId,
      skipped: counts.skipped,
      notStarted: counts.notStarted,
    });
    if (outcome.status === 'stopped' || outcome.status === 'pending') {
      run.escalate({ kind: 'run-stopped', reason: outcome.reason ?? 'stopped' });
    }
    return job;
  } finally {
    await lease.release();
  }
}

/** One execution of a plan, in memory; every decision it makes is written to the store first. */
class RunState {
  readonly #ctx: CallContext;
  readonly #plan: PatchPlan;
  readonly #policy: PatchPolicy;
  readonly #job: Job;
  readonly #tasks: Map<string, TaskResult>;
  readonly #servers: Map<string, Server>;
  readonly #opts: z.output<typeof ExecuteOptionsSchema>;
  readonly #signal: AbortSignal | undefined;
  readonly #leaseHeld: () => boolean;
  readonly #log: RedactingLogger;
  readonly #by: Pick<AuditInput, 'actor' | 'rule'>;
  #failures = 0;
  #stopReason: string | undefined;
  /** Set as soon as a server answers with another host key: it ends the run, whatever the budget. */
  #hostKeyStop: string | undefined;

  constructor(
    ctx: CallContext,
    plan: PatchPlan,
    policy: PatchPolicy,
    job: Job,
    tasks: Map<string, TaskResult>,
    servers: Map<string, Server>,
    opts: z.output<typeof ExecuteOptionsSchema>,
    signal: AbortSignal | undefined,
    leaseHeld: () => boolean,
    log: RedactingLogger,
    by: Pick<AuditInput, 'actor' | 'rule'>,
  ) {
    this.#leaseHeld = leaseHeld;
    this.#log = log;
    this.#by = by;
    this.#ctx = ctx;
    this.#plan = plan;
    this.#policy = policy;
    this.#job = job;
    this.#tasks = tasks;
    this.#servers = servers;
    this.#opts = opts;
    this.#signal = signal;
    if (!opts.acknowledgeFailures) {
      for (const task of tasks.values()) {
        if (task.status === 'failed' && task.details?.['countsAgainstBudget'] !== false) this.#failures++;
      }
    }
  }

  counts() {
    const all = [...this.#tasks.values()];
    return {
      succeeded: all.filter((t) => t.status === 'succeeded').length,
      failed: all.filter((t) => t.status === 'failed').length,
      skipped: all.filter((t) => t.status === 'skipped').length,
      notStarted: all.filter((t) => t.status === 'pending').length,
    };
  }

  get #budgetSpent() {
    return this.#failures > this.#plan.stopCondition.maxFailures;
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

  async execute(): Promise<{ status: Job['status']; reason?: string }> {
    for (const wave of this.#plan.waves) {
      if (this.#budgetSpent || this.#stopReason || this.#hostKeyStop || this.#signal?.aborted) break;
      const pending = wave.serverIds.filter((id) => !TERMINAL.has(this.#tasks.get(id)?.status ?? 'pending'));
      if (pending.length === 0) continue;
      this.#ctx.runtime.events.emit('patch.wave.started', {
        tenantId: this.#ctx.tenantId,
        planId: this.#plan.id,
        jobId: this.#job.id,
        wave: wave.name,
        serverIds: pending,
      });
      const queue = new PQueue({ concurrency: this.#policy.rollout.maxConcurrency });
      await Promise.all(pending.map((id) => queue.add(() => this.#runServer(id))));
    }
    if (this.#hostKeyStop) {
      // Not a pause: a server that may be an impostor needs a person, and a new plan, first.
      await this.#markNotStarted();
      return { status: 'stopped', reason: this.#hostKeyStop };
    }
    if (this.#budgetSpent && !this.#signal?.aborted && this.#policy.rollout.onBudgetSpent === 'pause') {
      // Paused, not ended: the untouched servers stay pending for a resume that acknowledges the failures.
      return {
        status: 'pending',
        reason: `paused: error budget spent (${this.#failures} failed servers, at most ${this.#plan.stopCondition.maxFailures} allowed); execute again with acknowledgeFailures to continue`,
      };
    }
    await this.#markNotStarted();
    if (this.#signal?.aborted) return { status: 'cancelled', reason: 'cancelled by the caller' };
    if (this.#budgetSpent) {
      return {
        status: 'stopped',
        reason: `error budget spent: ${this.#failures} failed servers, at most ${this.#plan.stopCondition.maxFailures} allowed`,
      };
    }
    if (this.#stopReason) return { status: 'stopped', reason: this.#stopReason };
    const c = this.counts();
    if (c.failed === 0 && c.skipped === 0) return { status: 'succeeded' };
    return { status: c.succeeded === 0 && c.skipped === 0 ? 'failed' : 'partial' };
  }

  async #markNotStarted() {
    const reason = this.#hostKeyStop
      ? `not started: ${this.#hostKeyStop}`
      : this.#signal?.aborted
        ? 'not started: the run was cancelled'
        : this.#budgetSpent
          ? 'not started: the error budget was spent'
          : (this.#stopReason ?? 'not started');
    for (const task of this.#tasks.values()) {
      if (task.status !== 'pending') continue;
      await this.#save(task.serverId, {
        status: this.#signal?.aborted ? 'cancelled' : 'skipped',
        finishedAt: this.#now(),
        error: { code: 'NOT_STARTED', message: reason },
      });
    }
  }

  #now() {
    return this.#ctx.runtime.clock.now().toISOString();
  }

  /**
   * Writes the task, and with `audit` the step's audit record in the same transaction: a step
   * recorded as done in the task always has its record, and a resumed run never records it twice.
   */
  async #save(serverId: string, changes: Partial<TaskResult>, audit?: StepRecord): Promise<TaskResult> {
    const store = this.#ctx.runtime.store;
    for (let attempt = 0; ; attempt++) {
      try {
        const saved = await store.transaction(async (tx) => {
          const current = await tx.taskResults.require(this.#ctx.tenantId, `${this.#job.id}:${serverId}`);
          const updated = await tx.taskResults.update(this.#ctx.tenantId, current.id, changes as never, {
            expectedVersion: current.version,
          });
          if (audit) await this.#ctx.runtime.audit(tx, this.#stepAudit(serverId, updated, audit));
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
    await this.#save(
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
      this.#stopReason ??= 'the maintenance window closes before another server could finish';
      return;
    }
    const planned = this.#plan.servers.find((s) => s.serverId === serverId)!;
    const server = this.#servers.get(serverId);
    let task = this.#tasks.get(serverId)!;
    if (task.status === 'pending') {
      task = await this.#save(serverId, {
        status: 'running',
        attempt: task.attempt + 1,
        startedAt: this.#now(),
      });
    } else {
      task = await this.#save(serverId, { attempt: task.attempt + 1 });
    }
    const finish = async (status: 'succeeded' | 'failed' | 'skipped', failure?: ServerFailure | string) => {
      if (failure instanceof ServerFailure && failure.error instanceof HostKeyMismatchError) {
        // Before any await: servers queued behind this one must see the stop when they start.
        this.#hostKeyStop ??= `the host key of ${server?.name ?? serverId} changed (at ${failure.step}); no other server is started`;
      }
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
      if (countsAgainstBudget) this.#failures++;
      // A failed install keeps what the tool said of each package (Windows Update's per-update results).
      const results = failure instanceof ServerFailure ? failure.error.details?.['results'] : undefined;
      const installResults = Array.isArray(results) ? { installResults: results } : {};
      await this.#save(
        serverId,
        {
          status,
          finishedAt: this.#now(),
          ...(error ? { error } : {}),
          details: { ...this.#tasks.get(serverId)!.details, countsAgainstBudget, ...installResults },
        },
        failure instanceof ServerFailure && error
          ? {
              step: failure.step,
              result: 'failure',
              reason: `${error.code}: ${error.message}`,
              details: { code: error.code, status, ...installResults },
            }
          : undefined,
      );
      ctx.runtime.events.emit('patch.server.completed', {
        tenantId: ctx.tenantId,
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
          step: failure instanceof ServerFailure ? failure.step : (task.step ?? 'unknown'),
          reason: error?.message ?? 'failed',
          ...(failure instanceof ServerFailure && failure.excerpt ? { outputExcerpt: failure.excerpt } : {}),
        });
      }
    };
    if (!server) return finish('failed', 'the server no longer exists in the inventory');
    if (planned.blocked) return finish('skipped', `blocked at planning: ${planned.blocked}`);
    if (planned.resolved.length === 0) return finish('succeeded');
    try {
      await this.#patchServer(server, planned.resolved, planned.selected);
      await finish('succeeded');
    } catch (error) {
      if (error instanceof ServerFailure) {
        const blocked = error.error instanceof DriftedError || error.error instanceof TransactionRefusedError;
        return finish(blocked ? 'skipped' : 'failed', error);
      }
      const e = toFleetwardError(error, `patching ${server.name}`);
      await finish('failed', new ServerFailure(this.#tasks.get(serverId)?.step ?? 'unknown', e, false));
    }
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
