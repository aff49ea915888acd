import {
  type ClaimedServer,
  createFleet,
  createMemoryStore,
  type Fleet,
  type RolloutQueue,
  type RolloutRef,
  type RolloutSubmission,
} from '@fleetward/core';
import { createSimulatedFleet } from '@fleetward/testkit/sim';
import { describe, expect, it } from 'vitest';

const TENANT = 'acme';
const SCRIPT = { name: 'uptime', interpreter: 'sh' as const, body: 'uptime\n' };

/** A queue that only keeps what is submitted: the test plays the workers through `rolloutWork`. */
function recordingQueue(): RolloutQueue & { submitted: RolloutSubmission[] } {
  const submitted: RolloutSubmission[] = [];
  return {
    name: 'test',
    submitted,
    async submit(s) {
      submitted.push(s);
      return { wavesStarted: [] };
    },
    async isActive() {
      return submitted.length > 0;
    },
    async cancel() {
      throw new Error('not expected: no run is cancelled through the queue here');
    },
  };
}

async function setup(servers: number) {
  const sim = createSimulatedFleet({ servers, seed: 4 });
  const queue = recordingQueue();
  const fleet = createFleet({ store: createMemoryStore(), adapters: [sim.adapter], rollouts: queue });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: TENANT },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  for (const server of sim.servers) await fleet.store.servers.create({ tenantId: TENANT, ...server });
  const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
  await admin.scripts.add(SCRIPT);
  return { sim, queue, fleet, admin, ids: sim.servers.map((s) => s.id) };
}

const alive =
  (...ids: string[]) =>
  async (id: string) =>
    ids.includes(id);
const until = async (check: () => boolean) => {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
};

/** Claims one server for `workerId` and expects it claimed. */
async function claimOne(fleet: Fleet, ref: RolloutRef, serverId: string, workerId: string, live = alive()) {
  const [claimed] = await fleet.rolloutWork.claim(ref, [serverId], { workerId, ownerAlive: live });
  expect(claimed).toMatchObject({ claimed: true, serverId });
  return claimed as ClaimedServer;
}

describe('rolloutWork — the worker side of a run, against takeovers', () => {
  it('script: two workers claiming one server in the same batch — only one takes it', async () => {
    const { fleet, admin, queue, ids } = await setup(3);
    void admin.scripts.runScript({ script: SCRIPT.name, targets: { serverIds: ids } }).catch(() => undefined);
    await until(() => queue.submitted.length === 1);
    const ref = { kind: 'script' as const, tenantId: TENANT, runId: queue.submitted[0]!.runId };
    const [a, b] = await Promise.all([
      fleet.rolloutWork.claim(ref, ids, { workerId: 'a', ownerAlive: alive('a', 'b') }),
      fleet.rolloutWork.claim(ref, ids, { workerId: 'b', ownerAlive: alive('a', 'b') }),
    ]);
    for (const [i] of ids.entries()) {
      const took = [a[i], b[i]].filter((c) => c && 'claimed' in c);
      expect(took).toHaveLength(1);
      const other = [a[i], b[i]].find((c) => !(c && 'claimed' in c));
      expect(other).toMatchObject({ runningOn: expect.stringMatching(/^[ab]$/) });
    }
    await fleet.close();
  });

  it('script: a task taken over from a worker taken for dead is failed as interrupted, and that worker’s late result is not written over it', async () => {
    const { fleet, admin, queue, sim, ids } = await setup(1);
    void admin.scripts.runScript({ script: SCRIPT.name, targets: { serverIds: ids } }).catch(() => undefined);
    await until(() => queue.submitted.length === 1);
    const ref = { kind: 'script' as const, tenantId: TENANT, runId: queue.submitted[0]!.runId };
    const mine = await claimOne(fleet, ref, ids[0]!, 'slow');
    // Another worker finds the task running under a worker it believes dead.
    const [taken] = await fleet.rolloutWork.claim(ref, ids, { workerId: 'other', ownerAlive: alive() });
    expect(taken).toMatchObject({ state: 'failed', code: 'INTERRUPTED', countsAgainstBudget: true });
    // The slow worker was alive after all: its script ran, but its result does not replace the record.
    const done = await fleet.rolloutWork.carryOut(mine, new AbortController().signal);
    expect(sim.stats().calls.exec).toBe(1);
    const [recorded] = await fleet.rolloutWork.record([done], 'slow');
    expect(recorded).toMatchObject({ state: 'failed', code: 'INTERRUPTED' });
    const task = (await fleet.store.taskResults.listAll(TENANT)).find((t) => t.serverId === ids[0]);
    expect(task).toMatchObject({ status: 'failed', attempt: 1, error: { code: 'INTERRUPTED' } });
    // Writing it again changes nothing (a retried flush).
    expect(await fleet.rolloutWork.record([done], 'slow')).toEqual([recorded]);
    await fleet.close();
  });

  it('scan: a scan taken over is scanned again; the first worker’s late result defers to the one running it', async () => {
    const { fleet, admin, queue, sim, ids } = await setup(2);
    void admin.scan({ serverIds: ids }).catch(() => undefined);
    await until(() => queue.submitted.length === 1);
    const ref = { kind: 'scan' as const, tenantId: TENANT, runId: queue.submitted[0]!.runId };
    const first = await claimOne(fleet, ref, ids[0]!, 'slow');
    const second = await claimOne(fleet, ref, ids[0]!, 'other'); // 'slow' taken for dead: scanned again
    const late = await fleet.rolloutWork.carryOut(first, new AbortController().signal);
    expect(await fleet.rolloutWork.record([late], 'slow')).toEqual([{ runningOn: 'other' }]);
    const fresh = await fleet.rolloutWork.carryOut(second, new AbortController().signal);
    const [outcome] = await fleet.rolloutWork.record([fresh], 'other');
    expect(outcome).toMatchObject({ state: 'succeeded' });
    expect(sim.stats().calls.scan).toBe(2);
    const results = await fleet.store.scanResults.listAll(TENANT, { where: { serverId: ids[0]! } });
    expect(results).toHaveLength(1);
    // A result handle from elsewhere is refused with a typed error.
    await expect(
      fleet.rolloutWork.record([{ unrecorded: true, ref, serverId: ids[1]! }], 'other'),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await fleet.close();
  });

  it('scan: two workers recording the same end at once write it once — one end record, one event, hooks run once', async () => {
    const { fleet, admin, queue, ids } = await setup(2);
    const scanning = admin.scan({ serverIds: ids });
    scanning.catch(() => undefined);
    await until(() => queue.submitted.length === 1);
    const ref = { kind: 'scan' as const, tenantId: TENANT, runId: queue.submitted[0]!.runId };
    const claimed = await fleet.rolloutWork.claim(ref, ids, { workerId: 'a', ownerAlive: alive() });
    const done = await Promise.all(
      claimed.map((c) => fleet.rolloutWork.carryOut(c as ClaimedServer, new AbortController().signal)),
    );
    await fleet.rolloutWork.record(done, 'a');
    let completed = 0;
    fleet.events.on('scan.completed', () => completed++);
    let hooks = 0;
    fleet.afterScan.push(async () => {
      hooks++;
    });
    await Promise.all([
      fleet.rolloutWork.finish(ref, { status: 'succeeded', untouched: [] }),
      fleet.rolloutWork.finish(ref, { status: 'succeeded', untouched: [] }),
    ]);
    expect((await scanning).job.status).toBe('succeeded');
    const ends = (await fleet.store.audit.list(TENANT, { limit: 1000 })).filter(
      (r) => r.action === 'patch.scan' && r.result !== 'started',
    );
    expect(ends).toHaveLength(1);
    expect(completed).toBe(1);
    expect(hooks).toBe(1);
    await fleet.close();
  });
});
