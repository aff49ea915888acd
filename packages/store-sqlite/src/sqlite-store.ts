import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type AuditQuery,
  assertNoLinksSync,
  type BackendSession,
  type Clock,
  createStore,
  ENTITY_KINDS,
  type EntityKind,
  type EntityRow,
  type Lease,
  LeaseNotHeldError,
  type Leases,
  Mutex,
  type Store,
  type StoreBackend,
  type StoredAuditRow,
  StoreError,
  systemClock,
  validate,
} from '@fleetward/core';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { MIGRATIONS, type Migration, RECORD_ACTION, RECORD_ACTOR, RECORD_AT } from './migrations.js';

export const SqliteStoreOptionsSchema = z.strictObject({
  /** Database file, or `':memory:'`. Parent folders are created. */
  path: z.string().min(1),
  /**
   * `full` fsyncs every commit (survives power loss); `normal` survives a process crash only.
   * @default 'full'
   */
  synchronous: z.enum(['full', 'normal']).default('full'),
  /** How long to wait for another process's write lock. @default 5000 */
  busyTimeoutMs: z.number().int().min(0).max(600_000).default(5000),
  clock: z.custom<Clock>((v) => typeof (v as Clock | undefined)?.now === 'function').optional(),
});
export type SqliteStoreOptions = z.input<typeof SqliteStoreOptionsSchema>;

type Db = Database.Database;

function migrate(db: Db, migrations: readonly Migration[]) {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
  );
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
      (r) => r.version,
    ),
  );
  const newest = Math.max(0, ...applied);
  const known = Math.max(0, ...migrations.map((m) => m.version));
  if (newest > known) {
    throw new StoreError(
      `database schema is version ${newest}, newer than this release knows (${known}); upgrade Fleetward`,
    );
  }
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      m.backfill?.(db);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
    }).immediate();
  }
}

interface RawRow {
  kind: EntityKind;
  tenant_id: string;
  id: string;
  version: number;
  data: string;
}

const toRow = (r: RawRow): EntityRow => ({
  kind: r.kind,
  tenantId: r.tenant_id,
  id: r.id,
  version: r.version,
  data: JSON.parse(r.data),
});

const FIELD = /^[A-Za-z][A-Za-z0-9]*$/;

interface RawAuditRow {
  tenant_id: string;
  seq: number;
  id: string;
  at: string;
  action: string;
  actor_id: string;
  hash: string;
  record: string;
}

const AUDIT_ROW = 'tenant_id, seq, id, at, action, actor_id, hash, record';

/** Lease calls share the connection's mutex so that they never land inside an open transaction. */
class SqliteLeases implements Leases {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #mutex: Mutex;
  constructor(db: Db, clock: Clock, mutex: Mutex) {
    this.#db = db;
    this.#clock = clock;
    this.#mutex = mutex;
  }

  acquire(name: string, holder: string, ttlMs: number): Promise<Lease | undefined> {
    return this.#mutex.run(async () => this.#acquireNow(name, holder, ttlMs));
  }

  #acquireNow(name: string, holder: string, ttlMs: number): Lease | undefined {
    const db = this.#db;
    return db
      .transaction((): Lease | undefined => {
        const now = this.#clock.now().getTime();
        const current = db.prepare('SELECT holder, token, expires_at FROM leases WHERE name = ?').get(name) as
          | { holder: string; token: number; expires_at: number }
          | undefined;
        const live = current && current.expires_at > now;
        if (live && current.holder !== holder) return undefined;
        let token: number;
        if (live) token = current.token;
        else {
          token = (
            db.prepare('UPDATE lease_tokens SET last = last + 1 WHERE id = 1 RETURNING last').get() as {
              last: number;
            }
          ).last;
        }
        const expiresAt = now + ttlMs;
        db.prepare(
          'INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at',
        ).run(name, holder, token, expiresAt);
        return { name, holder, token, expiresAt: new Date(expiresAt) };
      })
      .immediate();
  }

  renew(lease: Lease, ttlMs: number): Promise<Lease> {
    return this.#mutex.run(async () => this.#renewNow(lease, ttlMs));
  }

  #renewNow(lease: Lease, ttlMs: number): Lease {
    const now = this.#clock.now().getTime();
    const expiresAt = now + ttlMs;
    const changed = this.#db
      .prepare(
        'UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?',
      )
      .run(expiresAt, lease.name, lease.holder, lease.token, now).changes;
    if (!changed) {
      throw new LeaseNotHeldError(
        `lease ${JSON.stringify(lease.name)} is no longer held by ${JSON.stringify(lease.holder)}`,
      );
    }
    return { ...lease, expiresAt: new Date(expiresAt) };
  }

  release(lease: Lease): Promise<boolean> {
    return this.#mutex.run(async () => this.#releaseNow(lease));
  }

  #releaseNow(lease: Lease): boolean {
    const now = this.#clock.now().getTime();
    return this.#db
      .transaction(() => {
        const row = this.#db
          .prepare('SELECT expires_at FROM leases WHERE name = ? AND holder = ? AND token = ?')
          .get(lease.name, lease.holder, lease.token) as { expires_at: number } | undefined;
        if (!row) return false;
        this.#db.prepare('DELETE FROM leases WHERE name = ?').run(lease.name);
        return row.expires_at > now;
      })
      .immediate();
  }

  get(name: string): Promise<Lease | undefined> {
    return this.#mutex.run(async () => this.#getNow(name));
  }

  #getNow(name: string): Lease | undefined {
    const row = this.#db
      .prepare('SELECT name, holder, token, expires_at FROM leases WHERE name = ? AND expires_at > ?')
      .get(name, this.#clock.now().getTime()) as
      | { name: string; holder: string; token: number; expires_at: number }
      | undefined;
    return (
      row && { name: row.name, holder: row.holder, token: row.token, expiresAt: new Date(row.expires_at) }
    );
  }
}

class SqliteBackend implements StoreBackend {
  readonly #db: Db;
  readonly #mutex = new Mutex();
  readonly #session: BackendSession;
  readonly leases: Leases;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.leases = new SqliteLeases(db, clock, this.#mutex);
    this.#session = this.#makeSession();
  }

  session<T>(fn: (session: BackendSession) => Promise<T>, options: { transactional: boolean }): Promise<T> {
    return this.#mutex.run(async () => {
      if (!options.transactional) return fn(this.#session);
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.#session);
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  async close() {
    await this.#mutex.run(async () => {
      if (this.#db.open) this.#db.close();
    });
  }

  #makeSession(): BackendSession {
    const db = this.#db;
    const get = db.prepare(
      'SELECT kind, tenant_id, id, version, data FROM entities WHERE kind = ? AND tenant_id = ? AND id = ?',
    );
    const insert = db.prepare(
      'INSERT INTO entities (kind, tenant_id, id, version, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    const update = db.prepare(
      'UPDATE entities SET version = ?, data = ? WHERE kind = ? AND tenant_id = ? AND id = ? AND version = ?',
    );
    const del = db.prepare('DELETE FROM entities WHERE kind = ? AND tenant_id = ? AND id = ?');
    const delVersion = db.prepare(
      'DELETE FROM entities WHERE kind = ? AND tenant_id = ? AND id = ? AND version = ?',
    );
    const head = db.prepare(
      `SELECT ${AUDIT_ROW} FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1`,
    );
    const auditInsert = db.prepare(
      'INSERT INTO audit_log (tenant_id, seq, id, at, action, actor_id, hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    const getState = db.prepare('SELECT data FROM compliance_states WHERE tenant_id = ? AND server_id = ?');
    const putState = db.prepare(
      'INSERT INTO compliance_states (tenant_id, server_id, has_server, data) VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, server_id) DO UPDATE SET has_server = excluded.has_server, data = excluded.data',
    );
    const deleteState = db.prepare('DELETE FROM compliance_states WHERE tenant_id = ? AND server_id = ?');
    const listStates = db
      .prepare(
        'SELECT data FROM compliance_states WHERE tenant_id = ? AND has_server = 1 ORDER BY server_id LIMIT ?',
      )
      .pluck();
    const listStatesAfter = db
      .prepare(
        'SELECT data FROM compliance_states WHERE tenant_id = ? AND has_server = 1 AND server_id > ? ORDER BY server_id LIMIT ?',
      )
      .pluck();
    // The feed's position: one writer at a time (SQLite's write lock), so positions taken as the
    // tenant's highest plus one commit in order, and a reader can ask from the highest it saw.
    const recordChange = db.prepare(
      `INSERT INTO compliance_changes (tenant_id, server_id, revision)
       VALUES (?, ?, (SELECT coalesce(max(revision), 0) + 1 FROM compliance_changes WHERE tenant_id = ?))
       ON CONFLICT (tenant_id, server_id) DO UPDATE SET revision = excluded.revision`,
    );
    const changesCursor = db
      .prepare('SELECT coalesce(max(revision), 0) FROM compliance_changes WHERE tenant_id = ?')
      .pluck();
    const changedIds = db
      .prepare('SELECT server_id FROM compliance_changes WHERE tenant_id = ? AND revision > ?')
      .pluck();
    const getStates = db
      .prepare(
        'SELECT data FROM compliance_states WHERE tenant_id = ? AND server_id IN (SELECT value FROM json_each(?))',
      )
      .pluck();
    const listCache = new Map<string, Database.Statement>();
    const indexes = new Set(
      (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entities'").all() as {
          name: string;
        }[]
      ).map((r) => r.name),
    );

    const tenantIds = db.prepare("SELECT tenant_id FROM entities WHERE kind = 'tenants' ORDER BY tenant_id");
    return {
      async listTenantIds() {
        return (tenantIds.all() as { tenant_id: string }[]).map((r) => r.tenant_id);
      },
      async getRow(kind, tenantId, id) {
        const r = get.get(kind, tenantId, id) as RawRow | undefined;
        return r && toRow(r);
      },
      async listRows(kind, tenantId, { where, after, limit }) {
        const fields = Object.keys(where).sort();
        for (const f of fields)
          if (!FIELD.test(f)) throw new StoreError(`invalid field name ${JSON.stringify(f)}`);
        const sqlKey = `${kind}|${fields.join(',')}|${after === undefined ? '' : 'after'}`;
        let stmt = listCache.get(sqlKey);
        if (!stmt) {
          // The kind is inlined (from the fixed list of kinds, never caller text) because SQLite uses a
          // partial index (`WHERE kind = 'servers'`) only when the query's own condition proves it.
          if (!ENTITY_KINDS.includes(kind))
            throw new StoreError(`unknown entity kind ${JSON.stringify(kind)}`);
          // Without statistics SQLite prefers the primary key (it yields id order) and scans the whole
          // tenant; the field's partial index yields id order too, for one equality.
          const index = fields.length ? `entities_${kind}_${fields[0]}` : undefined;
          const hint = index && indexes.has(index) ? ` INDEXED BY ${index}` : '';
          const conditions = [
            `kind = '${kind}'`,
            'tenant_id = ?',
            ...fields.map((f) => `json_extract(data, '$.${f}') = ?`),
          ];
          if (after !== undefined) conditions.push('id > ?');
          stmt = db.prepare(
            `SELECT kind, tenant_id, id, version, data FROM entities${hint} WHERE ${conditions.join(' AND ')} ORDER BY id LIMIT ?`,
          );
          listCache.set(sqlKey, stmt);
        }
        const values = fields.map((f) => {
          const v = where[f]!;
          return typeof v === 'boolean' ? (v ? 1 : 0) : v;
        });
        const params = [tenantId, ...values, ...(after === undefined ? [] : [after]), limit];
        return (stmt.all(...params) as RawRow[]).map(toRow);
      },
      async insertRow(row) {
        return (
          insert.run(row.kind, row.tenantId, row.id, row.version, JSON.stringify(row.data)).changes === 1
        );
      },
      async updateRow(row, expectedVersion) {
        return (
          update.run(row.version, JSON.stringify(row.data), row.kind, row.tenantId, row.id, expectedVersion)
            .changes === 1
        );
      },
      async deleteRow(kind, tenantId, id, expectedVersion) {
        const result =
          expectedVersion === undefined
            ? del.run(kind, tenantId, id)
            : delVersion.run(kind, tenantId, id, expectedVersion);
        return result.changes === 1;
      },
      async auditHead(tenantId) {
        const r = head.get(tenantId) as RawAuditRow | undefined;
        return r && toAuditRow(r);
      },
      async auditInsert(record) {
        return (
          auditInsert.run(
            record.tenantId,
            record.seq,
            record.id,
            record.at,
            record.action,
            record.actor.principalId,
            record.hash,
            JSON.stringify(record),
          ).changes === 1
        );
      },
      async getComplianceState(tenantId, serverId) {
        const r = getState.get(tenantId, serverId) as { data: string } | undefined;
        return r && JSON.parse(r.data);
      },
      async putComplianceState(tenantId, state) {
        putState.run(tenantId, state.serverId, state.server ? 1 : 0, JSON.stringify(state));
        recordChange.run(tenantId, state.serverId, tenantId);
      },
      async deleteComplianceState(tenantId, serverId) {
        deleteState.run(tenantId, serverId);
        recordChange.run(tenantId, serverId, tenantId);
      },
      async getComplianceStates(tenantId, serverIds) {
        return (getStates.all(tenantId, JSON.stringify(serverIds)) as string[]).map((text) =>
          JSON.parse(text),
        );
      },
      async complianceStateChanges(tenantId, since) {
        // The cursor first: a write committed between the two reads comes now and again next time.
        const cursor = String(changesCursor.get(tenantId));
        if (since === undefined) return { cursor, serverIds: [] };
        // A cursor this store did not give reads the feed from its start.
        const from = /^\d{1,15}$/.test(since) ? Number(since) : 0;
        return { cursor, serverIds: changedIds.all(tenantId, from) as string[] };
      },
      async listComplianceStates(tenantId, { after, limit }) {
        const texts = (
          after === undefined ? listStates.all(tenantId, limit) : listStatesAfter.all(tenantId, after, limit)
        ) as string[];
        return texts.map((text) => JSON.parse(text));
      },
      async auditList(tenantId, query) {
        const { sql, params } = auditListStatement(tenantId, query);
        return (db.prepare(sql).all(...params) as RawAuditRow[]).map(toAuditRow);
      },
    };
  }
}

/**
 * Opens (creating and migrating as needed) a SQLite store: the embedded default. WAL mode, so
 * readers never block the writer and a killed process leaves a consistent database behind.
 * Several processes on one machine may share the file; leases and audit appends stay atomic.
 */
/**
 * The statement that answers an audit query. Filters read the hashed record itself (through the
 * expression indexes of migration 5), never the columns beside it: a column edited underneath
 * would otherwise hide a record from every query. @internal exported for the index test
 */
export function auditListStatement(
  tenantId: string,
  query: AuditQuery & { limit: number },
): { sql: string; params: (string | number)[] } {
  const conditions = ['tenant_id = ?'];
  const params: (string | number)[] = [tenantId];
  if (query.afterSeq !== undefined) {
    conditions.push('seq > ?');
    params.push(query.afterSeq);
  }
  if (query.action !== undefined) {
    conditions.push(`${RECORD_ACTION} = ?`);
    params.push(query.action);
  }
  if (query.actorId !== undefined) {
    conditions.push(`${RECORD_ACTOR} = ?`);
    params.push(query.actorId);
  }
  if (query.since !== undefined) {
    conditions.push(`${RECORD_AT} >= ?`);
    params.push(query.since.toISOString());
  }
  if (query.until !== undefined) {
    conditions.push(`${RECORD_AT} < ?`);
    params.push(query.until.toISOString());
  }
  params.push(query.limit);
  // Without statistics SQLite walks the primary key (it yields seq order) and reads the whole
  // tenant; the expression index yields seq order too, for one equality.
  const index =
    query.actorId !== undefined
      ? ' INDEXED BY audit_log_record_actor'
      : query.action !== undefined
        ? ' INDEXED BY audit_log_record_action'
        : '';
  return {
    sql: `SELECT ${AUDIT_ROW} FROM audit_log${index} WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT ?`,
    params,
  };
}

/**
 * A stored audit row as it is. A record that is not JSON any more (possible only by tampering: the
 * column checks `json_valid`) is `undefined`, so verification names the row instead of failing.
 */
function toAuditRow(r: RawAuditRow): StoredAuditRow {
  let record: unknown;
  try {
    record = JSON.parse(r.record);
  } catch {
    record = undefined;
  }
  return {
    columns: {
      tenantId: r.tenant_id,
      seq: r.seq,
      id: r.id,
      at: r.at,
      action: r.action,
      actorId: r.actor_id,
      hash: r.hash,
    },
    record,
  };
}

export function createSqliteStore(options: SqliteStoreOptions): Store {
  const opts = validate(SqliteStoreOptionsSchema, options, 'SqliteStoreOptions');
  if (opts.path !== ':memory:') {
    mkdirSync(dirname(opts.path), { recursive: true });
    // SQLite opens the database and its side files following links; a planted one is refused.
    assertNoLinksSync(['', '-wal', '-shm', '-journal'].map((suffix) => `${opts.path}${suffix}`));
  }
  const db = new Database(opts.path, { timeout: opts.busyTimeoutMs });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db, MIGRATIONS);
  } catch (error) {
    db.close();
    throw error instanceof StoreError
      ? error
      : new StoreError(`cannot open SQLite store at ${opts.path}`, { cause: error });
  }
  const clock = opts.clock ?? systemClock;
  return createStore(new SqliteBackend(db, clock), { clock });
}
