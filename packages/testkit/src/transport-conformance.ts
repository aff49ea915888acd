import { createHash } from 'node:crypto';
import {
  AbortedError,
  type Adapter,
  type Command,
  CommandFailedError,
  type ExecOptions,
  type ExecResult,
  type Server,
  TimeoutError,
} from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

export const TRANSPORT_CONFORMANCE_GROUPS = [
  'exit-codes',
  'streams',
  'large-output',
  'stdin',
  'scripts',
  'timeouts',
  'cancellation',
  'binary',
  'hostile-arguments',
  'signals',
  'concurrency',
] as const;
export type TransportConformanceGroup = (typeof TRANSPORT_CONFORMANCE_GROUPS)[number];

/** What a transport under test is: an adapter with `exec`, and a POSIX server it reaches. */
export interface TransportConformanceSetup {
  adapter: Adapter;
  /** A server with `sh`, `printf`, `head`, `cat`, `sleep`, `mktemp`, `kill` and `yes`. */
  server: Server;
  /** Called once after the suite, after `adapter.close()`. */
  cleanup?(): Promise<void>;
}

export interface TransportConformanceContext extends TransportConformanceSetup {
  /** A scratch directory on the server, removed after the suite. */
  remoteDir: string;
  /** Runs a command through the adapter under test. */
  exec(command: Command, options?: ExecOptions): Promise<ExecResult>;
}

export interface TransportConformanceOptions {
  /** Called once for the suite. */
  create(): Promise<TransportConformanceSetup>;
  /** Groups switched off, each with the reason (printed in the test name). */
  skip?: Partial<Record<TransportConformanceGroup, string>>;
  /** More tests of the implementation, run with the same setup. */
  additionalTests?(get: () => TransportConformanceContext): void;
}

const TEST_TIMEOUT_MS = 90_000;
const LARGE_BYTES = 20 * 1024 * 1024;
const LARGE_LINE = 'fleetward 0123456789 abcdefghijklmnopqrstuvwxyz \u00e9\u20ac\n';

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to reject');
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
    `> ${pwned}`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal shell expansion is the point
    '${PATH}',
    '$(id)',
    '`id`',
    '$HOME',
    '*',
    '~',
    '-n',
    '--',
    '-e',
    '%s %d \\n',
    '\\',
    "'",
    '"',
    ' leading and trailing ',
    'line one\nline two\r\n',
    '\t',
    '日本語 😀 é',
    '',
  ];
}

/**
 * The definition of a correct transport (an adapter's `exec`): every implementation runs this
 * suite against a real server and must pass it whole, or skip a group for a stated reason.
 *
 * Side effects are checked through follow-up commands (a pid file then `kill -0`, a file that
 * must not exist), never through what the adapter reports about itself.
 */
export function describeTransportConformance(name: string, options: TransportConformanceOptions): void {
  describe(`Transport conformance: ${name}`, () => {
    let setup: TransportConformanceSetup | undefined;
    let remoteDir = '';

    const exec = (command: Command, execOptions?: ExecOptions): Promise<ExecResult> => {
      const capability = setup?.adapter.exec;
      if (!setup || !capability) throw new Error('the adapter under test has no exec capability');
      return capability.exec(setup.server, command, execOptions);
    };

    /** Whether a process still runs on the server: a zombie (exited, not yet reaped) does not. */
    const remoteAlive = async (pid: number): Promise<boolean> => {
      const result = await exec({
        interpreter: ['sh', '-s'],
        script:
          'kill -0 "$PID" 2>/dev/null || { echo gone; exit 0; }\n' +
          'state=$(awk \'/^State:/ { print $2 }\' "/proc/$PID/status" 2>/dev/null)\n' +
          'if [ "$state" = Z ]; then echo gone; else echo alive; fi\n',
        env: { PID: String(pid) },
      });
      return result.stdout.text.trim() === 'alive';
    };

    /** Polls (boundedly) until the process is gone: a kill completes asynchronously. */
    const expectGone = async (pid: number) => {
      for (let i = 0; i < 100 && (await remoteAlive(pid)); i++) await new Promise((r) => setTimeout(r, 150));
      expect(await remoteAlive(pid), `process ${pid} still runs on the server`).toBe(false);
    };

    const remoteExists = async (path: string): Promise<boolean> =>
      (await exec({ argv: ['test', '-e', path] })).exitCode === 0;

    const readPids = async (file: string): Promise<number[]> => {
      const pids = (await exec({ argv: ['cat', file] })).stdout.text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map(Number);
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) expect(Number.isInteger(pid) && pid > 1).toBe(true);
      return pids;
    };

    /** A script that starts a long child, records both pids, says `ready` and waits. */
    const longRunning = (pidFile: string): Command => ({
      interpreter: ['sh', '-s'],
      script: 'sleep 300 &\necho $! > "$PID_FILE"\necho $$ >> "$PID_FILE"\necho ready\nwait\n',
      env: { PID_FILE: pidFile },
    });

    beforeAll(async () => {
      setup = await options.create();
      const made = await exec({ argv: ['mktemp', '-d', '/tmp/fleetward-conformance-XXXXXXXX'] });
      expect(made.exitCode).toBe(0);
      remoteDir = made.stdout.text.trim();
      expect(remoteDir).toMatch(/^\/tmp\/fleetward-conformance-/);
    });

    afterAll(async () => {
      if (!setup) return;
      try {
        if (remoteDir) await exec({ argv: ['rm', '-rf', '--', remoteDir] });
      } finally {
        await setup.adapter.close?.();
        await setup.cleanup?.();
      }
    });

    const group = (g: TransportConformanceGroup, body: () => void) => {
      const reason = options.skip?.[g];
      if (reason) describe.skip(`${g} (skipped: ${reason})`, body);
      else describe(g, body);
    };

    group('exit-codes', () => {
      it('exec — resolves with exit codes 0, 1 and 42 and no signal', async () => {
        for (const code of [0, 1, 42]) {
          const result = await exec({ argv: ['sh', '-c', 'exit "$1"', 'sh', String(code)] });
          expect(result.exitCode).toBe(code);
          expect(result.signal).toBeNull();
          expect(result.durationMs).toBeGreaterThanOrEqual(0);
        }
      });
    });

    group('streams', () => {
      it('exec — keeps stderr separate from stdout', async () => {
        const result = await exec({
          argv: ['sh', '-c', 'printf out1; printf err1 >&2; printf out2; printf err2 >&2'],
        });
        expect(result.stdout).toEqual({
          text: 'out1out2',
          bytes: 8,
          sha256: sha256('out1out2'),
          truncated: false,
        });
        expect(result.stderr).toEqual({
          text: 'err1err2',
          bytes: 8,
          sha256: sha256('err1err2'),
          truncated: false,
        });
      });
    });

    group('large-output', () => {
      it(
        'exec — counts and hashes 20 MiB it does not keep, and says it truncated',
        async () => {
          const whole = Buffer.from(
            LARGE_LINE.repeat(Math.ceil(LARGE_BYTES / Buffer.byteLength(LARGE_LINE))),
          ).subarray(0, LARGE_BYTES);
          let streamed = 0;
          const streamedHash = createHash('sha256');
          const result = await exec(
            {
              argv: [
                'sh',
                '-c',
                'yes "$1" | head -c "$2"',
                'sh',
                LARGE_LINE.slice(0, -1),
                String(LARGE_BYTES),
              ],
            },
            {
              maxOutputBytes: 1000,
              onOutput: (stream, chunk) => {
                if (stream !== 'stdout') return;
                streamed += chunk.length;
                streamedHash.update(chunk);
              },
            },
          );
          expect(result.exitCode).toBe(0);
          expect(result.stdout.bytes).toBe(LARGE_BYTES);
          expect(result.stdout.truncated).toBe(true);
          expect(result.stdout.sha256).toBe(sha256(whole));
          const kept = Buffer.from(result.stdout.text);
          expect(kept.length).toBeLessThanOrEqual(1000);
          expect(kept.length).toBeGreaterThan(1000 - 4);
          expect(whole.subarray(0, kept.length).equals(kept)).toBe(true);
          expect(result.stdout.text).not.toContain('\uFFFD');
          // onOutput sees the raw stream, before the cap.
          expect(streamed).toBe(LARGE_BYTES);
          expect(streamedHash.digest('hex')).toBe(sha256(whole));
        },
        TEST_TIMEOUT_MS,
      );

      it('exec — keeps small output whole and untruncated', async () => {
        const result = await exec({ argv: ['printf', 'hello\\n'] }, { maxOutputBytes: 6 });
        expect(result.stdout).toEqual({
          text: 'hello\n',
          bytes: 6,
          sha256: sha256('hello\n'),
          truncated: false,
        });
      });
    });

    group('stdin', () => {
      it('exec — feeds ArgvCommand.stdin to the program and closes it', async () => {
        const input = 'héllo\nwörld\n'.repeat(1000);
        const result = await exec({ argv: ['cat'], stdin: input });
        expect(result.exitCode).toBe(0);
        expect(result.stdout.text).toBe(input);
      });

      it('exec — without stdin the program reads end of file at once', async () => {
        const result = await exec({ argv: ['cat'] });
        expect(result).toMatchObject({ exitCode: 0, stdout: { text: '', bytes: 0 } });
      });
    });

    group('scripts', () => {
      it('exec — runs a ScriptCommand with its parameters in env', async () => {
        const result = await exec({
          interpreter: ['sh', '-s'],
          script: 'printf "%s|%s" "$GREETING" "$NAME"\nexit 3\n',
          env: { GREETING: 'hello', NAME: "it's me" },
        });
        expect(result.exitCode).toBe(3);
        expect(result.stdout.text).toBe("hello|it's me");
      });
    });

    group('timeouts', () => {
      it(
        'exec — on timeout kills the command and its children and rejects with TimeoutError and partial output',
        async () => {
          const pidFile = `${remoteDir}/timeout.pid`;
          const error = await rejection(exec(longRunning(pidFile), { timeoutMs: 3_000 }));
          expect(error).toBeInstanceOf(TimeoutError);
          expect((error as TimeoutError).code).toBe('TIMEOUT');
          expect((error as TimeoutError).details).toMatchObject({
            stdout: { text: 'ready\n', bytes: 6, sha256: sha256('ready\n'), truncated: false },
            stderr: { bytes: 0 },
          });
          for (const pid of await readPids(pidFile)) await expectGone(pid);
        },
        TEST_TIMEOUT_MS,
      );
    });

    group('cancellation', () => {
      it(
        'exec — an abort mid-run kills the command and its children and rejects with AbortedError',
        async () => {
          const pidFile = `${remoteDir}/abort.pid`;
          const controller = new AbortController();
          const error = await rejection(
            exec(longRunning(pidFile), {
              signal: controller.signal,
              onOutput: (stream, chunk) => {
                if (stream === 'stdout' && chunk.toString().includes('ready'))
                  controller.abort(new Error('stop'));
              },
            }),
          );
          expect(error).toBeInstanceOf(AbortedError);
          expect((error as AbortedError).code).toBe('ABORTED');
          expect((error as AbortedError).details).toMatchObject({ stdout: { text: 'ready\n' } });
          for (const pid of await readPids(pidFile)) await expectGone(pid);
        },
        TEST_TIMEOUT_MS,
      );

      it('exec — an already-aborted signal rejects with AbortedError and runs nothing', async () => {
        const marker = `${remoteDir}/must-not-exist`;
        const controller = new AbortController();
        controller.abort();
        let called = false;
        const error = await rejection(
          exec({ argv: ['touch', marker] }, { signal: controller.signal, onOutput: () => (called = true) }),
        );
        expect(error).toBeInstanceOf(AbortedError);
        expect(called).toBe(false);
        expect(await remoteExists(marker)).toBe(false);
      });

      it('exec — an abort after the command ended changes nothing', async () => {
        const controller = new AbortController();
        const result = await exec({ argv: ['printf', 'done'] }, { signal: controller.signal });
        controller.abort();
        expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'done' } });
      });
    });

    group('binary', () => {
      it('exec — returns all 256 byte values unchanged', async () => {
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const format = Array.from({ length: 256 }, (_, i) => `\\${i.toString(8).padStart(3, '0')}`).join('');
        const result = await exec({
          argv: ['sh', '-c', 'for i in 1 2 3 4; do printf "$1"; done', 'sh', format],
        });
        const expected = Buffer.concat([all, all, all, all]);
        expect(result.exitCode).toBe(0);
        expect(result.stdout.bytes).toBe(expected.length);
        expect(result.stdout.sha256).toBe(sha256(expected));
        expect(result.stdout.truncated).toBe(false);
      });
    });

    group('hostile-arguments', () => {
      it('exec — hostile argv elements reach the program verbatim and run nothing', async () => {
        const pwned = `${remoteDir}/pwned-argv`;
        const values = hostileValues(pwned);
        const result = await exec({ argv: ['printf', '%s\\0', ...values] });
        expect(result.exitCode).toBe(0);
        expect(result.stdout.text.split('\0').slice(0, -1)).toEqual(values);
        for (const value of values.slice(0, 5)) {
          const one = await exec({ argv: ['printf', '%s', value] });
          expect(one.stdout.sha256).toBe(sha256(value));
        }
        expect(await remoteExists(pwned)).toBe(false);
      });

      it('exec — a program name and first argument that look like options or syntax are taken literally', async () => {
        const pwned = `${remoteDir}/pwned-argv0`;
        const result = await exec({
          argv: ['sh', '-c', 'printf "%s\\0" "$@"', `x; touch ${pwned}`, '-n', ''],
        });
        expect(result.stdout.text.split('\0').slice(0, -1)).toEqual(['-n', '']);
        // No such program: a transport may report it as a failed start or as the shell's 127.
        const missing = await exec({ argv: [`true; touch ${pwned}`] }).then(
          (result) => result.exitCode,
          (error: unknown) => (error instanceof CommandFailedError ? 'not started' : Promise.reject(error)),
        );
        expect(missing).not.toBe(0);
        expect(await remoteExists(pwned)).toBe(false);
      });

      it('exec — hostile env values reach a script verbatim and run nothing', async () => {
        const pwned = `${remoteDir}/pwned-env`;
        const values = hostileValues(pwned);
        const env = Object.fromEntries(values.map((value, i) => [`V${i}`, value]));
        const result = await exec({
          interpreter: ['sh', '-s'],
          script: `printf '%s\\0' ${values.map((_, i) => `"$V${i}"`).join(' ')}\n`,
          env,
        });
        expect(result.stderr.text).toBe('');
        expect(result.stdout.text.split('\0').slice(0, -1)).toEqual(values);
        expect(await remoteExists(pwned)).toBe(false);
      });
    });

    group('signals', () => {
      it('exec — reports death by signal as SIGKILL with a null exit code', async () => {
        const result = await exec({
          interpreter: ['sh', '-s'],
          script: 'echo before\nkill -9 $$\necho after\n',
        });
        expect(result.signal).toBe('SIGKILL');
        expect(result.exitCode).toBeNull();
        expect(result.stdout.text).toBe('before\n');
      });
    });

    group('concurrency', () => {
      it(
        'exec — runs 20 commands at once on the same server, each with its own result',
        async () => {
          const results = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              exec({
                argv: [
                  'sh',
                  '-c',
                  'printf "out%s" "$1"; sleep 0.3; printf "err%s" "$1" >&2; exit $(($1 % 7))',
                  'sh',
                  String(i),
                ],
              }),
            ),
          );
          results.forEach((result, i) => {
            expect(result.exitCode).toBe(i % 7);
            expect(result.stdout.text).toBe(`out${i}`);
            expect(result.stderr.text).toBe(`err${i}`);
          });
        },
        TEST_TIMEOUT_MS,
      );
    });

    options.additionalTests?.(() => {
      if (!setup) throw new Error('the transport under test was not created');
      return { ...setup, remoteDir, exec };
    });
  });
}
