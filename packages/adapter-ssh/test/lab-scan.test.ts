import { randomUUID } from 'node:crypto';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  createFleet,
  createMemoryStore,
  type Fleet,
  HostKeyMismatchError,
  type PendingPatch,
  type Server,
  TransportError,
} from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';

// Issue #3's acceptance: three real hosts of different flavours, scanned through the SSH adapter,
// report exactly what the lab published, with the right category and severity.
describeWithLab('scanning a 3-host lab over SSH', () => {
  let lab: Lab;
  let fleet: Fleet;
  const T = 'lab';

  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
        { name: 'suse1', flavour: 'suse' },
      ],
    });
    const pins = Object.fromEntries(
      lab.hosts.map((h) => [
        h.address,
        [h.hostKeys.ed25519.fingerprint, ...(h.hostKeys.rsa ? [h.hostKeys.rsa.fingerprint] : [])],
      ]),
    );
    const ssh = createSshAdapter({
      credentials: { username: 'root', privateKey: lab.hosts[0]!.users.root.privateKey },
      credentialsFor: async (server) => {
        const host = lab.hosts.find((h) => h.address === server.address);
        return host && { username: 'root', privateKey: host.users.root.privateKey };
      },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: pins,
      connectTimeoutMs: 10_000,
    });
    fleet = createFleet({ store: createMemoryStore(), adapters: [ssh] });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Lab' },
      admin: { id: 'ops', name: 'Ops', kind: 'human', affiliation: 'employee' },
    });
    const ops = fleet.as({ tenantId: T, principalId: 'ops' });
    for (const h of lab.hosts) {
      await ops.servers.add({
        id: h.name,
        name: h.name,
        accountId: 'lab',
        provider: 'ssh',
        address: h.address,
        labels: { flavour: h.flavour },
      });
    }
  }, 240_000);

  afterAll(async () => {
    await fleet?.close();
    await lab?.stop();
  }, 120_000);

  const summary = (patches: PendingPatch[]) =>
    patches
      .map(
        (p) =>
          `${p.name} ${p.installedVersion} -> ${p.candidateVersion} ${p.category}/${p.severity} [${p.advisories.join(',')}]`,
      )
      .sort();

  it('scan — each flavour reports exactly the published updates with category and severity', async () => {
    const outcome = await fleet.as({ tenantId: T, principalId: 'ops' }).scan({ selector: { all: true } });
    expect(outcome.job.status, JSON.stringify(outcome.results.map((r) => r.error))).toBe('succeeded');
    const byServer = Object.fromEntries(outcome.results.map((r) => [r.serverId, r]));

    expect(byServer['deb1']!.os).toMatchObject({ family: 'debian', packageManager: 'apt' });
    expect(summary(byServer['deb1']!.patches)).toEqual([
      'labdemo 1.0-1 -> 1.1-1 security/unspecified []',
      'labtool 2.0-1 -> 2.1-1 other/unspecified []',
    ]);
    expect(
      byServer['deb1']!.patches.find((p) => p.name === 'labdemo')!.origins.map((o) => o.origin),
    ).toContain('Debian-Security');

    const rpmExpected = [
      'labdemo 1.0-1 -> 1.1-1 security/critical [LAB-2026:0001]',
      'labextra 0.9-1 -> 1.0-1 enhancement/low [LAB-2026:0003]',
      'labplain 1.0-1 -> 1.1-1 unknown/unspecified []',
      'labtool 2.0-1 -> 2.1-1 bugfix/moderate [LAB-2026:0002]',
    ];
    expect(byServer['rhel1']!.os).toMatchObject({ family: 'rhel', packageManager: 'dnf' });
    expect(summary(byServer['rhel1']!.patches)).toEqual(rpmExpected);
    expect(byServer['suse1']!.os).toMatchObject({ family: 'suse', packageManager: 'zypper' });
    expect(summary(byServer['suse1']!.patches)).toEqual(rpmExpected);
  });

  it('scan — a newly published security patch shows up after the host refreshes its lists', async () => {
    await lab.publish({
      apt: [{ suite: 'lab-security', packages: [{ name: 'labtool', version: '2.2', release: '1' }] }],
      refresh: true,
    });
    const outcome = await fleet.as({ tenantId: T, principalId: 'ops' }).scan({ serverIds: ['deb1'] });
    const labtool = outcome.results[0]!.patches.find((p) => p.name === 'labtool');
    expect(labtool).toMatchObject({ candidateVersion: '2.2-1', category: 'security' });
  });

  it('exec — a hostile package name reaches the package manager as one literal argument and no file appears', async () => {
    const marker = `/tmp/pwned-${randomUUID()}`;
    const server = (await fleet.store.servers.require(T, 'deb1')) as Server;
    const adapter = fleet.adapterFor(server);
    const hostile = `x'; touch ${marker}; '`;
    const result = await adapter.exec!.exec(server, {
      argv: ['apt-cache', 'policy', '--', `labdemo; touch ${marker}`, hostile],
    });
    expect(result.exitCode).toBe(0);
    const check = await lab.host('deb1').exec(['test', '-e', marker]);
    expect(check.exitCode).toBe(1);
    const viaEnv = await adapter.exec!.exec(server, {
      interpreter: ['sh', '-s'],
      script: 'printf %s "$PKG"',
      env: { PKG: hostile },
    });
    expect(viaEnv.stdout.text).toBe(hostile);
    expect((await lab.host('deb1').exec(['test', '-e', marker])).exitCode).toBe(1);
  });

  it('exec — a changed host key stops the operation before anything runs', async () => {
    const marker = `/tmp/ran-${randomUUID()}`;
    const host = lab.host('rhel1');
    const other = lab.host('suse1');
    const ssh = createSshAdapter({
      credentials: { username: 'root', privateKey: host.users.root.privateKey },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { [host.address]: [other.hostKeys.ed25519.fingerprint] },
    });
    try {
      const server = (await fleet.store.servers.require(T, 'rhel1')) as Server;
      await expect(ssh.exec!.exec(server, { argv: ['touch', marker] })).rejects.toBeInstanceOf(
        HostKeyMismatchError,
      );
      expect((await host.exec(['test', '-e', marker])).exitCode).toBe(1);
    } finally {
      await ssh.close?.();
    }
  });

  it('exec — sshd killed mid-command gives a TransportError within the timeout, never a hang', async () => {
    const host = lab.host('suse1');
    const server = (await fleet.store.servers.require(T, 'suse1')) as Server;
    const adapter = fleet.adapterFor(server);
    // Observe the outcome from the start: the rejection may come while the test is still killing sshd.
    const outcome = adapter.exec!.exec(server, { argv: ['sleep', '60'] }, { timeoutMs: 30_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Kill sshd once the command runs on the host, so it dies mid-command rather than mid-login.
    await vi.waitFor(async () => expect((await host.exec(['pgrep', '-x', 'sleep'])).exitCode).toBe(0), {
      timeout: 20_000,
    });
    await host.exec(['pkill', '-KILL', 'sshd']);
    const error = await outcome;
    expect(error).toBeInstanceOf(TransportError);
    await host.startSshd();
  });
});
