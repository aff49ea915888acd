// Benchmark: `compliance.summary()` over 100,000 servers in the SQLite store, against a
// hand-written SQL aggregate over the same database file.
// Run: node --import tsx bench/compliance-summary.ts [--servers 100000] [--runs 7] [--postgres <url>]
//
// The database is built in this process; the measurements run in a fresh child process so that
// its peak RSS reflects the summary alone, not the build.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type ComplianceGroup,
  type ComplianceStandardInput,
  type ComplianceSummaryResult,
  createFleet,
  evaluateServer,
  type PendingPatch,
  type ProjectInput,
  projectsOf,
  type ServerInput,
  summarize,
} from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import pg from 'pg';
// The store-level read the compliance module uses internally (not part of the public API).
import { evaluateStates, loadLatestScans } from '../packages/core/src/compliance/api.js';

const TENANT = 'bench';
const ADMIN = 'admin';
const DAY = 86_400_000;
const BATCH = 2_000;

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '7' },
    measure: { type: 'string' },
    now: { type: 'string' },
    /** A PostgreSQL database to build in (a schema of its own, dropped after) instead of SQLite. */
    postgres: { type: 'string' },
  },
});

/** Deterministic data: the same fleet on every run. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PROVIDERS = {
  aws: ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-1'],
  azure: ['westeurope', 'northeurope', 'eastus'],
  gcp: ['europe-west1', 'us-central1'],
  ssh: ['dc-fra', 'dc-ams'],
} as const;
type BenchProvider = keyof typeof PROVIDERS;

const OSES = [
  { family: 'debian', id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  { family: 'debian', id: 'ubuntu', versionId: '22.04', prettyName: 'Ubuntu 22.04.4 LTS' },
  { family: 'debian', id: 'ubuntu', versionId: '24.04', prettyName: 'Ubuntu 24.04.1 LTS' },
  { family: 'rhel', id: 'rocky', versionId: '9.4', prettyName: 'Rocky Linux 9.4 (Blue Onyx)' },
  { family: 'rhel', id: 'rhel', versionId: '8.10', prettyName: 'Red Hat Enterprise Linux 8.10 (Ootpa)' },
  { family: 'suse', id: 'sles', versionId: '15.5', prettyName: 'SUSE Linux Enterprise Server 15 SP5' },
] as const;

const PACKAGES = [
  'openssl',
  'libssl3',
  'curl',
  'openssh-server',
  'linux-image-amd64',
  'glibc',
  'sudo',
  'bash',
];
const ENVS = ['prod', 'staging', 'dev'] as const;
const TEAMS = ['payments', 'search', 'identity', 'data', 'web', 'mobile', 'ml', 'infra'] as const;

const PROJECTS: Omit<ProjectInput, 'tenantId'>[] = [
  { id: 'prod', name: 'Production', selector: { labels: { env: 'prod' } } },
  { id: 'payments', name: 'Payments', selector: { labels: { team: 'payments' } } },
  {
    id: 'eu',
    name: 'EU regions',
    selector: { regions: ['eu-west-1', 'eu-central-1', 'westeurope', 'europe-west1'] },
  },
  { id: 'on-prem', name: 'On premises', selector: { providers: ['ssh'] } },
];

const STANDARDS: Omit<ComplianceStandardInput, 'tenantId'>[] = [
  {
    id: 'sec-7',
    name: 'No security patch pending over 7 days',
    rule: { kind: 'max-pending-age' as const, categories: ['security' as const], maxAgeDays: 7 },
    alertAfterDays: 30,
  },
  {
    id: 'prod-critical',
    name: 'No critical security patch pending in production',
    projectId: 'prod',
    rule: {
      kind: 'no-pending' as const,
      categories: ['security' as const],
      minSeverity: 'critical' as const,
    },
  },
  {
    id: 'updated-90',
    name: 'Updated within 90 days',
    rule: { kind: 'updated-within' as const, days: 90 },
    alertAfterDays: 30,
  },
  { id: 'scanned-7', name: 'Scanned within 7 days', rule: { kind: 'scanned-within' as const, days: 7 } },
];

const CATEGORIES = [
  ['security', 0.4],
  ['bugfix', 0.3],
  ['enhancement', 0.15],
  ['other', 0.1],
  ['unknown', 0.05],
] as const;
const SEVERITIES = ['critical', 'important', 'moderate', 'low'] as const;

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)]!;
}

function category(random: () => number) {
  let r = random();
  for (const [name, p] of CATEGORIES) {
    if (r < p) return name;
    r -= p;
  }
  return 'other' as const;
}

const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;
const ms = (n: number) => `${n.toFixed(0)} ms`;

/**
 * The store under test: with `--postgres`, `where` is a schema of that database; else the path of
 * a SQLite file.
 */
function openStore(where: string, options: { clock?: { now(): Date }; build?: boolean } = {}) {
  const clock = options.clock ? { clock: options.clock } : {};
  return args.postgres
    ? createPostgresStore({ connectionString: args.postgres, schema: where, ...clock })
    : Promise.resolve(
        createSqliteStore({
          path: where,
          ...(options.build ? { synchronous: 'normal' as const } : {}),
          ...clock,
        }),
      );
}

async function build(path: string, count: number, now: number): Promise<void> {
  const store = await openStore(path, { build: true });
  const fleet = createFleet({ store, adapters: [] });
  const random = rng(42);
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Benchmark' },
    admin: { id: ADMIN, name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  const admin = fleet.as({ tenantId: TENANT, principalId: ADMIN });
  const accounts: { id: string; provider: BenchProvider }[] = [];
  for (const provider of Object.keys(PROVIDERS) as BenchProvider[]) {
    for (let i = 1; i <= 5; i++) {
      const id = `${provider}-${i}`;
      accounts.push({ id, provider });
      await admin.accounts.add({ id, name: `${provider} account ${i}`, provider });
    }
  }
  for (const project of PROJECTS) await admin.projects.add(project);
  for (const standard of STANDARDS) await admin.compliance.standards.add(standard);

  for (let start = 0; start < count; start += BATCH) {
    await store.transaction(async (tx) => {
      for (let n = start; n < Math.min(count, start + BATCH); n++) {
        const account = pick(random, accounts);
        const os = pick(random, OSES);
        const id = `srv-${String(n).padStart(6, '0')}`;
        const server: ServerInput = {
          tenantId: TENANT,
          id,
          name: `${account.provider}-${id}`,
          accountId: account.id,
          provider: account.provider,
          region: pick(random, PROVIDERS[account.provider]),
          providerId: `i-${n.toString(16).padStart(12, '0')}`,
          os,
          labels: { env: pick(random, ENVS), team: pick(random, TEAMS), tier: random() < 0.5 ? 'web' : 'db' },
        };
        await tx.servers.create(server);
        // Most servers are scanned daily, a tail has missed a week or more.
        const scannedAt = now - (random() < 0.9 ? random() * 3 : 3 + random() * 20) * DAY;
        const patches: PendingPatch[] = [];
        const pending = Math.floor(random() * 6);
        const names = new Set<string>();
        for (let i = 0; i < pending; i++) {
          const name = pick(random, PACKAGES);
          if (names.has(name)) continue;
          names.add(name);
          // Most patches are days old; a long tail has been pending for months.
          const age = random() < 0.8 ? random() * 10 : 10 + random() * 120;
          patches.push({
            name,
            arch: 'amd64',
            installedVersion: '1.0-1',
            candidateVersion: `1.0-${2 + Math.floor(random() * 5)}`,
            origins: [{ origin: os.id, archive: `${os.versionId}-security` }],
            category: category(random),
            severity: os.family === 'debian' ? 'unspecified' : pick(random, SEVERITIES),
            advisories: [],
            held: false,
            keptBack: false,
            isNew: false,
            firstSeenAt: new Date(scannedAt - age * DAY).toISOString(),
          });
        }
        const updated = random() < 0.75 ? now - random() * 200 * DAY : undefined;
        await tx.scanResults.create({
          tenantId: TENANT,
          serverId: id,
          scannedAt: new Date(scannedAt).toISOString(),
          status: 'succeeded',
          packageManager: os.family === 'debian' ? 'apt' : os.family === 'rhel' ? 'dnf' : 'zypper',
          os,
          patches,
          ...(updated !== undefined ? { lastUpdatedAt: new Date(updated).toISOString() } : {}),
        });
      }
    });
  }
  await fleet.close();
}

/**
 * What a user without the SDK would write: the same four standards as one SQL statement over the
 * same file (latest successful scan per server, patches through json_each), grouped like the
 * summary. It hard-codes the standards and the prod project's selector, which is exactly the
 * maintenance burden the SDK removes, but it is a fair lower bound for the work.
 */
const SQL = `
WITH
srv AS MATERIALIZED (
  SELECT s.id,
    json_extract(s.data, '$.provider') AS provider,
    json_extract(s.data, '$.region') AS region,
    json_extract(s.data, '$.accountId') AS account,
    coalesce(nullif(json_extract(s.data, '$.os.prettyName'), ''),
             json_extract(s.data, '$.os.id') || ' ' || json_extract(s.data, '$.os.versionId')) AS os,
    json_extract(s.data, '$.labels.env') = 'prod' AS in_prod,
    -- The latest successful scan, through the (tenant_id, serverId) expression index. Without
    -- INDEXED BY the planner (no ANALYZE statistics) prefers the primary key and reads every scan
    -- of the tenant per server; without the unary + the column's TEXT affinity prevents the seek.
    (SELECT e.data FROM entities e INDEXED BY entities_scanResults_serverId
      WHERE e.kind = 'scanResults' AND e.tenant_id = :tenant
        AND json_extract(e.data, '$.serverId') = +s.id AND json_extract(e.data, '$.status') = 'succeeded'
      ORDER BY json_extract(e.data, '$.scannedAt') DESC LIMIT 1) AS scan
  FROM entities s WHERE s.kind = 'servers' AND s.tenant_id = :tenant
),
facts AS MATERIALIZED (
  SELECT provider, region, account, os, in_prod, scan IS NOT NULL AS scanned,
    json_extract(scan, '$.scannedAt') AS scanned_at,
    json_extract(scan, '$.lastUpdatedAt') AS updated_at,
    -- Bit flags: 1 old security, 2 old unknown-category, 4 critical security, 8 critical unknown-category.
    -- (SQLite gives | and << the same precedence, hence the parentheses.)
    (SELECT coalesce(max(cat = 'security' AND age > 7), 0)
          | (coalesce(max(cat = 'unknown' AND age > 7), 0) << 1)
          | (coalesce(max(cat = 'security' AND sev IN ('critical', 'unspecified')), 0) << 2)
          | (coalesce(max(cat = 'unknown' AND sev IN ('critical', 'unspecified')), 0) << 3)
       FROM (SELECT json_extract(p.value, '$.category') AS cat,
                    json_extract(p.value, '$.severity') AS sev,
                    julianday(:now) - julianday(coalesce(json_extract(p.value, '$.firstSeenAt'),
                                                         json_extract(scan, '$.scannedAt'))) AS age
               FROM json_each(scan, '$.patches') p
              WHERE NOT json_extract(p.value, '$.isNew'))) AS f
  FROM srv
),
judged AS (
  SELECT *,
    CASE WHEN NOT scanned THEN 'u' WHEN f & 1 THEN 'n' WHEN f & 2 THEN 'u' ELSE 'c' END AS sec7,
    CASE WHEN NOT in_prod THEN 'c' WHEN NOT scanned THEN 'u' WHEN f & 4 THEN 'n' WHEN f & 8 THEN 'u'
         ELSE 'c' END AS crit,
    CASE WHEN updated_at IS NULL THEN 'u'
         WHEN julianday(:now) - julianday(updated_at) > 90 THEN 'n' ELSE 'c' END AS upd90,
    CASE WHEN NOT scanned THEN 'u' WHEN julianday(:now) - julianday(scanned_at) > 7 THEN 'n' ELSE 'c' END AS scan7
  FROM facts
),
status AS MATERIALIZED (
  SELECT provider, region, account, os, scanned_at, updated_at,
    CASE WHEN 'n' IN (sec7, crit, upd90, scan7) THEN 'non-compliant'
         WHEN 'u' IN (sec7, crit, upd90, scan7) THEN 'unknown' ELSE 'compliant' END AS status
  FROM judged
)
SELECT 'overall' AS dim, NULL AS key, status, count(*) AS n, min(scanned_at) AS oldest_scan, min(updated_at) AS oldest_update
  FROM status GROUP BY status
UNION ALL SELECT 'provider', provider, status, count(*), min(scanned_at), min(updated_at) FROM status GROUP BY provider, status
UNION ALL SELECT 'region', region, status, count(*), min(scanned_at), min(updated_at) FROM status GROUP BY region, status
UNION ALL SELECT 'account', account, status, count(*), min(scanned_at), min(updated_at) FROM status GROUP BY account, status
UNION ALL SELECT 'os', os, status, count(*), min(scanned_at), min(updated_at) FROM status GROUP BY os, status
`;

interface SqlRow {
  dim: string;
  key: string | null;
  status: 'compliant' | 'non-compliant' | 'unknown';
  n: number;
}

type Counts = Record<string, { total: number; compliant: number; nonCompliant: number; unknown: number }>;

function sqlCounts(rows: SqlRow[]): Counts {
  const out: Counts = {};
  for (const row of rows) {
    const key = `${row.dim}:${row.key ?? ''}`;
    out[key] ??= { total: 0, compliant: 0, nonCompliant: 0, unknown: 0 };
    const c = out[key];
    c.total += row.n;
    if (row.status === 'compliant') c.compliant += row.n;
    else if (row.status === 'non-compliant') c.nonCompliant += row.n;
    else c.unknown += row.n;
  }
  return out;
}

function sdkCounts(summary: ComplianceSummaryResult): Counts {
  const out: Counts = {};
  const add = (dim: string, groups: ComplianceGroup[]) => {
    for (const g of groups) {
      out[`${dim}:${g.key ?? ''}`] = {
        total: g.total,
        compliant: g.compliant,
        nonCompliant: g.nonCompliant,
        unknown: g.unknown,
      };
    }
  };
  add('overall', [summary.overall]);
  add('provider', summary.byProvider);
  add('region', summary.byRegion);
  add('account', summary.byAccount);
  add('os', summary.byOs);
  return out;
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { median: at(0.5), p95: at(0.95), min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

async function measure(path: string, runs: number, now: string): Promise<void> {
  let nowMs = Date.parse(now);
  const clock = { now: () => new Date(nowMs) };
  const store = await openStore(path, { clock });
  const fleet = createFleet({ store, adapters: [], clock });
  const session = fleet.as({ tenantId: TENANT, principalId: ADMIN });
  const timed = async () => {
    const t = performance.now();
    const result = await session.compliance.summary();
    return { result, ms: performance.now() - t };
  };

  // The first summary of the process reads and evaluates every state; later ones keep the
  // evaluations and redo only what changed (the store's change feed) or expired (the clock).
  const cold = await timed();
  const summary: ComplianceSummaryResult = cold.result;
  console.log(`compliance.summary(), first of the process (reads every state): ${ms(cold.ms)}`);
  // A dashboard reloaded every minute: each call a minute later than the one before.
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    nowMs += 60_000;
    samples.push((await timed()).ms);
  }
  const sdk = stats(samples);
  const sdkRss = process.resourceUsage().maxRSS;
  console.log(
    `compliance.summary() end to end, ${runs} runs a minute apart: median ${ms(sdk.median)}, p95 ${ms(sdk.p95)} ` +
      `(min ${ms(sdk.min)}, max ${ms(sdk.max)}); peak RSS ${mb(sdkRss)}`,
  );
  let t = 0;
  if (args.postgres) {
    const o = summary.overall;
    console.log(
      `overall: ${o.total} servers, ${o.compliant} compliant, ${o.nonCompliant} non-compliant, ${o.unknown} unknown, ` +
        `${o.alerts} in alert (PostgreSQL: no hand-written SQL to compare with; the full evaluation below checks it)`,
    );
  } else {
    const db = new Database(path, { readonly: true });
    const statement = db.prepare(SQL);
    let rows: SqlRow[] = [];
    const sqlSamples: number[] = [];
    for (let i = 0; i < runs; i++) {
      t = performance.now();
      rows = statement.all({ tenant: TENANT, now }) as SqlRow[];
      sqlSamples.push(performance.now() - t);
    }
    db.close();
    const sql = stats(sqlSamples);
    console.log(
      `hand-written SQL aggregate (better-sqlite3, json_each, GROUP BY), ${runs} runs: ` +
        `median ${ms(sql.median)}, p95 ${ms(sql.p95)}; peak RSS afterwards ${mb(process.resourceUsage().maxRSS)}`,
    );
    console.log(`ratio SDK / SQL (median): ${(sdk.median / sql.median).toFixed(2)}×`);

    const ours = sdkCounts(summary!);
    const theirs = sqlCounts(rows);
    const keys = new Set([...Object.keys(ours), ...Object.keys(theirs)]);
    const differ = [...keys].filter((k) => JSON.stringify(ours[k]) !== JSON.stringify(theirs[k]));
    const o = summary!.overall;
    console.log(
      `overall: ${o.total} servers, ${o.compliant} compliant (${o.percent.compliant} %), ` +
        `${o.nonCompliant} non-compliant (${o.percent.nonCompliant} %), ${o.unknown} unknown ` +
        `(${o.percent.unknown} %), ${o.alerts} in alert; ${keys.size} groups compared with SQL: ` +
        (differ.length ? `${differ.length} differ: ${differ.slice(0, 5).join(', ')}` : 'all counts agree'),
    );
    if (differ.length) process.exitCode = 1;
  }

  // Scans land between two page loads: 1 % of the fleet rescanned, as the scan workflow writes them.
  const rescanned = await store.servers.list(TENANT, {
    limit: Math.max(1, Math.floor(summary.overall.total / 100)),
  });
  await store.transaction(async (tx) => {
    for (const server of rescanned) {
      await tx.scanResults.create({
        tenantId: TENANT,
        serverId: server.id,
        scannedAt: clock.now().toISOString(),
        status: 'succeeded',
        patches: [],
        lastUpdatedAt: clock.now().toISOString(),
      });
    }
  });
  const afterScans = await timed();
  console.log(`compliance.summary() after ${rescanned.length} servers were rescanned: ${ms(afterScans.ms)}`);
  // A day later: every evaluation whose patches or scan crossed an age threshold is redone.
  nowMs += DAY;
  const nextDay = await timed();
  console.log(`compliance.summary() a day later: ${ms(nextDay.ms)}`);
  const latest = nextDay.result;

  // One run split into phases, to show where the time goes (after the timed runs, so that what
  // it keeps alive does not count in their peak RSS).
  t = performance.now();
  const servers = await store.servers.listAll(TENANT);
  const tServers = performance.now() - t;
  t = performance.now();
  const scans = await loadLatestScans(store, TENANT, new Set(servers.map((s) => s.id)));
  const tScans = performance.now() - t;
  const [standards, projects, accounts] = await Promise.all([
    store.complianceStandards.listAll(TENANT),
    store.projects.listAll(TENANT),
    store.accounts.listAll(TENANT),
  ]);
  const accountNames = new Map(accounts.map((a) => [a.id, a.name]));
  t = performance.now();
  const nowDate = clock.now();
  function* evaluations() {
    for (const server of servers) {
      yield evaluateServer({
        server,
        latestScan: scans.get(server.id)?.succeeded,
        latestAttempt: scans.get(server.id)?.attempt,
        standards,
        projectIds: projectsOf(server, projects),
        now: nowDate,
        explain: false,
      });
    }
  }
  const full = summarize(evaluations(), servers, projects, { accountNames });
  const tEvaluate = performance.now() - t;
  const { generatedAt: _, ...kept } = latest;
  const agree = JSON.stringify(kept) === JSON.stringify(full);
  console.log(
    `the summary a day later, after the rescans, from kept evaluations: same as the full evaluation: ${agree ? 'yes' : 'NO'}`,
  );
  if (!agree) process.exitCode = 1;
  console.log(
    `full evaluation, phases (one run): load servers ${ms(tServers)}, load latest scans ${ms(tScans)}, ` +
      `evaluate + summarize ${ms(tEvaluate)}, total ${ms(tServers + tScans + tEvaluate)}`,
  );

  // What compliance.summary() does instead: one compact state per server, evaluated at `now`.
  t = performance.now();
  const states = await store.complianceStates.listAll(TENANT);
  const tStates = performance.now() - t;
  t = performance.now();
  const fast = summarize(
    evaluateStates(states, standards, projects, nowDate),
    states.map((s) => s.server!),
    projects,
    { accountNames },
  );
  const tFast = performance.now() - t;
  const same = JSON.stringify(fast) === JSON.stringify(full);
  console.log(
    `compliance states, phases (one run): load states ${ms(tStates)}, evaluate + summarize ${ms(tFast)}; ` +
      `same summary as the full evaluation: ${same ? 'yes' : 'NO'}`,
  );
  if (!same) process.exitCode = 1;

  t = performance.now();
  await session.compliance.evaluate({ serverIds: [servers[0]!.id] });
  console.log(`compliance.evaluate({ serverIds: [one] }): ${ms(performance.now() - t)}`);

  await fleet.close();
}

if (args.measure) {
  await measure(args.measure, Number(args.runs), args.now!);
} else {
  const count = Number(args.servers);
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-bench-'));
  const path = args.postgres ? `bench_summary_${process.pid}` : join(dir, 'fleet.db');
  const now = Date.now();
  try {
    const t = performance.now();
    await build(path, count, now);
    const seconds = (performance.now() - t) / 1000;
    const size = args.postgres
      ? 0
      : statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    console.log(
      `build: ${count} servers + ${count} scans through the store in transactions of ${BATCH}: ` +
        `${seconds.toFixed(1)} s (${Math.round((2 * count) / seconds)} entities/s), ` +
        `${args.postgres ? 'PostgreSQL' : `SQLite, ${(size / 1024 / 1024).toFixed(0)} MB`}, build peak RSS ${mb(process.resourceUsage().maxRSS)}`,
    );
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        '--measure',
        path,
        '--runs',
        String(args.runs),
        '--now',
        new Date(now).toISOString(),
        ...(args.postgres ? ['--postgres', args.postgres] : []),
      ],
      { stdio: 'inherit' },
    );
    if (child.status !== 0) process.exitCode = child.status ?? 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (args.postgres) {
      const client = new pg.Client({ connectionString: args.postgres });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${path}" CASCADE`); // bench_summary_<pid>, never input
      await client.end();
    }
  }
}
