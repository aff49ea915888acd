import { createAwsAdapter } from '@fleetward/adapter-aws';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  createFleet,
  createMemoryStore,
  type Fleet,
  generateEd25519KeyPair,
  type Server,
  TENANT_ADMIN_ROLE_ID,
} from '@fleetward/core';
import {
  type AwsFake,
  type AwsFakeInstance,
  labHostInstanceConnect,
  labHostRunner,
  startAwsFake,
} from '@fleetward/testkit/aws';
import { describeWithLab, type Lab, type LabHost, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';

// The whole path of access through Fleetward, on a real sshd: Carol asks for an `ephemeral-key`
// grant, Bob approves, Carol's `access.connect` pushes her own public key with EC2 Instance Connect
// (the fake hands it to the lab host as EC2's AuthorizedKeysCommand would), and Carol then logs in
// with her private key — which she could not do before, and which no file on the host keeps.

const ACCOUNT = { id: '666666666666', accessKeyId: 'AKIAFFFFFFFFFFFFFFFF', secretAccessKey: 'secret-f' };
const OS_USER = 'ec2-user';
const AUTHORIZED_KEYS = `/home/${OS_USER}/.ssh/authorized_keys`;
const TENANT = 't1';

describeWithLab('ephemeral-key grant to a lab host', () => {
  let lab: Lab;
  let host: LabHost;
  let fake: AwsFake;
  let instance: AwsFakeInstance;
  let fleet: Fleet;
  let server: Server;

  beforeAll(async () => {
    vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
    lab = await startLab({
      hosts: [{ name: 'jit1', flavour: 'debian' }],
      users: [{ login: OS_USER, sudo: 'nopasswd' }],
    });
    host = lab.host('jit1');
    // No standing key: the lab gives every user one, which would let any login succeed anyway.
    await host.writeFile(AUTHORIZED_KEYS, '', { mode: '600', owner: `${OS_USER}:${OS_USER}` });
    fake = await startAwsFake({ accounts: [ACCOUNT] });
    instance = fake.addInstance({
      accountId: ACCOUNT.id,
      region: 'us-east-1',
      runner: labHostRunner(host),
      onSshPublicKey: labHostInstanceConnect(host),
    });
    fleet = createFleet({
      store: createMemoryStore(),
      adapters: [
        createAwsAdapter({
          endpoint: fake.endpoint,
          credentials: { accessKeyId: ACCOUNT.accessKeyId, secretAccessKey: ACCOUNT.secretAccessKey },
          pollIntervalMs: 50,
          maxAttempts: 4,
        }),
      ],
      access: { requiredApprovals: 1 },
    });
    await fleet.bootstrapTenant({
      tenant: { id: TENANT, name: 'T' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.iam.addPrincipal({ id: 'bob', name: 'Bob', kind: 'human', affiliation: 'employee' });
    await alice.iam.bindRole('bob', TENANT_ADMIN_ROLE_ID);
    await alice.iam.addPrincipal({ id: 'carol', name: 'Carol', kind: 'human', affiliation: 'contractor' });
    await alice.iam.addRole({
      id: 'requester',
      name: 'Requester',
      rules: [{ effect: 'allow', actions: ['access.request'] }],
    });
    await alice.iam.bindRole('carol', 'requester');
    await alice.accounts.add({ id: 'own', name: 'Own', provider: 'aws', regions: ['us-east-1'] });
    server = await alice.servers.add({
      id: 'jit1',
      name: 'jit1',
      accountId: 'own',
      provider: 'aws',
      providerId: instance.instanceId,
      region: 'us-east-1',
      address: host.address,
      labels: {},
    });
  }, 180_000);

  afterAll(async () => {
    await fleet?.close();
    await fake?.close();
    await lab?.stop();
    vi.unstubAllEnvs();
  }, 120_000);

  /** Carol's own SSH client: her private key, the host key pinned. */
  function carolsSsh(privateKey: string): Adapter {
    return createSshAdapter({
      credentials: { username: OS_USER, privateKey },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { [host.address]: [host.hostKeys.ed25519.fingerprint] },
      connectTimeoutMs: 5000,
    });
  }

  it('connect — the requester logs in to the instance with her own private key only after connecting through the grant', async () => {
    const carol = fleet.as({ tenantId: TENANT, principalId: 'carol' });
    const key = generateEd25519KeyPair('carol@laptop');
    const ssh = carolsSsh(key.privateKey);
    try {
      const probe = () =>
        ssh.login!.probe(server, { username: OS_USER, privateKey: key.privateKey }, { timeoutMs: 10_000 });
      expect(await probe()).toMatchObject({ ok: false, refused: true });

      // The login is looked up on the host through SSM before the request is stored.
      const request = await carol.access.request({
        mode: 'ephemeral-key',
        servers: { serverIds: [server.id] },
        login: OS_USER,
        durationMinutes: 30,
        reason: 'look at the failing deploy on jit1',
        ticket: 'INC-4711',
      });
      const { grant } = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).access.approve(request.id);
      expect(grant).toMatchObject({ status: 'active', installation: 'installed' });
      // Approval installs nothing: still refused.
      expect(await probe()).toMatchObject({ ok: false, refused: true });

      const connection = await carol.access.connect({
        grantId: grant!.id,
        serverId: server.id,
        publicKey: key.publicKey,
      });
      expect(connection).toMatchObject({ address: host.address, login: OS_USER });
      expect(await probe()).toEqual({ ok: true });
      const whoami = await ssh.exec!.exec(server, { argv: ['id', '-un'] }, { timeoutMs: 20_000 });
      expect(whoami.stdout.text).toBe(`${OS_USER}\n`);

      // What the host holds is the pushed key with an expiry of at most 60 s, nothing lasting.
      const lines = (await host.readFile(AUTHORIZED_KEYS)).split('\n').filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^expiry-time="\d{14}Z" ssh-ed25519 /);
      expect(lines[0]).toContain(key.publicKey.split(' ')[1]);
      const [, stamp] = /^expiry-time="(\d{14})Z"/.exec(lines[0]!)!;
      const expiry = Date.parse(
        `${stamp!.slice(0, 4)}-${stamp!.slice(4, 6)}-${stamp!.slice(6, 8)}T${stamp!.slice(8, 10)}:${stamp!.slice(10, 12)}:${stamp!.slice(12, 14)}Z`,
      );
      expect(expiry).toBeLessThanOrEqual(Date.parse(connection.expiresAt) + 1000);

      // Revoked: no further key is pushed.
      await carol.access.revoke(grant!.id, { reason: 'done' });
      await expect(
        carol.access.connect({ grantId: grant!.id, serverId: server.id, publicKey: key.publicKey }),
      ).rejects.toMatchObject({ code: 'CONFLICT' });
      expect(instance.sshPublicKeys()).toHaveLength(1);
    } finally {
      await ssh.close?.();
    }
  }, 120_000);
});
