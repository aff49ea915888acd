import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { binary, runOk } from './system.js';

export interface GeneratedKey {
  /** OpenSSH private key file content. */
  privateKey: string;
  /** `.pub` line: `<type> <base64> <comment>`. */
  publicKeyLine: string;
  privateKeyPath: string;
}

/**
 * A fresh key pair from `ssh-keygen` (the OpenSSH format the lab's sshd and the system `ssh`
 * read natively), written to `path` (0600) and `path.pub`.
 */
export async function generateSshKey(
  type: 'ed25519' | 'rsa',
  path: string,
  comment: string,
): Promise<GeneratedKey> {
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  // 2048-bit RSA keeps key generation for a dozen hosts well under a second; strength is moot here.
  const size = type === 'rsa' ? ['-b', '2048'] : [];
  await runOk(binary('ssh-keygen'), ['-q', '-t', type, ...size, '-N', '', '-C', comment, '-f', path]);
  const [privateKey, publicKeyLine] = await Promise.all([
    readFile(path, 'utf8'),
    readFile(`${path}.pub`, 'utf8'),
  ]);
  return { privateKey, publicKeyLine: publicKeyLine.trim(), privateKeyPath: path };
}

/** `<type> <base64>` of a public key line, without the comment. */
export function stripComment(publicKeyLine: string): string {
  return publicKeyLine.trim().split(/\s+/).slice(0, 2).join(' ');
}

/** OpenSSH's `SHA256:` fingerprint (unpadded base64 of the SHA-256 of the key blob). */
export function sshFingerprint(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1];
  if (blob === undefined) throw new Error(`not an OpenSSH public key: ${publicKeyLine}`);
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}
