import type { Fleet, FleetSession } from '@fleetward/core';
import {
  startWinRmFake,
  type WinRmFake,
  type WinRmFakeUpdate,
  type WinRmFakeWindowsUpdate,
} from '@fleetward/testkit/winrm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { adapterFor, addWindowsServer, T, USER, windowsFleet } from './support/fleet.js';

// Issue 15, Windows Update install: plans pin updates by UpdateID and revision, execution installs
// exactly those through the (emulated) SYSTEM task, restarts when an update needs it and proves the
// restart by the last boot time, then verifies the installed identities. Drift (a superseded
// update), install failures with HRESULTs and a failed preflight stop the server, never the rule.

const CU: WinRmFakeUpdate = {
  id: '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d',
  revision: 1,
  title: '2026-11 Cumulative Update for Microsoft server operating system version 21H2 (KB5046616)',
  kb: ['5046616'],
  classification: 'Security Updates',
  severity: 'Critical',
  rebootBehavior: 1,
};
const DOTNET: WinRmFakeUpdate = {
  id: 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab',
  revision: 201,
  title: '2026-11 Cumulative Update for .NET Framework 3.5 and 4.8 (KB5045935)',
  kb: ['5045935'],
  classification: 'Security Updates',
  severity: 'Important',
};
const DEFENDER: WinRmFakeUpdate = {
  id: 'e0789628-ce08-4437-be74-2495b842f43b',
  title: 'Security Intelligence Update for Microsoft Defender Antivirus - KB2267602',
  kb: ['2267602'],
  classification: 'Definition Updates',
};
const NEWER_CU: WinRmFakeUpdate = {
  id: '7e1f0c55-9a0d-4c3b-8f6e-112233445566',
  revision: 1,
  title: '2026-12 Cumulative Update for Microsoft server operating system version 21H2 (KB5048654)',
  kb: ['5048654'],
  classification: 'Security Updates',
  severity: 'Critical',
  rebootBehavior: 1,
};

const LONG_AGO = '2026-11-01T06:00:00Z';

describe('patching Windows servers through the WinRM adapter', () => {
  let fleet: Fleet;
  let fake: WinRmFake;
  let model: WinRmFakeWindowsUpdate;
  let alice: FleetSession;
  let bob: FleetSession;

  beforeEach(async () => {
    model = {
      offered: [structuredClone(CU), structuredClone(DOTNET), structuredClone(DEFENDER)],
      lastBootTime: LONG_AGO,
      restartMs: 300,
    };
    fake = await startWinRmFake({ users: [USER], windowsUpdate: model });
    ({ fleet, alice, bob } = await windowsFleet([adapterFor(fake)]));
    await addWindowsServer(alice, 'win1', fake);
    await alice.projects.add({ id: 'p', name: 'Windows', selector: { all: true } });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'p',
      reboot: 'if-required',
    });
  }, 60_000);

  afterEach(async () => {
    await fleet?.close();
    await fake?.close();
  });

  const execute = async () => {
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    return { plan, job: await bob.patch.executePlan(plan.id, { pollIntervalMs: 100 }) };
  };
  const taskOf = async (jobId: string) =>
    (await fleet.store.taskResults.list(T, { where: { jobId } })).find((t) => t.serverId === 'win1')!;
  const stepRecords = async (jobId: string) =>
    (await fleet.store.audit.list(T, { limit: 1000 }))
      .filter((a) => a.action === 'patch.step' && a.details?.['jobId'] === jobId)
      .map((a): Record<string, unknown> => ({ result: a.result, ...a.details }));

  it('executePlan — installs exactly the pinned security KBs, restarts because one needs it, proves the restart by the boot time and verifies', async () => {
    const { plan, job } = await execute();
    expect(plan.servers[0]!.blocked).toBeUndefined();
    expect(plan.servers[0]!.resolved.map((p) => `${p.name}=${p.version}`).sort()).toEqual([
      `KB5045935=${DOTNET.id}.201`,
      `KB5046616=${CU.id}.1`,
    ]);
    const task = await taskOf(job.id);
    expect(job.status, JSON.stringify(task.error)).toBe('succeeded');
    expect(task).toMatchObject({ status: 'succeeded', step: 'done' });

    // Exactly the pins, once; the definition update (another classification) was not touched.
    expect(model.installRequests).toHaveLength(1);
    expect([...model.installRequests![0]!].sort()).toEqual([
      `KB5045935=${DOTNET.id}.201`,
      `KB5046616=${CU.id}.1`,
    ]);
    expect(model.installed!.map((u) => u.id).sort()).toEqual([DOTNET.id, CU.id].sort());
    expect(model.offered.map((u) => u.id)).toEqual([DEFENDER.id]);

    // One restart, proven by the boot time read before and after.
    expect(model.restarts).toBe(1);
    expect(task.details).toMatchObject({ bootIdBefore: '2026-11-01T06:00:00.0000000Z' });
    expect(task.details!['bootIdAfter']).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(task.details!['bootIdAfter']).not.toBe(task.details!['bootIdBefore']);
    expect(task.details!['installResults']).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'KB5046616', state: 'installed', rebootRequired: true }),
        expect.objectContaining({ name: 'KB5045935', state: 'installed', rebootRequired: false }),
      ]),
    );
    const steps = await stepRecords(job.id);
    expect(steps.map((s) => s['step'])).toEqual(
      expect.arrayContaining(['preflight', 'drift-check', 'install', 'reboot', 'verify']),
    );
    expect(steps.find((s) => s['step'] === 'reboot')).toMatchObject({ rebooted: true, result: 'success' });

    // A scan afterwards: only the definition update is pending, and no restart.
    const after = await alice.scan({ serverIds: ['win1'] });
    expect(after.results[0]!.patches.map((p) => p.name)).toEqual(['KB2267602']);
    expect(after.results[0]!.rebootRequired).toBe(false);
  }, 60_000);

  it('executePlan — an update superseded after approval is a drift: nothing is installed, no substitute', async () => {
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    model.offered.push(structuredClone(NEWER_CU));
    model.offered.find((u) => u.id === CU.id)!.supersededBy = NEWER_CU.id;

    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 100 });
    expect(job.status).not.toBe('succeeded');
    const task = await taskOf(job.id);
    expect(task.error).toMatchObject({ code: 'DRIFTED' });
    expect(task.error!.message).toContain(`KB5046616 ${CU.id}.1 -> none`);
    expect(model.installRequests ?? []).toEqual([]);
    expect(model.installed ?? []).toEqual([]);
    expect(model.restarts ?? 0).toBe(0);
  }, 60_000);

  it('executePlan — a revised update (new revision of the same UpdateID) is a drift too', async () => {
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    model.offered.find((u) => u.id === CU.id)!.revision = 2;
    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 100 });
    const task = await taskOf(job.id);
    expect(task.error).toMatchObject({ code: 'DRIFTED' });
    expect(task.error!.message).toContain(`KB5046616 ${CU.id}.1 -> ${CU.id}.2`);
    expect(model.installRequests ?? []).toEqual([]);
  }, 60_000);

  it('executePlan — an update that fails to install fails the server with the HRESULT explained, and keeps every outcome', async () => {
    model.offered.find((u) => u.id === DOTNET.id)!.failure = { hresult: '0x80070643' };
    const { job } = await execute();
    const task = await taskOf(job.id);
    expect(task).toMatchObject({ status: 'failed', step: 'install', error: { code: 'COMMAND_FAILED' } });
    expect(task.error!.message).toContain('KB5045935 (failed 0x80070643 (ERROR_INSTALL_FAILURE');
    expect(task.error!.message).not.toContain('KB5046616 (');
    expect(task.details!['installResults']).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: 'KB5045935',
          state: 'failed',
          code: '0x80070643',
          explanation: expect.stringContaining('fatal error during installation'),
        }),
        expect.objectContaining({ name: 'KB5046616', state: 'installed' }),
      ]),
    );
    expect(model.installed!.map((u) => u.id)).toEqual([CU.id]);
    expect(model.restarts ?? 0).toBe(0);
  }, 60_000);

  it('executePlan — a login that is not an administrator stops at preflight, before anything is installed', async () => {
    model.notAdministrator = true;
    const { job } = await execute();
    const task = await taskOf(job.id);
    expect(task).toMatchObject({ status: 'failed', step: 'preflight' });
    expect(task.error!.message).toMatch(/not an elevated administrator/);
    expect(model.installRequests ?? []).toEqual([]);
  }, 60_000);
});
