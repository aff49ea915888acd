import { createFleet, createMemoryStore, type Store } from '@fleetward/core';
import { createSimulatedFleet } from '@fleetward/testkit/sim';
import { describe, expect, it } from 'vitest';

// A script run in one process writes the results of servers that finish together in one
// transaction with their audit records (group commit), and still writes every result, with its
// record, before the server counts.

const TENANT = 'acme';
const SCRIPT = { name: 'uptime', interpreter: 'sh' as const, body: 'uptime\n' };

/** The store, with the transactions begun through it counted. */
function counting(store: Store): { store: Store; transactions: () => number } {
  let transactions = 0;
  const wrapped = new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'transaction' && typeof value === 'function') {
        return (fn: (tx: unknown) => Promise<unknown>) => {
          transactions++;
          return value.call(target, fn);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: wrapped, transactions: () => transactions };
}

async function setup(servers: number, failureRate = 0) {
  const sim = createSimulatedFleet({ servers, seed: 41, latency: { kind: 'fixed', ms: 5 }, failureRate });
  const counted = counting(createMemoryStore());
  const fleet = createFleet({ store: counted.store, adapters: [sim.adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: TENANT },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.transaction(async (tx) => {
    for (const server of sim.servers) await tx.servers.create({ tenantId: TENANT, ...server });
  });
  const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
  await admin.scripts.add(SCRIPT);
  return { sim, fleet, admin, transactions: counted.transactions, ids: sim.servers.map((s) => s.id) };
}

describe('script runs in one process — results written by group commit', () => {
  it('servers that finish together are written in far fewer transactions than servers, each with its audit record', async () => {
    const { fleet, admin, transactions, ids } = await setup(200);
    const run = await admin.scripts.planRun({
      script: SCRIPT.name,
      targets: { serverIds: ids },
      rollout: { maxConcurrency: 50 },
    });
    const before = transactions();
    const results = await admin.scripts.startRun(run.id);
    const used = transactions() - before;
    expect(results.run.status).toBe('succeeded');
    expect(results.counts.succeeded).toBe(200);
    // One per server would be 200 and more (the start and the end add a few); rounds of 50 finish together.
    expect(used).toBeLessThan(60);
    const records = await fleet.store.audit.list(TENANT, { limit: 10_000 });
    const perServer = records.filter((r) => r.action === 'script.run' && r.target?.type === 'server');
    expect(new Set(perServer.map((r) => r.target?.id))).toEqual(new Set(ids));
    expect(perServer).toHaveLength(200);
    expect((await admin.verifyAuditLog()).ok).toBe(true);
    await fleet.close();
  });

  it('the budget still stops the run where one server at a time does', async () => {
    const { fleet, admin, ids } = await setup(80, 0.25);
    const one = await admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: ids },
      rollout: { maxConcurrency: 1, errorBudget: { count: 3 } },
    });
    expect(one.run.status).toBe('stopped');
    // One at a time, each result is counted before the next server starts: the fourth failure stops it.
    expect(one.counts.failed).toBe(4);
    const started = one.servers.filter((s) => s.attempt === 1).length;
    expect(one.counts['not-started']).toBe(80 - started);
    await fleet.close();
  });
});
