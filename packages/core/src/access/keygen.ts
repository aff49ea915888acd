import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { ValidationError } from '../errors.js';
import { fingerprintOf } from './authorized-keys.js';
import { encodeString, encodeUint32 } from './ssh-wire.js';

/** A fresh key pair in the formats OpenSSH reads. */
export interface GeneratedKeyPair {
  /** OpenSSH `openssh-key-v1` container, unencrypted, as `-----BEGIN OPENSSH PRIVATE KEY-----` PEM. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment` (no comment part when the comment is empty), no trailing newline. */
  publicKey: string;
  keyType: 'ssh-ed25519';
  keyBase64: string;
  /** `SHA256:…` as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const KEY_TYPE = 'ssh-ed25519';
const MAX_COMMENT = 256;
/** The cipher block size of `none`; the private section is padded to it. */
const BLOCK_SIZE = 8;
/** ssh-keygen wraps the base64 body at 70 columns. */
const PEM_WIDTH = 70;

/** C0 controls (tab excepted) and DEL: a line break would split the public key line, the rest garble it. */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}

function wrap(text: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += width) lines.push(text.slice(i, i + width));
  return lines.join('\n');
}

/**
 * Generates an Ed25519 key pair with node:crypto and writes the private key in OpenSSH's own
 * format (PROTOCOL.key): cipher and KDF `none`, one key, matching random check integers, the
 * comment, and padding bytes 1, 2, 3, … to the block size.
 * @throws ValidationError when `comment` has a control character (a line break would split the
 * public key line) or is longer than 256 characters.
 */
export function generateEd25519KeyPair(comment: string): GeneratedKeyPair {
  if (typeof comment !== 'string' || hasControlCharacter(comment) || comment.length > MAX_COMMENT) {
    throw new ValidationError('KeyPair', [
      {
        path: ['comment'],
        message: `must be at most ${MAX_COMMENT} characters without line breaks or control characters`,
      },
    ]);
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d ?? '', 'base64url');
  const publicBytes = Buffer.from(jwk.x ?? '', 'base64url');
  if (seed.length !== 32 || publicBytes.length !== 32) {
    throw new Error('node:crypto returned an Ed25519 key of unexpected length');
  }

  const publicBlob = Buffer.concat([encodeString(KEY_TYPE), encodeString(publicBytes)]);
  const check = randomBytes(4);
  // OpenSSH stores the Ed25519 secret as seed || public key.
  const secret = Buffer.concat([seed, publicBytes]);
  const section = [
    check,
    check,
    encodeString(KEY_TYPE),
    encodeString(publicBytes),
    encodeString(secret),
    encodeString(comment),
  ];
  let length = section.reduce((sum, part) => sum + part.length, 0);
  const padding: number[] = [];
  while (length % BLOCK_SIZE !== 0) {
    padding.push(padding.length + 1);
    length++;
  }
  section.push(Buffer.from(padding));
  const privateSection = Buffer.concat(section);
  const container = Buffer.concat([
    MAGIC,
    encodeString('none'),
    encodeString('none'),
    encodeString(Buffer.alloc(0)),
    encodeUint32(1),
    encodeString(publicBlob),
    encodeString(privateSection),
  ]);
  const pem = `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(container.toString('base64'), PEM_WIDTH)}\n-----END OPENSSH PRIVATE KEY-----\n`;
  // The secret is already in the PEM string; wiping the buffers keeps extra copies out of the heap.
  for (const buffer of [seed, secret, privateSection, container, ...section]) buffer.fill(0);

  const keyBase64 = publicBlob.toString('base64');
  return {
    privateKey: pem,
    publicKey: comment === '' ? `${KEY_TYPE} ${keyBase64}` : `${KEY_TYPE} ${keyBase64} ${comment}`,
    keyType: KEY_TYPE,
    keyBase64,
    fingerprint: fingerprintOf(keyBase64),
  };
}
