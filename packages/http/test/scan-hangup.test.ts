import { request } from 'node:http';
import { type Adapter, createLocalAdapter } from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Harness, startHarness } from './support/harness.js';

const SERVERS = ['hang-1', 'hang-2', 'hang-3'];

describe('POST /v1/scans — the client hangs up', () => {
  let h: Harness;
  /** Servers the adapter was asked to run anything on, in order. */
  const touched: string[] = [];
  let firstTouched: () => void = () => {};
  const first = new Promise<void>((resolve) => {
    firstTouched = resolve;
  });

  beforeAll(async () => {
    // Every command becomes a real `sleep 60` on this machine, killed only by the call's signal.
    const local = createLocalAdapter({ name: 'slow' });
    const slow: Adapter = {
      name: 'slow',
      exec: {
        async exec(server, _command, options) {
          touched.push(server.id);
          firstTouched();
          return local.exec!.exec(server, { argv: ['sleep', '60'] }, options);
        },
      },
    };
    h = await startHarness({ adapters: [slow] });
    const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
    for (const id of SERVERS)
      await admin.servers.add({ id, name: id, accountId: 'dc', provider: 'ssh', adapter: 'slow' });
  });
  afterAll(() => h?.close());

  it('runScan — cancels the scan: the job ends cancelled and servers not yet started are never touched', async () => {
    const body = JSON.stringify({ targets: { serverIds: SERVERS }, concurrency: 1 });
    const req = request(`${h.url}/v1/scans`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${h.tokens.bravo}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    const closed = new Promise<void>((resolve) => req.on('close', () => resolve()));
    req.on('error', () => {});
    req.end(body);

    await first;
    req.destroy();
    await closed;

    const job = await vi.waitFor(
      async () => {
        const [scan] = await h.fleet.store.jobs.list('bravo', { where: { kind: 'scan' } });
        expect(scan?.status).toBe('cancelled');
        return scan!;
      },
      { timeout: 20_000, interval: 50 },
    );
    expect(touched).toEqual(['hang-1']);
    const tasks = await h.fleet.store.taskResults.list('bravo', { where: { jobId: job.id } });
    expect(Object.fromEntries(tasks.map((t) => [t.serverId, t.status]))).toEqual({
      'hang-1': 'cancelled',
      'hang-2': 'cancelled',
      'hang-3': 'cancelled',
    });
    const audit = await h.fleet.store.audit.list('bravo', { action: 'patch.scan' });
    expect(audit.map((r) => r.details?.['status'])).toContain('cancelled');
  }, 60_000);
});
