import { userInfo } from 'node:os';
import { createAwsAdapter } from '@fleetward/adapter-aws';
import {
  createFleet,
  createMemoryStore,
  type Fleet,
  generateEd25519KeyPair,
  LoginSchema,
  MemorySecretStore,
  TENANT_ADMIN_ROLE_ID,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, type AwsFakeInstance, startAwsFake } from '@fleetward/testkit/aws';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { localRunner } from './support/local-runner.js';

// Just-in-time access through Fleetward on AWS: a grant of mode `ephemeral-key` installs nothing;
// each `access.connect` pushes the requester's own public key with EC2 Instance Connect, signed
// with the credentials of the instance's account (the adapter's own, or an assumed role).

const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-never-shown',
};
const B = {
  id: '222222222222',
  accessKeyId: 'AKIABBBBBBBBBBBBBBBB',
  secretAccessKey: 'secret-b-unused',
  roles: [{ name: 'fleetward', externalId: 'ext-b-7f3a9c' }],
};
const TENANT = 't1';
/**
 * The login of the grant. The request's login check runs `getent passwd` through SSM, and the
 * fake's instances run their commands on this machine: the user running the tests exists here.
 */
const LOGIN = LoginSchema.parse(userInfo().username);

let fake: AwsFake;
let fleet: Fleet;
let own: AwsFakeInstance;
let customer: AwsFakeInstance;

beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});

beforeEach(async () => {
  fake = await startAwsFake({ accounts: [A, B], defaultRunner: localRunner });
  own = fake.addInstance({ accountId: A.id, region: 'us-east-1', tags: { Name: 'own-1' } });
  customer = fake.addInstance({ accountId: B.id, region: 'eu-west-1', tags: { Name: 'cust-1' } });
  const secrets = new MemorySecretStore();
  await secrets.set(
    'aws/b',
    JSON.stringify({
      type: 'assume-role',
      roleArn: `arn:aws:iam::${B.id}:role/fleetward`,
      externalId: 'ext-b-7f3a9c',
    }),
  );
  fleet = createFleet({
    store: createMemoryStore(),
    secrets,
    adapters: [
      createAwsAdapter({
        endpoint: fake.endpoint,
        credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
        pollIntervalMs: 20,
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
  const regions = ['us-east-1', 'eu-west-1'];
  await alice.accounts.add({ id: 'own', name: 'Own', provider: 'aws', regions });
  await alice.accounts.add({ id: 'cust-b', name: 'B', provider: 'aws', regions, credentialsRef: 'aws/b' });
  await alice.inventory.discover({});
});
afterEach(async () => {
  await fleet?.close();
  await fake?.close();
});

const as = (principalId: string) => fleet.as({ tenantId: TENANT, principalId });
const requestsOf = (operation: string) => fake.requests.filter((r) => r.operation === operation);

async function serverNamed(name: string) {
  const server = (await as('alice').servers.list()).find((s) => s.name === name);
  if (!server) throw new Error(`discovery found no ${name}`);
  return server;
}

describe('ephemeral-key grants on AWS', () => {
  it('connect — request, approval by another admin, then each connect pushes the requester’s key with the instance account’s own credentials', async () => {
    const ownServer = await serverNamed('own-1');
    const customerServer = await serverNamed('cust-1');
    const request = await as('carol').access.request({
      mode: 'ephemeral-key',
      servers: { serverIds: [ownServer.id, customerServer.id] },
      login: LOGIN,
      durationMinutes: 60,
      reason: 'look at the failing deploy on both tiers',
      ticket: 'INC-4711',
    });
    // The login was looked up on each instance through SSM before the request was stored.
    expect(requestsOf('SendCommand')).toHaveLength(2);
    const { grant } = await as('bob').access.approve(request.id);
    expect(grant).toMatchObject({ status: 'active', installation: 'installed', mode: 'ephemeral-key' });
    // Approval touched no instance: no command, no key.
    expect(requestsOf('SendCommand')).toHaveLength(2);
    expect(requestsOf('SendSSHPublicKey')).toEqual([]);

    const key = generateEd25519KeyPair('carol@laptop');
    const before = Date.now();
    const connection = await as('carol').access.connect({
      grantId: grant!.id,
      serverId: customerServer.id,
      publicKey: key.publicKey,
    });
    expect(connection).toMatchObject({ serverId: customerServer.id, login: LOGIN });
    const lifetime = Date.parse(connection.expiresAt) - before;
    expect(lifetime).toBeGreaterThanOrEqual(59_000);
    expect(lifetime).toBeLessThanOrEqual(61_000);
    expect(customer.sshPublicKeys()).toEqual([
      { osUser: LOGIN, publicKey: key.publicKey, expiresAt: expect.any(Date) },
    ]);
    expect(own.sshPublicKeys()).toEqual([]);
    // Signed with the customer account's assumed role, not the adapter's own keys.
    expect(requestsOf('SendSSHPublicKey').map((r) => [r.accountId, r.region, r.status])).toEqual([
      [B.id, 'eu-west-1', 200],
    ]);

    await as('carol').access.connect({
      grantId: grant!.id,
      serverId: ownServer.id,
      publicKey: key.publicKey,
    });
    expect(own.sshPublicKeys().map((k) => [k.osUser, k.publicKey])).toEqual([[LOGIN, key.publicKey]]);
    expect(requestsOf('SendSSHPublicKey').map((r) => r.accountId)).toEqual([B.id, A.id]);

    const records = await fleet.store.audit.list(TENANT, { action: 'access.connect' });
    expect(records.map((r) => [r.actor.principalId, r.result, r.details?.serverId])).toEqual([
      ['carol', 'success', customerServer.id],
      ['carol', 'success', ownServer.id],
    ]);
    const shown = JSON.stringify(records);
    expect(shown).not.toContain(key.publicKey.split(' ')[1]);
    expect(shown).not.toContain(A.secretAccessKey);
    // Nothing was ever run on the instances after the login check.
    expect(requestsOf('SendCommand')).toHaveLength(2);
  });

  it('ephemeralKeys.offer — a hostile login or key, or a server that is not an EC2 instance, is a ValidationError before any AWS call', async () => {
    const server = await serverNamed('own-1');
    const offer = fleet.adapterFor(server).ephemeralKeys!.offer;
    const key = generateEd25519KeyPair('carol@laptop').publicKey;
    const refusals = [
      [server, { login: 'root; rm -rf /', publicKey: key }, 'login'],
      [server, { login: 'ec2-user\nroot', publicKey: key }, 'login'],
      [server, { login: 'ec2-user', publicKey: `${key}\nssh-ed25519 AAAA x` }, 'publicKey'],
      [{ ...server, provider: 'ssh' }, { login: 'ec2-user', publicKey: key }, 'server'],
      [{ ...server, providerId: '$(id)' }, { login: 'ec2-user', publicKey: key }, 'server'],
      [{ ...server, region: undefined }, { login: 'ec2-user', publicKey: key }, 'server'],
    ] as const;
    for (const [target, attempt, path] of refusals) {
      const error = await offer(target as typeof server, attempt).catch((e: unknown) => e);
      expect(error, JSON.stringify(attempt)).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual([path]);
    }
    expect(requestsOf('SendSSHPublicKey')).toEqual([]);
    expect(own.sshPublicKeys()).toEqual([]);
  });

  it('connect — a stopped instance is a TransportError, audited as a failure with its code; nothing is pushed', async () => {
    const server = await serverNamed('own-1');
    const request = await as('carol').access.request({
      mode: 'ephemeral-key',
      servers: { serverIds: [server.id] },
      login: LOGIN,
      durationMinutes: 30,
      reason: 'look at the failing deploy on the own tier',
      ticket: 'INC-4712',
    });
    const { grant } = await as('bob').access.approve(request.id);
    own.state = 'stopped';
    const key = generateEd25519KeyPair('carol@laptop');
    const error = await as('carol')
      .access.connect({ grantId: grant!.id, serverId: server.id, publicKey: key.publicKey })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).details.awsCode).toBe('EC2InstanceStateInvalidException');
    expect(own.sshPublicKeys()).toEqual([]);
    const [record] = await fleet.store.audit.list(TENANT, { action: 'access.connect' });
    expect(record).toMatchObject({
      result: 'failure',
      details: { code: 'TRANSPORT_FAILED', serverId: server.id, login: LOGIN },
    });
  });
});
