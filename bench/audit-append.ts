// Benchmark: durable, hash-chained audit appends through the store API (`store.audit.append`) and
// an audited facade call (`fleet.as(…).servers.get`), against plain durable inserts of rows of the
// same size into a bare table with the same driver, on SQLite and PostgreSQL; then the throughput
// of verifying the chain.
// Run: node --import tsx bench/audit-append.ts [--n 1000] [--rounds 4] [--postgres <url>] [--no-postgres]
//
// Every side commits each row on its own (one append, one call or one insert at a time, as a
// request handler does), so every figure includes one durable commit per row. The sides alternate
// in `--rounds` rounds so that a change in the machine's load hits all of them alike.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type AuditInput,
  type AuditRecord,
  createFleet,
  type FleetSession,
  type Store,
  verifyAuditChain,
} from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import pg from 'pg';

const TENANT = 'bench';
const ADMIN = 'admin';
const SERVER_ID = 'web-1';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '4' },
    postgres: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
    'no-postgres': { type: 'boolean', default: false },
  },
});
const n = Number(args.n);
const rounds = Math.max(1, Math.min(Number(args.rounds), n));

const rate = (count: number, ms: number) => `${Math.round((count * 1000) / ms).toLocaleString('en-US')}/s`;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** What one side does: `count` rows, each committed on its own. */
type Side = (count: number) => Promise<void>;

/** Runs every side `rounds` times, alternating, and returns each side's total time in ms. */
async function alternate(sides: Record<string, Side>): Promise<Record<string, number>> {
  const totals: Record<string, number> = Object.fromEntries(Object.keys(sides).map((k) => [k, 0]));
  for (const side of Object.values(sides)) await side(Math.min(20, n));
  for (let round = 0; round < rounds; round++) {
    const count = Math.floor(n / rounds) + (round < n % rounds ? 1 : 0);
    for (const [name, side] of Object.entries(sides)) {
      const t = performance.now();
      await side(count);
      totals[name]! += performance.now() - t;
    }
  }
  return totals;
}

/**
 * A Fleet over `store` with one tenant, its admin and one server; the audit input of an audited
 * read (what `servers.get` records) and the stored text of such a record, whose length the plain
 * rows copy.
 */
async function prepare(store: Store) {
  const fleet = createFleet({ store, adapters: [] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Bench' },
    admin: { id: ADMIN, name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  const session = fleet.as({ tenantId: TENANT, principalId: ADMIN });
  await session.servers.add({
    id: SERVER_ID,
    name: SERVER_ID,
    accountId: 'dc',
    provider: 'ssh',
    address: '10.0.0.1',
    labels: { env: 'prod', tier: 'web' },
  });
  await session.servers.get(SERVER_ID);
  const last = (await store.audit.head(TENANT))!;
  const { seq: _seq, id: _id, at: _at, prevHash: _prev, hash: _hash, ...input } = last;
  return { fleet, session, input: input satisfies AuditInput, rowLength: JSON.stringify(last).length };
}

/** A row as long as a stored audit record, different every time (as records are). */
function payload(length: number): string {
  const head = randomBytes(16).toString('hex');
  return head + 'x'.repeat(Math.max(0, length - head.length));
}

function report(
  label: string,
  totals: Record<string, number>,
  plainName: string,
  sides: { name: string; what: string }[],
) {
  const plain = totals[plainName]!;
  console.log(`${label}: ${n} rows per side, one commit each, ${rounds} alternating rounds`);
  console.log(`  plain insert into a bare table: ${rate(n, plain)}`);
  for (const { name, what } of sides) {
    const ms = totals[name]!;
    console.log(`  ${what}: ${rate(n, ms)} = ${(plain / ms).toFixed(2)}× the plain insert`);
  }
}

/** Verification throughput over the tenant's whole log: in memory, and end to end through the facade. */
async function verification(label: string, store: Store, session: FleetSession) {
  const records: AuditRecord[] = [];
  let afterSeq: number | undefined;
  for (;;) {
    const page = await store.audit.list(TENANT, { ...(afterSeq ? { afterSeq } : {}), limit: 1000 });
    records.push(...page);
    if (page.length < 1000) break;
    afterSeq = page[page.length - 1]!.seq;
  }
  const inMemory: number[] = [];
  const endToEnd: number[] = [];
  for (let i = 0; i < 5; i++) {
    let t = performance.now();
    const chain = verifyAuditChain(records);
    inMemory.push(performance.now() - t);
    if (!chain.ok)
      throw new Error(`${label}: the chain does not verify: ${JSON.stringify(chain.problems[0])}`);
    t = performance.now();
    const verified = await session.audit.verify();
    endToEnd.push(performance.now() - t);
    if (!verified.ok) throw new Error(`${label}: audit.verify() reports problems`);
  }
  console.log(
    `  verification of ${records.length} records (median of 5): verifyAuditChain in memory ` +
      `${rate(records.length, median(inMemory))} records; audit.verify() reading the store ` +
      `${rate(records.length, median(endToEnd))} records`,
  );
}

async function sqlite(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-bench-'));
  try {
    // The store's defaults: WAL, synchronous FULL. The bare table gets the same settings.
    const store = createSqliteStore({ path: join(dir, 'fleet.db') });
    const { fleet, session, input, rowLength } = await prepare(store);
    const bare = new Database(join(dir, 'plain.db'));
    bare.pragma('journal_mode = WAL');
    bare.pragma('synchronous = FULL');
    bare.exec('CREATE TABLE plain (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    const insert = bare.prepare('INSERT INTO plain (body) VALUES (?)');

    const totals = await alternate({
      plain: async (count) => {
        for (let i = 0; i < count; i++) insert.run(payload(rowLength));
      },
      append: async (count) => {
        for (let i = 0; i < count; i++) await store.audit.append(input);
      },
      facade: async (count) => {
        for (let i = 0; i < count; i++) await session.servers.get(SERVER_ID);
      },
    });
    report('SQLite (temporary file, WAL, synchronous FULL)', totals, 'plain', [
      { name: 'append', what: `store.audit.append (${rowLength}-character record)` },
      { name: 'facade', what: 'audited servers.get (authorize, read, append)' },
    ]);
    await verification('SQLite', store, session);
    bare.close();
    await fleet.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(url: string): Promise<void> {
  const schema = `fw_bench_${randomBytes(6).toString('hex')}`;
  const plainSchema = `${schema}_plain`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    const settings = await admin.query<{ name: string; setting: string }>(
      "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method') ORDER BY name",
    );
    const store = await createPostgresStore({ connectionString: url, schema });
    const { fleet, session, input, rowLength } = await prepare(store);
    await admin.query(`CREATE SCHEMA "${plainSchema}"`);
    await admin.query(`CREATE TABLE "${plainSchema}".plain (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)`);
    // A client of its own, as the store's pool gives each append a connection of its own.
    const bare = new pg.Client({ connectionString: url });
    await bare.connect();
    const insert = `INSERT INTO "${plainSchema}".plain (body) VALUES ($1)`;

    const totals = await alternate({
      plain: async (count) => {
        for (let i = 0; i < count; i++) await bare.query(insert, [payload(rowLength)]);
      },
      append: async (count) => {
        for (let i = 0; i < count; i++) await store.audit.append(input);
      },
      facade: async (count) => {
        for (let i = 0; i < count; i++) await session.servers.get(SERVER_ID);
      },
    });
    const shown = settings.rows.map((r) => `${r.name} ${r.setting}`).join(', ');
    report(`PostgreSQL (${shown})`, totals, 'plain', [
      { name: 'append', what: `store.audit.append (${rowLength}-character record)` },
      { name: 'facade', what: 'audited servers.get (authorize, read, append)' },
    ]);
    await verification('PostgreSQL', store, session);
    await bare.end();
    await fleet.close();
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS "${plainSchema}" CASCADE`);
    await admin.end();
  }
}

await sqlite();
if (!args['no-postgres']) await postgres(args.postgres);
