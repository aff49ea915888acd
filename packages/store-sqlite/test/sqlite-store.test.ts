import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENTITY_KINDS, INDEXED_FIELDS, type Store, StoreError, verifyAuditChain } from '@fleetward/core';
import { createSqliteStore, MIGRATIONS } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { auditListStatement } from '../src/sqlite-store.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-sqlite-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('createSqliteStore', () => {
  it('audit_log — refuses UPDATE and DELETE even through raw SQL', async () => {
    const path = join(dir, 'db.sqlite');
    const store = createSqliteStore({ path });
    await store.audit.append({
      tenantId: 't',
      actor: { principalId: 'u', kind: 'human' },
      action: 'a',
      decision: 'allow',
      result: 'success',
    });
    await store.close();
    const db = new Database(path);
    expect(() => db.prepare("UPDATE audit_log SET action = 'forged'").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    db.close();
  });

  it('migrations — are recorded once and reopening does not reapply them', async () => {
    const path = join(dir, 'db.sqlite');
    await createSqliteStore({ path }).close();
    await createSqliteStore({ path }).close();
    const db = new Database(path);
    const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as {
      version: number;
    }[];
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('migrations — a database from a newer release is refused, not damaged', async () => {
    const path = join(dir, 'db.sqlite');
    await createSqliteStore({ path }).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01')").run();
    db.close();
    expect(() => createSqliteStore({ path })).toThrow(StoreError);
  });

  it('createSqliteStore — bad options are a ValidationError naming the field', () => {
    expect(() => createSqliteStore({ path: '' })).toThrow(/path/);
  });

  it('crash — a writer killed with SIGKILL leaves a consistent database with every committed write', async () => {
    const path = join(dir, 'crash.sqlite');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'packages/store-sqlite/test/fixtures/writer.ts'), path],
      {
        cwd: root,
        env: { ...process.env, TSX_TSCONFIG_PATH: join(root, 'tsconfig.json') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const committed = await new Promise<number>((resolve, reject) => {
      let last = -1;
      let buffer = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) last = Number(line);
        if (last >= 200) {
          child.kill('SIGKILL');
          resolve(last);
        }
      });
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`writer exited early (${code}): ${stderr}`));
      });
    });
    await new Promise((r) => child.once('close', r));

    const raw = new Database(path);
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    raw.close();
    const store = createSqliteStore({ path });
    const servers = await store.servers.listAll('t');
    const audit = await store.audit.list('t', { limit: 10_000 });
    expect(servers.length).toBeGreaterThanOrEqual(committed + 1);
    expect(audit).toHaveLength(servers.length);
    expect(verifyAuditChain(audit).ok).toBe(true);
    await store.close();
  });
});

interface RanStatement {
  sql: string;
  params: unknown[];
}

/**
 * Records every statement the store executes with `all` or `get` (its reads), as the SQL text it
 * prepared and the parameters it bound, by wrapping better-sqlite3's Statement methods: the test
 * explains what the store runs, never a copy of it.
 */
function recordReads(): { ran: RanStatement[]; restore: () => void } {
  const probe = new Database(':memory:');
  const proto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Database.Statement;
  probe.close();
  const ran: RanStatement[] = [];
  const spies = (['all', 'get'] as const).map((method) => {
    const original = proto[method] as (...args: unknown[]) => unknown;
    return vi.spyOn(proto, method).mockImplementation(function (
      this: Database.Statement,
      ...params: unknown[]
    ) {
      ran.push({ sql: this.source, params });
      return original.apply(this, params);
    } as never);
  });
  return {
    ran,
    restore: () => {
      for (const spy of spies) spy.mockRestore();
    },
  };
}

const planOf = (db: Database.Database, statement: RanStatement) =>
  (db.prepare(`EXPLAIN QUERY PLAN ${statement.sql}`).all(...statement.params) as { detail: string }[])
    .map((p) => p.detail)
    .join(' | ');

describe('createSqliteStore indexes', () => {
  it('list — every indexed field’s query, as the store runs it, is answered from that field’s index', async () => {
    const path = join(dir, 'db.sqlite');
    const store = createSqliteStore({ path });
    const reads = recordReads();
    const queries: { index: string; statements: RanStatement[] }[] = [];
    try {
      for (const kind of ENTITY_KINDS) {
        for (const field of INDEXED_FIELDS[kind]) {
          const before = reads.ran.length;
          const value = field === 'enabled' || field === 'disabled' ? true : 'x';
          await (store[kind] as Store['servers']).list('t', { where: { [field]: value } as never });
          queries.push({ index: `entities_${kind}_${field}`, statements: reads.ran.slice(before) });
        }
      }
    } finally {
      reads.restore();
      await store.close();
    }
    const db = new Database(path, { readonly: true });
    try {
      // Every index the migrations create is one of these queries' own, and the other way round.
      const created = (
        db
          .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'entities\\_%' ESCAPE '\\'",
          )
          .all() as {
          name: string;
        }[]
      ).map((r) => r.name);
      expect(new Set(created)).toEqual(new Set(queries.map((q) => q.index)));
      for (const { index, statements } of queries) {
        const lists = statements.filter((s) => /\bFROM entities\b/.test(s.sql));
        expect(lists, index).toHaveLength(1);
        expect(planOf(db, lists[0]!), index).toMatch(new RegExp(`USING (COVERING )?INDEX ${index}\\b`));
      }
    } finally {
      db.close();
    }
  });
});

describe('createSqliteStore audit indexes', () => {
  it('audit.list — a filter by actor or action is answered from an index on the hashed record, not the columns beside it', async () => {
    const path = join(dir, 'audit.sqlite');
    const store = createSqliteStore({ path });
    for (let i = 0; i < 20; i++) {
      await store.audit.append({
        tenantId: 't',
        actor: { principalId: `p-${i % 4}`, kind: 'human' },
        action: i % 2 ? 'patch.scan' : 'audit.read',
        decision: 'allow',
        result: 'success',
      });
    }
    await store.close();
    const db = new Database(path);
    const planOf = (query: Parameters<typeof auditListStatement>[1]) => {
      // The statement the store itself runs for this query.
      const { sql, params } = auditListStatement('t', query);
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
      return plan.map((p) => p.detail).join(' ');
    };
    expect(planOf({ actorId: 'p-1', limit: 10 })).toContain('USING INDEX audit_log_record_actor');
    expect(planOf({ action: 'patch.scan', afterSeq: 3, limit: 10 })).toContain(
      'USING INDEX audit_log_record_action',
    );
    expect(planOf({ actorId: 'p-1', action: 'patch.scan', limit: 10 })).toContain(
      'USING INDEX audit_log_record_actor',
    );
    const { sql, params } = auditListStatement('t', { actorId: 'p-1', limit: 100 });
    expect((db.prepare(sql).all(...params) as { seq: number }[]).map((r) => r.seq)).toEqual([
      2, 6, 10, 14, 18,
    ]);
    db.close();
  });
});
