import { createFleet, createMemoryStore, type ScriptRunResults } from '@fleetward/core';
import { createSimulatedFleet, type SimulatedFleetOptions } from '@fleetward/testkit/sim';
import { createWorker, type Worker } from '@fleetward/worker';
import { afterEach, expect, it } from 'vitest';
import { type Deployment, deploy, describeWithPostgres, SCRIPT, TENANT } from './support/setup.js';

/** The same fleet in one process, on a memory store: a fresh simulated fleet of the same seed. */
async function inProcessFleet(options: SimulatedFleetOptions) {
  const sim = createSimulatedFleet(options);
  const fleet = createFleet({ store: createMemoryStore(), adapters: [sim.adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: TENANT },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  for (const server of sim.servers) await fleet.store.servers.create({ tenantId: TENANT, ...server });
  const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
  await admin.scripts.add(SCRIPT);
  return { sim, fleet, admin, serverIds: sim.servers.map((s) => s.id) };
}

/** The same run in one process. */
async function inProcess(options: SimulatedFleetOptions, rollout: object): Promise<ScriptRunResults> {
  const { fleet, admin, serverIds } = await inProcessFleet(options);
  try {
    return await admin.scripts.runScript({ script: SCRIPT.name, targets: { serverIds }, rollout });
  } finally {
    await fleet.close();
  }
}

const byServer = (results: ScriptRunResults) =>
  Object.fromEntries(results.servers.map((s) => [s.serverId, s.state]));

const FAST = { pollIntervalMs: 20, heartbeatMs: 100, takeoverMs: 600 } as const;

describeWithPostgres('workers on PostgreSQL', () => {
  let deployment: Deployment | undefined;
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await deployment?.close();
    deployment = undefined;
  });

  const track = async (pending: Promise<Deployment>) => {
    deployment = await pending;
    return deployment;
  };

  /** `count` workers, each a process of its own in all but name: its own store, queue and Fleet. */
  const startWorkers = async (d: Deployment, count: number, concurrency: number) => {
    for (let i = 0; i < count; i++) {
      const { fleet, queue } = await d.open();
      workers.push(await createWorker({ fleet, queue, concurrency, ...FAST }));
    }
  };

  // PostgreSQL, pg-boss and worker loops over a thousand simulated servers: seconds on a quiet
  // machine, several times that while CI runs other suites beside it.
  it('carries out a script run on every server once, across two workers, and the audit chain verifies', async () => {
    const d = await track(deploy({ servers: 300, seed: 3, latency: { kind: 'fixed', ms: 2 } }));
    await startWorkers(d, 2, 8);
    const results = await d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 12 },
    });
    expect(results.run.status).toBe('succeeded');
    expect(results.counts.succeeded).toBe(300);
    expect(results.servers.every((s) => s.attempt === 1)).toBe(true);
    expect(d.sim.stats().calls.exec).toBe(300);
    // Both workers took part, and no more than the run's limit ran at once over both.
    const owners = new Set(
      (await d.fleet.store.taskResults.listAll(TENANT, { where: { jobId: results.job!.id } })).map(
        (t) => t.details?.['workerId'],
      ),
    );
    expect(owners.size).toBe(2);
    expect(d.sim.stats().peakInFlight).toBeLessThanOrEqual(12);
    expect((await d.admin.verifyAuditLog()).ok).toBe(true);
    const state = await d.queue.state({ kind: 'script', tenantId: TENANT, runId: results.run.id });
    expect(state).toMatchObject({ status: 'ended', inFlight: 0, servers: { done: 300, pending: 0 } });
  }, 120_000);

  it('spends the error budget where one process does: the same servers fail, the same are never started', async () => {
    const options: SimulatedFleetOptions = { servers: 60, seed: 11, failureRate: 0.2 };
    const rollout = { maxConcurrency: 1, errorBudget: { count: 2 } };
    const alone = await inProcess(options, rollout);
    expect(alone.run.status).toBe('stopped');
    const d = await track(deploy(options));
    await startWorkers(d, 3, 4);
    const shared = await d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout,
    });
    expect(shared.run.status).toBe('stopped');
    expect(shared.run.reason).toBe(alone.run.reason);
    expect(byServer(shared)).toEqual(byServer(alone));
    expect(shared.counts).toEqual(alone.counts);
  }, 120_000);

  it('keeps the run’s concurrency over all workers and finishes a wave before the next starts', async () => {
    const d = await track(deploy({ servers: 120, seed: 5, latency: { kind: 'fixed', ms: 5 } }));
    await startWorkers(d, 3, 8);
    // Each wave is announced once, by whichever process started it (the starting one, or a worker).
    const waves: Array<{ wave: string; serverIds: string[]; at: number }> = [];
    for (const fleet of [d.fleet, ...workers.map((w) => w.fleet)]) {
      fleet.events.on('script.wave.started', (e) => waves.push({ ...e, at: Date.now() }));
    }
    const results = await d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 5, waves: [{ name: 'canary', selector: { labels: { dc: 'dc-a' } } }] },
    });
    expect(results.run.status).toBe('succeeded');
    // 24 slots over three workers, but never more than the run's 5 at once.
    expect(d.sim.stats().peakInFlight).toBeLessThanOrEqual(5);
    const canary = results.servers.filter((s) => s.wave === 'canary');
    const rest = results.servers.filter((s) => s.wave === 'remaining');
    expect(canary.length).toBe(60);
    expect(rest.length).toBe(60);
    const lastCanaryEnd = Math.max(...canary.map((s) => Date.parse(s.finishedAt!)));
    const firstRestStart = Math.min(...rest.map((s) => Date.parse(s.startedAt!)));
    expect(firstRestStart).toBeGreaterThanOrEqual(lastCanaryEnd);
    expect(waves.map((w) => [w.wave, w.serverIds.length])).toEqual([
      ['canary', 60],
      ['remaining', 60],
    ]);
    expect(new Set(waves[0]!.serverIds)).toEqual(new Set(canary.map((s) => s.serverId)));
    expect(waves[1]!.at).toBeGreaterThanOrEqual(lastCanaryEnd);
  }, 120_000);

  it('cancels a run carried out by workers: running scripts are aborted and no further server starts', async () => {
    const d = await track(deploy({ servers: 200, seed: 7, latency: { kind: 'fixed', ms: 40 } }));
    await startWorkers(d, 2, 4);
    const run = await d.admin.scripts.planRun({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 4 },
    });
    const finished = d.admin.scripts.startRun(run.id, { cancelPollMs: 50 });
    while ((await d.admin.scripts.getRun(run.id)).counts.succeeded < 10) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await d.admin.scripts.cancelRun(run.id, { reason: 'wrong script' });
    const results = await finished;
    expect(results.run.status).toBe('cancelled');
    expect(results.run.reason).toContain('wrong script');
    expect(results.counts.succeeded).toBeLessThan(100);
    expect(results.counts.succeeded + results.counts.cancelled + results.counts['not-started']).toBe(200);
    expect(results.counts.pending + results.counts.running).toBe(0);
    expect(d.sim.stats().calls.exec).toBe(results.servers.filter((s) => s.attempt === 1).length);
  }, 120_000);

  it('shares workers fairly: a 10-server run of another tenant ends long before a large run that started first', async () => {
    const d = await track(
      deploy(
        { servers: 800, seed: 9, latency: { kind: 'fixed', ms: 10 } },
        { servers: 10, seed: 10, latency: { kind: 'fixed', ms: 10 } },
      ),
    );
    await startWorkers(d, 2, 8);
    // The large run may keep 40 servers in flight: more than the 16 worker slots, so its tasks queue.
    const large = d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 40 },
    });
    while (d.sim.stats().calls.exec < 100) await new Promise((resolve) => setTimeout(resolve, 20));
    const small = await d.other!.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.other!.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 10 },
    });
    expect(small.run.status).toBe('succeeded');
    // When the small run ended, most of the large one had not even started (at most the 100 before
    // it, the 40 the large run keeps queued ahead of it, and what ran beside its own 10).
    expect(d.sim.stats().calls.exec).toBeLessThan(400);
    expect((await large).run.status).toBe('succeeded');
  }, 120_000);

  it('scans through the workers: every server once, the same findings as a scan in one process', async () => {
    const options: SimulatedFleetOptions = {
      servers: 400,
      seed: 13,
      latency: { kind: 'fixed', ms: 2 },
      failureRate: 0.05,
    };
    const d = await track(deploy(options));
    await startWorkers(d, 2, 8);
    const shared = await d.admin.scan({ serverIds: d.sim.servers.map((s) => s.id) }, { concurrency: 12 });
    expect(d.sim.stats().calls.scan).toBe(400);
    expect(shared.job.status).toBe('partial');
    expect(shared.results).toHaveLength(400);
    const owners = new Set(
      (await d.fleet.store.taskResults.listAll(TENANT, { where: { jobId: shared.job.id } })).map(
        (t) => t.details?.['workerId'],
      ),
    );
    expect(owners.size).toBe(2);

    // The same fleet scanned in one process: the same servers fail, the same patches are pending.
    const alone = await (async () => {
      const local = await inProcessFleet(options);
      try {
        return await local.admin.scan({ serverIds: local.serverIds });
      } finally {
        await local.fleet.close();
      }
    })();
    const findings = (results: typeof shared.results) =>
      results.map((r) => [
        r.serverId,
        r.status,
        r.patches.map((p) => `${p.name}=${p.candidateVersion}`).sort(),
      ]);
    expect(findings(shared.results)).toEqual(findings(alone.results));
    expect(shared.job.summary).toEqual(alone.job.summary);
    // The scan's end was recorded once, with its audit record, as in one process.
    const ends = (await d.fleet.store.audit.list(TENANT)).filter(
      (r) => r.action === 'patch.scan' && r.result !== 'started' && r.target?.id === shared.job.id,
    );
    expect(ends).toHaveLength(1);
  }, 120_000);

  it('pauses on a spent budget and resumes through the workers: no server runs twice, the rest finish', async () => {
    const d = await track(
      deploy({ servers: 80, seed: 17, failureRate: 0.1, latency: { kind: 'fixed', ms: 2 } }),
    );
    await startWorkers(d, 2, 4);
    const paused = await d.admin.scripts.runScript({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: 3, errorBudget: { count: 1 }, onBudgetSpent: 'pause' },
    });
    expect(paused.run.status).toBe('paused');
    expect(paused.counts.pending).toBeGreaterThan(0);
    const ref = { kind: 'script' as const, tenantId: TENANT, runId: paused.run.id };
    expect(await d.queue.isActive(ref)).toBe(false);
    const ranBefore = d.sim.stats().calls.exec;
    const resumed = await d.admin.scripts.resumeRun(paused.run.id, { acknowledgeFailures: true });
    // Failures go on after the resume (10% of servers fail), so it may pause again; every server
    // that had ended keeps its result and none ran twice.
    expect(['paused', 'partial', 'succeeded']).toContain(resumed.run.status);
    for (const before of paused.servers.filter((s) => s.state !== 'pending')) {
      expect(resumed.servers.find((s) => s.serverId === before.serverId)).toMatchObject({
        state: before.state,
        attempt: before.attempt,
      });
    }
    expect(resumed.servers.every((s) => s.attempt <= 1)).toBe(true);
    const started = resumed.servers.filter((s) => s.attempt === 1).length;
    expect(d.sim.stats().calls.exec).toBe(started);
    expect(started).toBeGreaterThan(ranBefore);
    expect(await d.queue.state(ref)).toMatchObject({ status: 'ended', inFlight: 0 });
    expect((await d.admin.verifyAuditLog()).ok).toBe(true);
  }, 120_000);

  it('refuses a bad submission or bad options with a typed error naming the field, and stores nothing', async () => {
    const d = await track(deploy({ servers: 2, seed: 1 }));
    const good = {
      kind: 'script' as const,
      tenantId: TENANT,
      runId: 'r1',
      jobId: 'j1',
      waves: [{ name: 'all', serverIds: ['a', 'b'] }],
      maxConcurrency: 2,
      maxFailures: 0,
      onBudgetSpent: 'stop' as const,
      states: {},
      acknowledgeFailures: false,
    };
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ waves: [{ name: 'all', serverIds: ['a', 'a'] }] }, 'waves.0.serverIds.1'],
      [{ kind: 'reboot' }, 'kind'],
      [{ maxConcurrency: 0 }, 'maxConcurrency'],
      [{ maxFailures: -1 }, 'maxFailures'],
      [{ onBudgetSpent: 'explode' }, 'onBudgetSpent'],
      [{ runId: '' }, 'runId'],
      [{ waves: [] }, 'waves'],
    ];
    for (const [change, path] of bad) {
      const error = await d.queue.submit({ ...good, ...change } as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 'VALIDATION_FAILED' });
      expect((error as { issues: Array<{ path: unknown[] }> }).issues.map((i) => i.path.join('.'))).toContain(
        path,
      );
    }
    expect(await d.queue.state({ kind: 'script', tenantId: TENANT, runId: 'r1' })).toBeUndefined();
    const { fleet, queue } = await d.open();
    await expect(createWorker({ fleet, queue, heartbeatMs: 1000, takeoverMs: 2000 })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(createWorker({ fleet, queue, concurrency: 0 })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    // A Fleet that submits elsewhere cannot work for this queue.
    await expect(createWorker({ fleet: d.fleet, queue })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
  }, 120_000);
});
