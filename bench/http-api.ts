// Benchmark: the HTTP API under a portal's load. 1,000 servers in one tenant on SQLite, 50
// concurrent keep-alive clients, `GET /v1/servers?limit=50` and `GET /v1/servers/{id}`: requests/s,
// p50 and p99, against a bare Hono route on the same machine returning the same JSON bodies.
// Run: node --import tsx bench/http-api.ts [--servers 1000] [--clients 50] [--duration 10] [--warmup 2]
//
// The servers run in this process; the load comes from a child process (this file with --load), a
// small keep-alive loop over node:http, so that the clients do not share the servers' event loop.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { createFleet, type Server, type ServerInput } from '@fleetward/core';
import { issueApiToken, serveFleetwardApi } from '@fleetward/http';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';

const TENANT = 'bench';
const ADMIN = 'admin';
const BATCH = 2_000;
const TOKEN_ENV = 'FLEETWARD_BENCH_TOKEN';

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '1000' },
    clients: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    load: { type: 'string' },
    path: { type: 'string' },
  },
});
const servers = Number(args.servers);
const clients = Number(args.clients);
const durationMs = Number(args.duration) * 1000;
const warmupMs = Number(args.warmup) * 1000;

const serverId = (i: number) => `srv-${String(i).padStart(6, '0')}`;

/** What one load run measured (requests started after the warm-up). */
interface LoadResult {
  requests: number;
  /** Every request answered, the warm-up's included. */
  total: number;
  failures: number;
  /** Answers other than 200, by status (or by error code when the request failed). */
  failed: Record<string, number>;
  perSecond: number;
  p50: number;
  p99: number;
  bytes: number;
}

/**
 * The load generator: `clients` loops, each sending its next request when the last answer has
 * been read, over keep-alive connections. `{id}` in the path becomes a random server id.
 */
async function load(base: string, pathTemplate: string): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const token = process.env[TOKEN_ENV];
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const get = (path: string) =>
    new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      const request = http.get(new URL(path, base), { agent, headers }, (response) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes }));
        response.on('error', reject);
      });
      request.on('error', reject);
    });

  const start = performance.now();
  const measureFrom = start + warmupMs;
  const until = measureFrom + durationMs;
  const latencies: number[] = [];
  let failures = 0;
  const failed: Record<string, number> = {};
  let bytes = 0;
  let lastEnd = measureFrom;
  let total = 0;
  const client = async () => {
    while (performance.now() < until) {
      const path = pathTemplate.replace('{id}', serverId(Math.floor(Math.random() * servers)));
      const t = performance.now();
      const answer = await get(path).catch((error: NodeJS.ErrnoException) => ({
        status: error.code ?? 'error',
        bytes: 0,
      }));
      const end = performance.now();
      total++;
      if (t < measureFrom) continue;
      latencies.push(end - t);
      lastEnd = Math.max(lastEnd, end);
      bytes = answer.bytes;
      if (answer.status !== 200) {
        failures++;
        failed[answer.status] = (failed[answer.status] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)] ?? 0;
  return {
    requests: latencies.length,
    total,
    failures,
    failed,
    perSecond: (latencies.length * 1000) / (lastEnd - measureFrom),
    p50: at(0.5),
    p99: at(0.99),
    bytes,
  };
}

/** Runs the load generator in a child process against `base` + `path`. */
async function loadFromChild(base: string, path: string, token?: string): Promise<LoadResult> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...['--load', base, '--path', path],
      ...['--servers', String(servers), '--clients', String(clients)],
      ...['--duration', String(durationMs / 1000), '--warmup', String(warmupMs / 1000)],
    ],
    { env: { ...process.env, [TOKEN_ENV]: token ?? '' }, maxBuffer: 1024 * 1024 },
  );
  return JSON.parse(stdout) as LoadResult;
}

async function build(path: string) {
  const store = createSqliteStore({ path });
  const fleet = createFleet({ store, adapters: [] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Bench' },
    admin: { id: ADMIN, name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  for (let from = 0; from < servers; from += BATCH) {
    await store.transaction(async (tx) => {
      for (let i = from; i < Math.min(from + BATCH, servers); i++) {
        const server: ServerInput = {
          tenantId: TENANT,
          id: serverId(i),
          name: `web-${i}`,
          accountId: `dc-${i % 20}`,
          provider: 'ssh',
          address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
          labels: {
            env: i % 3 === 0 ? 'prod' : 'staging',
            team: `team-${i % 7}`,
            tier: i % 2 ? 'web' : 'db',
          },
        };
        await tx.servers.create(server);
      }
    });
  }
  const { token } = await issueApiToken(fleet, { tenantId: TENANT, principalId: ADMIN, name: 'bench' });
  return { fleet, store, token };
}

/** The same bodies without the SDK: the first page as the API answered it, and each server as stored. */
async function serveBare(page: unknown, byId: Map<string, Server>) {
  const app = new Hono();
  app.get('/v1/servers', (c) => c.json(page));
  app.get('/v1/servers/:id', (c) => {
    const server = byId.get(c.req.param('id'));
    return server ? c.json(server) : c.json({ title: 'not found' }, 404);
  });
  const { server, address } = await new Promise<{ server: ReturnType<typeof serve>; address: AddressInfo }>(
    (resolve) => {
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
        resolve({ server, address: info }),
      );
    },
  );
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
const line = (r: LoadResult) =>
  `${Math.round(r.perSecond).toLocaleString('en-US')} requests/s, p50 ${ms(r.p50)}, p99 ${ms(r.p99)} ` +
  `(${r.requests} requests, ${r.failures} not 200${r.failures ? ` ${JSON.stringify(r.failed)}` : ''}, ${r.bytes} bytes a body)`;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-bench-'));
  try {
    let t = performance.now();
    const { fleet, store, token } = await build(join(dir, 'fleet.db'));
    console.log(
      `build: ${servers} servers in one tenant through the store (SQLite, default durability): ` +
        `${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    const api = await serveFleetwardApi(fleet, { port: 0 });
    const pageResponse = await fetch(`${api.url}/v1/servers?limit=50`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (pageResponse.status !== 200) throw new Error(`GET /v1/servers answered ${pageResponse.status}`);
    const page: unknown = await pageResponse.json();

    const routes = [
      { name: 'GET /v1/servers?limit=50', path: '/v1/servers?limit=50' },
      { name: 'GET /v1/servers/{id}', path: '/v1/servers/{id}' },
    ];
    const ours: LoadResult[] = [];
    for (const route of routes) {
      const before = (await store.audit.head(TENANT))?.seq ?? 0;
      t = performance.now();
      const result = await loadFromChild(api.url, route.path, token);
      const records = ((await store.audit.head(TENANT))?.seq ?? 0) - before;
      ours.push(result);
      console.log(`Fleetward API ${route.name}: ${line(result)}`);
      console.log(
        `  audit records written: ${records} for ${result.total} requests (warm-up included), ` +
          `${(records / Math.max(1, result.total)).toFixed(2)} per request`,
      );
    }
    await api.close();

    const byId = new Map((await store.servers.listAll(TENANT)).map((s) => [s.id, s]));
    const bare = await serveBare(page, byId);
    for (const [i, route] of routes.entries()) {
      const result = await loadFromChild(bare.url, route.path);
      const api = ours[i]!;
      console.log(`bare Hono ${route.name}: ${line(result)}`);
      console.log(
        `  ratio API / bare: requests/s ${(api.perSecond / result.perSecond).toPrecision(2)}×, ` +
          `p50 ${(api.p50 / result.p50).toFixed(1)}×, p99 ${(api.p99 / result.p99).toFixed(1)}×`,
      );
    }
    await bare.close();
    await fleet.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args.load) {
  process.stdout.write(JSON.stringify(await load(args.load, args.path ?? '/')));
} else {
  console.log(
    `${servers} servers, ${clients} concurrent keep-alive clients, ${warmupMs / 1000} s warm-up then ` +
      `${durationMs / 1000} s per route and server`,
  );
  await main();
}
