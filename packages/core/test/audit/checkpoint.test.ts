import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AuditCheckpoint,
  AuditCheckpointSchema,
  auditSigningKeyId,
  canonicalJson,
  createMemoryStore,
  generateAuditSigningKey,
  signAuditCheckpoint,
  ValidationError,
  verifyAuditCheckpoint,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const key = generateAuditSigningKey();
const other = generateAuditSigningKey();

async function headOfRealChain() {
  const store = createMemoryStore();
  for (let i = 0; i < 3; i++) {
    await store.audit.append({
      tenantId: 'acme',
      actor: { principalId: 'alice', kind: 'human' },
      action: 'patch.scan',
      decision: 'allow',
      result: 'success',
      details: { i },
    });
  }
  const head = (await store.audit.head('acme'))!;
  return { tenantId: 'acme', seq: head.seq, hash: head.hash, at: '2025-03-01T12:00:00.000Z' };
}

describe('signAuditCheckpoint', () => {
  it('signAuditCheckpoint — signs the head of a real chain, and verifyAuditCheckpoint accepts it', async () => {
    const head = await headOfRealChain();
    const cp = signAuditCheckpoint(head, key.privateKeyPem);
    expect(cp).toMatchObject({ ...head, keyId: key.keyId });
    expect(AuditCheckpointSchema.parse(cp)).toEqual(cp);
    expect(verifyAuditCheckpoint(cp, key.publicKeyPem)).toBe(true);
    expect(verifyAuditCheckpoint(cp, createPublicKey(key.publicKeyPem))).toBe(true);
  });

  it('signAuditCheckpoint — takes a KeyObject and signs deterministically (Ed25519)', async () => {
    const head = await headOfRealChain();
    const a = signAuditCheckpoint(head, createPrivateKey(key.privateKeyPem));
    const b = signAuditCheckpoint(head, key.privateKeyPem);
    expect(a).toEqual(b);
  });

  it('signAuditCheckpoint — signs exactly the canonical JSON of the documented payload', async () => {
    const head = await headOfRealChain();
    const cp = signAuditCheckpoint(head, key.privateKeyPem);
    const payload = canonicalJson({
      format: 'fleetward-audit-checkpoint/1',
      tenantId: cp.tenantId,
      seq: cp.seq,
      hash: cp.hash,
      at: cp.at,
      keyId: cp.keyId,
    });
    // An independent verifier, OpenSSL, given only the payload bytes, the public key and the signature.
    const dir = mkdtempSync(join(tmpdir(), 'fleetward-cp-'));
    try {
      writeFileSync(join(dir, 'payload'), payload);
      writeFileSync(join(dir, 'sig'), Buffer.from(cp.signature, 'base64'));
      writeFileSync(join(dir, 'pub.pem'), key.publicKeyPem);
      const verify = (file: string) =>
        execFileSync(
          'openssl',
          ['pkeyutl', '-verify', '-pubin', '-inkey', 'pub.pem', '-rawin', '-in', file, '-sigfile', 'sig'],
          { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
        );
      expect(verify('payload')).toMatch(/Signature Verified Successfully/);
      writeFileSync(join(dir, 'payload2'), payload.replace(`"seq":${cp.seq}`, `"seq":${cp.seq + 1}`));
      expect(() => verify('payload2')).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('signAuditCheckpoint — an invalid head is a ValidationError naming the field', () => {
    const bad = { tenantId: 'acme', seq: 3, hash: 'abc', at: '2025-03-01T12:00:00Z' };
    const error = (() => {
      try {
        signAuditCheckpoint(bad, key.privateKeyPem);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).paths).toEqual(['hash']);
  });

  it('signAuditCheckpoint — refuses a key that is not an Ed25519 private key', async () => {
    const head = await headOfRealChain();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => signAuditCheckpoint(head, ec.privateKey)).toThrow(/must be an Ed25519 key, not ec/);
    expect(() => signAuditCheckpoint(head, key.publicKeyPem)).toThrow(ValidationError);
    expect(() => signAuditCheckpoint(head, 'not a pem')).toThrow(ValidationError);
  });
});

describe('verifyAuditCheckpoint', () => {
  const tamperings: [string, (cp: AuditCheckpoint) => AuditCheckpoint][] = [
    ['seq', (cp) => ({ ...cp, seq: cp.seq + 1 })],
    ['hash', (cp) => ({ ...cp, hash: cp.hash.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')) })],
    ['at', (cp) => ({ ...cp, at: '2025-03-01T12:00:01.000Z' })],
    ['tenantId', (cp) => ({ ...cp, tenantId: 'globex' })],
    ['keyId', (cp) => ({ ...cp, keyId: other.keyId })],
    [
      'signature',
      (cp) => {
        const sig = Buffer.from(cp.signature, 'base64');
        sig[10] = (sig[10] ?? 0) ^ 1;
        return { ...cp, signature: sig.toString('base64') };
      },
    ],
  ];
  for (const [field, tamper] of tamperings) {
    it(`verifyAuditCheckpoint — rejects a checkpoint whose ${field} was changed`, async () => {
      const cp = signAuditCheckpoint(await headOfRealChain(), key.privateKeyPem);
      expect(verifyAuditCheckpoint(tamper(cp), key.publicKeyPem)).toBe(false);
    });
  }

  it('verifyAuditCheckpoint — rejects a checkpoint signed by another key', async () => {
    const cp = signAuditCheckpoint(await headOfRealChain(), other.privateKeyPem);
    expect(verifyAuditCheckpoint(cp, key.publicKeyPem)).toBe(false);
    // Claiming the trusted key's id does not help a forger.
    expect(verifyAuditCheckpoint({ ...cp, keyId: key.keyId }, key.publicKeyPem)).toBe(false);
  });

  it('verifyAuditCheckpoint — a checkpoint that fails the schema is false, not an exception', async () => {
    const cp = signAuditCheckpoint(await headOfRealChain(), key.privateKeyPem);
    expect(verifyAuditCheckpoint({ ...cp, signature: 'short' }, key.publicKeyPem)).toBe(false);
    expect(verifyAuditCheckpoint({ ...cp, extra: 1 } as AuditCheckpoint, key.publicKeyPem)).toBe(false);
  });

  it('verifyAuditCheckpoint — an unreadable or non-Ed25519 public key is a ValidationError', async () => {
    const cp = signAuditCheckpoint(await headOfRealChain(), key.privateKeyPem);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(() => verifyAuditCheckpoint(cp, rsa.publicKey)).toThrow(ValidationError);
    expect(() =>
      verifyAuditCheckpoint(cp, '-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----'),
    ).toThrow(ValidationError);
  });
});

describe('auditSigningKeyId', () => {
  it('auditSigningKeyId — is ed25519: and base64url of the first 16 bytes of sha256 over the SPKI DER', () => {
    const der = createPublicKey(key.publicKeyPem).export({ type: 'spki', format: 'der' });
    const expected = `ed25519:${createHash('sha256').update(der).digest().subarray(0, 16).toString('base64url')}`;
    expect(auditSigningKeyId(key.publicKeyPem)).toBe(expected);
    expect(key.keyId).toBe(expected);
    expect(expected).toMatch(/^ed25519:[A-Za-z0-9_-]{22}$/);
  });

  it('auditSigningKeyId — is the same for the private key, a key object, and differs between keys', () => {
    expect(auditSigningKeyId(key.privateKeyPem)).toBe(key.keyId);
    expect(auditSigningKeyId(createPublicKey(key.publicKeyPem))).toBe(key.keyId);
    expect(other.keyId).not.toBe(key.keyId);
  });
});

describe('generateAuditSigningKey', () => {
  it('generateAuditSigningKey — returns PKCS#8 and SPKI PEM of one Ed25519 pair', () => {
    expect(key.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(key.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const derived = createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'pem' });
    expect(derived).toBe(key.publicKeyPem);
    expect(createPublicKey(key.publicKeyPem).asymmetricKeyType).toBe('ed25519');
  });
});
