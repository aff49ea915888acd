import { createAwsAdapter } from '@fleetward/adapter-aws';
import { createFleet, createMemoryStore, type Fleet } from '@fleetward/core';
import { type AwsFake, startAwsFake } from '@fleetward/testkit/aws';
import { answerWindowsScript, type WinRmFakeWindowsUpdate } from '@fleetward/testkit/winrm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

// Issue 15: the Windows Update driver also serves Windows instances reached through SSM
// (AWS-RunPowerShellScript). The fake's Windows instance answers Fleetward's Windows scripts from
// the same Windows Update model the WinRM fake uses, so the whole patch flow runs over SSM.
const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-never-shown',
};
const T = 't1';
const CU = '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d';
const DEFENDER = 'e0789628-ce08-4437-be74-2495b842f43b';

let fake: AwsFake;
let fleet: Fleet | undefined;

beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
  await fake?.close();
});

describe('Windows Update over SSM', () => {
  it('scan, plan, execute — a Windows instance is scanned, patched with exactly the pinned KB, restarted and verified through AWS-RunPowerShellScript', async () => {
    const model: WinRmFakeWindowsUpdate = {
      offered: [
        {
          id: CU,
          revision: 1,
          title: '2026-11 Cumulative Update for Microsoft server operating system version 21H2 (KB5046616)',
          kb: ['5046616'],
          classification: 'Security Updates',
          severity: 'Critical',
          rebootBehavior: 1,
        },
        {
          id: DEFENDER,
          title: 'Security Intelligence Update for Microsoft Defender Antivirus - KB2267602',
          kb: ['2267602'],
          classification: 'Definition Updates',
        },
      ],
      lastBootTime: '2026-11-01T06:00:00Z',
    };
    const documents = new Set<string>();
    fake = await startAwsFake({
      accounts: [A],
      defaultRunner: async (script, { documentName }) => {
        documents.add(documentName);
        const answer = answerWindowsScript(model, script);
        if (!answer) return { exitCode: 1, stdout: '', stderr: 'not a script this instance knows' };
        return {
          exitCode: answer.exitCode ?? 0,
          stdout: String(answer.stdout ?? ''),
          stderr: String(answer.stderr ?? ''),
        };
      },
    });
    const instance = fake.addInstance({ accountId: A.id, region: 'us-east-1', platform: 'windows' });
    fleet = createFleet({
      store: createMemoryStore(),
      adapters: [
        createAwsAdapter({
          endpoint: fake.endpoint,
          credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
          pollIntervalMs: 10,
        }),
      ],
    });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'T' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    await fleet.store.principals.create({
      tenantId: T,
      id: 'bob',
      name: 'Bob',
      kind: 'human',
      affiliation: 'employee',
    });
    await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const bob = fleet.as({ tenantId: T, principalId: 'bob' });
    await alice.accounts.add({ id: 'prod', name: 'prod', provider: 'aws', regions: ['us-east-1'] });
    await alice.servers.add({
      id: 'ec2-win',
      name: 'ec2-win',
      accountId: 'prod',
      provider: 'aws',
      providerId: instance.instanceId,
      region: 'us-east-1',
      os: { family: 'windows', id: 'windows' },
    });

    const scan = await alice.scan({ serverIds: ['ec2-win'] });
    expect(scan.job.status, JSON.stringify(scan.results[0]?.error)).toBe('succeeded');
    expect(scan.results[0]!.os).toMatchObject({ family: 'windows', packageManager: 'windows-update' });
    expect(scan.results[0]!.patches.map((p) => `${p.name} ${p.category}/${p.severity}`).sort()).toEqual([
      'KB2267602 other/unspecified',
      'KB5046616 security/critical',
    ]);

    await alice.projects.add({ id: 'p', name: 'P', selector: { all: true } });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'p',
      categories: ['security'],
      reboot: 'if-required',
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    expect(plan.servers[0]!.resolved.map((p) => `${p.name}=${p.version}`)).toEqual([`KB5046616=${CU}.1`]);
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 50 });
    const [task] = await fleet.store.taskResults.list(T, { where: { jobId: job.id } });
    expect(job.status, JSON.stringify(task?.error)).toBe('succeeded');
    expect(model.installRequests).toEqual([[`KB5046616=${CU}.1`]]);
    expect(model.offered.map((u) => u.id)).toEqual([DEFENDER]);
    expect(model.restarts).toBe(1);
    expect(task!.details).toMatchObject({ bootIdBefore: '2026-11-01T06:00:00.0000000Z' });
    expect(task!.details!['bootIdAfter']).not.toBe('2026-11-01T06:00:00.0000000Z');
    expect([...documents]).toEqual(['AWS-RunPowerShellScript']);
  }, 60_000);
});
