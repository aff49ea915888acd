import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAwsAdapter, SSM_OUTPUT_BUCKET_LABEL, SSM_OUTPUT_PREFIX_LABEL } from '@fleetward/adapter-aws';
import {
  type Adapter,
  createFleet,
  createMemoryStore,
  type ExecCapability,
  type Fleet,
  type Server,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, startAwsFake } from '@fleetward/testkit/aws';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { localRunner } from './support/local-runner.js';

// AWS account A owns the output buckets; B owns one that A's instances cannot write nor A read.
const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-never-shown',
};
const B = { id: '222222222222', accessKeyId: 'AKIABBBBBBBBBBBBBBBB', secretAccessKey: 'secret-b-unused' };
const TENANT = 't1';

let fake: AwsFake;
let fleet: Fleet | undefined;

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

/** Fleetward accounts (all AWS account A, with the adapter's own keys), by their output labels. */
async function setup(options: { outputBucket?: string; outputPrefix?: string } = {}) {
  fake = await startAwsFake({
    accounts: [
      { ...A, buckets: ['fw-labelled', 'fw-default'] },
      { ...B, buckets: ['fw-foreign'] },
    ],
    defaultRunner: localRunner,
  });
  const adapter = createAwsAdapter({
    endpoint: fake.endpoint,
    credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
    pollIntervalMs: 20,
    maxAttempts: 4,
    ...options,
  });
  fleet = createFleet({ store: createMemoryStore(), adapters: [adapter] });
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'T' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
  const add = (id: string, labels: Record<string, string>) =>
    alice.accounts.add({ id, name: id, provider: 'aws', regions: ['us-east-1'], labels });
  await add('labelled', { [SSM_OUTPUT_BUCKET_LABEL]: 'fw-labelled', [SSM_OUTPUT_PREFIX_LABEL]: 'runs' });
  await add('plain', {});
  await add('foreign', { [SSM_OUTPUT_BUCKET_LABEL]: 'fw-foreign' });
  await add('missing', { [SSM_OUTPUT_BUCKET_LABEL]: 'fw-nobody-made-this' });
  await add('invalid', { [SSM_OUTPUT_BUCKET_LABEL]: 'Not_A_Bucket' });
  const instance = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
  return { exec: (adapter as Adapter).exec as ExecCapability, instanceId: instance.instanceId };
}

function serverOf(instanceId: string, accountId: string): Server {
  return {
    tenantId: TENANT,
    id: `srv-${instanceId}`,
    accountId,
    provider: 'aws',
    providerId: instanceId,
    region: 'us-east-1',
    name: instanceId,
    labels: {},
  } as unknown as Server;
}

// 60,000 characters of stdout and 20,000 of stderr that do not compress (random base64): beyond
// what SSM keeps inline even once the runner has packed them (gzip, base64).
const dir = mkdtempSync(join(tmpdir(), 'fw-s3-output-'));
const OUT = randomBytes(45_000).toString('base64');
const ERR = randomBytes(15_000).toString('base64');
writeFileSync(join(dir, 'out'), OUT);
writeFileSync(join(dir, 'err'), ERR);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LONG = { argv: ['sh', '-c', 'cat "$0"; cat "$1" >&2', join(dir, 'out'), join(dir, 'err')] };
const expected = (word: 'out' | 'err', n: number) => (word === 'out' ? OUT : ERR).slice(0, n);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const getObjects = () => fake.requests.filter((r) => r.operation === 'GetObject');

describe('exec output from S3', () => {
  it("exec — output beyond the inline limits is read in full from the account's labelled bucket and prefix", async () => {
    const { exec, instanceId } = await setup({ outputBucket: 'fw-default' });
    const seen = { stdout: '', stderr: '' };
    const result = await exec.exec(serverOf(instanceId, 'labelled'), LONG, {
      onOutput: (stream, chunk) => {
        seen[stream] += chunk.toString('utf8');
      },
    });
    const out = expected('out', 60_000);
    const err = expected('err', 20_000);
    expect(result.stdout).toEqual({ text: out, bytes: 60_000, sha256: sha(out), truncated: false });
    expect(result.stderr).toEqual({ text: err, bytes: 20_000, sha256: sha(err), truncated: false });
    expect(seen).toEqual({ stdout: out, stderr: err });
    const keys = Object.keys(fake.bucketObjects('fw-labelled'));
    expect(keys).toHaveLength(2);
    for (const key of keys) {
      expect(key).toMatch(
        new RegExp(`^runs/[0-9a-f-]{36}/${instanceId}/awsrunShellScript/0\\.awsrunShellScript/std(out|err)$`),
      );
    }
    expect(fake.bucketObjects('fw-default')).toEqual({});
    expect(getObjects().map((r) => [r.status, r.accountId])).toEqual([
      [200, A.id],
      [200, A.id],
    ]);
  });

  it('exec — the outputBucket option serves accounts without the label; maxOutputBytes still bounds the text', async () => {
    const { exec, instanceId } = await setup({ outputBucket: 'fw-default', outputPrefix: 'fleet/out/' });
    const result = await exec.exec(serverOf(instanceId, 'plain'), LONG, { maxOutputBytes: 1000 });
    const out = expected('out', 60_000);
    expect(result.stdout).toEqual({
      text: out.slice(0, 1000),
      bytes: 60_000,
      sha256: sha(out),
      truncated: true,
    });
    expect(result.stderr.bytes).toBe(20_000);
    expect(Object.keys(fake.bucketObjects('fw-default')).every((k) => k.startsWith('fleet/out/'))).toBe(true);
    expect(Object.keys(fake.bucketObjects('fw-default')).some((k) => k.startsWith('fleet/out//'))).toBe(
      false,
    );

    // Output within the inline limits needs no S3 read.
    const before = getObjects().length;
    const short = await exec.exec(serverOf(instanceId, 'plain'), { argv: ['echo', 'hello'] });
    expect(short.stdout).toMatchObject({ text: 'hello\n', truncated: false });
    expect(getObjects().length).toBe(before);
  });

  it('exec — without any output bucket a cut stream stays cut: truncated, nothing read from S3', async () => {
    const { exec, instanceId } = await setup();
    const result = await exec.exec(serverOf(instanceId, 'plain'), LONG);
    // What SSM kept inline decodes to a prefix of each stream.
    expect(result.stdout.truncated).toBe(true);
    expect(result.stdout.bytes).toBeLessThan(60_000);
    expect(OUT.startsWith(result.stdout.text)).toBe(true);
    expect(result.stderr.truncated).toBe(true);
    expect(ERR.startsWith(result.stderr.text)).toBe(true);
    expect(getObjects()).toHaveLength(0);
  });

  it('exec — when GetObject fails (AccessDenied, NoSuchBucket) the inline text stays, truncated', async () => {
    const { exec, instanceId } = await setup();

    for (const [account, code] of [
      ['foreign', 'AccessDenied'],
      ['missing', 'NoSuchBucket'],
    ] as const) {
      const seen: string[] = [];
      const result = await exec.exec(serverOf(instanceId, account), LONG, {
        onOutput: (stream, chunk) => {
          if (stream === 'stdout') seen.push(chunk.toString('utf8'));
        },
      });
      expect(result.exitCode).toBe(0);
      expect(result.stdout.truncated).toBe(true);
      expect(result.stdout.bytes).toBeGreaterThan(0);
      expect(OUT.startsWith(result.stdout.text)).toBe(true);
      expect(result.stderr.truncated).toBe(true);
      expect(seen.join('')).toBe(result.stdout.text);
      expect(getObjects().at(-1)).toMatchObject({
        status: code === 'AccessDenied' ? 403 : 404,
        errorCode: code,
      });
    }
    expect(fake.bucketObjects('fw-foreign')).toEqual({});
  });

  it('exec — an account label that is not a bucket name is refused before anything is sent', async () => {
    const { exec, instanceId } = await setup();
    await expect(exec.exec(serverOf(instanceId, 'invalid'), { argv: ['true'] })).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(fake.requests.some((r) => r.operation === 'SendCommand')).toBe(false);
  });
});
