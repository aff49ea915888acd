import {
  AUDIT_COLUMNS,
  type AuditColumns,
  type AuditRecord,
  auditColumnsOf,
  createMemoryStore,
  matchesAuditQuery,
  type StoredAuditRow,
  verifyStoredAuditRows,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

async function chain(n: number): Promise<AuditRecord[]> {
  const clock = new ManualClock('2026-03-01T12:00:00.000Z');
  const store = createMemoryStore({ clock });
  for (let i = 0; i < n; i++) {
    clock.advance(1000);
    await store.audit.append({
      tenantId: 't',
      actor: { principalId: i % 2 ? 'bob' : 'alice', kind: 'human' },
      action: `a.${i}`,
      decision: 'allow',
      result: 'success',
    });
  }
  return store.audit.list('t');
}

const rowsOf = (records: AuditRecord[]): StoredAuditRow[] =>
  records.map((r) => ({ columns: auditColumnsOf(r), record: structuredClone(r) }));

describe('verifyStoredAuditRows', () => {
  it('verifyStoredAuditRows — an intact log is ok', async () => {
    const records = await chain(4);
    expect(await verifyStoredAuditRows(rowsOf(records), { tenantId: 't' })).toMatchObject({
      ok: true,
      checked: 4,
      lastSeq: 4,
    });
  });

  it('verifyStoredAuditRows — property: any column of any row that disagrees with its record is named with seq, id and column', async () => {
    const records = await chain(5);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 }),
        fc.constantFrom(...AUDIT_COLUMNS),
        fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
        async (index, column, value) => {
          const rows = rowsOf(records);
          const row = rows[index]!;
          fc.pre(row.columns[column] !== value);
          (row.columns as unknown as Record<keyof AuditColumns, unknown>)[column] = value;
          const result = await verifyStoredAuditRows(rows, { tenantId: 't' });
          expect(result.ok).toBe(false);
          expect(result.problems).toContainEqual(
            expect.objectContaining({
              problem: 'column-mismatch',
              column,
              seq: row.columns.seq,
              id: row.columns.id,
            }),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('verifyStoredAuditRows — a row holding anything but a record object is malformed, named by its columns, and never throws', async () => {
    const records = await chain(3);
    for (const junk of [null, 1, 'text', [], {}, { actor: null }, undefined]) {
      const rows = rowsOf(records);
      rows[1]!.record = junk;
      const result = await verifyStoredAuditRows(rows, { tenantId: 't' });
      expect(result.ok).toBe(false);
      expect(result.problems).toContainEqual(
        expect.objectContaining({ seq: 2, id: records[1]!.id, problem: 'column-mismatch' }),
      );
      expect(result.problems).toContainEqual(expect.objectContaining({ problem: 'malformed' }));
    }
  });

  it('verifyStoredAuditRows — requireCheckpoint without a verified checkpoint is missing-checkpoint', async () => {
    const result = await verifyStoredAuditRows(rowsOf(await chain(2)), {
      tenantId: 't',
      requireCheckpoint: true,
    });
    expect(result.problems).toEqual([expect.objectContaining({ problem: 'missing-checkpoint' })]);
  });
});

describe('matchesAuditQuery', () => {
  it('matchesAuditQuery — property: a damaged record never throws and never matches a filter on a field it lacks', () => {
    fc.assert(
      fc.property(fc.anything(), fc.string(), (junk, value) => {
        const record = (junk !== null && typeof junk === 'object' ? junk : {}) as AuditRecord;
        const query = { actorId: value, action: value, since: new Date(0), until: new Date(8.64e15) };
        const matched = matchesAuditQuery(record, query);
        if (matched) {
          expect(record.actor?.principalId).toBe(value);
          expect(record.action).toBe(value);
          expect(Number.isNaN(Date.parse(record.at))).toBe(false);
        }
      }),
    );
  });
});
