import {
  CreateSnapshotsCommand,
  DescribeInstancesCommand,
  DescribeRegionsCommand,
  DescribeSnapshotsCommand,
  EC2Client,
  paginateDescribeInstances,
} from '@aws-sdk/client-ec2';
import { EC2InstanceConnectClient, SendSSHPublicKeyCommand } from '@aws-sdk/client-ec2-instance-connect';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  paginateDescribeInstanceInformation,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { ValidationError } from '@fleetward/core';
import {
  type AwsFake,
  type AwsFakeRunner,
  SSM_STDERR_LIMIT,
  SSM_STDOUT_LIMIT,
  startAwsFake,
} from '@fleetward/testkit/aws';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

const A = { id: '111111111111', accessKeyId: 'AKIAAAAAAAAAAAAAAAAA', secretAccessKey: 'secret-a' };
const B = {
  id: '222222222222',
  accessKeyId: 'AKIABBBBBBBBBBBBBBBB',
  secretAccessKey: 'secret-b',
  roles: [{ name: 'FleetwardMsp', externalId: 'ext-42' }],
};
const ROLE_ARN = `arn:aws:iam::${B.id}:role/FleetwardMsp`;

interface Creds {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

let now = Date.parse('2026-12-07T10:00:00Z');
const clock = (): Date => new Date(now);
let fake: AwsFake;

// The SDK reads ~/.aws even with explicit credentials; point it at nothing (reference §1).
beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
afterEach(async () => {
  await fake?.close();
});

function clientConfig(credentials: Creds, region: string, maxAttempts = 4) {
  return {
    region,
    endpoint: fake.endpoint,
    credentials,
    retryStrategy: new ConfiguredRetryStrategy(maxAttempts, 0),
  };
}
const ssm = (c: Creds, region = 'us-east-1', maxAttempts?: number) =>
  new SSMClient(clientConfig(c, region, maxAttempts));
const ec2 = (c: Creds, region = 'us-east-1', maxAttempts?: number) =>
  new EC2Client(clientConfig(c, region, maxAttempts));
const sts = (c: Creds) => new STSClient(clientConfig(c, 'us-east-1'));

async function start(opts: { invocationNotFoundPolls?: number } = {}): Promise<AwsFake> {
  now = Date.parse('2026-12-07T10:00:00Z');
  fake = await startAwsFake({ accounts: [A, B], pageSize: 2, clock, ...opts });
  return fake;
}

async function assumeB(): Promise<Creds> {
  const out = await sts(A).send(
    new AssumeRoleCommand({
      RoleArn: ROLE_ARN,
      RoleSessionName: 'fleetward',
      ExternalId: 'ext-42',
      DurationSeconds: 900,
    }),
  );
  const c = out.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken) throw new Error('no credentials');
  return { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken };
}

async function listInstances(
  c: Creds,
  region: string,
): Promise<{ ids: string[]; pages: number; tags: Record<string, Record<string, string>> }> {
  const ids: string[] = [];
  const tags: Record<string, Record<string, string>> = {};
  let pages = 0;
  for await (const page of paginateDescribeInstances(
    { client: ec2(c, region) },
    { Filters: [{ Name: 'instance-state-name', Values: ['running'] }] },
  )) {
    pages++;
    for (const r of page.Reservations ?? []) {
      for (const i of r.Instances ?? []) {
        ids.push(i.InstanceId as string);
        tags[i.InstanceId as string] = Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value]));
      }
    }
  }
  return { ids: ids.sort(), pages, tags };
}

async function poll(
  client: SSMClient,
  commandId: string,
  instanceId: string,
): Promise<GetCommandInvocationCommandOutput> {
  for (let i = 0; i < 500; i++) {
    try {
      const out = await client.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
      );
      if (['Success', 'Failed', 'Cancelled', 'TimedOut'].includes(out.Status as string)) return out;
    } catch (e) {
      if ((e as Error).name !== 'InvocationDoesNotExist') throw e;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('invocation never finished');
}

async function errorOf(
  p: Promise<unknown>,
): Promise<Error & { $fault?: string; $metadata?: { httpStatusCode?: number } }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('startAwsFake', () => {
  it('DescribeInstances — pages across two accounts (one by assumed role) and two regions with tags', async () => {
    await start();
    const a1 = ['i-0a0000000000000a1', 'i-0a0000000000000a2', 'i-0a0000000000000a3'];
    for (const [n, id] of a1.entries()) {
      fake.addInstance({
        accountId: A.id,
        region: 'us-east-1',
        instanceId: id,
        tags: { Name: `web-${n}`, env: 'prod' },
      });
    }
    fake.addInstance({
      accountId: A.id,
      region: 'eu-west-1',
      instanceId: 'i-0a00000000000e001',
      tags: { Name: 'db' },
    });
    fake.addInstance({
      accountId: B.id,
      region: 'us-east-1',
      instanceId: 'i-0b0000000000000b1',
      tags: { team: 'x' },
    });
    fake.addInstance({
      accountId: B.id,
      region: 'eu-west-1',
      instanceId: 'i-0b00000000000e0b1',
      tags: { Name: 'b-eu' },
    });
    fake.addInstance({
      accountId: B.id,
      region: 'eu-west-1',
      instanceId: 'i-0b00000000000e0b2',
      state: 'stopped',
    });

    const roleCreds = await assumeB();
    const aUs = await listInstances(A, 'us-east-1');
    expect(aUs.ids).toEqual(a1);
    expect(aUs.pages).toBe(2);
    expect(aUs.tags['i-0a0000000000000a2']).toEqual({ Name: 'web-1', env: 'prod' });
    expect((await listInstances(A, 'eu-west-1')).ids).toEqual(['i-0a00000000000e001']);
    const bUs = await listInstances(roleCreds, 'us-east-1');
    expect(bUs.ids).toEqual(['i-0b0000000000000b1']);
    expect(bUs.tags['i-0b0000000000000b1']).toEqual({ team: 'x' });
    const bEu = await listInstances(roleCreds, 'eu-west-1');
    expect(bEu.ids).toEqual(['i-0b00000000000e0b1']);

    const foreign = await errorOf(
      ec2(A).send(new DescribeInstancesCommand({ InstanceIds: ['i-0b0000000000000b1'] })),
    );
    expect(foreign.name).toBe('InvalidInstanceID.NotFound');

    const regions = await ec2(A).send(new DescribeRegionsCommand({}));
    expect(regions.Regions?.map((r) => r.RegionName)).toEqual(['us-east-1', 'eu-west-1']);

    const managed: string[] = [];
    for await (const page of paginateDescribeInstanceInformation({ client: ssm(A) }, {})) {
      for (const i of page.InstanceInformationList ?? []) {
        managed.push(i.InstanceId as string);
        expect(i.PingStatus).toBe('Online');
        expect(i.PlatformType).toBe('Linux');
      }
    }
    expect(managed.sort()).toEqual(a1);
  });

  it('AssumeRole — needs the external id; the role acts in its own account', async () => {
    await start();
    const denied = await errorOf(
      sts(A).send(
        new AssumeRoleCommand({ RoleArn: ROLE_ARN, RoleSessionName: 'fleetward', ExternalId: 'wrong' }),
      ),
    );
    expect(denied.name).toBe('AccessDenied');
    const missing = await errorOf(
      sts(A).send(new AssumeRoleCommand({ RoleArn: ROLE_ARN, RoleSessionName: 'fleetward' })),
    );
    expect(missing.name).toBe('AccessDenied');

    const role = await assumeB();
    const me = await sts(role).send(new GetCallerIdentityCommand({}));
    expect(me.Account).toBe(B.id);
    expect(me.Arn).toBe(`arn:aws:sts::${B.id}:assumed-role/FleetwardMsp/fleetward`);
    expect((await sts(A).send(new GetCallerIdentityCommand({}))).Account).toBe(A.id);

    const forged = await errorOf(
      ec2({ ...role, sessionToken: 'not-the-token' }).send(new DescribeRegionsCommand({})),
    );
    expect(forged.name).toBe('AuthFailure');
  });

  it('SendCommand — a bound runner gets the script; polling reaches the real exit code with output cut as SSM cuts it', async () => {
    await start({ invocationNotFoundPolls: 2 });
    const seen: { script: string; wd: string | undefined }[] = [];
    const runner: AwsFakeRunner = async (script, { workingDirectory }) => {
      seen.push({ script, wd: workingDirectory });
      return script.includes('fail')
        ? { exitCode: 3, stdout: 'o'.repeat(30_000), stderr: 'e'.repeat(9_000) }
        : { exitCode: 0, stdout: 'hello\n', stderr: '' };
    };
    const inst = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    inst.bind(runner);
    const client = ssm(A);
    const hostile = `'; rm -rf / #$(id)\`x\``;

    const ok = await client.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['echo hello', hostile], workingDirectory: ['/srv'] },
      }),
    );
    const commandId = ok.Command?.CommandId as string;
    const idne = await errorOf(
      client.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: inst.instanceId })),
    );
    expect(idne.name).toBe('InvocationDoesNotExist');
    const done = await poll(client, commandId, inst.instanceId);
    expect(done.Status).toBe('Success');
    expect(done.ResponseCode).toBe(0);
    expect(done.StandardOutputContent).toBe('hello\n');
    expect(seen[0]).toEqual({ script: `echo hello\n${hostile}`, wd: '/srv' });

    const bad = await client.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['fail'] },
      }),
    );
    const failed = await poll(client, bad.Command?.CommandId as string, inst.instanceId);
    expect(failed.Status).toBe('Failed');
    expect(failed.ResponseCode).toBe(3);
    expect(failed.StandardOutputContent).toHaveLength(SSM_STDOUT_LIMIT);
    expect(failed.StandardErrorContent).toHaveLength(SSM_STDERR_LIMIT);

    inst.bind(() => {
      throw new Error('runner exploded');
    });
    const thrown = await client.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['true'] },
      }),
    );
    const exploded = await poll(client, thrown.Command?.CommandId as string, inst.instanceId);
    expect(exploded.Status).toBe('Failed');
    expect(exploded.StandardErrorContent).toBe('runner exploded');

    const unmanaged = fake.addInstance({ accountId: A.id, region: 'us-east-1', ssm: false });
    const rejected = await errorOf(
      client.send(
        new SendCommandCommand({
          DocumentName: 'AWS-RunShellScript',
          InstanceIds: [unmanaged.instanceId],
          Parameters: { commands: ['true'] },
        }),
      ),
    );
    expect(rejected.name).toBe('InvalidInstanceId');
  });

  it('CancelCommand — aborts the runner and ends the invocation Cancelled', async () => {
    await start();
    let aborted = false;
    const inst = fake.addInstance({
      accountId: A.id,
      region: 'us-east-1',
      runner: (_script, { signal }) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('killed'));
          });
        }),
    });
    const client = ssm(A);
    const sent = await client.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['sleep 1000'] },
      }),
    );
    const id = sent.Command?.CommandId as string;
    const running = await client.send(
      new GetCommandInvocationCommand({ CommandId: id, InstanceId: inst.instanceId }),
    );
    expect(running.Status).toBe('InProgress');
    await client.send(new CancelCommandCommand({ CommandId: id }));
    const out = await client.send(
      new GetCommandInvocationCommand({ CommandId: id, InstanceId: inst.instanceId }),
    );
    expect(out.Status).toBe('Cancelled');
    expect(aborted).toBe(true);
  });

  it('agentOffline — commands stay Pending, then time out undelivered; back online, they run', async () => {
    await start();
    const inst = fake.addInstance({
      accountId: A.id,
      region: 'us-east-1',
      runner: async () => ({ exitCode: 0, stdout: 'ran', stderr: '' }),
    });
    fake.faults.agentOffline(inst.instanceId);
    const client = ssm(A);
    const info = await client.send(
      new DescribeInstanceInformationCommand({
        Filters: [{ Key: 'InstanceIds', Values: [inst.instanceId] }],
      }),
    );
    expect(info.InstanceInformationList?.[0]?.PingStatus).toBe('ConnectionLost');

    const send = () =>
      client.send(
        new SendCommandCommand({
          DocumentName: 'AWS-RunShellScript',
          InstanceIds: [inst.instanceId],
          TimeoutSeconds: 60,
          Parameters: { commands: ['true'] },
        }),
      );
    const lost = (await send()).Command?.CommandId as string;
    const get = (id: string) =>
      client.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: inst.instanceId }));
    expect((await get(lost)).Status).toBe('Pending');
    now += 61_000;
    const timedOut = await get(lost);
    expect(timedOut.Status).toBe('TimedOut');
    expect(timedOut.StatusDetails).toBe('DeliveryTimedOut');

    const later = (await send()).Command?.CommandId as string;
    expect((await get(later)).Status).toBe('Pending');
    fake.faults.agentOnline(inst.instanceId);
    const done = await poll(client, later, inst.instanceId);
    expect(done.Status).toBe('Success');
    expect(done.StandardOutputContent).toBe('ran');
  });

  it('throttle — the SDK retries ThrottlingException and RequestLimitExceeded; without retries it surfaces', async () => {
    await start();
    fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    fake.faults.throttle('DescribeInstanceInformation', 2);
    const out = await ssm(A).send(new DescribeInstanceInformationCommand({}));
    expect(out.InstanceInformationList).toHaveLength(1);
    const calls = fake.requests.filter((r) => r.operation === 'DescribeInstanceInformation');
    expect(calls.map((r) => r.errorCode ?? r.status)).toEqual([
      'ThrottlingException',
      'ThrottlingException',
      200,
    ]);

    fake.faults.throttle('DescribeRegions', 1);
    expect((await ec2(A).send(new DescribeRegionsCommand({}))).Regions).toHaveLength(2);
    expect(
      fake.requests.filter((r) => r.operation === 'DescribeRegions').map((r) => r.errorCode ?? r.status),
    ).toEqual(['RequestLimitExceeded', 200]);

    fake.faults.throttle('DescribeInstanceInformation', 1);
    const e = await errorOf(ssm(A, 'us-east-1', 1).send(new DescribeInstanceInformationCommand({})));
    expect(e.name).toBe('ThrottlingException');
  });

  it('expired credentials — calls with role credentials past their expiry fail with ExpiredToken', async () => {
    await start();
    const role = await assumeB();
    expect((await ec2(role).send(new DescribeRegionsCommand({}))).Regions).toHaveLength(2);
    now += 901_000;
    expect((await errorOf(ec2(role).send(new DescribeRegionsCommand({})))).name).toBe('ExpiredToken');
    expect((await errorOf(sts(role).send(new GetCallerIdentityCommand({})))).name).toBe('ExpiredToken');
    expect((await errorOf(ssm(role).send(new DescribeInstanceInformationCommand({})))).name).toBe(
      'ExpiredTokenException',
    );
    // Static keys never expire.
    expect((await sts(A).send(new GetCallerIdentityCommand({}))).Account).toBe(A.id);

    const fresh = await assumeB();
    fake.faults.expireCredentials();
    expect((await errorOf(ec2(fresh).send(new DescribeRegionsCommand({})))).name).toBe('ExpiredToken');
  });

  it('serverError — a 5xx is retried, surfaces as a server fault, and an HTML body is no service exception', async () => {
    await start();
    fake.faults.serverError('DescribeInstanceInformation', 1);
    expect((await ssm(A).send(new DescribeInstanceInformationCommand({}))).InstanceInformationList).toEqual(
      [],
    );

    fake.faults.serverError('DescribeInstanceInformation', 1, { status: 500 });
    const e500 = await errorOf(ssm(A, 'us-east-1', 1).send(new DescribeInstanceInformationCommand({})));
    expect(e500.name).toBe('InternalError');
    expect(e500.$fault).toBe('server');
    expect(e500.$metadata?.httpStatusCode).toBe(500);

    fake.faults.serverError('DescribeInstanceInformation', 1, { status: 502, html: true });
    const e502 = await errorOf(ssm(A, 'us-east-1', 1).send(new DescribeInstanceInformationCommand({})));
    // What the SDK does with a body it cannot parse (reference §1): no service exception.
    expect(e502.name).toBe('SyntaxError');
    expect(e502.$metadata?.httpStatusCode).toBe(502);
    expect(fake.requests.at(-1)).toMatchObject({
      operation: 'DescribeInstanceInformation',
      status: 502,
      errorCode: 'html',
    });
  });

  it('SendSSHPublicKey — keeps the key for 60 seconds on the instance', async () => {
    await start();
    const inst = fake.addInstance({ accountId: A.id, region: 'eu-west-1' });
    const eic = new EC2InstanceConnectClient(clientConfig(A, 'eu-west-1'));
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileFreeKey test';
    const out = await eic.send(
      new SendSSHPublicKeyCommand({
        InstanceId: inst.instanceId,
        InstanceOSUser: 'ec2-user',
        SSHPublicKey: key,
      }),
    );
    expect(out.Success).toBe(true);
    expect(inst.sshPublicKeys().map((k) => [k.osUser, k.publicKey])).toEqual([['ec2-user', key]]);
    now += 61_000;
    expect(inst.sshPublicKeys()).toEqual([]);
    const wrongRegion = await errorOf(
      new EC2InstanceConnectClient(clientConfig(A, 'us-east-1')).send(
        new SendSSHPublicKeyCommand({
          InstanceId: inst.instanceId,
          InstanceOSUser: 'ec2-user',
          SSHPublicKey: key,
        }),
      ),
    );
    expect(wrongRegion.name).toBe('EC2InstanceNotFoundException');
  });

  it('addInstance — rejects unknown accounts and regions', async () => {
    await start();
    expect(() => fake.addInstance({ accountId: '999999999999', region: 'us-east-1' })).toThrow(
      ValidationError,
    );
    expect(() => fake.addInstance({ accountId: A.id, region: 'ap-south-1' })).toThrow(/ap-south-1/);
    await expect(startAwsFake({ accounts: [{ ...A, id: '12' }] })).rejects.toThrow(ValidationError);
  });
});

describe('startAwsFake — EBS snapshots, S3 output, PowerShell documents', () => {
  it('CreateSnapshots — one snapshot per volume with the tags; DescribeSnapshots pages, filters, pending then completed', async () => {
    await start();
    const inst = fake.addInstance({
      accountId: A.id,
      region: 'us-east-1',
      volumes: [{ volumeId: 'vol-0aaaaaaaaaaaaaaa1', sizeGiB: 20 }, { sizeGiB: 50 }, {}],
    });
    const client = ec2(A);
    const created = await client.send(
      new CreateSnapshotsCommand({
        InstanceSpecification: { InstanceId: inst.instanceId, ExcludeBootVolume: false },
        CopyTagsFromSource: 'volume',
        TagSpecifications: [
          { ResourceType: 'snapshot', Tags: [{ Key: 'fleetward:label', Value: 'pre <1>' }] },
        ],
      }),
    );
    const snaps = created.Snapshots ?? [];
    expect(snaps.map((s) => [s.VolumeId?.startsWith('vol-'), s.State, s.VolumeSize, s.OwnerId])).toEqual([
      [true, 'pending', 20, A.id],
      [true, 'pending', 50, A.id],
      [true, 'pending', 8, A.id],
    ]);
    expect(snaps[0]?.VolumeId).toBe('vol-0aaaaaaaaaaaaaaa1');
    expect(snaps[0]?.StartTime).toEqual(new Date(now));
    expect(snaps[0]?.Tags).toEqual([{ Key: 'fleetward:label', Value: 'pre <1>' }]);
    const ids = snaps.map((s) => s.SnapshotId as string);

    const listStates = async () => {
      const states: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const out = await client.send(
          new DescribeSnapshotsCommand({
            Filters: [{ Name: 'tag:fleetward:label', Values: ['pre <1>'] }],
            ...(token ? { NextToken: token } : {}),
          }),
        );
        pages++;
        states.push(...(out.Snapshots ?? []).map((s) => `${s.SnapshotId}:${s.State}`));
        token = out.NextToken;
      } while (token);
      return { states, pages };
    };
    expect(await listStates()).toEqual({ states: ids.map((id) => `${id}:pending`), pages: 2 });
    expect(await listStates()).toEqual({ states: ids.map((id) => `${id}:completed`), pages: 2 });
    expect(fake.snapshots().map((s) => [s.snapshotId, s.instanceId, s.state])).toEqual(
      ids.map((id) => [id, inst.instanceId, 'completed']),
    );
    const none = await client.send(
      new DescribeSnapshotsCommand({ Filters: [{ Name: 'tag:fleetward:label', Values: ['other'] }] }),
    );
    expect(none.Snapshots).toEqual([]);
    const missing = await errorOf(
      client.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0123456789abcdef0'] })),
    );
    expect(missing.name).toBe('InvalidSnapshot.NotFound');
    // Snapshots are per account and region, as EC2 keeps them.
    expect((await ec2(A, 'eu-west-1').send(new DescribeSnapshotsCommand({}))).Snapshots).toEqual([]);
  });

  it('snapshotFails — the next snapshots of the instance end in error with a StatusMessage; later ones complete', async () => {
    now = Date.parse('2026-12-07T10:00:00Z');
    fake = await startAwsFake({ accounts: [A], clock, snapshotPendingPolls: 0 });
    const inst = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    fake.faults.snapshotFails(inst.instanceId);
    const client = ec2(A);
    const make = async () => {
      const out = await client.send(
        new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: inst.instanceId } }),
      );
      const id = out.Snapshots?.[0]?.SnapshotId as string;
      return (await client.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots?.[0];
    };
    const failed = await make();
    expect(failed?.State).toBe('error');
    expect(failed?.StateMessage).toMatch(/failed/);
    expect((await make())?.State).toBe('completed');
    const unknown = await errorOf(
      client.send(
        new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: 'i-0123456789abcdef0' } }),
      ),
    );
    expect(unknown.name).toBe('InvalidInstanceID.NotFound');
    expect(() => fake.faults.snapshotFails('i-0123456789abcdef0')).toThrow(/i-0123456789abcdef0/);
  });

  it('S3 — SSM writes the full output to OutputS3BucketName; GetObject reads it path-style; errors as S3 sends them', async () => {
    const runner: AwsFakeRunner = async () => ({
      exitCode: 0,
      stdout: 'o'.repeat(30_000),
      stderr: 'e'.repeat(9_000),
    });
    now = Date.parse('2026-12-07T10:00:00Z');
    fake = await startAwsFake({ accounts: [{ ...A, buckets: ['out-a'] }, B], clock, defaultRunner: runner });
    fake.createBucket(B.id, 'out-b');
    expect(() => fake.createBucket(A.id, 'out-b')).toThrow(ValidationError);
    expect(() => fake.createBucket(A.id, 'Bad_Name')).toThrow(ValidationError);
    const inst = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    const sent = await ssm(A).send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['true'] },
        OutputS3BucketName: 'out-a',
        OutputS3KeyPrefix: 'p/q',
      }),
    );
    const commandId = sent.Command?.CommandId as string;
    expect(sent.Command?.OutputS3BucketName).toBe('out-a');
    const done = await poll(ssm(A), commandId, inst.instanceId);
    expect(done.StandardOutputContent).toHaveLength(SSM_STDOUT_LIMIT);
    const key = `p/q/${commandId}/${inst.instanceId}/awsrunShellScript/0.awsrunShellScript/stdout`;
    expect(done.StandardOutputUrl).toBe(`https://s3.us-east-1.amazonaws.com/out-a/${key}`);
    expect(Object.keys(fake.bucketObjects('out-a')).sort()).toEqual([key.replace(/stdout$/, 'stderr'), key]);

    const s3 = new S3Client({ ...clientConfig(A, 'us-east-1'), forcePathStyle: true });
    const got = await s3.send(new GetObjectCommand({ Bucket: 'out-a', Key: key }));
    expect(await got.Body?.transformToString()).toBe('o'.repeat(30_000));
    expect(got.ContentLength).toBe(30_000);
    await s3.send(new PutObjectCommand({ Bucket: 'out-a', Key: 'dir/a b+ü.txt', Body: 'hello' }));
    expect(fake.bucketObjects('out-a')['dir/a b+ü.txt']).toBe('hello');
    expect(
      (await s3.send(new HeadObjectCommand({ Bucket: 'out-a', Key: 'dir/a b+ü.txt' }))).ContentLength,
    ).toBe(5);

    const noKey = await errorOf(s3.send(new GetObjectCommand({ Bucket: 'out-a', Key: 'nope' })));
    expect([noKey.name, noKey.$metadata?.httpStatusCode]).toEqual(['NoSuchKey', 404]);
    const noBucket = await errorOf(s3.send(new GetObjectCommand({ Bucket: 'out-zzz', Key: 'k' })));
    expect([noBucket.name, noBucket.$metadata?.httpStatusCode]).toEqual(['NoSuchBucket', 404]);
    const denied = await errorOf(s3.send(new GetObjectCommand({ Bucket: 'out-b', Key: 'k' })));
    expect([denied.name, denied.$metadata?.httpStatusCode]).toEqual(['AccessDenied', 403]);
    const headMissing = await errorOf(s3.send(new HeadObjectCommand({ Bucket: 'out-a', Key: 'nope' })));
    expect(headMissing.$metadata?.httpStatusCode).toBe(404);
    expect(
      fake.requests.filter((r) => r.service === 's3').map((r) => [r.operation, r.status, r.errorCode]),
    ).toEqual([
      ['GetObject', 200, undefined],
      ['PutObject', 200, undefined],
      ['HeadObject', 200, undefined],
      ['GetObject', 404, 'NoSuchKey'],
      ['GetObject', 404, 'NoSuchBucket'],
      ['GetObject', 403, 'AccessDenied'],
      ['HeadObject', 404, 'NoSuchKey'],
    ]);
    s3.destroy();

    // The instance role of account A cannot write B's bucket: SSM keeps only the inline output.
    const foreign = await ssm(A).send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [inst.instanceId],
        Parameters: { commands: ['true'] },
        OutputS3BucketName: 'out-b',
      }),
    );
    const foreignDone = await poll(ssm(A), foreign.Command?.CommandId as string, inst.instanceId);
    expect(foreignDone.StandardOutputUrl).toBe('');
    expect(fake.bucketObjects('out-b')).toEqual({});
  });

  it('SendCommand — AWS-RunPowerShellScript reaches the runner with its document name; unknown documents are refused', async () => {
    const documents: string[] = [];
    const runner: AwsFakeRunner = async (_script, { documentName }) => {
      documents.push(documentName);
      return { exitCode: 0, stdout: '', stderr: '' };
    };
    now = Date.parse('2026-12-07T10:00:00Z');
    fake = await startAwsFake({ accounts: [A], clock, defaultRunner: runner });
    const inst = fake.addInstance({ accountId: A.id, region: 'us-east-1', platform: 'windows' });
    const send = (DocumentName: string) =>
      ssm(A).send(
        new SendCommandCommand({
          DocumentName,
          InstanceIds: [inst.instanceId],
          Parameters: { commands: ['Get-Date'] },
        }),
      );
    const sent = await send('AWS-RunPowerShellScript');
    const done = await poll(ssm(A), sent.Command?.CommandId as string, inst.instanceId);
    expect([done.DocumentName, done.PluginName]).toEqual([
      'AWS-RunPowerShellScript',
      'aws:runPowerShellScript',
    ]);
    await send('AWS-RunShellScript');
    await vi.waitFor(() => expect(documents).toEqual(['AWS-RunPowerShellScript', 'AWS-RunShellScript']));
    expect((await errorOf(send('AWS-ApplyPatchBaseline'))).name).toBe('InvalidDocument');
  });
});
