import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { startWinRmFake, type WinRmFake, type WinRmFakeAuthScheme } from '@fleetward/testkit/winrm';
import { afterAll, beforeAll, expect, it } from 'vitest';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../fixtures/winrm/check.py', import.meta.url));
const run = promisify(execFile);

function pywinrmUnavailable(): string | undefined {
  const missing = unavailableWithout({ commands: ['openssl'] });
  if (missing) return missing;
  const probe = spawnSync(PYTHON, ['-c', 'import winrm'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return `${PYTHON} cannot import winrm (apt-get install python3-winrm)`;
  }
  return undefined;
}

interface Outcome {
  stdout: string;
  stderr: string;
  exit: number;
}

interface CheckResult {
  echo: Outcome;
  exit3: Outcome;
  ps: Outcome;
  shell: { stdout: string; exit: number };
  wrong: string;
}

describeIfAvailable('pywinrm against the WinRM fake', pywinrmUnavailable(), () => {
  let fake: WinRmFake;
  let dir: string;
  let caFile: string;

  beforeAll(async () => {
    fake = await startWinRmFake({
      users: [{ username: 'Administrator', password: 'S3cret-pässword!' }],
      powershell: (script) => ({ stdout: `ps saw ${script.length} chars: ${script.toUpperCase()}\r\n` }),
      run: (command) =>
        command.command === 'hostinfo'
          ? {
              stdout: JSON.stringify({
                args: command.arguments,
                cwd: command.workingDirectory,
                env: command.env,
                user: command.username,
              }),
            }
          : undefined,
      receiveTimeoutsPerCommand: 1,
    });
    dir = mkdtempSync(join(tmpdir(), 'fleetward-pywinrm-'));
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, fake.ca);
  });

  afterAll(async () => {
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function check(transport: WinRmFakeAuthScheme): Promise<CheckResult> {
    const env = { ...process.env };
    delete env['REQUESTS_CA_BUNDLE'];
    delete env['CURL_CA_BUNDLE'];
    const config = {
      endpoint: fake.endpoint,
      ca: caFile,
      transport,
      username: 'administrator',
      password: 'S3cret-pässword!',
      wrong_password: 'S3cret-password!',
      script: 'Write-Output "héllo"; exit 0',
    };
    const { stdout } = await run(PYTHON, [SCRIPT, JSON.stringify(config)], { env, timeout: 60_000 });
    return JSON.parse(stdout) as CheckResult;
  }

  for (const transport of ['basic', 'ntlm'] as const) {
    it(`${transport} over https — echo, exit code with stderr, run_ps, shell env, wrong password refused`, async () => {
      const start = fake.requests.length;
      const result = await check(transport);

      expect(result.echo).toEqual({ stdout: 'hello from pywinrm\r\n', stderr: '', exit: 0 });
      expect(result.exit3).toEqual({ stdout: '', stderr: 'broken\r\n', exit: 3 });
      expect(result.ps.stdout).toBe('ps saw 28 chars: WRITE-OUTPUT "HÉLLO"; EXIT 0\r\n');
      expect(result.ps.exit).toBe(0);
      expect(JSON.parse(result.shell.stdout)).toEqual({
        args: ['--all'],
        cwd: 'C:\\work',
        env: { FLEETWARD_X: 'a&b<c>' },
        user: 'Administrator',
      });
      expect(result.wrong).toBe('refused');

      const seen = fake.requests.slice(start);
      const ok = seen.filter((r) => r.status === 200);
      expect(ok.map((r) => r.action)).toEqual(
        expect.arrayContaining(['Create', 'Command', 'Receive', 'Signal', 'Delete']),
      );
      expect(seen.filter((r) => r.faultCode === '2150858793').length).toBeGreaterThanOrEqual(4);
      if (transport === 'ntlm') {
        expect(ok.some((r) => r.authScheme === 'connection')).toBe(true);
        expect(ok.every((r) => r.authScheme !== 'Basic')).toBe(true);
      } else {
        expect(ok.every((r) => r.authScheme === 'Basic')).toBe(true);
      }
      expect(seen.filter((r) => r.status === 401).length).toBeGreaterThan(0);
      expect(fake.shells()).toEqual([]);
    }, 90_000);
  }
});

describeIfAvailable('pywinrm against the WinRM fake over plain http', pywinrmUnavailable(), () => {
  let fake: WinRmFake;

  beforeAll(async () => {
    fake = await startWinRmFake({ users: [{ username: 'ops', password: 'pw' }], http: true });
  });

  afterAll(() => fake?.close());

  async function echo(
    transport: WinRmFakeAuthScheme,
    messageEncryption: string,
  ): Promise<Record<string, unknown>> {
    const config = {
      endpoint: fake.endpoint,
      transport,
      username: 'ops',
      password: 'pw',
      message_encryption: messageEncryption,
      only_echo: true,
    };
    const { stdout } = await run(PYTHON, [SCRIPT, JSON.stringify(config)], { timeout: 60_000 });
    return JSON.parse(stdout) as Record<string, unknown>;
  }

  it('basic and ntlm without sealing — echo works; ntlm in auto mode asks for sealing and gets 415', async () => {
    const expected = { echo: { stdout: 'plain http\r\n', stderr: '', exit: 0 } };
    expect(await echo('basic', 'auto')).toEqual(expected);
    expect(await echo('ntlm', 'never')).toEqual(expected);
    expect(fake.requests.some((r) => r.status === 415)).toBe(false);
    const sealed = await echo('ntlm', 'auto');
    expect(sealed['error']).toMatch(/415/);
    expect(fake.requests.at(-1)?.status).toBe(415);
  }, 90_000);
});
