import { createHash } from 'node:crypto';
import type { AuditRecord } from '../domain/index.js';
import { canonicalJson } from '../util/canonical-json.js';

export const GENESIS_HASH = '0'.repeat(64);

/** The hash of a record: sha256 over the canonical JSON of every field but `hash`. */
export function auditRecordHash(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = record;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

export type AuditChainProblem =
  | { seq: number; problem: 'hash-mismatch'; expected: string; actual: string }
  | { seq: number; problem: 'broken-link'; expected: string; actual: string }
  | { seq: number; problem: 'gap'; expectedSeq: number };

export interface AuditChainVerification {
  ok: boolean;
  checked: number;
  lastHash: string;
  problems: AuditChainProblem[];
}

/**
 * Checks a run of one tenant's records (in `seq` order): each hash matches its content, each
 * record links to the one before, and no `seq` is missing. Pass `from` to continue a verification
 * from a known-good record.
 */
export function verifyAuditChain(
  records: Iterable<AuditRecord>,
  from: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH },
): AuditChainVerification {
  const problems: AuditChainProblem[] = [];
  let expectedSeq = from.seq + 1;
  let prev = from.hash;
  let checked = 0;
  for (const record of records) {
    checked++;
    if (record.seq !== expectedSeq) problems.push({ seq: record.seq, problem: 'gap', expectedSeq });
    if (record.prevHash !== prev) {
      problems.push({ seq: record.seq, problem: 'broken-link', expected: prev, actual: record.prevHash });
    }
    const actual = auditRecordHash(record);
    if (actual !== record.hash) {
      problems.push({ seq: record.seq, problem: 'hash-mismatch', expected: actual, actual: record.hash });
    }
    prev = record.hash;
    expectedSeq = record.seq + 1;
  }
  return { ok: problems.length === 0, checked, lastHash: prev, problems };
}
