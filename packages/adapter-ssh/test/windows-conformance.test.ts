import { createSshAdapter } from '@fleetward/adapter-ssh';
import { AbortedError, type Command, type Server, TimeoutError } from '@fleetward/core';
import { buildPowerShellInvocation } from '@fleetward/core/os';
import { describeTransportConformance } from '@fleetward/testkit';
import { describeWithLab, type LabHost, startLab } from '@fleetward/testkit/lab';
import { expect, it } from 'vitest';
import { powerShellShim, SHIM_LOG, SHIM_PATH } from './support/powershell-shim.js';

// The SSH adapter's Windows path against a debian lab host whose `powershell.exe` is a shim that
// does exactly what Fleetward's PowerShell runner does (decode -EncodedCommand, read the base64
// stdin lines, exec argv with env and input). This proves what the adapter sends and how it
// handles what comes back (command string, encoding, stdin, exit codes, streaming, caps,
// timeouts), not cmd.exe or PowerShell semantics, which only a Windows host can show.

const LONG_RUN_TIMEOUT_MS = 90_000;
const CHANNEL_CLOSE_REASON =
  'on Windows a timeout or an abort can only close the channel: no process group, no signals; ' +
  "whether the process then ends is up to OpenSSH for Windows (see the README), and the lab's " +
  'Linux sshd does not end it; the adapter side is covered by the tests below';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to reject');
}

describeWithLab(
  'SSH adapter on a Windows server (powershell.exe shim on a lab host)',
  () => {
    let host: LabHost | undefined;
    const labHost = (): LabHost => {
      if (!host) throw new Error('the lab host was not started');
      return host;
    };
    const shimLog = async (): Promise<string[]> =>
      (await labHost().sh(`cat ${SHIM_LOG}`)).stdout.split('\n').filter((line) => line !== '');

    /** Waits (boundedly) for the shim to see the reader of its stdout go away, i.e. the channel closed. */
    const expectChannelClosed = async (pid: number) => {
      const seen = async () => (await shimLog()).includes(`channel-closed ${pid}`);
      for (let i = 0; i < 100 && !(await seen()); i++) await new Promise((r) => setTimeout(r, 150));
      expect(await seen(), `the channel of process ${pid} was not closed`).toBe(true);
    };

    describeTransportConformance('ssh to a lab host as labops, os.family windows', {
      async create() {
        const lab = await startLab({ hosts: [{ name: 'win1', flavour: 'debian' }] });
        host = lab.host('win1');
        await host.writeFile(SHIM_PATH, powerShellShim(), { mode: '755' });
        await host.writeFile(SHIM_LOG, '', { mode: '666' });
        const user = host.users['labops']!;
        const adapter = createSshAdapter({
          credentials: { username: 'labops', privateKey: user.privateKey },
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: { [host.address]: [host.hostKeys.ed25519.fingerprint] },
          killGraceMs: 500,
        });
        const now = new Date().toISOString();
        const server: Server = {
          tenantId: 'lab',
          id: 'win1',
          version: 1,
          createdAt: now,
          updatedAt: now,
          accountId: 'lab',
          provider: 'ssh',
          name: 'win1',
          address: host.address,
          labels: {},
          os: {
            family: 'windows',
            id: 'windows',
            versionId: '10.0.20348',
            prettyName: 'Windows Server 2022',
          },
        };
        return {
          adapter,
          server,
          async cleanup() {
            await adapter.close?.();
            await lab.stop();
          },
        };
      },
      skip: {
        signals: 'Windows has no POSIX signals and OpenSSH for Windows reports no exit-signal',
        timeouts: CHANNEL_CLOSE_REASON,
        cancellation: CHANNEL_CLOSE_REASON,
      },
      additionalTests(get) {
        const longRunning = (pidFile: string): Command => ({
          interpreter: ['sh', '-s'],
          script: 'sleep 300 &\necho $! > "$PID_FILE"\necho $$ >> "$PID_FILE"\necho ready\nwait\n',
          env: { PID_FILE: pidFile },
        });
        const readPids = async (file: string): Promise<number[]> =>
          (await labHost().readFile(file))
            .split('\n')
            .filter((line) => line !== '')
            .map(Number);
        const killLeftovers = async (pids: number[]) => {
          await labHost().exec(['kill', '-9', ...pids.map(String)]);
        };

        it('exec — runs through powershell.exe, never a shell line: the shim saw every command', async () => {
          const before = (await shimLog()).filter((line) => line === 'direct').length;
          const result = await get().exec({ argv: ['printf', '%s', 'via powershell'] });
          expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'via powershell' } });
          expect((await shimLog()).filter((line) => line === 'direct').length).toBe(before + 1);
        });

        it('exec — a runner too long for the command line travels on stdin behind the bootstrap', async () => {
          const words = Array.from({ length: 400 }, (_, i) => `word-${i}-${'é'.repeat(12)}`);
          const command: Command = { argv: ['printf', '%s\\n', ...words], stdin: 'unused input' };
          expect(buildPowerShellInvocation(command).runnerOnStdin).toBe(true);
          const before = (await shimLog()).filter((line) => line === 'bootstrap').length;
          const result = await get().exec(command);
          expect(result.exitCode).toBe(0);
          expect(result.stdout.text).toBe(words.map((w) => `${w}\n`).join(''));
          expect((await shimLog()).filter((line) => line === 'bootstrap').length).toBe(before + 1);
        });

        it('exec — sudo: true runs the command as the login, without sudo', async () => {
          // labops may sudo without a password: on the POSIX path this would print root.
          const result = await get().exec({ argv: ['id', '-un'], sudo: true });
          expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'labops\n' } });
        });

        it(
          'exec — on timeout closes the channel and rejects with TimeoutError and partial output',
          async () => {
            const pidFile = `${get().remoteDir}/timeout.pid`;
            const error = await rejection(get().exec(longRunning(pidFile), { timeoutMs: 3_000 }));
            expect(error).toBeInstanceOf(TimeoutError);
            expect((error as TimeoutError).details).toMatchObject({
              stdout: { text: 'ready\n', bytes: 6, truncated: false },
              stderr: { bytes: 0 },
              exitConfirmed: false,
            });
            const pids = await readPids(pidFile);
            await expectChannelClosed(pids[1]!);
            await killLeftovers(pids);
          },
          LONG_RUN_TIMEOUT_MS,
        );

        it(
          'exec — an abort mid-run closes the channel and rejects with AbortedError',
          async () => {
            const pidFile = `${get().remoteDir}/abort.pid`;
            const controller = new AbortController();
            const error = await rejection(
              get().exec(longRunning(pidFile), {
                signal: controller.signal,
                onOutput: (stream, chunk) => {
                  if (stream === 'stdout' && chunk.toString().includes('ready'))
                    controller.abort(new Error('stop'));
                },
              }),
            );
            expect(error).toBeInstanceOf(AbortedError);
            expect((error as AbortedError).details).toMatchObject({ stdout: { text: 'ready\n' } });
            const pids = await readPids(pidFile);
            await expectChannelClosed(pids[1]!);
            await killLeftovers(pids);
          },
          LONG_RUN_TIMEOUT_MS,
        );

        it('exec — an already-aborted signal rejects with AbortedError and runs nothing', async () => {
          const marker = `${get().remoteDir}/must-not-exist`;
          const controller = new AbortController();
          controller.abort();
          const error = await rejection(
            get().exec({ argv: ['touch', marker] }, { signal: controller.signal }),
          );
          expect(error).toBeInstanceOf(AbortedError);
          expect((await labHost().exec(['test', '-e', marker])).exitCode).not.toBe(0);
        });

        it('exec — the server still runs commands after a timeout', async () => {
          const result = await get().exec({ argv: ['printf', 'after'] });
          expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'after' } });
        });
      },
    });
  },
  { flavours: ['debian'] },
);
