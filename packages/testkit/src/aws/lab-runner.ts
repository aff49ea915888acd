import { randomUUID } from 'node:crypto';
import type { LabHost } from '../lab/types.js';
import type { AwsFakeRunner } from './types.js';

/** Where the runner puts scripts on a lab host, like the SSM agent's orchestration folder. */
export const LAB_SSM_ORCHESTRATION_DIR = '/var/lib/amazon/ssm/fleetward-fake/orchestration';

/**
 * A runner that executes Run Command scripts on a lab host as the SSM agent does: the script is
 * written to `_script.sh` in a fresh folder under `LAB_SSM_ORCHESTRATION_DIR`, run as root with
 * `sh` in the command's `workingDirectory` (or that folder), through the host's back channel.
 * The folder is removed afterwards. Cancellation and time-outs kill the script's process group.
 */
export function labHostRunner(host: LabHost): AwsFakeRunner {
  return async (script, { signal, workingDirectory }) => {
    const dir = `${LAB_SSM_ORCHESTRATION_DIR}/${randomUUID()}`;
    const path = `${dir}/_script.sh`;
    await host.writeFile(path, script, { mode: '700' });
    try {
      const r = await host.exec(['sh', path], { cwd: workingDirectory ?? dir, signal });
      return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
    } finally {
      await host.exec(['rm', '-rf', '--', dir]).catch(() => undefined);
    }
  };
}

/** `YYYYMMDDHHMMSSZ`, the UTC form of OpenSSH's `expiry-time` option, rounded down to the second. */
function expiryTime(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace(/[-T:]/g, '')}Z`;
}

/**
 * An `onSshPublicKey` hook that does on a lab host what EC2's `AuthorizedKeysCommand` does on an
 * instance: sshd accepts a pushed key for that user until it expires, and refuses it afterwards.
 * It appends `expiry-time="YYYYMMDDHHMMSSZ" <key>` to the user's `~/.ssh/authorized_keys`
 * (created 0600, owned by the user) through the host's back channel; OpenSSH honours the
 * option. Expired lines stay in the file, inert. Rejects when the user does not exist on the
 * host or the key is not one line.
 */
export function labHostInstanceConnect(
  host: LabHost,
): (key: { osUser: string; publicKey: string; expiresAt: Date }) => Promise<void> {
  return async ({ osUser, publicKey, expiresAt }) => {
    if (!/^[\x20-\x7e]+$/.test(publicKey))
      throw new Error('the public key must be one line of printable text');
    const entry = await host.exec(['getent', 'passwd', '--', osUser]);
    const home = entry.exitCode === 0 ? entry.stdout.trim().split(':')[5] : undefined;
    if (!home) throw new Error(`no user ${JSON.stringify(osUser)} on lab host ${host.name}`);
    const run = async (argv: string[], input?: string): Promise<void> => {
      const r = await host.exec(argv, { user: osUser, ...(input === undefined ? {} : { input }) });
      if (r.exitCode !== 0) {
        throw new Error(
          `${argv[0]} failed on lab host ${host.name} (exit ${r.exitCode}): ${r.stderr.trim()}`,
        );
      }
    };
    await run(['mkdir', '-p', '-m', '700', '--', `${home}/.ssh`]);
    // O_APPEND: concurrent pushes each add their whole line. The path is an argument, never script text.
    await run(
      ['sh', '-c', 'umask 077 && cat >> "$1"', 'append-key', `${home}/.ssh/authorized_keys`],
      `expiry-time="${expiryTime(expiresAt)}" ${publicKey}\n`,
    );
  };
}
