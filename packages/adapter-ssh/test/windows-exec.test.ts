import type { AddressInfo } from 'node:net';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  type Command,
  generateEd25519KeyPair,
  type Server,
  TimeoutError,
  ValidationError,
} from '@fleetward/core';
import { buildPowerShellInvocation, buildPowerShellRunnerScript } from '@fleetward/core/os';
import fc from 'fast-check';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE_TOKENS, RUNS } from '../../core/test/hostile-input.js';
import { buildWindowsExec } from '../src/windows.js';

const FLAGS = 'powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ';

const hostileString = fc
  .oneof(
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_TOKENS) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  )
  .map((s) => s.replaceAll('\0', ''));
const envName = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
const hostileCommand: fc.Arbitrary<Command> = fc.oneof(
  fc.record(
    {
      argv: fc.array(hostileString, { minLength: 1, maxLength: 8 }).map((a) => [`x${a[0]}`, ...a.slice(1)]),
      stdin: hostileString,
      env: fc.dictionary(envName, hostileString, { maxKeys: 5 }),
      sudo: fc.boolean(),
    },
    { requiredKeys: ['argv'] },
  ),
  fc.record(
    {
      interpreter: fc
        .array(hostileString, { minLength: 1, maxLength: 3 })
        .map((a) => [`x${a[0]}`, ...a.slice(1)]),
      script: hostileString,
      env: fc.dictionary(envName, hostileString, { maxKeys: 5 }),
      sudo: fc.boolean(),
    },
    { requiredKeys: ['interpreter', 'script'] },
  ),
  // Long enough that the runner travels on stdin behind the bootstrap.
  fc.record({
    argv: fc.array(hostileString, { minLength: 600, maxLength: 700 }).map((a) => [`x${a[0]}`, ...a.slice(1)]),
    stdin: hostileString,
  }),
);

describe('buildWindowsExec', () => {
  it('buildWindowsExec — for hostile argv, env and stdin the command string is powershell.exe, flags and base64 only', () => {
    let bootstraps = 0;
    fc.assert(
      fc.property(hostileCommand, (command) => {
        const { line, stdin } = buildWindowsExec(command);
        const invocation = buildPowerShellInvocation(command);
        expect(line.startsWith(FLAGS)).toBe(true);
        expect(line.slice('powershell.exe'.length)).toMatch(/^[A-Za-z0-9+/= -]+$/);
        expect(line).toBe(['powershell.exe', ...invocation.arguments].join(' '));
        expect(stdin?.equals(invocation.stdin ?? Buffer.alloc(0)) ?? invocation.stdin === undefined).toBe(
          true,
        );
        // What the server decodes is the runner, or the bootstrap with the runner on stdin.
        const script = Buffer.from(line.slice(FLAGS.length), 'base64').toString('utf16le');
        if (invocation.runnerOnStdin) {
          bootstraps++;
          const firstLine = stdin?.toString('ascii').split('\r\n')[0] ?? '';
          expect(Buffer.from(firstLine, 'base64').toString('utf8')).toBe(
            buildPowerShellRunnerScript(command),
          );
        } else {
          expect(script).toBe(buildPowerShellRunnerScript(command));
        }
        expect(stdin?.toString('latin1') ?? '').toMatch(/^([A-Za-z0-9+/=]*\r\n)*$/);
      }),
      { numRuns: RUNS },
    );
    expect(bootstraps).toBeGreaterThan(0);
  });

  it('buildWindowsExec — an invalid command is a ValidationError before anything is built', () => {
    expect(() => buildWindowsExec({ argv: ['x'], env: { 'BAD-NAME': 'v' } })).toThrow(ValidationError);
    expect(() => buildWindowsExec({ argv: [] })).toThrow(ValidationError);
  });
});

interface ExecRequest {
  command: string;
  stdin: Buffer;
  signals: string[];
  closedByClient: boolean;
}

/** A loopback SSH server that records each exec request and answers as the test says. */
async function startFakeServer(answer: (command: string, channel: ssh2.ServerChannel) => void) {
  // Not ssh2's own keygen: it strips the leading zero bytes of one public key in 256, and then
  // cannot read the key it made (mscdex/ssh2#1390).
  const hostKey = generateEd25519KeyPair('');
  const requests: ExecRequest[] = [];
  const server = new ssh2.Server({ hostKeys: [hostKey.privateKey] }, (client) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('error', () => {});
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        const request: ExecRequest = {
          command: '',
          stdin: Buffer.alloc(0),
          signals: [],
          closedByClient: false,
        };
        session.on('signal', (_accept, _reject, info) => request.signals.push(info.name));
        session.on('exec', (accept, _reject, info) => {
          request.command = info.command;
          requests.push(request);
          const channel = accept();
          channel.on('data', (chunk: Buffer) => {
            request.stdin = Buffer.concat([request.stdin, chunk]);
          });
          channel.on('close', () => {
            request.closedByClient = true;
          });
          answer(info.command, channel);
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    fingerprint: hostKey.fingerprint,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('SSH adapter: exec request of a Windows server (loopback fake)', () => {
  let fake: Awaited<ReturnType<typeof startFakeServer>>;
  let adapter: Adapter;
  const now = new Date().toISOString();
  const serverOf = (windows: boolean): Server => ({
    tenantId: 't',
    id: windows ? 'win' : 'linux',
    version: 1,
    createdAt: now,
    updatedAt: now,
    accountId: 'a',
    provider: 'ssh',
    name: windows ? 'win' : 'linux',
    address: '127.0.0.1',
    port: fake.port,
    labels: {},
    ...(windows ? { os: { family: 'windows' as const, id: 'windows', versionId: '', prettyName: '' } } : {}),
  });

  beforeAll(async () => {
    fake = await startFakeServer((command, channel) => {
      // A command that never ends, for the timeout test; everything else ends once stdin closed.
      if (command.includes('-EncodedCommand') && channel) {
        channel.on('end', () => {
          const input = Buffer.from(fake.requests.at(-1)?.stdin.toString('ascii').trim() ?? '', 'base64');
          if (input.toString('utf8') === 'hang') return;
          channel.write('out');
          channel.stderr.write('err');
          channel.exit(7);
          channel.end();
        });
      } else {
        channel.exit(0);
        channel.end();
      }
    });
    const key = generateEd25519KeyPair('');
    adapter = createSshAdapter({
      credentials: { username: 'admin', privateKey: key.privateKey },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { [`[127.0.0.1]:${fake.port}`]: [fake.fingerprint] },
      killGraceMs: 100,
    });
  });

  afterAll(async () => {
    await adapter?.close?.();
    await fake?.close();
  });

  it('exec — sends powershell.exe and the invocation as the command, the base64 input on stdin, no sudo', async () => {
    const command: Command = {
      argv: ['cmd.exe', '/c', 'echo "%PATH%" & whoami'],
      stdin: 'héllo\n',
      sudo: true,
    };
    const result = await adapter.exec!.exec(serverOf(true), command);
    const request = fake.requests.at(-1)!;
    const invocation = buildPowerShellInvocation(command);
    expect(request.command).toBe(['powershell.exe', ...invocation.arguments].join(' '));
    expect(request.command).not.toContain('sudo');
    expect(request.stdin.equals(invocation.stdin!)).toBe(true);
    expect(result).toMatchObject({
      exitCode: 7,
      signal: null,
      stdout: { text: 'out' },
      stderr: { text: 'err' },
    });
  });

  it('exec — a POSIX server still gets the pid header and the quoted exec line', async () => {
    await adapter.exec!.exec(serverOf(false), { argv: ['echo', "it's"] });
    expect(fake.requests.at(-1)!.command).toMatch(
      /^printf '%s\\n' "fleetward-exec-[0-9a-f]{32}:\$\$" && exec 'echo' 'it'\\''s'$/,
    );
  });

  it('exec — on timeout closes the channel, sends no signal, and rejects with TimeoutError', async () => {
    const error = await adapter
      .exec!.exec(serverOf(true), { argv: ['x'], stdin: 'hang' }, { timeoutMs: 300 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(TimeoutError);
    const request = fake.requests.at(-1)!;
    expect(request.closedByClient).toBe(true);
    expect(request.signals).toEqual([]);
  });
});
