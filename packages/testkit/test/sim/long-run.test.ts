import { getEventListeners } from 'node:events';
import { createFleet, createMemoryStore, type ExecCapability, type Fleet } from '@fleetward/core';
import { createSimulatedFleet, type SimulatedFleet } from '@fleetward/testkit/sim';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const T = 'acme';
const SERVERS = 2_000;
const CONCURRENCY = 50;

let fleet: Fleet | undefined;
let warnings: Error[];
const onWarning = (warning: Error) => warnings.push(warning);

beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(async () => {
  process.off('warning', onWarning);
  await fleet?.close();
  fleet = undefined;
});

/**
 * A Fleet on the memory store over `sim`'s servers. Every exec and scan call samples the 'abort'
 * listeners on `watched` (the caller's signal) while the servers' work is under way.
 */
async function simFleet(sim: SimulatedFleet, watched: AbortSignal) {
  const peak = { listeners: 0 };
  const sample = () => {
    peak.listeners = Math.max(peak.listeners, getEventListeners(watched, 'abort').length);
  };
  const exec = sim.adapter.exec!;
  const scan = sim.adapter.scan!;
  const adapter = {
    ...sim.adapter,
    exec: {
      exec: (...args: Parameters<ExecCapability['exec']>) => {
        sample();
        return exec.exec(...args);
      },
    },
    scan: {
      scan: (...args: Parameters<typeof scan.scan>) => {
        sample();
        return scan.scan(...args);
      },
    },
  };
  fleet = createFleet({ store: createMemoryStore(), adapters: [adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  for (const server of sim.servers) await fleet.store.servers.create({ tenantId: T, ...server });
  return { alice: fleet.as({ tenantId: T, principalId: 'alice' }), peak };
}

const leakWarnings = () => warnings.filter((w) => w.name === 'MaxListenersExceededWarning');

describe('long runs on a simulated fleet', () => {
  it(`runScript — ${SERVERS} servers, ${CONCURRENCY} at a time: no MaxListenersExceededWarning, abort listeners bounded during and after`, async () => {
    const sim = createSimulatedFleet({
      servers: SERVERS,
      seed: 16,
      latency: { kind: 'log-normal', medianMs: 1, p99Ms: 10 },
      failureRate: 0.02,
      unreachableRate: 0.01,
    });
    const caller = new AbortController();
    const { alice, peak } = await simFleet(sim, caller.signal);
    await alice.scripts.add({ name: 'uptime', interpreter: 'sh', body: 'uptime\n' });

    const results = await alice.scripts.runScript({
      script: 'uptime',
      targets: { serverIds: sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: CONCURRENCY, errorBudget: { percent: 100 } },
      signal: caller.signal,
    });

    const stats = sim.stats();
    expect(stats.calls.exec).toBe(SERVERS);
    expect(stats.peakInFlight).toBeGreaterThan(1);
    expect(stats.peakInFlight).toBeLessThanOrEqual(CONCURRENCY);
    expect(results.counts.succeeded).toBe(SERVERS - stats.failed - stats.unreachable);
    expect(results.counts.failed).toBe(stats.failed + stats.unreachable);
    expect(results.servers.filter((s) => s.unreachable)).toHaveLength(stats.unreachable);
    // Each exec was handed a signal only it listened on, and the caller's signal held one listener.
    expect(stats.maxAbortListeners).toBe(1);
    expect(peak.listeners).toBeGreaterThanOrEqual(1);
    expect(peak.listeners).toBeLessThanOrEqual(CONCURRENCY);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    expect(leakWarnings()).toEqual([]);
  });

  it(`scan — ${SERVERS} servers, ${CONCURRENCY} at a time with a signal: no MaxListenersExceededWarning, listeners released`, async () => {
    const sim = createSimulatedFleet({
      servers: SERVERS,
      seed: 17,
      latency: { kind: 'fixed', ms: 1 },
      failureRate: 0.01,
      unreachableRate: 0.01,
    });
    const caller = new AbortController();
    const { alice, peak } = await simFleet(sim, caller.signal);

    const outcome = await alice.scan(
      { serverIds: sim.servers.map((s) => s.id) },
      { concurrency: CONCURRENCY, signal: caller.signal },
    );

    const stats = sim.stats();
    expect(stats.calls.scan).toBe(SERVERS);
    expect(outcome.results).toHaveLength(SERVERS);
    expect(outcome.results.filter((r) => r.status === 'failed')).toHaveLength(
      stats.failed + stats.unreachable,
    );
    const scanned = outcome.results.find((r) => r.status === 'succeeded' && r.patches.length > 0)!;
    expect(scanned.patches.map((p) => p.name)).toEqual(
      sim.pendingPatches(scanned.serverId)!.map((p) => p.name),
    );
    expect(stats.maxAbortListeners).toBe(1);
    expect(peak.listeners).toBeLessThanOrEqual(CONCURRENCY);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    expect(leakWarnings()).toEqual([]);
  });

  it('runScript — cancelling mid-run aborts the running execs through their own signals and leaves no listener', async () => {
    const sim = createSimulatedFleet({ servers: 300, seed: 18, latency: { kind: 'fixed', ms: 60_000 } });
    const caller = new AbortController();
    const { alice } = await simFleet(sim, caller.signal);
    await alice.scripts.add({ name: 'sleepy', interpreter: 'sh', body: 'sleep 60\n' });
    const running = alice.scripts.runScript({
      script: 'sleepy',
      targets: { serverIds: sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency: CONCURRENCY },
      signal: caller.signal,
    });
    while (sim.stats().inFlight < CONCURRENCY) await new Promise((resolve) => setTimeout(resolve, 5));
    caller.abort();
    const results = await running;

    expect(results.run.status).toBe('cancelled');
    const started = results.servers.filter((s) => s.attempt === 1);
    expect(started).toHaveLength(CONCURRENCY);
    expect(started.map((s) => [s.state, s.error?.code])).toEqual(
      Array.from({ length: CONCURRENCY }, () => ['cancelled', 'ABORTED']),
    );
    expect(results.counts.cancelled).toBe(300);
    expect(sim.stats().aborted).toBe(CONCURRENCY);
    expect(sim.stats().inFlight).toBe(0);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    expect(leakWarnings()).toEqual([]);
  });
});
