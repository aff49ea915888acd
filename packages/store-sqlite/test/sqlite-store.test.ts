import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreError, verifyAuditChain } from '@fleetward/core';
import { createSqliteStore, MIGRATIONS } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

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

describe('createSqliteStore indexes', () => {
  it('list — an equality on an indexed field is answered from that field’s index, not by scanning the tenant', async () => {
    const path = join(dir, 'db.sqlite');
    const store = createSqliteStore({ path });
    for (let i = 0; i < 50; i++) {
      await store.scanResults.create({
        tenantId: 't',
        serverId: `s-${i % 5}`,
        scannedAt: '2026-01-01T00:00:00.000Z',
        status: 'succeeded',
      });
    }
    expect(await store.scanResults.list('t', { where: { serverId: 's-3' } })).toHaveLength(10);
    await store.close();
    // The same statement the store prepares, asked for its plan.
    const db = new Database(path);
    const plan = db
      .prepare(
        "EXPLAIN QUERY PLAN SELECT kind, tenant_id, id, version, data FROM entities INDEXED BY entities_scanResults_serverId WHERE kind = 'scanResults' AND tenant_id = ? AND json_extract(data, '$.serverId') = ? ORDER BY id LIMIT ?",
      )
      .all('t', 's-3', 10) as { detail: string }[];
    expect(plan.map((p) => p.detail).join(' ')).toContain('USING INDEX entities_scanResults_serverId');
    db.close();
  });
});
