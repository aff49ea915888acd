import { createFleet, type Fleet, type Store } from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, expect, it } from 'vitest';
import { describeWithPostgres, dropSchema, freshSchema, POSTGRES_URL } from './support/postgres.js';

const T = 'acme';
const DAY = 86_400_000;

describeWithPostgres('compliance.summary across processes on one PostgreSQL database', () => {
  let schema: string | undefined;
  const fleets: Fleet[] = [];
  afterEach(async () => {
    for (const fleet of fleets.splice(0)) await fleet.close();
    if (schema) await dropSchema(schema);
    schema = undefined;
  });

  it('a summary kept by one process follows the scans, servers and deletions another one writes, even those committed while it read', async () => {
    schema = freshSchema();
    const clock = new ManualClock('2026-05-01T00:00:00.000Z');
    // Two stores on the same schema: two processes as far as the summary's kept evaluations go.
    const open = async () => {
      const store: Store = await createPostgresStore({
        connectionString: POSTGRES_URL,
        schema: schema!,
        clock,
      });
      const fleet = createFleet({ store, adapters: [], clock });
      fleets.push(fleet);
      return fleet;
    };
    const reader = await open();
    await reader.bootstrapTenant({
      tenant: { id: T, name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const writer = await open();
    const alice = reader.as({ tenantId: T, principalId: 'alice' });
    await alice.compliance.standards.add({
      id: 'fresh',
      name: 'Scanned within 2 days',
      rule: { kind: 'scanned-within', days: 2 },
    });
    const server = (id: string) =>
      writer.store.servers.create({
        tenantId: T,
        id,
        name: id,
        accountId: 'acct',
        provider: 'ssh',
        labels: {},
      });
    const scan = (serverId: string) =>
      writer.store.scanResults.create({
        tenantId: T,
        serverId,
        scannedAt: clock.now().toISOString(),
        status: 'succeeded',
        patches: [],
      });
    await server('a');
    await server('b');
    await scan('a');
    const counts = async () => {
      const s = await alice.compliance.summary();
      return { total: s.overall.total, compliant: s.overall.compliant, unknown: s.overall.unknown };
    };
    expect(await counts()).toEqual({ total: 2, compliant: 1, unknown: 1 });

    // Written by the other process after the reader's first summary.
    await scan('b');
    await server('c');
    expect(await counts()).toEqual({ total: 3, compliant: 2, unknown: 1 });

    // A transaction of the writer still open while the reader summarises: its scan is not seen
    // then, and is seen by the next summary once it commits.
    let written!: () => void;
    let release!: () => void;
    const wrote = new Promise<void>((resolve) => (written = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const open_tx = writer.store.transaction(async (tx) => {
      await tx.scanResults.create({
        tenantId: T,
        serverId: 'c',
        scannedAt: clock.now().toISOString(),
        status: 'succeeded',
        patches: [],
      });
      written();
      await released;
    });
    await wrote;
    expect(await counts()).toEqual({ total: 3, compliant: 2, unknown: 1 });
    release();
    await open_tx;
    expect(await counts()).toEqual({ total: 3, compliant: 3, unknown: 0 });

    // A deleted server leaves; time passing makes the scans stale, with no write at all.
    await writer.store.servers.delete(T, 'a');
    expect(await counts()).toEqual({ total: 2, compliant: 2, unknown: 0 });
    clock.advance(2 * DAY + 1);
    const stale = await alice.compliance.summary();
    expect(stale.overall).toMatchObject({ total: 2, compliant: 0, nonCompliant: 2 });
  });
});
