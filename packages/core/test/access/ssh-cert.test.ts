import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeIfAvailable } from '@fleetward/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEd25519KeyPair } from '../../src/access/keygen.js';
import {
  certificateAuthorityPublicKey,
  certificateKeyId,
  parseCertificate,
  signUserCertificate,
} from '../../src/access/ssh-cert.js';
import { ValidationError } from '../../src/errors.js';
import { keygenUnavailable, run, SSH_KEYGEN, sshKeygen, tempDir } from './support.js';

// Certificates signed in pure node:crypto, read back by the real ssh-keygen: if ssh-keygen -L
// prints the fields, sshd parses the same bytes. Logins with such certificates are proven on the
// lab (e2e/access-lab.test.ts).

const ca = generateEd25519KeyPair('user-ca');
const validAfter = new Date('2026-05-01T08:59:00Z');
const validBefore = new Date('2026-05-01T11:00:00Z');
const USER = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl carol@laptop';

const sign = (over: Partial<Parameters<typeof signUserCertificate>[0]> = {}) =>
  signUserCertificate({
    caPrivateKey: ca.privateKey,
    publicKey: USER,
    principals: ['deploy'],
    keyId: 'fleetward:acme:req-1:INC-4711',
    validAfter,
    validBefore,
    ...over,
  });

function issuesOf(fn: () => unknown): { path: (string | number)[]; message: string }[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).issues;
  }
  throw new Error('expected a ValidationError');
}

describe('signUserCertificate', () => {
  it('signUserCertificate — parseCertificate reads back every field and a valid signature', () => {
    const cert = sign({ serial: 4711n, sourceAddress: '10.0.0.0/8,192.0.2.1' });
    expect(cert.startsWith('ssh-ed25519-cert-v01@openssh.com AAAA')).toBe(true);
    expect(cert.endsWith(' fleetward:acme:req-1:INC-4711')).toBe(true);
    const parsed = parseCertificate(cert);
    expect(parsed).toMatchObject({
      keyType: 'ssh-ed25519-cert-v01@openssh.com',
      publicKey: USER.split(' ').slice(0, 2).join(' '),
      serial: 4711n,
      type: 'user',
      keyId: 'fleetward:acme:req-1:INC-4711',
      principals: ['deploy'],
      validAfter,
      validBefore,
      criticalOptions: { 'source-address': '10.0.0.0/8,192.0.2.1' },
      extensions: ['permit-pty'],
      signatureKey: certificateAuthorityPublicKey(ca.privateKey),
      signatureValid: true,
    });
  });

  it('signUserCertificate — two certificates differ in nonce and random serial', () => {
    const a = parseCertificate(sign());
    const b = parseCertificate(sign());
    expect(a.serial).not.toBe(b.serial);
    expect(sign()).not.toBe(sign());
  });

  it('parseCertificate — a certificate changed by one byte no longer verifies', () => {
    const [type, data, comment] = sign().split(' ');
    const blob = Buffer.from(data!, 'base64');
    // A byte of the key ID, inside the signed part.
    const at = blob.indexOf(Buffer.from('fleetward:acme'));
    blob[at] = 'g'.charCodeAt(0);
    expect(parseCertificate(`${type} ${blob.toString('base64')} ${comment}`).signatureValid).toBe(false);
  });

  it('signUserCertificate — a PKCS#8 CA key signs the same way as its OpenSSH form', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const parsed = parseCertificate(sign({ caPrivateKey: pem }));
    expect(parsed.signatureValid).toBe(true);
    expect(parsed.signatureKey).toBe(certificateAuthorityPublicKey(pem));
  });

  it('signUserCertificate — refuses a non-Ed25519 CA, DSA and certificate user keys, no principals, a bad key ID and an empty window', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    expect(issuesOf(() => sign({ caPrivateKey: rsa }))[0]!.message).toContain(
      'must be an Ed25519 key, not rsa',
    );
    expect(issuesOf(() => sign({ caPrivateKey: 'not a key' }))[0]!.path).toEqual(['caPrivateKey']);
    // A syntactically valid DSA public key blob (four empty mpints would be refused by the parser).
    const dss = `ssh-dss ${Buffer.concat(
      ['ssh-dss', 'p', 'q', 'g', 'y'].map((s) => {
        const b = Buffer.from(s);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(b.length);
        return Buffer.concat([len, b]);
      }),
    ).toString('base64')}`;
    expect(issuesOf(() => sign({ publicKey: dss }))).toEqual([
      { path: ['publicKey'], message: 'key type ssh-dss cannot be certified; use Ed25519, ECDSA or RSA' },
    ]);
    expect(issuesOf(() => sign({ publicKey: sign() }))[0]!.message).toContain('is already a certificate');
    expect(issuesOf(() => sign({ principals: [] }))[0]!.path).toEqual(['principals']);
    expect(issuesOf(() => sign({ principals: ['a,b'] }))[0]!.path).toEqual(['principals', 0]);
    expect(issuesOf(() => sign({ keyId: 'has "quotes"' }))[0]!.path).toEqual(['keyId']);
    expect(issuesOf(() => sign({ validBefore: validAfter }))[0]!.path).toEqual(['validBefore']);
    expect(issuesOf(() => sign({ extensions: ['permit-everything' as 'permit-pty'] }))[0]!.path).toEqual([
      'extensions',
      0,
    ]);
    expect(issuesOf(() => sign({ sourceAddress: '10.0.0.0/8 ; rm' }))[0]!.path).toEqual(['sourceAddress']);
  });

  it('certificateKeyId — names tenant, request and ticket, with blanks and quotes replaced', () => {
    expect(certificateKeyId({ tenantId: 'acme', requestId: 'r-1', ticket: 'INC 47"11' })).toBe(
      'fleetward:acme:r-1:INC_47_11',
    );
  });
});

describeIfAvailable('signUserCertificate with the real ssh-keygen', keygenUnavailable(), () => {
  let dir: { dir: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir('ssh-cert');
  });
  afterAll(() => dir.remove());

  for (const type of ['ed25519', 'rsa', 'ecdsa'] as const) {
    it(`signUserCertificate — ssh-keygen -L shows the fields of a certificate for an ${type} key`, async () => {
      const user = await sshKeygen(dir.dir, `id_${type}`, type, 'carol@laptop');
      const cert = sign({
        publicKey: user.publicKey,
        serial: 18_446_744_073_709_551_615n,
        sourceAddress: '10.0.0.0/8',
      });
      const file = join(dir.dir, `id_${type}-cert.pub`);
      await writeFile(file, `${cert}\n`);
      const { stdout } = await run(SSH_KEYGEN, ['-L', '-f', file], { env: { ...process.env, TZ: 'UTC' } });
      expect(stdout).toContain(`Type: ${cert.split(' ')[0]} user certificate`);
      expect(stdout).toContain(`CERT ${user.fingerprint}`);
      expect(stdout).toContain(`Signing CA: ED25519 ${ca.fingerprint} (using ssh-ed25519)`);
      expect(stdout).toContain('Key ID: "fleetward:acme:req-1:INC-4711"');
      expect(stdout).toContain('Serial: 18446744073709551615');
      expect(stdout).toContain('Valid: from 2026-05-01T08:59:00 to 2026-05-01T11:00:00');
      expect(stdout).toMatch(/Principals: \n\s+deploy\n/);
      expect(stdout).toMatch(/Critical Options: \n\s+source-address 10\.0\.0\.0\/8\n/);
      expect(stdout).toMatch(/Extensions: \n\s+permit-pty\n?$/);
    });
  }

  it('certificateAuthorityPublicKey — ssh-keygen fingerprints it as the CA key pair', async () => {
    const caFile = join(dir.dir, 'ca.pub');
    await writeFile(caFile, `${certificateAuthorityPublicKey(ca.privateKey)}\n`);
    const { stdout } = await run(SSH_KEYGEN, ['-l', '-E', 'sha256', '-f', caFile]);
    expect(stdout.split(/\s+/)[1]).toBe(ca.fingerprint);
  });
});
