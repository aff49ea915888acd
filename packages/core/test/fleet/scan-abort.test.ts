import { AbortedError, type Adapter, createFleet, createMemoryStore } from '@fleetward/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

/**
 * An adapter whose every command hangs until its signal aborts, recording each server it was
 * asked to run anything on.
 */
function hangingAdapter(touched: string[], onTouch: () => void): Adapter {
  return {
    name: 'hang',
    exec: {
      exec(server, _command, options) {
        touched.push(server.id);
        onTouch();
        return new Promise((_resolve, reject) => {
          const signal = options?.signal;
          const abort = () => reject(new AbortedError('aborted'));
          if (signal?.aborted) abort();
          signal?.addEventListener('abort', abort, { once: true });
        });
      },
    },
  };
}

describe('scan — abort', () => {
  it('scan — an aborted scan never touches a server that had not started, whatever the concurrency', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        async (servers, concurrency) => {
          const touched: string[] = [];
          const controller = new AbortController();
          // Abort as soon as the first wave of servers is in the adapter.
          const fleet = createFleet({
            store: createMemoryStore(),
            adapters: [
              hangingAdapter(touched, () => {
                if (touched.length === Math.min(servers, concurrency)) controller.abort();
              }),
            ],
          });
          try {
            await fleet.bootstrapTenant({
              tenant: { id: 't', name: 'T' },
              admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
            });
            const alice = fleet.as({ tenantId: 't', principalId: 'alice' });
            const ids = Array.from({ length: servers }, (_, i) => `s-${i}`);
            for (const id of ids)
              await alice.servers.add({ id, name: id, accountId: 'dc', provider: 'ssh', adapter: 'hang' });
            const outcome = await alice.scan({ serverIds: ids }, { concurrency, signal: controller.signal });
            expect(outcome.job.status).toBe('cancelled');
            expect(touched).toHaveLength(Math.min(servers, concurrency));
            const tasks = await fleet.store.taskResults.list('t', { where: { jobId: outcome.job.id } });
            expect(tasks.map((t) => t.status)).toEqual(ids.map(() => 'cancelled'));
          } finally {
            await fleet.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});
