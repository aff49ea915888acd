/**
 * Keys and encryption: the caller's key or passphrase → (scrypt) → HKDF-SHA256 → a wrapping key
 * and a check value; random data keys wrapped under the wrapping key with AES-256-GCM; secrets
 * sealed under a data key with AES-256-GCM, their file prefix as AAD.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, hkdf, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { SecretStoreError } from './errors.js';
import {
  FORMAT,
  type Header,
  type Kdf,
  KEY_BYTES,
  KEY_ID_BYTES,
  NONCE_BYTES,
  type ParsedSecret,
  SCRYPT_DEFAULTS,
  secretFilePrefix,
  TAG_BYTES,
  VERSION,
} from './format.js';
import type { KeyInput } from './options.js';

/** What the caller's key or passphrase yields: the key that wraps data keys, and its check value. */
export interface DerivedKeys {
  wrapKey: Buffer;
  check: Buffer;
}

/** A data key and its id, as named in the header and in each secret file. */
export interface DataKey {
  id: string;
  key: Buffer;
}

function scryptKey(
  passphrase: string,
  salt: Buffer,
  kdf: { N: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((done, fail) => {
    // maxmem must exceed scrypt's 128·N·r working set, which Node's 32 MiB default does not.
    const maxmem = 256 * kdf.N * kdf.r;
    scrypt(passphrase, salt, KEY_BYTES, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem }, (error, key) =>
      error ? fail(error) : done(key),
    );
  });
}

function hkdfKey(ikm: Buffer, salt: Buffer, purpose: string): Promise<Buffer> {
  return new Promise((done, fail) => {
    hkdf('sha256', ikm, salt, `${FORMAT}/v${VERSION}/${purpose}`, KEY_BYTES, (error, key) =>
      error ? fail(error) : done(Buffer.from(key)),
    );
  });
}

/**
 * The wrapping key and check value of `input` under the header's KDF and salt.
 * @throws SecretStoreError `wrong-key` when the kind of key (raw or passphrase) is not the store's.
 */
export async function deriveKeys(input: KeyInput, kdf: Kdf, salt: Buffer): Promise<DerivedKeys> {
  if (input.kind === 'raw' && kdf.name !== 'raw') {
    throw new SecretStoreError('wrong-key', 'wrong key: this secret store is opened with a passphrase');
  }
  if (input.kind === 'passphrase' && kdf.name !== 'scrypt') {
    throw new SecretStoreError(
      'wrong-key',
      `wrong key: this secret store is opened with a ${KEY_BYTES}-byte key`,
    );
  }
  const ikm =
    input.kind === 'raw'
      ? input.key
      : await scryptKey(input.passphrase, salt, kdf as Exclude<Kdf, { name: 'raw' }>);
  try {
    return { wrapKey: await hkdfKey(ikm, salt, 'wrap'), check: await hkdfKey(ikm, salt, 'check') };
  } finally {
    if (input.kind === 'passphrase') ikm.fill(0);
  }
}

/** The KDF a new header gets for this kind of key. */
export function kdfFor(input: KeyInput): Kdf {
  return input.kind === 'raw' ? { name: 'raw' } : { name: 'scrypt', ...SCRYPT_DEFAULTS };
}

/** Whether `check` (derived from the caller's key) is the header's check value, in constant time. */
export function checkMatches(header: Header, check: Buffer): boolean {
  const stored = Buffer.from(header.check, 'base64');
  return stored.length === check.length && timingSafeEqual(stored, check);
}

/** A random data-key id that is not in `taken`. */
export function newKeyId(taken: ReadonlyMap<string, Buffer>): string {
  for (;;) {
    const id = randomBytes(KEY_ID_BYTES).toString('hex');
    if (!taken.has(id)) return id;
  }
}

function dataKeyAad(id: string): Buffer {
  return Buffer.from(`${FORMAT}/v${VERSION}/data-key/${id}`, 'utf8');
}

/** Nonce, ciphertext and tag of `dataKey` under `wrapKey`, in base64; its id is the AAD. */
export function wrapDataKey(wrapKey: Buffer, id: string, dataKey: Buffer): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', wrapKey, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(dataKeyAad(id));
  return Buffer.concat([nonce, cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]).toString(
    'base64',
  );
}

/**
 * Every data key of the header, by id.
 * @throws SecretStoreError `integrity` when one does not authenticate under `wrapKey`.
 */
export function unwrapDataKeys(directory: string, header: Header, wrapKey: Buffer): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const { id, wrapped } of header.keys) {
    const bytes = Buffer.from(wrapped, 'base64');
    try {
      if (bytes.length !== NONCE_BYTES + KEY_BYTES + TAG_BYTES)
        throw new Error('wrapped data key has a wrong length');
      const decipher = createDecipheriv('aes-256-gcm', wrapKey, bytes.subarray(0, NONCE_BYTES), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(dataKeyAad(id));
      decipher.setAuthTag(bytes.subarray(NONCE_BYTES + KEY_BYTES));
      keys.set(
        id,
        Buffer.concat([
          decipher.update(bytes.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES)),
          decipher.final(),
        ]),
      );
    } catch (cause) {
      throw new SecretStoreError(
        'integrity',
        `the header of the secret store in ${directory} is damaged: data key ${id} does not authenticate`,
        { cause },
      );
    }
  }
  return keys;
}

/** The bytes of a secret file holding `plaintext` under `ref`, encrypted with `dataKey`. */
export function seal(dataKey: DataKey, ref: string, plaintext: Buffer): Buffer {
  const aad = secretFilePrefix(dataKey.id, ref);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([aad, nonce, body, cipher.getAuthTag()]);
}

/** The value of a secret file, or throws when it does not authenticate under `dataKey`. */
export function unseal(dataKey: Buffer, bytes: Buffer, parsed: ParsedSecret): string {
  const nonceEnd = parsed.aadEnd + NONCE_BYTES;
  const decipher = createDecipheriv('aes-256-gcm', dataKey, bytes.subarray(parsed.aadEnd, nonceEnd), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(bytes.subarray(0, parsed.aadEnd));
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
  const plaintext = Buffer.concat([
    decipher.update(bytes.subarray(nonceEnd, bytes.length - TAG_BYTES)),
    decipher.final(),
  ]);
  try {
    return plaintext.toString('utf8');
  } finally {
    plaintext.fill(0);
  }
}
