import { type Adapter, AuthorizationError, createScanScheduler, TransportError } from '@fleetward/core';
import { beforeEach, describe, expect, it } from 'vitest';
import { createScheduleApi } from '../../src/schedule/api.js';
import { addUnboundPrincipal, type KernelFixture, kernelFixture } from '../kernel-support.js';

// The schedule module and the scheduler on a bare kernel runtime: no Fleet anywhere.

/** Every command fails as an unreachable host's would: a scan job is still recorded. */
const unreachable: Adapter = {
  name: 'ssh',
  exec: {
    async exec(server) {
      throw new TransportError(`connect ECONNREFUSED ${server.name}`);
    },
  },
};

let fx: KernelFixture;

beforeEach(async () => {
  fx = await kernelFixture({ adapters: [unreachable] });
  const tenantId = fx.tenantId;
  await fx.store.servers.create({
    tenantId,
    id: 'db-1',
    name: 'db-1',
    accountId: 'dc',
    provider: 'ssh',
    labels: {},
  });
  await fx.store.projects.create({ tenantId, id: 'db', name: 'Databases', selector: { ids: ['db-1'] } });
  // A planner may set patch policy and read, nothing else: less than the admin may do.
  await fx.store.roles.create({
    tenantId,
    id: 'planner',
    name: 'Planner',
    rules: [{ effect: 'allow', actions: ['patch.policy', 'patch.read'] }],
  });
  await fx.store.principals.create({
    tenantId,
    id: 'planner',
    name: 'Planner',
    kind: 'human',
    affiliation: 'employee',
  });
  await fx.store.roleBindings.create({ tenantId, principalId: 'planner', roleId: 'planner' });
});

describe('schedule module on a kernel context', () => {
  it('add — a schedule running as someone who may do more than the caller is refused and audited', async () => {
    const schedules = createScheduleApi(() => fx.ctx('planner'));
    await expect(
      schedules.add({ id: 'nightly', projectId: 'db', runAs: 'admin', cron: '0 3 * * *' }),
    ).rejects.toBeInstanceOf(AuthorizationError);
    expect(await fx.store.scanSchedules.listAll(fx.tenantId)).toEqual([]);
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.policy' })).toMatchObject([
      {
        actor: { principalId: 'planner' },
        target: { type: 'scan-schedule', id: 'nightly' },
        decision: 'deny',
        result: 'denied',
      },
    ]);
  });

  it('add — a schedule is written and audited, and a scheduler on the bare runtime runs it as its runAs', async () => {
    const schedule = await createScheduleApi(() => fx.ctx()).add({
      id: 'hourly',
      projectId: 'db',
      runAs: 'admin',
      intervalMinutes: 60,
    });
    expect(schedule).toMatchObject({ id: 'hourly', runAs: 'admin', enabled: true });
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.policy' })).toMatchObject([
      { actor: { principalId: 'admin' }, target: { type: 'scan-schedule', id: 'hourly' }, result: 'success' },
    ]);

    const scheduler = createScanScheduler({ fleet: fx.runtime });
    expect((await scheduler.tick()).ran).toEqual([]);
    fx.clock.advance(60 * 60_000);
    const { ran } = await scheduler.tick();
    expect(ran).toMatchObject([{ tenantId: fx.tenantId, scheduleId: 'hourly' }]);
    const job = await fx.store.jobs.require(fx.tenantId, ran[0]!.jobId!);
    expect(job).toMatchObject({ kind: 'scan', requestedBy: 'admin' });
    expect((await fx.store.scanSchedules.require(fx.tenantId, 'hourly')).lastJobId).toBe(job.id);
  });

  it('list — a principal with no binding is denied and audited', async () => {
    await addUnboundPrincipal(fx, 'mallory');
    await expect(createScheduleApi(() => fx.ctx('mallory')).list()).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.read' })).toMatchObject([
      { actor: { principalId: 'mallory' }, decision: 'deny', result: 'denied' },
    ]);
  });
});
