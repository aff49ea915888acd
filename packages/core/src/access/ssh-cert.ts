import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import { ValidationError, type ValidationIssue } from '../errors.js';
import { fingerprintOf, parsePublicKey } from './authorized-keys.js';
import { encodeString, encodeUint32, WireFormatError, WireReader } from './ssh-wire.js';

/**
 * OpenSSH user certificates (PROTOCOL.certkeys), signed with node:crypto alone. A certificate
 * carries its own validity window, so sshd refuses it after `validBefore` whoever is still running.
 */

/** Plain key types a certificate can be made for, and the certificate type each becomes. */
const CERT_TYPES: Record<string, string> = {
  'ssh-ed25519': 'ssh-ed25519-cert-v01@openssh.com',
  'ssh-rsa': 'ssh-rsa-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256': 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'ecdsa-sha2-nistp384': 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521': 'ecdsa-sha2-nistp521-cert-v01@openssh.com',
  'sk-ssh-ed25519@openssh.com': 'sk-ssh-ed25519-cert-v01@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com': 'sk-ecdsa-sha2-nistp256-cert-v01@openssh.com',
};

/** Whether OpenSSH can certify a key of this type (all but DSA, which OpenSSH no longer accepts). */
export function canCertify(keyType: string): boolean {
  return Object.hasOwn(CERT_TYPES, keyType);
}

/** The extensions sshd knows (PROTOCOL.certkeys); anything else would be ignored, so it is refused. */
export const CERTIFICATE_EXTENSIONS = [
  'no-touch-required',
  'permit-X11-forwarding',
  'permit-agent-forwarding',
  'permit-port-forwarding',
  'permit-pty',
  'permit-user-rc',
] as const;
export type CertificateExtension = (typeof CERTIFICATE_EXTENSIONS)[number];

const SSH_USER_CERT = 1;
const SSH_HOST_CERT = 2;
const OPENSSH_PEM =
  /^-----BEGIN OPENSSH PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END OPENSSH PRIVATE KEY-----\s*$/;
const MAGIC = 'openssh-key-v1\0';
/** Printable ASCII without blanks or quotes: sshd logs the key ID in quotes. */
const KEY_ID = /^[\x21\x23-\x7e]{1,256}$/;
const SOURCE_ADDRESS = /^[0-9A-Fa-f.:/*,]{1,1024}$/;
const MAX_UINT64 = (1n << 64n) - 1n;

/** What {@link signUserCertificate} needs. */
export interface SignUserCertificateOptions {
  /**
   * The CA's Ed25519 private key: the unencrypted OpenSSH PEM that `generateEd25519KeyPair` and
   * `ssh-keygen -N ''` write, or a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
   */
  caPrivateKey: string;
  /** The user's public key line, `ssh-ed25519 AAAA… comment` (RSA, ECDSA and FIDO keys too). */
  publicKey: string;
  /** Logins the certificate is valid for; at least one (an empty list would mean "any"). */
  principals: string[];
  /** Logged by sshd on every login with the certificate; printable ASCII, no blanks or quotes. */
  keyId: string;
  /** @default 64 random bits */
  serial?: bigint;
  validAfter: Date;
  validBefore: Date;
  /** @default `['permit-pty']`: a terminal, no forwarding of any kind, no `~/.ssh/rc`. */
  extensions?: CertificateExtension[];
  /** The critical option `source-address`: a comma-separated list of addresses or CIDR blocks. */
  sourceAddress?: string;
}

/** A certificate as {@link parseCertificate} reads it. */
export interface ParsedCertificate {
  keyType: string;
  /** The certified key, `type base64` as in its `.pub` file. */
  publicKey: string;
  /** The certified key's fingerprint, as `ssh-keygen -l` prints it. */
  fingerprint: string;
  serial: bigint;
  type: 'user' | 'host';
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  criticalOptions: Record<string, string>;
  extensions: string[];
  /** The CA's public key, `type base64`. */
  signatureKey: string;
  /** Whether the signature verifies against `signatureKey` (Ed25519 CAs only; false otherwise). */
  signatureValid: boolean;
  comment: string;
}

function invalid(issues: ValidationIssue[]): never {
  throw new ValidationError('UserCertificate', issues);
}

function encodeUint64(value: bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(value);
  return out;
}

function seconds(date: Date, path: string): bigint {
  const ms = date instanceof Date ? date.getTime() : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0) invalid([{ path: [path], message: 'must be a valid date' }]);
  return BigInt(Math.floor(ms / 1000));
}

function ed25519FromRaw(seed: Buffer, publicBytes: Buffer): KeyObject {
  return createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: publicBytes.toString('base64url') },
    format: 'jwk',
  });
}

/** Reads an unencrypted, single-key `openssh-key-v1` container holding an Ed25519 key (PROTOCOL.key). */
function readOpenSshEd25519(pem: string): KeyObject {
  const m = OPENSSH_PEM.exec(pem.trim() + '\n');
  const container = m ? Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64') : Buffer.alloc(0);
  if (container.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) {
    invalid([{ path: ['caPrivateKey'], message: 'is not an OpenSSH private key' }]);
  }
  try {
    const reader = new WireReader(container.subarray(MAGIC.length));
    const cipher = reader.string().toString('latin1');
    const kdf = reader.string().toString('latin1');
    reader.string();
    if (cipher !== 'none' || kdf !== 'none') {
      invalid([{ path: ['caPrivateKey'], message: 'is encrypted; the CA key must be stored unencrypted' }]);
    }
    if (reader.uint32() !== 1) invalid([{ path: ['caPrivateKey'], message: 'must hold exactly one key' }]);
    reader.string();
    const section = new WireReader(reader.string());
    const check = section.uint32();
    if (check !== section.uint32()) {
      invalid([{ path: ['caPrivateKey'], message: 'check integers differ (corrupt key)' }]);
    }
    const type = section.string().toString('latin1');
    if (type !== 'ssh-ed25519') {
      invalid([{ path: ['caPrivateKey'], message: `must be an Ed25519 key, not ${type.slice(0, 64)}` }]);
    }
    const publicBytes = Buffer.from(section.string());
    const secret = section.string();
    if (publicBytes.length !== 32 || secret.length !== 64) {
      invalid([{ path: ['caPrivateKey'], message: 'Ed25519 key has the wrong length' }]);
    }
    return ed25519FromRaw(Buffer.from(secret.subarray(0, 32)), publicBytes);
  } catch (error) {
    if (error instanceof WireFormatError)
      invalid([{ path: ['caPrivateKey'], message: 'is truncated (corrupt key)' }]);
    throw error;
  }
}

function caKeyOf(caPrivateKey: string): KeyObject {
  if (typeof caPrivateKey !== 'string')
    invalid([{ path: ['caPrivateKey'], message: 'must be a PEM string' }]);
  if (caPrivateKey.includes('BEGIN OPENSSH PRIVATE KEY')) return readOpenSshEd25519(caPrivateKey);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: caPrivateKey, format: 'pem' });
  } catch {
    return invalid([
      { path: ['caPrivateKey'], message: 'is neither an OpenSSH nor a PKCS#8 PEM private key' },
    ]);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    invalid([{ path: ['caPrivateKey'], message: `must be an Ed25519 key, not ${key.asymmetricKeyType}` }]);
  }
  return key;
}

function ed25519PublicBlob(key: KeyObject): Buffer {
  const x = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x ?? '', 'base64url');
  return Buffer.concat([encodeString('ssh-ed25519'), encodeString(x)]);
}

/**
 * The public key line (`ssh-ed25519 AAAA…`, no comment) of an Ed25519 CA private key in either
 * format {@link signUserCertificate} accepts: what goes after `cert-authority` in authorized_keys
 * or into `TrustedUserCAKeys`.
 * @throws ValidationError when the key is not an unencrypted Ed25519 private key.
 */
export function certificateAuthorityPublicKey(caPrivateKey: string): string {
  return `ssh-ed25519 ${ed25519PublicBlob(caKeyOf(caPrivateKey)).toString('base64')}`;
}

/**
 * A certificate key ID that ties sshd's log line to the approval: `fleetward:<tenant>:<request>:<ticket>`,
 * with anything outside printable ASCII, blanks and quotes replaced by `_`, at most 256 characters.
 */
export function certificateKeyId(parts: { tenantId: string; requestId: string; ticket: string }): string {
  const text = `fleetward:${parts.tenantId}:${parts.requestId}:${parts.ticket}`;
  return text.replace(/[^\x21\x23-\x7e]/g, '_').slice(0, 256);
}

/**
 * Signs an OpenSSH user certificate for `publicKey` with an Ed25519 CA key and returns its
 * `…-cert.pub` line (`<type>-cert-v01@openssh.com base64 <keyId>`). Critical options are only
 * `source-address` when given; extensions default to `permit-pty`.
 * @throws ValidationError naming the field: an unreadable or non-Ed25519 CA key, a public key
 * that is malformed, already a certificate, or of a type OpenSSH cannot certify (`ssh-dss`), no
 * principals or one with a comma, blank or control character, a key ID outside printable ASCII,
 * `validBefore` not after `validAfter`, an unknown extension, a malformed `source-address`.
 */
export function signUserCertificate(options: SignUserCertificateOptions): string {
  const issues: ValidationIssue[] = [];
  const key = (() => {
    try {
      return parsePublicKey(options.publicKey);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      issues.push({ path: ['publicKey'], message: error.issues[0]?.message ?? 'is not a public key' });
      return undefined;
    }
  })();
  const certType = key ? CERT_TYPES[key.keyType] : undefined;
  if (key && !certType) {
    issues.push({
      path: ['publicKey'],
      message: key.keyType.includes('-cert-v01@')
        ? `is already a certificate (${key.keyType})`
        : `key type ${key.keyType} cannot be certified; use Ed25519, ECDSA or RSA`,
    });
  }
  const principals = Array.isArray(options.principals) ? options.principals : [];
  if (principals.length === 0 || principals.length > 256) {
    issues.push({ path: ['principals'], message: 'must list 1 to 256 logins (none would mean any login)' });
  }
  principals.forEach((p, i) => {
    if (typeof p !== 'string' || !/^[\x21-\x2b\x2d-\x7e]{1,256}$/.test(p)) {
      issues.push({ path: ['principals', i], message: 'must be printable ASCII without blanks or commas' });
    }
  });
  if (typeof options.keyId !== 'string' || !KEY_ID.test(options.keyId)) {
    issues.push({
      path: ['keyId'],
      message: 'must be 1-256 printable ASCII characters without blanks or quotes',
    });
  }
  const extensions = options.extensions ?? ['permit-pty'];
  extensions.forEach((e, i) => {
    if (!(CERTIFICATE_EXTENSIONS as readonly string[]).includes(e))
      issues.push({
        path: ['extensions', i],
        message: `unknown extension ${JSON.stringify(String(e).slice(0, 64))}`,
      });
  });
  if (options.sourceAddress !== undefined && !SOURCE_ADDRESS.test(options.sourceAddress)) {
    issues.push({
      path: ['sourceAddress'],
      message: 'must be a comma-separated list of addresses or CIDR blocks',
    });
  }
  const serial = options.serial ?? randomBytes(8).readBigUInt64BE();
  if (typeof serial !== 'bigint' || serial < 0n || serial > MAX_UINT64) {
    issues.push({ path: ['serial'], message: 'must be an unsigned 64-bit integer' });
  }
  if (issues.length) invalid(issues);
  const validAfter = seconds(options.validAfter, 'validAfter');
  const validBefore = seconds(options.validBefore, 'validBefore');
  if (validBefore <= validAfter)
    invalid([{ path: ['validBefore'], message: 'must be at least a second after validAfter' }]);
  const caKey = caKeyOf(options.caPrivateKey);

  // The certified key's fields are the plain key blob without its type string, copied verbatim.
  const plainBlob = Buffer.from(key!.keyBase64, 'base64');
  const keyFields = plainBlob.subarray(4 + plainBlob.readUInt32BE(0));
  const critical = options.sourceAddress
    ? Buffer.concat([encodeString('source-address'), encodeString(encodeString(options.sourceAddress))])
    : Buffer.alloc(0);
  // PROTOCOL.certkeys: extensions in lexical order, each with empty data.
  const extensionBytes = Buffer.concat(
    [...new Set(extensions)].sort().flatMap((name) => [encodeString(name), encodeString(Buffer.alloc(0))]),
  );
  const body = Buffer.concat([
    encodeString(certType!),
    encodeString(randomBytes(32)),
    keyFields,
    encodeUint64(serial),
    encodeUint32(SSH_USER_CERT),
    encodeString(options.keyId),
    encodeString(Buffer.concat(principals.map((p) => encodeString(p)))),
    encodeUint64(validAfter),
    encodeUint64(validBefore),
    encodeString(critical),
    encodeString(extensionBytes),
    encodeString(Buffer.alloc(0)),
    encodeString(ed25519PublicBlob(caKey)),
  ]);
  const signature = Buffer.concat([encodeString('ssh-ed25519'), encodeString(sign(null, body, caKey))]);
  const blob = Buffer.concat([body, encodeString(signature)]);
  return `${certType} ${blob.toString('base64')} ${options.keyId}`;
}

function readStringList(data: Buffer): string[] {
  const reader = new WireReader(data);
  const out: string[] = [];
  while (!reader.done()) out.push(reader.string().toString('utf8'));
  return out;
}

function readOptions(data: Buffer): [string, Buffer][] {
  const reader = new WireReader(data);
  const out: [string, Buffer][] = [];
  while (!reader.done()) out.push([reader.string().toString('utf8'), reader.string()]);
  return out;
}

function dateOf(value: bigint): Date {
  // sshd reads 0xffffffffffffffff as "forever"; clamp beyond what a Date holds.
  const ms = value > 8_640_000_000_000n ? 8_640_000_000_000_000 : Number(value) * 1000;
  return new Date(ms);
}

/**
 * Reads a `…-cert.pub` line (any key type) and checks an Ed25519 CA's signature.
 * @throws ValidationError when the line is not a well-formed OpenSSH certificate.
 */
export function parseCertificate(line: string): ParsedCertificate {
  const key = parsePublicKey(line);
  const plainType = Object.entries(CERT_TYPES).find(([, cert]) => cert === key.keyType)?.[0];
  if (!plainType) invalid([{ path: ['keyType'], message: `${key.keyType} is not a certificate type` }]);
  const blob = Buffer.from(key.keyBase64, 'base64');
  try {
    const reader = new WireReader(blob);
    reader.string();
    reader.string();
    const fieldsStart = reader.position;
    // The certified key's fields differ by type; parsePublicKey already checked them, so skip by count.
    const fieldCount =
      plainType === 'ssh-rsa'
        ? 2
        : plainType.startsWith('ecdsa')
          ? 2
          : plainType.startsWith('sk-ecdsa')
            ? 3
            : plainType.startsWith('sk-')
              ? 2
              : 1;
    for (let i = 0; i < fieldCount; i++) reader.string();
    const plainBlob = Buffer.concat([encodeString(plainType), blob.subarray(fieldsStart, reader.position)]);
    const serial = reader.uint64();
    const type = reader.uint32();
    const keyId = reader.string().toString('utf8');
    const principals = readStringList(reader.string());
    const validAfter = dateOf(reader.uint64());
    const validBefore = dateOf(reader.uint64());
    const criticalOptions = Object.fromEntries(
      readOptions(reader.string()).map(([name, data]) => [
        name,
        data.length ? new WireReader(data).string().toString('utf8') : '',
      ]),
    );
    const extensions = readOptions(reader.string()).map(([name]) => name);
    reader.string();
    const signatureKey = reader.string();
    const signedLength = reader.position;
    const signature = new WireReader(reader.string());
    if (!reader.done()) invalid([{ path: ['keyBase64'], message: 'certificate has trailing bytes' }]);
    const sigType = signature.string().toString('latin1');
    const sigBytes = signature.string();
    const caType = new WireReader(signatureKey).string().toString('latin1');
    let signatureValid = false;
    if (caType === 'ssh-ed25519' && sigType === 'ssh-ed25519') {
      const caRaw = new WireReader(signatureKey);
      caRaw.string();
      const x = caRaw.string();
      // node:crypto throws a TypeError for a key of the wrong size: that is a malformed certificate.
      if (x.length !== 32 || !caRaw.done()) {
        invalid([{ path: ['keyBase64'], message: 'certificate CA key is not a 32-byte Ed25519 key' }]);
      }
      const caPublic = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(x).toString('base64url') },
        format: 'jwk',
      });
      signatureValid = verify(null, blob.subarray(0, signedLength), caPublic, sigBytes);
    }
    if (type !== SSH_USER_CERT && type !== SSH_HOST_CERT)
      invalid([{ path: ['keyBase64'], message: `unknown certificate type ${type}` }]);
    return {
      keyType: key.keyType,
      publicKey: `${plainType} ${plainBlob.toString('base64')}`,
      fingerprint: fingerprintOf(plainBlob.toString('base64')),
      serial,
      type: type === SSH_USER_CERT ? 'user' : 'host',
      keyId,
      principals,
      validAfter,
      validBefore,
      criticalOptions,
      extensions,
      signatureKey: `${caType} ${signatureKey.toString('base64')}`,
      signatureValid,
      comment: key.comment,
    };
  } catch (error) {
    if (error instanceof WireFormatError)
      invalid([{ path: ['keyBase64'], message: 'certificate is truncated' }]);
    throw error;
  }
}
