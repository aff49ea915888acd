import { randomBytes } from 'node:crypto';
import {
  createFleet,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  HostKeyMismatchError,
  type Job,
  type PatchPolicyInput,
  type Server,
  type TaskResult,
} from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { createRolloutQueue, createWorker, type PostgresRolloutQueue, type Worker } from '@fleetward/worker';
import { afterEach, expect, it } from 'vitest';
import {
  type FakeAdapterOptions,
  type FakeHost,
  fakeAdapter,
  fakeDriver,
  fakeHost,
  seedPatchTenant,
  type TestPolicyOptions,
} from '../../core/test/patch/support/fake-host.js';
import { describeWithPostgres, dropSchemas, POSTGRES_URL } from './support/setup.js';

// Patch runs carried out by workers on PostgreSQL, over hosts whose package manager is simulated in
// memory (core's executor test support): what apt, dnf and zypper answer is proven on the lab; this
// proves that a run's servers, steps, budget and stops are the same over many workers as in one
// process. Every "process" here has its own store, queue and Fleet; they share the hosts.

const TENANT = 'acme';
const FAST = { pollIntervalMs: 20, heartbeatMs: 100, takeoverMs: 600 } as const;

type PolicyOptions = TestPolicyOptions;

/** What a `before` hook sees: every command of every process, so a test can fail or count them. */
type Before = FakeAdapterOptions['before'];

interface PatchDeployment {
  hosts: Record<string, FakeHost>;
  fleet: Fleet;
  queue: PostgresRolloutQueue;
  alice: FleetSession;
  bob: FleetSession;
  ids: string[];
  /** Another process over the same database and hosts. */
  open(before?: Before): Promise<{ fleet: Fleet; queue: PostgresRolloutQueue }>;
  close(): Promise<void>;
}

/** Seeds the tenant with policy `pol` (four servers at a time unless `policy` says otherwise). */
const populate = (fleet: Fleet, ids: string[], policy: PolicyOptions) =>
  seedPatchTenant(fleet, ids, { rollout: rolloutOf({ maxConcurrency: 4 }), ...policy });

const fresh = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

async function deployPatch(
  ids: string[],
  policy: PolicyOptions = {},
  before?: Before,
  hosts: Record<string, FakeHost> = Object.fromEntries(ids.map((id) => [id, fakeHost()])),
): Promise<PatchDeployment> {
  const storeSchema = fresh('fw_pstore');
  const queueSchema = fresh('fw_pqueue');
  const opened: Array<{ close(): Promise<void> }> = [];
  const open = async (hook?: Before) => {
    const store = await createPostgresStore({ connectionString: POSTGRES_URL, schema: storeSchema });
    const queue = await createRolloutQueue({
      connectionString: POSTGRES_URL,
      schema: queueSchema,
      retryDelaySeconds: 0,
    });
    const fleet = createFleet({
      store,
      adapters: [fakeAdapter({ hosts, ...(hook ? { before: hook } : {}) })],
      drivers: [fakeDriver],
      rollouts: queue,
    });
    opened.push(queue, fleet);
    return { fleet, queue };
  };
  const { fleet, queue } = await open(before);
  const { alice, bob } = await populate(fleet, ids, policy);
  return {
    hosts,
    fleet,
    queue,
    alice,
    bob,
    ids,
    open,
    async close() {
      for (const o of opened.reverse()) await o.close().catch(() => undefined);
      await dropSchemas(storeSchema, queueSchema);
    },
  };
}

/** The same plan executed in one process on a memory store, over fresh hosts made the same way. */
async function inProcess(
  ids: string[],
  policy: PolicyOptions,
  before: Before | undefined,
  hosts: Record<string, FakeHost>,
): Promise<{ job: Job; tasks: Record<string, TaskResult> }> {
  const fleet = createFleet({
    store: createMemoryStore(),
    adapters: [fakeAdapter({ hosts, ...(before ? { before } : {}) })],
    drivers: [fakeDriver],
  });
  try {
    const { alice, bob } = await populate(fleet, ids, policy);
    const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id);
    return { job, tasks: await tasksOf(fleet, job.id) };
  } finally {
    await fleet.close();
  }
}

async function tasksOf(fleet: Fleet, jobId: string): Promise<Record<string, TaskResult>> {
  const tasks = await fleet.store.taskResults.listAll(TENANT, { where: { jobId } });
  return Object.fromEntries(tasks.map((t) => [t.serverId, t]));
}

const statuses = (tasks: Record<string, TaskResult>) =>
  Object.fromEntries(Object.entries(tasks).map(([id, t]) => [id, [t.status, t.error?.code ?? null]]));

const serverIds = (n: number) => Array.from({ length: n }, (_, i) => `s${String(i).padStart(3, '0')}`);

/** Hosts of which `failing` cannot become root: their preflight fails, counted against the budget. */
function hostsWith(ids: string[], failing: ReadonlySet<string>): Record<string, FakeHost> {
  return Object.fromEntries(
    ids.map((id) => {
      const host = fakeHost();
      host.sudo = !failing.has(id);
      return [id, host];
    }),
  );
}

describeWithPostgres('patch runs carried out by workers on PostgreSQL', () => {
  let deployment: PatchDeployment | undefined;
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await deployment?.close();
    deployment = undefined;
  });

  const track = async (pending: Promise<PatchDeployment>) => {
    deployment = await pending;
    return deployment;
  };

  const startWorkers = async (d: PatchDeployment, count: number, concurrency: number, before?: Before) => {
    for (let i = 0; i < count; i++) {
      const { fleet, queue } = await d.open(before);
      workers.push(await createWorker({ fleet, queue, concurrency, ...FAST }));
    }
  };

  const approvedPlan = async (d: PatchDeployment) => {
    const plan = await d.alice.patch.planPatchRun({ policyId: 'pol' });
    await d.bob.patch.approvePlan(plan.id, { hash: plan.hash });
    return plan;
  };

  it('patches every server exactly once across three workers, within the run’s concurrency, with every step audited', async () => {
    const ids = serverIds(30);
    let inFlight = 0;
    let peak = 0;
    // Counts commands in flight over every process: the run's concurrency holds over all workers.
    const before: Before = async (_server, what) => {
      if (what === 'scan') return;
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight--;
    };
    const d = await track(
      deployPatch(
        ids,
        {
          rollout: rolloutOf({
            maxConcurrency: 3,
            waves: [{ name: 'canary', selector: { ids: ids.slice(0, 5) } }],
          }),
        },
        before,
      ),
    );
    await startWorkers(d, 3, 4, before);
    const waves: Array<{ wave: string; serverIds: string[] }> = [];
    for (const fleet of [d.fleet, ...workers.map((w) => w.fleet)]) {
      fleet.events.on('patch.wave.started', (e) => waves.push(e));
    }
    const plan = await approvedPlan(d);
    for (const host of Object.values(d.hosts)) host.log.length = 0;
    const job = await d.bob.patch.executePlan(plan.id);
    expect(job.status).toBe('succeeded');
    expect(job.summary).toEqual({ total: 30, succeeded: 30, failed: 0 });
    for (const [id, host] of Object.entries(d.hosts)) {
      expect(
        host.log.filter((c) => c === 'fakepm install'),
        id,
      ).toHaveLength(1);
      expect(
        host.log.filter((c) => c === 'true'),
        id,
      ).toHaveLength(1);
      expect(host.installed.get('demo')).toBe('1.1');
    }
    expect(peak).toBeLessThanOrEqual(3);
    // Each wave announced once, in order, by whichever process started it.
    expect(waves.map((w) => [w.wave, w.serverIds.length])).toEqual([
      ['canary', 5],
      ['remaining', 25],
    ]);
    const tasks = Object.values(await tasksOf(d.fleet, job.id));
    expect(tasks.every((t) => t.status === 'succeeded' && t.attempt === 1)).toBe(true);
    expect(new Set(tasks.map((t) => t.details?.['workerId'])).size).toBeGreaterThan(1);
    const records = await d.fleet.store.audit.list(TENANT, { limit: 10_000 });
    const verified = records.filter((r) => r.action === 'patch.step' && r.details?.['step'] === 'verify');
    expect(new Set(verified.map((r) => r.target?.id))).toEqual(new Set(ids));
    expect(records.filter((r) => r.action === 'patch.execute').map((r) => r.result)).toEqual(
      expect.arrayContaining(['started', 'success']),
    );
    expect((await d.alice.verifyAuditLog()).ok).toBe(true);
    expect((await d.fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('completed');
    expect(await d.queue.state({ kind: 'patch', tenantId: TENANT, runId: plan.id })).toMatchObject({
      status: 'ended',
      inFlight: 0,
      servers: { done: 30, pending: 0 },
    });
  }, 120_000);

  it('spends the error budget where one process does: the same servers fail and the same are never started', async () => {
    const ids = serverIds(24);
    const failing = new Set(['s003', 's007', 's011', 's015']);
    const policy = { rollout: rolloutOf({ maxConcurrency: 1, errorBudget: { count: 2 } }) };
    const alone = await inProcess(ids, policy, undefined, hostsWith(ids, failing));
    expect(alone.job.status).toBe('stopped');
    const d = await track(deployPatch(ids, policy, undefined, hostsWith(ids, failing)));
    await startWorkers(d, 3, 4);
    const plan = await approvedPlan(d);
    const job = await d.bob.patch.executePlan(plan.id);
    expect(job.status).toBe('stopped');
    expect(job.reason).toContain('error budget spent');
    const tasks = await tasksOf(d.fleet, job.id);
    expect(statuses(tasks)).toEqual(statuses(alone.tasks));
    expect(job.summary).toEqual(alone.job.summary);
    // Not started means not touched.
    for (const [id, task] of Object.entries(tasks)) {
      if (task.error?.code === 'NOT_STARTED') expect(d.hosts[id]!.log.includes('fakepm install')).toBe(false);
    }
  }, 120_000);

  it('stops at a changed host key whatever the budget: no other server is started, and the job names the server', async () => {
    const ids = serverIds(12);
    let spoofed = false;
    const before: Before = (server: Server) => {
      if (spoofed && server.id === 's004')
        throw new HostKeyMismatchError(`host key of ${server.name} is not the pinned one`);
    };
    const d = await track(
      deployPatch(
        ids,
        { rollout: rolloutOf({ maxConcurrency: 1, errorBudget: { count: 50 }, onBudgetSpent: 'pause' }) },
        before,
      ),
    );
    await startWorkers(d, 2, 4, before);
    const plan = await approvedPlan(d);
    for (const host of Object.values(d.hosts)) host.log.length = 0;
    spoofed = true;
    const job = await d.bob.patch.executePlan(plan.id);
    expect(job.status).toBe('stopped');
    expect(job.reason).toContain('host key of s004 changed');
    const tasks = await tasksOf(d.fleet, job.id);
    expect(tasks['s004']).toMatchObject({ status: 'failed', error: { code: 'HOST_KEY_MISMATCH' } });
    const notStarted = Object.values(tasks).filter((t) => t.error?.code === 'NOT_STARTED');
    expect(notStarted.length).toBeGreaterThan(0);
    for (const t of notStarted) {
      expect(t.status).toBe('skipped');
      expect(d.hosts[t.serverId]!.log).toEqual([]);
    }
    expect((await d.fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('stopped');
  }, 120_000);

  it('pauses on a spent budget and resumes through the workers: no server is patched twice', async () => {
    const ids = serverIds(16);
    const failing = new Set(['s001', 's002']);
    const d = await track(
      deployPatch(
        ids,
        { rollout: rolloutOf({ maxConcurrency: 1, errorBudget: { count: 1 }, onBudgetSpent: 'pause' }) },
        undefined,
        hostsWith(ids, failing),
      ),
    );
    await startWorkers(d, 2, 4);
    const plan = await approvedPlan(d);
    const paused = await d.bob.patch.executePlan(plan.id);
    expect(paused.status).toBe('pending');
    expect(paused.reason).toContain('acknowledgeFailures');
    const before = await tasksOf(d.fleet, paused.id);
    expect(Object.values(before).filter((t) => t.status === 'pending').length).toBe(13);
    // Executing it again with the failures acknowledged hands the untouched servers to the workers.
    const resumed = await d.bob.patch.executePlan(plan.id, { acknowledgeFailures: true });
    expect(resumed.status).toBe('partial');
    const after = await tasksOf(d.fleet, resumed.id);
    expect(Object.values(after).filter((t) => t.status === 'succeeded').length).toBe(14);
    for (const [id, host] of Object.entries(d.hosts)) {
      expect(host.log.filter((c) => c === 'fakepm install').length, id).toBeLessThanOrEqual(1);
    }
    expect((await d.alice.verifyAuditLog()).ok).toBe(true);
  }, 120_000);

  it('cancels through the starting call’s signal: servers running finish, the rest are cancelled untouched', async () => {
    const ids = serverIds(20);
    const controller = new AbortController();
    let installs = 0;
    const before: Before = async (_server, what) => {
      if (what === 'fakepm install' && ++installs === 3) controller.abort();
      await new Promise((resolve) => setTimeout(resolve, 5));
    };
    const d = await track(deployPatch(ids, { rollout: rolloutOf({ maxConcurrency: 2 }) }, before));
    await startWorkers(d, 2, 4, before);
    const plan = await approvedPlan(d);
    const job = await d.bob.patch.executePlan(plan.id, { signal: controller.signal });
    expect(job.status).toBe('cancelled');
    const tasks = Object.values(await tasksOf(d.fleet, job.id));
    const cancelled = tasks.filter((t) => t.status === 'cancelled');
    expect(cancelled.length).toBeGreaterThan(0);
    for (const t of cancelled) {
      expect(t.error?.code).toBe('NOT_STARTED');
      expect(d.hosts[t.serverId]!.log.includes('fakepm install')).toBe(false);
    }
    // A server whose patch had started was finished, not cut off mid-transaction.
    expect(tasks.every((t) => t.status === 'succeeded' || t.status === 'cancelled')).toBe(true);
    expect((await d.fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('cancelled');
  }, 120_000);

  it('refuses to execute a plan again while workers carry it out', async () => {
    const ids = serverIds(4);
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const before: Before = async (_server, what) => {
      if (what === 'fakepm install') await held;
    };
    const d = await track(deployPatch(ids, {}, before));
    await startWorkers(d, 1, 4, before);
    const plan = await approvedPlan(d);
    const running = d.bob.patch.executePlan(plan.id);
    // Wait until the workers have the run.
    for (let i = 0; i < 200; i++) {
      if (await d.queue.isActive({ kind: 'patch', tenantId: TENANT, runId: plan.id })) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await expect(d.bob.patch.executePlan(plan.id)).rejects.toMatchObject({ code: 'CONFLICT' });
    release();
    expect((await running).status).toBe('succeeded');
  }, 120_000);
});

/** A policy's rollout with the test's defaults. */
function rolloutOf(r: {
  maxConcurrency: number;
  waves?: Array<{ name: string; selector: { ids: string[] } }>;
  errorBudget?: { count: number };
  onBudgetSpent?: 'stop' | 'pause';
}) {
  return {
    waves: [],
    errorBudget: { count: 10 },
    unreachableCountsAsError: true,
    onBudgetSpent: 'stop' as const,
    ...r,
  };
}
