import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import type { Resource } from '../authz/evaluate.js';
import { plainRecord } from '../domain/common.js';
import {
  type AuditInput,
  type Job,
  type OutputSummary,
  OutputSummarySchema,
  type Principal,
  RolloutSchema,
  type Script,
  ScriptNameSchema,
  type ScriptRun,
  type Server,
  type TaskResult,
  validate,
} from '../domain/index.js';
import { objectArgument, ReasonOptionsSchema, validateOptions } from '../domain/options.js';
import { stopsOperation } from '../engine/stop.js';
import {
  AbortedError,
  AuthorizationError,
  CapabilityMissingError,
  ConflictError,
  type FleetwardError,
  TimeoutError,
  TransportError,
  toFleetwardError,
  ValidationError,
} from '../errors.js';
import { resolveTargets, TargetsSchema } from '../inventory/targets.js';
import { refused } from '../kernel/call-audit.js';
import { type CallContext, createCallContext } from '../kernel/context.js';
import { jobLogger, logJobFinished, logJobStarted, logServerFailed, startJob } from '../kernel/jobs.js';
import { RunLease } from '../kernel/lease.js';
import type { RedactingLogger } from '../kernel/log.js';
import type { Runtime } from '../kernel/runtime.js';
import type { ExecResult } from '../ports/adapter.js';
import type {
  ClaimedServer,
  RolloutEnd,
  RolloutQueue,
  RolloutRef,
  RolloutServerOutcome,
  RolloutWork,
  RunningElsewhere,
  SubmittedServerState,
  UnrecordedResult,
  WaveStart,
} from '../ports/rollouts.js';
import type { StoreScope } from '../ports/store.js';
import { AbortFanout } from '../util/abort-fanout.js';
import { createFileInFolder, openFolder, type PendingFile, type SafeFolder } from '../util/safe-fs.js';
import { scriptCommand } from './content.js';
import { scriptEvents } from './events.js';
import { auditedParameters, envText, redactSecrets, resolveParameters } from './params.js';
import { approvalState, findVersion } from './repository.js';
import {
  executeRollout,
  type KnownServerState,
  planWaves,
  type RolloutOutcome,
  type ServerOutcome,
  type ServerRunState,
  stopConditionFor,
} from './rollout.js';
import { VersionRefSchema } from './versioned.js';

/** What to run where, and how to roll it out. */
export const PlanRunInputSchema = z.strictObject({
  /** The script's name. */
  script: ScriptNameSchema,
  /** A revision number or a content hash. @default the current version */
  version: VersionRefSchema.optional(),
  /** Parameter values by name; they reach the script as environment variables only. */
  params: plainRecord(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
  targets: TargetsSchema,
  /** Waves, concurrency and error budget, as for patching. @default one wave, 10 at a time, no failure allowed */
  rollout: RolloutSchema.prefault({}),
  /** Per-server limit; a script still running then is killed and its server failed. @default 600_000 */
  timeoutMs: z
    .number()
    .int()
    .positive()
    .max(48 * 3_600_000)
    .default(600_000),
  /** The change ticket the run belongs to, carried into its audit records. */
  ticket: z.string().trim().min(1).max(128).optional(),
});
export type PlanRunInput = z.input<typeof PlanRunInputSchema>;

export const ExecuteRunOptionsSchema = z.strictObject({
  /** Identifies this process in the run's lease. @default a random id */
  holder: z.string().min(1).max(200).optional(),
  /** How long the run's lease lasts without renewal: a crashed process's run can be resumed after this. @default 60_000 */
  leaseTtlMs: z.number().int().min(1000).default(60_000),
  /** Bytes of each stream kept in the store per server; the rest is counted and hashed. @default 65_536 */
  maxOutputBytes: z
    .number()
    .int()
    .min(0)
    .max(16 * 1024 * 1024)
    .default(65_536),
  /**
   * Also write every byte of every server's output to `<outputDir>/<runId>/<serverId>.stdout|.stderr`
   * (mode 0600) on this machine; results then say where the full output is. Those files hold the
   * output as the script wrote it, secrets included. @default output beyond `maxOutputBytes` is not kept
   */
  outputDir: z.string().min(1).max(4096).optional(),
  /** Resume a run paused by its error budget: the failures so far no longer count. @default false */
  acknowledgeFailures: z.boolean().default(false),
  /** How often the executing process looks for a cancellation made by another process. @default 1000 */
  cancelPollMs: z.number().int().min(50).max(60_000).default(1000),
  /**
   * Values of the run's secret parameters, when no SecretStore keeps them (or to replace them).
   * Required on start and resume of a run with secret parameters and a Fleet without `secrets`.
   */
  secrets: plainRecord(z.string(), z.string()).optional(),
});
export type ExecuteRunOptions = z.input<typeof ExecuteRunOptionsSchema> & { signal?: AbortSignal };
type ParsedOptions = z.output<typeof ExecuteRunOptionsSchema>;

const TERMINAL = new Set<ScriptRun['status']>(['succeeded', 'failed', 'partial', 'stopped', 'cancelled']);

/** One server's result in a run, as callers read it. */
export interface ServerRunResult {
  serverId: string;
  /** The wave it belongs to. */
  wave: string;
  state: ServerRunState;
  /** How many times it was started: 0 or 1, since a script never runs twice on a server in a run. */
  attempt: number;
  /** The script's exit code; `null` when it was ended by a signal, absent when it did not end. */
  exitCode?: number | null;
  /** It could not be reached, or the connection broke (see `countsAgainstBudget`). */
  unreachable: boolean;
  /** It ran past the run's `timeoutMs` and was killed. */
  timedOut: boolean;
  /** Whether its failure counted against the error budget. */
  countsAgainstBudget: boolean;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  error?: { code: string; message: string };
  /** What was kept of each stream: `bytes` and `sha256` cover everything written, `truncated` says whether `text` is all of it. */
  stdout?: OutputSummary;
  stderr?: OutputSummary;
  /** Where every byte is, when the run wrote its output to files (`outputDir`). */
  fullOutput?: { stdout: string; stderr: string };
  /** Secret values were replaced by `[REDACTED]` in `stdout.text`/`stderr.text`; hashes cover the output as written. */
  outputRedacted?: boolean;
}

/** A run with every server's state and result. */
export interface ScriptRunResults {
  run: ScriptRun;
  job?: Job;
  servers: ServerRunResult[];
  counts: Record<ServerRunState, number>;
}

const scriptResource = (name: string): Resource => ({ type: 'script', id: name });
const serverResources = (servers: Iterable<Server>): Resource[] =>
  [...servers].map((server) => ({ type: 'server', server }));
const secretsRefOf = (tenantId: string, runId: string) => `fleetward/${tenantId}/script-runs/${runId}/params`;
const nowIso = (ctx: CallContext) => ctx.runtime.clock.now().toISOString();

/** The state of a task as callers see it: a `skipped` task with `NOT_STARTED` was never started. */
function stateOf(task: TaskResult | undefined): ServerRunState {
  if (!task) return 'pending';
  if (task.status === 'skipped') return 'not-started';
  return task.status;
}

/** The run's servers that still exist, by id: read in pages of those ids only, not one by one. */
async function loadServers(ctx: CallContext, ids: readonly string[]): Promise<Map<string, Server>> {
  const servers = new Map<string, Server>();
  for (let i = 0; i < ids.length; i += 1000) {
    const page = await ctx.runtime.store.servers.listAll(ctx.tenantId, {
      selector: { ids: ids.slice(i, i + 1000) },
    });
    for (const server of page) servers.set(server.id, server);
  }
  return servers;
}

function unsupportedOs(script: Script, server: Server): string | undefined {
  const family = server.os?.family;
  if (!family || family === 'unknown' || script.osFamilies.length === 0) return undefined;
  if (script.osFamilies.includes(family)) return undefined;
  return `${server.name} runs ${family}; script ${script.name} is for ${script.osFamilies.join(', ')}`;
}

/**
 * Plans a run: resolves the version, the targets and the parameters, puts the servers into waves
 * and computes the stop condition, and stores the run as `awaiting-start`. Nothing runs. Secret
 * values go to the Fleet's SecretStore for the run's lifetime; without one they are dropped and
 * must be passed again to {@link startRun}.
 */
export async function planRun(ctx: CallContext, input: PlanRunInput): Promise<ScriptRun> {
  const parsed = validate(PlanRunInputSchema, input, 'PlanRunInput');
  const store = ctx.runtime.store;
  const script = await findVersion(store, ctx.tenantId, parsed.script, parsed.version);
  const servers = await resolveTargets(store, ctx.tenantId, parsed.targets);
  if (servers.length === 0) {
    throw new ValidationError('PlanRunInput', [
      { path: ['targets'], message: 'the run would cover no server' },
    ]);
  }
  await ctx.authorize('script.run', [scriptResource(script.name), ...serverResources(servers)], {
    type: 'script',
    id: script.name,
  });
  const wrongOs = servers.map((s) => unsupportedOs(script, s)).filter((m): m is string => m !== undefined);
  if (wrongOs.length) {
    throw new ValidationError(
      'PlanRunInput',
      wrongOs.slice(0, 50).map((message) => ({ path: ['targets'], message })),
    );
  }
  const params = resolveParameters(script.parameters, parsed.params);
  const runId = randomUUID();
  const secretNames = Object.keys(params.secret).sort();
  let secretsRef: string | undefined;
  if (secretNames.length && ctx.runtime.secrets) {
    secretsRef = secretsRefOf(ctx.tenantId, runId);
    await ctx.runtime.secrets.set(secretsRef, JSON.stringify(params.secret));
  }
  const stopCondition = stopConditionFor(parsed.rollout, servers.length);
  try {
    return await ctx.write(
      'script.run',
      [scriptResource(script.name), ...serverResources(servers)],
      { type: 'script-run', id: runId },
      (tx) =>
        tx.scriptRuns.create({
          tenantId: ctx.tenantId,
          id: runId,
          scriptId: script.id,
          scriptName: script.name,
          revision: script.revision,
          contentHash: script.contentHash,
          requestedBy: ctx.actor.principalId,
          params: params.plain,
          secretParams: secretNames,
          ...(secretsRef ? { secretsRef } : {}),
          serverIds: servers.map((s) => s.id),
          waves: planWaves(parsed.rollout.waves, servers),
          rollout: parsed.rollout,
          timeoutMs: parsed.timeoutMs,
          stopCondition,
          status: 'awaiting-start',
          ...(parsed.ticket ? { ticket: parsed.ticket } : {}),
        }),
      (run) => ({
        phase: 'planned',
        runId: run.id,
        script: run.scriptName,
        revision: run.revision,
        contentHash: run.contentHash,
        params: auditedParameters(run.params, run.secretParams),
        servers: run.serverIds.length,
        stopCondition: run.stopCondition.description,
        ...(run.ticket ? { ticket: run.ticket } : {}),
      }),
    );
  } catch (error) {
    if (secretsRef) await ctx.runtime.secrets?.delete(secretsRef).catch(() => undefined);
    throw error;
  }
}

/**
 * The values of the run's secret parameters: passed by the caller, else from the SecretStore.
 * They are checked against the version's schema again, so a value passed on resume obeys it too.
 */
async function secretValues(
  ctx: CallContext,
  run: ScriptRun,
  script: Script,
  given: Record<string, string> | undefined,
): Promise<Record<string, string>> {
  if (run.secretParams.length === 0 && !given) return {};
  let values: Record<string, string> | undefined = given;
  if (!values && run.secretsRef && ctx.runtime.secrets) {
    const stored = await ctx.runtime.secrets.get(run.secretsRef);
    if (stored !== undefined) values = JSON.parse(stored) as Record<string, string>;
  }
  values ??= {};
  const issues = [
    ...run.secretParams
      .filter((name) => !Object.hasOwn(values, name))
      .map((name) => ({
        path: ['secrets', name],
        message: 'must be passed again: no SecretStore keeps the values of this run',
      })),
    ...Object.keys(values)
      .filter((name) => !run.secretParams.includes(name))
      .map((name) => ({
        path: ['secrets', name],
        message: 'is not a secret parameter this run was planned with',
      })),
  ];
  if (issues.length) throw new ValidationError('ExecuteRunOptions', issues);
  return resolveParameters(script.parameters, { ...run.params, ...values }).secret;
}

/** The audit record of one server's result, written in the transaction that records it. */
function serverAudit(
  ctx: CallContext,
  actor: AuditInput['actor'],
  run: ScriptRun,
  task: TaskResult,
): AuditInput {
  const summary = (o: OutputSummary | undefined) =>
    o ? { bytes: o.bytes, sha256: o.sha256, truncated: o.truncated } : undefined;
  return {
    tenantId: ctx.tenantId,
    actor,
    action: 'script.run',
    target: { type: 'server', id: task.serverId },
    decision: 'allow',
    result: task.status === 'succeeded' ? 'success' : 'failure',
    ...(task.error ? { reason: task.error.message.slice(0, 2000) } : {}),
    ...(run.ticket ? { ticket: run.ticket } : {}),
    details: {
      runId: run.id,
      jobId: task.jobId,
      script: run.scriptName,
      revision: run.revision,
      contentHash: run.contentHash,
      status: task.status,
      exitCode: task.exitCode ?? null,
      ...(task.error ? { code: task.error.code } : {}),
      stdout: summary(task.stdout),
      stderr: summary(task.stderr),
      unreachable: task.details?.['unreachable'] === true,
      timedOut: task.details?.['timedOut'] === true,
      ...(task.details?.['fullOutput'] ? { fullOutput: task.details['fullOutput'] } : {}),
    },
  };
}

/** How {@link saveTask} writes: the version last seen, the change's audit record, the transaction. */
interface SaveTaskOptions {
  /** The task as this execution last saved or read it: its version is tried first. */
  known?: TaskResult | undefined;
  /** The audit record of the change, written in the same transaction. */
  audit?: (task: TaskResult) => AuditInput;
  /** The transaction to write in. @default a transaction of its own, or none for a change without audit */
  scope?: StoreScope;
}

/**
 * Saves a task's change with optimistic concurrency, and its audit record when `audit` says so.
 * The version this execution last saw is tried first (reading the row again before each write cost
 * a read per write); a conflict means another writer moved the task on, and the change is applied
 * over the version read then. A change without an audit record is a single conditional row update,
 * atomic on its own, so it opens no transaction.
 */
async function saveTask(
  ctx: CallContext,
  taskId: string,
  changes: Partial<TaskResult>,
  options: SaveTaskOptions = {},
): Promise<TaskResult> {
  const { known, audit, scope } = options;
  const write = async (tx: StoreScope, knownVersion: number | undefined) => {
    const expectedVersion = knownVersion ?? (await tx.taskResults.require(ctx.tenantId, taskId)).version;
    const saved = await tx.taskResults.update(ctx.tenantId, taskId, changes as never, { expectedVersion });
    if (audit) await ctx.runtime.audit(tx, audit(saved));
    return saved;
  };
  const store = ctx.runtime.store;
  for (let attempt = 0; ; attempt++) {
    const knownVersion = attempt === 0 ? known?.version : undefined;
    try {
      if (scope) return await write(scope, knownVersion);
      if (!audit) return await write(store, knownVersion);
      return await store.transaction((tx) => write(tx, knownVersion));
    } catch (error) {
      // Inside the caller's transaction only a stale known version is retried, over a fresh read.
      const retries = scope ? (known ? 1 : 0) : 3;
      if (!(error instanceof ConflictError) || attempt >= retries) throw error;
    }
  }
}

const INTERRUPTED_ON_WORKER = {
  code: 'INTERRUPTED',
  message:
    'the worker running the script here stopped (its heartbeat ended): whether the script finished is unknown, and it is not run again',
};

/** One server's finished run, not yet written: its task's changes and how it counts. */
interface Settlement {
  serverId: string;
  /** The task as it was when the script started. */
  running: TaskResult;
  changes: Partial<TaskResult>;
  outcome: ServerOutcome;
  /** Logs and emits the server's end, once `saved` is written. */
  announce: (saved: TaskResult) => void;
}

/** How a task that already ended counts in its rollout, read back from the store. */
function outcomeOfTask(task: TaskResult, server: Pick<Server, 'id' | 'name'> | undefined): ServerOutcome {
  const state = task.status === 'succeeded' ? 'succeeded' : task.status === 'failed' ? 'failed' : 'cancelled';
  const stop = task.error
    ? stopsOperation(task.error, server ?? { id: task.serverId, name: task.serverId })
    : undefined;
  return {
    state,
    countsAgainstBudget: state === 'failed' && task.details?.['countsAgainstBudget'] !== false,
    ...(stop ? { stopRollout: stop.reason } : {}),
    ...(task.error ? { code: task.error.code } : {}),
  };
}

const INTERRUPTED = {
  code: 'INTERRUPTED',
  message:
    'the orchestrator stopped while the script ran here: whether it finished is unknown, and it is not run again',
};

/**
 * Writes a file of one stream of one server, and says where it is once it is complete. Each file is
 * written under a temporary name and renamed into place at the end, never through a link: see
 * {@link createFileInFolder}.
 */
class Spill {
  readonly paths: { stdout: string; stderr: string };
  readonly #dir: SafeFolder;
  readonly #files: { stdout: PendingFile; stderr: PendingFile };
  /** Each file's writes, in order: a stream over the handle would keep it from closing. */
  readonly #writes: { stdout: Promise<void>; stderr: Promise<void> } = {
    stdout: Promise.resolve(),
    stderr: Promise.resolve(),
  };
  #error: Error | undefined;

  /**
   * Opens `<outputDir>/<runId>/` (the run's folder must be a real folder, not a link) and the
   * two files of `serverId` in it.
   * @throws UnsafePathError when a link or a non-folder is where the run's folder goes.
   */
  static async open(outputDir: string, runId: string, serverId: string): Promise<Spill> {
    const base = await openFolder(outputDir, { create: true, mode: 0o700 });
    let dir: SafeFolder;
    try {
      dir = await base.folder(runId, { create: true, mode: 0o700 });
    } finally {
      await base.close();
    }
    const files: Partial<Record<'stdout' | 'stderr', PendingFile>> = {};
    try {
      files.stdout = await createFileInFolder(dir, `${serverId}.stdout`);
      files.stderr = await createFileInFolder(dir, `${serverId}.stderr`);
    } catch (error) {
      await files.stdout?.discard();
      await dir.close();
      throw error;
    }
    return new Spill(dir, serverId, { stdout: files.stdout, stderr: files.stderr });
  }

  private constructor(
    dir: SafeFolder,
    serverId: string,
    files: { stdout: PendingFile; stderr: PendingFile },
  ) {
    this.paths = {
      stdout: join(dir.path, `${serverId}.stdout`),
      stderr: join(dir.path, `${serverId}.stderr`),
    };
    this.#dir = dir;
    this.#files = files;
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.#error) return;
    const handle = this.#files[stream].handle;
    this.#writes[stream] = this.#writes[stream]
      .then(async () => {
        for (let offset = 0; offset < chunk.length && !this.#error; ) {
          offset += (await handle.write(chunk, offset, chunk.length - offset)).bytesWritten;
        }
      })
      .catch((error: unknown) => {
        this.#error ??= error as Error;
      });
  }

  /** Resolves the paths, or an error message when a file could not be written whole. */
  async close(): Promise<{ paths: { stdout: string; stderr: string } } | { error: string }> {
    await Promise.all(Object.values(this.#writes));
    try {
      if (!this.#error) {
        await this.#files.stdout.commit();
        await this.#files.stderr.commit();
      }
    } catch (error) {
      this.#error ??= error as Error;
    } finally {
      if (this.#error) await Promise.all(Object.values(this.#files).map((f) => f.discard()));
      await this.#dir.close();
    }
    return this.#error ? { error: this.#error.message } : { paths: this.paths };
  }
}

/** Runs, stops and resumes a planned run. Shared by start, resume and cancel. */
class RunExecution {
  readonly #ctx: CallContext;
  readonly #opts: ParsedOptions;
  readonly #actor: AuditInput['actor'];
  readonly #abort = new AbortController();
  /** Each server's exec gets a signal of its own: the run's signal keeps one listener at any scale. */
  readonly #serverSignals = new AbortFanout(this.#abort.signal);
  #run: ScriptRun;
  readonly #script: Script;
  readonly #servers: Map<string, Server>;
  readonly #secrets: Record<string, string>;
  #job!: Job;
  readonly #tasks = new Map<string, TaskResult>();
  #log: RedactingLogger | undefined;

  constructor(
    ctx: CallContext,
    opts: ParsedOptions,
    actor: AuditInput['actor'],
    run: ScriptRun,
    script: Script,
    servers: Map<string, Server>,
    secrets: Record<string, string>,
  ) {
    this.#ctx = ctx;
    this.#opts = opts;
    this.#actor = actor;
    this.#run = run;
    this.#script = script;
    this.#servers = servers;
    this.#secrets = secrets;
  }

  #taskId(serverId: string): string {
    return `${this.#job.id}:${serverId}`;
  }

  #events() {
    return scriptEvents(this.#ctx.runtime);
  }

  /** The job's logger, which also scrubs the run's secret parameter values. */
  #logger(): RedactingLogger {
    this.#log ??= jobLogger(this.#ctx.runtime.logger, this.#job).withSecrets(Object.values(this.#secrets));
    return this.#log;
  }

  async execute(signal: AbortSignal | undefined, lease: RunLease): Promise<ScriptRunResults> {
    const ctx = this.#ctx;
    const onAbort = () => this.#abort.abort();
    if (signal?.aborted) this.#abort.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    lease.watchCancel(
      async () =>
        (await ctx.runtime.store.scriptRuns.get(ctx.tenantId, this.#run.id))?.cancelRequested === true,
      this.#opts.cancelPollMs,
      onAbort,
    );
    try {
      const resumed = this.#run.status !== 'awaiting-start';
      // Still running with its lease free: the process that ran it is gone.
      const abandoned = this.#run.status === 'running';
      if (resumed) await this.#prepareResume();
      else await this.#prepareStart();
      if (abandoned) lease.reportTakeover({ runId: this.#run.id, jobId: this.#job.id });
      this.#announceStart(resumed);
      const states = new Map<string, KnownServerState>(
        [...this.#tasks.values()].map((t) => [
          t.serverId,
          { state: stateOf(t), countsAgainstBudget: t.details?.['countsAgainstBudget'] !== false },
        ]),
      );
      const outcome = await executeRollout({
        waves: this.#run.waves,
        stopCondition: this.#run.stopCondition,
        maxConcurrency: this.#run.rollout.maxConcurrency,
        states,
        acknowledgeFailures: this.#opts.acknowledgeFailures,
        signal: this.#abort.signal,
        checkStop: () => (lease.held ? undefined : 'this process lost the run’s lease'),
        runServer: (id) => this.#runServer(id),
        onWaveStarted: (wave, serverIds) =>
          this.#events().emit('script.wave.started', {
            tenantId: ctx.tenantId,
            runId: this.#run.id,
            jobId: this.#job.id,
            wave: wave.name,
            serverIds,
          }),
      });
      if (!lease.held) {
        // Another process may own the run now; it records the end, not this one.
        throw new ConflictError(
          `this process lost the lease of script run ${this.#run.id}: it started no further server; resume it if no other process does`,
        );
      }
      await this.finish(outcome);
      return runResults(ctx, this.#run.id);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#serverSignals.close();
    }
  }

  /** Tells the operator and the event bus that the run started (or resumed). */
  #announceStart(resumed: boolean, fields: Record<string, unknown> = {}): void {
    logJobStarted(this.#logger(), this.#job, {
      runId: this.#run.id,
      script: this.#run.scriptName,
      revision: this.#run.revision,
      resumed,
      ...fields,
    });
    this.#events().emit('script.run.started', {
      tenantId: this.#ctx.tenantId,
      runId: this.#run.id,
      jobId: this.#job.id,
      scriptName: this.#run.scriptName,
      contentHash: this.#run.contentHash,
      resumed,
    });
  }

  async #prepareStart(): Promise<void> {
    const ctx = this.#ctx;
    const run = this.#run;
    const jobId = randomUUID();
    await ctx.runtime.store.transaction(async (tx) => {
      const started = await startJob(tx, {
        tenantId: ctx.tenantId,
        jobId,
        kind: 'script',
        requestedBy: run.requestedBy,
        serverIds: run.serverIds,
        startedAt: nowIso(ctx),
      });
      this.#job = started.job;
      for (const [serverId, task] of started.tasks) this.#tasks.set(serverId, task);
      this.#run = await tx.scriptRuns.update(
        ctx.tenantId,
        run.id,
        { status: 'running', jobId, startedAt: nowIso(ctx) },
        { expectedVersion: run.version },
      );
      await ctx.runtime.audit(tx, this.#runAudit('started', { servers: run.serverIds.length }));
    });
  }

  async #prepareResume(): Promise<void> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    this.#job = await store.jobs.require(ctx.tenantId, this.#run.jobId!);
    for (const task of await store.taskResults.listAll(ctx.tenantId, { where: { jobId: this.#job.id } })) {
      this.#tasks.set(task.serverId, task);
    }
    await store.transaction(async (tx) => {
      const interrupted = await this.#failInterrupted(tx);
      const current = await tx.scriptRuns.require(ctx.tenantId, this.#run.id);
      this.#run = await tx.scriptRuns.update(
        ctx.tenantId,
        current.id,
        { status: 'running' },
        { expectedVersion: current.version },
      );
      const job = await tx.jobs.require(ctx.tenantId, this.#job.id);
      this.#job = await tx.jobs.update(
        ctx.tenantId,
        job.id,
        { status: 'running' },
        { expectedVersion: job.version },
      );
      await ctx.runtime.audit(
        tx,
        this.#runAudit('started', {
          resumed: true,
          acknowledgeFailures: this.#opts.acknowledgeFailures,
          interrupted,
        }),
      );
    });
  }

  /**
   * A task left `running` by a dead process may or may not have run its script: it is failed as
   * interrupted, never started again (a script is not assumed to be safe to run twice).
   */
  async #failInterrupted(tx: StoreScope): Promise<string[]> {
    const interrupted: string[] = [];
    for (const task of [...this.#tasks.values()].filter((t) => t.status === 'running')) {
      const saved = await saveTask(
        this.#ctx,
        task.id,
        {
          status: 'failed',
          finishedAt: nowIso(this.#ctx),
          error: INTERRUPTED,
          details: { ...task.details, countsAgainstBudget: true, interrupted: true },
        },
        { known: task, audit: (t) => serverAudit(this.#ctx, this.#actor, this.#run, t), scope: tx },
      );
      this.#tasks.set(task.serverId, saved);
      interrupted.push(task.serverId);
    }
    return interrupted;
  }

  #runAudit(result: AuditInput['result'], details: Record<string, unknown>, reason?: string): AuditInput {
    const run = this.#run;
    return {
      tenantId: this.#ctx.tenantId,
      actor: this.#actor,
      action: 'script.run',
      target: { type: 'script-run', id: run.id },
      decision: 'allow',
      result,
      ...(reason ? { reason: reason.slice(0, 2000) } : {}),
      ...(run.ticket ? { ticket: run.ticket } : {}),
      details: {
        runId: run.id,
        jobId: this.#job?.id ?? run.jobId,
        script: run.scriptName,
        revision: run.revision,
        contentHash: run.contentHash,
        params: auditedParameters(run.params, run.secretParams),
        stopCondition: run.stopCondition.description,
        ...details,
      },
    };
  }

  async #runServer(serverId: string): Promise<ServerOutcome> {
    const ctx = this.#ctx;
    const taskId = this.#taskId(serverId);
    const previous = this.#tasks.get(serverId);
    const running = await saveTask(
      ctx,
      taskId,
      { status: 'running', attempt: (previous?.attempt ?? 0) + 1, startedAt: nowIso(ctx) },
      { known: previous },
    );
    this.#tasks.set(serverId, running);
    return this.#save(await this.#carryOut(serverId, running, (fn) => this.#serverSignals.run(fn)));
  }

  /**
   * Starts the run's job and tasks (or settles a resumed run's tasks left running) and hands its
   * servers to `queue`, where workers carry them out ({@link RolloutWork}).
   */
  async submit(queue: RolloutQueue): Promise<void> {
    const ctx = this.#ctx;
    const resumed = this.#run.status !== 'awaiting-start';
    if (resumed) await this.#prepareResume();
    else await this.#prepareStart();
    this.#announceStart(resumed, { workers: queue.name });
    const states: Record<string, SubmittedServerState> = {};
    for (const task of this.#tasks.values()) {
      states[task.serverId] = {
        state: stateOf(task),
        countsAgainstBudget: task.details?.['countsAgainstBudget'] !== false,
      };
    }
    const { wavesStarted } = await queue.submit({
      kind: 'script',
      tenantId: ctx.tenantId,
      runId: this.#run.id,
      jobId: this.#job.id,
      waves: this.#run.waves,
      accounts: Object.fromEntries([...this.#servers.values()].map((s) => [s.id, s.accountId])),
      maxConcurrency: this.#run.rollout.maxConcurrency,
      maxFailures: this.#run.stopCondition.maxFailures,
      onBudgetSpent: this.#run.stopCondition.onBudgetSpent,
      states,
      acknowledgeFailures: this.#opts.acknowledgeFailures,
    });
    for (const start of wavesStarted) this.announceWave(start);
  }

  /** Emits `script.wave.started` for a wave the queue started (in the process that started it). */
  announceWave(start: WaveStart): void {
    const wave = this.#run.waves[start.wave];
    if (!wave) return;
    this.#events().emit('script.wave.started', {
      tenantId: this.#ctx.tenantId,
      runId: this.#run.id,
      jobId: this.#job.id,
      wave: wave.name,
      serverIds: start.serverIds,
    });
  }

  /**
   * A worker's part, first half: takes the tasks of `serverIds` for `workerId`, all in one
   * transaction (one commit for a batch, not one per server). A pending task becomes `running`
   * under this worker (a conditional update on the version read: of two workers handed the same
   * server only one takes it); a task left running by a worker that is gone, or by this one before
   * it gave the task up, is failed as interrupted (a script that may have run is never run again);
   * one another live worker runs is left to it; a finished one answers its recorded outcome.
   */
  async claimMany(
    serverIds: readonly string[],
    workerId: string,
    ownerAlive: (workerId: string) => Promise<boolean>,
  ): Promise<Array<ServerOutcome | RunningElsewhere | { running: TaskResult }>> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    for (let attempt = 0; ; attempt++) {
      const interrupted: Array<{ serverId: string; owner: unknown }> = [];
      try {
        const claimed = await store.transaction(async (tx) => {
          const out: Array<ServerOutcome | RunningElsewhere | { running: TaskResult }> = [];
          for (const serverId of serverIds) {
            const id = this.#taskId(serverId);
            const task = await tx.taskResults.require(ctx.tenantId, id);
            if (task.status === 'pending') {
              const running = await tx.taskResults.update(
                ctx.tenantId,
                id,
                {
                  status: 'running',
                  attempt: task.attempt + 1,
                  startedAt: nowIso(ctx),
                  details: { ...task.details, workerId },
                },
                { expectedVersion: task.version },
              );
              out.push({ running });
            } else if (task.status === 'running') {
              const owner = task.details?.['workerId'];
              if (typeof owner === 'string' && owner !== workerId && (await ownerAlive(owner))) {
                out.push({ runningOn: owner });
                continue;
              }
              const failed = await tx.taskResults.update(
                ctx.tenantId,
                id,
                {
                  status: 'failed',
                  finishedAt: nowIso(ctx),
                  error: INTERRUPTED_ON_WORKER,
                  details: { ...task.details, countsAgainstBudget: true, interrupted: true },
                },
                { expectedVersion: task.version },
              );
              await ctx.runtime.audit(tx, serverAudit(ctx, this.#actor, this.#run, failed));
              interrupted.push({ serverId, owner });
              out.push(outcomeOfTask(failed, this.#servers.get(serverId)));
            } else {
              out.push(outcomeOfTask(task, this.#servers.get(serverId)));
            }
          }
          return out;
        });
        for (const { serverId, owner } of interrupted) {
          logServerFailed(this.#logger(), serverId, INTERRUPTED_ON_WORKER, { workerId: owner });
        }
        return claimed;
      } catch (error) {
        // Another worker moved a task on between the read and the write: read them all again.
        if (!(error instanceof ConflictError) || attempt >= 4) throw error;
      }
    }
  }

  /** A worker's part, second half: runs the script on a server it claimed; the result is written by `recordMany`. */
  carryOutClaimed(serverId: string, running: TaskResult, signal: AbortSignal): Promise<Settlement> {
    return this.#carryOut(serverId, running, (fn) => fn(signal));
  }

  /** Loads the job and every task: what {@link RunExecution.finish} counts over. */
  async loadTasks(): Promise<void> {
    const store = this.#ctx.runtime.store;
    this.#job = await store.jobs.require(this.#ctx.tenantId, this.#run.jobId!);
    for (const task of await store.taskResults.listAll(this.#ctx.tenantId, {
      where: { jobId: this.#job.id },
    })) {
      this.#tasks.set(task.serverId, task);
    }
  }

  /** Points the execution at the run's job without loading its tasks (a worker reads each task itself). */
  async loadJob(): Promise<void> {
    this.#job = await this.#ctx.runtime.store.jobs.require(this.#ctx.tenantId, this.#run.jobId!);
  }

  /**
   * Runs the script on one server whose task is `running`, records the result with its audit
   * record, and says how it ended. `withSignal` gives the exec its abort signal.
   */
  async #carryOut(
    serverId: string,
    running: TaskResult,
    withSignal: <T>(fn: (signal: AbortSignal) => Promise<T>) => Promise<T>,
  ): Promise<Settlement> {
    const ctx = this.#ctx;
    const run = this.#run;
    const server = this.#servers.get(serverId);
    this.#events().emit('script.server.started', {
      tenantId: ctx.tenantId,
      runId: run.id,
      jobId: this.#job.id,
      serverId,
    });

    let spill: Spill | undefined;
    let result: ExecResult | undefined;
    let failure: FleetwardError | undefined;
    try {
      if (!server) throw new CapabilityMissingError(`server ${serverId} no longer exists in the inventory`);
      const wrongOs = unsupportedOs(this.#script, server);
      if (wrongOs) throw new CapabilityMissingError(wrongOs);
      const adapter = ctx.runtime.adapterFor(server);
      if (!adapter.exec) {
        throw new CapabilityMissingError(`adapter ${adapter.name} cannot run commands on ${server.name}`);
      }
      if (this.#opts.outputDir) {
        spill = await Spill.open(this.#opts.outputDir, run.id, serverId);
      }
      const env = {
        ...Object.fromEntries(Object.entries(run.params).map(([k, v]) => [k, envText(v)])),
        ...this.#secrets,
        FLEETWARD_RUN_ID: run.id,
        FLEETWARD_SERVER_ID: server.id,
        FLEETWARD_SERVER_NAME: server.name,
        FLEETWARD_SCRIPT: run.scriptName,
        FLEETWARD_SCRIPT_REVISION: String(run.revision),
        FLEETWARD_SCRIPT_HASH: run.contentHash,
      };
      const sink = spill;
      const exec = adapter.exec;
      result = await withSignal((signal) =>
        exec.exec(server, scriptCommand(this.#script, server, env), {
          timeoutMs: run.timeoutMs,
          maxOutputBytes: this.#opts.maxOutputBytes,
          signal,
          ...(sink
            ? { onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => sink.write(stream, chunk) }
            : {}),
        }),
      );
    } catch (error) {
      failure = toFleetwardError(error, `running ${run.scriptName} on ${server?.name ?? serverId}`);
    }
    const spilled = spill ? await spill.close() : undefined;
    return this.#settle(serverId, running, result, failure, spilled);
  }

  /** How a server's run ended: the task's changes, its outcome, and what to announce once saved. */
  #settle(
    serverId: string,
    running: TaskResult,
    result: ExecResult | undefined,
    failure: FleetwardError | undefined,
    spilled: Awaited<ReturnType<Spill['close']>> | undefined,
  ): Settlement {
    const ctx = this.#ctx;
    const run = this.#run;
    const secrets = Object.values(this.#secrets);
    let redactedAny = false;
    const clean = (o: OutputSummary | undefined): OutputSummary | undefined => {
      if (!o) return undefined;
      const { text, redacted } = redactSecrets(o.text, secrets);
      redactedAny ||= redacted;
      return { ...o, text };
    };
    const partial = (key: 'stdout' | 'stderr') => {
      const parsed = OutputSummarySchema.safeParse(failure?.details[key]);
      return parsed.success ? parsed.data : undefined;
    };
    const stdout = clean(result?.stdout ?? partial('stdout'));
    const stderr = clean(result?.stderr ?? partial('stderr'));
    const exitCode = result
      ? result.exitCode
      : typeof failure?.details['exitCode'] === 'number'
        ? (failure.details['exitCode'] as number)
        : undefined;

    let state: ServerOutcome['state'];
    let unreachable = false;
    let timedOut = false;
    let stopRollout: string | undefined;
    let error: { code: string; message: string } | undefined;
    if (result) {
      state = result.exitCode === 0 ? 'succeeded' : 'failed';
      if (state === 'failed') {
        error = {
          code: 'COMMAND_FAILED',
          message:
            result.exitCode === null
              ? `the script was ended by ${result.signal ?? 'a signal'}`
              : `the script exited ${result.exitCode}`,
        };
      }
    } else {
      const e = failure!;
      const mayHaveRun = e.details['commandMayHaveRun'];
      if (e instanceof AbortedError) state = 'cancelled';
      else state = 'failed';
      const stop = stopsOperation(e, this.#servers.get(serverId) ?? { id: serverId, name: serverId });
      if (stop) {
        stopRollout = stop.reason;
      } else if (e instanceof TimeoutError) {
        // A delivery that never started is an unreachable server; a script that ran too long is a failure.
        timedOut = mayHaveRun !== false;
        unreachable = mayHaveRun === false;
      } else if (e instanceof TransportError) {
        unreachable = true;
      }
      error = { code: e.code, message: redactSecrets(e.message, secrets).text.slice(0, 4000) };
    }
    const countsAgainstBudget =
      state === 'failed' && !(unreachable && !run.stopCondition.unreachableCountsAsError);
    const durationMs =
      result?.durationMs ??
      (typeof failure?.details['durationMs'] === 'number' ? failure.details['durationMs'] : undefined);
    const changes: Partial<TaskResult> = {
      status: state,
      finishedAt: nowIso(ctx),
      ...(exitCode !== undefined ? { exitCode } : {}),
      ...(stdout ? { stdout } : {}),
      ...(stderr ? { stderr } : {}),
      ...(error ? { error } : {}),
      details: {
        ...running.details,
        countsAgainstBudget,
        unreachable,
        timedOut,
        ...(durationMs !== undefined ? { durationMs } : {}),
        ...(result?.signal ? { signal: result.signal } : {}),
        ...(typeof failure?.details['commandMayHaveRun'] === 'boolean'
          ? { commandMayHaveRun: failure.details['commandMayHaveRun'] }
          : {}),
        ...(redactedAny ? { outputRedacted: true } : {}),
        ...(spilled && 'paths' in spilled ? { fullOutput: spilled.paths } : {}),
        ...(spilled && 'error' in spilled ? { fullOutputError: spilled.error.slice(0, 1000) } : {}),
      },
    };
    const announce = (saved: TaskResult) => {
      this.#tasks.set(serverId, saved);
      if (state === 'failed' && error) {
        logServerFailed(this.#logger(), serverId, error, {
          ...(exitCode !== undefined ? { exitCode } : {}),
          unreachable,
          timedOut,
        });
      }
      this.#events().emit('script.server.completed', {
        tenantId: ctx.tenantId,
        runId: run.id,
        jobId: this.#job.id,
        serverId,
        status: state,
        exitCode: exitCode ?? null,
        ...(error ? { reason: error.message } : {}),
      });
    };
    const outcome: ServerOutcome = {
      state,
      countsAgainstBudget,
      ...(stopRollout ? { stopRollout } : {}),
      ...(error ? { code: error.code } : {}),
    };
    return { serverId, running, changes, outcome, announce };
  }

  /** Writes a settled server's result with its audit record (retried over a fresh read on a conflict). */
  /**
   * Writes a server's result with its audit record, and resolves once it is written (the server's
   * slot waits for it, so a result is in the store before its server counts). The servers of a
   * round finish together: the results that arrive in the same turn of the event loop, and those
   * that arrive while a write is under way, are written together in one transaction (group commit:
   * one turn of the tenant's audit lock and one commit for all of them, instead of one each).
   */
  #save(settled: Settlement): Promise<ServerOutcome> {
    return new Promise<ServerOutcome>((resolve, reject) => {
      this.#unwritten.push({ settled, resolve, reject });
      if (this.#flushing) return;
      this.#flushing = true;
      setImmediate(() => void this.#flush());
    });
  }

  /** Results waiting for the next group write. */
  readonly #unwritten: Array<{
    settled: Settlement;
    resolve: (outcome: ServerOutcome) => void;
    reject: (error: unknown) => void;
  }> = [];
  #flushing = false;

  async #flush(): Promise<void> {
    try {
      while (this.#unwritten.length) {
        const batch = this.#unwritten.splice(0);
        let saved: TaskResult[];
        try {
          saved = await this.#writeResults(batch.map((b) => b.settled));
        } catch (error) {
          for (const b of batch) b.reject(error);
          continue;
        }
        for (const [i, b] of batch.entries()) {
          b.settled.announce(saved[i]!);
          b.resolve(b.settled.outcome);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /**
   * Writes results in one transaction against the versions this execution last wrote; when another
   * writer moved a task on meanwhile (a conflict), each is written on its own over a fresh read.
   */
  async #writeResults(settled: readonly Settlement[]): Promise<TaskResult[]> {
    const ctx = this.#ctx;
    if (settled.length > 1) {
      try {
        return await ctx.runtime.store.transaction(async (tx) => {
          const saved: TaskResult[] = [];
          for (const item of settled) {
            saved.push(
              await tx.taskResults.update(ctx.tenantId, item.running.id, item.changes as never, {
                expectedVersion: item.running.version,
              }),
            );
          }
          // The audit records last, in one stretch: the tenant's chain is locked from here to the commit only.
          await ctx.runtime.auditMany(
            tx,
            saved.map((t) => serverAudit(ctx, this.#actor, this.#run, t)),
          );
          return saved;
        });
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
    const saved: TaskResult[] = [];
    for (const item of settled) {
      saved.push(
        await saveTask(ctx, item.running.id, item.changes, {
          known: item.running,
          audit: (t) => serverAudit(ctx, this.#actor, this.#run, t),
        }),
      );
    }
    return saved;
  }

  /**
   * A worker's group commit: writes the results of several servers of this run, with their audit
   * records, in one transaction (one turn of the tenant's audit lock, one flush to disk, instead of
   * one each). A task another worker settled meanwhile (it took this worker for dead) is not
   * written over: its recorded outcome is answered instead. A conflict with such a takeover
   * during the transaction makes it start again over fresh reads.
   */
  async recordMany(
    settled: readonly Settlement[],
    workerId: string,
  ): Promise<Array<ServerOutcome | RunningElsewhere>> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    for (let attempt = 0; ; attempt++) {
      try {
        const written = await store.transaction(async (tx) => {
          const out: Array<{ outcome: ServerOutcome | RunningElsewhere; saved?: TaskResult }> = [];
          for (const item of settled) {
            const current = await tx.taskResults.require(ctx.tenantId, item.running.id);
            const owner = current.details?.['workerId'];
            if (current.status === 'running' && owner !== workerId) {
              out.push({ outcome: { runningOn: String(owner) } });
              continue;
            }
            if (current.status !== 'running') {
              out.push({ outcome: outcomeOfTask(current, this.#servers.get(item.serverId)) });
              continue;
            }
            const saved = await tx.taskResults.update(ctx.tenantId, current.id, item.changes as never, {
              expectedVersion: current.version,
            });
            out.push({ outcome: item.outcome, saved });
          }
          // The audit records last, in one stretch: the tenant's chain is locked from here to the commit only.
          const records = out.flatMap((w) =>
            w.saved ? [serverAudit(ctx, this.#actor, this.#run, w.saved)] : [],
          );
          if (records.length) await ctx.runtime.auditMany(tx, records);
          return out;
        });
        return written.map((w, i) => {
          if (w.saved) settled[i]!.announce(w.saved);
          return w.outcome;
        });
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= 4) throw error;
      }
    }
  }

  /**
   * Ends the run as the rollout's outcome says, in one transaction: untouched servers recorded as
   * not started (or cancelled), the job and the run updated, the audit record and the outbox event.
   * A paused run keeps its untouched servers pending for a resume.
   */
  async finish(result: Pick<RolloutOutcome, 'status' | 'reason' | 'untouched'>): Promise<void> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    const paused = result.status === 'paused';
    const terminal = !paused;
    const announce = await store.transaction(async (tx) => {
      // A cancellation keeps the reason `cancelRun` gave (who cancelled, and why).
      const requested = (await tx.scriptRuns.require(ctx.tenantId, this.#run.id)).reason;
      const outcome =
        result.status === 'cancelled' && requested?.startsWith('cancelled by ')
          ? { ...result, reason: requested }
          : result;
      if (terminal) {
        for (const serverId of outcome.untouched) {
          const cancelled = outcome.status === 'cancelled';
          const saved = await saveTask(
            ctx,
            this.#taskId(serverId),
            {
              status: cancelled ? 'cancelled' : 'skipped',
              finishedAt: nowIso(ctx),
              error: {
                code: 'NOT_STARTED',
                message:
                  `not started: ${cancelled ? 'the run was cancelled' : (outcome.reason ?? 'the run stopped')}`.slice(
                    0,
                    2000,
                  ),
              },
            },
            { known: this.#tasks.get(serverId), scope: tx },
          );
          this.#tasks.set(serverId, saved);
        }
      }
      const all = [...this.#tasks.values()];
      const count = (s: ServerRunState) => all.filter((t) => stateOf(t) === s).length;
      const counts = {
        succeeded: count('succeeded'),
        failed: count('failed'),
        notStarted: count('not-started'),
        cancelled: count('cancelled'),
        pending: count('pending'),
      };
      const job = await tx.jobs.require(ctx.tenantId, this.#job.id);
      this.#job = await tx.jobs.update(
        ctx.tenantId,
        job.id,
        {
          status: outcome.status === 'paused' ? 'pending' : outcome.status,
          ...(terminal ? { finishedAt: nowIso(ctx) } : {}),
          summary: { total: all.length, succeeded: counts.succeeded, failed: counts.failed },
          ...(outcome.reason ? { reason: outcome.reason.slice(0, 2000) } : {}),
        },
        { expectedVersion: job.version },
      );
      const current = await tx.scriptRuns.require(ctx.tenantId, this.#run.id);
      this.#run = await tx.scriptRuns.update(
        ctx.tenantId,
        current.id,
        {
          status: outcome.status,
          ...(outcome.reason ? { reason: outcome.reason.slice(0, 2000) } : {}),
          ...(terminal ? { finishedAt: nowIso(ctx) } : {}),
        },
        { expectedVersion: current.version },
      );
      const failed = all.filter((t) => t.status === 'failed').map((t) => t.serverId);
      const notStarted = all.filter((t) => stateOf(t) === 'not-started').map((t) => t.serverId);
      const { emit } = await ctx.record(tx, {
        audit: this.#runAudit(
          outcome.status === 'succeeded' ? 'success' : 'failure',
          {
            status: outcome.status,
            ...counts,
            failed: failed.slice(0, 1000),
            notStarted: notStarted.slice(0, 1000),
          },
          outcome.reason,
        ),
        outbox: {
          eventType: 'script.run.completed',
          payload: {
            tenantId: ctx.tenantId,
            runId: this.#run.id,
            jobId: this.#job.id,
            script: this.#run.scriptName,
            revision: this.#run.revision,
            contentHash: this.#run.contentHash,
            status: outcome.status,
            ...(outcome.reason ? { reason: outcome.reason } : {}),
            ...counts,
          },
        },
        event: {
          name: 'script.run.completed',
          args: [
            {
              tenantId: ctx.tenantId,
              runId: this.#run.id,
              jobId: this.#job.id,
              scriptName: this.#run.scriptName,
              contentHash: this.#run.contentHash,
              status: outcome.status,
              ...(outcome.reason ? { reason: outcome.reason } : {}),
            },
          ],
        },
      });
      return emit;
    });
    if (terminal && this.#run.secretsRef) {
      await ctx.runtime.secrets?.delete(this.#run.secretsRef).catch(() => undefined);
    }
    announce();
    const all = [...this.#tasks.values()];
    logJobFinished(this.#logger(), this.#job, ctx.runtime.clock.now(), {
      runId: this.#run.id,
      script: this.#run.scriptName,
      notStarted: all.filter((t) => stateOf(t) === 'not-started').length,
    });
  }

  /** Ends a run whose executing process is gone (or that never started executing) as cancelled. */
  async cancelAbandoned(reason: string): Promise<void> {
    const ctx = this.#ctx;
    const store = ctx.runtime.store;
    this.#job = await store.jobs.require(ctx.tenantId, this.#run.jobId!);
    for (const task of await store.taskResults.listAll(ctx.tenantId, { where: { jobId: this.#job.id } })) {
      this.#tasks.set(task.serverId, task);
    }
    await store.transaction((tx) => this.#failInterrupted(tx));
    const untouched = [...this.#tasks.values()].filter((t) => t.status === 'pending').map((t) => t.serverId);
    await this.finish({ status: 'cancelled', reason, untouched });
  }
}

/** Loads and checks everything a start, resume or cancel needs, and authorizes it. */
async function prepare(ctx: CallContext, runId: string) {
  const store = ctx.runtime.store;
  const run = await store.scriptRuns.require(ctx.tenantId, runId);
  const script = await store.scripts.require(ctx.tenantId, run.scriptId);
  const servers = await loadServers(ctx, run.serverIds);
  const principal = await ctx.authorize(
    'script.run',
    [scriptResource(run.scriptName), ...serverResources(servers.values())],
    { type: 'script-run', id: runId },
  );
  return { run, script, servers, principal };
}

/** Refuses, with an audited denial, a risky version that is not approved as it stands now. */
async function requireApproval(ctx: CallContext, principal: Principal, run: ScriptRun, script: Script) {
  const state = await approvalState(ctx.runtime.store, ctx.tenantId, script);
  if (state.satisfied) return;
  const reason = state.reason ?? 'the script is not approved';
  await ctx.runtime.audit(ctx.runtime.store, {
    tenantId: ctx.tenantId,
    actor: { principalId: principal.id, kind: principal.kind },
    action: 'script.run',
    target: { type: 'script-run', id: run.id },
    decision: 'deny',
    result: 'denied',
    reason,
    details: { runId: run.id, script: run.scriptName, revision: run.revision, contentHash: run.contentHash },
  });
  throw new AuthorizationError(`script run ${run.id} refused: ${reason}`, {
    allowed: false,
    action: 'script.run',
    principalId: principal.id,
    resource: { type: 'script', id: run.scriptName },
    reason,
  });
}

async function execute(
  ctx: CallContext,
  runId: string,
  options: ExecuteRunOptions,
  mode: 'start' | 'resume',
): Promise<ScriptRunResults> {
  const { signal, ...rest } = objectArgument(options, 'ExecuteRunOptions', true);
  const opts = validate(ExecuteRunOptionsSchema, rest, 'ExecuteRunOptions');
  const { run, script, servers, principal } = await prepare(ctx, runId);
  // Refusals after the allow decision are audited as failures of the call (rule 1).
  const refuse = async (message: string) =>
    refused(ctx, principal, 'script.run', { type: 'script-run', id: runId }, new ConflictError(message));
  if (TERMINAL.has(run.status)) {
    throw await refuse(`script run ${runId} is ${run.status}; it cannot run again (plan a new run)`);
  }
  if (mode === 'start' && run.status !== 'awaiting-start') {
    throw await refuse(`script run ${runId} has started already (${run.status}); resume it instead`);
  }
  if (mode === 'resume' && run.status === 'awaiting-start') {
    throw await refuse(`script run ${runId} has not started yet; start it instead`);
  }
  if (run.cancelRequested) {
    throw await refuse(`script run ${runId} is being cancelled`);
  }
  await requireApproval(ctx, principal, run, script);
  const secrets = await secretValues(ctx, run, script, opts.secrets).catch(async (error: unknown) => {
    throw await refused(ctx, principal, 'script.run', { type: 'script-run', id: runId }, error);
  });
  const holder = opts.holder ?? `${process.pid}-${randomUUID()}`;
  const lease = await RunLease.acquire(
    ctx.runtime.store,
    `script-run:${ctx.tenantId}:${runId}`,
    holder,
    opts.leaseTtlMs,
    ctx.runtime.logger.child({ tenantId: ctx.tenantId, runId }),
  );
  if (!lease) throw await refuse(`script run ${runId} is being executed by another process`);
  try {
    // Read again under the lease: another process may have moved the run on while we waited.
    const fresh = await ctx.runtime.store.scriptRuns.require(ctx.tenantId, runId);
    if (fresh.version !== run.version) {
      throw await refuse(
        `script run ${runId} changed while it was being started (${fresh.status}); try again`,
      );
    }
    const execution = new RunExecution(ctx, opts, actorOf(principal), run, script, servers, secrets);
    const queue = ctx.runtime.rollouts;
    if (!queue) return await execution.execute(signal, lease);
    await submitToWorkers(ctx, queue, execution, run, mode, opts, refuse);
  } finally {
    await lease.release();
  }
  // Workers carry it out now; this call waits for its end like an in-process run would.
  return waitForEnd(ctx, runId, signal, opts.cancelPollMs);
}

/**
 * Hands a run to the worker queue: its job and tasks (or, on resume, the settling of tasks left
 * running) commit first, then the submission; a crash between the two leaves a running run that
 * no worker has, which `resumeRun` submits again.
 */
async function submitToWorkers(
  ctx: CallContext,
  queue: RolloutQueue,
  execution: RunExecution,
  run: ScriptRun,
  mode: 'start' | 'resume',
  opts: ParsedOptions,
  refuse: (message: string) => Promise<Error>,
): Promise<void> {
  const ref: RolloutRef = { kind: 'script', tenantId: ctx.tenantId, runId: run.id };
  if (mode === 'resume' && (await queue.isActive(ref))) {
    throw await refuse(
      `script run ${run.id} is being carried out by workers (${queue.name}); it cannot be resumed now`,
    );
  }
  if (run.secretParams.length > 0 && (opts.secrets || !run.secretsRef || !ctx.runtime.secrets)) {
    throw await refuse(
      `script run ${run.id} has secret parameters: workers read them from the SecretStore, so a Fleet with workers needs \`secrets\` when the run is planned, and takes no \`secrets\` option on start or resume`,
    );
  }
  if (opts.outputDir) {
    throw await refuse(
      '`outputDir` writes output files on the executing machine: it is not available when workers carry out runs',
    );
  }
  await execution.submit(queue);
}

/**
 * Waits for a run carried out by workers to end (or pause), polling the store every `everyMs`. An
 * abort of `signal` asks for the run's cancellation once, then keeps waiting for its end.
 */
async function waitForEnd(
  ctx: CallContext,
  runId: string,
  signal: AbortSignal | undefined,
  everyMs: number,
): Promise<ScriptRunResults> {
  const store = ctx.runtime.store;
  let cancelAsked = false;
  for (;;) {
    const run = await store.scriptRuns.require(ctx.tenantId, runId);
    if (TERMINAL.has(run.status) || run.status === 'paused') return runResults(ctx, runId);
    if (signal?.aborted && !cancelAsked && !run.cancelRequested) {
      cancelAsked = true;
      await store.scriptRuns
        .update(
          ctx.tenantId,
          runId,
          { cancelRequested: true, reason: 'cancelled: the starting call was aborted' },
          { expectedVersion: run.version },
        )
        .catch((error: unknown) => {
          if (!(error instanceof ConflictError)) throw error;
          cancelAsked = false; // the run moved on; look again
        });
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** How a principal appears in audit records. */
const actorOf = (principal: Principal): AuditInput['actor'] => ({
  principalId: principal.id,
  kind: principal.kind,
});

/**
 * Starts a planned run and resolves when it has ended (or paused): servers wave by wave, at most
 * `maxConcurrency` at a time, until the error budget is spent. Each server's state is written
 * before its script starts, so a run whose process dies is resumed with {@link resumeRun} without
 * running any server twice.
 */
export function startRun(ctx: CallContext, runId: string, options: ExecuteRunOptions = {}) {
  return execute(ctx, runId, options, 'start');
}

/**
 * Resumes a run whose process died (its lease expired) or that paused on its error budget (pass
 * `acknowledgeFailures`). Servers that finished keep their results; a server whose script was
 * running when the process died is failed as interrupted, not run again.
 */
export function resumeRun(ctx: CallContext, runId: string, options: ExecuteRunOptions = {}) {
  return execute(ctx, runId, options, 'resume');
}

/**
 * Cancels a run. A run that has not started, is paused or whose process is gone is ended at once;
 * a run executing in a process (this one or another) is marked, and that process kills the
 * scripts still running, starts no further server and ends the run as cancelled.
 */
export async function cancelRun(
  ctx: CallContext,
  runId: string,
  options: { reason?: string } = {},
): Promise<ScriptRun> {
  const { reason: given } = validateOptions(ReasonOptionsSchema, options, 'CancelRunOptions');
  const { run, script, servers, principal } = await prepare(ctx, runId);
  const reason = `cancelled by ${principal.id}${given ? `: ${given.slice(0, 500)}` : ''}`;
  if (TERMINAL.has(run.status)) {
    throw await refused(
      ctx,
      principal,
      'script.run',
      { type: 'script-run', id: runId },
      new ConflictError(`script run ${runId} has ended (${run.status})`),
    );
  }
  const store = ctx.runtime.store;
  if (run.status === 'awaiting-start') {
    const cancelled = await ctx.write(
      'script.run',
      [scriptResource(run.scriptName)],
      { type: 'script-run', id: runId },
      (tx) =>
        tx.scriptRuns.update(
          ctx.tenantId,
          runId,
          { status: 'cancelled', reason, finishedAt: nowIso(ctx) },
          { expectedVersion: run.version },
        ),
      () => ({ runId, status: 'cancelled', before: 'awaiting-start' }),
    );
    if (run.secretsRef) await ctx.runtime.secrets?.delete(run.secretsRef).catch(() => undefined);
    return cancelled;
  }
  // Workers carrying the run out hold no lease: they watch for the request and end the run.
  const onWorkers = await ctx.runtime.rollouts?.isActive({ kind: 'script', tenantId: ctx.tenantId, runId });
  const lease = onWorkers
    ? undefined
    : await RunLease.acquire(
        ctx.runtime.store,
        `script-run:${ctx.tenantId}:${runId}`,
        `cancel-${randomUUID()}`,
        60_000,
      );
  if (lease) {
    try {
      const execution = new RunExecution(
        ctx,
        validate(ExecuteRunOptionsSchema, {}, 'ExecuteRunOptions'),
        actorOf(principal),
        run,
        script,
        servers,
        {},
      );
      await execution.cancelAbandoned(reason);
    } finally {
      await lease.release();
    }
    return store.scriptRuns.require(ctx.tenantId, runId);
  }
  return ctx.write(
    'script.run',
    [scriptResource(run.scriptName)],
    { type: 'script-run', id: runId },
    async (tx) => {
      const current = await tx.scriptRuns.require(ctx.tenantId, runId);
      return tx.scriptRuns.update(
        ctx.tenantId,
        runId,
        { cancelRequested: true, reason },
        { expectedVersion: current.version },
      );
    },
    () => ({ runId, cancelRequested: true }),
  );
}

/** A run with every server's state and result (no authorization: callers check `script.read`). */
export async function runResults(ctx: CallContext, runId: string): Promise<ScriptRunResults> {
  const store = ctx.runtime.store;
  const run = await store.scriptRuns.require(ctx.tenantId, runId);
  const job = run.jobId ? await store.jobs.get(ctx.tenantId, run.jobId) : undefined;
  const tasks = new Map(
    job
      ? (await store.taskResults.listAll(ctx.tenantId, { where: { jobId: job.id } })).map((t) => [
          t.serverId,
          t,
        ])
      : [],
  );
  const waveOf = new Map(run.waves.flatMap((w) => w.serverIds.map((id) => [id, w.name] as const)));
  const servers = run.serverIds.map((serverId): ServerRunResult => {
    const task = tasks.get(serverId);
    const details = task?.details ?? {};
    const fullOutput = details['fullOutput'] as { stdout: string; stderr: string } | undefined;
    return {
      serverId,
      wave: waveOf.get(serverId) ?? '',
      state: stateOf(task),
      attempt: task?.attempt ?? 0,
      ...(task?.exitCode !== undefined ? { exitCode: task.exitCode } : {}),
      unreachable: details['unreachable'] === true,
      timedOut: details['timedOut'] === true,
      countsAgainstBudget: task?.status === 'failed' && details['countsAgainstBudget'] !== false,
      ...(task?.startedAt ? { startedAt: task.startedAt } : {}),
      ...(task?.finishedAt ? { finishedAt: task.finishedAt } : {}),
      ...(typeof details['durationMs'] === 'number' ? { durationMs: details['durationMs'] } : {}),
      ...(task?.error ? { error: task.error } : {}),
      ...(task?.stdout ? { stdout: task.stdout } : {}),
      ...(task?.stderr ? { stderr: task.stderr } : {}),
      ...(fullOutput ? { fullOutput } : {}),
      ...(details['outputRedacted'] === true ? { outputRedacted: true } : {}),
    };
  });
  const counts: Record<ServerRunState, number> = {
    pending: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    'not-started': 0,
    cancelled: 0,
  };
  for (const s of servers) counts[s.state]++;
  return { run, ...(job ? { job } : {}), servers, counts };
}

/** Runs a worker keeps loaded: enough for every run a worker is likely to be sharing at once. */
const LOADED_RUNS = 64;

/**
 * The worker side of script runs ({@link RolloutWork}): carries out one server's task of a run
 * handed to a {@link RolloutQueue}, and records a run's end. Each call acts as the principal who
 * started the run (that start was authorized and audited); runs are loaded once per worker and
 * kept for the next of their servers.
 */
export function createScriptRolloutWork(runtime: Runtime): RolloutWork {
  const context = (tenantId: string, principalId: string) =>
    createCallContext(runtime, { tenantId, principalId });
  const loaded = new Map<string, Promise<RunExecution>>();
  const claims = new WeakMap<ClaimedServer, { execution: RunExecution; running: TaskResult }>();
  const unrecorded = new WeakMap<UnrecordedResult, { execution: RunExecution; settled: Settlement }>();
  const load = async (ref: RolloutRef): Promise<RunExecution> => {
    const { tenantId, runId } = ref;
    const run = await runtime.store.scriptRuns.require(tenantId, runId);
    const ctx = context(tenantId, run.requestedBy);
    const principal = await ctx.principal();
    const actor: AuditInput['actor'] = { principalId: run.requestedBy, kind: principal?.kind ?? 'human' };
    const script = await ctx.runtime.store.scripts.require(tenantId, run.scriptId);
    const servers = await loadServers(ctx, run.serverIds);
    const secrets = await secretValues(ctx, run, script, undefined);
    const opts = validate(ExecuteRunOptionsSchema, {}, 'ExecuteRunOptions');
    return new RunExecution(ctx, opts, actor, run, script, servers, secrets);
  };
  const cached = (ref: RolloutRef): Promise<RunExecution> => {
    const key = `${ref.tenantId}\u0000${ref.runId}`;
    let execution = loaded.get(key);
    if (!execution) {
      execution = load(ref).then(async (e) => {
        await e.loadJob();
        return e;
      });
      execution.catch(() => loaded.delete(key));
      if (loaded.size >= LOADED_RUNS) loaded.delete(loaded.keys().next().value as string);
      loaded.set(key, execution);
    }
    return execution;
  };
  return {
    async claim(ref, serverIds, options) {
      const execution = await cached(ref);
      const claimed = await execution.claimMany(serverIds, options.workerId, options.ownerAlive);
      return claimed.map((c, i) => {
        if (!('running' in c)) return c;
        const handle: ClaimedServer = { claimed: true, ref, serverId: serverIds[i]! };
        claims.set(handle, { execution, running: c.running });
        return handle;
      });
    },
    async carryOut(server, signal) {
      const entry = claims.get(server);
      if (!entry) {
        throw new ValidationError('ClaimedServer', [
          { path: [], message: 'was not made by this RolloutWork (or is not a result of claim)' },
        ]);
      }
      claims.delete(server);
      const settled = await entry.execution.carryOutClaimed(server.serverId, entry.running, signal);
      const handle: UnrecordedResult = { unrecorded: true, ref: server.ref, serverId: server.serverId };
      unrecorded.set(handle, { execution: entry.execution, settled });
      return handle;
    },
    async record(results, workerId): Promise<Array<RolloutServerOutcome | RunningElsewhere>> {
      const byRun = new Map<RunExecution, number[]>();
      const found = results.map((r, i) => {
        const entry = unrecorded.get(r);
        if (!entry) {
          throw new ValidationError('UnrecordedResult', [
            { path: [i], message: 'was not made by this RolloutWork (or is not a result of runServer)' },
          ]);
        }
        byRun.set(entry.execution, [...(byRun.get(entry.execution) ?? []), i]);
        return entry;
      });
      const outcomes = new Array<RolloutServerOutcome | RunningElsewhere>(results.length);
      for (const [execution, indexes] of byRun) {
        const written = await execution.recordMany(
          indexes.map((i) => found[i]!.settled),
          workerId,
        );
        indexes.forEach((i, k) => {
          outcomes[i] = written[k]!;
        });
      }
      return outcomes;
    },
    async finish(ref, end: RolloutEnd): Promise<void> {
      loaded.delete(`${ref.tenantId}\u0000${ref.runId}`);
      const run = await runtime.store.scriptRuns.require(ref.tenantId, ref.runId);
      // A redelivered end, or a run already ended another way (cancelled while it was paused).
      if (run.status !== 'running') return;
      const execution = await load(ref);
      await execution.loadTasks();
      await execution.finish(end);
    },
    async cancelRequested(ref): Promise<boolean> {
      return (await runtime.store.scriptRuns.get(ref.tenantId, ref.runId))?.cancelRequested === true;
    },
    async waveStarted(ref, start) {
      (await cached(ref)).announceWave(start);
    },
  };
}
