import type { AuditRecord } from '../domain/index.js';
import type { AuditColumns, StoredAuditRow } from '../ports/store.js';

/** The names of the columns a store keeps beside each audit record, in a fixed order. */
export const AUDIT_COLUMNS = ['tenantId', 'seq', 'id', 'at', 'action', 'actorId', 'hash'] as const;

/** The column values a record implies: what a store writes beside it. */
export function auditColumnsOf(record: AuditRecord): AuditColumns {
  return {
    tenantId: record.tenantId,
    seq: record.seq,
    id: record.id,
    at: record.at,
    action: record.action,
    actorId: record.actor.principalId,
    hash: record.hash,
  };
}

/** One column whose stored value is not the one the hashed record holds. */
export interface AuditColumnMismatch {
  column: keyof AuditColumns;
  /** The column's value. */
  stored: string | number;
  /** What the record holds for it (`undefined` when the record lacks the field). */
  recorded: unknown;
}

function recordedValue(record: Record<string, unknown>, column: keyof AuditColumns): unknown {
  if (column !== 'actorId') return record[column];
  const actor = record['actor'];
  return actor !== null && typeof actor === 'object'
    ? (actor as Record<string, unknown>)['principalId']
    : undefined;
}

/**
 * The columns of a stored row that disagree with its record. Every column counts, not only the
 * ones queried today: a column outside the hash that nobody checks is one an attacker can use.
 * A row whose record is not an object disagrees on every column.
 */
export function auditColumnMismatches(row: StoredAuditRow): AuditColumnMismatch[] {
  const record =
    row.record !== null && typeof row.record === 'object' && !Array.isArray(row.record)
      ? (row.record as Record<string, unknown>)
      : {};
  const out: AuditColumnMismatch[] = [];
  for (const column of AUDIT_COLUMNS) {
    const stored = row.columns[column];
    const recorded = recordedValue(record, column);
    if (stored !== recorded) out.push({ column, stored, recorded });
  }
  return out;
}

/** The stored record, when it is an object at all (a damaged row may hold any JSON). */
export function storedRecord(row: StoredAuditRow): AuditRecord | undefined {
  const r = row.record;
  return r !== null && typeof r === 'object' && !Array.isArray(r) ? (r as AuditRecord) : undefined;
}
