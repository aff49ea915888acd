import { createMemoryStore, type Fleet, verifyAuditChain } from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dpkgVersion, labAccess, labFleet, seed, TENANT } from './support/fleet.js';

// Issue #4's first check: one plan over three flavours lists exactly the seeded security patches,
// and executing it installs exactly those versions on apt, dnf and zypper hosts.
describeWithLab('patching debian, rhel and suse hosts with one plan', () => {
  let lab: Lab;
  let fleet: Fleet;

  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
        { name: 'suse1', flavour: 'suse' },
      ],
    });
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
  }, 240_000);
  afterAll(async () => {
    await fleet?.close();
    await lab?.stop();
  }, 120_000);

  it('planPatchRun/executePlan — the security plan pins labdemo 1.1-1 everywhere and installs exactly that', async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      categories: ['security'],
      rollout: {
        waves: [],
        maxConcurrency: 3,
        errorBudget: { count: 0 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    const pins = Object.fromEntries(
      plan.servers.map((s) => [s.serverId, s.resolved.map((p) => `${p.name}=${p.version}`)]),
    );
    expect(pins).toEqual({ deb1: ['labdemo=1.1-1'], rhel1: ['labdemo=1.1-1'], suse1: ['labdemo=1.1-1'] });
    for (const s of plan.servers) expect(s.blocked, s.serverId).toBeUndefined();
    const held = Object.fromEntries(
      plan.servers.map((s) => [s.serverId, s.heldBack.map((h) => h.name).sort()]),
    );
    expect(held).toEqual({
      deb1: ['labtool'],
      rhel1: ['labextra', 'labplain', 'labtool'],
      suse1: ['labextra', 'labplain', 'labtool'],
    });

    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id);
    const tasks = await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } });
    expect(job.status, JSON.stringify(tasks.map((t) => t.error))).toBe('succeeded');

    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.1-1');
    for (const name of ['rhel1', 'suse1']) {
      const q = await lab
        .host(name)
        .exec(['rpm', '-q', '--qf', '%{VERSION}-%{RELEASE}', 'labdemo', 'labtool']);
      expect(q.stdout, name).toBe('1.1-12.0-1');
    }
    expect(verifyAuditChain(await fleet.store.audit.list(TENANT, { limit: 10_000 })).ok).toBe(true);
  }, 300_000);
});
