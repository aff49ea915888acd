import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SimulatedFleetOptions } from '@fleetward/testkit/sim';
import { afterEach, expect, it } from 'vitest';
import type { SimWorkerConfig } from './fixtures/sim-worker.js';
import {
  type Deployment,
  deploy,
  describeWithPostgres,
  POSTGRES_URL,
  SCRIPT,
  TENANT,
} from './support/setup.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/sim-worker.ts', import.meta.url));
/** Servers of the shared run: 20,000 as the scale-out issue names, fewer with FLEETWARD_KILL_TEST_SERVERS. */
const SERVERS = Number(process.env['FLEETWARD_KILL_TEST_SERVERS'] ?? 20_000);

/** Starts a worker process over the simulated fleet and resolves once it takes work. */
function spawnWorker(config: SimWorkerConfig): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('ready ')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code} before it was ready: ${out}`)));
  });
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

describeWithPostgres('four worker processes, one killed', () => {
  let deployment: Deployment | undefined;
  const children: ChildProcess[] = [];
  let dir: string | undefined;
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(children.splice(0).map(exited));
    await deployment?.close();
    deployment = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`share a ${SERVERS}-server run: no server runs twice, none is lost, the budget stops it, the audit chain verifies`, async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetward-kill-'));
    const execLog = join(dir, 'exec.log');
    const sim: SimulatedFleetOptions = {
      servers: SERVERS,
      seed: 21,
      latency: { kind: 'fixed', ms: 3 },
      failureRate: 0.002,
    };
    deployment = await deploy(sim);
    const d = deployment;
    const config: SimWorkerConfig = {
      postgresUrl: POSTGRES_URL,
      storeSchema: d.storeSchema,
      queueSchema: d.queueSchema,
      sim,
      concurrency: 16,
      pollIntervalMs: 20,
      heartbeatMs: 200,
      takeoverMs: 1000,
      execLog,
    };
    // The victim's execs past its 100th never return: when it is killed, some of its servers are
    // certainly mid-script (a kill between two batches would leave nothing to interrupt).
    const STALL_AFTER = 100;
    for (let i = 0; i < 4; i++) {
      children.push(await spawnWorker(i === 1 ? { ...config, stallAfterExecs: STALL_AFTER } : config));
    }

    // About 0.2% of servers fail (about 40 of 20,000): the budget of 30 is spent past the middle.
    const maxFailures = Math.floor(SERVERS * 0.0015);
    // More than the 64 slots of the four workers: every worker is kept busy, the victim too.
    const maxConcurrency = 96;
    const run = await d.admin.scripts.planRun({
      script: SCRIPT.name,
      targets: { serverIds: d.sim.servers.map((s) => s.id) },
      rollout: { maxConcurrency, errorBudget: { count: maxFailures } },
    });
    const finished = d.admin.scripts.startRun(run.id, { cancelPollMs: 100 });
    finished.catch(() => undefined); // awaited below; a failure before then must not go unhandled
    const victim = children[1]!;
    const ran = () => (existsSync(execLog) ? readFileSync(execLog, 'utf8').split('\n').filter(Boolean) : []);
    const byVictim = () => ran().filter((l) => l.endsWith(` ${victim.pid}`));
    // Kill it outright once a tenth of the servers ran and it is stuck in some of its scripts.
    while (ran().length < SERVERS / 10 || byVictim().length <= STALL_AFTER) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const stalled = byVictim()
      .slice(STALL_AFTER)
      .map((l) => l.split(' ')[0]!);
    victim.kill('SIGKILL');
    await exited(victim);
    const results = await finished;

    // Never run twice: every exec of every process is in the log, each server at most once.
    const lines = readFileSync(execLog, 'utf8').split('\n').filter(Boolean);
    const servers = lines.map((l) => l.split(' ')[0]!);
    expect(new Set(servers).size).toBe(servers.length);
    // The killed process ran some of them; those it was running are failed as interrupted.
    const victimRan = new Set(lines.filter((l) => l.endsWith(` ${victim.pid}`)).map((l) => l.split(' ')[0]));
    expect(victimRan.size).toBeGreaterThan(0);
    const interrupted = results.servers.filter((s) => s.error?.code === 'INTERRUPTED');
    expect(interrupted.length).toBeGreaterThan(0);
    for (const s of interrupted) expect(victimRan.has(s.serverId)).toBe(true);
    // Every script it was stuck in is one of them: started, never finished, never run again.
    const interruptedIds = new Set(interrupted.map((s) => s.serverId));
    for (const id of stalled) expect(interruptedIds.has(id)).toBe(true);

    // None lost: every server ended one way or another, and exactly the started ones ran.
    expect(results.counts.pending + results.counts.running).toBe(0);
    const started = results.servers.filter((s) => s.attempt === 1);
    expect(started.length).toBe(servers.length);
    expect(results.servers.every((s) => s.attempt <= 1)).toBe(true);

    // The budget stopped it as in one process: more than the budget failed, at most the
    // servers in flight beyond it, and the servers started are the first ones in order.
    expect(results.run.status).toBe('stopped');
    expect(results.run.reason).toContain('error budget spent');
    const counted = results.servers.filter((s) => s.countsAgainstBudget).length;
    expect(counted).toBeGreaterThan(maxFailures);
    expect(counted).toBeLessThanOrEqual(maxFailures + maxConcurrency);
    expect(results.counts['not-started']).toBeGreaterThan(0);
    const order = results.servers.map((s) => s.serverId);
    expect(
      order
        .slice(0, started.length)
        .every((id) => results.servers.find((s) => s.serverId === id)!.attempt === 1),
    ).toBe(true);

    expect((await d.admin.verifyAuditLog()).ok).toBe(true);
    const state = await d.queue.state({ kind: 'script', tenantId: TENANT, runId: run.id });
    expect(state).toMatchObject({ status: 'ended', inFlight: 0 });

    for (const child of children.filter((c) => c !== victim)) child.kill('SIGTERM');
    await Promise.all(children.map(exited));
    expect(children.filter((c) => c !== victim).every((c) => c.exitCode === 0)).toBe(true);
  }, 600_000);
});
