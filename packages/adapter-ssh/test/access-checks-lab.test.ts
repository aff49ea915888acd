import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  createFleet,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  generateEd25519KeyPair,
  type Store,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';

// Issue 13 on real sshd hosts, through the SSH adapter the grants themselves use: a request for a
// login a server lacks, or for a server that cannot be reached, is refused and nothing is stored;
// a grant whose installation fails at approval reads failed (its request `install-failed`), and
// the sweep that installs it once the server answers makes it whole, with the real `ssh` client
// logging in. Every host is checked through the lab's back channel, never over SSH.

const T = 'lab';
const HOSTS = ['h1', 'h2', 'h3'] as const;
const LABUSER_KEYS = '/home/labuser/.ssh/authorized_keys';
const run = promisify(execFile);

let lab: Lab | undefined;
let keyDir: string | undefined;
const fleets: Fleet[] = [];
afterAll(async () => {
  for (const f of fleets) await f.close().catch(() => {});
  await lab?.stop();
  if (keyDir) await rm(keyDir, { recursive: true, force: true });
}, 120_000);

/**
 * A fleet logging in to the lab hosts as root with pinned host keys. Each has its own connection
 * pool, so a fresh one opens new connections (a killed sshd keeps the sessions it already had).
 */
function labFleet(store: Store): Fleet {
  const hosts = lab!.hosts;
  const ssh = createSshAdapter({
    credentialsFor: async (server) => {
      const host = hosts.find((h) => h.address === server.address);
      return host && { username: 'root', privateKey: host.users.root.privateKey };
    },
    hostKeyPolicy: 'pinned',
    pinnedHostKeys: Object.fromEntries(
      hosts.map((h) => [
        h.address,
        [h.hostKeys.ed25519.fingerprint, ...(h.hostKeys.rsa ? [h.hostKeys.rsa.fingerprint] : [])],
      ]),
    ),
    connectTimeoutMs: 5000,
  });
  const fleet = createFleet({ store, adapters: [ssh], access: { checkServers: { timeoutMs: 15_000 } } });
  fleets.push(fleet);
  return fleet;
}

const people = (fleet: Fleet): { alice: FleetSession; bob: FleetSession } => ({
  alice: fleet.as({ tenantId: T, principalId: 'alice' }),
  bob: fleet.as({ tenantId: T, principalId: 'bob' }),
});

async function seeded(): Promise<Fleet> {
  const fleet = labFleet(createMemoryStore());
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Lab' },
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
  for (const h of lab!.hosts) {
    await people(fleet).alice.servers.add({
      id: h.name,
      name: h.name,
      accountId: 'lab',
      provider: 'ssh',
      address: h.address,
    });
  }
  return fleet;
}

const requestFor = (serverIds: string[], login: string, publicKey: string) => ({
  servers: { serverIds },
  login,
  publicKey,
  durationMinutes: 30,
  reason: 'prove issue 13 on the lab hosts',
  ticket: 'INC-1313',
});

const read = (host: string, path: string) => lab!.host(host).readFile(path);

/** Logs in with the real OpenSSH client and only this key: the exit code (255 when refused). */
async function sshLogin(host: string, login: string, privateKey: string): Promise<number> {
  const path = join(keyDir!, `k-${Math.random().toString(36).slice(2)}`);
  await writeFile(path, privateKey, { mode: 0o600 });
  try {
    await run(
      'ssh',
      [
        ...['-i', path, '-F', '/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes'],
        ...['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${lab!.knownHostsPath}`],
        ...['-o', 'ConnectTimeout=10', `${login}@${lab!.host(host).address}`, 'true'],
      ],
      { timeout: 30_000 },
    );
    return 0;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

describeWithLab(
  'access requests checked against real sshd hosts',
  () => {
    beforeAll(async () => {
      lab = await startLab({ hosts: HOSTS.map((name) => ({ name, flavour: 'debian' as const })) });
      keyDir = await mkdtemp(join(tmpdir(), 'fleetward-access-checks-'));
    }, 180_000);

    it('access.request — a login missing on a host is refused naming that host; audited as refused, nothing stored', async () => {
      const fleet = await seeded();
      const { alice } = people(fleet);
      // The login exists on h1 only.
      expect((await lab!.host('h1').exec(['useradd', '-m', 'fwonlyh1'])).exitCode).toBe(0);
      try {
        const key = generateEd25519KeyPair('carol@laptop').publicKey;
        const error = await alice.access
          .request(requestFor(['h1', 'h2', 'h3'], 'fwonlyh1', key))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).issues).toEqual([
          expect.objectContaining({ path: ['login'], message: 'fwonlyh1 does not exist on h2; h3' }),
        ]);
        expect(await fleet.store.accessRequests.listAll(T)).toEqual([]);
        expect(await fleet.store.outbox.listAll(T)).toEqual([]);
        const [record] = await fleet.store.audit.list(T, { action: 'access.request' });
        expect(record).toMatchObject({
          result: 'failure',
          decision: 'allow',
          details: {
            code: 'VALIDATION_FAILED',
            refusedBy: [
              { serverId: 'h2', problem: 'no-such-login', code: 'NOT_FOUND' },
              { serverId: 'h3', problem: 'no-such-login', code: 'NOT_FOUND' },
            ],
          },
        });
        // A login every host has is fine.
        expect((await alice.access.request(requestFor(['h1', 'h2', 'h3'], 'labuser', key))).status).toBe(
          'pending',
        );
      } finally {
        await lab!.host('h1').exec(['userdel', '-r', 'fwonlyh1']);
      }
    });

    it('access.request — a host that cannot be reached is refused naming it; nothing stored', async () => {
      const fleet = await seeded();
      const h3 = lab!.host('h3');
      await h3.cutNetwork();
      let error: unknown;
      try {
        error = await people(fleet)
          .alice.access.request(requestFor(['h1', 'h3'], 'labuser', generateEd25519KeyPair('c').publicKey))
          .catch((e: unknown) => e);
      } finally {
        await h3.restoreNetwork();
      }
      expect(error).toBeInstanceOf(TransportError);
      expect((error as Error).message).toMatch(
        /^cannot check 1 of 2 server\(s\) for login labuser, so the request was not stored: h3 \((TRANSPORT_FAILED|TIMEOUT)\): /,
      );
      expect((error as TransportError).details['servers']).toEqual([
        expect.objectContaining({ serverId: 'h3', problem: 'unreachable' }),
      ]);
      expect(await fleet.store.accessRequests.listAll(T)).toEqual([]);
    }, 60_000);

    it('access.approve — installation failing at approval reads failed (request install-failed); the sweep that installs it once the host answers makes it whole', async () => {
      const requesting = await seeded();
      const user = generateEd25519KeyPair('carol@laptop');
      const before = { h1: await read('h1', LABUSER_KEYS), h2: await read('h2', LABUSER_KEYS) };

      // A login removed between request and approval: installation fails there for good.
      expect((await lab!.host('h1').exec(['useradd', '-m', 'fwgone'])).exitCode).toBe(0);
      const gone = await people(requesting).alice.access.request(
        requestFor(['h1'], 'fwgone', user.publicKey),
      );
      expect((await lab!.host('h1').exec(['userdel', '-r', 'fwgone'])).exitCode).toBe(0);
      // A host whose sshd is down at approval: a fresh fleet finds it refusing connections.
      const down = await people(requesting).alice.access.request(
        requestFor(['h1', 'h2'], 'labuser', user.publicKey),
      );
      await lab!.host('h2').killSshd();
      const approving = labFleet(requesting.store);
      const { bob } = people(approving);
      let goneOutcome: Awaited<ReturnType<FleetSession['access']['approve']>>;
      let downOutcome: Awaited<ReturnType<FleetSession['access']['approve']>>;
      try {
        goneOutcome = await bob.access.approve(gone.id);
        downOutcome = await bob.access.approve(down.id);
      } finally {
        await lab!.host('h2').startSshd();
      }

      expect(goneOutcome.request.status).toBe('install-failed');
      expect(goneOutcome.grant).toMatchObject({
        installation: 'failed',
        targets: [{ serverId: 'h1', state: 'failed', error: { code: 'NOT_FOUND' } }],
      });
      expect(downOutcome.request.status).toBe('install-failed');
      expect(downOutcome.grant!.installation).toBe('partial');
      expect(downOutcome.grant!.targets.map((t) => [t.serverId, t.state, t.error?.code])).toEqual([
        ['h1', 'installed', undefined],
        ['h2', 'failed', 'TRANSPORT_FAILED'],
      ]);
      expect((await bob.access.listRequests({ status: 'install-failed' })).map((r) => r.id).sort()).toEqual(
        [gone.id, down.id].sort(),
      );
      expect(await read('h2', LABUSER_KEYS)).toBe(before.h2);
      expect(await read('h1', LABUSER_KEYS)).toContain(`fleetward:grant=${downOutcome.grant!.id}`);
      expect(await sshLogin('h1', 'labuser', user.privateKey)).toBe(0);
      expect(await sshLogin('h2', 'labuser', user.privateKey)).toBe(255);

      // h2 answers again: the sweep installs there; the removed login stays failed.
      const swept = await bob.access.sweep();
      expect(swept.installed).toBe(1);
      expect(await bob.access.getGrant(downOutcome.grant!.id)).toMatchObject({ installation: 'installed' });
      expect((await bob.access.getRequest(down.id)).status).toBe('approved');
      expect(await read('h2', LABUSER_KEYS)).toContain(`fleetward:grant=${downOutcome.grant!.id}`);
      expect(await sshLogin('h2', 'labuser', user.privateKey)).toBe(0);
      expect(await bob.access.getGrant(goneOutcome.grant!.id)).toMatchObject({ installation: 'failed' });
      expect((await bob.access.getRequest(gone.id)).status).toBe('install-failed');

      await bob.access.revoke(downOutcome.grant!.id);
      expect(await read('h1', LABUSER_KEYS)).toBe(before.h1);
      expect(await read('h2', LABUSER_KEYS)).toBe(before.h2);
    }, 120_000);
  },
  { flavours: ['debian'] },
);
