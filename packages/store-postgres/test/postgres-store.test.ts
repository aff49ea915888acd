import {
  ENTITY_KINDS,
  INDEXED_FIELDS,
  type Store,
  StoreError,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { createPostgresStore, MIGRATIONS } from '@fleetward/store-postgres';
import { ManualClock, sampleInput } from '@fleetward/testkit';
import pg from 'pg';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { describeWithPostgres, dropSchema, freshSchema, POSTGRES_URL } from './support/postgres.js';

const actor = { principalId: 'u', kind: 'human' as const };

describeWithPostgres('createPostgresStore', () => {
  let schema: string;
  let admin: pg.Pool;
  const stores: Store[] = [];
  const open = async (options: Parameters<typeof createPostgresStore>[0] = {}) => {
    const store = await createPostgresStore({ connectionString: POSTGRES_URL, schema, ...options });
    stores.push(store);
    return store;
  };

  beforeEach(() => {
    schema = freshSchema();
    admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await dropSchema(schema);
    await admin.end();
  });

  it('audit_log — refuses UPDATE, DELETE and TRUNCATE even through raw SQL', async () => {
    const store = await open();
    await store.audit.append({ tenantId: 't', actor, action: 'a', decision: 'allow', result: 'success' });
    await expect(admin.query(`UPDATE "${schema}".audit_log SET action = 'forged'`)).rejects.toThrow(
      /append-only/,
    );
    await expect(admin.query(`DELETE FROM "${schema}".audit_log`)).rejects.toThrow(/append-only/);
    await expect(admin.query(`TRUNCATE "${schema}".audit_log`)).rejects.toThrow(/append-only/);
    expect(await store.audit.list('t')).toHaveLength(1);
  });

  it('audit — two stores (two pools, like two processes) appending concurrently keep one gapless chain', async () => {
    const [a, b] = await Promise.all([open(), open()]);
    await Promise.all(
      [...Array(50).keys()].map((i) =>
        (i % 2 ? a! : b!).audit.append({
          tenantId: 'shared',
          actor,
          action: `c.${i}`,
          decision: 'allow',
          result: 'success',
        }),
      ),
    );
    const records = await a!.audit.list('shared');
    expect(records.map((r) => r.seq)).toEqual([...Array(50).keys()].map((i) => i + 1));
    expect(verifyAuditChain(records)).toMatchObject({ ok: true, checked: 50 });
    expect(new Set(records.map((r) => r.action)).size).toBe(50);
    expect((await b!.audit.head('shared'))?.seq).toBe(50);
  });

  it('audit — appends inside transactions of two stores serialise per tenant and roll back cleanly', async () => {
    const [a, b] = await Promise.all([open(), open()]);
    const append = (s: Store, i: number, fail: boolean) =>
      s.transaction(async (tx) => {
        await tx.audit.append({
          tenantId: 'tx',
          actor,
          action: `t.${i}`,
          decision: 'allow',
          result: 'success',
        });
        if (fail) throw new Error('boom');
      });
    const results = await Promise.allSettled(
      [...Array(20).keys()].map((i) => append(i % 2 ? a! : b!, i, i % 5 === 0)),
    );
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(4);
    const records = await a!.audit.list('tx');
    expect(records.map((r) => r.seq)).toEqual([...Array(16).keys()].map((i) => i + 1));
    expect(verifyAuditChain(records).ok).toBe(true);
  });

  it('leases — two stores racing for one lease: exactly one holder, and tokens only grow', async () => {
    const clock = new ManualClock('2026-03-01T12:00:00.000Z');
    const [a, b] = await Promise.all([open({ clock }), open({ clock })]);
    let lastToken = 0;
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all(
        [...Array(10).keys()].map((i) =>
          (i % 2 ? a! : b!).leases.acquire('race', `proc-${round}-${i}`, 10_000),
        ),
      );
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(1);
      expect((await a!.leases.get('race'))?.holder).toBe(winners[0]!.holder);
      expect((await b!.leases.get('race'))?.token).toBe(winners[0]!.token);
      expect(winners[0]!.token).toBeGreaterThan(lastToken);
      lastToken = winners[0]!.token;
      clock.advance(10_001);
    }
  });

  it('migrations — stores opening concurrently apply them once', async () => {
    await Promise.all([open(), open(), open(), open()]);
    const { rows } = await admin.query<{ version: number }>(
      `SELECT version FROM "${schema}".schema_migrations ORDER BY version`,
    );
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    await open();
    expect((await admin.query(`SELECT 1 FROM "${schema}".schema_migrations`)).rowCount).toBe(
      MIGRATIONS.length,
    );
  });

  it('migrations — a schema from a newer release is refused, not damaged', async () => {
    await (await open()).close();
    await admin.query(`INSERT INTO "${schema}".schema_migrations VALUES (999, 'future', now())`);
    await expect(open()).rejects.toThrow(StoreError);
    await expect(open()).rejects.toThrow(/newer than this release/);
  });

  it('list — where compares numbers and booleans like the other stores', async () => {
    const store = await open();
    const on = await store.scanSchedules.create({ ...sampleInput('scanSchedules', 't', 1), enabled: true });
    const off = await store.scanSchedules.create({ ...sampleInput('scanSchedules', 't', 2), enabled: false });
    expect((await store.scanSchedules.list('t', { where: { enabled: true } })).map((s) => s.id)).toEqual([
      on.id,
    ]);
    expect((await store.scanSchedules.list('t', { where: { enabled: false } })).map((s) => s.id)).toEqual([
      off.id,
    ]);
  });

  it('list — orders ids by byte order, whatever the database collation', async () => {
    const store = await open();
    const { rows } = await admin.query<{ column_name: string; collation_name: string }>(
      `SELECT column_name, collation_name FROM information_schema.columns
       WHERE table_schema = $1 AND table_name = 'entities' AND column_name IN ('tenant_id', 'id')`,
      [schema],
    );
    expect(rows.map((r) => r.collation_name)).toEqual(['C', 'C']);
    for (const id of ['b', 'B', 'a.b', 'a', 'A', 'a-b', '10', '9'])
      await store.projects.create({ ...sampleInput('projects', 't'), id, name: `p-${id}` });
    expect((await store.projects.list('t')).map((p) => p.id)).toEqual([
      '10',
      '9',
      'A',
      'B',
      'a',
      'a-b',
      'a.b',
      'b',
    ]);
  });

  it('list — every indexed field’s query, as the store runs it, can be answered from that field’s index', async () => {
    const store = await open();
    // Every query the store sends, as text and parameters (Pool.query goes through Client.query).
    const sent: { text: string; values: unknown[] }[] = [];
    const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
      this: pg.Client,
      ...args: unknown[]
    ) {
      const [config, values] = args;
      if (typeof config === 'string') sent.push({ text: config, values: (values as unknown[]) ?? [] });
      return original.apply(this, args);
    } as never);
    const queries: { index: string; statements: { text: string; values: unknown[] }[] }[] = [];
    try {
      for (const kind of ENTITY_KINDS) {
        for (const field of INDEXED_FIELDS[kind]) {
          const before = sent.length;
          const value = field === 'enabled' || field === 'disabled' ? true : 'x';
          await (store[kind] as Store['servers']).list('t', { where: { [field]: value } as never });
          queries.push({ index: `entities_${kind}_${field}`, statements: sent.slice(before) });
        }
      }
    } finally {
      spy.mockRestore();
    }
    const { rows: created } = await admin.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'entities' AND indexname <> 'entities_pkey'",
      [schema],
    );
    // Every index the migrations create is one of these queries' own, and the other way round.
    expect(new Set(created.map((r) => r.indexname))).toEqual(new Set(queries.map((q) => q.index)));
    const client = await admin.connect();
    try {
      // An empty table is cheapest to scan whole; with scans off the planner shows whether the
      // statement's shape matches the partial expression index at all.
      await client.query('SET enable_seqscan = off');
      for (const { index, statements } of queries) {
        const lists = statements.filter((s) => /\bentities\b/.test(s.text) && /^\s*SELECT/i.test(s.text));
        expect(lists, index).toHaveLength(1);
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN ${lists[0]!.text}`,
          lists[0]!.values,
        );
        expect(rows.map((r) => r['QUERY PLAN']).join('\n'), index).toMatch(
          new RegExp(`Index (Only )?Scan (Backward )?(using|on) "?${index}"?\\s`),
        );
      }
    } finally {
      client.release();
    }
  });

  it('close — leaves a caller’s pool open; later calls fail', async () => {
    const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
    try {
      const store = await createPostgresStore({ pool, schema });
      await store.close();
      expect((await pool.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
      await expect(store.servers.list('t')).rejects.toBeInstanceOf(StoreError);
      await expect(store.leases.get('x')).rejects.toBeInstanceOf(StoreError);
    } finally {
      await pool.end();
    }
  });

  it('createPostgresStore — bad options are a ValidationError naming the field', async () => {
    await expect(createPostgresStore({ schema: 'Robert"; DROP' })).rejects.toBeInstanceOf(ValidationError);
    await expect(createPostgresStore({ schema: 'Robert"; DROP' })).rejects.toThrow(/schema/);
    await expect(
      createPostgresStore({ pool: new pg.Pool({ max: 1 }), connectionString: POSTGRES_URL }),
    ).rejects.toThrow(/connectionString/);
  });

  it('createPostgresStore — an unreachable server is a StoreError', async () => {
    await expect(
      createPostgresStore({ connectionString: 'postgres://postgres@127.0.0.1:1/none', schema }),
    ).rejects.toBeInstanceOf(StoreError);
  });

  it('transaction — reads made at once through a transaction reach its connection one at a time, each with its own answer', async () => {
    const store = await open();
    for (let i = 0; i < 5; i++) {
      await store.servers.create({ ...sampleInput('servers', 't'), id: `s${i}`, name: `s${i}` } as never);
    }
    // Every query of every pg client, counted while it runs: never two at once on one client.
    let worst = 0;
    const running = new Map<unknown, number>();
    const query = pg.Client.prototype.query;
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
      this: pg.Client,
      ...args
    ) {
      const now = (running.get(this) ?? 0) + 1;
      running.set(this, now);
      worst = Math.max(worst, now);
      const result = (query as (...a: unknown[]) => unknown).apply(this, args);
      const done = () => running.set(this, (running.get(this) ?? 1) - 1);
      if (result instanceof Promise) result.then(done, done);
      else done();
      return result as never;
    });
    try {
      const got = await store.transaction((tx) =>
        Promise.all([
          ...Array.from({ length: 5 }, (_, i) => tx.servers.get('t', `s${i}`)),
          tx.servers.listAll('t'),
          tx.projects.listAll('t'),
          tx.audit.append({ tenantId: 't', actor, action: 'a', decision: 'allow', result: 'success' }),
        ]),
      );
      expect(got.slice(0, 5).map((s) => (s as { id: string }).id)).toEqual(['s0', 's1', 's2', 's3', 's4']);
      expect((got[5] as unknown[]).length).toBe(5);
    } finally {
      spy.mockRestore();
    }
    expect(worst).toBe(1);
  });
});
