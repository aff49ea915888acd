import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AuthorizedKeysLine,
  parseAuthorizedKeys,
  parsePublicKey,
} from '../../src/access/authorized-keys.js';
import { generateEd25519KeyPair } from '../../src/access/keygen.js';
import { parseCertificate, signUserCertificate } from '../../src/access/ssh-cert.js';
import { encodeString, encodeUint32 } from '../../src/access/ssh-wire.js';
import { parseSshdLog } from '../../src/access/sshd-log.js';
import { parseSshdVersion } from '../../src/access/sshd-version.js';
import { ValidationError } from '../../src/errors.js';
import { expectTypedOutcome, hostileText, RUNS, readFixtures } from '../hostile-input.js';

const ed25519 = generateEd25519KeyPair('alice@laptop').publicKey.trim();
const ca = generateEd25519KeyPair('user-ca');

/** OpenSSH public key lines for the key types node:crypto can make. */
function opensshLine(type: 'rsa' | 'ec', comment: string): string {
  if (type === 'rsa') {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const mpint = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64url');
      return encodeString(bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
    };
    const blob = Buffer.concat([encodeString('ssh-rsa'), mpint(jwk.e!), mpint(jwk.n!)]);
    return `ssh-rsa ${blob.toString('base64')} ${comment}`;
  }
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x!, 'base64url'),
    Buffer.from(jwk.y!, 'base64url'),
  ]);
  const blob = Buffer.concat([
    encodeString('ecdsa-sha2-nistp256'),
    encodeString('nistp256'),
    encodeString(point),
  ]);
  return `ecdsa-sha2-nistp256 ${blob.toString('base64')} ${comment}`;
}

const certificate = signUserCertificate({
  caPrivateKey: ca.privateKey,
  publicKey: ed25519,
  principals: ['deploy', 'root'],
  keyId: 'fleetward:acme:req-1:INC-4711',
  validAfter: new Date('2026-05-01T08:59:00Z'),
  validBefore: new Date('2026-05-01T11:00:00Z'),
  sourceAddress: '10.0.0.0/8',
});

const KEY_LINES = [ed25519, opensshLine('rsa', 'bob@host'), opensshLine('ec', 'carol'), certificate];
const AUTHORIZED_KEYS = [
  [
    '# managed by hand',
    '',
    ...KEY_LINES,
    `restrict,from="10.0.0.0/8",expiry-time="20261231Z",command="echo \\"hi\\"" ${KEY_LINES[1]} fleetward:grant=g-1`,
    `no-pty,permitopen="host:22",environment="A=b" ${KEY_LINES[2]}`,
  ].join('\n'),
];
const SSHD_LOG = readFixtures(new URL('../fixtures/sshd-log/', import.meta.url));

function wellFormedLines(lines: AuthorizedKeysLine[], text: string): void {
  const raw = text === '' ? [] : text.split('\n');
  if (raw.at(-1) === '') raw.pop();
  expect(lines.map((l) => l.raw)).toEqual(raw);
  lines.forEach((l, i) => {
    expect(l.lineNo).toBe(i + 1);
    if (l.kind === 'key') expect(l.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
}

interface CertFields {
  type: string;
  serial: bigint;
  certType: number;
  keyId: string;
  principals: string[];
  after: bigint;
  before: bigint;
  critical: [string, Uint8Array][];
  caType: string;
  caKey: Uint8Array;
  sigType: string;
  sig: Uint8Array;
  rawTail: Uint8Array;
}

/** A certificate line built field by field (PROTOCOL.certkeys), so every field can hold hostile bytes. */
function buildCertificate(f: CertFields): string {
  const u64 = (v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    return b;
  };
  const plainKey =
    f.type === 'ssh-ed25519-cert-v01@openssh.com'
      ? [encodeString(Buffer.alloc(32, 7))]
      : [encodeString(Buffer.from([1, 0, 1])), encodeString(Buffer.alloc(64, 0x55))];
  const body = Buffer.concat([
    encodeString(f.type),
    encodeString(Buffer.alloc(32)),
    ...plainKey,
    u64(f.serial),
    encodeUint32(f.certType),
    encodeString(f.keyId),
    encodeString(Buffer.concat(f.principals.map((p) => encodeString(p)))),
    u64(f.after),
    u64(f.before),
    encodeString(
      Buffer.concat(f.critical.flatMap(([k, v]) => [encodeString(k), encodeString(Buffer.from(v))])),
    ),
    encodeString(Buffer.alloc(0)),
    encodeString(Buffer.alloc(0)),
    encodeString(Buffer.concat([encodeString(f.caType), encodeString(Buffer.from(f.caKey))])),
  ]);
  const sig = encodeString(Buffer.concat([encodeString(f.sigType), encodeString(Buffer.from(f.sig))]));
  return `${f.type} ${Buffer.concat([body, sig, Buffer.from(f.rawTail)]).toString('base64')} fuzz`;
}

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const certFields: fc.Arbitrary<CertFields> = fc.record({
  type: fc.constantFrom('ssh-ed25519-cert-v01@openssh.com', 'ssh-rsa-cert-v01@openssh.com'),
  serial: u64,
  certType: fc.oneof(fc.constantFrom(1, 2), fc.nat()),
  keyId: fc.string({ unit: 'binary', maxLength: 40 }),
  principals: fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.constant('__proto__'))),
  after: u64,
  before: u64,
  critical: fc.array(
    fc.tuple(
      fc.constantFrom('__proto__', 'constructor', 'source-address', 'force-command', 'toString'),
      fc.oneof(
        fc.string({ maxLength: 20 }).map((s) => new Uint8Array(encodeString(s))),
        fc.uint8Array({ maxLength: 9 }),
      ),
    ),
    { maxLength: 4 },
  ),
  caType: fc.constantFrom('ssh-ed25519', 'ssh-rsa', ''),
  caKey: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 64 })),
  sigType: fc.constantFrom('ssh-ed25519', 'rsa-sha2-512'),
  sig: fc.oneof(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.uint8Array({ maxLength: 80 })),
  rawTail: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 8 })),
});

/** The certificate with some bytes of its blob overwritten, lengths kept. */
const flippedCertificate = fc
  .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
  .map((flips) => {
    const [type, data, ...rest] = certificate.split(' ');
    const blob = Buffer.from(data!, 'base64');
    for (const [at, byte] of flips) blob[at % blob.length] = byte;
    return [type, blob.toString('base64'), ...rest].join(' ');
  });

describe('access parsers under hostile input', () => {
  it('parseAuthorizedKeys — one entry per line, raw kept, keys fingerprinted; never throws', () => {
    fc.assert(
      fc.property(hostileText(AUTHORIZED_KEYS), (text) => {
        // authorized_keys is read from a server the caller does not control: it never throws.
        const lines = parseAuthorizedKeys(text);
        expectTypedOutcome(
          () => lines,
          (ls) => wellFormedLines(ls, text),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('parseAuthorizedKeys — comments and blank lines around keys change no key', () => {
    const noise = fc.array(
      fc.oneof(
        fc.constant(''),
        fc.constant('   \t'),
        fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => `# ${s.replace(/[\r\n]/g, ' ')}`),
      ),
      { maxLength: 4 },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(noise, fc.constantFrom(...KEY_LINES)), { maxLength: 6 }), (parts) => {
        const text = parts.flatMap(([n, key]) => [...n, key]).join('\n');
        const keys = parseAuthorizedKeys(text).filter((l) => l.kind === 'key');
        expect(keys.map((k) => `${k.keyType} ${k.keyBase64} ${k.comment}`)).toEqual(
          parts.map(([, key]) => key),
        );
      }),
      { numRuns: 100 },
    );
  });

  it('parsePublicKey — a public key or a ValidationError', () => {
    fc.assert(
      fc.property(hostileText(KEY_LINES), (text) =>
        expectTypedOutcome(
          () => parsePublicKey(text),
          (key) => expect(key.fingerprint).toMatch(/^SHA256:/),
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseCertificate — a certificate or a ValidationError, for hostile bytes in every field', () => {
    fc.assert(
      fc.property(
        fc.oneof(certFields.map(buildCertificate), flippedCertificate, hostileText([certificate])),
        (line) =>
          expectTypedOutcome(
            () => parseCertificate(line),
            (cert) => {
              expect(['user', 'host']).toContain(cert.type);
              expect(Number.isNaN(cert.validAfter.getTime())).toBe(false);
              expect(Number.isNaN(cert.validBefore.getTime())).toBe(false);
              expect(typeof cert.signatureValid).toBe('boolean');
            },
          ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseCertificate — a CA key of the wrong length is a ValidationError, not a crypto TypeError', () => {
    const fields: CertFields = {
      type: 'ssh-ed25519-cert-v01@openssh.com',
      serial: 1n,
      certType: 1,
      keyId: 'id',
      principals: ['deploy'],
      after: 0n,
      before: 1n << 40n,
      critical: [],
      caType: 'ssh-ed25519',
      caKey: new Uint8Array(32),
      sigType: 'ssh-ed25519',
      sig: new Uint8Array(64),
      rawTail: new Uint8Array(0),
    };
    expect(parseCertificate(buildCertificate(fields)).signatureValid).toBe(false);
    expect(() => parseCertificate(buildCertificate({ ...fields, caKey: new Uint8Array(5) }))).toThrow(
      ValidationError,
    );
  });

  it('parseSshdLog — events with a valid address, port and time; never throws on log content', () => {
    fc.assert(
      fc.property(
        hostileText(SSHD_LOG),
        fc.record({
          year: fc.integer({ min: 1970, max: 9999 }),
          timeZoneOffsetMinutes: fc.integer({ min: -1080, max: 1080 }),
        }),
        (text, options) => {
          for (const events of [parseSshdLog(text), parseSshdLog(text, options)]) {
            expectTypedOutcome(
              () => events,
              (es) => {
                for (const e of es) {
                  expect(Number.isInteger(e.port) && e.port >= 0 && e.port <= 65535).toBe(true);
                  expect(e.from).not.toBe('');
                  if (e.at !== undefined) expect(new Date(e.at).toISOString()).toBe(e.at);
                }
              },
            );
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('parseSshdVersion — a small version or undefined', () => {
    const banners = [
      'OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.15',
      'SSH-2.0-OpenSSH_8.0',
      'unknown option -- V\nOpenSSH_7.4p1, OpenSSL',
    ];
    fc.assert(
      fc.property(hostileText(banners), (text) =>
        expectTypedOutcome(
          () => parseSshdVersion(text),
          (v) => {
            if (v) for (const n of [v.major, v.minor, v.portable ?? 0]) expect(n >= 0 && n < 1000).toBe(true);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });
});
