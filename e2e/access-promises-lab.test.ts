import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  createFleet,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  type GeneratedKeyPair,
  generateEd25519KeyPair,
  MemorySecretStore,
  managedCredentials,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The sweep as a function of the runtime, the way `createAccessSweeper` runs it (internal wiring).
import { sweepAccess } from '../packages/core/src/access/api.js';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';
import { sshLogin, userKeyPair } from './support/ssh-client.js';

// Promises of docs/access.md proven on real sshd hosts, each checked through the lab's back
// channel (a root shell inside the host, never over SSH): a key with standing access gets no
// grant; authorized_keys edits and reads refuse symbolic links; rotation stamps the old key with
// a short expiry-time before removing it, and rolls back when a later server fails; a changed
// host key stops a grant's installation.

let lab: Lab | undefined;
const fleets: Fleet[] = [];
afterAll(async () => {
  for (const f of fleets) await f.close().catch(() => {});
  await lab?.stop();
}, 120_000);

const HOSTS = ['h1', 'h2', 'h3'] as const;
const CREDENTIAL = 'labops-key';
const LABUSER_KEYS = '/home/labuser/.ssh/authorized_keys';
const LABOPS_KEYS = '/home/labops/.ssh/authorized_keys';

/** A fleet logging in as root with the lab's pinned host keys (a fresh one has no pooled connection). */
async function rootFleet(): Promise<{ fleet: Fleet; alice: FleetSession; bob: FleetSession }> {
  const fleet = labFleet(labAccess(lab!), createMemoryStore());
  fleets.push(fleet);
  await seed(fleet, labAccess(lab!));
  return {
    fleet,
    alice: fleet.as({ tenantId: TENANT, principalId: 'alice' }),
    bob: fleet.as({ tenantId: TENANT, principalId: 'bob' }),
  };
}

async function grantFor(
  requester: FleetSession,
  approver: FleetSession,
  serverIds: string[],
  publicKey: string,
) {
  const request = await requester.access.request({
    servers: { serverIds },
    login: 'labuser',
    publicKey,
    durationMinutes: 30,
    reason: 'prove a promise of the access guide on the lab',
    ticket: 'INC-2001',
  });
  const { grant } = await approver.access.approve(request.id);
  return grant!;
}

const read = (host: string, path: string) => lab!.host(host).readFile(path);

describeWithLab('promises of the access guide on lab hosts', () => {
  beforeAll(async () => {
    lab = await startLab({ hosts: HOSTS.map((name) => ({ name, flavour: 'debian' as const })) });
  }, 180_000);

  it('access.approve — a key that already has standing access (unmanaged or managed line) gets no grant, and nothing is written', async () => {
    const { alice, bob } = await rootFleet();
    const user = await userKeyPair('carol@laptop');
    const [type, blob] = user.publicKey.split(' ');
    await lab!.host('h1').sh(`printf '%s\\n' '${type} ${blob} carol-standing' >> ${LABUSER_KEYS}`);
    await lab!
      .host('h2')
      .sh(`printf '%s\\n' '${type} ${blob} fleetward labuser fleetward:credential=other' >> ${LABUSER_KEYS}`);
    const before = { h1: await read('h1', LABUSER_KEYS), h2: await read('h2', LABUSER_KEYS) };

    const grant = await grantFor(alice, bob, ['h1', 'h2'], user.publicKey);
    expect(grant.targets.map((t) => [t.serverId, t.state, t.error?.code])).toEqual([
      ['h1', 'failed', 'CONFLICT'],
      ['h2', 'failed', 'CONFLICT'],
    ]);
    expect(grant.targets[0]!.error!.message).toMatch(/already has standing access as labuser on h1/);
    expect(await read('h1', LABUSER_KEYS)).toBe(before.h1);
    expect(await read('h2', LABUSER_KEYS)).toBe(before.h2);
  });

  it('access.approve, keys.inventory — a symbolic link at ~/.ssh/authorized_keys or ~/.ssh is refused with UnsafePathError; its target is untouched', async () => {
    const { alice, bob } = await rootFleet();
    const h3 = lab!.host('h3');
    const user = await userKeyPair('carol@laptop');
    const original = await read('h3', LABUSER_KEYS);
    // /root/.ssh/authorized_keys holds the key Fleetward logs in with: one link leads there.
    const placements = [
      {
        plant: `ln -sfn /etc/shadow ${LABUSER_KEYS}`,
        link: LABUSER_KEYS,
        target: '/etc/shadow',
        undo: `rm -f ${LABUSER_KEYS}`,
      },
      {
        plant: 'mv /home/labuser/.ssh /home/labuser/.ssh.real && ln -s /root/.ssh /home/labuser/.ssh',
        link: '/home/labuser/.ssh',
        target: '/root/.ssh/authorized_keys',
        undo: 'rm -f /home/labuser/.ssh && mv /home/labuser/.ssh.real /home/labuser/.ssh',
      },
    ];
    for (const p of placements) {
      expect((await h3.sh(p.plant)).exitCode).toBe(0);
      const target = await read('h3', p.target);
      const stat = (await h3.exec(['stat', '-c', '%a %U %Y', p.target])).stdout;

      const grant = await grantFor(alice, bob, ['h3'], user.publicKey);
      expect(grant.targets[0]).toMatchObject({ serverId: 'h3', state: 'failed' });
      expect(grant.targets[0]!.error!.message).toContain(p.link);
      expect(grant.targets[0]!.error!.message).toContain('is a symbolic link');
      const [inventory] = await alice.keys.inventory({ serverIds: ['h3'] });
      expect(inventory).toMatchObject({ status: 'failed', error: { code: 'VALIDATION_FAILED' } });
      expect(inventory!.error!.message).toContain(`${p.link} (login labuser on h3) is a symbolic link`);

      expect(await read('h3', p.target)).toBe(target);
      expect((await h3.exec(['stat', '-c', '%a %U %Y', p.target])).stdout).toBe(stat);
      expect((await h3.exec(['readlink', p.link])).stdout.trim()).toBe(
        p.target.replace('/authorized_keys', ''),
      );
      expect((await h3.sh(p.undo)).exitCode).toBe(0);
    }
    await h3.writeFile(LABUSER_KEYS, original);
    await h3.exec(['chown', 'labuser:labuser', LABUSER_KEYS]);
  });

  describe('key rotation', () => {
    const secrets = new MemorySecretStore();
    const clock = new ManualClock(new Date());
    let fleet: Fleet;
    let alice: FleetSession;
    let keyDir: string;
    /** What each completed write of authorized_keys left on the host, read through the back channel. */
    let snapshots: { host: string; text: string }[] = [];
    /** When set, kills sshd on this host right after Fleetward wrote its authorized_keys. */
    let killAfterWriteOn: string | undefined;

    const login = async (host: string, privateKey: string) => {
      const path = join(keyDir, `k-${Math.random().toString(36).slice(2)}`);
      await writeFile(path, privateKey, { mode: 0o600 });
      return sshLogin({
        address: lab!.host(host).address,
        login: 'labops',
        privateKeyPath: path,
        knownHostsPath: lab!.knownHostsPath,
      });
    };

    beforeAll(async () => {
      keyDir = await mkdtemp(join(tmpdir(), 'fleetward-promises-'));
      const hostOf = (address: string | undefined) => lab!.hosts.find((h) => h.address === address)!;
      const ssh = createSshAdapter({
        credentialsFor: (server) => managedCredentials(fleet, { login: 'labops' })(server),
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: labAccess(lab!).hosts.reduce<Record<string, string[]>>((pins, h) => {
          pins[h.address] = h.fingerprints;
          return pins;
        }, {}),
        connectTimeoutMs: 5000,
      });
      // The real adapter; the wrapper only looks at the hosts between steps, and injects the one
      // fault (sshd killed) at a chosen moment.
      const observed: Adapter = {
        ...ssh,
        exec: {
          async exec(server, command, options) {
            const result = await ssh.exec!.exec(server, command, options);
            if ('argv' in command && command.argv[3] === 'fleetward-write-keys') {
              const host = hostOf(server.address);
              snapshots.push({ host: host.name, text: await host.readFile(LABOPS_KEYS) });
              if (killAfterWriteOn === host.name) await host.killSshd();
            }
            return result;
          },
        },
        login: {
          async probe(server, credentials, options) {
            const host = hostOf(server.address);
            try {
              return await ssh.login!.probe(server, credentials, options);
            } finally {
              if (killAfterWriteOn === host.name) {
                killAfterWriteOn = undefined;
                await host.startSshd();
              }
            }
          },
        },
      };
      fleet = createFleet({ store: createMemoryStore(), adapters: [observed], secrets, clock });
      fleets.push(fleet);
      await fleet.bootstrapTenant({
        tenant: { id: TENANT, name: 'Lab' },
        admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
      });
      alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
      for (const h of lab!.hosts) {
        await alice.servers.add({
          id: h.name,
          name: h.name,
          accountId: 'lab',
          provider: 'ssh',
          address: h.address,
        });
      }
      const first = generateEd25519KeyPair('fleetward bootstrap');
      for (const h of lab!.hosts) await h.sh(`printf '%s\\n' '${first.publicKey}' >> ${LABOPS_KEYS}`);
      await alice.keys.register({
        id: CREDENTIAL,
        login: 'labops',
        publicKey: first.publicKey,
        privateKey: first.privateKey,
        caretakerId: 'alice',
        serverIds: [...HOSTS],
      });
    }, 60_000);

    it('rotate — sshd on the second of three servers stops taking logins after the add: the first is rolled back to the old key only, the third untouched; the old key logs in everywhere, the new one nowhere', async () => {
      const before = await fleet.store.credentials.require(TENANT, CREDENTIAL);
      const oldPrivate = (await secrets.get(before.secretRef!))!;
      const files = Object.fromEntries(
        await Promise.all(HOSTS.map(async (h) => [h, await read(h, LABOPS_KEYS)])),
      );
      let made: GeneratedKeyPair | undefined;
      killAfterWriteOn = 'h2';
      snapshots = [];

      const report = await alice.keys.rotate(CREDENTIAL, {
        generateKeyPair: (comment) => {
          made = generateEd25519KeyPair(comment);
          return made;
        },
      });
      expect(report.status).toBe('rolled-back');
      expect(report.reason).toMatch(/^verification failed on h2: /);
      expect(report.servers.map((s) => [s.serverId, s.step])).toEqual([
        ['h1', 'rolled-back'],
        ['h2', 'rolled-back'],
        ['h3', 'not-started'],
      ]);
      // The new key really was on h1 and h2 (the fault came after the add), and on h3 never.
      const newBlob = made!.publicKey.split(' ')[1]!;
      expect(snapshots.filter((s) => s.text.includes(newBlob)).map((s) => s.host)).toEqual(['h1', 'h2']);
      expect(snapshots.some((s) => s.host === 'h3')).toBe(false);

      for (const h of HOSTS) {
        expect(await read(h, LABOPS_KEYS)).toBe(files[h]);
        expect(await login(h, oldPrivate)).toBe(0);
        expect(await login(h, made!.privateKey)).toBe(255);
      }
      expect(await fleet.store.credentials.require(TENANT, CREDENTIAL)).toMatchObject({
        fingerprint: before.fingerprint,
        status: 'active',
      });
    });

    it('rotate — the old key gets a short expiry-time before it is removed, and sshd then refuses it', async () => {
      const before = await fleet.store.credentials.require(TENANT, CREDENTIAL);
      const oldPrivate = (await secrets.get(before.secretRef!))!;
      const oldBlob = before.publicKey.split(' ')[1]!;
      snapshots = [];

      const report = await alice.keys.rotate(CREDENTIAL, { graceMinutes: 3 });
      expect(report.status).toBe('succeeded');
      const expiry = `${new Date(clock.now().getTime() + 3 * 60_000)
        .toISOString()
        .replace(/[-:T]/g, '')
        .slice(0, 14)}Z`;
      const after = await fleet.store.credentials.require(TENANT, CREDENTIAL);
      const newBlob = after.publicKey.split(' ')[1]!;
      const newPrivate = (await secrets.get(after.secretRef!))!;
      for (const h of HOSTS) {
        const seen = snapshots.filter((s) => s.host === h).map((s) => s.text.split('\n'));
        // Written three times: the new key added, the old one stamped, the old one removed.
        expect(seen).toHaveLength(3);
        const [added, stamped, removed] = seen as [string[], string[], string[]];
        expect(added.find((l) => l.includes(oldBlob))).not.toMatch(/expiry-time/);
        expect(stamped.find((l) => l.includes(oldBlob))).toMatch(
          new RegExp(`^expiry-time="${expiry}" ssh-ed25519 `),
        );
        expect(stamped.find((l) => l.includes(newBlob))).not.toMatch(/expiry-time/);
        expect(removed.some((l) => l.includes(oldBlob))).toBe(false);
        expect(removed.filter((l) => l.includes(newBlob))).toHaveLength(1);
        expect(await login(h, oldPrivate)).toBe(255);
        expect(await login(h, newPrivate)).toBe(0);
      }
      const steps = (await fleet.store.audit.list(TENANT, { action: 'keys.rotate' }))
        .filter((r) => r.details.newFingerprint === after.fingerprint)
        .map((r) => r.details.step);
      expect(steps.filter((s) => s === 'retired')).toHaveLength(3);
    });
  });

  it('access.approve — a real changed host key stops the installation: the server is named, nothing is written there, and a server that was unreachable is not touched by the next sweep', async () => {
    const h2 = lab!.host('h2');
    const h3 = lab!.host('h3');
    // The request is checked against every server while they are as they were…
    const { fleet: requesting, alice } = await rootFleet();
    const user = await userKeyPair('carol@laptop');
    const request = await alice.access.request({
      servers: { serverIds: [...HOSTS] },
      login: 'labuser',
      publicKey: user.publicKey,
      durationMinutes: 30,
      reason: 'prove a promise of the access guide on the lab',
      ticket: 'INC-2001',
    });
    // …then the host keys of h2 are made anew, as on a reinstalled (or impersonated) server.
    expect(
      (
        await h2.sh(
          "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && ssh-keygen -q -t rsa -b 2048 -N '' -f /etc/ssh/ssh_host_rsa_key",
        )
      ).exitCode,
    ).toBe(0);
    await h2.killSshd();
    await h2.startSshd();
    const files = Object.fromEntries(
      await Promise.all(HOSTS.map(async (h) => [h, await read(h, LABUSER_KEYS)])),
    );
    await h3.cutNetwork();
    // A fresh fleet on the same store approves: the requesting one's pooled connection to h2
    // outlived the sshd restart and would not see the new keys.
    const fleet = labFleet(labAccess(lab!), requesting.store);
    fleets.push(fleet);
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    let grant: NonNullable<Awaited<ReturnType<typeof bob.access.approve>>['grant']>;
    try {
      grant = (await bob.access.approve(request.id)).grant!;
    } finally {
      await h3.restoreNetwork();
    }
    const byServer = Object.fromEntries(grant.targets.map((t) => [t.serverId, t]));
    expect(byServer.h2).toMatchObject({ state: 'failed', error: { code: 'HOST_KEY_MISMATCH' } });
    expect(['TRANSPORT_FAILED', 'TIMEOUT']).toContain(byServer.h3!.error?.code);
    expect(await read('h2', LABUSER_KEYS)).toBe(files.h2);
    expect(await read('h3', LABUSER_KEYS)).toBe(files.h3);
    const stopped = (await fleet.store.audit.list(TENANT, { action: 'access.grant.install' })).filter(
      (r) => (r.details.stoppedBy as { code?: string } | undefined)?.code === 'HOST_KEY_MISMATCH',
    );
    expect(stopped.length).toBeGreaterThan(0);

    // h3 answers again; every sweep would retry an unreachable server, but not after the stop.
    const swept = await sweepAccess(fleet, TENANT);
    expect(swept.installed).toBe(0);
    expect(await read('h3', LABUSER_KEYS)).toBe(files.h3);
    expect(await read('h2', LABUSER_KEYS)).toBe(files.h2);
    const after = await fleet.store.accessGrants.require(TENANT, grant.id);
    expect(after.targets.find((t) => t.serverId === 'h3')!.state).toBe('failed');
  }, 60_000);
});
