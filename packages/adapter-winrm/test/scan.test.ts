import { createWinRmAdapter } from '@fleetward/adapter-winrm';
import { createFleet, createMemoryStore, type Fleet, type PendingPatch } from '@fleetward/core';
import { startWinRmFake, type WinRmFake, type WinRmFakeWindowsUpdate } from '@fleetward/testkit/winrm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Issue 15, Windows Update scan: Windows hosts emulated by the WinRM fake with a modelled Windows
// Update state, scanned through a Fleet with the WinRM adapter, report exactly the modelled KBs.
const USER = { username: 'Administrator', password: 'S3cret!pass' };
const T = 'win';

const serverCore: WinRmFakeWindowsUpdate = {
  offered: [
    {
      id: '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d',
      revision: 1,
      title: '2026-11 Cumulative Update for Microsoft server operating system version 21H2 (KB5046616)',
      kb: ['5046616'],
      classification: 'Security Updates',
      categories: ['Security Updates', 'Microsoft Server operating system-21H2'],
      severity: 'Critical',
      size: 412_345_678,
      rebootBehavior: 1,
      released: '2026-11-10T18:00:00Z',
    },
    {
      id: 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab',
      revision: 201,
      title: "2026-11 Cumulative Update for .NET Framework <3.5 & 4.8> (KB5045935) 'x64'",
      kb: ['5045935'],
      classification: 'Updates',
      rebootBehavior: 2,
    },
    {
      id: 'e0789628-ce08-4437-be74-2495b842f43b',
      title: 'Security Intelligence Update for Microsoft Defender Antivirus - KB2267602',
      kb: ['2267602'],
      classification: 'Definition Updates',
    },
  ],
  rebootPending: true,
};
const serverIdle: WinRmFakeWindowsUpdate = {
  offered: [
    {
      id: '0f6c2f71-3c1d-4b8e-8a55-7f3e2d1c0b9a',
      title: 'Windows Malicious Software Removal Tool x64 - v5.130 (KB890830)',
      kb: ['890830'],
      classification: 'Update Rollups',
    },
  ],
  os: { caption: 'Microsoft Windows Server 2019 Standard', version: '10.0.17763', build: '17763' },
};

describe('scanning Windows servers through the WinRM adapter', () => {
  let fleet: Fleet;
  let fakeA: WinRmFake;
  let fakeB: WinRmFake;

  beforeAll(async () => {
    fakeA = await startWinRmFake({ users: [USER], windowsUpdate: serverCore });
    fakeB = await startWinRmFake({ users: [USER], windowsUpdate: serverIdle });
    fleet = createFleet({
      store: createMemoryStore(),
      adapters: [
        createWinRmAdapter({ credentials: USER, ca: fakeA.ca }),
        createWinRmAdapter({ name: 'winrm-b', credentials: USER, ca: fakeB.ca }),
      ],
    });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Windows' },
      admin: { id: 'ops', name: 'Ops', kind: 'human', affiliation: 'employee' },
    });
    const ops = fleet.as({ tenantId: T, principalId: 'ops' });
    // Reached over WinRM: Windows because of its transport.
    await ops.servers.add({
      id: 'win-a',
      name: 'localhost',
      accountId: 'dc',
      provider: 'winrm',
      address: '127.0.0.1',
      port: fakeA.port,
    });
    // Another provider, Windows because its stored OS family says so.
    await ops.servers.add({
      id: 'win-b',
      name: 'localhost',
      accountId: 'dc',
      provider: 'local',
      adapter: 'winrm-b',
      address: '127.0.0.1',
      port: fakeB.port,
      os: { family: 'windows', id: 'windows' },
    });
  }, 60_000);

  afterAll(async () => {
    await fleet?.close();
    await fakeA?.close();
    await fakeB?.close();
  });

  const summary = (patches: PendingPatch[]) =>
    patches.map((p) => `${p.name} ${p.candidateVersion} ${p.category}/${p.severity}`).sort();

  it('scan — returns exactly the modelled pending KBs with categories, severities and reboot state', async () => {
    const outcome = await fleet.as({ tenantId: T, principalId: 'ops' }).scan({ selector: { all: true } });
    expect(outcome.job.status, JSON.stringify(outcome.results.map((r) => r.error))).toBe('succeeded');
    const byServer = Object.fromEntries(outcome.results.map((r) => [r.serverId, r]));

    expect(byServer['win-a']!.os).toMatchObject({
      family: 'windows',
      prettyName: 'Microsoft Windows Server 2022 Datacenter',
      versionId: '10.0.20348',
      arch: 'x86_64',
      packageManager: 'windows-update',
    });
    expect(summary(byServer['win-a']!.patches)).toEqual([
      'KB2267602 e0789628-ce08-4437-be74-2495b842f43b.200 other/unspecified',
      'KB5045935 aa0b6a2e-1111-4a4a-9b9b-0123456789ab.201 bugfix/unspecified',
      'KB5046616 5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d.1 security/critical',
    ]);
    expect(byServer['win-a']!.rebootRequired).toBe(true);

    expect(byServer['win-b']!.os).toMatchObject({ prettyName: 'Microsoft Windows Server 2019 Standard' });
    expect(summary(byServer['win-b']!.patches)).toEqual([
      'KB890830 0f6c2f71-3c1d-4b8e-8a55-7f3e2d1c0b9a.200 bugfix/unspecified',
    ]);
    expect(byServer['win-b']!.rebootRequired).toBe(false);
  });

  it('scan — follows the model: an update installed and the reboot done disappear', async () => {
    serverCore.offered = serverCore.offered.filter((u) => u.kb?.[0] !== '5046616');
    serverCore.rebootPending = false;
    const outcome = await fleet.as({ tenantId: T, principalId: 'ops' }).scan({ serverIds: ['win-a'] });
    const result = outcome.results[0]!;
    expect(result.patches.map((p) => p.name).sort()).toEqual(['KB2267602', 'KB5045935']);
    expect(result.rebootRequired).toBe(false);
  });

  it('scan — a Windows Update failure fails the server with the HRESULT explained', async () => {
    serverIdle.searchError = { hresult: '0x8024402C', message: 'Exception from HRESULT: 0x8024402C' };
    const outcome = await fleet.as({ tenantId: T, principalId: 'ops' }).scan({ serverIds: ['win-b'] });
    const result = outcome.results[0]!;
    expect(result.status).toBe('failed');
    expect(JSON.stringify(result.error)).toMatch(/0x8024402C.*cannot be reached/);
  });
});
