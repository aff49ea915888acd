import {
  type ClaimedServer,
  createFleet,
  createMemoryStore,
  type Fleet,
  type Job,
  type RolloutQueue,
  type RolloutRef,
  type RolloutSubmission,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type FakeAdapterOptions,
  type FakeHost,
  fakeAdapter,
  fakeDriver,
  fakeHost,
  seedPatchTenant,
} from './support/fake-host.js';

// The worker side of patch runs (`fleet.rolloutWork` for `kind: 'patch'`), played step by step
// against a queue that only records what is submitted: takeovers, a worker taken for dead, the
// maintenance window. Workers on PostgreSQL are tested in @fleetward/worker.

const TENANT = 'acme';

function recordingQueue(): RolloutQueue & { submitted: RolloutSubmission[]; cancelled: RolloutRef[] } {
  const submitted: RolloutSubmission[] = [];
  const cancelled: RolloutRef[] = [];
  return {
    name: 'test',
    submitted,
    cancelled,
    async submit(s) {
      submitted.push(s);
      return { wavesStarted: [] };
    },
    async isActive() {
      return false;
    },
    async cancel(ref) {
      cancelled.push(ref);
    },
  };
}

const until = async (check: () => boolean) => {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
};

let opened: Fleet[] = [];
afterEach(async () => {
  for (const f of opened) await f.close();
  opened = [];
});

/**
 * Servers `ids` on fake hosts, planned and approved through a Fleet without workers; `fleet` is a
 * second Fleet over the same store whose runs go to a recording queue. `executing` is the pending
 * `executePlan` call, which resolves once a worker records the run's end.
 */
async function submitted(
  ids: string[],
  options: { before?: FakeAdapterOptions['before']; window?: object; clock?: ManualClock } = {},
) {
  const hosts: Record<string, FakeHost> = Object.fromEntries(ids.map((id) => [id, fakeHost()]));
  const clock = options.clock;
  const store = createMemoryStore(clock ? { clock } : {});
  const adapter = fakeAdapter({ hosts, ...(options.before ? { before: options.before } : {}) });
  const common = { store, adapters: [adapter], drivers: [fakeDriver], ...(clock ? { clock } : {}) };
  const setup = createFleet(common);
  const queue = recordingQueue();
  const fleet = createFleet({ ...common, rollouts: queue });
  opened.push(fleet, setup);
  const { alice } = await seedPatchTenant(setup, ids, {
    rollout: {
      waves: [],
      maxConcurrency: 2,
      errorBudget: { count: 10 },
      unreachableCountsAsError: true,
      onBudgetSpent: 'stop',
    },
    ...(options.window ? { window: options.window as never } : {}),
  });
  const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
  await setup.as({ tenantId: TENANT, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
  for (const host of Object.values(hosts)) host.log.length = 0;
  const executing: Promise<Job> = fleet
    .as({ tenantId: TENANT, principalId: 'bob' })
    .patch.executePlan(plan.id);
  executing.catch(() => undefined);
  await until(() => queue.submitted.length === 1);
  const ref: RolloutRef = { kind: 'patch', tenantId: TENANT, runId: plan.id };
  const task = async (serverId: string) =>
    store.taskResults.require(TENANT, `${queue.submitted[0]!.jobId}:${serverId}`);
  return { fleet, hosts, queue, ref, executing, task, planId: plan.id, store };
}

const dead = async () => false;

describe('patch rolloutWork — a run carried out by workers', () => {
  it('submits the plan’s waves and limits, and every server pending', async () => {
    const { queue, planId } = await submitted(['s1', 's2', 's3']);
    expect(queue.submitted[0]).toMatchObject({
      kind: 'patch',
      tenantId: TENANT,
      runId: planId,
      maxConcurrency: 2,
      maxFailures: 10,
      onBudgetSpent: 'stop',
      states: { s1: { state: 'pending' }, s2: { state: 'pending' }, s3: { state: 'pending' } },
    });
  });

  it('a worker that died mid-install: the next continues from the last step done, and the first cannot write over it', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holds = 1;
    const { fleet, hosts, ref, executing, task } = await submitted(['s1', 's2'], {
      before: async (server, what) => {
        if (server.id === 's1' && what === 'fakepm install' && holds-- > 0) await held;
      },
    });
    const work = fleet.rolloutWork;
    const [a] = await work.claim(ref, ['s1'], { workerId: 'A', ownerAlive: dead });
    expect(a).toMatchObject({ claimed: true });
    const carryingA = work.carryOut(a as ClaimedServer, new AbortController().signal);
    // A holds at the install: preflight and drift check are done and written.
    for (;;) {
      const t = await task('s1');
      if (t.step === 'install') break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect((await task('s1')).details).toMatchObject({
      workerId: 'A',
      done: ['preflight', 'drift', 'pre-scripts'],
    });
    const preflights = hosts['s1']!.log.filter((c) => c === 'true').length;

    // A live owner keeps its server.
    const [kept] = await work.claim(ref, ['s1'], { workerId: 'B', ownerAlive: async (id) => id === 'A' });
    expect(kept).toEqual({ runningOn: 'A' });

    // A is gone: B takes the server over and continues at the install.
    const [b, b2] = await work.claim(ref, ['s1', 's2'], { workerId: 'B', ownerAlive: dead });
    expect(b).toMatchObject({ claimed: true });
    expect(b2).toMatchObject({ claimed: true });
    expect(await task('s1')).toMatchObject({ status: 'running', attempt: 2, details: { workerId: 'B' } });
    const doneB = await Promise.all(
      [b, b2].map((c) => work.carryOut(c as ClaimedServer, new AbortController().signal)),
    );
    expect(await work.record(doneB, 'B')).toEqual([
      { state: 'succeeded', countsAgainstBudget: false },
      { state: 'succeeded', countsAgainstBudget: false },
    ]);
    // The preflight was not run again; the install ran once, by B.
    expect(hosts['s1']!.log.filter((c) => c === 'true').length).toBe(preflights);
    expect(hosts['s1']!.log.filter((c) => c === 'fakepm install')).toHaveLength(1);
    expect(hosts['s1']!.installed.get('demo')).toBe('1.1');

    // A wakes up: its next write finds the task no longer its own and it stops there.
    release();
    const doneA = await carryingA;
    expect(await work.record([doneA], 'A')).toEqual([{ state: 'succeeded', countsAgainstBudget: false }]);
    expect(await task('s1')).toMatchObject({ status: 'succeeded', attempt: 2, details: { workerId: 'B' } });
    const verified = (await fleet.store.audit.list(TENANT, { limit: 1000 })).filter(
      (r) =>
        r.action === 'patch.step' && r.details?.['serverId'] === 's1' && r.details?.['step'] === 'verify',
    );
    expect(verified).toHaveLength(1);

    await work.finish(ref, { status: 'succeeded', untouched: [] });
    const job = await executing;
    expect(job).toMatchObject({ status: 'succeeded', summary: { total: 2, succeeded: 2, failed: 0 } });
  });

  it('a finished server answers its recorded outcome; a claimed one past the window is not touched and stops the run', async () => {
    const clock = new ManualClock(new Date('2026-03-02T01:00:00Z')); // a Monday, inside the window
    const { fleet, hosts, ref, executing, task, store } = await submitted(['s1', 's2', 's3'], {
      clock,
      window: { cron: '0 0 * * 1', durationMinutes: 120, timeZone: 'UTC' },
    });
    const work = fleet.rolloutWork;
    const [one] = await work.claim(ref, ['s1'], { workerId: 'A', ownerAlive: dead });
    const done = await work.carryOut(one as ClaimedServer, new AbortController().signal);
    expect(await work.record([done], 'A')).toEqual([{ state: 'succeeded', countsAgainstBudget: false }]);
    expect(await work.claim(ref, ['s1'], { workerId: 'B', ownerAlive: dead })).toEqual([
      { state: 'succeeded', countsAgainstBudget: false },
    ]);
    // 01:50: fifteen minutes (the expected time of a server) no longer fit before 02:00.
    clock.set(new Date('2026-03-02T01:50:00Z'));
    const answers = await work.claim(ref, ['s2', 's3'], { workerId: 'A', ownerAlive: dead });
    expect(answers).toEqual([
      expect.objectContaining({
        state: 'skipped',
        stopRollout: expect.stringContaining('maintenance window'),
      }),
      expect.objectContaining({
        state: 'skipped',
        stopRollout: expect.stringContaining('maintenance window'),
      }),
    ]);
    expect((await task('s2')).status).toBe('pending');
    expect(hosts['s2']!.log).toEqual([]);
    await work.finish(ref, {
      status: 'stopped',
      reason: 'the maintenance window closes before another server could finish; 2 server(s) not started',
      untouched: [],
    });
    const job = await executing;
    expect(job).toMatchObject({ status: 'stopped', summary: { total: 3, succeeded: 1, failed: 0 } });
    expect(job.reason).toContain('maintenance window');
    for (const id of ['s2', 's3']) {
      expect(await task(id)).toMatchObject({ status: 'skipped', error: { code: 'NOT_STARTED' } });
    }
    // A redelivered end changes nothing.
    const before = await store.jobs.require(TENANT, job.id);
    await work.finish(ref, { status: 'succeeded', untouched: [] });
    expect((await store.jobs.require(TENANT, job.id)).version).toBe(before.version);
    const ends = (await store.audit.list(TENANT, { limit: 1000 })).filter(
      (r) => r.action === 'patch.execute' && r.result !== 'started',
    );
    expect(ends).toHaveLength(1);
  });

  it('two workers recording the same end at once write it once: one end record, one event', async () => {
    const { fleet, ref, executing, store } = await submitted(['s1', 's2']);
    const work = fleet.rolloutWork;
    const claimed = await work.claim(ref, ['s1', 's2'], { workerId: 'A', ownerAlive: dead });
    const done = await Promise.all(
      claimed.map((c) => work.carryOut(c as ClaimedServer, new AbortController().signal)),
    );
    await work.record(done, 'A');
    let completed = 0;
    fleet.events.on('patch.run.completed', () => completed++);
    await Promise.all([
      work.finish(ref, { status: 'succeeded', untouched: [] }),
      work.finish(ref, { status: 'succeeded', untouched: [] }),
    ]);
    const job = await executing;
    expect(job.status).toBe('succeeded');
    const records = await store.audit.list(TENANT, { limit: 1000 });
    expect(records.filter((r) => r.action === 'patch.execute' && r.result === 'success')).toHaveLength(1);
    expect(completed).toBe(1);
  });
});
