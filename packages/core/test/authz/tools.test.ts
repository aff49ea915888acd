import {
  type AuthorizationContext,
  diffPolicies,
  evaluate,
  explain,
  type Principal,
  type Project,
  type Role,
  type RoleBinding,
  type Server,
  simulate,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const now = new Date('2026-05-01T00:00:00Z');
const meta = { tenantId: 't', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() };
const alice: Principal = {
  ...meta,
  id: 'p-alice',
  name: 'alice',
  kind: 'human',
  affiliation: 'employee',
  disabled: false,
  labels: {},
};
const bob: Principal = {
  ...meta,
  id: 'p-bob',
  name: 'bob',
  kind: 'human',
  affiliation: 'contractor',
  disabled: false,
  labels: {},
};
const server = (id: string, labels: Record<string, string>): Server => ({
  ...meta,
  id,
  name: id,
  accountId: 'a',
  provider: 'ssh',
  labels,
});
const web1 = server('web-1', { env: 'prod', tier: 'web' });
const db1 = server('db-1', { env: 'prod', tier: 'db' });
const dev1 = server('dev-1', { env: 'dev', tier: 'web' });
const servers = [web1, db1, dev1];
const role = (id: string, name: string, rules: Role['rules']): Role => ({ ...meta, id, name, rules });
const binding = (
  id: string,
  principalId: string,
  roleId: string,
  over: Partial<RoleBinding> = {},
): RoleBinding => ({
  ...meta,
  id,
  principalId,
  roleId,
  ...over,
});
const ops = role('r-ops', 'Ops', [
  { effect: 'allow', actions: ['patch.*'], servers: { labels: { tier: 'web' } } },
]);
const projects: Project[] = [];
const ctxOf = (principal: Principal, roles: Role[], bindings: RoleBinding[]): AuthorizationContext => ({
  principal,
  bindings,
  roles: new Map(roles.map((r) => [r.id, r])),
  projects: new Map(),
  now,
});

describe('explain and simulate', () => {
  it('explain — names principal, action, server, role, binding and rule', () => {
    const ctx = ctxOf(alice, [ops], [binding('b-1', alice.id, ops.id)]);
    const d = evaluate(ctx, 'patch.scan', { type: 'server', server: web1 });
    expect(explain(d, { principal: alice, roles: ctx.roles })).toBe(
      'alice may patch.scan on server web-1: allowed by role Ops (binding b-1, rule 0)',
    );
    // Without names it falls back to ids.
    expect(explain(d)).toBe(
      'p-alice may patch.scan on server web-1: allowed by role r-ops (binding b-1, rule 0)',
    );
  });

  it('explain — says why a request is denied: explicit deny, default deny, disabled', () => {
    const freeze = role('r-freeze', 'Freeze', [{ effect: 'deny', actions: ['patch.execute'] }]);
    const ctx = ctxOf(
      alice,
      [ops, freeze],
      [binding('b-1', alice.id, ops.id), binding('b-2', alice.id, freeze.id)],
    );
    expect(simulate(ctx, 'patch.execute', { type: 'server', server: web1 }).explanation).toBe(
      'alice may not patch.execute on server web-1: denied by role Freeze (binding b-2, rule 0)',
    );
    expect(simulate(ctx, 'iam.write', { type: 'tenant' }).explanation).toBe(
      'alice may not iam.write on tenant: no role allows it (deny by default)',
    );
    expect(simulate(ctx, 'patch.plan', { type: 'policy', id: 'pol-1' }).explanation).toBe(
      'alice may not patch.plan on policy pol-1: no role allows it (deny by default); role Ops rule 0 allows it only on servers matching tier=web',
    );
    const disabled = ctxOf({ ...alice, disabled: true }, [ops], [binding('b-1', alice.id, ops.id)]);
    expect(simulate(disabled, 'patch.scan', { type: 'server', server: web1 }).explanation).toBe(
      'alice may not patch.scan on server web-1: principal is disabled',
    );
  });

  it('simulate — returns the evaluator’s decision and changes nothing', () => {
    const bindings = [binding('b-1', alice.id, ops.id)];
    const ctx = ctxOf(alice, [ops], bindings);
    const snapshot = structuredClone({ bindings, rules: ops.rules });
    const s = simulate(ctx, 'patch.scan', { type: 'server', server: web1 });
    expect(s.decision).toStrictEqual(evaluate(ctx, 'patch.scan', { type: 'server', server: web1 }));
    expect({ bindings, rules: ops.rules }).toStrictEqual(snapshot);
  });
});

describe('diffPolicies', () => {
  const before = {
    roles: [ops],
    bindings: [binding('b-1', alice.id, ops.id), binding('b-2', bob.id, ops.id)],
  };
  const opts = {
    principals: [alice, bob],
    servers,
    projects,
    now,
    actions: ['patch.scan', 'patch.execute'] as const,
  };

  it('diffPolicies — no change, no diff', () => {
    expect(diffPolicies(before, before, { ...opts, actions: [...opts.actions] })).toEqual([]);
  });

  it('diffPolicies — adding a deny: who loses what', () => {
    const freeze = role('r-freeze', 'Freeze', [
      { effect: 'deny', actions: ['patch.execute'], affiliations: ['contractor'] },
    ]);
    const after = { roles: [ops, freeze], bindings: [...before.bindings, binding('b-3', bob.id, freeze.id)] };
    const changes = diffPolicies(before, after, { ...opts, actions: [...opts.actions] });
    expect(changes.map((c) => [c.principalId, c.action, c.resource, c.change])).toEqual([
      ['p-bob', 'patch.execute', { type: 'server', id: 'web-1' }, 'lost'],
      ['p-bob', 'patch.execute', { type: 'server', id: 'dev-1' }, 'lost'],
    ]);
    expect(changes[0]!.before.matched).toMatchObject({ roleId: 'r-ops', effect: 'allow' });
    expect(changes[0]!.after.matched).toMatchObject({ roleId: 'r-freeze', bindingId: 'b-3', effect: 'deny' });
  });

  it('diffPolicies — widening a selector: who gains which servers', () => {
    const wider = role('r-ops', 'Ops', [
      {
        effect: 'allow',
        actions: ['patch.*'],
        servers: { expressions: [{ key: 'tier', operator: 'In', values: ['web', 'db'] }] },
      },
    ]);
    const changes = diffPolicies(
      before,
      { roles: [wider], bindings: before.bindings },
      { ...opts, actions: ['patch.scan'] },
    );
    expect(changes.map((c) => `${c.principalId} ${c.change} ${c.action} on ${c.resource.id}`)).toEqual([
      'p-alice gained patch.scan on db-1',
      'p-bob gained patch.scan on db-1',
    ]);
    expect(changes.every((c) => !c.before.allowed && c.after.allowed)).toBe(true);
  });

  it('diffPolicies — expiring a binding: its holder loses everything it granted, tenant resources included', () => {
    const reader = role('r-read', 'Reader', [{ effect: 'allow', actions: ['audit.read'] }]);
    const b = { roles: [ops, reader], bindings: [...before.bindings, binding('b-4', alice.id, reader.id)] };
    const a = {
      roles: b.roles,
      bindings: b.bindings.map((x) =>
        x.principalId === alice.id ? { ...x, expiresAt: '2026-04-30T12:00:00Z' } : x,
      ),
    };
    const changes = diffPolicies(b, a, {
      principals: [alice, bob],
      servers,
      projects,
      now,
      actions: ['patch.scan', 'audit.read'],
    });
    expect(
      changes.map(
        (c) => `${c.principalId} ${c.change} ${c.action} on ${c.resource.type}:${c.resource.id ?? '-'}`,
      ),
    ).toEqual([
      'p-alice lost patch.scan on server:web-1',
      'p-alice lost patch.scan on server:dev-1',
      'p-alice lost audit.read on server:web-1',
      'p-alice lost audit.read on server:db-1',
      'p-alice lost audit.read on server:dev-1',
      'p-alice lost audit.read on tenant:-',
    ]);
  });
});
