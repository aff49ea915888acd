import {
  compileAuthorization,
  evaluate,
  type Principal,
  type Role,
  type RoleBinding,
  type Server,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const now = new Date('2026-05-01T12:00:00Z');
const meta = { tenantId: 't', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() };
const person = (affiliation: Principal['affiliation']): Principal => ({
  ...meta,
  id: 'p',
  name: 'P',
  kind: 'human',
  affiliation,
  disabled: false,
  labels: {},
});
const server = (id: string, env: string): Server => ({
  ...meta,
  id,
  name: id,
  accountId: 'a',
  provider: 'ssh',
  labels: { env },
});
const role = (id: string, rules: Role['rules']): Role => ({ ...meta, id, name: id, rules });
const binding = (roleId: string): RoleBinding => ({ ...meta, id: `b-${roleId}`, principalId: 'p', roleId });
const staging = server('stg-1', 'staging');
const prod = server('prod-1', 'prod');

function decideBoth(
  roles: Role[],
  p: Principal,
  action: Parameters<typeof evaluate>[1],
  resource: Parameters<typeof evaluate>[2],
  mfaVerifiedAt?: Date,
) {
  const ctx = {
    principal: p,
    bindings: roles.map((r) => binding(r.id)),
    roles: new Map(roles.map((r) => [r.id, r])),
    projects: new Map(),
    now,
    ...(mfaVerifiedAt ? { mfaVerifiedAt } : {}),
  };
  const reference = evaluate(ctx, action, resource);
  expect(compileAuthorization(ctx).decide(action, resource)).toStrictEqual(reference);
  return reference;
}

describe('authorization conditions', () => {
  const contractor = role('contractor', [
    { effect: 'allow', actions: ['patch.plan', 'patch.read'], servers: { labels: { env: 'staging' } } },
  ]);

  it('decide — a contractor allowed patch.plan on env=staging is denied on env=prod, naming the rule', () => {
    expect(
      decideBoth([contractor], person('contractor'), 'patch.plan', { type: 'server', server: staging }),
    ).toMatchObject({
      allowed: true,
      matched: { roleId: 'contractor', ruleIndex: 0 },
    });
    const denied = decideBoth([contractor], person('contractor'), 'patch.plan', {
      type: 'server',
      server: prod,
    });
    expect(denied.allowed).toBe(false);
    expect(denied.reason).toBe(
      'no role allows it (deny by default); role contractor rule 0 allows it only on servers matching env=staging',
    );
  });

  it('decide — an explicit deny listed after or before an allow wins, and is the matched rule', () => {
    const after = role('r', [
      { effect: 'allow', actions: ['patch.*'] },
      { effect: 'deny', actions: ['patch.execute'], servers: { labels: { env: 'prod' } } },
    ]);
    const before = role('r', [...after.rules].reverse());
    for (const r of [after, before]) {
      const d = decideBoth([r], person('employee'), 'patch.execute', { type: 'server', server: prod });
      expect(d.allowed).toBe(false);
      expect(d.matched?.effect).toBe('deny');
      expect(d.reason).toMatch(/^denied by role r rule [01]$/);
      expect(
        decideBoth([r], person('employee'), 'patch.execute', { type: 'server', server: staging }).allowed,
      ).toBe(true);
    }
  });

  it('decide — employees and contractors are told apart by affiliations', () => {
    const ops = role('ops', [{ effect: 'allow', actions: ['patch.execute'], affiliations: ['employee'] }]);
    expect(
      decideBoth([ops], person('employee'), 'patch.execute', { type: 'server', server: prod }).allowed,
    ).toBe(true);
    expect(
      decideBoth([ops], person('contractor'), 'patch.execute', { type: 'server', server: prod }).allowed,
    ).toBe(false);
  });

  it('decide — an approval rule with mfaWithinMinutes needs a recent second factor, and says so', () => {
    const approver = role('approver', [
      { effect: 'allow', actions: ['access.approve'], mfaWithinMinutes: 10 },
    ]);
    const resource = { type: 'server' as const, server: prod };
    const none = decideBoth([approver], person('employee'), 'access.approve', resource);
    expect(none.allowed).toBe(false);
    expect(none.reason).toContain('role approver rule 0 would allow it with MFA verified within 10 minutes');
    const stale = new Date(now.getTime() - 11 * 60_000);
    expect(decideBoth([approver], person('employee'), 'access.approve', resource, stale).allowed).toBe(false);
    const fresh = new Date(now.getTime() - 9 * 60_000);
    expect(decideBoth([approver], person('employee'), 'access.approve', resource, fresh).allowed).toBe(true);
  });

  it('decide — a rule over scripts covers only those scripts, never servers', () => {
    const runner = role('runner', [{ effect: 'allow', actions: ['script.run'], scripts: ['restart-web'] }]);
    const p = person('employee');
    expect(decideBoth([runner], p, 'script.run', { type: 'script', id: 'restart-web' }).allowed).toBe(true);
    const other = decideBoth([runner], p, 'script.run', { type: 'script', id: 'wipe-disk' });
    expect(other.allowed).toBe(false);
    expect(other.reason).toContain('role runner rule 0 allows it only on scripts restart-web');
    expect(decideBoth([runner], p, 'script.run', { type: 'server', server: prod }).allowed).toBe(false);
  });
});
