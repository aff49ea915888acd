import { buildRunPowerShellScript, createAwsAdapter } from '@fleetward/adapter-aws';
import type { ExecCapability, Server } from '@fleetward/core';
import { buildPowerShellRunner } from '@fleetward/core/os';
import { type AwsFake, type AwsFakeRunner, startAwsFake } from '@fleetward/testkit/aws';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

// There is no PowerShell on this machine (reference §4). The runner itself is tested in core
// (packages/core/test/os/powershell-runner.test.ts); here: stdin travels in the script, and a
// Windows server gets AWS-RunPowerShellScript.

const A = {
  id: '111111111111',
  accessKeyId: 'AKIAAAAAAAAAAAAAAAAA',
  secretAccessKey: 'secret-a-never-shown',
};
let fake: AwsFake;
let close: (() => Promise<void>) | undefined;

beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});
afterEach(async () => {
  await close?.();
  close = undefined;
  await fake?.close();
});

/** A PowerShell single-quoted literal assignment whose text is only base64, `_`, `=`, names and spaces. */
const ASSIGNMENT = /^\$fw_(argv|env|has_stdin|stdin) = '[A-Za-z0-9+/=_ ]*'$/;

/** Reads the four assignments back as PowerShell would, and decodes them as the constant lines do. */
function decode(lines: string[]): { argv: string[]; env: Record<string, string>; stdin?: string } {
  const values = Object.fromEntries(
    lines.slice(0, 4).map((line) => {
      const m = /^\$(\w+) = '(.*)'$/.exec(line) as RegExpExecArray;
      return [m[1], m[2] as string];
    }),
  ) as Record<string, string>;
  const dec = (s: string) => Buffer.from(s, 'base64').toString('utf8');
  const argv = (values.fw_argv as string)
    .split(' ')
    .filter(Boolean)
    .map((a) => dec(a.slice(1)));
  const env = Object.fromEntries(
    (values.fw_env as string)
      .split(' ')
      .filter(Boolean)
      .map((e) => [e.slice(0, e.indexOf('=')), dec(e.slice(e.indexOf('=') + 1))]),
  );
  return values.fw_has_stdin === '1' ? { argv, env, stdin: dec(values.fw_stdin as string) } : { argv, env };
}

describe('AWS-RunPowerShellScript', () => {
  it("buildRunPowerShellScript — is core's runner with stdin in the $fw_stdin literal, since Run Command has no stdin", () => {
    const command = { argv: ['cmd.exe', '/c', "echo '$(x)'"], env: { FW_X: '‘y’' }, stdin: 'in\n' };
    const lines = buildRunPowerShellScript(command);
    expect(lines).toEqual(buildPowerShellRunner(command, { stdin: 'literal' }));
    expect(lines.slice(0, 4).every((line) => ASSIGNMENT.test(line))).toBe(true);
    expect(decode(lines)).toEqual(command);
    const script = buildRunPowerShellScript({
      interpreter: ['powershell.exe', '-Command', '-'],
      script: 'Get-Date',
    });
    expect(decode(script)).toEqual({ argv: ['powershell.exe', '-Command', '-'], env: {}, stdin: 'Get-Date' });
  });

  it('exec — a Windows server runs through AWS-RunPowerShellScript, a Linux one through AWS-RunShellScript; exit code and output come back', async () => {
    const seen: { documentName: string; script: string }[] = [];
    // Stands in for the agent: reads the values as the constant lines would, and echoes them.
    const runner: AwsFakeRunner = async (script, { documentName }) => {
      seen.push({ documentName, script });
      const lines = script.split('\n');
      const decoded = documentName === 'AWS-RunPowerShellScript' ? decode(lines) : { argv: [] };
      return { exitCode: 3, stdout: JSON.stringify(decoded), stderr: '' };
    };
    fake = await startAwsFake({ accounts: [A], defaultRunner: runner });
    const win = fake.addInstance({ accountId: A.id, region: 'us-east-1', platform: 'windows' });
    const lin = fake.addInstance({ accountId: A.id, region: 'us-east-1' });
    const adapter = createAwsAdapter({
      endpoint: fake.endpoint,
      credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
      pollIntervalMs: 10,
    });
    close = adapter.close;
    const exec = adapter.exec as ExecCapability;
    const server = (instanceId: string, family: 'windows' | 'debian'): Server =>
      ({
        tenantId: 't1',
        id: `srv-${instanceId}`,
        accountId: 'acct',
        provider: 'aws',
        providerId: instanceId,
        region: 'us-east-1',
        name: instanceId,
        labels: {},
        os: { family, id: family, versionId: '', prettyName: '' },
      }) as unknown as Server;

    const command = { argv: ['cmd.exe', '/c', "echo '$(x)'"], env: { FW_X: '"; exit 0; "' }, stdin: 'in\n' };
    const result = await exec.exec(server(win.instanceId, 'windows'), command);
    expect(result.exitCode).toBe(3);
    expect(JSON.parse(result.stdout.text)).toEqual(command);
    expect(seen[0]?.documentName).toBe('AWS-RunPowerShellScript');
    expect(seen[0]?.script.split('\n')).toEqual(buildRunPowerShellScript(command));

    await exec.exec(server(lin.instanceId, 'debian'), { argv: ['true'] });
    expect(seen[1]?.documentName).toBe('AWS-RunShellScript');
    expect(seen[1]?.script).toContain('fw_argv=');
  });

  it('exec — long PowerShell output is read from S3 under the awsrunPowerShellScript plugin', async () => {
    const long = 'w'.repeat(30_000);
    fake = await startAwsFake({
      accounts: [{ ...A, buckets: ['fw-out'] }],
      defaultRunner: async () => ({ exitCode: 0, stdout: long, stderr: '' }),
    });
    const win = fake.addInstance({ accountId: A.id, region: 'us-east-1', platform: 'windows' });
    const adapter = createAwsAdapter({
      endpoint: fake.endpoint,
      credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
      pollIntervalMs: 10,
      outputBucket: 'fw-out',
    });
    close = adapter.close;
    const result = await (adapter.exec as ExecCapability).exec(
      {
        tenantId: 't1',
        id: 'srv-w',
        accountId: 'acct',
        provider: 'aws',
        providerId: win.instanceId,
        region: 'us-east-1',
        name: 'w',
        labels: {},
        os: { family: 'windows', id: 'windows', versionId: '', prettyName: '' },
      } as unknown as Server,
      { argv: ['whoami'] },
    );
    expect(result.stdout).toMatchObject({ text: long, bytes: 30_000, truncated: false });
    expect(Object.keys(fake.bucketObjects('fw-out'))).toEqual([
      expect.stringMatching(/\/awsrunPowerShellScript\/0\.awsrunPowerShellScript\/stdout$/),
    ]);
  });
});
