import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuditIntegrityError,
  type AuditRecord,
  auditColumnsOf,
  auditRecordHash,
  createFleet,
  createLocalAdapter,
  type Fleet,
  generateAuditSigningKey,
  verifyStoredAuditRows,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tamperSqliteAudit } from './support/tamper.js';

// The attacks of issue 11 on a real SQLite file, through the SDK as an embedder uses it.
let dir: string;
let fleet: Fleet;
const file = () => join(dir, 'fleetward.db');
const tamper = tamperSqliteAudit(file);
const key = generateAuditSigningKey();
const T = 'acme';

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-audit-attacks-'));
  fleet = createFleet({
    store: createSqliteStore({ path: file() }),
    adapters: [createLocalAdapter()],
    auditSigningKey: key.privateKeyPem,
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
});
afterEach(async () => {
  await fleet.close();
  rmSync(dir, { recursive: true, force: true });
});

const alice = () => fleet.as({ tenantId: T, principalId: 'alice' });

describe('audit log attacked underneath the store (SQLite)', () => {
  it('audit.list — editing actor_id and action of a principal’s rows no longer hides them, and verify names every row', async () => {
    await alice().servers.add({ id: 'web-1', name: 'web-1', accountId: 'local', provider: 'local' });
    await alice().servers.list();
    const before = await alice().audit.list({ actorId: 'alice' });
    expect(before.length).toBeGreaterThan(1);
    for (const r of before) {
      await tamper.setColumn(T, r.seq, 'actorId', 'ghost');
      await tamper.setColumn(T, r.seq, 'action', 'noise.read');
    }
    const after = await alice().audit.list({ actorId: 'alice' });
    expect(after.map((r) => r.seq).slice(0, before.length)).toEqual(before.map((r) => r.seq));
    expect(await alice().audit.list({ actorId: 'ghost' })).toEqual([]);
    expect(await alice().audit.list({ action: 'noise.read' })).toEqual([]);

    const result = await alice().verifyAuditLog();
    expect(result.ok).toBe(false);
    for (const r of before) {
      for (const column of ['actorId', 'action']) {
        expect(result.problems).toContainEqual(
          expect.objectContaining({ problem: 'column-mismatch', seq: r.seq, id: r.id, column }),
        );
      }
    }
  });

  it('audited calls — keep working after a forged head row; verify runs and names the duplicate', async () => {
    await alice().servers.list();
    const head = (await fleet.store.audit.head(T))!;
    await tamper.insertRow(
      { ...auditColumnsOf(head), seq: head.seq + 1, id: 'forged' },
      JSON.stringify(head),
    );

    const refused = await alice()
      .audit.checkpoint()
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuditIntegrityError);
    expect((refused as Error).message).toMatch(
      /audit log head of tenant "acme" is damaged: row \d+ \(id forged\)/,
    );

    expect(await alice().servers.list()).toEqual([]);
    const result = await alice().verifyAuditLog();
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ problem: 'duplicate', seq: head.seq }),
        expect.objectContaining({
          problem: 'column-mismatch',
          column: 'seq',
          seq: head.seq + 1,
          id: 'forged',
        }),
      ]),
    );
    // The record after the forged row links to it (so to a record whose seq is not its
    // predecessor's): that one link is named; no later record is reported changed.
    expect(result.problems.filter((p) => (p.seq ?? 0) > head.seq + 1)).toEqual([
      expect.objectContaining({ problem: 'broken-link', seq: head.seq + 2 }),
    ]);
  });

  it('verify — checks the checkpoints the log records, and catches a chain recomputed after one', async () => {
    await alice().servers.list();
    const cp = await alice().audit.checkpoint();
    const verified = await alice().verifyAuditLog({ requireCheckpoint: true });
    expect(verified).toMatchObject({ ok: true, checkpointsVerified: 1, anchoredSeq: cp.seq });

    // An attacker rewrites the checkpointed record, recomputing its hash and every later link,
    // columns included: the chain is consistent again, the signed checkpoint is not.
    const rows = await fleet.store.audit.rows(T);
    let prev = rows[cp.seq - 2] ? (rows[cp.seq - 2]!.record as AuditRecord).hash : '0'.repeat(64);
    const rewritten: AuditRecord[] = [];
    for (const row of rows.slice(cp.seq - 1)) {
      const r = row.record as AuditRecord;
      const changed = { ...r, reason: r.seq === cp.seq ? 'rewritten' : r.reason, prevHash: prev };
      if (changed.reason === undefined) delete changed.reason;
      const record = { ...changed, hash: auditRecordHash(changed) };
      rewritten.push(record);
      prev = record.hash;
    }
    for (const r of rewritten) {
      await tamper.setColumn(T, r.seq, 'hash', r.hash);
    }
    const db = new Database(file());
    for (const r of rewritten)
      db.prepare('UPDATE audit_log SET record = ? WHERE tenant_id = ? AND seq = ?').run(
        JSON.stringify(r),
        T,
        r.seq,
      );
    db.close();

    const result = await alice().verifyAuditLog({ requireCheckpoint: true });
    expect(result.ok).toBe(false);
    expect(result.problems).toContainEqual(
      expect.objectContaining({ problem: 'checkpoint-mismatch', seq: cp.seq }),
    );
    expect(
      result.problems.filter(
        (p) => p.problem !== 'checkpoint-mismatch' && p.problem !== 'missing-checkpoint',
      ),
    ).toEqual([]);
  });

  it('audit.list/export — a row moved into another tenant by its tenant_id column is never handed to that tenant; both verifications name it', async () => {
    await fleet.bootstrapTenant({
      tenant: { id: 'other', name: 'Other' },
      admin: { id: 'olga', name: 'Olga', kind: 'human', affiliation: 'employee' },
    });
    const olga = () => fleet.as({ tenantId: 'other', principalId: 'olga' });
    const [moved] = await alice().audit.list({ limit: 1 });
    await tamper.setColumn(T, moved!.seq, 'seq', 999);
    await tamper.setColumn(T, 999, 'tenantId', 'other');

    expect((await olga().audit.list()).filter((r) => r.tenantId !== 'other')).toEqual([]);
    let exported = '';
    for await (const line of await olga().audit.export()) exported += line;
    expect(exported).not.toContain(moved!.id);
    const report = await olga().audit.accessReport();
    expect(JSON.stringify(report)).not.toContain(moved!.id);

    const theirs = await olga().verifyAuditLog();
    expect(theirs.problems).toContainEqual(
      expect.objectContaining({ problem: 'column-mismatch', column: 'tenantId', seq: 999, id: moved!.id }),
    );
    const ours = await alice().verifyAuditLog();
    expect(ours.problems).toContainEqual(expect.objectContaining({ problem: 'gap', seq: moved!.seq }));
  });

  it('verify — requireCheckpoint without any checkpoint is missing-checkpoint, not OK', async () => {
    const result = await alice().verifyAuditLog({ requireCheckpoint: true });
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.objectContaining({ problem: 'missing-checkpoint' })]);
  });

  it('verify — property: any edit of any filterable column of any row is named, and list still answers from the record', async () => {
    for (let i = 0; i < 6; i++) await alice().servers.list();
    const records = await fleet.store.audit.list(T);
    const rows = await fleet.store.audit.rows(T);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: records.length - 1 }),
        fc.constantFrom('actorId' as const, 'action' as const, 'at' as const),
        fc.oneof(
          fc.constantFrom('alice', 'audit.read', 'inventory.read', '2026-01-01T00:00:00.000Z'),
          fc.string({ minLength: 1, maxLength: 12 }),
        ),
        async (index, column, value) => {
          const record = records[index]!;
          const original = auditColumnsOf(record)[column];
          fc.pre(value !== original);
          await tamper.setColumn(T, record.seq, column, value);
          try {
            const result = await verifyStoredAuditRows(await fleet.store.audit.rows(T), { tenantId: T });
            expect(result.problems).toEqual([
              expect.objectContaining({ problem: 'column-mismatch', seq: record.seq, id: record.id, column }),
            ]);
            const query =
              column === 'actorId'
                ? { actorId: record.actor.principalId }
                : column === 'action'
                  ? { action: record.action }
                  : { since: new Date(record.at), until: new Date(Date.parse(record.at) + 1) };
            expect((await fleet.store.audit.list(T, query)).map((r) => r.seq)).toContain(record.seq);
            const forgedQuery =
              column === 'actorId' ? { actorId: value } : column === 'action' ? { action: value } : undefined;
            if (forgedQuery) {
              expect((await fleet.store.audit.list(T, forgedQuery)).map((r) => r.seq)).not.toContain(
                record.seq,
              );
            }
          } finally {
            await tamper.setColumn(T, record.seq, column, original);
          }
        },
      ),
      { numRuns: 40 },
    );
    expect(await fleet.store.audit.rows(T)).toEqual(rows);
  });
});
