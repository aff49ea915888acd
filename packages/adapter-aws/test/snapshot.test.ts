import { EC2Client } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { createAwsAdapter, SNAPSHOT_LABEL_TAG, SNAPSHOT_SERVER_TAG } from '@fleetward/adapter-aws';
import {
  AbortedError,
  AuthorizationError,
  type Server,
  type SnapshotCapability,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, startAwsFake } from '@fleetward/testkit/aws';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-do-not-leak',
};

let fake: AwsFake;
let closeAdapter: (() => Promise<void>) | undefined;

beforeAll(() => {
  // The SDK reads ~/.aws even with explicit credentials (reference §1).
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
afterEach(async () => {
  await closeAdapter?.();
  closeAdapter = undefined;
  await fake?.close();
});

async function setup(opts: { snapshotPendingPolls?: number } = {}) {
  fake = await startAwsFake({
    accounts: [A],
    ...(opts.snapshotPendingPolls !== undefined ? { snapshotPendingPolls: opts.snapshotPendingPolls } : {}),
  });
}

function snapshotter(
  extra: {
    snapshotTimeoutMs?: number;
    accessKeyId?: string;
    secretAccessKey?: string;
    maxAttempts?: number;
  } = {},
): SnapshotCapability {
  const {
    accessKeyId = A.accessKeyId,
    secretAccessKey = A.secretAccessKey,
    maxAttempts = 4,
    ...rest
  } = extra;
  const adapter = createAwsAdapter({
    snapshotPollIntervalMs: 5,
    maxPollIntervalMs: 40,
    ...rest,
    clients: (_accountId, region) => {
      const config = {
        region,
        endpoint: fake.endpoint,
        credentials: { accessKeyId, secretAccessKey },
        retryStrategy: new ConfiguredRetryStrategy(maxAttempts, 0),
      };
      return { ssm: new SSMClient(config), ec2: new EC2Client(config) };
    },
  });
  closeAdapter = adapter.close;
  return adapter.snapshot as SnapshotCapability;
}

function serverOf(instanceId: string, region = 'us-east-1'): Server {
  return {
    tenantId: 't1',
    id: `srv-${instanceId}`,
    accountId: 'acct-a',
    provider: 'aws',
    providerId: instanceId,
    region,
    name: instanceId,
    labels: {},
  } as unknown as Server;
}

const ops = (name: string) => fake.requests.filter((r) => r.operation === name);

describe('snapshot through EBS CreateSnapshots', () => {
  it('snapshot — snapshots every volume, tags them, waits until all are completed, returns the ids joined', async () => {
    await setup({ snapshotPendingPolls: 2 });
    const i = fake.addInstance({
      accountId: A.id,
      region: 'eu-west-1',
      volumes: [{ sizeGiB: 30 }, { sizeGiB: 100, device: '/dev/sdf' }, { sizeGiB: 5 }],
    });
    const { snapshotId } = await snapshotter().snapshot(serverOf(i.instanceId, 'eu-west-1'), {
      label: 'fleetward-plan-1-pre',
    });
    const snaps = fake.snapshots();
    expect(snaps).toHaveLength(3);
    expect(snapshotId).toBe(snaps.map((s) => s.snapshotId).join(','));
    expect(snaps.map((s) => s.volumeSizeGiB)).toEqual([30, 100, 5]);
    for (const s of snaps) {
      expect(s).toMatchObject({ instanceId: i.instanceId, region: 'eu-west-1', state: 'completed' });
      expect(s.tags).toEqual({
        [SNAPSHOT_LABEL_TAG]: 'fleetward-plan-1-pre',
        Name: 'fleetward-plan-1-pre',
        [SNAPSHOT_SERVER_TAG]: `srv-${i.instanceId}`,
      });
    }
    // pending, pending, then completed: three polls of two pages each (the fake's page size is 2).
    expect(ops('CreateSnapshots')).toHaveLength(1);
    expect(ops('DescribeSnapshots')).toHaveLength(6);
    expect(ops('DescribeSnapshots').every((r) => r.region === 'eu-west-1' && r.status === 200)).toBe(true);
  });

  it('snapshot — a snapshot that ends in error rejects with a TransportError naming it and EC2’s message', async () => {
    await setup();
    const i = fake.addInstance({ accountId: A.id, region: 'us-east-1', volumes: [{}, {}] });
    fake.faults.snapshotFails(i.instanceId);
    const error = await snapshotter()
      .snapshot(serverOf(i.instanceId), { label: 'pre' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    const [first, second] = fake.snapshots();
    expect(first?.state).toBe('error');
    expect((error as Error).message).toContain(first?.snapshotId);
    expect((error as Error).message).toContain(first?.stateMessage);
    expect((error as Error).message).toContain(`${second?.snapshotId} were kept`);
    // The fault covers one CreateSnapshots: the next backup of the instance succeeds.
    await expect(snapshotter().snapshot(serverOf(i.instanceId), { label: 'again' })).resolves.toMatchObject({
      snapshotId: expect.stringMatching(/^snap-[0-9a-f]{17},snap-[0-9a-f]{17}$/),
    });
  });

  it('snapshot — past snapshotTimeoutMs it rejects with a TimeoutError naming the pending snapshots, and deletes nothing', async () => {
    await setup({ snapshotPendingPolls: 1_000_000 });
    const i = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    const error = await snapshotter({ snapshotTimeoutMs: 150 })
      .snapshot(serverOf(i.instanceId), { label: 'pre' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    const [snap] = fake.snapshots();
    expect((error as Error).message).toContain(snap?.snapshotId);
    expect((error as Error).message).toContain('not deleted');
    expect(snap?.state).toBe('pending');
    expect(fake.requests.some((r) => r.operation === 'DeleteSnapshot')).toBe(false);
  });

  it('snapshot — the signal stops the wait with an AbortedError naming the snapshots that go on', async () => {
    await setup({ snapshotPendingPolls: 1_000_000 });
    const i = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    const controller = new AbortController();
    const pending = snapshotter().snapshot(serverOf(i.instanceId), {
      label: 'pre',
      signal: controller.signal,
    });
    await vi.waitFor(() => expect(ops('DescribeSnapshots').length).toBeGreaterThan(1));
    controller.abort();
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as Error).message).toContain(fake.snapshots()[0]?.snapshotId);

    const before = fake.requests.length;
    await expect(
      snapshotter().snapshot(serverOf(i.instanceId), { label: 'pre', signal: AbortSignal.abort() }),
    ).rejects.toBeInstanceOf(AbortedError);
    expect(fake.requests.length).toBe(before);
  });

  it('snapshot — polls throttled beyond the SDK retries back off and go on', async () => {
    await setup({ snapshotPendingPolls: 0 });
    const i = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    fake.faults.throttle('DescribeSnapshots', 5);
    const started = performance.now();
    const { snapshotId } = await snapshotter({ maxAttempts: 2 }).snapshot(serverOf(i.instanceId), {
      label: 'pre',
    });
    expect(snapshotId).toBe(fake.snapshots()[0]?.snapshotId);
    const describes = ops('DescribeSnapshots');
    expect(describes.filter((r) => r.errorCode === 'RequestLimitExceeded')).toHaveLength(5);
    expect(describes.at(-1)?.status).toBe(200);
    // Intervals 5 → 10 → 20 (two throttled polls each): at least 5 + 10 + 20 ms of waiting.
    expect(performance.now() - started).toBeGreaterThanOrEqual(30);
  });

  it('snapshot — refuses a managed instance (mi-…) and an empty label before any call', async () => {
    await setup();
    const before = fake.requests.length;
    await expect(
      snapshotter().snapshot(serverOf('mi-0123456789abcdef0'), { label: 'pre' }),
    ).rejects.toBeInstanceOf(ValidationError);
    await expect(
      snapshotter().snapshot(serverOf('i-0123456789abcdef0'), { label: '' }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(fake.requests.length).toBe(before);
  });

  it('snapshot — an unknown instance is a TransportError; refused credentials an AuthorizationError without the secret', async () => {
    await setup();
    const missing = await snapshotter()
      .snapshot(serverOf('i-0123456789abcdef0'), { label: 'pre' })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(TransportError);
    expect((missing as Error).message).toContain('InvalidInstanceID.NotFound');

    const secret = 'unknown-secret-do-not-leak';
    fake.addInstance({ accountId: A.id, region: 'us-east-1', instanceId: 'i-0aaaaaaaaaaaaaaa1' });
    const refused = await snapshotter({ accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: secret })
      .snapshot(serverOf('i-0aaaaaaaaaaaaaaa1'), { label: 'pre' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthorizationError);
    expect((refused as Error).message).toContain('AuthFailure');
    expect(JSON.stringify(refused)).not.toContain(secret);
    expect(String((refused as Error).cause)).not.toContain(secret);
    expect(fake.snapshots()).toHaveLength(0);
  });
});
