import type { AuditRecord } from '../domain/index.js';
import type { AuditQuery } from '../ports/store.js';

/**
 * Whether a record answers an audit query, judged on the record alone. Every backend's answer is
 * passed through it, so it must hold up on a damaged record too: a missing field never matches a
 * filter on it, and an `at` that is not a date is outside every time range.
 */
export function matchesAuditQuery(record: AuditRecord, query: AuditQuery): boolean {
  if (query.afterSeq !== undefined && !(record.seq > query.afterSeq)) return false;
  if (query.action !== undefined && record.action !== query.action) return false;
  if (query.actorId !== undefined && record.actor?.principalId !== query.actorId) return false;
  if (query.since !== undefined || query.until !== undefined) {
    const at = typeof record.at === 'string' ? Date.parse(record.at) : Number.NaN;
    if (query.since !== undefined && !(at >= query.since.getTime())) return false;
    if (query.until !== undefined && !(at < query.until.getTime())) return false;
  }
  return true;
}
