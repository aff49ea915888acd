import { createSshAdapter } from '@fleetward/adapter-ssh';
import { type Adapter, createFleet, createMemoryStore, type Fleet, type ScanResult } from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labAccess, seed, TENANT } from './support/fleet.js';

// Issue #16, scan cost: a server whose OS is known is detected and scanned in one command, and
// the scan loads apt's cache only once when nothing is kept back or held, with the same results
// as the first scan (detection first, then the scan) and as the package managers' own listings.
describeWithLab('scan cost on lab hosts', () => {
  let lab: Lab;
  let fleet: Fleet;
  const commands = new Map<string, number>();

  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
        { name: 'suse1', flavour: 'suse' },
      ],
    });
    const access = labAccess(lab);
    const ssh = createSshAdapter({
      credentials: { username: 'root', privateKey: access.hosts[0]!.privateKey },
      credentialsFor: async (server) => {
        const host = access.hosts.find((h) => h.address === server.address);
        return host && { username: 'root', privateKey: host.privateKey };
      },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: Object.fromEntries(access.hosts.map((h) => [h.address, h.fingerprints])),
      connectTimeoutMs: 5000,
    });
    // The same transport, counting the commands each server is sent.
    const counting: Adapter = {
      ...ssh,
      exec: {
        exec(server, command, options) {
          commands.set(server.id, (commands.get(server.id) ?? 0) + 1);
          return ssh.exec!.exec(server, command, options);
        },
      },
    };
    fleet = createFleet({ store: createMemoryStore(), adapters: [counting] });
    await seed(fleet, access);
  }, 240_000);
  afterAll(async () => {
    await fleet?.close();
    await lab?.stop();
  }, 120_000);

  const scanAll = async () => {
    commands.clear();
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const outcome = await alice.scan({ serverIds: ['deb1', 'rhel1', 'suse1'] });
    for (const r of outcome.results) expect(r.status, JSON.stringify(r.error)).toBe('succeeded');
    return Object.fromEntries(outcome.results.map((r) => [r.serverId, r]));
  };
  const essence = (r: ScanResult) => ({
    os: r.os,
    packageManager: r.packageManager,
    patches: r.patches,
    rebootRequired: r.rebootRequired,
    rebootPackages: r.rebootPackages,
    warnings: r.warnings,
  });

  it('scan — the second scan sends one command per server and finds exactly what the first found', async () => {
    const first = await scanAll();
    expect(Object.fromEntries(commands)).toEqual({ deb1: 2, rhel1: 2, suse1: 2 });
    const second = await scanAll();
    expect(Object.fromEntries(commands)).toEqual({ deb1: 1, rhel1: 1, suse1: 1 });
    for (const id of ['deb1', 'rhel1', 'suse1'])
      expect(essence(second[id]!), id).toEqual(essence(first[id]!));
    expect(second.deb1!.os).toMatchObject({ family: 'debian', packageManager: 'apt' });
    expect(second.rhel1!.os).toMatchObject({ family: 'rhel', packageManager: 'dnf' });
    expect(second.suse1!.os).toMatchObject({ family: 'suse', packageManager: 'zypper' });
    for (const id of ['deb1', 'rhel1', 'suse1']) {
      const uname = await lab.host(id).exec(['uname', '-r', '-m']);
      expect(`${second[id]!.os?.kernel} ${second[id]!.os?.arch}`, id).toBe(uname.stdout.trim());
    }

    // What apt itself lists, read through the lab's back channel.
    const listed = await lab.host('deb1').exec(['apt', 'list', '--upgradable'], { env: { LC_ALL: 'C' } });
    const expected = listed.stdout
      .split('\n')
      .filter((l) => l.includes('[upgradable from:'))
      .map((l) => `${l.split('/')[0]}=${l.split(' ')[1]}`)
      .sort();
    expect(second.deb1!.patches.map((p) => `${p.name}=${p.candidateVersion}`).sort()).toEqual(expected);
    expect(expected.length).toBeGreaterThan(0);
    // The origins come from the simulation's Inst lines: the security one is classified as such.
    expect(second.deb1!.patches.map((p) => [p.name, p.category, p.origins])).toEqual([
      ['labdemo', 'security', [{ origin: 'Debian-Security', archive: 'lab-security' }]],
      ['labtool', 'other', [{ origin: 'Debian', archive: 'lab-updates' }]],
    ]);
  }, 180_000);

  it('scan — a held package is still reported held and kept back, with the origins apt-cache policy gives', async () => {
    const before = await scanAll();
    await lab.host('deb1').exec(['apt-mark', 'hold', 'labtool']);
    try {
      const held = await scanAll();
      expect(commands.get('deb1')).toBe(1);
      const tool = held.deb1!.patches.find((p) => p.name === 'labtool');
      const unheld = before.deb1!.patches.find((p) => p.name === 'labtool');
      expect(tool).toMatchObject({ held: true, keptBack: true, candidateVersion: unheld!.candidateVersion });
      expect(tool!.origins).toEqual(unheld!.origins);
      expect(held.deb1!.patches.find((p) => p.name === 'labdemo')).toEqual(
        before.deb1!.patches.find((p) => p.name === 'labdemo'),
      );
    } finally {
      await lab.host('deb1').exec(['apt-mark', 'unhold', 'labtool']);
    }
    const after = await scanAll();
    expect(essence(after.deb1!)).toEqual(essence(before.deb1!));
  }, 180_000);
});
