import { AuthorizationError, FleetwardError } from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  callMethod,
  createWalkFixture,
  facadeMethods,
  outcomeOf,
  snapshotTenant,
  T,
  WALK_TABLE,
  type WalkFixture,
} from './walk-table.js';

// Rule 1: nothing runs without an authorization decision and an audit record, allowed or denied.

async function recordsAfter(f: WalkFixture, seq: number) {
  return (await f.fleet.store.audit.list(T, { limit: 1000 })).filter((r) => r.seq > seq);
}

describe('facade walk', () => {
  it('facade — every method of a session has a walker row', async () => {
    const f = await createWalkFixture();
    try {
      const names = facadeMethods(f.admin);
      expect(names.length).toBeGreaterThan(90);
      const missing = names.filter((name) => !WALK_TABLE[name]).map((name) => `no walker row for ${name}`);
      expect(missing).toEqual([]);
      const stale = Object.keys(WALK_TABLE).filter((name) => !names.includes(name));
      expect(stale, 'rows of methods the facade no longer has').toEqual([]);
    } finally {
      await f.close();
    }
  });
});

for (const [name, row] of Object.entries(WALK_TABLE)) {
  describe(name, () => {
    let f: WalkFixture;
    beforeAll(async () => {
      f = await createWalkFixture();
    });
    afterAll(() => f.close());

    const denyTest = row.gaps?.deny ? it.fails : it;
    // Lists that filter per server are refused too when nothing could pass the filter.
    denyTest(
      `${name} — refuses a principal without roles with AuthorizationError and a deny record naming ${row.action}${row.gaps?.deny ? ` (known gap: ${row.gaps.deny})` : ''}`,
      async () => {
        const before = await snapshotTenant(f.fleet, T);
        const outcome = await outcomeOf(callMethod(f.nobody, name, row.args(f.ids)));
        expect(outcome.ok ? 'resolved' : outcome.error).toBeInstanceOf(AuthorizationError);
        const records = await recordsAfter(f, before.auditSeq);
        expect(records).toContainEqual(
          expect.objectContaining({
            action: row.action,
            decision: 'deny',
            result: 'denied',
            actor: expect.objectContaining({ principalId: 'nobody' }),
          }),
        );
        // A refused call changes nothing but the audit log.
        expect((await snapshotTenant(f.fleet, T)).entities).toEqual(before.entities);
      },
    );

    const allowTest = row.gaps?.allow ? it.fails : it;
    const caller = row.allowedAs ?? 'admin';
    allowTest(
      `${name} — leaves an allow record when ${caller} calls it with valid arguments${row.gaps?.allow ? ` (known gap: ${row.gaps.allow})` : ''}`,
      async () => {
        const seq = (await f.fleet.store.audit.head(T))?.seq ?? 0;
        const session =
          caller === 'approver' ? f.fleet.as({ tenantId: T, principalId: 'approver' }) : f.admin;
        const outcome = await outcomeOf(callMethod(session, name, row.args(f.ids)));
        // Succeeding or failing, it fails only with the SDK's typed errors.
        if (!outcome.ok) expect(outcome.error).toBeInstanceOf(FleetwardError);
        const records = await recordsAfter(f, seq);
        expect(records).toContainEqual(
          expect.objectContaining({
            action: row.allowAction ?? row.action,
            decision: 'allow',
            result: expect.stringMatching(/^(success|failure|started)$/),
            actor: expect.objectContaining({ principalId: caller }),
          }),
        );
      },
    );
  });
}

describe('authorization on no resource', () => {
  it('patch.approvePlan — refuses a principal without roles when none of the plan’s servers exists any more', async () => {
    const f = await createWalkFixture();
    try {
      await f.admin.servers.remove(f.ids.serverId);
      const outcome = await outcomeOf(f.nobody.patch.approvePlan(f.ids.planId, { hash: f.ids.planHash }));
      expect(outcome.ok ? 'approved' : outcome.error).toBeInstanceOf(AuthorizationError);
    } finally {
      await f.close();
    }
  });
});
