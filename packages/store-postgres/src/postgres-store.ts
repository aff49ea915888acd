import {
  type BackendSession,
  type Clock,
  type ComplianceState,
  createStore,
  ENTITY_KINDS,
  type EntityKind,
  type EntityRow,
  type Lease,
  LeaseNotHeldError,
  type Leases,
  type Store,
  type StoreBackend,
  type StoredAuditRow,
  StoreError,
  systemClock,
  validate,
} from '@fleetward/core';
import pg from 'pg';
import { z } from 'zod';
import { MIGRATIONS, type Migration, RECORD_ACTION, RECORD_ACTOR, RECORD_AT } from './migrations.js';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export const PostgresStoreOptionsSchema = z
  .strictObject({
    /**
     * A pool to use (the caller's: the store never ends it). Give this or `connectionString`;
     * with neither, a pool is made from the `PG*` environment variables.
     */
    pool: z
      .custom<pg.Pool>(
        (v) =>
          typeof (v as pg.Pool | undefined)?.connect === 'function' &&
          typeof (v as pg.Pool | undefined)?.query === 'function',
        { message: 'must be a pg.Pool' },
      )
      .optional(),
    /** `postgres://user@host:port/database`; the store makes (and on `close()` ends) its pool. */
    connectionString: z.string().min(1).optional(),
    /**
     * The schema holding Fleetward's tables, created when missing. Lower-case letters, digits and
     * `_`, at most 63 characters. @default 'fleetward'
     */
    schema: z
      .string()
      .regex(IDENTIFIER, 'must be a lower-case SQL identifier (a-z, 0-9, _; at most 63 characters)')
      .default('fleetward'),
    clock: z.custom<Clock>((v) => typeof (v as Clock | undefined)?.now === 'function').optional(),
  })
  .refine((o) => !(o.pool && o.connectionString), {
    message: 'give either pool or connectionString, not both',
    path: ['connectionString'],
  });
export type PostgresStoreOptions = z.input<typeof PostgresStoreOptionsSchema>;

/** What both a pool and a checked-out client offer. */
type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * A transaction's connection, one query at a time: callers may read through a transaction with
 * `Promise.all`, and a pg client must not be given a query while it runs another (pg 8 queues it
 * with a deprecation warning, pg 9 refuses). Each query starts once the previous one settled.
 */
function oneAtATime(client: Queryable): Queryable {
  let tail: Promise<unknown> = Promise.resolve();
  const query = (...args: unknown[]) => {
    const run = tail.then(() => (client.query as (...a: unknown[]) => Promise<unknown>)(...args));
    tail = run.catch(() => undefined);
    return run;
  };
  return { query: query as Queryable['query'] };
}

interface RawAuditRow {
  tenant_id: string;
  seq_text: string;
  id: string;
  at_text: string | null;
  action: string;
  actor_id: string;
  hash: string;
  record: unknown;
}

// `at` to the microsecond in UTC, so that an edit below the millisecond still shows. The aliases
// differ from the column names: ORDER BY would take an alias `seq` (text) before the column.
const AUDIT_ROW = `tenant_id, seq::text AS seq_text, id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at_text, action, actor_id, hash, record`;

/** A stored audit row as it is: verification compares its columns with the record. */
function toAuditRow(r: RawAuditRow): StoredAuditRow {
  // The record's `at` is a JavaScript ISO string (milliseconds); write the column the same way
  // when it has no more precision than that.
  const t = r.at_text;
  const at = t === null ? String(t) : t.endsWith('000') ? `${t.slice(0, -3)}Z` : `${t}Z`;
  return {
    columns: {
      tenantId: r.tenant_id,
      seq: Number(r.seq_text),
      id: r.id,
      at,
      action: r.action,
      actorId: r.actor_id,
      hash: r.hash,
    },
    record: r.record,
  };
}

const quote = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`;

async function migrate(pool: pg.Pool, schema: string, migrations: readonly Migration[]) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // One lock per schema: a second process waits here, then finds the migrations applied.
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `fleetward.migrate:${schema}`,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quote(schema)}`);
    await client.query(`SET LOCAL search_path TO ${quote(schema)}`);
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)',
    );
    const applied = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    const newest = Math.max(0, ...applied);
    const known = Math.max(0, ...migrations.map((m) => m.version));
    if (newest > known) {
      throw new StoreError(
        `database schema ${schema} is version ${newest}, newer than this release knows (${known}); upgrade Fleetward`,
      );
    }
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await m.backfill?.(client);
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())', [
        m.version,
        m.name,
      ]);
    }
    await client.query('COMMIT');
    client.release();
  } catch (error) {
    await client.query('ROLLBACK').then(
      () => client.release(),
      (e: unknown) => client.release(e instanceof Error ? e : true),
    );
    throw error;
  }
}

interface RawRow {
  kind: EntityKind;
  tenant_id: string;
  id: string;
  version: number;
  data: Record<string, unknown>;
}

const toRow = (r: RawRow): EntityRow => ({
  kind: r.kind,
  tenantId: r.tenant_id,
  id: r.id,
  version: r.version,
  data: r.data,
});

const FIELD = /^[A-Za-z][A-Za-z0-9]*$/;

interface LeaseRow {
  name: string;
  holder: string;
  token: string;
  expires_at: string;
}
const toLease = (r: LeaseRow): Lease => ({
  name: r.name,
  holder: r.holder,
  token: Number(r.token),
  expiresAt: new Date(Number(r.expires_at)),
});

/**
 * Every lease operation is one statement, atomic across processes. Times come from the store's
 * clock (milliseconds, passed as parameters), never from the database's, so tests can move time.
 */
class PostgresLeases implements Leases {
  readonly #pool: pg.Pool;
  readonly #clock: Clock;
  readonly #t: string;
  readonly #check: () => void;
  constructor(pool: pg.Pool, clock: Clock, schema: string, check: () => void) {
    this.#pool = pool;
    this.#clock = clock;
    this.#t = `${quote(schema)}.leases`;
    this.#check = check;
    this.#tokens = `${quote(schema)}.lease_tokens`;
  }
  readonly #tokens: string;

  async acquire(name: string, holder: string, ttlMs: number): Promise<Lease | undefined> {
    this.#check();
    const now = this.#clock.now().getTime();
    // A live lease of the same holder is extended and keeps its token; a free or expired one is
    // taken with a fresh token. Another holder's live lease is left alone (no row returned).
    const { rows } = await this.#pool.query<LeaseRow>(
      `INSERT INTO ${this.#t} AS l (name, holder, token, expires_at)
       VALUES ($1, $2, nextval('${this.#tokens}'), $3)
       ON CONFLICT (name) DO UPDATE SET
         holder = excluded.holder,
         token = CASE WHEN l.holder = excluded.holder AND l.expires_at > $4 THEN l.token ELSE excluded.token END,
         expires_at = excluded.expires_at
       WHERE l.expires_at <= $4 OR l.holder = excluded.holder
       RETURNING name, holder, token, expires_at`,
      [name, holder, now + ttlMs, now],
    );
    return rows[0] && toLease(rows[0]);
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease> {
    this.#check();
    const now = this.#clock.now().getTime();
    const expiresAt = now + ttlMs;
    const { rowCount } = await this.#pool.query(
      `UPDATE ${this.#t} SET expires_at = $1 WHERE name = $2 AND holder = $3 AND token = $4 AND expires_at > $5`,
      [expiresAt, lease.name, lease.holder, lease.token, now],
    );
    if (!rowCount) {
      throw new LeaseNotHeldError(
        `lease ${JSON.stringify(lease.name)} is no longer held by ${JSON.stringify(lease.holder)}`,
      );
    }
    return { ...lease, expiresAt: new Date(expiresAt) };
  }

  async release(lease: Lease): Promise<boolean> {
    this.#check();
    const now = this.#clock.now().getTime();
    const { rows } = await this.#pool.query<{ expires_at: string }>(
      `DELETE FROM ${this.#t} WHERE name = $1 AND holder = $2 AND token = $3 RETURNING expires_at`,
      [lease.name, lease.holder, lease.token],
    );
    return rows[0] !== undefined && Number(rows[0].expires_at) > now;
  }

  async get(name: string): Promise<Lease | undefined> {
    this.#check();
    const { rows } = await this.#pool.query<LeaseRow>(
      `SELECT name, holder, token, expires_at FROM ${this.#t} WHERE name = $1 AND expires_at > $2`,
      [name, this.#clock.now().getTime()],
    );
    return rows[0] && toLease(rows[0]);
  }
}

class PostgresBackend implements StoreBackend {
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #schema: string;
  readonly #entities: string;
  readonly #states: string;
  readonly #stateChanges: string;
  readonly #audit: string;
  readonly leases: Leases;
  #closed = false;

  constructor(pool: pg.Pool, ownsPool: boolean, schema: string, clock: Clock) {
    this.#pool = pool;
    this.#ownsPool = ownsPool;
    this.#schema = schema;
    this.#entities = `${quote(schema)}.entities`;
    this.#states = `${quote(schema)}.compliance_states`;
    this.#stateChanges = `${quote(schema)}.compliance_changes`;
    this.#audit = `${quote(schema)}.audit_log`;
    this.leases = new PostgresLeases(pool, clock, schema, () => this.#check());
  }

  #check() {
    if (this.#closed) throw new StoreError('the store is closed');
  }

  async session<T>(
    fn: (session: BackendSession) => Promise<T>,
    options: { transactional: boolean },
  ): Promise<T> {
    this.#check();
    if (!options.transactional) return fn(this.#makeSession(this.#pool, false));
    const client = await this.#pool.connect();
    let result: T;
    try {
      await client.query('BEGIN');
      result = await fn(this.#makeSession(oneAtATime(client), true));
      await client.query('COMMIT');
    } catch (error) {
      // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
      await client.query('ROLLBACK').then(
        () => client.release(),
        (e: unknown) => client.release(e instanceof Error ? e : true),
      );
      throw error;
    }
    client.release();
    return result;
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsPool) await this.#pool.end();
  }

  #makeSession(db: Queryable, transactional: boolean): BackendSession {
    const entities = this.#entities;
    const states = this.#states;
    const changes = this.#stateChanges;
    const audit = this.#audit;
    // The feed's position of each write is its transaction id: with concurrent writers, ids commit
    // out of order, so a reader asks again from the oldest transaction still open when it read
    // (its snapshot's xmin), never from the largest id it saw. Everything below xmin has ended.
    const recordChange = (tenantId: string, serverId: string) =>
      db.query(
        `INSERT INTO ${changes} (tenant_id, server_id, xid) VALUES ($1, $2, pg_current_xact_id())
         ON CONFLICT (tenant_id, server_id) DO UPDATE SET xid = excluded.xid`,
        [tenantId, serverId],
      );
    const auditLockKey = `fleetward.audit:${this.#schema}`;
    return {
      async listTenantIds() {
        const { rows } = await db.query<{ tenant_id: string }>(
          `SELECT tenant_id FROM ${entities} WHERE kind = 'tenants' ORDER BY tenant_id`,
        );
        return rows.map((r) => r.tenant_id);
      },
      async getRow(kind, tenantId, id) {
        const { rows } = await db.query<RawRow>(
          `SELECT kind, tenant_id, id, version, data FROM ${entities} WHERE kind = $1 AND tenant_id = $2 AND id = $3`,
          [kind, tenantId, id],
        );
        return rows[0] && toRow(rows[0]);
      },
      async listRows(kind, tenantId, { where, after, limit }) {
        // The kind and field names are inlined (checked against fixed lists, never caller text as
        // is) so that PostgreSQL matches the partial expression indexes; values are parameters.
        if (!ENTITY_KINDS.includes(kind)) throw new StoreError(`unknown entity kind ${JSON.stringify(kind)}`);
        const fields = Object.keys(where).sort();
        for (const f of fields)
          if (!FIELD.test(f)) throw new StoreError(`invalid field name ${JSON.stringify(f)}`);
        const params: unknown[] = [tenantId];
        const conditions = [`kind = '${kind}'`, 'tenant_id = $1'];
        for (const f of fields) {
          // `->>` yields the JSON text: strings as is, numbers as written, booleans 'true'/'false'.
          params.push(String(where[f]!));
          conditions.push(`(data->>'${f}') = $${params.length}`);
        }
        if (after !== undefined) {
          params.push(after);
          conditions.push(`id > $${params.length}`);
        }
        params.push(limit);
        const { rows } = await db.query<RawRow>(
          `SELECT kind, tenant_id, id, version, data FROM ${entities} WHERE ${conditions.join(' AND ')} ORDER BY id LIMIT $${params.length}`,
          params,
        );
        return rows.map(toRow);
      },
      async insertRow(row) {
        const { rowCount } = await db.query(
          `INSERT INTO ${entities} (kind, tenant_id, id, version, data) VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING`,
          [row.kind, row.tenantId, row.id, row.version, JSON.stringify(row.data)],
        );
        return rowCount === 1;
      },
      async updateRow(row, expectedVersion) {
        const { rowCount } = await db.query(
          `UPDATE ${entities} SET version = $1, data = $2::jsonb WHERE kind = $3 AND tenant_id = $4 AND id = $5 AND version = $6`,
          [row.version, JSON.stringify(row.data), row.kind, row.tenantId, row.id, expectedVersion],
        );
        return rowCount === 1;
      },
      async deleteRow(kind, tenantId, id, expectedVersion) {
        const { rowCount } =
          expectedVersion === undefined
            ? await db.query(`DELETE FROM ${entities} WHERE kind = $1 AND tenant_id = $2 AND id = $3`, [
                kind,
                tenantId,
                id,
              ])
            : await db.query(
                `DELETE FROM ${entities} WHERE kind = $1 AND tenant_id = $2 AND id = $3 AND version = $4`,
                [kind, tenantId, id, expectedVersion],
              );
        return rowCount === 1;
      },
      async auditHead(tenantId) {
        // In a transaction (every append runs in one) the tenant's chain is locked first, across
        // processes, until commit: the head read next is the one the new record links to.
        if (transactional) {
          await db.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [
            auditLockKey,
            tenantId,
          ]);
        }
        const { rows } = await db.query<RawAuditRow>(
          `SELECT ${AUDIT_ROW} FROM ${audit} WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`,
          [tenantId],
        );
        return rows[0] && toAuditRow(rows[0]);
      },
      async auditInsert(record) {
        const { rowCount } = await db.query(
          `INSERT INTO ${audit} (tenant_id, seq, id, at, action, actor_id, hash, record)
           VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8::jsonb) ON CONFLICT (tenant_id, seq) DO NOTHING`,
          [
            record.tenantId,
            record.seq,
            record.id,
            record.at,
            record.action,
            record.actor.principalId,
            record.hash,
            JSON.stringify(record),
          ],
        );
        return rowCount === 1;
      },
      async getComplianceState(tenantId, serverId) {
        const { rows } = await db.query<{ data: ComplianceState }>(
          `SELECT data FROM ${states} WHERE tenant_id = $1 AND server_id = $2`,
          [tenantId, serverId],
        );
        return rows[0]?.data;
      },
      async putComplianceState(tenantId, state) {
        await db.query(
          `INSERT INTO ${states} (tenant_id, server_id, has_server, data) VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id, server_id) DO UPDATE SET has_server = excluded.has_server, data = excluded.data`,
          [tenantId, state.serverId, state.server !== undefined, JSON.stringify(state)],
        );
        await recordChange(tenantId, state.serverId);
      },
      async deleteComplianceState(tenantId, serverId) {
        await db.query(`DELETE FROM ${states} WHERE tenant_id = $1 AND server_id = $2`, [tenantId, serverId]);
        await recordChange(tenantId, serverId);
      },
      async getComplianceStates(tenantId, serverIds) {
        const { rows } = await db.query<{ data: ComplianceState }>(
          `SELECT data FROM ${states} WHERE tenant_id = $1 AND server_id = ANY($2::text[])`,
          [tenantId, serverIds],
        );
        return rows.map((r) => r.data);
      },
      async complianceStateChanges(tenantId, since) {
        // One statement, so the cursor and the ids come from the same snapshot. A cursor that is
        // not a transaction id (not one this store gave) reads the feed from its start.
        const from = since !== undefined && /^\d{1,20}$/.test(since) ? since : '0';
        const { rows } = await db.query<{ cursor: string; ids: string[] | null }>(
          since === undefined
            ? 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS cursor, NULL AS ids'
            : `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS cursor,
                 ARRAY(SELECT server_id FROM ${changes} WHERE tenant_id = $1 AND xid >= $2::xid8) AS ids`,
          since === undefined ? [] : [tenantId, from],
        );
        return { cursor: rows[0]!.cursor, serverIds: rows[0]!.ids ?? [] };
      },
      async listComplianceStates(tenantId, { after, limit }) {
        const { rows } = await db.query<{ data: ComplianceState }>(
          after === undefined
            ? `SELECT data FROM ${states} WHERE tenant_id = $1 AND has_server ORDER BY server_id LIMIT $2`
            : `SELECT data FROM ${states} WHERE tenant_id = $1 AND has_server AND server_id > $3 ORDER BY server_id LIMIT $2`,
          after === undefined ? [tenantId, limit] : [tenantId, limit, after],
        );
        return rows.map((r) => r.data);
      },
      async auditList(tenantId, query) {
        const conditions = ['tenant_id = $1'];
        const params: unknown[] = [tenantId];
        const add = (sql: string, value: unknown) => {
          params.push(value);
          conditions.push(sql.replace('?', `$${params.length}`));
        };
        // Filters read the hashed record itself (through expression indexes), never the columns
        // beside it: a column edited underneath would otherwise hide a record from every query.
        if (query.afterSeq !== undefined) add('seq > ?', query.afterSeq);
        if (query.action !== undefined) add(`${RECORD_ACTION} = ?`, query.action);
        if (query.actorId !== undefined) add(`${RECORD_ACTOR} = ?`, query.actorId);
        if (query.since !== undefined) add(`${RECORD_AT} >= ?`, query.since.toISOString());
        if (query.until !== undefined) add(`${RECORD_AT} < ?`, query.until.toISOString());
        params.push(query.limit);
        const { rows } = await db.query<RawAuditRow>(
          `SELECT ${AUDIT_ROW} FROM ${audit} WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT $${params.length}`,
          params,
        );
        return rows.map(toAuditRow);
      },
    };
  }
}

/**
 * Opens (creating and migrating as needed) a PostgreSQL store. Several processes or machines may
 * share the database: migrations run under an advisory lock, audit appends serialise per tenant,
 * leases are single-statement upserts. Resolves once the schema is ready.
 */
export async function createPostgresStore(options: PostgresStoreOptions = {}): Promise<Store> {
  const opts = validate(PostgresStoreOptionsSchema, options, 'PostgresStoreOptions');
  const ownsPool = !opts.pool;
  const pool =
    opts.pool ?? new pg.Pool(opts.connectionString ? { connectionString: opts.connectionString } : {});
  // An idle client of our own pool that loses its connection is dropped by the pool and replaced on
  // the next query; without a listener its 'error' event would end the process.
  if (ownsPool) pool.on('error', () => {});
  try {
    await migrate(pool, opts.schema, MIGRATIONS);
  } catch (error) {
    if (ownsPool) await pool.end().catch(() => {});
    throw error instanceof StoreError
      ? error
      : new StoreError(`cannot open PostgreSQL store (schema ${opts.schema})`, { cause: error });
  }
  const clock = opts.clock ?? systemClock;
  return createStore(new PostgresBackend(pool, ownsPool, opts.schema, clock), { clock });
}
