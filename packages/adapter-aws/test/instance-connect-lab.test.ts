import { EC2InstanceConnectClient } from '@aws-sdk/client-ec2-instance-connect';
import { instanceConnectCredentials, SSH_USER_LABEL } from '@fleetward/adapter-aws';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  type ExecCapability,
  generateEd25519KeyPair,
  type Server,
  ValidationError,
} from '@fleetward/core';
import {
  type AwsFake,
  type AwsFakeInstance,
  labHostInstanceConnect,
  startAwsFake,
} from '@fleetward/testkit/aws';
import { describeWithLab, type Lab, type LabHost, startLab } from '@fleetward/testkit/lab';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it, vi } from 'vitest';

const ACCOUNT = { id: '555555555555', accessKeyId: 'AKIAEEEEEEEEEEEEEEEE', secretAccessKey: 'secret-e' };
const OS_USER = 'ec2-user';
const AUTHORIZED_KEYS = `/home/${OS_USER}/.ssh/authorized_keys`;
/** `expiry-time="YYYYMMDDHHMMSSZ" ssh-ed25519 <base64> <comment>`, as the hook writes it. */
const EXPIRING_LINE =
  /^expiry-time="(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z" (ssh-ed25519 [A-Za-z0-9+/=]+)( .*)?$/;

/** The expiry and the `type base64` key of an expiring authorized_keys line. */
function parseLine(line: string): { expiresAt: Date; key: string } {
  const m = EXPIRING_LINE.exec(line);
  if (!m) throw new Error(`not an expiring key line: ${line}`);
  const [, y, mo, d, h, mi, s, key] = m;
  return { expiresAt: new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`), key: key as string };
}

/** `ssh-ed25519 <base64>` without the comment. */
const keyPart = (publicKey: string) => publicKey.split(' ').slice(0, 2).join(' ');

/** `YYYYMMDDHHMMSSZ` of `at`, for lines written by the test itself. */
const expiryTime = (at: Date) => `${at.toISOString().slice(0, 19).replace(/[-T:]/g, '')}Z`;

describeWithLab('EC2 Instance Connect to a lab host', () => {
  let lab: Lab;
  let host: LabHost;
  let fake: AwsFake;
  let instance: AwsFakeInstance;
  let ssh: Adapter;

  beforeAll(async () => {
    vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
    lab = await startLab({
      hosts: [{ name: 'eic1', flavour: 'debian' }],
      users: [{ login: OS_USER, sudo: 'nopasswd' }],
    });
    host = lab.host('eic1');
    fake = await startAwsFake({ accounts: [ACCOUNT] });
    instance = fake.addInstance({
      accountId: ACCOUNT.id,
      region: 'us-east-1',
      onSshPublicKey: labHostInstanceConnect(host),
    });
  }, 120_000);

  afterAll(async () => {
    await fake?.close();
    await lab?.stop();
    vi.unstubAllEnvs();
  }, 120_000);

  beforeEach(async () => {
    // No standing key: the lab gives every user one, which would let the SSH login succeed anyway.
    await host.writeFile(AUTHORIZED_KEYS, '', { mode: '600', owner: `${OS_USER}:${OS_USER}` });
    ssh = sshAdapter();
  });
  afterEach(() => ssh?.close?.());

  function sshAdapter(reuseKeyForMs = 0): Adapter {
    return createSshAdapter({
      credentialsFor: instanceConnectCredentials({
        reuseKeyForMs,
        client: (region) =>
          new EC2InstanceConnectClient({
            region,
            endpoint: fake.endpoint,
            credentials: ACCOUNT,
            retryStrategy: new ConfiguredRetryStrategy(3, 0),
          }),
      }),
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { [host.address]: [host.hostKeys.ed25519.fingerprint] },
      connectTimeoutMs: 5000,
    });
  }

  function serverOf(labels: Record<string, string> = {}): Server {
    return {
      tenantId: 'lab',
      id: 'eic1',
      accountId: 'lab-aws',
      provider: 'aws',
      providerId: instance.instanceId,
      region: 'us-east-1',
      name: 'eic1',
      address: host.address,
      labels,
      version: 1,
      createdAt: '2026-12-07T00:00:00.000Z',
      updatedAt: '2026-12-07T00:00:00.000Z',
    } as Server;
  }

  const exec = (command: string[], server = serverOf()) =>
    (ssh.exec as ExecCapability).exec(server, { argv: command }, { timeoutMs: 20_000 });
  const authorizedLines = async () =>
    (await host.readFile(AUTHORIZED_KEYS)).split('\n').filter((line) => line.trim() !== '');
  const eicCalls = () => fake.requests.filter((r) => r.operation === 'SendSSHPublicKey').length;

  it('exec — logs in with a pushed key while authorized_keys holds only expiring keys', async () => {
    expect(await authorizedLines()).toEqual([]);
    const r = await exec(['id', '-un']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.text).toBe(`${OS_USER}\n`);
    const lines = await authorizedLines();
    expect(lines).toHaveLength(1);
    for (const line of lines) expect(line).toMatch(EXPIRING_LINE);
    const pushed = instance.sshPublicKeys();
    expect(pushed.map((k) => k.osUser)).toContain(OS_USER);
    expect(parseLine(lines[0] as string).key).toBe(keyPart(pushed.at(-1)?.publicKey as string));
  }, 60_000);

  it('exec — two new connections push two different keys', async () => {
    const before = eicCalls();
    const first = await exec(['sh', '-c', 'echo "$SSH_CONNECTION"']);
    const second = await exec(['sh', '-c', 'echo "$SSH_CONNECTION"']);
    expect(eicCalls() - before).toBe(2);
    // Another client port: each command came over its own connection.
    expect(first.stdout.text.split(' ')[1]).not.toBe(second.stdout.text.split(' ')[1]);
    const keys = (await authorizedLines()).map((line) => parseLine(line).key);
    expect(keys).toHaveLength(2);
    expect(new Set(keys).size).toBe(2);
  }, 60_000);

  it('exec — with reuseKeyForMs, a command on a pooled connection pushes no key', async () => {
    const reusing = sshAdapter(30_000);
    try {
      const before = eicCalls();
      const run = () =>
        (reusing.exec as ExecCapability).exec(serverOf(), { argv: ['sh', '-c', 'echo "$SSH_CONNECTION"'] });
      const first = await run();
      const second = await run();
      expect(eicCalls() - before).toBe(1);
      expect(second.stdout.text).toBe(first.stdout.text);
      expect(await authorizedLines()).toHaveLength(1);
    } finally {
      await reusing.close?.();
    }
  }, 60_000);

  it('exec — the pushed key line expires at most 60 s after the push', async () => {
    const before = Date.now();
    await exec(['true']);
    const after = Date.now();
    const { expiresAt } = parseLine((await authorizedLines()).at(-1) as string);
    // expiry-time has whole seconds, rounded down.
    expect(expiresAt.getTime()).toBeLessThanOrEqual(after + 60_000);
    expect(expiresAt.getTime()).toBeGreaterThan(before + 58_000);
    const recorded = instance.sshPublicKeys().at(-1)?.expiresAt.getTime() as number;
    expect(expiresAt.getTime()).toBe(Math.floor(recorded / 1000) * 1000);
  }, 60_000);

  it('login — the real sshd refuses a key whose expiry-time is past and accepts one still valid', async () => {
    const expired = generateEd25519KeyPair('expired');
    const valid = generateEd25519KeyPair('valid');
    const now = Date.now();
    const lines = [
      `expiry-time="${expiryTime(new Date(now - 60_000))}" ${expired.publicKey}`,
      `expiry-time="${expiryTime(new Date(now + 60_000))}" ${valid.publicKey}`,
    ];
    await host.writeFile(AUTHORIZED_KEYS, `${lines.join('\n')}\n`, {
      mode: '600',
      owner: `${OS_USER}:${OS_USER}`,
    });
    const probe = (privateKey: string) =>
      ssh.login?.probe(serverOf(), { username: OS_USER, privateKey }, { timeoutMs: 10_000 });
    expect(await probe(expired.privateKey)).toMatchObject({ ok: false, refused: true });
    expect(await probe(valid.privateKey)).toEqual({ ok: true });
  }, 60_000);

  it('exec — a hostile login label is a ValidationError before any AWS call or login', async () => {
    const before = eicCalls();
    for (const hostile of ['root; rm -rf /', 'a b', `${OS_USER}\nroot`]) {
      const error = await exec(['true'], serverOf({ [SSH_USER_LABEL]: hostile })).catch((e: unknown) => e);
      expect(error, JSON.stringify(hostile)).toBeInstanceOf(ValidationError);
    }
    expect(eicCalls()).toBe(before);
    expect(await authorizedLines()).toEqual([]);
  }, 60_000);
});
