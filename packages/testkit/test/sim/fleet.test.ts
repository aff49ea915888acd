import { getEventListeners } from 'node:events';
import {
  AbortedError,
  CommandFailedError,
  type Server,
  ServerSchema,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { createSimulatedFleet, type SimulatedFleet } from '@fleetward/testkit/sim';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { logNormal, seededRandom } from '../../src/sim/random.js';

const AT = '2026-01-01T00:00:00.000Z';

/** The stored form of a simulated server, as core hands it to the adapter. */
function stored(sim: SimulatedFleet, index: number): Server {
  return ServerSchema.parse({
    ...sim.servers[index],
    tenantId: 't',
    version: 1,
    createdAt: AT,
    updatedAt: AT,
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('createSimulatedFleet', () => {
  it('createSimulatedFleet — refuses bad options, naming each field', () => {
    const error = (() => {
      try {
        createSimulatedFleet({
          servers: 0,
          failureRate: 2,
          latency: { kind: 'log-normal', medianMs: 50, p99Ms: 10 },
          bogus: true,
        } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).paths.sort()).toEqual([
      'bogus',
      'failureRate',
      'latency.p99Ms',
      'servers',
    ]);
  });

  it('servers — valid server records naming the adapter, deterministic for a seed', () => {
    const a = createSimulatedFleet({ servers: 500, seed: 7, adapterName: 'simx' });
    const b = createSimulatedFleet({ servers: 500, seed: 7, adapterName: 'simx' });
    const c = createSimulatedFleet({ servers: 500, seed: 8, adapterName: 'simx' });
    expect(a.servers).toHaveLength(500);
    expect(a.servers[0]!.id).toBe('sim-001');
    expect(new Set(a.servers.map((s) => s.id)).size).toBe(500);
    for (let i = 0; i < 500; i += 50) expect(() => stored(a, i)).not.toThrow();
    expect(a.servers.every((s) => s.adapter === 'simx')).toBe(true);
    expect(b.servers).toEqual(a.servers);
    expect(b.servers.map((s) => b.pendingPatches(s.id))).toEqual(
      a.servers.map((s) => a.pendingPatches(s.id)),
    );
    expect(c.servers.map((s) => c.pendingPatches(s.id))).not.toEqual(
      a.servers.map((s) => a.pendingPatches(s.id)),
    );
  });

  it('patches — a realistic mix: some servers clean, a long tail, security share, severities as each manager reports them', () => {
    const sim = createSimulatedFleet({
      servers: 4_000,
      seed: 3,
      patches: { max: 20, noneShare: 0.25, securityShare: 0.3 },
    });
    const perServer = sim.servers.map((s) => ({ server: s, patches: sim.pendingPatches(s.id)! }));
    const counts = perServer.map((p) => p.patches.length);
    const clean = counts.filter((n) => n === 0).length / counts.length;
    expect(clean).toBeGreaterThan(0.2);
    expect(clean).toBeLessThan(0.3);
    expect(Math.max(...counts)).toBeLessThanOrEqual(20);
    expect(Math.max(...counts)).toBeGreaterThan(10);
    const all = perServer.flatMap((p) => p.patches);
    expect(sim.stats().pendingPatches).toBe(all.length);
    const security = all.filter((p) => p.category === 'security').length / all.length;
    expect(security).toBeGreaterThan(0.25);
    expect(security).toBeLessThan(0.35);
    for (const { server, patches } of perServer) {
      expect(new Set(patches.map((p) => p.name)).size).toBe(patches.length);
      for (const p of patches) expect(p.candidateVersion).not.toBe(p.installedVersion);
      if (server.os?.family === 'debian') {
        expect(
          patches.every((p) => p.severity === 'unspecified' && ['security', 'other'].includes(p.category)),
        ).toBe(true);
      }
    }
    const rpmSecurity = perServer
      .filter((p) => p.server.os?.family === 'rhel')
      .flatMap((p) => p.patches.filter((x) => x.category === 'security'));
    expect(new Set(rpmSecurity.map((p) => p.severity))).toEqual(
      new Set(['critical', 'important', 'moderate', 'low']),
    );
    expect(new Set(all.map((p) => p.category))).toEqual(
      new Set(['security', 'other', 'bugfix', 'enhancement', 'unknown']),
    );
    expect(new Set(sim.servers.map((s) => s.os?.family))).toEqual(new Set(['debian', 'rhel', 'suse']));
  });

  it('scan — answers what is pending on the server, its OS and reboot flag', async () => {
    const sim = createSimulatedFleet({ servers: 20, seed: 2 });
    const index = sim.servers.findIndex((s) => sim.pendingPatches(s.id)!.length > 2);
    const server = stored(sim, index);
    const result = await sim.adapter.scan!.scan(server);
    expect(result.patches).toEqual(sim.pendingPatches(server.id));
    expect(result.os).toEqual(server.os);
    expect(typeof result.rebootRequired).toBe('boolean');
  });

  it('install — installs what is pending at the pinned version, refuses the rest, and the scan no longer sees it', async () => {
    const sim = createSimulatedFleet({ servers: 50, seed: 5 });
    const index = sim.servers.findIndex((s) => sim.pendingPatches(s.id)!.length >= 3);
    const server = stored(sim, index);
    const names = sim.pendingPatches(server.id)!.map((p) => p.name);
    const [first, second] = sim.pendingPatches(server.id)!;
    const before = sim.stats().pendingPatches;
    const result = await sim.adapter.install!.install(server, {
      packages: [
        { name: first!.name, version: first!.candidateVersion },
        { name: second!.name, version: '0.0.0-wrong' },
        { name: 'not-a-package', version: '1' },
      ],
      reboot: 'never',
    });
    expect(result.installed).toEqual([{ name: first!.name, version: first!.candidateVersion }]);
    expect(result.failed.map((f) => f.name)).toEqual([second!.name, 'not-a-package']);
    expect(sim.pendingPatches(server.id)!.map((p) => p.name)).toEqual(names.filter((n) => n !== first!.name));
    expect((await sim.adapter.scan!.scan(server)).patches.map((p) => p.name)).not.toContain(first!.name);
    expect(sim.stats().pendingPatches).toBe(before - 1);
    expect(sim.stats().installedPackages).toBe(1);
  });

  it('install — a reboot package sets the reboot flag; reboot "if-required" reboots and clears it', async () => {
    const sim = createSimulatedFleet({ servers: 2_000, seed: 9 });
    const index = sim.servers.findIndex((s) =>
      sim
        .pendingPatches(s.id)!
        .some((p) => ['kernel', 'linux-image-amd64', 'glibc', 'libc6', 'systemd'].includes(p.name)),
    );
    const server = stored(sim, index);
    const kernel = sim
      .pendingPatches(server.id)!
      .find((p) => ['kernel', 'linux-image-amd64', 'glibc', 'libc6', 'systemd'].includes(p.name))!;
    const pin = { name: kernel.name, version: kernel.candidateVersion };
    const held = await sim.adapter.install!.install(server, { packages: [pin], reboot: 'never' });
    expect(held).toMatchObject({ rebootRequired: true, rebooted: false });
    expect((await sim.adapter.scan!.scan(server)).rebootRequired).toBe(true);
    const rebooted = await sim.adapter.install!.install(server, { packages: [], reboot: 'if-required' });
    expect(rebooted).toMatchObject({ rebootRequired: false, rebooted: true });
  });

  it('exec — one line per server and command, the same on every call; caps, onOutput and exit codes', async () => {
    const sim = createSimulatedFleet({ servers: 3 });
    const [a, b] = [stored(sim, 0), stored(sim, 1)];
    const command = { argv: ['uptime'] };
    const first = await sim.adapter.exec!.exec(a, command);
    expect(first.exitCode).toBe(0);
    expect(first.stdout.text).toMatch(/^sim-1 ran [0-9a-f]{16}\n$/);
    expect((await sim.adapter.exec!.exec(a, command)).stdout).toEqual(first.stdout);
    expect((await sim.adapter.exec!.exec(b, command)).stdout.text).not.toBe(first.stdout.text);
    expect((await sim.adapter.exec!.exec(a, { argv: ['id'] })).stdout.text).not.toBe(first.stdout.text);
    const chunks: string[] = [];
    const capped = await sim.adapter.exec!.exec(a, command, {
      maxOutputBytes: 4,
      onOutput: (stream, chunk) => chunks.push(`${stream}:${chunk.toString()}`),
    });
    expect(capped.stdout).toMatchObject({
      text: 'sim-',
      truncated: true,
      bytes: first.stdout.bytes,
      sha256: first.stdout.sha256,
    });
    expect(chunks).toEqual([`stdout:${first.stdout.text}`]);

    const failing = createSimulatedFleet({ servers: 1, failureRate: 1 });
    const failed = await failing.adapter.exec!.exec(stored(failing, 0), command);
    expect(failed.exitCode).toBe(1);
    expect(failed.stderr.text).toContain('simulated failure');
    await expect(failing.adapter.scan!.scan(stored(failing, 0))).rejects.toBeInstanceOf(CommandFailedError);
    expect(failing.stats().failed).toBe(2);
  });

  it('exec — an unreachable server throws the retryable TransportError; a call past timeoutMs throws TimeoutError', async () => {
    const down = createSimulatedFleet({ servers: 1, unreachableRate: 1 });
    const error = await down.adapter.exec!.exec(stored(down, 0), { argv: ['true'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).retryable).toBe(true);
    expect((error as TransportError).details['commandMayHaveRun']).toBe(false);
    await expect(down.adapter.scan!.scan(stored(down, 0))).rejects.toBeInstanceOf(TransportError);

    const slow = createSimulatedFleet({ servers: 1, latency: { kind: 'fixed', ms: 60_000 } });
    await expect(
      slow.adapter.exec!.exec(stored(slow, 0), { argv: ['true'] }, { timeoutMs: 5 }),
    ).rejects.toBeInstanceOf(TimeoutError);
    expect(slow.stats()).toMatchObject({ timedOut: 1, unreachable: 0, inFlight: 0 });
    const other = createSimulatedFleet({ servers: 1 });
    await expect(
      other.adapter.exec!.exec({ ...stored(other, 0), id: 'elsewhere' }, { argv: ['true'] }),
    ).rejects.toBeInstanceOf(TransportError);
  });

  it('exec — waits its latency on a timer, honours signal and removes its abort listener whichever way it ends', async () => {
    vi.useFakeTimers();
    const sim = createSimulatedFleet({ servers: 1, latency: { kind: 'fixed', ms: 10_000 } });
    const server = stored(sim, 0);
    const controller = new AbortController();
    let settled = false;
    const done = sim.adapter
      .exec!.exec(server, { argv: ['true'] }, { signal: controller.signal })
      .then((r) => {
        settled = true;
        return r;
      });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await done).exitCode).toBe(0);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);

    const aborted = sim.adapter.exec!.exec(server, { argv: ['true'] }, { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortedError);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    await expect(
      sim.adapter.exec!.exec(server, { argv: ['true'] }, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(AbortedError);
    expect(sim.stats()).toMatchObject({ aborted: 2, inFlight: 0, maxAbortListeners: 1 });
  });

  it('calls — the n-th call to a server ends the same way whatever order the servers are called in', async () => {
    const options = { servers: 200, seed: 11, failureRate: 0.3, unreachableRate: 0.1 };
    const outcome = async (sim: SimulatedFleet, order: number[]) => {
      const out = new Map<string, string>();
      await Promise.all(
        order.map(async (i) => {
          const server = stored(sim, i);
          const r = await sim.adapter.exec!.exec(server, { argv: ['true'] }).catch((e: Error) => e);
          out.set(server.id, r instanceof Error ? r.name : String(r.exitCode));
        }),
      );
      return [...out].sort();
    };
    const forward = Array.from({ length: 200 }, (_, i) => i);
    const a = await outcome(createSimulatedFleet(options), forward);
    const b = await outcome(createSimulatedFleet(options), [...forward].reverse());
    expect(b).toEqual(a);
    expect(new Set(a.map(([, r]) => r))).toEqual(new Set(['0', '1', 'TransportError']));
  });
});

describe('logNormal', () => {
  it('logNormal — draws have the asked median and 99th percentile', () => {
    const random = seededRandom(42);
    const draws = Array.from({ length: 40_000 }, () => logNormal(random, 20, 200)).sort((x, y) => x - y);
    expect(draws[20_000]!).toBeGreaterThan(19);
    expect(draws[20_000]!).toBeLessThan(21);
    expect(draws[39_600]!).toBeGreaterThan(180);
    expect(draws[39_600]!).toBeLessThan(220);
  });
});
