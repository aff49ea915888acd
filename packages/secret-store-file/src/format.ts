/**
 * The on-disk format: names, sizes and the layout of `header.json` and of a `.secret` file. Only
 * pure functions here; encryption is in `crypto.ts`, file access in `files.ts`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

export const FORMAT = 'fleetward-secret-store';
export const VERSION = 1;
export const HEADER_FILE = 'header.json';
export const SECRET_FILE = /^[0-9a-f]{64}\.secret$/;
const SECRET_SUFFIX = '.secret';
const MAGIC = Buffer.from('FWSS', 'ascii');

export const KEY_BYTES = 32;
export const KEY_ID_BYTES = 8;
export const SALT_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const MAX_DATA_KEYS = 32;
export const MAX_REF_CHARS = 512;
const MAX_REF_BYTES = MAX_REF_CHARS * 4;
export const MAX_VALUE_BYTES = 1024 * 1024;
/** Magic, version, key id, ref length. */
const FIXED_PREFIX_BYTES = MAGIC.length + 1 + KEY_ID_BYTES + 2;
/** Enough of a secret file to read its ref without its body. */
export const MAX_PREFIX_BYTES = FIXED_PREFIX_BYTES + MAX_REF_BYTES;
export const MAX_SECRET_FILE_BYTES =
  FIXED_PREFIX_BYTES + MAX_REF_BYTES + NONCE_BYTES + MAX_VALUE_BYTES + TAG_BYTES;
export const MAX_HEADER_BYTES = 64 * 1024;
/** OWASP's recommended scrypt cost; ~0.5 s and 128 MiB, paid at open and at rotation only. */
export const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 } as const;

const Base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64');
const Base64Bytes = (min: number) =>
  Base64.refine((s) => Buffer.from(s, 'base64').length >= min, `must encode at least ${min} bytes`);
const KeyId = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits');

/** `header.json`: how the key is stretched, its check value, and the wrapped data keys. */
export const HeaderSchema = z
  .object({
    format: z.literal(FORMAT),
    version: z.literal(VERSION),
    kdf: z.discriminatedUnion('name', [
      z.object({ name: z.literal('raw') }).strict(),
      z
        .object({
          name: z.literal('scrypt'),
          N: z
            .number()
            .int()
            .min(2 ** 15)
            .max(2 ** 20)
            .refine((n) => (n & (n - 1)) === 0, 'must be a power of two'),
          r: z.number().int().min(8).max(16),
          p: z.number().int().min(1).max(16),
        })
        .strict(),
    ]),
    salt: Base64Bytes(16),
    check: Base64Bytes(KEY_BYTES),
    currentKey: KeyId,
    keys: z
      .array(z.object({ id: KeyId, wrapped: Base64 }).strict())
      .min(1)
      .max(MAX_DATA_KEYS),
  })
  .strict()
  .refine((h) => h.keys.some((k) => k.id === h.currentKey), 'currentKey must be one of keys')
  .refine((h) => new Set(h.keys.map((k) => k.id)).size === h.keys.length, 'key ids must be unique');
export type Header = z.infer<typeof HeaderSchema>;
export type Kdf = Header['kdf'];

/** The plaintext part of a secret file. */
export interface ParsedSecret {
  version: number;
  keyId: string;
  ref: string;
  /** Offset of the nonce: everything before it is the AAD. */
  aadEnd: number;
}

/** The file name of a ref: hashed, so that no ref can name a path outside the directory. */
export function secretFileName(ref: string): string {
  return (
    createHash('sha256').update(`${FORMAT}/v${VERSION}/ref\0`).update(ref, 'utf8').digest('hex') +
    SECRET_SUFFIX
  );
}

/**
 * The authenticated prefix of a secret file: magic, version, data-key id, u16 big-endian byte
 * length of the ref, the ref in UTF-8.
 */
export function secretFilePrefix(keyId: string, ref: string): Buffer {
  const refBytes = Buffer.from(ref, 'utf8');
  const aad = Buffer.alloc(FIXED_PREFIX_BYTES + refBytes.length);
  MAGIC.copy(aad, 0);
  aad.writeUInt8(VERSION, MAGIC.length);
  Buffer.from(keyId, 'hex').copy(aad, MAGIC.length + 1);
  aad.writeUInt16BE(refBytes.length, MAGIC.length + 1 + KEY_ID_BYTES);
  refBytes.copy(aad, FIXED_PREFIX_BYTES);
  return aad;
}

/**
 * Reads the plaintext part of a secret file; `undefined` when it is not one. With `needBody`, also
 * when it is too short to hold a nonce and a tag.
 */
export function parseSecret(bytes: Buffer, needBody: boolean): ParsedSecret | undefined {
  if (bytes.length < FIXED_PREFIX_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const version = bytes.readUInt8(MAGIC.length);
  const keyId = bytes.subarray(MAGIC.length + 1, MAGIC.length + 1 + KEY_ID_BYTES).toString('hex');
  const refLength = bytes.readUInt16BE(MAGIC.length + 1 + KEY_ID_BYTES);
  const aadEnd = FIXED_PREFIX_BYTES + refLength;
  if (refLength === 0 || refLength > MAX_REF_BYTES || bytes.length < aadEnd) return undefined;
  if (needBody && bytes.length < aadEnd + NONCE_BYTES + TAG_BYTES) return undefined;
  const ref = bytes.subarray(FIXED_PREFIX_BYTES, aadEnd).toString('utf8');
  return { version, keyId, ref, aadEnd };
}
