import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);

export const SSH_KEYGEN = '/usr/bin/ssh-keygen';
export const SSHD = '/usr/sbin/sshd';
export const SSH = '/usr/bin/ssh';

/** Why ssh-keygen tests cannot run here, or `undefined` when they can. */
export function keygenUnavailable(): string | undefined {
  return existsSync(SSH_KEYGEN) ? undefined : `needs ${SSH_KEYGEN} (apt-get install openssh-client)`;
}

/** Why a real sshd cannot be started here, or `undefined` when it can. */
export function sshdUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root to run sshd';
  if (!existsSync(SSHD)) return `needs ${SSHD} (apt-get install openssh-server)`;
  if (!existsSync(SSH)) return `needs ${SSH} (apt-get install openssh-client)`;
  return keygenUnavailable();
}

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `fleetward-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A key made by ssh-keygen the way an operator makes one. */
export interface KeygenKey {
  path: string;
  publicKey: string;
  /** What `ssh-keygen -l -E sha256 -f` prints for it. */
  fingerprint: string;
}

export async function sshKeygen(
  dir: string,
  name: string,
  type: 'ed25519' | 'rsa' | 'ecdsa',
  comment = 'x',
): Promise<KeygenKey> {
  const path = join(dir, name);
  await run(SSH_KEYGEN, ['-q', '-t', type, '-N', '', '-C', comment, '-f', path]);
  return {
    path,
    publicKey: (await readFile(`${path}.pub`, 'utf8')).trim(),
    fingerprint: await keygenFingerprint(`${path}.pub`),
  };
}

/** The fingerprint column of `ssh-keygen -l -E sha256 -f <file>` (first line). */
export async function keygenFingerprint(file: string): Promise<string> {
  const { stdout } = await run(SSH_KEYGEN, ['-l', '-E', 'sha256', '-f', file]);
  const fingerprint = stdout.split(/\s+/)[1];
  if (!fingerprint?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen output: ${stdout}`);
  return fingerprint;
}

/** Writes a private key the way ssh demands it: mode 0600. */
export async function writePrivateKey(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o600 });
  await chmod(path, 0o600);
}
