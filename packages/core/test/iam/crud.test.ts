import { createHash } from 'node:crypto';
import {
  AlreadyExistsError,
  AuthorizationError,
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  generateEd25519KeyPair,
  NotFoundError,
  TENANT_ADMIN_ROLE_ID,
  ValidationError,
} from '@fleetward/core';
import { ManualClock, sampleInput } from '@fleetward/testkit';
import { beforeEach, describe, expect, it } from 'vitest';

const T = 'acme';

/**
 * A tenant bootstrapped with `alice` (its tenant admin), `bob` who may only manage IAM
 * (`iam.*`, tenant-wide), and `nobody` without any role.
 */
async function fixture() {
  const clock = new ManualClock('2026-06-01T10:00:00.000Z');
  const fleet = createFleet({ store: createMemoryStore({ clock }), adapters: [createLocalAdapter()], clock });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  for (const id of ['bob', 'nobody']) {
    await alice.iam.addPrincipal({ id, name: id, kind: 'human', affiliation: 'employee' });
  }
  await alice.iam.addRole({
    id: 'iam-admin',
    name: 'IAM admin',
    rules: [{ effect: 'allow', actions: ['iam.*'] }],
  });
  await alice.iam.bindRole('bob', 'iam-admin');
  return {
    fleet,
    alice,
    bob: fleet.as({ tenantId: T, principalId: 'bob' }),
    nobody: fleet.as({ tenantId: T, principalId: 'nobody' }),
  };
}

/** The audit records written after `seq`. */
async function recordsAfter(fleet: Fleet, seq: number) {
  return (await fleet.store.audit.list(T, { limit: 1000 })).filter((r) => r.seq > seq);
}

const headSeq = async (fleet: Fleet) => (await fleet.store.audit.head(T))?.seq ?? 0;

async function bindingsOf(fleet: Fleet, principalId: string) {
  return fleet.store.roleBindings.listAll(T, { where: { principalId } });
}

describe('iam — principals', () => {
  it('removePrincipal — refused while it takes care of a managed key: nobody inherits a key by reusing an id', async () => {
    const { fleet, alice } = await fixture();
    await alice.servers.add({ id: 'web-1', name: 'web-1', accountId: 'dc', provider: 'local' });
    const pair = generateEd25519KeyPair('deploy key');
    const credential = await alice.keys.register({
      login: 'deploy',
      publicKey: pair.publicKey,
      caretakerId: 'bob',
      serverIds: ['web-1'],
    });
    await expect(alice.iam.removePrincipal('bob')).rejects.toThrow(ConflictError);
    await expect(alice.iam.removePrincipal('bob')).rejects.toThrow(/caretaker of 1 managed key/);
    expect(await fleet.store.principals.get(T, 'bob')).toBeDefined();
    await alice.keys.setCaretaker(credential.id, 'alice');
    expect(await alice.iam.removePrincipal('bob')).toBe(true);
  });

  let f: Awaited<ReturnType<typeof fixture>>;
  beforeEach(async () => {
    f = await fixture();
  });

  it('removePrincipal — refuses removing the last standing tenant admin, audited as a failure', async () => {
    const seq = await headSeq(f.fleet);
    const error = await f.bob.iam.removePrincipal('alice').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).message).toMatch(/without a tenant admin/);
    expect((error as ConflictError).retryable).toBe(false);
    expect(await f.fleet.store.principals.get(T, 'alice')).toBeDefined();
    expect(await bindingsOf(f.fleet, 'alice')).toHaveLength(1);
    expect(await recordsAfter(f.fleet, seq)).toContainEqual(
      expect.objectContaining({
        action: 'iam.write',
        decision: 'allow',
        result: 'failure',
        target: { type: 'principal', id: 'alice' },
        details: { code: 'CONFLICT' },
      }),
    );
  });

  it('removePrincipal — admins bound to some projects only, expiring or disabled do not count as the one left', async () => {
    await f.alice.projects.add({ id: 'web', name: 'web', selector: { labels: { tier: 'web' } } });
    await f.alice.iam.addPrincipal({ id: 'carol', name: 'Carol', kind: 'human', affiliation: 'employee' });
    await f.alice.iam.bindRole('carol', TENANT_ADMIN_ROLE_ID, { projectIds: ['web'] });
    await f.alice.iam.addPrincipal({ id: 'dave', name: 'Dave', kind: 'human', affiliation: 'employee' });
    await f.fleet.store.roleBindings.create({
      tenantId: T,
      principalId: 'dave',
      roleId: TENANT_ADMIN_ROLE_ID,
      expiresAt: '2026-06-02T10:00:00.000Z',
    });
    await f.fleet.store.principals.create({
      tenantId: T,
      id: 'erin',
      name: 'Erin',
      kind: 'human',
      affiliation: 'employee',
      disabled: true,
    });
    await f.fleet.store.roleBindings.create({
      tenantId: T,
      principalId: 'erin',
      roleId: TENANT_ADMIN_ROLE_ID,
    });

    await expect(f.bob.iam.removePrincipal('alice')).rejects.toThrow(ConflictError);

    await f.alice.iam.addPrincipal({ id: 'frank', name: 'Frank', kind: 'human', affiliation: 'employee' });
    await f.alice.iam.bindRole('frank', TENANT_ADMIN_ROLE_ID);
    expect(await f.bob.iam.removePrincipal('alice')).toBe(true);
    expect(await f.fleet.store.principals.get(T, 'alice')).toBeUndefined();
  });

  it('removePrincipal — refuses removing the caller itself, even with another admin left', async () => {
    await f.alice.iam.addPrincipal({ id: 'frank', name: 'Frank', kind: 'human', affiliation: 'employee' });
    await f.alice.iam.bindRole('frank', TENANT_ADMIN_ROLE_ID);
    await expect(f.alice.iam.removePrincipal('alice')).rejects.toThrow(/alice may not remove itself/);
    await expect(f.bob.iam.removePrincipal('bob')).rejects.toThrow(ConflictError);
    expect(await f.fleet.store.principals.get(T, 'alice')).toBeDefined();
    expect(await f.fleet.store.principals.get(T, 'bob')).toBeDefined();
  });

  it('removePrincipal — its bindings go with it and its API tokens are revoked; its history stays', async () => {
    await f.alice.iam.addPrincipal({ id: 'carol', name: 'Carol', kind: 'human', affiliation: 'employee' });
    await f.alice.iam.addRole({
      id: 'reader',
      name: 'Reader',
      rules: [{ effect: 'allow', actions: ['inventory.read'] }],
    });
    const first = await f.alice.iam.bindRole('carol', 'reader');
    const second = await f.alice.iam.bindRole('carol', 'iam-admin');
    const token = await f.fleet.store.apiTokens.create({
      ...sampleInput('apiTokens', T),
      principalId: 'carol',
      createdBy: 'alice',
    });
    await f.fleet.as({ tenantId: T, principalId: 'carol' }).accounts.list();
    const history = (await f.fleet.store.audit.list(T, { actorId: 'carol' })).length;
    expect(history).toBeGreaterThan(0);

    const seq = await headSeq(f.fleet);
    expect(await f.bob.iam.removePrincipal('carol')).toBe(true);

    expect(await bindingsOf(f.fleet, 'carol')).toEqual([]);
    expect(await f.bob.iam.listBindings({ principalId: 'carol' })).toEqual([]);
    // Other principals keep theirs.
    expect((await bindingsOf(f.fleet, 'bob')).map((b) => b.roleId)).toEqual(['iam-admin']);
    expect((await f.fleet.store.apiTokens.require(T, token.id)).revokedAt).toBe('2026-06-01T10:00:00.000Z');
    expect((await f.fleet.store.audit.list(T, { actorId: 'carol' })).length).toBe(history);
    expect(await recordsAfter(f.fleet, seq)).toContainEqual(
      expect.objectContaining({
        action: 'iam.write',
        result: 'success',
        target: { type: 'principal', id: 'carol' },
        details: {
          principalId: 'carol',
          bindingIds: [first.id, second.id].sort(),
          revokedTokenIds: [token.id],
        },
      }),
    );

    // A principal added later under the same id inherits nothing.
    await f.alice.iam.addPrincipal({ id: 'carol', name: 'Carol 2', kind: 'human', affiliation: 'employee' });
    await expect(f.fleet.as({ tenantId: T, principalId: 'carol' }).accounts.list()).rejects.toThrow(
      AuthorizationError,
    );
  });

  it('getPrincipal — the principal; NotFoundError for an unknown id, ValidationError for a malformed one', async () => {
    expect(await f.bob.iam.getPrincipal('nobody')).toMatchObject({ id: 'nobody', name: 'nobody' });
    await expect(f.bob.iam.getPrincipal('ghost')).rejects.toThrow(NotFoundError);
    await expect(f.bob.iam.getPrincipal('../etc')).rejects.toThrow(ValidationError);
    expect(await f.bob.iam.removePrincipal('ghost')).toBe(false);
  });
});

describe('iam — bindings and roles', () => {
  let f: Awaited<ReturnType<typeof fixture>>;
  beforeEach(async () => {
    f = await fixture();
  });

  it('listBindings — all of them, or by principal, by role, or both', async () => {
    await f.alice.iam.bindRole('nobody', 'iam-admin');
    const all = await f.bob.iam.listBindings();
    expect(all.map((b) => `${b.principalId}:${b.roleId}`).sort()).toEqual([
      `alice:${TENANT_ADMIN_ROLE_ID}`,
      'bob:iam-admin',
      'nobody:iam-admin',
    ]);
    expect((await f.bob.iam.listBindings({ roleId: 'iam-admin' })).map((b) => b.principalId).sort()).toEqual([
      'bob',
      'nobody',
    ]);
    expect(
      (await f.bob.iam.listBindings({ principalId: 'nobody', roleId: 'iam-admin' })).map(
        (b) => b.principalId,
      ),
    ).toEqual(['nobody']);
    expect(await f.bob.iam.listBindings({ principalId: 'alice', roleId: 'iam-admin' })).toEqual([]);
    await expect(f.bob.iam.listBindings({ tenantId: 'other' } as never)).rejects.toThrow(ValidationError);
  });

  it('unbindRole — refuses the last standing tenant-admin binding; with another admin it goes', async () => {
    const [adminBinding] = await bindingsOf(f.fleet, 'alice');
    await expect(f.bob.iam.unbindRole(adminBinding!.id)).rejects.toThrow(/without a tenant admin/);
    await expect(f.alice.iam.unbindRole(adminBinding!.id)).rejects.toThrow(ConflictError);
    expect(await f.fleet.store.roleBindings.get(T, adminBinding!.id)).toBeDefined();

    await f.alice.iam.addPrincipal({ id: 'frank', name: 'Frank', kind: 'human', affiliation: 'employee' });
    await f.alice.iam.bindRole('frank', TENANT_ADMIN_ROLE_ID);
    expect(await f.alice.iam.unbindRole(adminBinding!.id)).toBe(true);
    expect(await bindingsOf(f.fleet, 'alice')).toEqual([]);
    expect(await f.bob.iam.unbindRole(adminBinding!.id)).toBe(false);
  });

  it('unbindRole — lifting a deny is refused when it widens the caller’s own reach', async () => {
    await f.alice.iam.addRole({
      id: 'no-roles',
      name: 'No role changes',
      rules: [{ effect: 'deny', actions: ['iam.write'] }],
    });
    await f.alice.iam.addRole({
      id: 'reader',
      name: 'Reader',
      rules: [{ effect: 'allow', actions: ['inventory.read'] }],
    });
    const deny = await f.alice.iam.bindRole('bob', 'no-roles');
    const allow = await f.alice.iam.bindRole('nobody', 'reader');
    // Bob is denied iam.write now; a call that is not decided cannot lift it.
    await expect(f.bob.iam.unbindRole(deny.id)).rejects.toThrow(AuthorizationError);
    // Alice holds everything: lifting bob's deny gives bob nothing she may not do.
    expect(await f.alice.iam.unbindRole(deny.id)).toBe(true);
    expect(await f.bob.iam.unbindRole(allow.id)).toBe(true);

    // Bob's iam-admin role allows iam.read; this deny takes it away, and bob may not lift it himself.
    await f.alice.iam.addRole({
      id: 'no-reads',
      name: 'No IAM reads',
      rules: [{ effect: 'deny', actions: ['iam.read'] }],
    });
    const own = await f.alice.iam.bindRole('bob', 'no-reads');
    const seq = await headSeq(f.fleet);
    await expect(f.bob.iam.unbindRole(own.id)).rejects.toThrow(/widen bob's own reach/);
    expect(await f.fleet.store.roleBindings.get(T, own.id)).toBeDefined();
    expect(await recordsAfter(f.fleet, seq)).toContainEqual(
      expect.objectContaining({ action: 'iam.write', decision: 'deny', details: { widening: true } }),
    );
  });

  it('addRole — validated with the role schema; a taken id is AlreadyExistsError', async () => {
    const bad = await f.bob.iam
      .addRole({ id: 'typo', name: 'Typo', rules: [{ effect: 'allow', actions: ['patch.plna'] }] })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ValidationError);
    expect((bad as ValidationError).paths).toContain('rules.0.actions.0');
    await expect(f.bob.iam.addRole({ id: 'empty', name: 'Empty', rules: [] })).rejects.toThrow(
      ValidationError,
    );
    await expect(
      f.bob.iam.addRole({ id: 'iam-admin', name: 'Again', rules: [{ effect: 'allow', actions: ['*'] }] }),
    ).rejects.toThrow(AlreadyExistsError);
    expect(await f.fleet.store.roles.get(T, 'typo')).toBeUndefined();
  });

  it('addRole — a role beyond the caller is harmless to create; binding it is where it is refused', async () => {
    const role = await f.bob.iam.addRole({
      id: 'root',
      name: 'Root',
      rules: [{ effect: 'allow', actions: ['*'] }],
    });
    expect(await f.bob.iam.getRole(role.id)).toEqual(role);
    await expect(f.bob.iam.bindRole('nobody', 'root')).rejects.toThrow(/which bob may not do itself/);
    await expect(f.bob.iam.bindRole('bob', 'root')).rejects.toThrow(/widen bob's own reach/);
  });

  it('addRole — refused while bindings already name the id: they would take effect unchecked', async () => {
    await f.fleet.store.roleBindings.create({ tenantId: T, principalId: 'nobody', roleId: 'orphan' });
    await expect(
      f.bob.iam.addRole({ id: 'orphan', name: 'Orphan', rules: [{ effect: 'allow', actions: ['*'] }] }),
    ).rejects.toThrow(/bindings of nobody already name role orphan/);
    expect(await f.fleet.store.roles.get(T, 'orphan')).toBeUndefined();
  });

  it('removeRole — refuses the built-in tenant-admin role, and a role in use (naming its principals)', async () => {
    await expect(f.alice.iam.removeRole(TENANT_ADMIN_ROLE_ID)).rejects.toThrow(/built in/);
    await f.alice.iam.bindRole('nobody', 'iam-admin');
    const error = await f.alice.iam.removeRole('iam-admin').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).message).toMatch(/bound to bob, nobody \(2 bindings\)/);
    expect(await f.fleet.store.roles.get(T, 'iam-admin')).toBeDefined();

    for (const b of await f.alice.iam.listBindings({ roleId: 'iam-admin' }))
      await f.alice.iam.unbindRole(b.id);
    expect(await f.alice.iam.removeRole('iam-admin')).toBe(true);
    await expect(f.alice.iam.getRole('iam-admin')).rejects.toThrow(NotFoundError);
    expect(await f.alice.iam.removeRole('iam-admin')).toBe(false);
    expect((await f.alice.iam.listRoles()).map((r) => r.id)).toEqual([TENANT_ADMIN_ROLE_ID]);
  });

  it('unbindRole — a just-in-time grant’s binding is left to access.revoke', async () => {
    await f.alice.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
    await f.alice.servers.add({
      id: 'web-1',
      name: 'web-1',
      accountId: 'dc',
      provider: 'ssh',
      address: '10.0.0.1',
    });
    await f.alice.iam.addPrincipal({
      id: 'approver',
      name: 'Approver',
      kind: 'human',
      affiliation: 'employee',
    });
    await f.alice.iam.bindRole('approver', TENANT_ADMIN_ROLE_ID);
    const asked = await f.alice.access.request({
      servers: { serverIds: ['web-1'] },
      mode: 'actions',
      actions: ['inventory.read'],
      durationMinutes: 60,
      reason: 'needs to read the inventory',
      ticket: 'INC-1',
    });
    const { grant } = await f.fleet.as({ tenantId: T, principalId: 'approver' }).access.approve(asked.id);
    const binding = await f.fleet.store.roleBindings.require(T, grant!.bindingId!);
    await expect(f.alice.iam.unbindRole(binding.id)).rejects.toThrow(
      /belongs to access grant .*access\.revoke/,
    );
    await expect(f.alice.iam.removeRole(binding.roleId)).rejects.toThrow(ConflictError);
    expect(await f.fleet.store.roleBindings.get(T, binding.id)).toBeDefined();
  });
});

describe('inventory, patch and compliance — accounts, policies, standards', () => {
  let f: Awaited<ReturnType<typeof fixture>>;
  beforeEach(async () => {
    f = await fixture();
  });

  it('accounts.remove — refused while servers belong to the account, naming how many; then removed', async () => {
    await f.alice.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
    for (const n of [1, 2]) {
      await f.alice.servers.add({
        id: `web-${n}`,
        name: `web-${n}`,
        accountId: 'dc',
        provider: 'ssh',
        address: `10.0.0.${n}`,
      });
    }
    await expect(f.alice.accounts.remove('dc')).rejects.toThrow(/account dc still has 2 servers/);
    expect(await f.alice.accounts.get('dc')).toMatchObject({ id: 'dc', name: 'dc' });

    await f.alice.servers.remove('web-1');
    await f.alice.servers.remove('web-2');
    await expect(f.alice.accounts.remove('dc', { expectedVersion: 7 })).rejects.toThrow(ConflictError);
    expect(await f.alice.accounts.remove('dc', { expectedVersion: 1 })).toBe(true);
    expect(await f.alice.accounts.get('dc')).toBeUndefined();
    expect(await f.alice.accounts.remove('dc')).toBe(false);
  });

  it('patch.policies.remove — plans made from it keep their content; refused while a plan of it executes', async () => {
    await f.alice.projects.add({ id: 'web', name: 'web', selector: { labels: { tier: 'web' } } });
    const policy = await f.alice.patch.policies.add({ id: 'pol', name: 'Policy', projectId: 'web' });
    const plan = (id: string, status: 'executing' | 'completed') =>
      f.fleet.store.patchPlans.create({
        ...sampleInput('patchPlans', T),
        id,
        policyId: policy.id,
        projectId: 'web',
        requestedBy: 'alice',
        status,
        hash: createHash('sha256').update(id).digest('hex'),
      });
    const done = await plan('plan-done', 'completed');
    const running = await plan('plan-running', 'executing');

    await expect(f.alice.patch.policies.remove('pol')).rejects.toThrow(/executing plan plan-running/);
    await f.fleet.store.patchPlans.update(T, running.id, { status: 'stopped' }, { expectedVersion: 1 });

    expect(await f.alice.patch.policies.remove('pol')).toBe(true);
    await expect(f.alice.patch.policies.get('pol')).rejects.toThrow(NotFoundError);
    expect(await f.alice.patch.getPlan(done.id)).toEqual(done);
    expect(await f.alice.patch.policies.remove('pol')).toBe(false);
  });

  it('compliance.standards.get — the standard; NotFoundError for an unknown id', async () => {
    const standard = await f.alice.compliance.standards.add({
      id: 'sec7',
      name: 'sec7',
      rule: { kind: 'max-pending-age', maxAgeDays: 7 },
    });
    expect(await f.alice.compliance.standards.get('sec7')).toEqual(standard);
    await expect(f.alice.compliance.standards.get('sec8')).rejects.toThrow(NotFoundError);
  });
});

describe('denied without the action', () => {
  let f: Awaited<ReturnType<typeof fixture>>;
  beforeEach(async () => {
    f = await fixture();
    await f.alice.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
    await f.alice.projects.add({ id: 'web', name: 'web', selector: { labels: { tier: 'web' } } });
    await f.alice.patch.policies.add({ id: 'pol', name: 'Policy', projectId: 'web' });
    await f.alice.compliance.standards.add({
      id: 'sec7',
      name: 'sec7',
      rule: { kind: 'scanned-within', days: 7 },
    });
  });

  const calls: [string, string, (s: FleetSession, bindingId: string) => Promise<unknown>][] = [
    ['iam.getPrincipal', 'iam.read', (s) => s.iam.getPrincipal('bob')],
    ['iam.removePrincipal', 'iam.write', (s) => s.iam.removePrincipal('bob')],
    ['iam.listBindings', 'iam.read', (s) => s.iam.listBindings()],
    ['iam.unbindRole', 'iam.write', (s, id) => s.iam.unbindRole(id)],
    [
      'iam.addRole',
      'iam.write',
      (s) => s.iam.addRole({ id: 'r', name: 'R', rules: [{ effect: 'allow', actions: ['*'] }] }),
    ],
    ['iam.getRole', 'iam.read', (s) => s.iam.getRole('iam-admin')],
    ['iam.listRoles', 'iam.read', (s) => s.iam.listRoles()],
    ['iam.removeRole', 'iam.write', (s) => s.iam.removeRole('iam-admin')],
    ['accounts.get', 'inventory.read', (s) => s.accounts.get('dc')],
    ['accounts.remove', 'inventory.write', (s) => s.accounts.remove('dc')],
    ['patch.policies.remove', 'patch.policy', (s) => s.patch.policies.remove('pol')],
    ['compliance.standards.get', 'patch.read', (s) => s.compliance.standards.get('sec7')],
  ];

  for (const [name, action, call] of calls) {
    it(`${name} — a principal without ${action} is refused, audited as denied, and nothing changes`, async () => {
      const [binding] = await bindingsOf(f.fleet, 'bob');
      const before = JSON.stringify([
        await f.fleet.store.principals.listAll(T),
        await f.fleet.store.roles.listAll(T),
        await f.fleet.store.roleBindings.listAll(T),
        await f.fleet.store.accounts.listAll(T),
        await f.fleet.store.patchPolicies.listAll(T),
      ]);
      const seq = await headSeq(f.fleet);
      await expect(call(f.nobody, binding!.id)).rejects.toThrow(AuthorizationError);
      expect(await recordsAfter(f.fleet, seq)).toContainEqual(
        expect.objectContaining({
          action,
          decision: 'deny',
          result: 'denied',
          actor: expect.objectContaining({ principalId: 'nobody' }),
        }),
      );
      const after = JSON.stringify([
        await f.fleet.store.principals.listAll(T),
        await f.fleet.store.roles.listAll(T),
        await f.fleet.store.roleBindings.listAll(T),
        await f.fleet.store.accounts.listAll(T),
        await f.fleet.store.patchPolicies.listAll(T),
      ]);
      expect(after).toBe(before);
    });
  }
});
