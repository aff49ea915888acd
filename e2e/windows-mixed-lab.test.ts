import { createWinRmAdapter } from '@fleetward/adapter-winrm';
import { createMemoryStore, type Fleet, renderHtml, renderJson, verifyAuditChain } from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { startWinRmFake, type WinRmFake, type WinRmFakeWindowsUpdate } from '@fleetward/testkit/winrm';
import { afterAll, expect, it } from 'vitest';
import { dpkgVersion, labAccess, labFleet, seed, TENANT } from './support/fleet.js';

const DAY = 86_400_000;
const USER = { username: 'Administrator', password: 'S3cret!pass' };
const CU = '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d';
const DOTNET = 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab';
const DEFENDER = 'e0789628-ce08-4437-be74-2495b842f43b';

let lab: Lab | undefined;
let fleet: Fleet | undefined;
let win: WinRmFake | undefined;
afterAll(async () => {
  await fleet?.close();
  await win?.close();
  await lab?.stop();
}, 120_000);

// Issue 15's check: one plan over a mixed fleet (a lab Debian host over SSH, an emulated Windows
// Server over WinRM) pins exact packages and KBs, installs exactly those, restarts the Windows host
// because its cumulative update needs it, and verifies; compliance and the HTML report show the
// Windows server with its KBs before, and both servers compliant after.
describeWithLab('a mixed Linux and Windows fleet', () => {
  it('plan, execute, compliance and report — packages and KBs pinned, installed exactly, the restart proven, both compliant after', async () => {
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
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
          id: DOTNET,
          revision: 201,
          title: '2026-11 Cumulative Update for .NET Framework 3.5 and 4.8 (KB5045935)',
          kb: ['5045935'],
          classification: 'Security Updates',
          severity: 'Important',
        },
        {
          id: DEFENDER,
          title: 'Security Intelligence Update for Microsoft Defender Antivirus - KB2267602',
          kb: ['2267602'],
          classification: 'Definition Updates',
        },
      ],
      lastBootTime: '2026-11-01T06:00:00Z',
      restartMs: 500,
    };
    win = await startWinRmFake({ users: [USER], windowsUpdate: model });
    const clock = new ManualClock(new Date());
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore({ clock }), clock, undefined, [
      createWinRmAdapter({ credentials: USER, ca: win.ca }),
    ]);
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    await alice.servers.add({
      id: 'win1',
      name: 'win1',
      accountId: 'dc',
      provider: 'winrm',
      address: '127.0.0.1',
      port: win.port,
      labels: { flavour: 'windows' },
    });
    await alice.compliance.standards.add({
      id: 'sec7',
      name: 'Security within 7 days',
      rule: { kind: 'max-pending-age', categories: ['security'], maxAgeDays: 7 },
    });

    // Seen for 8 days: both servers break the standard, each with its own kind of update named.
    await alice.scan({ serverIds: ['deb1', 'win1'] });
    clock.advance(8 * DAY);
    const scanned = await alice.scan({ serverIds: ['deb1', 'win1'] });
    expect(scanned.job.status, JSON.stringify(scanned.results.map((r) => r.error))).toBe('succeeded');
    const before = await alice.compliance.evaluate({ serverIds: ['deb1', 'win1'] });
    const offending = Object.fromEntries(
      before.map((s) => [
        s.serverId,
        s.results.flatMap((r) => r.reasons.flatMap((x) => x.patches ?? [])).map((p) => p.name),
      ]),
    );
    expect(before.map((s) => s.status)).toEqual(['non-compliant', 'non-compliant']);
    expect(offending['deb1']).toEqual(['labdemo']);
    expect([...offending['win1']!].sort()).toEqual(['KB5045935', 'KB5046616']);

    const report = await alice.reports.compliance({ kind: 'project', id: 'lab' });
    expect(report.totals).toEqual({ servers: 2, compliant: 0, nonCompliant: 2, unknown: 0 });
    const html = renderHtml(report);
    for (const text of [
      'win1',
      'KB5046616',
      'KB5045935',
      'labdemo',
      'Microsoft Windows Server 2022 Datacenter',
    ]) {
      expect(html, text).toContain(text);
    }
    const json = JSON.parse(renderJson(report)) as { patches: { name: string; ageDays: number }[] };
    expect(json.patches.find((p) => p.name === 'KB5046616')?.ageDays).toBe(8);

    // One plan: exact pins for both kinds of host.
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      categories: ['security'],
      reboot: 'if-required',
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    const pins = Object.fromEntries(
      plan.servers.map((s) => [s.serverId, s.resolved.map((p) => `${p.name}=${p.version}`).sort()]),
    );
    expect(plan.servers.map((s) => s.blocked)).toEqual([undefined, undefined]);
    expect(pins).toEqual({
      deb1: ['labdemo=1.1-1'],
      win1: [`KB5045935=${DOTNET}.201`, `KB5046616=${CU}.1`],
    });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 250, rebootTimeoutMs: 60_000 });
    const tasks = Object.fromEntries(
      (await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } })).map((t) => [t.serverId, t]),
    );
    expect(job.status, JSON.stringify(Object.values(tasks).map((t) => t.error))).toBe('succeeded');

    // Exactly what was pinned, on each host.
    expect(await dpkgVersion(lab, 'deb1', 'labdemo')).toBe('1.1-1');
    expect(model.installRequests?.map((r) => [...r].sort())).toEqual([
      [`KB5045935=${DOTNET}.201`, `KB5046616=${CU}.1`],
    ]);
    expect(model.offered.map((u) => u.id)).toEqual([DEFENDER]);
    expect(model.restarts).toBe(1);
    expect(tasks['win1']!.details).toMatchObject({ bootIdBefore: '2026-11-01T06:00:00.0000000Z' });
    expect(tasks['win1']!.details!['bootIdAfter']).not.toBe(tasks['win1']!.details!['bootIdBefore']);
    expect(tasks['deb1']!.details!['bootIdAfter']).toBeUndefined();

    clock.advance(DAY);
    await alice.scan({ serverIds: ['deb1', 'win1'] });
    const after = await alice.compliance.evaluate({ serverIds: ['deb1', 'win1'] });
    expect(after.map((s) => s.status)).toEqual(['compliant', 'compliant']);
    expect(verifyAuditChain(await fleet.store.audit.list(TENANT, { limit: 10_000 })).ok).toBe(true);
  }, 300_000);
});
