import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { type AwsFake, LAB_SSM_ORCHESTRATION_DIR, labHostRunner, startAwsFake } from '@fleetward/testkit/aws';
import { describeWithLab, type Lab, type LabHost, startLab } from '@fleetward/testkit/lab';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';

const ACCOUNT = { id: '333333333333', accessKeyId: 'AKIACCCCCCCCCCCCCCCC', secretAccessKey: 'secret-c' };

describeWithLab('labHostRunner', () => {
  let lab: Lab;
  let host: LabHost;
  let fake: AwsFake;
  let ssm: SSMClient;
  let instanceId: string;

  beforeAll(async () => {
    vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
    lab = await startLab({ hosts: [{ name: 'ssm1', flavour: 'debian' }] });
    host = lab.host('ssm1');
    fake = await startAwsFake({ accounts: [ACCOUNT] });
    instanceId = fake.addInstance({
      accountId: ACCOUNT.id,
      region: 'us-east-1',
      runner: labHostRunner(host),
    }).instanceId;
    ssm = new SSMClient({
      region: 'us-east-1',
      endpoint: fake.endpoint,
      credentials: ACCOUNT,
      retryStrategy: new ConfiguredRetryStrategy(4, 0),
    });
  }, 120_000);

  afterAll(async () => {
    await fake?.close();
    await lab?.stop();
    vi.unstubAllEnvs();
  });

  async function run(
    commands: string[],
    workingDirectory?: string,
  ): Promise<{ id: string; out: GetCommandInvocationCommandOutput }> {
    const sent = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [instanceId],
        Parameters: { commands, ...(workingDirectory ? { workingDirectory: [workingDirectory] } : {}) },
      }),
    );
    const id = sent.Command?.CommandId as string;
    for (let i = 0; i < 2000; i++) {
      const out = await ssm.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: instanceId }));
      if (['Success', 'Failed', 'Cancelled', 'TimedOut'].includes(out.Status as string)) return { id, out };
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('command never finished');
  }

  it('SendCommand — runs the script on the lab host, in the agent folder, with its exit code', async () => {
    const { out } = await run(['hostname', 'pwd', 'echo done > /root/ssm-mark', 'echo oops >&2', 'exit 7']);
    expect(out.Status).toBe('Failed');
    expect(out.ResponseCode).toBe(7);
    const [name, pwd] = (out.StandardOutputContent ?? '').trim().split('\n');
    expect(name).toBe('ssm1');
    expect(pwd?.startsWith(`${LAB_SSM_ORCHESTRATION_DIR}/`)).toBe(true);
    expect(out.StandardErrorContent).toBe('oops\n');
    expect(await host.readFile('/root/ssm-mark')).toBe('done\n');
    expect((await host.exec(['ls', '-A', LAB_SSM_ORCHESTRATION_DIR])).stdout).toBe('');
  });

  it('SendCommand — workingDirectory is honoured and a quoted value stays literal', async () => {
    const { out } = await run(["printf '%s|' \"$PWD\" '$(touch /root/pwned); `id`'"], '/tmp');
    expect(out.Status).toBe('Success');
    expect(out.StandardOutputContent).toBe('/tmp|$(touch /root/pwned); `id`|');
    expect((await host.exec(['test', '-e', '/root/pwned'])).exitCode).toBe(1);
  });

  it('CancelCommand — kills the script on the host', async () => {
    const sent = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [instanceId],
        Parameters: { commands: ['echo started > /root/ssm-started', 'exec sleep 317'] },
      }),
    );
    const id = sent.Command?.CommandId as string;
    for (let i = 0; i < 500 && (await host.exec(['test', '-e', '/root/ssm-started'])).exitCode !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await host.exec(['pgrep', '-f', 'sleep 317'])).exitCode).toBe(0);
    await ssm.send(new CancelCommandCommand({ CommandId: id }));
    const out = await ssm.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: instanceId }));
    expect(out.Status).toBe('Cancelled');
    let alive = 0;
    for (let i = 0; i < 200; i++) {
      alive = (await host.exec(['pgrep', '-f', 'sleep 317'])).exitCode;
      if (alive !== 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(alive).toBe(1);
  });
});
