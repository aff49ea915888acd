import { existsSync } from 'node:fs';
import {
  AuthorizationError,
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  planHash,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// Planning runs a real install simulation (`apt-get -s install name=version`) on this machine:
// read-only, nothing is installed. The lab tests cover RPM hosts and real installs.
const hasApt = existsSync('/usr/bin/apt-get');
if (!hasApt && process.env['FLEETWARD_REQUIRE_LAB'] === '1')
  throw new Error('FLEETWARD_REQUIRE_LAB=1 but apt-get is missing');

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

describe.skipIf(!hasApt)('patch plans on this machine', () => {
  it('planPatchRun — pins the selected security patches with their resolved transaction and a hash of the content', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'local',
      categories: ['security'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    const scan = (await alice.latestScans({ serverIds: ['localhost'] }))[0]!.scan!;
    const security = scan.patches.filter((p) => p.category === 'security' && !p.held && !p.keptBack);
    const server = plan.servers[0]!;
    expect(server.blocked).toBeUndefined();
    expect(server.selected.map((p) => `${p.name}=${p.version}`).sort()).toEqual(
      security.map((p) => `${p.name}=${p.candidateVersion}`).sort(),
    );
    for (const p of server.selected)
      expect(server.resolved).toContainEqual(expect.objectContaining({ name: p.name, version: p.version }));
    expect(server.heldBack.every((h) => h.reason.startsWith('category'))).toBe(true);
    expect(plan).toMatchObject({
      status: 'awaiting-approval',
      requestedBy: 'alice',
      waves: [{ name: 'all', serverIds: ['localhost'] }],
    });
    expect(plan.hash).toBe(planHash(plan));
  });

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

  it('approveExclusions — an excluded package waits for a second approver, and the new plan needs approval again', async () => {
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const bob = fleet.as({ tenantId: T, principalId: 'bob' });
    await alice.servers.list();
    await alice.scan({ serverIds: ['localhost'] });
    const scan = (await alice.latestScans())[0]!.scan!;
    const target = scan.patches.find((p) => p.category === 'security' && !p.held && !p.keptBack);
    if (!target) return; // nothing security-relevant pending here; the lab test covers exclusions
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'local',
      exclusions: [target.name],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    const held = plan.servers[0]!.heldBack.find((h) => h.name === target.name);
    expect(held).toMatchObject({ needsSecondaryApproval: true, reason: `excluded by ${target.name}` });
    expect(plan.servers[0]!.selected.some((p) => p.name === target.name)).toBe(false);

    await expect(alice.patch.approveExclusions(plan.id, [target.name])).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    await expect(bob.patch.approveExclusions(plan.id, ['not-excluded'])).rejects.toBeInstanceOf(
      ValidationError,
    );
    const next = await bob.patch.approveExclusions(plan.id, [target.name]);
    expect(next.id).not.toBe(plan.id);
    expect(next.hash).not.toBe(plan.hash);
    expect(next.requestedBy).toBe('alice');
    expect(next.servers[0]!.selected).toContainEqual(
      expect.objectContaining({ name: target.name, version: target.candidateVersion }),
    );
    expect((await fleet.store.patchPlans.require(T, plan.id)).status).toBe('superseded');
    await expect(bob.patch.approvePlan(plan.id, { hash: plan.hash })).rejects.toBeInstanceOf(ConflictError);
    await expect(alice.patch.approvePlan(next.id, { hash: next.hash })).rejects.toBeInstanceOf(
      AuthorizationError,
    );
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
