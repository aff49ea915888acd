import {
  AuthorizationError,
  ConflictError,
  createMemoryStore,
  type Fleet,
  planHash,
  ValidationError,
} from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

// Planning runs a real install simulation (`apt-get -s install name=version`) on a lab host,
// which always has pending patches (security: labdemo; other: labtool): read-only, nothing is
// installed. These tests used to run on this machine and return early when nothing was pending.
describeWithLab('patch plans on a lab host', () => {
  let lab: Lab;
  let fleet: Fleet;
  beforeAll(async () => {
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
  }, 120_000);
  afterAll(() => lab?.stop(), 120_000);
  beforeEach(async () => {
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
    await fleet.store.principals.create({
      tenantId: TENANT,
      id: 'carol',
      name: 'Carol',
      kind: 'human',
      affiliation: 'employee',
    });
    await fleet.store.roleBindings.create({ tenantId: TENANT, principalId: 'carol', roleId: 'tenant-admin' });
  });
  afterEach(() => fleet?.close());

  const pendingSecurity = async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.scan({ serverIds: ['deb1'] });
    const scan = (await alice.latestScans({ serverIds: ['deb1'] }))[0]!.scan!;
    const security = scan.patches.filter((p) => p.category === 'security' && !p.held && !p.keptBack);
    // The lab publishes a security update: a plan over nothing would prove nothing.
    expect(security.map((p) => p.name)).toContain('labdemo');
    return security;
  };

  it('planPatchRun — pins the selected security patches with their resolved transaction and a hash of the content', async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const security = await pendingSecurity();
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      categories: ['security'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    const server = plan.servers[0]!;
    expect(server.blocked).toBeUndefined();
    expect(server.selected.length).toBeGreaterThan(0);
    expect(server.selected.map((p) => `${p.name}=${p.version}`).sort()).toEqual(
      security.map((p) => `${p.name}=${p.candidateVersion}`).sort(),
    );
    for (const p of server.selected)
      expect(server.resolved).toContainEqual(expect.objectContaining({ name: p.name, version: p.version }));
    expect(server.heldBack.length).toBeGreaterThan(0);
    expect(server.heldBack.every((h) => h.reason.startsWith('category'))).toBe(true);
    expect(plan).toMatchObject({
      status: 'awaiting-approval',
      requestedBy: 'alice',
      waves: [{ name: 'all', serverIds: ['deb1'] }],
    });
    expect(plan.hash).toBe(planHash(plan));
  }, 120_000);

  it('approveExclusions — an excluded package waits for a second approver, and the new plan needs approval again', async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    const target = (await pendingSecurity()).find((p) => p.name === 'labdemo')!;
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
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
    expect((await fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('superseded');
    await expect(bob.patch.approvePlan(plan.id, { hash: plan.hash })).rejects.toBeInstanceOf(ConflictError);
    await expect(alice.patch.approvePlan(next.id, { hash: next.hash })).rejects.toBeInstanceOf(
      AuthorizationError,
    );
  }, 120_000);
});
