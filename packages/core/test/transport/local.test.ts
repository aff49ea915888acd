import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Server, ServerSchema } from '../../src/domain/index.js';
import {
  AbortedError,
  CommandFailedError,
  type FleetwardError,
  TimeoutError,
  ValidationError,
} from '../../src/errors.js';
import type { Command, ExecOptions, ExecResult } from '../../src/ports/adapter.js';
import { createLocalAdapter, type LocalAdapterOptions } from '../../src/transport/local.js';

const server: Server = ServerSchema.parse({
  tenantId: 't1',
  id: 'srv-1',
  version: 1,
  createdAt: '2025-01-01T00:00:00Z',
  updatedAt: '2025-01-01T00:00:00Z',
  accountId: 'acc-1',
  provider: 'local',
  name: 'elsewhere',
  // Never contacted: the local adapter always runs on this machine.
  address: '203.0.113.7',
});

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetward-local-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function exec(
  command: Command,
  options?: ExecOptions,
  adapterOptions?: LocalAdapterOptions,
): Promise<ExecResult> {
  const adapter = createLocalAdapter(adapterOptions);
  if (!adapter.exec) throw new Error('local adapter has no exec');
  return adapter.exec.exec(server, command, options);
}

async function rejection(promise: Promise<unknown>): Promise<FleetwardError> {
  try {
    await promise;
  } catch (error) {
    return error as FleetwardError;
  }
  throw new Error('expected the call to reject');
}

/** Alive means running: a zombie (an exited orphan nobody reaped yet) is gone. */
async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Waits (boundedly) for a SIGKILLed process to be gone: the kernel finishes it asynchronously. */
async function expectGone(pid: number): Promise<void> {
  for (let i = 0; i < 200 && (await isAlive(pid)); i++) await new Promise((r) => setTimeout(r, 25));
  expect(await isAlive(pid)).toBe(false);
}

async function readPid(file: string): Promise<number> {
  const pid = Number((await readFile(file, 'utf8')).trim());
  expect(Number.isInteger(pid) && pid > 0).toBe(true);
  return pid;
}

/** Values a shell would act on; each must reach the program as plain bytes. */
function hostileValues(pwned: string): string[] {
  return [
    `x'; touch ${pwned}; '`,
    `$(touch ${pwned})`,
    `\`touch ${pwned}\``,
    `"; touch ${pwned}; "`,
    `a\ntouch ${pwned}\n`,
    `; touch ${pwned}`,
    `| touch ${pwned}`,
    `& touch ${pwned} &`,
    `&& touch ${pwned}`,
    `> ${pwned}`,
    ';|&',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal shell expansion is the point
    '${PATH}',
    '$HOME',
    '*',
    '~',
    '-n',
    '--',
    '%s %d \\n',
    '\\',
    "'",
    '"',
    ' leading and trailing ',
    '日本語 😀 é',
    '',
  ];
}

describe('createLocalAdapter', () => {
  it("createLocalAdapter — is named 'local' unless told otherwise", () => {
    expect(createLocalAdapter().name).toBe('local');
    expect(createLocalAdapter({ name: 'this-host' }).name).toBe('this-host');
    expect(createLocalAdapter().exec).toBeDefined();
  });

  it('createLocalAdapter — rejects invalid options with their paths', () => {
    const error = (() => {
      try {
        createLocalAdapter({ killGraceMs: -1, env: { 'BAD-NAME': 'x' }, bogus: 1 } as LocalAdapterOptions);
      } catch (e) {
        return e as ValidationError;
      }
      throw new Error('expected a throw');
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.subject).toBe('LocalAdapterOptions');
    expect(error.paths).toEqual(expect.arrayContaining(['killGraceMs', 'env.BAD-NAME']));
    expect(error.issues.some((i) => i.code === 'unrecognized_keys')).toBe(true);
  });
});

describe('exec', () => {
  it('exec — runs argv on this machine whatever the server, and reports exit code and output', async () => {
    const result = await exec({ argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
    expect(result.exitCode).toBe(3);
    expect(result.signal).toBeNull();
    expect(result.stdout).toEqual({ text: 'out\n', bytes: 4, sha256: sha256('out\n'), truncated: false });
    expect(result.stderr).toEqual({ text: 'err\n', bytes: 4, sha256: sha256('err\n'), truncated: false });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('exec — resolves exit code 0 for a successful command', async () => {
    const result = await exec({ argv: ['true'] });
    expect(result).toMatchObject({ exitCode: 0, signal: null, stdout: { text: '', bytes: 0 } });
  });

  it('exec — hostile argv elements reach the program literally, with no shell', async () => {
    const pwned = join(dir, 'pwned');
    const values = hostileValues(pwned);
    for (const value of values) {
      const result = await exec({ argv: ['printf', '%s', value] });
      expect(result.exitCode).toBe(0);
      expect(result.stdout.text).toBe(value);
      expect(result.stdout.sha256).toBe(sha256(value));
    }
    const all = await exec({ argv: ['printf', '%s\\0', ...values] });
    expect(all.stdout.text.split('\0').slice(0, -1)).toEqual(values);
    expect(existsSync(pwned)).toBe(false);
  });

  it('exec — hostile parameters in env reach a script literally', async () => {
    const pwned = join(dir, 'pwned');
    for (const interpreter of [
      ['sh', '-s'],
      ['bash', '-s'],
    ]) {
      for (const value of hostileValues(pwned)) {
        const result = await exec({ interpreter, script: 'printf %s "$PARAM"', env: { PARAM: value } });
        expect(result.stderr.text).toBe('');
        expect(result.stdout.text).toBe(value);
        expect(result.stdout.sha256).toBe(sha256(value));
      }
    }
    expect(existsSync(pwned)).toBe(false);
  });

  it('exec — with sudo for a non-root login runs sudo -n -- env K=V with env as argv elements', async () => {
    const pwned = join(dir, 'pwned');
    const value = `x'; touch ${pwned}; '`;
    // A stand-in sudo that shows its argv, then runs the rest as the real one would.
    await writeFile(join(dir, 'sudo'), `#!/bin/sh\nprintf '%s\\0' "$@" >&2\nshift 2\nexec "$@"\n`);
    await chmod(join(dir, 'sudo'), 0o755);
    const result = await exec(
      { interpreter: ['sh', '-s'], script: 'printf %s "$PARAM"', env: { PARAM: value }, sudo: true },
      {},
      { isRoot: false, env: { PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}` } },
    );
    expect(result.stderr.text.split('\0').slice(0, -1)).toEqual([
      '-n',
      '--',
      'env',
      `PARAM=${value}`,
      'sh',
      '-s',
    ]);
    expect(result.stdout.text).toBe(value);
    expect(existsSync(pwned)).toBe(false);
  });

  it('exec — with sudo for a root login runs the command directly', async () => {
    const result = await exec(
      { argv: ['sh', '-c', 'printf %s "$A"'], sudo: true, env: { A: 'v' } },
      {},
      { isRoot: true },
    );
    expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'v' } });
  });

  it('exec — feeds stdin and closes it', async () => {
    const result = await exec({ argv: ['cat'], stdin: 'héllo\nwörld' });
    expect(result.stdout.text).toBe('héllo\nwörld');
  });

  it('exec — without stdin gives the program an empty stdin, so readers do not hang', async () => {
    const result = await exec({ argv: ['cat'] });
    expect(result).toMatchObject({ exitCode: 0, stdout: { text: '', bytes: 0 } });
  });

  it('exec — ignores EPIPE when the program exits without reading its stdin', async () => {
    const big = 'x'.repeat(8 * 1024 * 1024);
    expect(await exec({ argv: ['true'], stdin: big })).toMatchObject({ exitCode: 0 });
    expect(await exec({ argv: ['head', '-c', '3'], stdin: big })).toMatchObject({
      exitCode: 0,
      stdout: { text: 'xxx' },
    });
  });

  it('exec — reports the signal that ended the command, with a null exit code', async () => {
    const result = await exec({ interpreter: ['sh', '-s'], script: 'echo before\nkill -9 $$\necho after\n' });
    expect(result.signal).toBe('SIGKILL');
    expect(result.exitCode).toBeNull();
    expect(result.stdout.text).toBe('before\n');
  });

  it('exec — a program that does not exist rejects with CommandFailedError naming it', async () => {
    const error = await rejection(exec({ argv: ['fleetward-no-such-program-9f2c', 'arg'] }));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error.code).toBe('COMMAND_FAILED');
    expect(error.message).toContain('fleetward-no-such-program-9f2c');
    expect(error.details).toMatchObject({ errno: 'ENOENT', serverId: 'srv-1' });
  });

  it('exec — a file that is not executable rejects with CommandFailedError', async () => {
    const file = join(dir, 'not-executable');
    await writeFile(file, 'echo hi\n', { mode: 0o644 });
    const error = await rejection(exec({ argv: [file] }));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error.message).toContain(file);
  });

  describe('environment', () => {
    const previous = process.env.FLEETWARD_TEST_SECRET;
    beforeEach(() => {
      process.env.FLEETWARD_TEST_SECRET = 'do-not-leak-7731';
    });
    afterEach(() => {
      if (previous === undefined) delete process.env.FLEETWARD_TEST_SECRET;
      else process.env.FLEETWARD_TEST_SECRET = previous;
    });

    const envOf = (result: ExecResult) =>
      Object.fromEntries(
        result.stdout.text
          .split('\0')
          .slice(0, -1)
          .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
      );

    it("exec — does not pass on the orchestrator's environment", async () => {
      const result = await exec({ argv: ['env', '-0'] });
      expect(result.stdout.text).not.toContain('FLEETWARD_TEST_SECRET');
      expect(result.stdout.text).not.toContain('do-not-leak-7731');
      const env = envOf(result);
      expect(Object.keys(env).every((name) => ['PATH', 'HOME', 'LANG'].includes(name))).toBe(true);
      expect(env.PATH).toBe(process.env.PATH);
    });

    it('exec — sets command env over adapter env over the base environment', async () => {
      const result = await exec(
        { argv: ['env', '-0'], env: { HOME: '/nowhere', B: 'from-command' } },
        {},
        { env: { A: 'from-adapter', B: 'from-adapter' } },
      );
      expect(envOf(result)).toMatchObject({ HOME: '/nowhere', A: 'from-adapter', B: 'from-command' });
      expect(result.stdout.text).not.toContain('FLEETWARD_TEST_SECRET');
    });

    it('exec — with inheritEnv passes the whole environment on', async () => {
      const result = await exec({ argv: ['env', '-0'] }, {}, { inheritEnv: true });
      expect(envOf(result).FLEETWARD_TEST_SECRET).toBe('do-not-leak-7731');
    });
  });

  it('exec — an invalid env name rejects with ValidationError before anything runs', async () => {
    const marker = join(dir, 'ran');
    const error = await rejection(exec({ argv: ['touch', marker], env: { 'BAD-NAME': 'x' } }));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).subject).toBe('Command');
    expect((error as ValidationError).issues.map((i) => i.path)).toEqual([['env', 'BAD-NAME']]);
    expect(existsSync(marker)).toBe(false);
  });

  it('exec — invalid exec options reject with ValidationError', async () => {
    for (const options of [
      { timeoutMs: 0 },
      { timeoutMs: 2 ** 31 },
      { maxOutputBytes: -1 },
      { timeoutMs: 1.5 },
    ]) {
      const error = await rejection(exec({ argv: ['true'] }, options));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).subject).toBe('ExecOptions');
    }
  });

  it('exec — caps kept output but counts and hashes the whole stream', async () => {
    const content = Buffer.from('aé€😀'.repeat(50_000)); // 500 kB, multi-byte characters throughout
    const file = join(dir, 'out.txt');
    await writeFile(file, content);
    const chunks: Buffer[] = [];
    const result = await exec(
      { argv: ['cat', file] },
      { maxOutputBytes: 1001, onOutput: (stream, chunk) => stream === 'stdout' && chunks.push(chunk) },
    );
    expect(result.stdout.bytes).toBe(content.length);
    expect(result.stdout.sha256).toBe(sha256(content));
    expect(result.stdout.truncated).toBe(true);
    expect(result.stdout.text).not.toContain('\uFFFD');
    expect(content.toString().startsWith(result.stdout.text)).toBe(true);
    const kept = Buffer.byteLength(result.stdout.text);
    expect(kept).toBeLessThanOrEqual(1001);
    expect(kept).toBeGreaterThan(1001 - 4);
    // onOutput sees the raw stream, before the cap.
    expect(Buffer.concat(chunks).equals(content)).toBe(true);
  });

  it('exec — keeps 1 MiB of each stream by default', async () => {
    const result = await exec({ argv: ['head', '-c', '1100000', '/dev/zero'] });
    expect(result.stdout).toMatchObject({ bytes: 1_100_000, truncated: true });
    expect(Buffer.byteLength(result.stdout.text)).toBe(1_048_576);
  });

  it('exec — an onOutput that throws neither crashes nor stops the command', async () => {
    const result = await exec(
      { argv: ['printf', 'abc'] },
      {
        onOutput: () => {
          throw new Error('listener bug');
        },
      },
    );
    expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'abc' } });
  });

  it('exec — on timeout kills the whole process group and rejects with partial output', async () => {
    const pidFile = join(dir, 'child.pid');
    const error = await rejection(
      exec(
        {
          interpreter: ['sh', '-s'],
          script: 'sleep 30 &\necho $! > "$PID_FILE"\necho ready\nwait\n',
          env: { PID_FILE: pidFile },
        },
        { timeoutMs: 3_000 },
        { killGraceMs: 500 },
      ),
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.code).toBe('TIMEOUT');
    expect(error.details).toMatchObject({
      serverId: 'srv-1',
      stdout: { text: 'ready\n', bytes: 6, sha256: sha256('ready\n'), truncated: false },
      stderr: { bytes: 0 },
    });
    await expectGone(await readPid(pidFile));
  }, 60_000);

  it('exec — on timeout SIGKILLs a group that ignores SIGTERM', async () => {
    const pidFile = join(dir, 'child.pid');
    const error = await rejection(
      exec(
        {
          interpreter: ['sh', '-s'],
          script: 'trap \'\' TERM\nsleep 30 &\necho $! > "$PID_FILE"\necho ready\nwait\nwait\n',
          env: { PID_FILE: pidFile },
        },
        { timeoutMs: 3_000 },
        { killGraceMs: 300 },
      ),
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.details).toMatchObject({ stdout: { text: 'ready\n' } });
    await expectGone(await readPid(pidFile));
  }, 60_000);

  it('exec — abort mid-run kills the process group and rejects with AbortedError', async () => {
    const pidFile = join(dir, 'child.pid');
    const controller = new AbortController();
    const error = await rejection(
      exec(
        {
          interpreter: ['sh', '-s'],
          script: 'sleep 30 &\necho $! > "$PID_FILE"\necho ready\nwait\n',
          env: { PID_FILE: pidFile },
        },
        {
          signal: controller.signal,
          onOutput: (stream, chunk) => {
            if (stream === 'stdout' && chunk.toString().includes('ready'))
              controller.abort(new Error('operator stop'));
          },
        },
        { killGraceMs: 500 },
      ),
    );
    expect(error).toBeInstanceOf(AbortedError);
    expect(error.code).toBe('ABORTED');
    expect(error.details).toMatchObject({ stdout: { text: 'ready\n' } });
    await expectGone(await readPid(pidFile));
  }, 60_000);

  it('exec — on timeout still settles when a process that left the group holds the output pipes', async () => {
    const pidFile = join(dir, 'escaped.pid');
    let escaped: number | undefined;
    try {
      const error = await rejection(
        exec(
          {
            interpreter: ['sh', '-s'],
            script: 'setsid sleep 30 &\necho $! > "$PID_FILE"\necho ready\nwait\n',
            env: { PID_FILE: pidFile },
          },
          { timeoutMs: 3_000 },
          { killGraceMs: 300 },
        ),
      );
      expect(error).toBeInstanceOf(TimeoutError);
      expect(error.details).toMatchObject({ stdout: { text: 'ready\n' } });
      escaped = await readPid(pidFile);
    } finally {
      if (escaped !== undefined) process.kill(escaped, 'SIGKILL');
    }
  }, 60_000);

  it('exec — leaves background children alone after a normal exit', async () => {
    const pidFile = join(dir, 'bg.pid');
    const result = await exec({
      interpreter: ['sh', '-s'],
      script: 'sleep 30 >/dev/null 2>&1 &\necho $! > "$PID_FILE"\n',
      env: { PID_FILE: pidFile },
    });
    const pid = await readPid(pidFile);
    try {
      expect(result.exitCode).toBe(0);
      expect(await isAlive(pid)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('exec — an already-aborted signal rejects without starting anything', async () => {
    const marker = join(dir, 'ran');
    const controller = new AbortController();
    controller.abort();
    let called = false;
    const error = await rejection(
      exec({ argv: ['touch', marker] }, { signal: controller.signal, onOutput: () => (called = true) }),
    );
    expect(error).toBeInstanceOf(AbortedError);
    expect(existsSync(marker)).toBe(false);
    expect(called).toBe(false);
  });

  it('exec — an abort after the command ended changes nothing', async () => {
    const controller = new AbortController();
    const result = await exec({ argv: ['printf', 'done'] }, { signal: controller.signal });
    controller.abort();
    expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'done' } });
  });
});
