import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { buildRunShellScript, createAwsAdapter } from '@fleetward/adapter-aws';
import {
  AbortedError,
  type Account,
  AuthorizationError,
  type DiscoveryResult,
  type ExecCapability,
  type Server,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { type AwsFake, type AwsFakeRunner, startAwsFake } from '@fleetward/testkit/aws';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { localRunner } from './support/local-runner.js';

const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-do-not-leak',
};
const ACCOUNT_ID = 'acct-a';

let fake: AwsFake;

beforeAll(() => {
  // The SDK reads ~/.aws even with explicit credentials (reference §1).
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
afterEach(async () => {
  await fake?.close();
});

function adapter(extra: { checkAgent?: boolean; secretAccessKey?: string; accessKeyId?: string } = {}) {
  const { secretAccessKey = A.secretAccessKey, accessKeyId = A.accessKeyId, ...rest } = extra;
  return createAwsAdapter({
    pollIntervalMs: 20,
    maxPollIntervalMs: 100,
    ...rest,
    clients: (_accountId, region) => {
      const config = {
        region,
        endpoint: fake.endpoint,
        credentials: { accessKeyId, secretAccessKey },
        retryStrategy: new ConfiguredRetryStrategy(4, 0),
      };
      return { ssm: new SSMClient(config), ec2: new EC2Client(config) };
    },
  });
}

function serverOf(instanceId: string, region = 'us-east-1'): Server {
  return {
    tenantId: 't1',
    id: `srv-${instanceId}`,
    accountId: ACCOUNT_ID,
    provider: 'aws',
    providerId: instanceId,
    region,
    name: instanceId,
    labels: {},
  } as unknown as Server;
}

async function setup(opts: { invocationNotFoundPolls?: number; runner?: AwsFakeRunner } = {}) {
  fake = await startAwsFake({
    accounts: [A],
    pageSize: 2,
    ...(opts.invocationNotFoundPolls !== undefined
      ? { invocationNotFoundPolls: opts.invocationNotFoundPolls }
      : {}),
  });
  const instance = fake.addInstance({ accountId: A.id, region: 'us-east-1', tags: { Name: 'web' } });
  instance.bind(opts.runner ?? localRunner);
  const a = adapter();
  return { instance, exec: a.exec as ExecCapability, server: serverOf(instance.instanceId), adapter: a };
}

const calls = (operation: string, errorCode?: string) =>
  fake.requests.filter(
    (r) => r.operation === operation && (errorCode === undefined || r.errorCode === errorCode),
  ).length;

/** Prints each argument, then each of the given env variables, base64-encoded on a line of its own. */
const ECHO_B64 =
  'for a in "$@"; do printf "%s" "$a" | base64 -w0; echo; done; for n in $NAMES; do eval "printf %s \\"\\$$n\\"" | base64 -w0; echo; done';
const decodeLines = (text: string) =>
  text
    .split('\n')
    .slice(0, -1)
    .map((l) => Buffer.from(l, 'base64').toString('utf8'));

describe('exec through SSM Run Command', () => {
  it('returns exit code, stdout, stderr, env and stdin', async () => {
    const { exec, server, adapter: a } = await setup();
    const r = await exec.exec(server, {
      argv: ['sh', '-c', 'echo out; echo "err $FOO" >&2; exit 3'],
      env: { FOO: 'bar' },
    });
    expect(r.exitCode).toBe(3);
    expect(r.signal).toBeNull();
    expect(r.stdout.text).toBe('out\n');
    expect(r.stderr.text).toBe('err bar\n');
    expect(r.stdout.truncated).toBe(false);
    expect(r.stdout.bytes).toBe(4);

    const stdin = 'line one\n\nlast line without newline';
    const cat = await exec.exec(server, { argv: ['cat'], stdin });
    expect(cat.exitCode).toBe(0);
    expect(cat.stdout.text).toBe(stdin);

    const script = await exec.exec(server, {
      interpreter: ['sh', '-s'],
      script: 'echo "hello $WHO"\nexit 0\n',
      env: { WHO: 'world' },
    });
    expect(script.stdout.text).toBe('hello world\n');

    const noStdin = await exec.exec(server, { argv: ['sh', '-c', 'cat; echo done'] });
    expect(noStdin.stdout.text).toBe('done\n');
    await a.close?.();
  });

  it('delivers hostile argv and env values literally, never as shell syntax', async () => {
    const { exec, server } = await setup();
    const dir = mkdtempSync(join(tmpdir(), 'fw-aws-hostile-'));
    const marker = join(dir, 'pwned');
    try {
      const hostile = [
        `$(touch ${marker})`,
        `\`touch ${marker}\``,
        `'; touch ${marker}; echo '`,
        `"; touch ${marker}; echo "`,
        '',
        ' leading and trailing ',
        '*',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal shell expansion is the point
        '$HOME ${PATH} $1 $@',
        "it's \\ back\\slash",
        'two\nlines\n\n',
        'fw_argv=x; fw_env=y',
        '_ZWNobw== _',
        'ünïcødé ✓ 🚀',
        '-n',
      ];
      const env = { V1: `$(touch ${marker})\n\`id\``, V2: '', V3: '\'"; exit 9' };
      const r = await exec.exec(server, {
        argv: ['sh', '-c', ECHO_B64, 'sh', ...hostile],
        env: { ...env, NAMES: 'V1 V2 V3' },
      });
      expect(r.stderr.text).toBe('');
      expect(r.exitCode).toBe(0);
      expect(decodeLines(r.stdout.text)).toEqual([...hostile, env.V1, env.V2, env.V3]);

      const viaStdin = await exec.exec(server, { argv: ['cat'], stdin: hostile.join('\0') });
      expect(viaStdin.stdout.text).toBe(hostile.join('\0'));
      expect(existsSync(marker)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("packs output so that SSM's 24,000 / 8,000 characters hold more, and reports truncated when SSM still cut it", async () => {
    const { exec, server } = await setup();
    // Text that compresses (a package list) comes back whole, far beyond the inline limits.
    const r = await exec.exec(server, {
      argv: [
        'sh',
        '-c',
        'head -c 300000 /dev/zero | tr "\\0" a; head -c 90000 /dev/zero | tr "\\0" b >&2; exit 3',
      ],
    });
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toMatchObject({ bytes: 300_000, truncated: false });
    expect(r.stdout.text).toBe('a'.repeat(300_000).slice(0, r.stdout.text.length));
    expect(r.stderr).toMatchObject({ text: 'b'.repeat(90_000), bytes: 90_000, truncated: false });
    // Bytes that are not UTF-8 survive the trip.
    const bin = await exec.exec(server, { argv: ['printf', '\\377\\000\\200x'] });
    expect(bin.stdout).toMatchObject({
      bytes: 4,
      sha256: createHash('sha256')
        .update(Buffer.from([0xff, 0, 0x80, 0x78]))
        .digest('hex'),
    });
    // Random text does not compress: SSM cuts the packed stream, and what it kept decodes to a prefix.
    const dir = mkdtempSync(join(tmpdir(), 'fw-aws-cut-'));
    try {
      const text = randomBytes(60_000).toString('base64');
      writeFileSync(join(dir, 'out'), text);
      const cut = await exec.exec(server, { argv: ['sh', '-c', 'cat "$0"; cat "$0" >&2', join(dir, 'out')] });
      expect(cut.stdout.truncated).toBe(true);
      expect(cut.stdout.bytes).toBeGreaterThan(10_000);
      expect(cut.stdout.bytes).toBeLessThan(text.length);
      expect(text.startsWith(cut.stdout.text)).toBe(true);
      expect(cut.stderr.truncated).toBe(true);
      expect(text.startsWith(cut.stderr.text)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const capped = await exec.exec(server, { argv: ['printf', '%s', 'abcdefghij'] }, { maxOutputBytes: 4 });
    expect(capped.stdout).toMatchObject({ text: 'abcd', bytes: 10, truncated: true });
    const whole = await exec.exec(server, { argv: ['printf', '%s', 'abcdefghij'] });
    expect(whole.stdout).toMatchObject({ text: 'abcdefghij', bytes: 10, truncated: false });
  });

  it('keeps polling while the invocation does not exist yet', async () => {
    const { exec, server } = await setup({ invocationNotFoundPolls: 3 });
    const r = await exec.exec(server, { argv: ['echo', 'found'] });
    expect(r.stdout.text).toBe('found\n');
    expect(calls('GetCommandInvocation', 'InvocationDoesNotExist')).toBe(3);
  });

  it('survives polls throttled beyond the SDK retries', async () => {
    const { exec, server } = await setup();
    fake.faults.throttle('GetCommandInvocation', 6);
    const r = await exec.exec(server, { argv: ['echo', 'throttled'] });
    expect(r.stdout.text).toBe('throttled\n');
    // 4 attempts per poll: the first poll failed as a whole, the loop backed off and polled again.
    expect(calls('GetCommandInvocation', 'ThrottlingException')).toBe(6);
  });

  it('fails with a TransportError naming the offline agent, without sending', async () => {
    const { exec, server, instance } = await setup();
    fake.faults.agentOffline(instance.instanceId);
    const error = await exec.exec(server, { argv: ['true'] }, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(
      /SSM agent of i-[0-9a-f]+ \(us-east-1\) is offline \(PingStatus ConnectionLost\)/,
    );
    expect(calls('SendCommand')).toBe(0);
  });

  it('fails within timeoutMs when the agent never picks the command up, and cancels it', async () => {
    fake = await startAwsFake({ accounts: [A], pageSize: 2 });
    const instance = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    instance.bind(localRunner);
    fake.faults.agentOffline(instance.instanceId);
    const exec = adapter({ checkAgent: false }).exec as ExecCapability;
    const error = await exec
      .exec(serverOf(instance.instanceId), { argv: ['true'] }, { timeoutMs: 1_500 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(/did not pick up the command within 1500 ms/);
    expect(calls('CancelCommand')).toBe(1);
  });

  it('kills a command that outlives timeoutMs with CancelCommand and a TimeoutError', async () => {
    let seen: AbortSignal | undefined;
    const { exec, server } = await setup({
      runner: (_script, { signal }) => {
        seen = signal;
        return new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new Error('killed'))),
        );
      },
    });
    const error = await exec
      .exec(server, { argv: ['sleep', '60'] }, { timeoutMs: 1_000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(calls('CancelCommand')).toBe(1);
    expect(seen?.aborted).toBe(true);
  });

  it('cancels through CancelCommand when the signal fires, and rejects with AbortedError', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    let seen: AbortSignal | undefined;
    const { exec, server } = await setup({
      runner: (_script, { signal }) => {
        seen = signal;
        started();
        return new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new Error('killed'))),
        );
      },
    });
    const controller = new AbortController();
    const pending = exec.exec(server, { argv: ['sleep', '60'] }, { signal: controller.signal });
    await running;
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
    expect(calls('CancelCommand')).toBe(1);
    expect(seen?.aborted).toBe(true);
  });
  it('sends a constant script: values only as base64 in quoted assignments', () => {
    const a = buildRunShellScript({
      argv: ['echo', "$(id)'; `x`"],
      env: { X: '"\n$HOME' },
      stdin: '; rm -rf /',
    });
    const b = buildRunShellScript({ interpreter: ['sh', '-s'], script: 'echo hi' });
    const assignment = /^(fw_argv|fw_env|fw_stdin)='[A-Za-z0-9_+/= ]*'$|^fw_has_stdin=[01]$/;
    expect(a.slice(0, 4).every((line) => assignment.test(line))).toBe(true);
    expect(b.slice(0, 4).every((line) => assignment.test(line))).toBe(true);
    expect(a.slice(4)).toEqual(b.slice(4));
  });

  it('buildRunShellScript — for any argv, env values and stdin, the script is the same constant text after base64-only assignments', () => {
    const assignment = /^(fw_argv|fw_env|fw_stdin)='[A-Za-z0-9_+/= ]*'$|^fw_has_stdin=[01]$/;
    const constant = buildRunShellScript({ argv: ['true'] }).slice(4);
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 6 }),
        fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/), fc.string({ unit: 'binary' }), {
          maxKeys: 4,
        }),
        fc.option(fc.string({ unit: 'binary' }), { nil: undefined }),
        (argv, env, stdin) => {
          const lines = buildRunShellScript({ argv, env, ...(stdin === undefined ? {} : { stdin }) });
          expect(lines.slice(0, 4).every((line) => assignment.test(line))).toBe(true);
          expect(lines.slice(4)).toEqual(constant);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('exec — any strings as argv and env values reach the program exactly, through SSM and sh', async () => {
    const { exec, server } = await setup();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: 'grapheme' }), { minLength: 1, maxLength: 4 }),
        fc.string({ unit: 'grapheme' }),
        async (args, value) => {
          const r = await exec.exec(server, {
            argv: ['sh', '-c', ECHO_B64, 'sh', ...args],
            env: { V: value, NAMES: 'V' },
          });
          expect(r.exitCode).toBe(0);
          expect(decodeLines(r.stdout.text)).toEqual([...args, value]);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('exec — an env name that is not a shell identifier is refused before anything is sent', async () => {
    const { exec, server } = await setup();
    await fc.assert(
      fc.asyncProperty(
        fc.string({ minLength: 1 }).filter((n) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)),
        async (name) => {
          const sent = calls('SendCommand');
          await expect(exec.exec(server, { argv: ['true'], env: { [name]: 'x' } })).rejects.toBeInstanceOf(
            ValidationError,
          );
          expect(calls('SendCommand')).toBe(sent);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('maps SSM time-outs: DeliveryTimedOut to TransportError, ExecutionTimedOut to TimeoutError', async () => {
    let now = Date.parse('2026-12-07T10:00:00Z');
    fake = await startAwsFake({ accounts: [A], pageSize: 2, clock: () => new Date(now) });
    const offline = fake.addInstance({ accountId: A.id, region: 'us-east-1', runner: localRunner });
    const hung = fake.addInstance({
      accountId: A.id,
      region: 'us-east-1',
      runner: (_script, { signal }) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new Error('killed'))),
        ),
    });
    fake.faults.agentOffline(offline.instanceId);
    const exec = adapter({ checkAgent: false }).exec as ExecCapability;
    const afterSend = async <T>(pending: Promise<T>, sends: number): Promise<T> => {
      while (calls('SendCommand') < sends) await new Promise((r) => setTimeout(r, 10));
      now += 61_000; // past TimeoutSeconds / executionTimeout (60 s) on the fake's clock
      return pending;
    };
    const delivery = await afterSend(
      exec.exec(serverOf(offline.instanceId), { argv: ['true'] }, { timeoutMs: 60_000 }),
      1,
    ).catch((e: unknown) => e);
    expect(delivery).toBeInstanceOf(TransportError);
    expect((delivery as Error).message).toMatch(/never received the command \(DeliveryTimedOut\)/);
    const execution = await afterSend(
      exec.exec(serverOf(hung.instanceId), { argv: ['sleep', '600'] }, { timeoutMs: 60_000 }),
      2,
    ).catch((e: unknown) => e);
    expect(execution).toBeInstanceOf(TimeoutError);
    expect((execution as Error).message).toMatch(/ExecutionTimedOut/);
  });

  it('refuses a server that is not an instance, and invalid options, before any call', async () => {
    const { exec } = await setup();
    await expect(exec.exec(serverOf('web-1; reboot'), { argv: ['true'] })).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(exec.exec(serverOf('i-0123456789abcdef0'), { argv: [] })).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(calls('SendCommand')).toBe(0);
    expect(() => createAwsAdapter({ pollIntervalMs: 0 })).toThrow(ValidationError);
    expect(() => createAwsAdapter({ endpoint: 'not a url' })).toThrow(/endpoint/);
  });

  it('turns refused credentials into an AuthorizationError that carries no secret', async () => {
    const { server } = await setup();
    const leaky = 'wrong-secret-do-not-leak';
    const exec = adapter({ accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: leaky })
      .exec as ExecCapability;
    const error = await exec.exec(server, { argv: ['true'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthorizationError);
    expect((error as AuthorizationError).details).toMatchObject({ awsCode: 'UnrecognizedClientException' });
    const seen = JSON.stringify({
      error,
      message: (error as Error).message,
      cause: (error as Error).cause,
      causeMessage: String((error as Error).cause),
      causeKeys: Object.entries((error as { cause: object }).cause),
    });
    expect(seen).not.toContain(leaky);
    expect(seen).not.toContain('AKIAUNKNOWNUNKNOWN00');
  });
});

describe('discover', () => {
  it('lists every region with pagination, joined with SSM, tags as labels', async () => {
    fake = await startAwsFake({ accounts: [A], pageSize: 2, regions: ['us-east-1', 'eu-west-1'] });
    const east = [1, 2, 3].map((n) =>
      fake.addInstance({
        accountId: A.id,
        region: 'us-east-1',
        tags: { Name: `east-${n}`, env: 'prod', 'odd key': 'a=b' },
        privateIp: `10.0.0.${n}`,
      }),
    );
    const west = [1, 2, 3].map((n) =>
      fake.addInstance({
        accountId: A.id,
        region: 'eu-west-1',
        tags: { Name: `west-${n}` },
        privateIp: `10.1.0.${n}`,
        ...(n === 3 ? { ssm: false } : {}),
      }),
    );
    fake.addInstance({ accountId: A.id, region: 'eu-west-1', tags: { Name: 'gone' }, state: 'terminated' });
    const account = { id: ACCOUNT_ID, regions: ['us-east-1', 'eu-west-1'] } as unknown as Account;
    const result = (await adapter().discover?.discover(account)) as DiscoveryResult;
    expect(result.failures).toEqual([]);
    const byId = new Map(result.servers.map((s) => [s.providerId, s]));
    expect([...byId.keys()].sort()).toEqual([...east, ...west].map((i) => i.instanceId).sort());
    expect(byId.get(east[0]?.instanceId as string)).toMatchObject({
      name: 'east-1',
      region: 'us-east-1',
      address: '10.0.0.1',
      labels: { Name: 'east-1', env: 'prod', 'odd key': 'a=b' },
      agent: { name: 'amazon-ssm-agent', managed: true, status: 'Online', version: '3.3.1142.0' },
      os: { family: 'debian', id: 'ubuntu', versionId: '22.04' },
    });
    expect(byId.get(west[2]?.instanceId as string)).toEqual(
      expect.objectContaining({
        name: 'west-3',
        region: 'eu-west-1',
        agent: { name: 'amazon-ssm-agent', managed: false },
      }),
    );
    expect(byId.get(west[2]?.instanceId as string)?.os).toBeUndefined();
    // pageSize 2: three instances per region take two pages.
    expect(
      fake.requests.filter((r) => r.operation === 'DescribeInstances' && r.region === 'us-east-1').length,
    ).toBe(2);
  });

  it('reports a region that fails and keeps the others', async () => {
    fake = await startAwsFake({ accounts: [A], pageSize: 2, regions: ['us-east-1', 'eu-west-1'] });
    const one = fake.addInstance({ accountId: A.id, region: 'us-east-1', tags: { Name: 'one' } });
    const account = { id: ACCOUNT_ID, regions: ['us-east-1', 'ap-south-1'] } as unknown as Account;
    const result = (await adapter().discover?.discover(account)) as DiscoveryResult;
    expect(result.servers.map((s) => s.providerId)).toEqual([one.instanceId]);
    expect(result.failures).toHaveLength(1);
    expect(result.failures?.[0]?.region).toBe('ap-south-1');
    const error = result.failures?.[0]?.error as Error;
    expect(error).toBeInstanceOf(AuthorizationError);
    expect(JSON.stringify({ message: error.message, cause: String(error.cause) })).not.toContain(
      A.secretAccessKey,
    );
  });

  it('lists the regions DescribeRegions returns when the account names none', async () => {
    fake = await startAwsFake({ accounts: [A], pageSize: 2, regions: ['us-east-1', 'eu-west-1'] });
    const west = fake.addInstance({ accountId: A.id, region: 'eu-west-1', tags: { Name: 'west' } });
    const account = { id: ACCOUNT_ID, regions: [] } as unknown as Account;
    const result = (await adapter().discover?.discover(account)) as DiscoveryResult;
    expect(result.servers.map((s) => [s.providerId, s.region])).toEqual([[west.instanceId, 'eu-west-1']]);
    expect(calls('DescribeRegions')).toBe(1);
  });

  it('throws when no region of the account could be listed', async () => {
    fake = await startAwsFake({ accounts: [A], pageSize: 2 });
    const account = { id: ACCOUNT_ID, regions: ['us-east-1', 'eu-west-1'] } as unknown as Account;
    const discover = adapter({ accessKeyId: 'AKIAUNKNOWNUNKNOWN00' }).discover;
    const error = await discover?.discover(account).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthorizationError);
    expect((error as Error).message).toMatch(/account acct-a region (us-east-1|eu-west-1)/);
  });
});
