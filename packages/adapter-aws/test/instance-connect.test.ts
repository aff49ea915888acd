import { EC2InstanceConnectClient } from '@aws-sdk/client-ec2-instance-connect';
import { instanceConnectCredentials, SSH_USER_LABEL } from '@fleetward/adapter-aws';
import {
  AuthorizationError,
  NotFoundError,
  type Server,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, type AwsFakeInstance, startAwsFake } from '@fleetward/testkit/aws';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { utils as ssh2Utils } from 'ssh2';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

const A = {
  id: '444444444444',
  accessKeyId: 'AKIADDDDDDDDDDDDDDDD',
  secretAccessKey: 'secret-eic-do-not-leak',
};

let fake: AwsFake;
let instance: AwsFakeInstance;
let factoryCalls: string[];

beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
beforeEach(async () => {
  fake = await startAwsFake({ accounts: [A] });
  instance = fake.addInstance({ accountId: A.id, region: 'eu-west-1' });
  factoryCalls = [];
});
afterEach(async () => {
  await fake?.close();
});

function credentials(opts: { osUser?: string; reuseKeyForMs?: number } = {}) {
  return instanceConnectCredentials({
    ...opts,
    client: (region, server) => {
      factoryCalls.push(`${server.accountId}/${region}`);
      return new EC2InstanceConnectClient({
        region,
        endpoint: fake.endpoint,
        credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
        maxAttempts: 3,
        retryStrategy: new ConfiguredRetryStrategy(3, 0),
      });
    },
  });
}

function serverOf(overrides: Partial<Server> = {}): Server {
  return {
    tenantId: 't1',
    id: 'srv-1',
    accountId: 'acct-a',
    provider: 'aws',
    providerId: instance.instanceId,
    region: 'eu-west-1',
    name: 'web-1',
    labels: {},
    version: 1,
    createdAt: '2026-12-07T00:00:00.000Z',
    updatedAt: '2026-12-07T00:00:00.000Z',
    ...overrides,
  } as Server;
}

const eicCalls = () => fake.requests.filter((r) => r.service === 'ec2-instance-connect');

/** The `ssh-ed25519 <base64>` public key of an OpenSSH private key. */
function publicKeyOf(privateKey: string): string {
  const parsed = ssh2Utils.parseKey(privateKey);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

describe('instanceConnectCredentials', () => {
  it('credentialsFor — pushes the public half of a fresh ed25519 key for ec2-user and logs in with the private half', async () => {
    const login = await credentials()(serverOf());
    expect(login?.username).toBe('ec2-user');
    expect(login?.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const pushed = instance.sshPublicKeys();
    expect(pushed).toHaveLength(1);
    expect(pushed[0]?.osUser).toBe('ec2-user');
    expect(pushed[0]?.publicKey.startsWith(`${publicKeyOf(login?.privateKey as string)} `)).toBe(true);
    const lifetime = (pushed[0]?.expiresAt.getTime() ?? 0) - Date.now();
    expect(lifetime).toBeGreaterThan(50_000);
    expect(lifetime).toBeLessThanOrEqual(60_000);
  });

  it('credentialsFor — every call generates and pushes a new key; the client is made once per account and region', async () => {
    const get = credentials();
    const first = await get(serverOf());
    const second = await get(serverOf());
    expect(first?.privateKey).not.toBe(second?.privateKey);
    const keys = instance.sshPublicKeys().map((k) => k.publicKey);
    expect(new Set(keys).size).toBe(2);
    expect(factoryCalls).toEqual(['acct-a/eu-west-1']);
  });

  it('credentialsFor — the server label names the login, over the osUser option', async () => {
    const login = await credentials({ osUser: 'admin' })(
      serverOf({ labels: { [SSH_USER_LABEL]: 'ubuntu' } }),
    );
    expect(login?.username).toBe('ubuntu');
    expect(instance.sshPublicKeys().map((k) => k.osUser)).toEqual(['ubuntu']);
    const byOption = await credentials({ osUser: 'admin' })(serverOf());
    expect(byOption?.username).toBe('admin');
  });

  it('credentialsFor — resolves undefined for servers that are not EC2 instances, without an AWS call', async () => {
    const get = credentials();
    const others: Partial<Server>[] = [
      { provider: 'ssh', providerId: '10.0.0.5' },
      { provider: 'azure', providerId: instance.instanceId },
      { providerId: undefined },
      { providerId: 'web-1' },
      { region: undefined },
    ];
    for (const overrides of others) expect(await get(serverOf(overrides))).toBeUndefined();
    expect(eicCalls()).toHaveLength(0);
    expect(factoryCalls).toEqual([]);
  });

  it('credentialsFor — a hostile login label is a ValidationError before any AWS call', async () => {
    const get = credentials();
    for (const hostile of [
      'root; rm -rf /',
      'a b',
      'ec2-user\nroot',
      'ec2-user\n',
      '$(id)',
      '',
      '-oProxyCommand=x',
      'a'.repeat(33),
      "o'brien",
    ]) {
      const error = await get(serverOf({ labels: { [SSH_USER_LABEL]: hostile } })).catch((e: unknown) => e);
      expect(error, JSON.stringify(hostile)).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual([`labels.${SSH_USER_LABEL}`]);
    }
    expect(eicCalls()).toHaveLength(0);
  });

  it('credentialsFor — with reuseKeyForMs, calls within the window share one push, concurrent ones included', async () => {
    const get = credentials({ reuseKeyForMs: 30_000 });
    const [a, b] = await Promise.all([get(serverOf()), get(serverOf())]);
    const c = await get(serverOf());
    expect(eicCalls()).toHaveLength(1);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    // Another login on the same instance is another key.
    const other = await get(serverOf({ labels: { [SSH_USER_LABEL]: 'ubuntu' } }));
    expect(other?.privateKey).not.toBe(a?.privateKey);
    expect(eicCalls()).toHaveLength(2);
  });

  it('credentialsFor — with reuseKeyForMs, a key older than the window is replaced, and a failed push is not kept', async () => {
    const get = credentials({ reuseKeyForMs: 1 });
    const first = await get(serverOf());
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await get(serverOf());
    expect(second?.privateKey).not.toBe(first?.privateKey);
    expect(eicCalls()).toHaveLength(2);

    const reusing = credentials({ reuseKeyForMs: 30_000 });
    fake.faults.throttle('SendSSHPublicKey', 3);
    await expect(reusing(serverOf())).rejects.toBeInstanceOf(TransportError);
    expect(await reusing(serverOf())).toMatchObject({ username: 'ec2-user' });
  });

  it('instanceConnectCredentials — invalid options are a ValidationError', () => {
    expect(() => instanceConnectCredentials({ client: undefined as never })).toThrow(ValidationError);
    expect(() => credentials({ osUser: 'root; id' })).toThrow(ValidationError);
    expect(() => credentials({ reuseKeyForMs: 50_000 })).toThrow(ValidationError);
  });
});

describe('instanceConnectCredentials errors', () => {
  it('credentialsFor — an instance EC2 Instance Connect does not know is a NotFoundError', async () => {
    const error = await credentials()(serverOf({ providerId: 'i-0123456789abcdef0' })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({
      what: 'EC2 instance',
      id: 'i-0123456789abcdef0',
      details: { awsCode: 'EC2InstanceNotFoundException', operation: 'SendSSHPublicKey' },
    });
    // The same instance id in another region is another instance.
    const wrongRegion = await credentials()(serverOf({ region: 'us-east-1' })).catch((e: unknown) => e);
    expect(wrongRegion).toBeInstanceOf(NotFoundError);
  });

  it('credentialsFor — throttling the SDK retries through succeeds; throttling beyond its attempts is a retryable TransportError', async () => {
    fake.faults.throttle('SendSSHPublicKey', 2);
    expect(await credentials()(serverOf())).toMatchObject({ username: 'ec2-user' });
    expect(eicCalls().map((r) => r.errorCode ?? r.status)).toEqual([
      'ThrottlingException',
      'ThrottlingException',
      200,
    ]);

    fake.faults.throttle('SendSSHPublicKey', 3);
    const error = await credentials()(serverOf()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ retryable: true, details: { awsCode: 'ThrottlingException' } });
    expect(eicCalls()).toHaveLength(6);
    expect(instance.sshPublicKeys()).toHaveLength(1);
  });

  it('credentialsFor — a stopped instance is a TransportError naming the state error', async () => {
    instance.state = 'stopped';
    const error = await credentials()(serverOf()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).details.awsCode).toBe('EC2InstanceStateInvalidException');
  });

  it('credentialsFor — refused AWS credentials are an AuthorizationError that carries no secret', async () => {
    // The fake does not check signatures: an unknown access key id is what it refuses.
    const refused = await instanceConnectCredentials({
      client: (region) =>
        new EC2InstanceConnectClient({
          region,
          endpoint: fake.endpoint,
          credentials: { accessKeyId: 'AKIAUNKNOWNUNKNOWNXX', secretAccessKey: A.secretAccessKey },
        }),
    })(serverOf()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthorizationError);
    expect((refused as AuthorizationError).details.awsCode).toBe('UnrecognizedClientException');
    const shown = JSON.stringify([refused, (refused as Error).message, String((refused as Error).cause)]);
    expect(shown).not.toContain(A.secretAccessKey);
    expect(shown).not.toContain('PRIVATE KEY');
  });
});
