import {
  evaluate,
  type Principal,
  type Project,
  type Role,
  type RoleBinding,
  type Server,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const now = new Date('2026-05-01T00:00:00Z');
const meta = { tenantId: 't', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() };
const principal = (over: Partial<Principal> = {}): Principal => ({
  ...meta,
  id: 'p',
  name: 'P',
  kind: 'human',
  affiliation: 'employee',
  disabled: false,
  labels: {},
  ...over,
});
const server = (id: string, labels: Record<string, string>): Server => ({
  ...meta,
  id,
  name: id,
  accountId: 'a',
  provider: 'ssh',
  labels,
});
const role = (id: string, rules: Role['rules']): Role => ({ ...meta, id, name: id, rules });
const binding = (roleId: string, over: Partial<RoleBinding> = {}): RoleBinding => ({
  ...meta,
  id: `b-${roleId}`,
  principalId: 'p',
  roleId,
  ...over,
});
const ctx = (roles: Role[], bindings: RoleBinding[], p = principal(), projects: Project[] = []) => ({
  principal: p,
  bindings,
  roles: new Map(roles.map((r) => [r.id, r])),
  projects: new Map(projects.map((x) => [x.id, x])),
  now,
});
const prod = server('prod-1', { env: 'prod' });
const dev = server('dev-1', { env: 'dev' });

describe('evaluate', () => {
  it('evaluate — denies by default and says so', () => {
    const d = evaluate(ctx([], []), 'patch.scan', { type: 'server', server: prod });
    expect(d).toMatchObject({ allowed: false, reason: 'no role allows it (deny by default)' });
    expect(d.matched).toBeUndefined();
  });

  it('evaluate — an allow names the binding, role and rule', () => {
    const d = evaluate(
      ctx([role('ops', [{ effect: 'allow', actions: ['patch.*'] }])], [binding('ops')]),
      'patch.scan',
      {
        type: 'server',
        server: prod,
      },
    );
    expect(d).toMatchObject({
      allowed: true,
      matched: { bindingId: 'b-ops', roleId: 'ops', ruleIndex: 0, effect: 'allow' },
    });
  });

  it('evaluate — an explicit deny wins over an allow in either order', () => {
    const allow = role('allow', [{ effect: 'allow', actions: ['*'] }]);
    const deny = role('deny', [{ effect: 'deny', actions: ['patch.execute'] }]);
    for (const order of [
      [binding('allow'), binding('deny')],
      [binding('deny'), binding('allow')],
    ]) {
      const d = evaluate(ctx([allow, deny], order), 'patch.execute', { type: 'server', server: prod });
      expect(d).toMatchObject({ allowed: false, matched: { roleId: 'deny', effect: 'deny' } });
    }
  });

  it('evaluate — a rule limited to servers applies only to servers its selector matches', () => {
    const c = ctx(
      [role('prod', [{ effect: 'allow', actions: ['patch.scan'], servers: { labels: { env: 'prod' } } }])],
      [binding('prod')],
    );
    expect(evaluate(c, 'patch.scan', { type: 'server', server: prod }).allowed).toBe(true);
    expect(evaluate(c, 'patch.scan', { type: 'server', server: dev }).allowed).toBe(false);
    expect(evaluate(c, 'patch.scan', { type: 'policy', id: 'x' }).allowed).toBe(false);
  });

  it('evaluate — affiliation conditions tell contractors from employees', () => {
    const r = role('emp', [{ effect: 'allow', actions: ['access.approve'], affiliations: ['employee'] }]);
    expect(evaluate(ctx([r], [binding('emp')]), 'access.approve', { type: 'access' }).allowed).toBe(true);
    const contractor = principal({ affiliation: 'contractor' });
    expect(
      evaluate(ctx([r], [binding('emp')], contractor), 'access.approve', { type: 'access' }).allowed,
    ).toBe(false);
  });

  it('evaluate — expired bindings, other principals’ bindings and disabled principals grant nothing', () => {
    const r = role('all', [{ effect: 'allow', actions: ['*'] }]);
    const expired = binding('all', { expiresAt: '2026-04-30T23:59:59Z' });
    expect(evaluate(ctx([r], [expired]), 'patch.scan', { type: 'server', server: prod }).allowed).toBe(false);
    const foreign = binding('all', { principalId: 'someone-else' });
    expect(evaluate(ctx([r], [foreign]), 'patch.scan', { type: 'server', server: prod }).allowed).toBe(false);
    const disabled = principal({ disabled: true });
    expect(
      evaluate(ctx([r], [binding('all')], disabled), 'patch.scan', { type: 'server', server: prod }),
    ).toMatchObject({
      allowed: false,
      reason: 'principal is disabled',
    });
  });

  it('evaluate — a project-scoped binding covers only the project’s servers', () => {
    const project: Project = {
      ...meta,
      id: 'web',
      name: 'web',
      selector: { labels: { env: 'prod' } },
      labels: {},
    };
    const c = ctx(
      [role('all', [{ effect: 'allow', actions: ['*'] }])],
      [binding('all', { projectIds: ['web'] })],
      principal(),
      [project],
    );
    expect(evaluate(c, 'patch.scan', { type: 'server', server: prod }).allowed).toBe(true);
    expect(evaluate(c, 'patch.scan', { type: 'server', server: dev }).allowed).toBe(false);
    expect(evaluate(c, 'patch.plan', { type: 'policy', projectId: 'web' }).allowed).toBe(true);
    expect(evaluate(c, 'patch.plan', { type: 'policy', projectId: 'other' }).allowed).toBe(false);
  });

  it('evaluate — action patterns match exactly, by family or all, never by prefix', () => {
    const c = ctx([role('r', [{ effect: 'allow', actions: ['patch.plan', 'audit.*'] }])], [binding('r')]);
    expect(evaluate(c, 'patch.plan', { type: 'x' }).allowed).toBe(true);
    expect(evaluate(c, 'patch.approve', { type: 'x' }).allowed).toBe(false);
    expect(evaluate(c, 'audit.read', { type: 'x' }).allowed).toBe(true);
  });
});
