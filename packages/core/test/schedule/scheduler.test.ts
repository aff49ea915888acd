import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Adapter,
  AuthorizationError,
  createFleet,
  createScanScheduler,
  latestSlot,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/** Every command fails as an unreachable host's would: a scan job is still recorded per run. */
const unreachable: Adapter = {
  name: 'ssh',
  exec: {
    async exec(server) {
      throw new TransportError(`connect ECONNREFUSED ${server.name}`);
    },
  },
};

describe('latestSlot', () => {
  const createdAt = '2026-01-01T00:00:00.000Z';
  it('latestSlot — cron slots are read in the schedule’s time zone', () => {
    const slot = latestSlot(
      { cron: '0 3 * * *', timeZone: 'America/New_York', createdAt },
      new Date('2026-01-10T12:00:00Z'),
    );
    expect(slot).toEqual(new Date('2026-01-10T08:00:00Z'));
  });
  it('latestSlot — interval slots count from creation; none before the first', () => {
    const s = { intervalMinutes: 60 * 24 * 7, timeZone: 'UTC', createdAt };
    expect(latestSlot(s, new Date('2026-01-07T23:59:59Z'))).toBeUndefined();
    expect(latestSlot(s, new Date('2026-01-20T00:00:00Z'))).toEqual(new Date('2026-01-15T00:00:00Z'));
  });
  it('latestSlot — a bad cron is a ValidationError naming the field', () => {
    expect(() => latestSlot({ cron: 'every day', timeZone: 'UTC', createdAt }, new Date())).toThrow(
      ValidationError,
    );
  });
});

describe('ScanScheduler on one SQLite file shared by two processes', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetward-sched-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function twoProcesses(clock: ManualClock) {
    const path = join(dir, 'fleet.db');
    const a = createFleet({ store: createSqliteStore({ path, clock }), adapters: [unreachable], clock });
    await a.bootstrapTenant({
      tenant: { id: 't', name: 'T' },
      admin: { id: 'ops', name: 'Ops', kind: 'service', affiliation: 'employee' },
    });
    const ops = a.as({ tenantId: 't', principalId: 'ops' });
    await ops.servers.add({
      id: 'web-1',
      name: 'web-1',
      accountId: 'dc',
      provider: 'ssh',
      address: '10.250.9.9',
    });
    await ops.projects.add({ id: 'web', name: 'Web', selector: { all: true } });
    await ops.schedules.add({ id: 'every-minute', projectId: 'web', runAs: 'ops', cron: '* * * * *' });
    const b = createFleet({ store: createSqliteStore({ path, clock }), adapters: [unreachable], clock });
    return { a, b, close: async () => Promise.all([a.close(), b.close()]) };
  }

  it('tick — a 1-minute schedule run by two schedulers for 5 minutes runs each slot exactly once', async () => {
    const clock = new ManualClock('2026-03-01T10:00:30.000Z');
    const { a, b, close } = await twoProcesses(clock);
    try {
      const sa = createScanScheduler({ fleet: a, holder: 'a' });
      const sb = createScanScheduler({ fleet: b, holder: 'b' });
      const slots: string[] = [];
      for (let step = 0; step < 30; step++) {
        clock.advance(10_000);
        const [ra, rb] = await Promise.all([sa.tick(), sb.tick()]);
        slots.push(...ra.ran.map((r) => r.slot), ...rb.ran.map((r) => r.slot));
      }
      expect(slots.sort()).toEqual(
        ['10:01', '10:02', '10:03', '10:04', '10:05'].map((m) => `2026-03-01T${m}:00.000Z`),
      );
      expect(await a.store.jobs.list('t', { where: { kind: 'scan' } })).toHaveLength(5);
    } finally {
      await close();
    }
  });

  it('tick — after downtime the missed schedule runs once, not once per missed slot', async () => {
    const clock = new ManualClock('2026-03-01T10:00:30.000Z');
    const { a, close } = await twoProcesses(clock);
    try {
      const scheduler = createScanScheduler({ fleet: a });
      clock.advance(60 * 60_000);
      expect((await scheduler.tick()).ran).toHaveLength(1);
      expect((await scheduler.tick()).ran).toHaveLength(0);
      expect(await a.store.jobs.list('t', { where: { kind: 'scan' } })).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it('schedules.add — a runAs principal that does not exist is refused and nothing is stored', async () => {
    const clock = new ManualClock('2026-03-01T10:00:30.000Z');
    const { a, close } = await twoProcesses(clock);
    try {
      await expect(
        a
          .as({ tenantId: 't', principalId: 'ops' })
          .schedules.add({ id: 'x', projectId: 'web', runAs: 'ghost', intervalMinutes: 5 }),
      ).rejects.toThrow(/ghost/);
      expect(await a.store.scanSchedules.get('t', 'x')).toBeUndefined();
    } finally {
      await close();
    }
  });

  it('schedules.add — a schedule that would scan as a principal who may do more than the caller is refused', async () => {
    const clock = new ManualClock('2026-03-01T10:00:30.000Z');
    const { a, close } = await twoProcesses(clock);
    try {
      const ops = a.as({ tenantId: 't', principalId: 'ops' });
      await a.store.roles.create({
        tenantId: 't',
        id: 'scheduler',
        name: 'scheduler',
        rules: [{ effect: 'allow', actions: ['patch.policy', 'patch.read'] }],
      });
      await ops.iam.addPrincipal({ id: 'pat', name: 'Pat', kind: 'human', affiliation: 'contractor' });
      await ops.iam.bindRole('pat', 'scheduler');
      const pat = a.as({ tenantId: 't', principalId: 'pat' });
      const refused = await pat.schedules
        .add({ id: 'as-admin', projectId: 'web', runAs: 'ops', intervalMinutes: 5 })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AuthorizationError);
      expect((refused as Error).message).toMatch(/acting as ops would let pat do/);
      expect(await a.store.scanSchedules.get('t', 'as-admin')).toBeUndefined();
      expect((await a.store.audit.list('t')).at(-1)).toMatchObject({
        action: 'patch.policy',
        decision: 'deny',
        actor: { principalId: 'pat' },
      });
      // As itself, it may.
      await pat.schedules.add({ id: 'as-pat', projectId: 'web', runAs: 'pat', intervalMinutes: 5 });
      expect(await a.store.scanSchedules.get('t', 'as-pat')).toMatchObject({ runAs: 'pat' });
    } finally {
      await close();
    }
  });
});
