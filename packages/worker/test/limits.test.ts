import type { Adapter, Server } from '@fleetward/core';
import { createWorker, type Worker } from '@fleetward/worker';
import { afterEach, expect, it } from 'vitest';
import { type Deployment, deploy, describeWithPostgres, SCRIPT, TENANT } from './support/setup.js';

// Caps on servers in flight over all runs (`queue.setLimit`): a tenant's, and one account's. Every
// worker here is a process in all but name (its own store, queue and Fleet); the calls of all of
// them are watched through one wrapper of the simulated adapter.

const FAST = { pollIntervalMs: 20, heartbeatMs: 100, takeoverMs: 600 } as const;

/** Counts exec calls in flight, over all workers: in all and per account; keeps the peaks. */
function watcher() {
  const now = new Map<string, number>();
  const peaks = new Map<string, number>();
  let all = 0;
  let peak = 0;
  const wrap = (adapter: Adapter): Adapter => ({
    ...adapter,
    exec: {
      exec: async (server: Server, command, options) => {
        const account = server.accountId;
        now.set(account, (now.get(account) ?? 0) + 1);
        peaks.set(account, Math.max(peaks.get(account) ?? 0, now.get(account)!));
        peak = Math.max(peak, ++all);
        try {
          return await adapter.exec!.exec(server, command, options);
        } finally {
          now.set(account, now.get(account)! - 1);
          all--;
        }
      },
    },
  });
  return { wrap, peaks, peak: () => peak };
}

describeWithPostgres('caps on servers in flight over all runs', () => {
  let deployment: Deployment | undefined;
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await deployment?.close();
    deployment = undefined;
  });

  const start = async (servers: number, accounts: number) => {
    const d = await deploy({ servers, seed: 31, latency: { kind: 'fixed', ms: 15 } });
    deployment = d;
    // Spread the servers over `accounts` accounts.
    await d.fleet.store.transaction(async (tx) => {
      for (const [i, server] of d.sim.servers.entries()) {
        const stored = await tx.servers.require(TENANT, server.id);
        await tx.servers.update(
          TENANT,
          server.id,
          { accountId: `acct-${i % accounts}` },
          { expectedVersion: stored.version },
        );
      }
    });
    const watch = watcher();
    for (let i = 0; i < 3; i++) {
      const { fleet, queue } = await d.open(watch.wrap);
      workers.push(await createWorker({ fleet, queue, concurrency: 8, ...FAST }));
    }
    return { d, watch, ids: d.sim.servers.map((s) => s.id) };
  };

  it('a tenant’s cap holds over all its runs at once, and every run still finishes', async () => {
    const { d, watch, ids } = await start(120, 1);
    await d.queue.setLimit({ tenantId: TENANT, maxInFlight: 5 });
    const runs = await Promise.all(
      [ids.slice(0, 60), ids.slice(60)].map((serverIds) =>
        d.admin.scripts.runScript({
          script: SCRIPT.name,
          targets: { serverIds },
          rollout: { maxConcurrency: 8 },
        }),
      ),
    );
    for (const run of runs) {
      expect(run.run.status).toBe('succeeded');
      expect(run.counts.succeeded).toBe(60);
    }
    // 24 worker slots and 16 allowed by the two runs, but never more than the tenant's 5 at once.
    expect(watch.peak()).toBeLessThanOrEqual(5);
    expect(watch.peak()).toBeGreaterThan(1);
    expect(d.sim.stats().calls.exec).toBe(120);
  }, 120_000);

  it('an account’s cap holds over all runs; servers of other accounts go on meanwhile', async () => {
    const { d, watch, ids } = await start(90, 3);
    await d.queue.setLimit({ tenantId: TENANT, accountId: '*', maxInFlight: 3 });
    await d.queue.setLimit({ tenantId: TENANT, accountId: 'acct-0', maxInFlight: 1 });
    expect(await d.queue.limits()).toEqual([
      { tenantId: TENANT, accountId: '*', maxInFlight: 3 },
      { tenantId: TENANT, accountId: 'acct-0', maxInFlight: 1 },
    ]);
    const results = await d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: ids },
      rollout: { maxConcurrency: 12, waves: [{ name: 'first', selector: { ids: ids.slice(0, 45) } }] },
    });
    expect(results.run.status).toBe('succeeded');
    expect(results.counts.succeeded).toBe(90);
    expect(watch.peaks.get('acct-0')).toBe(1);
    expect(watch.peaks.get('acct-1')).toBeLessThanOrEqual(3);
    expect(watch.peaks.get('acct-2')).toBeLessThanOrEqual(3);
    expect(watch.peak()).toBeGreaterThan(3); // other accounts ran beside the capped one
    // Waves stay ordered under the caps.
    const first = results.servers.filter((s) => s.wave === 'first');
    const rest = results.servers.filter((s) => s.wave !== 'first');
    const lastFirstEnd = Math.max(...first.map((s) => Date.parse(s.finishedAt!)));
    expect(Math.min(...rest.map((s) => Date.parse(s.startedAt!)))).toBeGreaterThanOrEqual(lastFirstEnd);
  }, 120_000);

  it('a run waiting under a cap goes on when the cap is lifted; bad caps are refused with the field named', async () => {
    const { d, ids } = await start(40, 1);
    await d.queue.setLimit({ tenantId: '*', maxInFlight: 1 });
    const running = d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: ids },
      rollout: { maxConcurrency: 10 },
    });
    while (d.sim.stats().calls.exec < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    await d.queue.setLimit({ tenantId: '*', maxInFlight: null });
    expect(await d.queue.limits()).toEqual([]);
    expect((await running).run.status).toBe('succeeded');
    expect(d.sim.stats().peakInFlight).toBeGreaterThan(1);
    for (const [bad, path] of [
      [{ tenantId: '', maxInFlight: 1 }, 'tenantId'],
      [{ tenantId: TENANT, maxInFlight: 0 }, 'maxInFlight'],
      [{ tenantId: TENANT, accountId: 'a', maxInFlight: 1.5 }, 'maxInFlight'],
      [{ tenantId: TENANT, maxInFlight: 1, extra: true }, ''],
    ] as const) {
      const error = await d.queue.setLimit(bad as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 'VALIDATION_FAILED' });
      expect((error as { issues: Array<{ path: unknown[] }> }).issues.map((i) => i.path.join('.'))).toContain(
        path,
      );
    }
    expect(await d.queue.limits()).toEqual([]);
  }, 120_000);
});
