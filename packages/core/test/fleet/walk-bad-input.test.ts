import { FleetwardError, ValidationError } from '@fleetward/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  callMethod,
  mutations,
  outcomeOf,
  snapshotTenant,
  T,
  WALK_TABLE,
  WalkFixtures,
} from './walk-table.js';

// Rule 8: bad input gets a typed error that says what and where; it never corrupts stored state.

/**
 * Breaks of rule 8 found by this walk and not fixed yet, by method: each line is what one bad
 * argument did. The walk asserts the list exactly, so a new break fails it, and so does a fix
 * (then delete the line).
 */
const KNOWN: Record<string, string[]> = {
  // `zzUnknown` is a valid label key: a selector on it is good input, not a break.
  selectServers: ['arg0.labels.zzUnknown (shape): accepted'],
};

const fixtures = new WalkFixtures();
afterAll(() => fixtures.close());

function changedKinds(before: Record<string, unknown[]>, after: Record<string, unknown[]>): string[] {
  return Object.keys(after).filter((kind) => JSON.stringify(before[kind]) !== JSON.stringify(after[kind]));
}

/** Whether a ValidationError names the field: by its path, or (for a key it refuses) in its message. */
function namesField(error: ValidationError, path: (string | number)[]): boolean {
  if (path.length === 0) return true;
  const dotted = path.join('.');
  return (
    error.paths.some((p) => p === dotted || p.startsWith(`${dotted}.`) || dotted.startsWith(`${p}.`)) ||
    error.message.includes(String(path.at(-1)))
  );
}

describe('bad input walk', () => {
  for (const [name, row] of Object.entries(WALK_TABLE)) {
    it(`${name} — refuses bad arguments with a typed error naming the field, and stores nothing`, async () => {
      const violations: string[] = [];
      const f = await fixtures.get();
      for (const m of mutations(row.args(f.ids), row.pathArgs)) {
        const before = await snapshotTenant(f.fleet, T);
        const outcome = await outcomeOf(callMethod(f.admin, name, m.args));
        const after = await snapshotTenant(f.fleet, T);
        const label = `${m.where} (${m.kind})`;
        if ((Object.prototype as Record<string, unknown>)['polluted'] !== undefined) {
          delete (Object.prototype as Record<string, unknown>)['polluted'];
          violations.push(`${label}: polluted Object.prototype`);
        }
        if (outcome.ok) {
          if (m.kind === 'shape') violations.push(`${label}: accepted`);
          continue;
        }
        const error = outcome.error;
        if (!(error instanceof FleetwardError)) {
          violations.push(`${label}: threw ${(error as Error)?.name ?? typeof error}, not a FleetwardError`);
          continue;
        }
        const changed = changedKinds(before.entities, after.entities);
        if (changed.length)
          violations.push(`${label}: refused (${error.code}) but changed ${changed.join(', ')}`);
        if (error instanceof ValidationError && !namesField(error, m.path)) {
          violations.push(`${label}: ValidationError names ${error.paths.join(', ') || '(root)'}`);
        }
        // The audit log may gain the refusal, never a success.
        const records = (await f.fleet.store.audit.list(T, { limit: 1000 })).filter(
          (r) => r.seq > before.auditSeq,
        );
        if (
          records.some(
            (r) => r.result === 'success' && r.actor.principalId === 'admin' && r.action === row.action,
          )
        ) {
          violations.push(`${label}: refused (${error.code}) after a success record`);
        }
      }
      expect([...new Set(violations)]).toEqual(KNOWN[name] ?? []);
    });
  }
});
