import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeIfAvailable } from '@fleetward/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePublicKey } from '../../src/access/authorized-keys.js';
import { generateEd25519KeyPair } from '../../src/access/keygen.js';
import { WireReader } from '../../src/access/ssh-wire.js';
import { ValidationError } from '../../src/errors.js';
import {
  keygenFingerprint,
  keygenUnavailable,
  run,
  SSH_KEYGEN,
  tempDir,
  writePrivateKey,
} from './support.js';

function containerOf(pem: string): Buffer {
  const lines = pem.trimEnd().split('\n');
  expect(lines[0]).toBe('-----BEGIN OPENSSH PRIVATE KEY-----');
  expect(lines.at(-1)).toBe('-----END OPENSSH PRIVATE KEY-----');
  for (const line of lines.slice(1, -1)) expect(line.length).toBeLessThanOrEqual(70);
  return Buffer.from(lines.slice(1, -1).join(''), 'base64');
}

describe('generateEd25519KeyPair', () => {
  it('generateEd25519KeyPair — writes an unencrypted openssh-key-v1 container with matching check ints and 1,2,3 padding', () => {
    const pair = generateEd25519KeyPair('deploy@fleetward');
    const container = containerOf(pair.privateKey);
    expect(container.subarray(0, 15).toString('latin1')).toBe('openssh-key-v1\0');
    const reader = new WireReader(container.subarray(15));
    expect(reader.string().toString()).toBe('none');
    expect(reader.string().toString()).toBe('none');
    expect(reader.string().length).toBe(0);
    expect(reader.uint32()).toBe(1);
    expect(reader.string().toString('base64')).toBe(pair.keyBase64);
    const section = reader.string();
    expect(reader.done()).toBe(true);
    expect(section.length % 8).toBe(0);
    const inner = new WireReader(section);
    expect(inner.uint32()).toBe(inner.uint32());
    expect(inner.string().toString()).toBe('ssh-ed25519');
    const pub = inner.string();
    const secret = inner.string();
    expect(secret.length).toBe(64);
    expect(secret.subarray(32).equals(pub)).toBe(true);
    expect(inner.string().toString()).toBe('deploy@fleetward');
    const padding = section.subarray(inner.position);
    expect([...padding]).toEqual(
      padding.length ? Array.from({ length: padding.length }, (_, i) => i + 1) : [],
    );
  });

  it('generateEd25519KeyPair — the public key line parses back to the same key and fingerprint', () => {
    const pair = generateEd25519KeyPair('a b');
    expect(pair.keyType).toBe('ssh-ed25519');
    expect(parsePublicKey(pair.publicKey)).toEqual({
      keyType: 'ssh-ed25519',
      keyBase64: pair.keyBase64,
      comment: 'a b',
      fingerprint: pair.fingerprint,
    });
    expect(generateEd25519KeyPair('').publicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+$/);
  });

  it('generateEd25519KeyPair — every call makes a new key', () => {
    expect(generateEd25519KeyPair('x').keyBase64).not.toBe(generateEd25519KeyPair('x').keyBase64);
  });

  it.each([
    ['a newline', 'a\nssh-rsa AAAA'],
    ['a CR', 'a\r'],
    ['a NUL', 'a\0'],
    ['more than 256 characters', 'x'.repeat(257)],
  ])('generateEd25519KeyPair — refuses a comment with %s', (_name, comment) => {
    expect(() => generateEd25519KeyPair(comment)).toThrow(ValidationError);
  });

  it('generateEd25519KeyPair — accepts a 256-character comment', () => {
    expect(generateEd25519KeyPair('x'.repeat(256)).publicKey.endsWith(` ${'x'.repeat(256)}`)).toBe(true);
  });
});

describeIfAvailable('generateEd25519KeyPair against ssh-keygen', keygenUnavailable(), () => {
  let dir: { dir: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir('keygen');
  });
  afterAll(async () => {
    await dir?.remove();
  });

  it.each(['fleetward-test', '', 'ünïcode comment'])(
    'generateEd25519KeyPair — ssh-keygen -y derives the same public key from the private key (comment %j)',
    async (comment) => {
      const pair = generateEd25519KeyPair(comment);
      const file = join(dir.dir, `id_${Math.random().toString(36).slice(2)}`);
      await writePrivateKey(file, pair.privateKey);
      const { stdout } = await run(SSH_KEYGEN, ['-y', '-f', file]);
      expect(stdout.trim()).toBe(pair.publicKey);
      // ssh-keygen -l on the private key reads the comment out of the container (an empty one leaves two blanks).
      const listed = (await run(SSH_KEYGEN, ['-l', '-E', 'sha256', '-f', file])).stdout.trim();
      expect(listed).toBe(`256 ${pair.fingerprint} ${comment} (ED25519)`);
    },
  );

  it('generateEd25519KeyPair — ssh-keygen -lf prints the same fingerprint for the public key', async () => {
    const pair = generateEd25519KeyPair('x');
    const file = join(dir.dir, 'pub.pub');
    await writePrivateKey(file, `${pair.publicKey}\n`);
    expect(await keygenFingerprint(file)).toBe(pair.fingerprint);
    expect(parsePublicKey(await readFile(file, 'utf8')).fingerprint).toBe(pair.fingerprint);
  });
});
