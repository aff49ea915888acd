import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A key pair made by the real `ssh-keygen`, as a user would make it. */
export async function userKeyPair(comment: string): Promise<{ privateKeyPath: string; publicKey: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetward-user-key-'));
  const privateKeyPath = join(dir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', privateKeyPath]);
  return { privateKeyPath, publicKey: (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim() };
}

/**
 * Logs in with the real OpenSSH client and only the given key, host key checked against the lab's
 * known_hosts: the exit code of `true` on the host (255 when the login is refused).
 */
export async function sshLogin(options: {
  address: string;
  login: string;
  privateKeyPath: string;
  knownHostsPath: string;
  /** Offer this OpenSSH certificate (`…-cert.pub`) for the key instead of the bare key. */
  certificatePath?: string;
}): Promise<number> {
  try {
    await run(
      'ssh',
      [
        '-i',
        options.privateKeyPath,
        ...(options.certificatePath ? ['-o', `CertificateFile=${options.certificatePath}`] : []),
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'PreferredAuthentications=publickey',
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${options.knownHostsPath}`,
        '-o',
        'ControlMaster=no',
        '-o',
        'ConnectTimeout=10',
        '-F',
        '/dev/null',
        `${options.login}@${options.address}`,
        'true',
      ],
      { timeout: 30_000 },
    );
    return 0;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}
