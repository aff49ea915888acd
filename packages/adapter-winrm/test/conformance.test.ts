import { buildPowerShellInvocation, createWinRmAdapter } from '@fleetward/adapter-winrm';
import type { Server } from '@fleetward/core';
import { describeIfAvailable, describeTransportConformance, unavailableWithout } from '@fleetward/testkit';
import { startWinRmFake } from '@fleetward/testkit/winrm';
import { expect, it } from 'vitest';

const USER = { username: 'Administrator', password: 'S3cret!pass' };

// The fake's process backend: an emulated Windows host whose commands run on this POSIX machine.
// It proves the WS-Man transport end to end (encoding, streaming, exit codes, caps, Signal and
// Delete), not what cmd.exe or PowerShell would make of the commands.
describeIfAvailable(
  'WinRM adapter against the WinRM fake running commands as processes',
  unavailableWithout({ commands: ['openssl', 'sh', 'yes', 'head', 'mktemp', 'awk'] }),
  () => {
    describeTransportConformance('winrm (fake, NTLM over HTTPS)', {
      skip: {
        signals:
          'WinRM reports an exit code only (Windows has no signals): a command killed by SIGKILL ends with exit code 137 and signal null, checked below',
      },
      async create() {
        const fake = await startWinRmFake({ users: [USER], processes: true });
        const adapter = createWinRmAdapter({ credentials: USER, ca: fake.ca });
        const server = {
          id: 'srv-winrm-1',
          name: 'localhost',
          address: '127.0.0.1',
          port: fake.port,
        } as Server;
        return { adapter, server, cleanup: () => fake.close() };
      },
      additionalTests(get) {
        it('exec — a death by signal arrives as the exit code 128 + n, with the output before it', async () => {
          const result = await get().exec({
            interpreter: ['sh', '-s'],
            script: 'echo before\nkill -9 $$\necho after\n',
          });
          expect(result).toMatchObject({ exitCode: 137, signal: null, stdout: { text: 'before\n' } });
        });

        it('exec — a runner too long for the command line travels on stdin behind the bootstrap', async () => {
          const long = 'x'.repeat(12_000);
          const command = { argv: ['sh', '-c', '[ "$1" = "$2" ] && cat', 'sh', long, long], stdin: 'in' };
          expect(buildPowerShellInvocation(command).runnerOnStdin).toBe(true);
          const result = await get().exec(command);
          expect(result).toMatchObject({ exitCode: 0, stdout: { text: 'in' } });
        });

        it('exec — a program that does not exist exits 127 with PowerShell’s message', async () => {
          const result = await get().exec({ argv: ['fleetward-no-such-program'] });
          expect(result.exitCode).toBe(127);
          expect(result.stderr.text).toContain("The term 'fleetward-no-such-program' is not recognized");
        });
      },
    });
  },
);
