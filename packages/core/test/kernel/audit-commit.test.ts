import { createFleet, createMemoryStore, type Store, verifyAuditChain } from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock } from '@fleetward/testkit';
import { describe, expect, it } from 'vitest';
import { AuditGroupCommit } from '../../src/kernel/audit-commit.js';

const stores: [string, (clock: ManualClock) => Store][] = [
  ['memory store', (clock) => createMemoryStore({ clock })],
  ['SQLite store', (clock) => createSqliteStore({ path: ':memory:', clock })],
];

/**
 * Counts the store's durable commits: its transactions and the audit appends made outside one
 * (each of those commits by itself).
 */
function counting(store: Store): { store: Store; transactions: () => number } {
  let n = 0;
  const transaction = store.transaction.bind(store);
  (store as { transaction: Store['transaction'] }).transaction = (fn) => {
    n++;
    return transaction(fn);
  };
  const append = store.audit.append.bind(store.audit);
  store.audit.append = (input) => {
    n++;
    return append(input);
  };
  return { store, transactions: () => n };
}

const input = (tenantId: string, i: number) => ({
  tenantId,
  actor: { principalId: `p${i}`, kind: 'human' as const },
  action: 'inventory.read' as const,
  target: { type: 'server', id: `s${i}` },
  decision: 'allow' as const,
  result: 'success' as const,
});

/** A fleet over `store` with tenant `t`, its admin `alice` and one server `web`. */
async function fleetWithServer(store: Store, clock: ManualClock) {
  const fleet = createFleet({ store, adapters: [], clock });
  await fleet.bootstrapTenant({
    tenant: { id: 't', name: 'T' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await store.servers.create({
    tenantId: 't',
    id: 'web',
    name: 'web',
    accountId: 'a',
    provider: 'ssh',
    labels: {},
  });
  return fleet;
}

describe.each(stores)('AuditGroupCommit (%s)', (_name, open) => {
  it('commits the records of concurrent callers together, each caller getting its own, in the order they came', async () => {
    const { store, transactions } = counting(open(new ManualClock()));
    const commit = new AuditGroupCommit(store);
    const records = await Promise.all(
      Array.from({ length: 200 }, (_, i) => commit.append(input(i % 3 ? 'a' : 'b', i))),
    );
    // Each caller got the record of its own input.
    for (const [i, record] of records.entries()) expect(record.actor.principalId).toBe(`p${i}`);
    // Far fewer commits than records: the first alone, the rest together.
    expect(transactions()).toBeLessThan(10);
    for (const tenant of ['a', 'b']) {
      const chain = await store.audit.list(tenant, { limit: 10_000 });
      expect(chain.map((r) => r.actor.principalId)).toEqual(
        records.filter((r) => r.tenantId === tenant).map((r) => r.actor.principalId),
      );
      expect(chain.map((r) => r.seq)).toEqual(chain.map((_, i) => i + 1));
      expect((await verifyAuditChain(chain)).ok).toBe(true);
    }
    await store.close();
  });

  it('a bad record in a batch fails only its own caller; the others are committed', async () => {
    const store = open(new ManualClock());
    const commit = new AuditGroupCommit(store);
    const results = await Promise.allSettled([
      commit.append(input('a', 0)),
      commit.append(input('a', 1)),
      commit.append({ ...input('a', 2), actor: undefined as never }),
      commit.append(input('a', 3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'VALIDATION_FAILED' });
    const chain = await store.audit.list('a', { limit: 10_000 });
    expect(chain.map((r) => r.actor.principalId)).toEqual(['p0', 'p1', 'p3']);
    expect((await verifyAuditChain(chain)).ok).toBe(true);
    await store.close();
  });

  it('through the facade: concurrent reads each leave their record, in fewer commits than reads', async () => {
    const clock = new ManualClock();
    const { store, transactions } = counting(open(clock));
    const fleet = await fleetWithServer(store, clock);
    const alice = fleet.as({ tenantId: 't', principalId: 'alice' });
    const before = (await store.audit.list('t', { limit: 10_000 })).length;
    const commits = transactions();
    await Promise.all(Array.from({ length: 100 }, () => alice.servers.get('web')));
    const chain = await store.audit.list('t', { limit: 10_000 });
    expect(chain.length - before).toBe(100);
    expect(chain.slice(before).every((r) => r.action === 'inventory.read' && r.target?.id === 'web')).toBe(
      true,
    );
    expect(transactions() - commits).toBeLessThan(50);
    expect((await verifyAuditChain(chain)).ok).toBe(true);
    await fleet.close();
  });

  it('close — records of reads still waiting for their commit are written before the store closes', async () => {
    const clock = new ManualClock();
    const store = open(clock);
    const fleet = await fleetWithServer(store, clock);
    const before = (await store.audit.list('t', { limit: 10_000 })).length;
    const alice = fleet.as({ tenantId: 't', principalId: 'alice' });
    const seen: number[] = [];
    // Reads in flight; the store is closed while their records wait for the batch.
    const reads = Array.from({ length: 20 }, () => alice.servers.get('web'));
    const appended = (await Promise.all([
      ...reads,
      (async () => {
        await new Promise((resolve) => setImmediate(resolve));
        seen.push((await store.audit.list('t', { limit: 10_000 })).length);
        await fleet.close();
      })(),
    ])) as unknown[];
    expect(appended.slice(0, 20).every((s) => (s as { id: string }).id === 'web')).toBe(true);
    expect(seen[0]).toBeLessThan(before + 20); // some were still waiting when close began
  });
});
