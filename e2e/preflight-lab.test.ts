import { createSshAdapter } from '@fleetward/adapter-ssh';
import { createFleet, createMemoryStore, type Fleet } from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, expect, it } from 'vitest';
import { dpkgVersion, labAccess, labFleet, seed, TENANT } from './support/fleet.js';

/** Plans and approves the default security policy over the fleet's servers. */
async function approvedPlan(f: Fleet): Promise<string> {
  const alice = f.as({ tenantId: TENANT, principalId: 'alice' });
  await alice.patch.policies.add({ id: 'sec', name: 'Security', projectId: 'lab' });
  const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
  await f.as({ tenantId: TENANT, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
  return plan.id;
}

let lab: Lab | undefined;
let fleet: Fleet | undefined;
afterAll(async () => {
  await fleet?.close();
  await lab?.stop();
}, 120_000);

describeWithLab('preflight', () => {
  it('executePlan — a held package manager lock fails preflight naming the holder, and nothing is installed', async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
      ],
    });
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      rollout: {
        waves: [],
        maxConcurrency: 2,
        errorBudget: { count: 2 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
    const holds = await Promise.all(lab.hosts.map((h) => h.holdPackageLock()));
    try {
      const job = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.executePlan(plan.id);
      const tasks = Object.fromEntries(
        (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } })).map((t) => [
          t.serverId,
          t,
        ]),
      );
      for (const name of ['deb1', 'rhel1']) {
        expect(tasks[name], name).toMatchObject({
          status: 'failed',
          step: 'preflight',
          error: { code: 'COMMAND_FAILED' },
        });
        expect(tasks[name]!.error!.message).toMatch(/not ready: .*(held by process \d+|Could not get lock)/);
      }
    } finally {
      await Promise.all(holds.map((h) => h.release()));
    }
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.0-1');
    expect(
      (await lab.host('rhel1').exec(['rpm', '-q', '--qf', '%{VERSION}-%{RELEASE}', 'labdemo'])).stdout,
    ).toBe('1.0-1');
  }, 240_000);

  it('executePlan — unreachable repositories fail preflight without touching the host’s package lists', async () => {
    lab ??= await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
      ],
    });
    const access = labAccess(lab);
    await fleet?.close();
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      rollout: {
        waves: [],
        maxConcurrency: 2,
        errorBudget: { count: 2 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
    // Point both hosts at a port nothing listens on (on the lab's own gateway).
    const deb = lab.host('deb1');
    const rhel = lab.host('rhel1');
    const listsBefore = (await deb.exec(['sh', '-c', 'ls -l /var/lib/apt/lists | md5sum'])).stdout;
    const sources = await deb.readFile('/etc/apt/sources.list');
    await deb.writeFile(
      '/etc/apt/sources.list',
      `deb [trusted=yes] http://${lab.gateway}:9/apt lab-security main\n`,
    );
    const repo = (await rhel.exec(['sh', '-c', 'ls /etc/yum.repos.d/*.repo'])).stdout.trim().split('\n')[0]!;
    await rhel.exec(['sed', '-i', `s#^baseurl=.*#baseurl=http://${lab.gateway}:9/rpm#`, repo]);
    const job = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.executePlan(plan.id);
    const tasks = await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } });
    for (const t of tasks) {
      expect(t, t.serverId).toMatchObject({ status: 'failed', step: 'preflight' });
      expect(t.error!.message, t.serverId).toContain('repositories are not reachable');
    }
    expect((await deb.exec(['sh', '-c', 'ls -l /var/lib/apt/lists | md5sum'])).stdout).toBe(listsBefore);
    // apt ignores lists of sources it no longer names: the tests below need them back.
    await deb.writeFile('/etc/apt/sources.list', sources);
  }, 240_000);

  // The tests below share the lab of the ones above (deb1 still at labdemo 1.0-1).
  it('executePlan — a full disk fails preflight with the free space it found, and nothing is installed', async () => {
    lab ??= await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
    const access = labAccess(lab);
    access.hosts = access.hosts.filter((h) => h.name === 'deb1');
    await fleet?.close();
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
    const planId = await approvedPlan(fleet);
    const full = await lab.host('deb1').fillDisk();
    try {
      const job = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.executePlan(planId);
      const task = (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } }))[0]!;
      expect(task).toMatchObject({ status: 'failed', step: 'preflight', error: { code: 'COMMAND_FAILED' } });
      expect(task.error!.message).toMatch(/only \d+ MiB free on \/, need 200/);
    } finally {
      await full.release();
    }
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.0-1');
  }, 60_000);

  it('executePlan — a login without sudo rights fails preflight with sudo’s answer, and nothing is installed', async () => {
    lab ??= await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
    const host = lab.host('deb1');
    const user = host.users['labuser']!;
    expect(user.sudo).toBe('none');
    const access = labAccess(lab);
    access.hosts = access.hosts.filter((h) => h.name === 'deb1');
    await fleet?.close();
    fleet = createFleet({
      store: createMemoryStore(),
      adapters: [
        createSshAdapter({
          credentials: { username: user.login, privateKey: user.privateKey },
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: { [host.address]: access.hosts[0]!.fingerprints },
          connectTimeoutMs: 5000,
        }),
      ],
    });
    await seed(fleet, access);
    const planId = await approvedPlan(fleet);
    const job = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.executePlan(planId);
    const task = (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } }))[0]!;
    expect(task).toMatchObject({ status: 'failed', step: 'preflight', error: { code: 'COMMAND_FAILED' } });
    // The ssh adapter recognises sudo's refusal itself; other adapters hand back its exit code.
    expect(task.error!.message).toMatch(/^preflight: sudo on deb1 .*requires a password for labuser/);
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.0-1');
  }, 60_000);
});
