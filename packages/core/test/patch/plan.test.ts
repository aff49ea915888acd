import {
  AuthorizationError,
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// Planning runs a real install simulation (`apt-get -s install name=version`) on this machine:
// read-only, nothing is installed. What needs pending patches runs on a lab host
// (e2e/plan-lab.test.ts), where there always are some; the lab tests cover real installs.

const T = 'acme';
let fleet: Fleet;

beforeEach(async () => {
  fleet = createFleet({ store: createMemoryStore(), adapters: [createLocalAdapter()] });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const s = fleet.store;
  for (const id of ['bob', 'carol']) {
    await s.principals.create({ tenantId: T, id, name: id, kind: 'human', affiliation: 'employee' });
    await s.roleBindings.create({ tenantId: T, principalId: id, roleId: 'tenant-admin' });
  }
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  await alice.servers.add({
    id: 'localhost',
    name: 'localhost',
    accountId: 'local',
    provider: 'local',
    labels: { role: 'workstation' },
  });
  await alice.projects.add({ id: 'local', name: 'Local', selector: { ids: ['localhost'] } });
});
afterEach(() => fleet.close());

describeIfAvailable('patch plans on this machine', unavailableWithout({ commands: ['apt-get'] }), () => {
  it('approvePlan — the requester cannot approve, a stale hash is refused, n-of-m approvers make it approved', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'local',
      approvers: { principalIds: ['alice', 'bob', 'carol'], required: 2 },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await expect(alice.patch.approvePlan(plan.id, { hash: plan.hash })).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    const bob = fleet.as({ tenantId: T, principalId: 'bob' });
    await expect(bob.patch.approvePlan(plan.id, { hash: 'f'.repeat(64) })).rejects.toBeInstanceOf(
      ConflictError,
    );
    expect((await bob.patch.approvePlan(plan.id, { hash: plan.hash })).status).toBe('awaiting-approval');
    await expect(bob.patch.approvePlan(plan.id, { hash: plan.hash })).rejects.toBeInstanceOf(ConflictError);
    const approved = await fleet
      .as({ tenantId: T, principalId: 'carol' })
      .patch.approvePlan(plan.id, { hash: plan.hash });
    expect(approved.status).toBe('approved');
    expect(approved.approvals.map((a) => a.principalId)).toEqual(['bob', 'carol']);
    const audit = await fleet.store.audit.list(T);
    expect(audit.filter((r) => r.action === 'patch.approve').map((r) => r.result)).toEqual([
      'denied',
      'failure',
      'success',
      'failure',
      'success',
    ]);
    expect(verifyAuditChain(audit).ok).toBe(true);
  });

  it('planPatchRun — refuses targets outside the policy’s project', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.servers.add({ id: 'other', name: 'other', accountId: 'local', provider: 'local' });
    await alice.patch.policies.add({ id: 'sec', name: 'Security', projectId: 'local' });
    const error = await alice.patch
      .planPatchRun({ policyId: 'sec', targets: { serverIds: ['other'] } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain('outside project local');
  });
});

describe('patch policies', () => {
  it('policies.add — a bad window is a ValidationError and no policy is stored', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const error = await alice.patch.policies
      .add({
        id: 'bad',
        name: 'Bad',
        projectId: 'local',
        window: { cron: '0 2 * * 0', durationMinutes: 60, timeZone: 'Nowhere/Else' },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).paths).toEqual(['timeZone']);
    expect(await fleet.store.patchPolicies.get(T, 'bad')).toBeUndefined();
  });
});
