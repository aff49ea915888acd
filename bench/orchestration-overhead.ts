// Benchmark: a script run over 1,000 simulated servers through `fleet.as(…).scripts.runScript`
// against the same adapter exec calls made directly at the same concurrency (p-queue), with the
// orchestration's cost per server (store writes, audit records, events); then the memory of a
// script run and a scan over 10,000 simulated servers.
// Run: node --import tsx bench/orchestration-overhead.ts [--servers 1000] [--latency 20]
//        [--concurrency 50] [--runs 5] [--memory-servers 10000]
//
// The memory part runs in a fresh child process (with --expose-gc), so that its heap figures and
// peak RSS are its own, not the timing part's.
import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type Command,
  createFleet,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  type Server,
  type Store,
} from '@fleetward/core';
import { createSimulatedFleet, type SimulatedFleet } from '@fleetward/testkit/sim';
import PQueue from 'p-queue';

const TENANT = 'bench';
const SCRIPT = { name: 'uptime', interpreter: 'sh' as const, body: 'uptime\n' };

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '1000' },
    latency: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '50' },
    runs: { type: 'string', default: '5' },
    'memory-servers': { type: 'string', default: '10000' },
    measure: { type: 'string' },
  },
});
const servers = Number(args.servers);
const latencyMs = Number(args.latency);
const concurrency = Number(args.concurrency);
const runs = Number(args.runs);
const memoryServers = Number(args['memory-servers']);

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const ms = (value: number) => `${value.toFixed(0)} ms`;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function simulate(count: number, latency: number): SimulatedFleet {
  return createSimulatedFleet({ servers: count, seed: 16, latency: { kind: 'fixed', ms: latency } });
}

async function fleetOver(sim: SimulatedFleet, store: Store = createMemoryStore()) {
  const fleet = createFleet({ store, adapters: [sim.adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Bench' },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  for (const server of sim.servers) await fleet.store.servers.create({ tenantId: TENANT, ...server });
  const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
  await admin.scripts.add(SCRIPT);
  return { fleet, admin };
}

function runScript(admin: FleetSession, sim: SimulatedFleet, signal?: AbortSignal) {
  return admin.scripts.runScript({
    script: SCRIPT.name,
    targets: { serverIds: sim.servers.map((s) => s.id) },
    rollout: { maxConcurrency: concurrency },
    ...(signal ? { signal } : {}),
  });
}

/** The same exec calls a run makes (command, timeout, output cap, a signal), straight to the adapter. */
async function direct(sim: SimulatedFleet, stored: Server[]): Promise<void> {
  const exec = sim.adapter.exec!;
  const queue = new PQueue({ concurrency });
  const command: Command = {
    interpreter: ['sh', '-s'],
    script: SCRIPT.body,
    env: { FLEETWARD_SCRIPT: 'uptime' },
  };
  await Promise.all(
    stored.map((server) =>
      queue.add(async () => {
        const result = await exec.exec(server, command, {
          timeoutMs: 600_000,
          maxOutputBytes: 65_536,
          // A signal of its own per call, as a run gives each server's exec.
          signal: new AbortController().signal,
        });
        if (result.exitCode !== 0) throw new Error(`unexpected exit ${result.exitCode}`);
      }),
    ),
  );
}

/** Counts every write through the store (by repository and method) and every transaction. */
function countingStore(store: Store, counts: Map<string, number>): Store {
  const WRITES = new Set(['create', 'update', 'delete', 'append', 'upsert']);
  const bump = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  const wrap = <T extends object>(target: T, path: string): T =>
    new Proxy(target, {
      get(t, prop) {
        const value = Reflect.get(t, prop, t) as unknown;
        if (typeof value === 'function') {
          if (prop === 'transaction') {
            return (fn: (tx: object) => Promise<unknown>) => {
              bump('transaction');
              return value.call(t, (tx: object) => fn(wrap(tx, 'tx')));
            };
          }
          if (WRITES.has(String(prop))) {
            return (...callArgs: unknown[]) => {
              bump(`${path}.${String(prop)}`);
              return value.apply(t, callArgs);
            };
          }
          if (prop === 'appendMany') {
            // A group commit: one call, one record per input.
            return (inputs: readonly unknown[], ...rest: unknown[]) => {
              for (let i = 0; i < inputs.length; i++) bump(`${path}.append`);
              bump(`${path}.appendMany`);
              return value.call(t, inputs, ...rest);
            };
          }
          return value.bind(t);
        }
        if (value && typeof value === 'object') return wrap(value, String(prop));
        return value;
      },
    });
  return wrap(store, 'store');
}

function countEvents(fleet: Fleet, counts: Map<string, number>): void {
  const events = fleet.events as unknown as { emit: (name: string, ...rest: unknown[]) => boolean };
  const emit = events.emit.bind(events);
  events.emit = (name, ...rest) => {
    counts.set(name, (counts.get(name) ?? 0) + 1);
    return emit(name, ...rest);
  };
}

async function overhead(): Promise<void> {
  console.log(
    `Script run over ${servers} simulated servers, fixed latency ${latencyMs} ms, ${concurrency} at a time, memory store; ${runs} runs per side after one warm-up each`,
  );
  const orchestrated: number[] = [];
  const straight: number[] = [];
  for (let run = 0; run <= runs; run++) {
    const sim = simulate(servers, latencyMs);
    const { fleet, admin } = await fleetOver(sim);
    let started = performance.now();
    const results = await runScript(admin, sim);
    const orchestratedMs = performance.now() - started;
    if (results.counts.succeeded !== servers) throw new Error(`run ended ${results.run.status}`);
    const stored = await fleet.store.servers.listAll(TENANT);
    await fleet.close();

    const baseline = simulate(servers, latencyMs);
    started = performance.now();
    await direct(baseline, stored);
    const directMs = performance.now() - started;
    if (run === 0) continue;
    orchestrated.push(orchestratedMs);
    straight.push(directMs);
  }
  const ideal = Math.ceil(servers / concurrency) * latencyMs;
  const o = median(orchestrated);
  const d = median(straight);
  console.log(`  ideal (latency × ${Math.ceil(servers / concurrency)} rounds): ${ms(ideal)}`);
  console.log(`  direct exec (p-queue):        median ${ms(d)}  [${straight.map(ms).join(', ')}]`);
  console.log(`  runScript:                    median ${ms(o)}  [${orchestrated.map(ms).join(', ')}]`);
  console.log(`  ratio runScript / direct:     ${(o / d).toFixed(3)}× (target ≤ 1.05×)`);
  console.log(`  orchestration time per server: ${((o - d) / servers).toFixed(3)} ms`);

  const writes = new Map<string, number>();
  const events = new Map<string, number>();
  const sim = simulate(servers, latencyMs);
  const { fleet, admin } = await fleetOver(sim, countingStore(createMemoryStore(), writes));
  writes.clear();
  countEvents(fleet, events);
  await runScript(admin, sim);
  await fleet.close();
  const total = (map: Map<string, number>, filter: (key: string) => boolean = () => true) =>
    [...map].filter(([key]) => filter(key)).reduce((sum, [, n]) => sum + n, 0);
  const audits = total(writes, (k) => k === 'audit.append');
  const rowWrites = total(writes, (k) => k !== 'transaction' && !k.startsWith('audit.'));
  console.log(`  cost per server of one run (whole run / ${servers}):`);
  console.log(
    `    store transactions ${(total(writes, (k) => k === 'transaction') / servers).toFixed(2)}, row writes ${(rowWrites / servers).toFixed(2)}, audit records ${(audits / servers).toFixed(2)}, events ${(total(events) / servers).toFixed(2)}`,
  );
  console.log(
    `    writes: ${[...writes]
      .filter(([k]) => k !== 'transaction')
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  );
  console.log(`    events: ${[...events].map(([k, n]) => `${k} ${n}`).join(', ')}`);
}

type Gc = () => void;

async function memory(): Promise<void> {
  const gc = (globalThis as { gc?: Gc }).gc;
  if (!gc) throw new Error('run the memory part with --expose-gc');
  const heap = () => {
    gc();
    return process.memoryUsage().heapUsed;
  };
  const leaks: string[] = [];
  process.on('warning', (w) => {
    if (w.name === 'MaxListenersExceededWarning') leaks.push(w.message);
  });
  console.log(
    `\nMemory over ${memoryServers} simulated servers (fixed latency 1 ms, ${concurrency} at a time, memory store), in a child process`,
  );
  const empty = heap();
  await memoryOfOneFleet(heap, empty, memoryServers);
  const dropped = heap();
  const over = (bytes: number) => `${bytes >= 0 ? '+' : ''}${mib(bytes)} over the empty process`;
  console.log(
    `  heap once that fleet is closed and dropped (gc): ${mib(dropped)} (${over(dropped - empty)})`,
  );
  // Something keeps the last scan reachable until the next one (it is released then, so it does not
  // add up over runs): a second, small fleet shows what stays once the big one is truly gone.
  await memoryOfOneFleet(heap, empty, 100);
  const settled = heap();
  console.log(
    `  heap after a second fleet of 100 servers ran and was dropped (gc): ${mib(settled)} (${over(settled - empty)})`,
  );
  console.log(`  MaxListenersExceededWarning: ${leaks.length ? leaks.join(' | ') : 'none'}`);
  console.log(`  peak RSS of this process: ${mib(process.resourceUsage().maxRSS * 1024)}`);
}

/** A script run and a scan over every server of one Fleet; nothing of it is reachable once it returns. */
async function memoryOfOneFleet(heap: () => number, empty: number, count: number): Promise<void> {
  const sim = simulate(count, 1);
  const { fleet, admin } = await fleetOver(sim);
  const inventory = heap();
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }, 50);
  const caller = new AbortController();
  let started = performance.now();
  const results = await runScript(admin, sim, caller.signal);
  const runMs = performance.now() - started;
  const afterRun = heap();
  started = performance.now();
  const scan = await admin.scan(
    { serverIds: sim.servers.map((s) => s.id) },
    { concurrency, signal: caller.signal },
  );
  const scanMs = performance.now() - started;
  clearInterval(sampler);
  const afterScan = heap();
  const stats = sim.stats();
  const callerListeners = getEventListeners(caller.signal, 'abort').length;
  await fleet.close();
  if (count !== memoryServers) return;
  const perServer = (bytes: number) => `${(bytes / count / 1024).toFixed(2)} KiB/server`;
  console.log(`  heap, empty process (gc):                 ${mib(empty)}`);
  console.log(`  heap with the fleet and its servers (gc): ${mib(inventory)}`);
  console.log(
    `  script run: ${results.run.status} in ${ms(runMs)}; heap after (gc) ${mib(afterRun)}, +${mib(afterRun - inventory)} = ${perServer(afterRun - inventory)} (task rows, audit records, the run)`,
  );
  console.log(
    `  scan: ${scan.job.status}, ${scan.results.length} results in ${ms(scanMs)}; heap after (gc) ${mib(afterScan)}, +${mib(afterScan - afterRun)} = ${perServer(afterScan - afterRun)} (scan results with their patches, task rows)`,
  );
  console.log(`  heap peak while running (sampled every 50 ms, garbage included): ${mib(peak)}`);
  console.log(
    `  abort listeners: at most ${stats.maxAbortListeners} on any signal an exec or scan was given; ${callerListeners} left on the caller's signal`,
  );
}

if (args.measure === 'memory') {
  await memory();
} else {
  await overhead();
  const child = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      '--measure',
      'memory',
      '--memory-servers',
      String(memoryServers),
      '--concurrency',
      String(concurrency),
    ],
    { stdio: 'inherit' },
  );
  if (child.status !== 0) process.exitCode = child.status ?? 1;
}
