import {
  carryHistory,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type ScanResult,
} from '@fleetward/core';
import { describeIfAvailable, ManualClock, unavailableWithout } from '@fleetward/testkit';
import { describe, expect, it } from 'vitest';

const p = (name: string, candidateVersion = '2') => ({
  name,
  arch: 'all',
  installedVersion: '1',
  candidateVersion,
  origins: [],
  category: 'security' as const,
  severity: 'unspecified' as const,
});

describe('carryHistory', () => {
  it('carryHistory — keeps first-seen dates of still-pending packages, even when a newer candidate arrives', () => {
    const previous = {
      scannedAt: '2026-01-01T00:00:00.000Z',
      patches: [{ ...p('a'), firstSeenAt: '2025-12-01T00:00:00.000Z' }, { ...p('b') }],
    } as unknown as ScanResult;
    const next = carryHistory(previous, [p('a', '3'), p('b'), p('c')], '2026-01-08T00:00:00.000Z');
    expect(next.patches.map((x) => [x.name, x.firstSeenAt])).toEqual([
      ['a', '2025-12-01T00:00:00.000Z'],
      ['b', '2026-01-01T00:00:00.000Z'],
      ['c', '2026-01-08T00:00:00.000Z'],
    ]);
    expect(next.lastUpdatedAt).toBeUndefined();
  });

  it('carryHistory — a package that stopped being pending marks the server updated', () => {
    const previous = {
      scannedAt: '2026-01-01T00:00:00.000Z',
      patches: [p('a'), p('b')],
      lastUpdatedAt: '2025-06-01T00:00:00.000Z',
    } as unknown as ScanResult;
    expect(carryHistory(previous, [p('a')], '2026-01-08T00:00:00.000Z').lastUpdatedAt).toBe(
      '2026-01-08T00:00:00.000Z',
    );
    expect(carryHistory(previous, [p('a'), p('b')], '2026-01-08T00:00:00.000Z').lastUpdatedAt).toBe(
      '2025-06-01T00:00:00.000Z',
    );
  });
});

describeIfAvailable('scan history on this machine', unavailableWithout({ commands: ['apt-get'] }), () => {
  it('scan — a rescan 8 days later keeps each pending patch’s first-seen date', async () => {
    const clock = new ManualClock('2026-02-01T00:00:00.000Z');
    const fleet = createFleet({
      store: createMemoryStore({ clock }),
      adapters: [createLocalAdapter()],
      clock,
    });
    try {
      await fleet.bootstrapTenant({
        tenant: { id: 't', name: 'T' },
        admin: { id: 'a', name: 'A', kind: 'human', affiliation: 'employee' },
      });
      const a = fleet.as({ tenantId: 't', principalId: 'a' });
      await a.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
      const first = (await a.scan({ serverIds: ['localhost'] })).results[0]!;
      clock.advance(8 * 24 * 3600 * 1000);
      const second = (await a.scan({ serverIds: ['localhost'] })).results[0]!;
      expect(first.patches.every((x) => x.firstSeenAt === '2026-02-01T00:00:00.000Z')).toBe(true);
      const firstNames = new Set(first.patches.map((x) => x.name));
      for (const patch of second.patches) {
        expect(patch.firstSeenAt).toBe(
          firstNames.has(patch.name) ? '2026-02-01T00:00:00.000Z' : second.scannedAt,
        );
      }
    } finally {
      await fleet.close();
    }
  });
});
