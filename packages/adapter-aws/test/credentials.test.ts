import { STSClient } from '@aws-sdk/client-sts';
import {
  type AwsAccountCredentials,
  AwsAccountCredentialsSchema,
  createAwsAdapter,
  parseAccountCredentials,
} from '@fleetward/adapter-aws';
import {
  ConflictError,
  createFleet,
  createMemoryStore,
  type Fleet,
  MemorySecretStore,
  NotFoundError,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, startAwsFake } from '@fleetward/testkit/aws';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { assumedRoleProvider } from '../src/credentials.js';
import { localRunner } from './support/local-runner.js';

// Account A: the embedding process's own (static keys given to the adapter). Account B: a
// customer's, reached only by assuming its role with an external id (the MSP pattern). Account C:
// a customer's IAM user keys, kept in the secret store.
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
const C = {
  id: '333333333333',
  accessKeyId: 'AKIACCCCCCCCCCCCCCCC',
  secretAccessKey: 'secret-c-never-shown',
};
const ROLE_B = `arn:aws:iam::${B.id}:role/fleetward`;
const TENANT = 't1';

let fake: AwsFake;
let fleet: Fleet | undefined;
let fakeNow = Date.now();

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

async function setup(
  secret: AwsAccountCredentials | string = {
    type: 'assume-role',
    roleArn: ROLE_B,
    externalId: 'ext-b-7f3a9c',
  },
) {
  fakeNow = Date.now();
  fake = await startAwsFake({
    accounts: [A, B, C],
    clock: () => new Date(fakeNow),
    defaultRunner: localRunner,
  });
  const a = fake.addInstance({ accountId: A.id, region: 'us-east-1', tags: { Name: 'a-1' } });
  const b1 = fake.addInstance({ accountId: B.id, region: 'us-east-1', tags: { Name: 'b-1' } });
  const b2 = fake.addInstance({ accountId: B.id, region: 'eu-west-1', tags: { Name: 'b-2' } });
  const c = fake.addInstance({ accountId: C.id, region: 'eu-west-1', tags: { Name: 'c-1' } });
  const secrets = new MemorySecretStore();
  await secrets.set('aws/b', typeof secret === 'string' ? secret : JSON.stringify(secret));
  await secrets.set(
    'aws/c',
    JSON.stringify({ type: 'static', accessKeyId: C.accessKeyId, secretAccessKey: C.secretAccessKey }),
  );
  const adapter = createAwsAdapter({
    endpoint: fake.endpoint,
    credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
    pollIntervalMs: 20,
    maxAttempts: 4,
  });
  fleet = createFleet({ store: createMemoryStore(), secrets, adapters: [adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'T' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
  const regions = ['us-east-1', 'eu-west-1'];
  await alice.accounts.add({ id: 'own', name: 'Own', provider: 'aws', regions });
  await alice.accounts.add({ id: 'cust-b', name: 'B', provider: 'aws', regions, credentialsRef: 'aws/b' });
  await alice.accounts.add({ id: 'cust-c', name: 'C', provider: 'aws', regions, credentialsRef: 'aws/c' });
  return { alice, adapter, secrets, instances: { a, b1, b2, c } };
}

const requestsOf = (operation: string) => fake.requests.filter((r) => r.operation === operation);

describe('account credentials by reference', () => {
  it("discover — each account with its own credentials: the adapter's, an assumed role with its external id, stored keys", async () => {
    const { alice, instances } = await setup();
    const result = await alice.inventory.discover({});
    expect(result.accounts.map((a) => [a.accountId, a.status])).toEqual([
      ['cust-b', 'succeeded'],
      ['cust-c', 'succeeded'],
      ['own', 'succeeded'],
    ]);
    const servers = await alice.servers.list();
    const byAccount = (id: string) =>
      servers
        .filter((s) => s.accountId === id)
        .map((s) => s.providerId)
        .sort();
    expect(byAccount('own')).toEqual([instances.a.instanceId]);
    expect(byAccount('cust-b')).toEqual([instances.b1.instanceId, instances.b2.instanceId].sort());
    expect(byAccount('cust-c')).toEqual([instances.c.instanceId]);
    // B's calls were signed with the assumed role's credentials (the fake maps keys to accounts).
    const assumed = requestsOf('AssumeRole');
    expect(assumed.length).toBe(1);
    expect(assumed[0]?.status).toBe(200);
    expect(requestsOf('DescribeInstances').filter((r) => r.accountId === B.id).length).toBeGreaterThanOrEqual(
      2,
    );
  });

  it('exec — reaches a server of an assumed-role account, and renews the role at once after ExpiredToken', async () => {
    const { alice } = await setup();
    await alice.inventory.discover({ accountIds: ['cust-b'] });
    const server = (await alice.servers.list()).find((s) => s.name === 'b-1')!;
    const run = () => fleet!.adapterFor(server).exec!.exec(server, { argv: ['echo', 'hello'] });
    expect((await run()).stdout.text).toBe('hello\n');
    expect(requestsOf('AssumeRole').length).toBe(1);
    fake.faults.expireCredentials();
    expect((await run()).stdout.text).toBe('hello\n');
    expect(requestsOf('AssumeRole').length).toBe(2);
    expect(
      fake.requests.some((r) => r.errorCode === 'ExpiredToken' || r.errorCode === 'ExpiredTokenException'),
    ).toBe(true);
  });

  it('discover — a wrong external id fails that account alone, with an AuthorizationError that shows no secret', async () => {
    const { alice } = await setup({ type: 'assume-role', roleArn: ROLE_B, externalId: 'ext-wrong-0000' });
    const result = await alice.inventory.discover({});
    const b = result.accounts.find((a) => a.accountId === 'cust-b')!;
    expect(b.status).toBe('failed');
    expect(b.error?.code).toBe('FORBIDDEN');
    expect(result.accounts.filter((a) => a.status === 'succeeded').map((a) => a.accountId)).toEqual([
      'cust-c',
      'own',
    ]);
    const text = JSON.stringify(result);
    for (const secret of ['ext-wrong-0000', A.secretAccessKey, C.secretAccessKey])
      expect(text).not.toContain(secret);
  });

  it('exec — a credentials secret that is malformed or missing, or an unknown account, is a typed error naming the reference, never its value', async () => {
    const { alice, secrets, adapter, instances } = await setup();
    await secrets.set('aws/c', `{"type":"static","accessKeyId":"${C.accessKeyId}","secretAccessKey":1}`);
    await alice.accounts.add({ id: 'cust-d', name: 'D', provider: 'aws', credentialsRef: 'aws/d' });
    const serverIn = async (accountId: string, id: string) =>
      alice.servers.add({
        id,
        name: id,
        accountId,
        provider: 'aws',
        providerId: instances.c.instanceId,
        region: 'eu-west-1',
      });
    const run = async (server: Awaited<ReturnType<typeof serverIn>>) =>
      adapter.exec!.exec(server, { argv: ['true'] }).then(
        () => new Error('expected a rejection'),
        (e: unknown) => e as Error,
      );
    const malformed = await run(await serverIn('cust-c', 'c1'));
    expect(malformed).toBeInstanceOf(ValidationError);
    expect(malformed.message).toContain('aws/c');
    expect(malformed.message).not.toContain(C.accessKeyId);
    const missing = await run(await serverIn('cust-d', 'd1'));
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.message).toContain('aws/d');
    const server = await serverIn('own', 'o1');
    const unknown = await run({ ...server, accountId: 'no-such-account' });
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect(unknown.message).toContain('no-such-account');
    expect(requestsOf('SendCommand').length).toBe(0);
  });

  it("instanceConnectCredentials — pushes the key with the server account's own credentials (an assumed role)", async () => {
    const { alice, adapter } = await setup();
    await alice.inventory.discover({ accountIds: ['cust-b'] });
    const server = (await alice.servers.list()).find((s) => s.name === 'b-2')!;
    const login = await adapter.instanceConnectCredentials({ osUser: 'admin' })(server);
    expect(login?.username).toBe('admin');
    expect(login?.privateKey).toContain('PRIVATE KEY');
    const pushed = fake.instance(server.providerId!).sshPublicKeys();
    expect(pushed.map((k) => k.osUser)).toEqual(['admin']);
    const sent = fake.requests.filter((r) => r.operation === 'SendSSHPublicKey');
    expect(sent.map((r) => [r.accountId, r.region, r.status])).toEqual([[B.id, 'eu-west-1', 200]]);
    // A server that is not an EC2 instance is not this source's: the SSH adapter's own credentials apply.
    expect(await adapter.instanceConnectCredentials()({ ...server, provider: 'ssh' })).toBeUndefined();
  });

  it('discover — a secret changed in the store takes effect within a minute, without a restart', async () => {
    const { alice, secrets } = await setup({
      type: 'assume-role',
      roleArn: ROLE_B,
      externalId: 'ext-wrong-0000',
    });
    const first = await alice.inventory.discover({ accountIds: ['cust-b'] });
    expect(first.accounts[0]?.status).toBe('failed');
    await secrets.set(
      'aws/b',
      JSON.stringify({ type: 'assume-role', roleArn: ROLE_B, externalId: 'ext-b-7f3a9c' }),
    );
    const now = Date.now();
    const clock = vi.spyOn(Date, 'now');
    try {
      clock.mockReturnValue(now + 30_000);
      expect((await alice.inventory.discover({ accountIds: ['cust-b'] })).accounts[0]?.status).toBe('failed');
      clock.mockReturnValue(now + 61_000);
      expect((await alice.inventory.discover({ accountIds: ['cust-b'] })).accounts[0]?.status).toBe(
        'succeeded',
      );
    } finally {
      clock.mockRestore();
    }
  });

  it('createFleet — an adapter already attached to another Fleet is refused', async () => {
    const { adapter } = await setup();
    expect(() => createFleet({ store: createMemoryStore(), adapters: [adapter] })).toThrow(ConflictError);
  });
});

describe('assumed-role credentials', () => {
  it('are renewed before they expire: a margin ahead of Expiration, not after AWS refused them', async () => {
    fakeNow = Date.now();
    fake = await startAwsFake({ accounts: [A, B], clock: () => new Date(fakeNow) });
    const sts = new STSClient({
      region: 'us-east-1',
      endpoint: fake.endpoint,
      credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
    });
    try {
      const spec = {
        type: 'assume-role' as const,
        roleArn: ROLE_B,
        externalId: 'ext-b-7f3a9c',
        durationSeconds: 900,
      };
      const { provider } = assumedRoleProvider(sts, spec, { id: 'cust-b' }, 300_000, () => fakeNow);
      const first = await provider();
      expect(first.expiration!.getTime()).toBe(fakeNow + 900_000);
      fakeNow += 500_000; // 400 s left: still used
      expect((await provider()).accessKeyId).toBe(first.accessKeyId);
      fakeNow += 150_000; // 250 s left, inside the 300 s margin: renewed while still valid
      const second = await provider();
      expect(second.accessKeyId).not.toBe(first.accessKeyId);
      expect(requestsOf('AssumeRole').length).toBe(2);
      // Callers at the same moment share one AssumeRole.
      fakeNow += 700_000;
      const together = await Promise.all([provider(), provider(), provider()]);
      expect(new Set(together.map((c) => c.accessKeyId)).size).toBe(1);
      expect(requestsOf('AssumeRole').length).toBe(3);
    } finally {
      sts.destroy();
    }
  });
});

describe('parseAccountCredentials', () => {
  const secretish = fc.string({ minLength: 6, maxLength: 40 }).filter((s) => s.trim().length >= 6);

  it('parseAccountCredentials — any malformed document is a ValidationError naming the reference and no value of it', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.dictionary(
            fc.constantFrom('type', 'roleArn', 'externalId', 'accessKeyId', 'secretAccessKey', 'extra'),
            secretish,
          ),
          fc.record({ type: fc.constant('static'), accessKeyId: secretish, secretAccessKey: fc.integer() }),
          fc.record({ type: fc.constant('assume-role'), roleArn: secretish, externalId: secretish }),
        ),
        (doc) => {
          if (AwsAccountCredentialsSchema.safeParse(doc).success) return;
          let error: unknown;
          try {
            parseAccountCredentials('tenant/aws/b', JSON.stringify(doc));
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(ValidationError);
          const shown = `${(error as Error).message} ${JSON.stringify((error as ValidationError).issues)}`;
          expect(shown).toContain('tenant/aws/b');
          for (const value of Object.values(doc)) {
            if (typeof value === 'string' && !['static', 'assume-role', 'default'].includes(value)) {
              expect(shown).not.toContain(value);
            }
          }
        },
      ),
    );
  });

  it('parseAccountCredentials — text that is not JSON is refused without echoing it', () => {
    const error = (() => {
      try {
        parseAccountCredentials('r', 'AKIA-secret-text');
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect(error?.message).not.toContain('AKIA-secret-text');
  });
});
