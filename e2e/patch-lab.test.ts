import { createHash } from 'node:crypto';
import { createMemoryStore, type Fleet, verifyAuditChain } from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterEach, expect, it, vi } from 'vitest';
import { dpkgVersion, labAccess, labFleet, seed, TENANT } from './support/fleet.js';

let lab: Lab | undefined;
let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  await lab?.stop();
  fleet = undefined;
  lab = undefined;
}, 120_000);

async function setup(hosts: string[]) {
  lab = await startLab({ hosts: hosts.map((name) => ({ name, flavour: 'debian' as const })) });
  const access = labAccess(lab);
  fleet = labFleet(access, createMemoryStore());
  await seed(fleet, access);
  return {
    lab,
    fleet,
    alice: fleet.as({ tenantId: TENANT, principalId: 'alice' }),
    bob: fleet.as({ tenantId: TENANT, principalId: 'bob' }),
  };
}

describeWithLab('patching lab hosts', () => {
  it('executePlan — installs exactly the approved versions; a host that drifted after approval is not patched', async () => {
    const { lab, fleet, alice, bob } = await setup(['deb1', 'deb2']);
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      categories: ['security'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    for (const s of plan.servers) {
      expect(s.resolved).toEqual([{ name: 'labdemo', version: '1.1-1', arch: 'all', isNew: false }]);
      expect(s.heldBack.map((h) => `${h.name} ${h.reason}`)).toEqual([
        'labtool category other not in policy',
      ]);
    }
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    await lab.publish({
      apt: [{ suite: 'lab-security', packages: [{ name: 'labdemo', version: '1.2', release: '1' }] }],
    });
    await lab.host('deb2').refreshPackageLists();

    const job = await bob.patch.executePlan(plan.id);
    const tasks = Object.fromEntries(
      (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } })).map((t) => [t.serverId, t]),
    );
    expect(tasks['deb1']).toMatchObject({ status: 'succeeded', step: 'done' });
    expect(tasks['deb2']).toMatchObject({ status: 'skipped', error: { code: 'DRIFTED' } });
    expect(tasks['deb2']!.error!.message).toContain('labdemo 1.1-1 -> 1.2-1');
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.1-1');
    expect(await dpkgVersion(lab, 'deb1', 'labtool')).toBe('2.0-1');
    expect(await dpkgVersion(lab, 'deb2', 'labdemo')).toBe('1.0-1');
    expect(job.status).toBe('partial');
    const audit = await fleet.store.audit.list(TENANT);
    expect(verifyAuditChain(audit).ok).toBe(true);
    expect(audit.filter((r) => r.action === 'patch.execute').map((r) => r.result)).toEqual([
      'started',
      'failure',
    ]);
  }, 240_000);

  it('executePlan — reboot if-required: the host reboots, comes back with a new boot id, and passes verification', async () => {
    const { lab, fleet, alice, bob } = await setup(['deb1']);
    await alice.patch.policies.add({ id: 'sec', name: 'Security', projectId: 'lab', reboot: 'if-required' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const host = lab.host('deb1');
    const before = await host.bootId();
    // What a kernel package's postinst does on Debian.
    await host.writeFile('/var/run/reboot-required', '*** System restart required ***\n');
    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 500, rebootTimeoutMs: 120_000 });
    expect(job.status).toBe('succeeded');
    const task = (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } }))[0]!;
    expect(task.details).toMatchObject({ bootIdBefore: before });
    const after = await host.bootId();
    expect(after).not.toBe(before);
    expect(task.details!['bootIdAfter']).toBe(after);
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.1-1');
  }, 240_000);

  it('executePlan — with an error budget of 1, two broken hosts in wave 1 stop the run and wave 2 never starts', async () => {
    const { lab, fleet, alice, bob } = await setup(['w1a', 'w1b', 'w1c', 'w2a']);
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      rollout: {
        waves: [{ name: 'first', selector: { ids: ['w1a', 'w1b', 'w1c'] } }],
        maxConcurrency: 3,
        errorBudget: { count: 1 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    expect(plan.waves).toEqual([
      { name: 'first', serverIds: ['w1a', 'w1b', 'w1c'] },
      { name: 'remaining', serverIds: ['w2a'] },
    ]);
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    await lab.host('w1a').cutNetwork();
    await lab.host('w1b').cutNetwork();
    const escalations: string[] = [];
    fleet.events.on('patch.escalation', (e) => escalations.push(`${e.kind}:${e.serverId ?? ''}`));
    const job = await bob.patch.executePlan(plan.id);
    expect(job.status).toBe('stopped');
    expect(job.reason).toContain('error budget spent: 2 failed servers, at most 1 allowed');
    const tasks = Object.fromEntries(
      (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } })).map((t) => [t.serverId, t]),
    );
    expect(tasks['w1a']!.status).toBe('failed');
    expect(tasks['w1b']!.status).toBe('failed');
    expect(tasks['w2a']).toMatchObject({
      status: 'skipped',
      error: { message: 'not started: the error budget was spent' },
    });
    expect(await dpkgVersion(lab, 'w2a', 'labdemo')).toBe('1.0-1');
    expect(escalations).toEqual(
      expect.arrayContaining(['server-failed:w1a', 'server-failed:w1b', 'run-stopped:']),
    );
  }, 240_000);

  it('approveExclusions — an excluded package is held back until a second approver approves it, then installed', async () => {
    const { lab, fleet, alice, bob } = await setup(['deb1']);
    await alice.patch.policies.add({
      id: 'all',
      name: 'All',
      projectId: 'lab',
      categories: ['security', 'other'],
      exclusions: ['labtool'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'all' });
    expect(plan.servers[0]!.resolved.map((p) => p.name)).toEqual(['labdemo']);
    expect(plan.servers[0]!.heldBack).toEqual([
      { name: 'labtool', version: '2.1-1', reason: 'excluded by labtool', needsSecondaryApproval: true },
    ]);
    const next = await bob.patch.approveExclusions(plan.id, ['labtool']);
    expect(next.servers[0]!.resolved.map((p) => `${p.name}=${p.version}`)).toEqual([
      'labdemo=1.1-1',
      'labtool=2.1-1',
    ]);
    await bob.patch.approvePlan(next.id, { hash: next.hash });
    const job = await bob.patch.executePlan(next.id);
    expect(job.status).toBe('succeeded');
    expect(await dpkgVersion(lab, 'deb1', 'labtool')).toBe('2.1-1');
    expect((await fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('superseded');
  }, 240_000);

  it('executePlan — sshd dying while a server is being worked on fails that server without hanging', async () => {
    const { lab, fleet, alice, bob } = await setup(['deb1']);
    const body = 'sleep 30\n';
    await fleet.store.scripts.create({
      tenantId: TENANT,
      id: 'slow-pre',
      name: 'slow-pre',
      revision: 1,
      interpreter: 'sh',
      body,
      contentHash: createHash('sha256').update(body).digest('hex'),
      createdBy: 'alice',
    });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      preScripts: ['slow-pre'],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    fleet.events.on('patch.server.step', (e) => {
      if (e.step !== 'pre-scripts') return;
      // Kill sshd once the pre-script runs on the host, so it dies mid-command.
      const host = lab.host('deb1');
      void vi
        .waitFor(async () => expect((await host.exec(['pgrep', '-x', 'sleep'])).exitCode).toBe(0), {
          timeout: 60_000,
        })
        .then(() => host.exec(['pkill', '-KILL', 'sshd']));
    });
    const job = await bob.patch.executePlan(plan.id, { commandTimeoutMs: 120_000 });
    // The default error budget is 0: one failed server spends it.
    expect(job.status).toBe('stopped');
    const task = (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } }))[0]!;
    expect(task).toMatchObject({
      status: 'failed',
      step: 'pre-scripts',
      error: { code: 'TRANSPORT_FAILED' },
    });
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.0-1');
  }, 240_000);

  it('executePlan — health checks gate each server; a spent budget pauses the run, which resumes after acknowledging', async () => {
    const { lab, fleet, alice, bob } = await setup(['h1', 'h2']);
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      healthChecks: [
        { type: 'command', argv: ['test', '-e', '/etc/fleetward-healthy'] },
        { type: 'http', url: 'http://{address}:8080/', expectStatus: 200 },
      ],
      rollout: {
        waves: [{ name: 'first', selector: { ids: ['h1'] } }],
        maxConcurrency: 1,
        errorBudget: { count: 0 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'pause',
      },
    });
    const h2 = lab.host('h2');
    await h2.writeFile('/etc/fleetward-healthy', 'yes\n');
    await h2.sh(`cd /tmp && nohup python3 -m http.server 8080 --bind ${h2.address} >/dev/null 2>&1 &`);
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });

    const paused = await bob.patch.executePlan(plan.id);
    expect(paused).toMatchObject({
      status: 'pending',
      reason: expect.stringContaining('paused: error budget spent'),
    });
    const tasks = async () =>
      Object.fromEntries(
        (await fleet.store.taskResults.list(TENANT, { where: { jobId: paused.id } })).map((t) => [
          t.serverId,
          t,
        ]),
      );
    expect((await tasks())['h1']).toMatchObject({
      status: 'failed',
      step: 'health',
      error: { code: 'COMMAND_FAILED' },
    });
    expect((await tasks())['h2']!.status).toBe('pending');
    expect((await fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('executing');

    const resumed = await bob.patch.executePlan(plan.id, { acknowledgeFailures: true });
    expect(resumed.status).toBe('partial');
    expect((await tasks())['h2']).toMatchObject({ status: 'succeeded', step: 'done' });
    expect(await dpkgVersion(lab, 'h2', 'labdemo')).toBe('1.1-1');
  }, 240_000);

  it('executePlan — a policy that requires backups fails preflight on an adapter that cannot snapshot, and installs nothing', async () => {
    const { lab, fleet, alice, bob } = await setup(['b1']);
    await alice.patch.policies.add({ id: 'sec', name: 'Security', projectId: 'lab', backups: 'pre' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id);
    const task = (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } }))[0]!;
    expect(task).toMatchObject({
      status: 'failed',
      step: 'preflight',
      error: { code: 'CAPABILITY_MISSING' },
    });
    expect(task.error!.message).toContain('cannot snapshot');
    expect(await dpkgVersion(lab, 'b1', 'labdemo')).toBe('1.0-1');
  }, 240_000);
});
