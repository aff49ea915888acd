import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createWinRmAdapter, type WinRmAdapterOptions, WsmanFaultError } from '@fleetward/adapter-winrm';
import {
  AbortedError,
  type ExecCapability,
  HostKeyMismatchError,
  type Server,
  TimeoutError,
  TransportError,
} from '@fleetward/core';
import {
  startWinRmFake,
  type WinRmFake,
  type WinRmFakeCommand,
  type WinRmFakeCommandResult,
  type WinRmFakeOptions,
} from '@fleetward/testkit/winrm';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

const USER = { username: 'Administrator', password: 'S3cret!pass' };
const b64d = (s: string) => Buffer.from(s, 'base64').toString('utf8');

/** What the runner script hands the program, read back from its base64 literals and stdin lines. */
interface Decoded {
  argv: string[];
  env: Record<string, string>;
  input: string | undefined;
  runner: string;
  bootstrapped: boolean;
}

function decodeRunner(script: string, command: WinRmFakeCommand): Decoded {
  const lines = (command.stdin?.toString('latin1') ?? '').split('\r\n');
  const bootstrapped = script.includes('[scriptblock]::Create');
  const runner = bootstrapped ? b64d(lines.shift() ?? '') : script;
  const literal = (name: string) =>
    new RegExp(`^\\$fw_${name} = '([^']*)'\\r?$`, 'm').exec(runner)?.[1] ?? '';
  const argv = literal('argv')
    .split(' ')
    .filter(Boolean)
    .map((a) => b64d(a.slice(1)));
  const env = Object.fromEntries(
    literal('env')
      .split(' ')
      .filter(Boolean)
      .map((e) => [e.slice(0, e.indexOf('=')), b64d(e.slice(e.indexOf('=') + 1))]),
  );
  const input = literal('has_stdin') === '1' ? b64d(lines.shift() ?? '') : undefined;
  return { argv, env, input, runner, bootstrapped };
}

const seen: Decoded[] = [];

/** A tiny Windows host behind the runner: a few programs the tests call. */
async function host(script: string, command: WinRmFakeCommand): Promise<WinRmFakeCommandResult> {
  const d = decodeRunner(script, command);
  seen.push(d);
  const [program, ...args] = d.argv;
  switch (program) {
    case 'echo':
      return { stdout: `${args.join(' ')}\r\n` };
    case 'exit':
      return { exitCode: Number(args[0]), stderr: 'failing on purpose\r\n' };
    case 'cat':
      return { stdout: d.input ?? '' };
    case 'printenv':
      return { stdout: args.map((n) => d.env[n] ?? '').join('\n') };
    case 'argv':
      return { stdout: JSON.stringify(args) };
    case 'throw':
      return {
        exitCode: 1,
        stderr:
          '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">Get-Item : Cannot find path &apos;C:\\nope&apos;_x000D__x000A_</S></Objs>',
      };
    case 'big':
      return { stdout: 'é'.repeat(Number(args[0])) };
    case 'rawerr':
      return { stderr: args[0] ?? '' };
    case 'drop':
      fake?.faults.dropNextConnection();
      return { stdout: 'partial' };
    case 'sleep':
      await new Promise<void>((resolve) =>
        command.signal.addEventListener('abort', () => resolve(), { once: true }),
      );
      return { exitCode: 1 };
    case 'powershell.exe':
      return {
        stdout: createHash('sha256')
          .update(d.input ?? '')
          .digest('hex'),
      };
    default:
      return { exitCode: 127, stderr: `The term '${program}' is not recognized\r\n` };
  }
}

let fake: WinRmFake | undefined;
afterEach(async () => {
  seen.length = 0;
  await fake?.close();
  fake = undefined;
});

async function setup(
  adapter: Partial<WinRmAdapterOptions> = {},
  fakeOptions: Partial<WinRmFakeOptions> = {},
): Promise<{ exec: ExecCapability; server: Server; fake: WinRmFake }> {
  fake = await startWinRmFake({ users: [USER], powershell: host, ...fakeOptions });
  const exec = createWinRmAdapter({ credentials: USER, ca: fake.ca, ...adapter }).exec as ExecCapability;
  const server = { id: 'srv-1', name: 'localhost', address: '127.0.0.1', port: fake.port } as Server;
  return { exec, server, fake };
}

const actions = (f: WinRmFake) => f.requests.map((r) => r.action).filter(Boolean);

describe('createWinRmAdapter exec against the WinRM fake', () => {
  it('exec — runs argv through PowerShell over NTLM, reusing the authenticated connection', async () => {
    const { exec, server, fake } = await setup();
    const r = await exec.exec(server, { argv: ['echo', 'héllo', 'wörld'] });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.text).toBe('héllo wörld\r\n');
    expect(r.stdout.truncated).toBe(false);
    expect(actions(fake)).toEqual(['Create', 'Command', 'Receive', 'Receive', 'Delete']);
    const schemes = fake.requests.filter((q) => q.action !== undefined).map((q) => q.authScheme);
    expect(schemes[0]).toMatch(/^(NTLM|Negotiate)$/);
    expect(schemes.slice(1).every((s) => s === 'connection')).toBe(true);
    expect(new Set(fake.requests.map((q) => q.connection)).size).toBe(1);
    expect(fake.shells()).toEqual([]);
  });

  it('exec — Basic authentication works too', async () => {
    const { exec, server, fake } = await setup({ auth: 'basic' });
    const r = await exec.exec(server, { argv: ['echo', 'basic'] });
    expect(r.stdout.text).toBe('basic\r\n');
    expect(fake.requests.filter((q) => q.action).every((q) => q.authScheme === 'Basic')).toBe(true);
  });

  it('exec — keeps the exit code and stderr', async () => {
    const { exec, server } = await setup();
    const r = await exec.exec(server, { argv: ['exit', '3'] });
    expect(r.exitCode).toBe(3);
    expect(r.stderr.text).toBe('failing on purpose\r\n');
  });

  it('exec — CLIXML on stderr becomes readable text', async () => {
    const { exec, server } = await setup();
    const r = await exec.exec(server, { argv: ['throw'] });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.text).toBe("Get-Item : Cannot find path 'C:\\nope'\r\n");
  });

  it('exec — stderr that only looks like the start of CLIXML is kept as it is', async () => {
    const { exec, server } = await setup();
    expect((await exec.exec(server, { argv: ['rawerr', '#< C'] })).stderr.text).toBe('#< C');
    expect((await exec.exec(server, { argv: ['rawerr', '#< CLIXMLnot xml'] })).stderr.text).toBe(
      '#< CLIXMLnot xml',
    );
  });

  it('exec — stdin arrives through Send, env values as variables', async () => {
    const { exec, server, fake } = await setup();
    const r = await exec.exec(server, { argv: ['cat'], stdin: 'line 1\nline ü 2\n' });
    expect(r.stdout.text).toBe('line 1\nline ü 2\n');
    expect(actions(fake)).toContain('Send');
    const e = await exec.exec(server, { argv: ['printenv', 'A', 'B'], env: { A: 'x y', B: '' } });
    expect(e.stdout.text).toBe('x y\n');
  });

  it('exec — hostile values reach the program exactly and never appear in the script text', async () => {
    const { exec, server } = await setup();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: 'grapheme', minLength: 1 }), { minLength: 1, maxLength: 3 }),
        fc.string({ unit: 'grapheme', minLength: 3 }),
        async (args, value) => {
          const hostile = [...args, `'; Remove-Item C:\\ -Recurse; '${value}`, '$(whoami)`"‘’'];
          seen.length = 0;
          const r = await exec.exec(server, { argv: ['argv', ...hostile], env: { V: value } });
          expect(JSON.parse(r.stdout.text)).toEqual(hostile);
          const [d] = seen;
          expect(d?.env.V).toBe(value);
          expect(d?.runner).not.toContain('Remove-Item C:');
          expect(d?.runner).not.toContain('$(whoami)');
          expect(
            d?.runner
              .split('\r\n')
              .slice(0, 3)
              .every((l) => /^\$fw_\w+ = '[A-Za-z0-9_+/= ]*'$/.test(l)),
          ).toBe(true);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('exec — a 50 KB script arrives whole, in several Sends, with a short command line', async () => {
    const { exec, server, fake } = await setup();
    const script = `${'Write-Output "chunk ü"\r\n'.repeat(2100)}exit 0\r\n`;
    expect(script.length).toBeGreaterThan(50_000);
    const r = await exec.exec(server, {
      interpreter: ['powershell.exe', '-NoProfile', '-Command', '-'],
      script,
    });
    expect(r.stdout.text).toBe(createHash('sha256').update(script).digest('hex'));
    expect(actions(fake).filter((a) => a === 'Send').length).toBeGreaterThan(1);
    const command = fake.shells().length === 0 ? undefined : fake.shells()[0];
    expect(command).toBeUndefined();
  });

  it('exec — argv too long for the command line travels behind a bootstrap', async () => {
    const { exec, server } = await setup();
    const long = 'x'.repeat(12_000);
    const r = await exec.exec(server, { argv: ['argv', long, 'end'], stdin: 'unused' });
    expect(JSON.parse(r.stdout.text)).toEqual([long, 'end']);
    expect(seen[0]?.bootstrapped).toBe(true);
  });

  it('exec — output over the cap is truncated honestly', async () => {
    const { exec, server } = await setup();
    const r = await exec.exec(server, { argv: ['big', '1000'] }, { maxOutputBytes: 101 });
    expect(r.stdout.truncated).toBe(true);
    expect(r.stdout.bytes).toBe(2000);
    expect(r.stdout.text).toBe('é'.repeat(50));
  });

  it('exec — receive time-out faults are retried silently', async () => {
    const { exec, server, fake } = await setup({}, { receiveTimeoutsPerCommand: 2 });
    const r = await exec.exec(server, { argv: ['echo', 'late'] });
    expect(r.stdout.text).toBe('late\r\n');
    expect(fake.requests.filter((q) => q.faultCode === '2150858793').length).toBe(2);
  });

  it('exec — a wrong password is refused as an authentication failure without the password in it', async () => {
    for (const auth of ['ntlm', 'basic'] as const) {
      const { exec, server } = await setup({
        auth,
        credentials: { username: USER.username, password: 'wrong' },
      });
      const error = await exec.exec(server, { argv: ['echo', 'x'] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransportError);
      expect((error as TransportError).retryable).toBe(false);
      expect((error as TransportError).details.phase).toBe('authentication');
      expect(JSON.stringify(error)).not.toContain('wrong');
      await fake?.close();
      fake = undefined;
    }
  });

  it('exec — a certificate that is not trusted is refused before anything is sent', async () => {
    fake = await startWinRmFake({ users: [USER], powershell: host });
    const server = { id: 's', name: 'localhost', address: '127.0.0.1', port: fake.port } as Server;
    const untrusted = createWinRmAdapter({ credentials: USER, auth: 'basic' }).exec as ExecCapability;
    const error = await untrusted.exec(server, { argv: ['echo', 'x'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).details.reason).toBe('certificate-not-trusted');
    const wrongPin = createWinRmAdapter({ credentials: USER, certificateFingerprint: 'AB'.repeat(32) })
      .exec as ExecCapability;
    await expect(wrongPin.exec(server, { argv: ['echo', 'x'] })).rejects.toBeInstanceOf(HostKeyMismatchError);
    expect(fake.requests).toEqual([]);
    const pinned = createWinRmAdapter({
      credentials: USER,
      certificateFingerprint: fake.certificateFingerprint,
    }).exec as ExecCapability;
    expect((await pinned.exec(server, { argv: ['echo', 'pinned'] })).stdout.text).toBe('pinned\r\n');
  });

  it('exec — on timeout the command is signalled to terminate and the shell deleted', async () => {
    const { exec, server, fake } = await setup();
    const error = await exec.exec(server, { argv: ['sleep'] }, { timeoutMs: 400 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).details.stdout).toMatchObject({ bytes: 0 });
    const sent = actions(fake);
    expect(sent.indexOf('Signal')).toBeGreaterThan(sent.indexOf('Command'));
    expect(sent.at(-1)).toBe('Delete');
    expect(fake.shells()).toEqual([]);
  });

  it('exec — abort signals terminate, deletes the shell and rejects with AbortedError', async () => {
    const { exec, server, fake } = await setup();
    const controller = new AbortController();
    const running = exec.exec(server, { argv: ['sleep'] }, { signal: controller.signal });
    await sleep(300);
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(AbortedError);
    expect(actions(fake)).toContain('Signal');
    expect(fake.shells()).toEqual([]);
  });

  it('exec — the next command reuses the authenticated connection, and survives it being closed while idle', async () => {
    fake = await startWinRmFake({ users: [USER], powershell: host });
    const adapter = createWinRmAdapter({ credentials: USER, ca: fake.ca });
    const exec = adapter.exec as ExecCapability;
    const server = { id: 's', name: 'localhost', address: '127.0.0.1', port: fake.port } as Server;
    try {
      await exec.exec(server, { argv: ['echo', 'one'] });
      await exec.exec(server, { argv: ['echo', 'two'] });
      expect(new Set(fake.requests.map((q) => q.connection)).size).toBe(1);
      expect(
        fake.requests.filter((q) => q.authScheme === 'NTLM' || q.authScheme === 'Negotiate').length,
      ).toBe(2);
      fake.faults.dropNextConnection();
      expect((await exec.exec(server, { argv: ['echo', 'three'] })).stdout.text).toBe('three\r\n');
      expect(new Set(fake.requests.map((q) => q.connection)).size).toBe(2);
    } finally {
      await adapter.close?.();
    }
  });

  it('exec — commands to one host run side by side, each in its own shell', async () => {
    const { exec, server, fake } = await setup();
    const results = await Promise.all(['a', 'b', 'c'].map((x) => exec.exec(server, { argv: ['echo', x] })));
    expect(results.map((r) => r.stdout.text)).toEqual(['a\r\n', 'b\r\n', 'c\r\n']);
    expect(actions(fake).filter((a) => a === 'Create').length).toBe(3);
    expect(actions(fake).filter((a) => a === 'Delete').length).toBe(3);
    expect(fake.shells()).toEqual([]);
  });

  it('exec — a SOAP fault from the service rejects with WsmanFaultError carrying its code', async () => {
    const { exec, server, fake } = await setup();
    fake.faults.serverError(1);
    const error = await exec.exec(server, { argv: ['echo', 'x'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WsmanFaultError);
    expect((error as WsmanFaultError).wsmanCode).toBe('1359');
  });

  it('exec — a dropped connection fails the call, and the command is still terminated and its shell deleted', async () => {
    const { exec, server, fake } = await setup();
    const error = await exec.exec(server, { argv: ['drop'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(actions(fake).slice(-2)).toEqual(['Signal', 'Delete']);
    expect(new Set(fake.requests.map((q) => q.connection)).size).toBe(2);
    expect(fake.shells()).toEqual([]);
  });

  it('exec — an expired password is refused like a wrong one', async () => {
    const { exec, server, fake } = await setup();
    fake.faults.expirePassword(USER.username);
    const error = await exec.exec(server, { argv: ['echo', 'x'] }).catch((e: unknown) => e);
    expect((error as TransportError).details.phase).toBe('authentication');
  });

  it('exec — plain http only when asked, with a warning; credentialsFor chooses the login', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      fake = await startWinRmFake({ users: [USER], powershell: host, http: true });
      const server = { id: 's', name: 'localhost', address: '127.0.0.1', port: fake.port } as Server;
      const exec = createWinRmAdapter({
        https: false,
        credentialsFor: async (s) => (s.id === 's' ? USER : undefined),
      }).exec as ExecCapability;
      expect((await exec.exec(server, { argv: ['echo', 'plain'] })).stdout.text).toBe('plain\r\n');
      await sleep(10);
      expect(warnings.some((w) => w.includes('plain HTTP'))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
