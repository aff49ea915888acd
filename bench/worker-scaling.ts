// Benchmark: a script run over 20,000 simulated servers carried out by 1, 2 and 4 worker
// processes (`@fleetward/worker` on PostgreSQL), against the same run executed in the submitting
// process by a Fleet without `rollouts`, on the same PostgreSQL store.
// Run: node --import tsx bench/worker-scaling.ts [--servers 20000] [--latency 20]
//        [--max-concurrency 200] [--concurrency 64] [--workers 1,2,4] [--wait-poll 1000]
//
// PostgreSQL: postgres://postgres@127.0.0.1:5432/test unless FLEETWARD_BENCH_POSTGRES_URL names
// another. Every configuration gets fresh schemas (store, queue and pg-boss's), dropped at its end.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createFleet, type ScriptRunResults } from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { createSimulatedFleet, type SimulatedFleetOptions } from '@fleetward/testkit/sim';
import { createRolloutQueue, type PostgresRolloutQueue } from '@fleetward/worker';
import pg from 'pg';
import type { SimWorkerConfig } from '../packages/worker/test/fixtures/sim-worker.js';

const TENANT = 'bench';
const SCRIPT = { name: 'uptime', interpreter: 'sh' as const, body: 'uptime\n' };
const POSTGRES_URL = process.env['FLEETWARD_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const FIXTURE = fileURLToPath(new URL('../packages/worker/test/fixtures/sim-worker.ts', import.meta.url));

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '20000' },
    latency: { type: 'string', default: '20' },
    'max-concurrency': { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '64' },
    workers: { type: 'string', default: '1,2,4' },
    'wait-poll': { type: 'string', default: '1000' },
    workflow: { type: 'string', default: 'scan' },
  },
});
const workflow = args.workflow;
if (workflow !== 'scan' && workflow !== 'script')
  throw new Error(`--workflow must be scan or script: ${workflow}`);
const servers = Number(args.servers);
const latencyMs = Number(args.latency);
const maxConcurrency = Number(args['max-concurrency']);
const perWorker = Number(args.concurrency);
const workerCounts = args.workers.split(',').map(Number);
const waitPollMs = Number(args['wait-poll']);
if (workerCounts.some((n) => !Number.isInteger(n) || n < 1)) {
  throw new Error(`--workers must list positive integers: ${args.workers}`);
}

const SIM: SimulatedFleetOptions = { servers, seed: 16, latency: { kind: 'fixed', ms: latencyMs } };

const ms = (value: number) => `${Math.round(value).toLocaleString('en-US')} ms`;
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
const fresh = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/** What one configuration measured. */
interface Measured {
  label: string;
  /** Tasks that may run at once: the run's limit, or the sum of the workers' slots if lower. */
  slots: number;
  setupMs: number;
  runMs: number;
  /** Servers carried out by each worker, most first. */
  perWorker?: number[];
  /** Peak RSS of each worker process (KiB), read from /proc before it was stopped. */
  workerRss?: number[];
}

async function dropSchemas(schemas: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Starts one worker process with the fixture; resolves once it printed `ready`. */
function spawnWorker(config: SimWorkerConfig): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker not ready after 60 s: ${stderr}`));
    }, 60_000);
    // Reading every line keeps the pipe drained after `ready` too.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('ready ')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`worker exited before it was ready (${code ?? signal}): ${stderr}`));
    });
  });
}

/** SIGTERM, then waits for the exit (a worker stops gracefully: it lets its running tasks finish). */
async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
  if (child.exitCode !== 0)
    console.log(`    worker ${child.pid} exited with ${child.exitCode ?? child.signalCode}`);
}

/** Peak resident set of a live process in KiB (Linux), or undefined where /proc has none. */
function peakRss(pid: number | undefined): number | undefined {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Every server succeeded, each started once; throws otherwise. */
function check(label: string, results: ScriptRunResults): void {
  const ids = new Set(results.servers.map((s) => s.serverId));
  const once = results.servers.every((s) => s.state === 'succeeded' && s.attempt === 1);
  if (results.counts.succeeded !== servers || ids.size !== servers || !once) {
    throw new Error(
      `${label}: run ${results.run.status}, ${results.counts.succeeded} of ${servers} succeeded (${ids.size} distinct servers, each started once: ${once})`,
    );
  }
}

/** One configuration: 0 workers is the run executed in process (a Fleet without `rollouts`). */
async function measure(workers: number): Promise<Measured> {
  const label = workers === 0 ? 'in process' : `${workers} worker${workers > 1 ? 's' : ''}`;
  const storeSchema = fresh('fw_bstore');
  const queueSchema = fresh('fw_bqueue');
  const sim = createSimulatedFleet(SIM);
  const children: ChildProcess[] = [];
  let queue: PostgresRolloutQueue | undefined;
  const closing: Array<() => Promise<void>> = [];
  try {
    const setupStarted = performance.now();
    let measuredRun = 0;
    const store = await createPostgresStore({ connectionString: POSTGRES_URL, schema: storeSchema });
    if (workers > 0) {
      // The submitting process does no pg-boss maintenance: the workers do.
      queue = await createRolloutQueue({
        connectionString: POSTGRES_URL,
        schema: queueSchema,
        supervise: false,
      });
    }
    const fleet = createFleet({ store, adapters: [sim.adapter], ...(queue ? { rollouts: queue } : {}) });
    closing.push(() => fleet.close());
    if (queue) closing.push(() => queue!.close());
    await fleet.bootstrapTenant({
      tenant: { id: TENANT, name: 'Bench' },
      admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
    });
    await fleet.store.transaction(async (tx) => {
      for (const server of sim.servers) await tx.servers.create({ tenantId: TENANT, ...server });
    });
    const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
    await admin.scripts.add(SCRIPT);
    const serverIds = sim.servers.map((s) => s.id);
    const config: SimWorkerConfig = {
      postgresUrl: POSTGRES_URL,
      storeSchema,
      queueSchema,
      sim: SIM,
      concurrency: perWorker,
    };
    const started = await Promise.allSettled(Array.from({ length: workers }, () => spawnWorker(config)));
    for (const s of started) if (s.status === 'fulfilled') children.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const setupMs = performance.now() - setupStarted;

    const runStarted = performance.now();
    let jobId: string;
    if (workflow === 'scan') {
      const scanned = await admin.scan({ serverIds }, { concurrency: maxConcurrency });
      const runMs = performance.now() - runStarted;
      const tasks = await fleet.store.taskResults.listAll(TENANT, { where: { jobId: scanned.job.id } });
      const once = tasks.every((t) => t.status === 'succeeded' && t.attempt === 1);
      if (scanned.job.status !== 'succeeded' || scanned.results.length !== servers || !once) {
        throw new Error(
          `${label}: scan ${scanned.job.status}, ${scanned.results.length} of ${servers} results (each scanned once: ${once})`,
        );
      }
      jobId = scanned.job.id;
      measuredRun = runMs;
    } else {
      const results = await admin.scripts.runScript({
        script: SCRIPT.name,
        targets: { serverIds },
        rollout: { maxConcurrency },
        cancelPollMs: waitPollMs,
      });
      measuredRun = performance.now() - runStarted;
      check(label, results);
      jobId = results.job!.id;
    }
    const runMs = measuredRun;

    const measured: Measured = {
      label,
      slots: workers === 0 ? maxConcurrency : Math.min(maxConcurrency, workers * perWorker),
      setupMs,
      runMs,
    };
    if (workers > 0) {
      measured.workerRss = children.map((c) => peakRss(c.pid) ?? Number.NaN);
      const byWorker = new Map<string, number>();
      const tasks = await fleet.store.taskResults.listAll(TENANT, { where: { jobId } });
      for (const task of tasks) {
        const owner = String(task.details?.['workerId'] ?? '?');
        byWorker.set(owner, (byWorker.get(owner) ?? 0) + 1);
      }
      measured.perWorker = [...byWorker.values()].sort((a, b) => b - a);
    }
    return measured;
  } finally {
    await Promise.all(children.map(stopWorker));
    for (const close of closing.reverse()) await close().catch(() => undefined);
    await dropSchemas([storeSchema, queueSchema, `${queueSchema}_boss`]);
  }
}

console.log(
  `${workflow === 'scan' ? 'Scan' : 'Script run'} over ${servers.toLocaleString('en-US')} simulated servers, fixed latency ${latencyMs} ms, ${workflow === 'scan' ? 'scan concurrency' : 'maxConcurrency'} ${maxConcurrency}; workers ${perWorker} tasks at a time each; PostgreSQL store (${POSTGRES_URL.replace(/\/\/[^@/]*@/, '//')}); the submitter polls for the end every ${workflow === 'scan' ? 200 : waitPollMs} ms`,
);
const all: Measured[] = [];
for (const workers of [0, ...workerCounts]) {
  const m = await measure(workers);
  all.push(m);
  const setup = `setup ${ms(m.setupMs)} (schemas, servers, script${m.perWorker ? ', workers up' : ''})`;
  const spread = m.perWorker ? `; servers per worker ${m.perWorker.join(', ')}` : '';
  const rss = m.workerRss ? `; worker peak RSS ${m.workerRss.map(mib).join(', ')}` : '';
  console.log(`  ${m.label}: run ${ms(m.runMs)}; ${setup}${spread}${rss}`);
}

const inProcess = all[0]!;
const oneWorker = all.find((m) => m.label === '1 worker');
console.log(
  '\n  configuration    wall time   servers/s       ideal   vs ideal   vs in process   vs 1 worker',
);
for (const m of all) {
  const ideal = (servers * latencyMs) / m.slots;
  const cells = [
    m.label.padEnd(14),
    ms(m.runMs).padStart(10),
    Math.round((servers * 1000) / m.runMs)
      .toLocaleString('en-US')
      .padStart(10),
    ms(ideal).padStart(10),
    `${(m.runMs / ideal).toFixed(2)}×`.padStart(9),
    // Throughput ratios: above 1 is faster than the reference.
    `${(inProcess.runMs / m.runMs).toFixed(2)}×`.padStart(14),
    (m === inProcess || !oneWorker ? '' : `${(oneWorker.runMs / m.runMs).toFixed(2)}×`).padStart(12),
  ];
  console.log(`  ${cells.join('  ')}`);
}
console.log(`  peak RSS of this (submitting) process: ${mib(process.resourceUsage().maxRSS)}`);
