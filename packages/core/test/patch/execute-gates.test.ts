import {
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
} from '@fleetward/core';
import { describeIfAvailable, ManualClock, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, expect, it } from 'vitest';

// These tests stop before anything is installed: they prove the gates. Real installs run on the lab.

const T = 'acme';
let fleet: Fleet;
let clock: ManualClock;

beforeEach(async () => {
  // Saturday 2026-06-06 12:00 UTC; the window opens Sundays 02:00 Europe/Berlin (00:00 UTC in summer).
  clock = new ManualClock('2026-06-06T12:00:00.000Z');
  fleet = createFleet({ store: createMemoryStore({ clock }), adapters: [createLocalAdapter()], clock });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.principals.create({
    tenantId: T,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  await alice.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
  await alice.projects.add({ id: 'local', name: 'Local', selector: { ids: ['localhost'] } });
  await alice.patch.policies.add({
    id: 'sec',
    name: 'Security',
    projectId: 'local',
    window: { cron: '0 2 * * 0', durationMinutes: 120, timeZone: 'Europe/Berlin' },
  });
});
afterEach(() => fleet.close());

describeIfAvailable('executePlan gates', unavailableWithout({ commands: ['apt-get'] }), () => {
  it('executePlan — an unapproved plan is refused and nothing starts', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec', maxScanAgeMs: 10 ** 12 });
    await expect(alice.patch.executePlan(plan.id)).rejects.toBeInstanceOf(ConflictError);
    expect(await fleet.store.jobs.list(T, { where: { kind: 'patch' } })).toEqual([]);
  });

  it('executePlan — outside the maintenance window nothing is installed and the job waits for the next opening', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec', maxScanAgeMs: 10 ** 12 });
    await fleet.as({ tenantId: T, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
    const steps: string[] = [];
    fleet.events.on('patch.server.step', (e) => steps.push(e.step));
    const job = await fleet.as({ tenantId: T, principalId: 'bob' }).patch.executePlan(plan.id);
    expect(job).toMatchObject({
      kind: 'patch',
      status: 'pending',
      reason: expect.stringContaining('2026-06-07T00:00:00.000Z'),
    });
    expect(steps).toEqual([]);
    const tasks = await fleet.store.taskResults.list(T, { where: { jobId: job.id } });
    expect(tasks.map((t) => t.status)).toEqual(['pending']);
    expect((await fleet.store.patchPlans.require(T, plan.id)).status).toBe('executing');
  });

  it('executePlan — a second process cannot run a plan whose lease is held', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec', maxScanAgeMs: 10 ** 12 });
    await fleet.as({ tenantId: T, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
    await fleet.store.leases.acquire(`patch-run:${T}:${plan.id}`, 'other-process', 60_000);
    await expect(fleet.as({ tenantId: T, principalId: 'bob' }).patch.executePlan(plan.id)).rejects.toThrow(
      /another process/,
    );
  });
});
