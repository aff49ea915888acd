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

  // After the test above labdemo is at 1.1-1 everywhere. Issue #11: exclusions hold for the
  // transaction the package manager resolves, not only for what the policy selected.
  it('planPatchRun — an excluded package that apt, dnf and zypper pull in as a new dependency blocks each server until its secondary approval', async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    const demo = { name: 'labdemo', version: '1.2', release: '1', depends: ['labhelper'] };
    const helper = { name: 'labhelper', version: '1.0', release: '1' };
    await lab.publish({
      apt: [{ suite: 'lab-security', packages: [demo, helper] }],
      rpm: {
        packages: [demo, helper],
        advisories: [
          {
            id: 'LAB-2026:0011',
            type: 'security',
            severity: 'Critical',
            title: 'labdemo 1.2',
            issued: '2026-02-01',
            packages: [demo],
          },
        ],
      },
      refresh: true,
    });
    await alice.patch.policies.add({
      id: 'sec-ex',
      name: 'Security, helpers excluded',
      projectId: 'lab',
      categories: ['security'],
      exclusions: ['labhelp*'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec-ex', maxScanAgeMs: 0 });
    for (const s of plan.servers) {
      expect(s.resolved, s.serverId).toEqual([]);
      expect(s.blocked, s.serverId).toContain(
        'labhelper 1.0-1 (excluded by labhelp*, a dependency of the selected updates)',
      );
      expect(
        s.heldBack.find((h) => h.name === 'labhelper'),
        s.serverId,
      ).toMatchObject({ needsSecondaryApproval: true });
    }
    const next = await bob.patch.approveExclusions(plan.id, ['labhelper']);
    for (const s of next.servers) {
      expect(s.blocked, s.serverId).toBeUndefined();
      expect(
        s.resolved.map((p) => `${p.name}=${p.version}${p.isNew ? ' (new)' : ''}`),
        s.serverId,
      ).toEqual(['labdemo=1.2-1', 'labhelper=1.0-1 (new)']);
    }
  }, 120_000);

  // Last in this file: it publishes a package that would remove labdemo.
  it('planPatchRun — a transaction that would remove a package blocks the server on apt, dnf and zypper', async () => {
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const tool = { name: 'labtool', version: '2.2', release: '1', replaces: ['labdemo'] };
    await lab.publish({
      apt: [{ suite: 'lab-security', packages: [tool] }],
      rpm: {
        packages: [tool],
        advisories: [
          {
            id: 'LAB-2026:0012',
            type: 'security',
            severity: 'Critical',
            title: 'labtool 2.2',
            issued: '2026-02-02',
            packages: [tool],
          },
        ],
      },
      refresh: true,
    });
    await alice.patch.policies.add({
      id: 'tool',
      name: 'Tool',
      projectId: 'lab',
      categories: ['security', 'bugfix', 'enhancement', 'other', 'unknown'],
      exclusions: ['labdemo', 'labhelper', 'labextra', 'labplain'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'tool', maxScanAgeMs: 0 });
    for (const s of plan.servers) {
      expect(
        s.selected.map((p) => p.name),
        s.serverId,
      ).toEqual(['labtool']);
      expect(s.resolved, s.serverId).toEqual([]);
      expect(s.blocked, s.serverId).toMatch(/remove.*labdemo/);
    }
    for (const name of ['rhel1', 'suse1']) {
      expect((await lab.host(name).exec(['rpm', '-q', 'labdemo'])).exitCode, name).toBe(0);
    }
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).not.toBe('');
  }, 120_000);
});
