/**
 * A {@link SecretStore} that keeps each secret in its own encrypted file in one directory.
 *
 * **Threat model.** It protects secrets at rest: a copied directory, a backup, a stolen disk or
 * another unprivileged user on the host learns nothing about the values without the key. It
 * detects (and refuses to return) a secret file that was modified, truncated, swapped with
 * another or renamed. It does not protect against anyone who has the key or passphrase, root, or
 * code running as the service user while the process runs (the unwrapped keys live in its memory).
 * Refs are names, not secrets (see the port): they are stored in plaintext so that `list` works
 * without decrypting, and `list` does not authenticate them (`get` does).
 *
 * **Layout.** `header.json` (the key check value, the KDF parameters and the data keys wrapped
 * under the key or passphrase), one `<sha256 of ref>.secret` per secret, and `.tmp-*` files that
 * exist only while a write is in flight. The directory must be owned by this uid and have no
 * group or other permission bits; files are created 0600.
 *
 * **Keys.** The caller's 32-byte key, or scrypt (N=2^17, r=8, p=1, the parameters kept in the
 * header) of the NFC-normalised passphrase, is the input of HKDF-SHA256 (salt from the header)
 * giving a wrapping key and a check value. A wrong key is told apart from damage by the check
 * value. Secrets are encrypted with a random 256-bit data key, wrapped with AES-256-GCM.
 *
 * **Secret file** (version 1): `"FWSS"`, version byte, 8-byte data-key id, u16 big-endian byte
 * length of the ref, the ref (UTF-8), a random 96-bit nonce, the AES-256-GCM ciphertext of the
 * value (UTF-8), the 16-byte tag. Everything before the nonce is the AAD, so the ref, the format
 * version and the key id are authenticated; `get` also checks that the file's name is the hash of
 * the ref it asked for, so a file moved under another ref's name is refused.
 *
 * **Durability.** Every write goes to a fresh 0600 temp file in the directory, is fsynced, renamed
 * over the old file and the directory fsynced: a crash leaves the old or the new value, never a torn
 * one. Temp files are ignored; `openFileSecretStore` removes those whose writer is dead (same host)
 * or that are older than ten minutes.
 *
 * **Concurrency.** Within a store object, operations on one ref run one at a time, in call order.
 * Several processes (or store objects) may share the directory: the last writer of a ref wins.
 * Every operation first checks whether `header.json` changed and refuses once another process has
 * rotated the key.
 *
 * **Rotation.** `rotateKey` writes a header holding a new data key and every old data key, all
 * wrapped under the new key: from that atomic rename on, only the new key opens the store. It then
 * re-encrypts every secret under the new data key and drops the old data keys from the header. A
 * crash in between leaves a store that the new key opens; the next open finishes the rotation.
 * Stop other processes that use the directory while rotating: a write they have in flight at the
 * moment of the switch can land under the old data key after the sweep passed it.
 *
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdf,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, type FileHandle, lstat, mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import {
  FleetwardError,
  type FleetwardErrorOptions,
  ValidationError,
  type ValidationIssue,
} from '../errors.js';
import type { SecretStore } from '../ports/secret-store.js';
import { openFolder, UnsafePathError, writeFileInFolder } from '../util/safe-fs.js';

/** Why a {@link FileSecretStore} operation failed. */
export type SecretStoreFailure =
  /** The key or passphrase does not open this store. */
  | 'wrong-key'
  /** Another process rotated the key since this store object was opened: reopen with the new key. */
  | 'key-rotated'
  /** A file failed authentication, is malformed, or does not belong to the ref it is stored under. */
  | 'integrity'
  /** The directory is not a directory, belongs to another user or is accessible by group or others. */
  | 'unsafe-directory'
  /** The header or a secret file has a format version this code does not know. */
  | 'unsupported-format'
  /** The file system refused an operation. */
  | 'io';

/**
 * A secret store operation failed. The message names the ref (refs are names, not secrets) and
 * never a value, a key or a passphrase.
 */
export class SecretStoreError extends FleetwardError {
  readonly reason: SecretStoreFailure;
  /** The ref the operation was about, when there was one. */
  readonly ref: string | undefined;

  constructor(
    reason: SecretStoreFailure,
    message: string,
    options: FleetwardErrorOptions & { ref?: string } = {},
  ) {
    const { ref, ...rest } = options;
    const callerFault = reason === 'wrong-key' || reason === 'key-rotated' || reason === 'unsafe-directory';
    super('STORE_FAILED', message, {
      fault: callerFault ? 'caller' : 'internal',
      retryable: false,
      ...rest,
      details: { ...rest.details, reason, ...(ref === undefined ? {} : { ref }) },
    });
    this.reason = reason;
    this.ref = ref;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: this.reason, ref: this.ref };
  }
}

/** Options of {@link openFileSecretStore}. */
export interface FileSecretStoreOptions {
  /**
   * Directory that holds the secrets; created 0700 if missing; refused if group/world accessible
   * or not owned by this uid. Its parent should be writable by the service user only.
   */
  directory: string;
  /**
   * Either a 32-byte key (e.g. from a KMS or `randomBytes(32)`), or a passphrase (>= 12
   * characters) stretched with scrypt. A store keeps the kind it was created with until
   * {@link FileSecretStore.rotateKey} changes it.
   */
  key: Buffer | { passphrase: string };
}

const FORMAT = 'fleetward-secret-store';
const VERSION = 1;
const MAGIC = Buffer.from('FWSS', 'ascii');
const HEADER_FILE = 'header.json';
const SECRET_SUFFIX = '.secret';
const SECRET_FILE = /^[0-9a-f]{64}\.secret$/;
const TEMP_PREFIX = '.tmp-';
const TEMP_FILE = /^\.tmp-([0-9a-f]{8})-(\d+)-[0-9a-f]+$/;
const STALE_TEMP_MS = 10 * 60_000;

const KEY_BYTES = 32;
const KEY_ID_BYTES = 8;
const SALT_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MAX_DATA_KEYS = 32;
const MAX_REF_CHARS = 512;
const MAX_REF_BYTES = MAX_REF_CHARS * 4;
const MAX_VALUE_BYTES = 1024 * 1024;
const MIN_PASSPHRASE_CHARS = 12;
const MAX_PASSPHRASE_CHARS = 1024;
/** Magic, version, key id, ref length. */
const FIXED_PREFIX_BYTES = MAGIC.length + 1 + KEY_ID_BYTES + 2;
const MAX_PREFIX_BYTES = FIXED_PREFIX_BYTES + MAX_REF_BYTES;
const MAX_SECRET_FILE_BYTES = FIXED_PREFIX_BYTES + MAX_REF_BYTES + NONCE_BYTES + MAX_VALUE_BYTES + TAG_BYTES;
const MAX_HEADER_BYTES = 64 * 1024;
/** OWASP's recommended scrypt cost; ~0.5 s and 128 MiB, paid at open and at rotation only. */
const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 } as const;
/** Writes of secrets in flight at once during a rotation sweep. */
const SWEEP_CONCURRENCY = 8;

const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const LONE_SURROGATE = /\p{Cs}/u;
const POSIX = process.platform !== 'win32';
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const NONBLOCK = constants.O_NONBLOCK ?? 0;

const Base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64');
const Base64Bytes = (min: number) =>
  Base64.refine((s) => Buffer.from(s, 'base64').length >= min, `must encode at least ${min} bytes`);
const KeyId = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits');
const HeaderSchema = z
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
type Header = z.infer<typeof HeaderSchema>;
type Kdf = Header['kdf'];

type KeyInput = { kind: 'raw'; key: Buffer } | { kind: 'passphrase'; passphrase: string };

interface DerivedKeys {
  wrapKey: Buffer;
  check: Buffer;
}

/** Everything a store object knows about its directory; replaced when the header changes. */
interface StoreState {
  directory: string;
  header: Header;
  wrapKey: Buffer;
  check: Buffer;
  keys: Map<string, Buffer>;
  /** Identity of the header file these keys came from: inode, size and mtime. */
  headerSignature: string;
}

interface ParsedSecret {
  version: number;
  keyId: string;
  ref: string;
  /** Offset of the nonce: everything before it is the AAD. */
  aadEnd: number;
}

function secretIssue(path: (string | number)[], message: string): ValidationIssue {
  return { path, message };
}

/** Describes a bad ref or prefix without echoing it: it may be 10 kB or carry terminal escapes. */
function refProblem(ref: unknown, allowEmpty: boolean): string | undefined {
  if (typeof ref !== 'string') return 'must be a string';
  const chars = [...ref].length;
  if (chars > MAX_REF_CHARS || (!allowEmpty && chars === 0)) {
    return `must be ${allowEmpty ? 0 : 1} to ${MAX_REF_CHARS} characters (got ${chars})`;
  }
  const bad = UNPRINTABLE.exec(ref);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `must be printable: U+${code} at index ${bad.index} is a control, format, separator or lone surrogate character`;
  }
  return undefined;
}

function validateRef(ref: unknown): string {
  const problem = refProblem(ref, false);
  if (problem) throw new ValidationError('secret ref', [secretIssue(['ref'], problem)]);
  return ref as string;
}

function validatePrefix(prefix: unknown): string {
  const problem = refProblem(prefix, true);
  if (problem) throw new ValidationError('secret ref prefix', [secretIssue(['prefix'], problem)]);
  return prefix as string;
}

function validateValue(ref: string, value: unknown): Buffer {
  const subject = `secret ${JSON.stringify(ref)}`;
  if (typeof value !== 'string') {
    throw new ValidationError(subject, [secretIssue(['value'], 'must be a string')]);
  }
  // UTF-8 would turn a lone surrogate into U+FFFD: the value read back would differ silently.
  if (LONE_SURROGATE.test(value)) {
    throw new ValidationError(subject, [
      secretIssue(['value'], 'must be well-formed Unicode (it contains a lone surrogate)'),
    ]);
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_VALUE_BYTES) {
    throw new ValidationError(subject, [
      secretIssue(['value'], `must be at most ${MAX_VALUE_BYTES} bytes of UTF-8 (got ${bytes})`),
    ]);
  }
  return Buffer.from(value, 'utf8');
}

function validateKey(key: unknown, path: string[]): KeyInput {
  if (key instanceof Uint8Array) {
    if (key.length !== KEY_BYTES) {
      throw new ValidationError('secret store key', [
        secretIssue(path, `must be exactly ${KEY_BYTES} bytes (got ${key.length})`),
      ]);
    }
    if (key.every((b) => b === 0)) {
      throw new ValidationError('secret store key', [
        secretIssue(path, 'must not be all zeros (an uninitialised buffer?)'),
      ]);
    }
    // A copy: the caller may zero or reuse its buffer.
    return { kind: 'raw', key: Buffer.from(key) };
  }
  const passphrase = (key as { passphrase?: unknown } | null | undefined)?.passphrase;
  if (typeof passphrase !== 'string') {
    throw new ValidationError('secret store key', [
      secretIssue(path, `must be a ${KEY_BYTES}-byte Buffer or { passphrase: string }`),
    ]);
  }
  const normalised = passphrase.normalize('NFC');
  const chars = [...normalised].length;
  if (chars < MIN_PASSPHRASE_CHARS || chars > MAX_PASSPHRASE_CHARS) {
    throw new ValidationError('secret store key', [
      secretIssue(
        [...path, 'passphrase'],
        `must be ${MIN_PASSPHRASE_CHARS} to ${MAX_PASSPHRASE_CHARS} characters (got ${chars})`,
      ),
    ]);
  }
  return { kind: 'passphrase', passphrase: normalised };
}

function validateOptions(options: unknown): { directory: string; key: KeyInput } {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('FileSecretStoreOptions', [secretIssue([], 'must be an object')]);
  }
  const { directory, key } = options as { directory?: unknown; key?: unknown };
  if (typeof directory !== 'string' || directory.length === 0 || directory.includes('\0')) {
    throw new ValidationError('FileSecretStoreOptions', [
      secretIssue(['directory'], 'must be a non-empty path without NUL'),
    ]);
  }
  return { directory: resolve(directory), key: validateKey(key, ['key']) };
}

/** The file name of a ref: hashed, so that no ref can name a path outside the directory. */
function secretFileName(ref: string): string {
  return (
    createHash('sha256').update(`${FORMAT}/v${VERSION}/ref\0`).update(ref, 'utf8').digest('hex') +
    SECRET_SUFFIX
  );
}

function keyIdBytes(id: string): Buffer {
  return Buffer.from(id, 'hex');
}

function newKeyId(taken: ReadonlyMap<string, Buffer>): string {
  for (;;) {
    const id = randomBytes(KEY_ID_BYTES).toString('hex');
    if (!taken.has(id)) return id;
  }
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

async function deriveKeys(input: KeyInput, kdf: Kdf, salt: Buffer): Promise<DerivedKeys> {
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

function kdfFor(input: KeyInput): Kdf {
  return input.kind === 'raw' ? { name: 'raw' } : { name: 'scrypt', ...SCRYPT_DEFAULTS };
}

function dataKeyAad(id: string): Buffer {
  return Buffer.from(`${FORMAT}/v${VERSION}/data-key/${id}`, 'utf8');
}

function wrapDataKey(wrapKey: Buffer, id: string, dataKey: Buffer): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', wrapKey, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(dataKeyAad(id));
  return Buffer.concat([nonce, cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]).toString(
    'base64',
  );
}

function unwrapDataKeys(directory: string, header: Header, wrapKey: Buffer): Map<string, Buffer> {
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

function seal(state: StoreState, ref: string, plaintext: Buffer): Buffer {
  const keyId = state.header.currentKey;
  const dataKey = state.keys.get(keyId)!;
  const refBytes = Buffer.from(ref, 'utf8');
  const aad = Buffer.alloc(FIXED_PREFIX_BYTES + refBytes.length);
  MAGIC.copy(aad, 0);
  aad.writeUInt8(VERSION, MAGIC.length);
  keyIdBytes(keyId).copy(aad, MAGIC.length + 1);
  aad.writeUInt16BE(refBytes.length, MAGIC.length + 1 + KEY_ID_BYTES);
  refBytes.copy(aad, FIXED_PREFIX_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([aad, nonce, body, cipher.getAuthTag()]);
}

/** Reads the plaintext part of a secret file; `undefined` when it is not one. */
function parseSecret(bytes: Buffer, needBody: boolean): ParsedSecret | undefined {
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

/** The value of a secret file, or throws when it does not authenticate under `dataKey`. */
function unseal(dataKey: Buffer, bytes: Buffer, parsed: ParsedSecret): string {
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

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Our own errors pass through; anything else (a file system error) becomes an `io` failure. */
function ioError(message: string, cause: unknown, ref?: string): FleetwardError {
  if (cause instanceof FleetwardError) return cause;
  return new SecretStoreError('io', message, { cause, ...(ref === undefined ? {} : { ref }) });
}

async function syncDirectory(directory: string): Promise<void> {
  // Windows cannot open a directory for fsync; NTFS journals renames itself.
  if (!POSIX) return;
  const handle = await open(directory, constants.O_RDONLY | (constants.O_DIRECTORY ?? 0));
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

function tempFileName(): string {
  return `${TEMP_PREFIX}${HOST_TAG}-${process.pid}-${randomBytes(8).toString('hex')}`;
}

function signatureOf(stats: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/**
 * Writes `bytes` as `name` in `directory` through a synced 0600 temp file, never through a link
 * (see {@link writeFileInFolder}: a link planted at `name` is refused with an UnsafePathError).
 * With `replace: false` an existing file wins (link fails with EEXIST) and `undefined` is returned.
 * Returns the signature of the written file.
 */
async function writeFileAtomic(
  directory: string,
  name: string,
  bytes: Buffer,
  options: { replace: boolean; syncDirectory: boolean },
): Promise<string | undefined> {
  const folder = await openFolder(directory);
  try {
    const stats = await writeFileInFolder(folder, name, bytes, {
      mode: 0o600,
      // The umask may have taken bits away; the owner must still be able to read it back.
      exactMode: true,
      replace: options.replace,
      syncFolder: options.syncDirectory,
      tempName: tempFileName(),
    });
    return stats && signatureOf(stats);
  } catch (error) {
    // Something planted where a store file goes is tampering with the store, not bad input.
    if (error instanceof UnsafePathError) {
      throw new SecretStoreError(
        'integrity',
        `${error.filePath} is not a file of the store: ${error.reason}`,
        {
          cause: error,
        },
      );
    }
    throw error;
  } finally {
    await folder.close();
  }
}

/**
 * Reads a regular file of at most `max` bytes (or its first `limit` bytes), refusing symlinks and
 * never blocking on a FIFO. `undefined` when it does not exist.
 */
async function readRegularFile(
  path: string,
  max: number,
  limit?: number,
): Promise<{ bytes: Buffer; signature: string } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | NOFOLLOW | NONBLOCK);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    if (errorCode(error) === 'ELOOP') throw new Error(`${path} is a symbolic link`);
    throw error;
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw new Error(`${path} is not a regular file`);
    if (stats.size > BigInt(max)) throw new Error(`${path} is larger than ${max} bytes`);
    const length = Math.min(Number(stats.size), limit ?? max);
    const bytes = Buffer.alloc(length);
    let offset = 0;
    while (offset < length) {
      const { bytesRead } = await handle.read(bytes, offset, length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return { bytes: bytes.subarray(0, offset), signature: signatureOf(stats) };
  } finally {
    await handle.close();
  }
}

async function readHeader(directory: string): Promise<{ header: Header; signature: string } | undefined> {
  const path = join(directory, HEADER_FILE);
  let file: Awaited<ReturnType<typeof readRegularFile>>;
  try {
    file = await readRegularFile(path, MAX_HEADER_BYTES);
  } catch (cause) {
    throw new SecretStoreError('integrity', `cannot read the header ${path}`, { cause });
  }
  if (!file) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(file.bytes.toString('utf8'));
  } catch (cause) {
    throw new SecretStoreError('integrity', `the header ${path} is not JSON`, { cause });
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (version !== VERSION || (json as { format?: unknown }).format !== FORMAT) {
    throw new SecretStoreError(
      'unsupported-format',
      `the header ${path} is not a ${FORMAT} version ${VERSION} header (version ${JSON.stringify(version)})`,
    );
  }
  const parsed = HeaderSchema.safeParse(json);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new SecretStoreError('integrity', `the header ${path} is malformed: ${where}`);
  }
  return { header: parsed.data, signature: file.signature };
}

async function writeHeader(directory: string, header: Header, replace: boolean): Promise<string | undefined> {
  const bytes = Buffer.from(`${JSON.stringify(header, null, 2)}\n`, 'utf8');
  return writeFileAtomic(directory, HEADER_FILE, bytes, { replace, syncDirectory: true });
}

async function secretFileNames(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => SECRET_FILE.test(name));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/** Removes temp files whose writer died: a crash between create and rename leaves them behind. */
async function removeAbandonedTempFiles(directory: string): Promise<void> {
  for (const name of await readdir(directory)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const path = join(directory, name);
    const stats = await lstat(path).catch(() => undefined);
    if (!stats) continue;
    const match = TEMP_FILE.exec(name);
    const pid = match ? Number(match[2]) : undefined;
    const writerDead = match?.[1] === HOST_TAG && pid !== process.pid && !processAlive(pid!);
    if (writerDead || Date.now() - stats.mtimeMs > STALE_TEMP_MS) await unlink(path).catch(() => undefined);
  }
}

async function prepareDirectory(directory: string): Promise<void> {
  let created: string | undefined;
  try {
    created = await mkdir(directory, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new SecretStoreError('unsafe-directory', `cannot create the secret store directory ${directory}`, {
      cause,
    });
  }
  if (created !== undefined) {
    // mkdir's mode passes through the umask; an odd umask must not leave it unreadable to us.
    await chmod(directory, 0o700);
    // Each new directory's entry lives in its parent: sync every level that mkdir created.
    for (let level = directory; ; level = dirname(level)) {
      await syncDirectory(dirname(level));
      if (level === created) break;
    }
  }
  const stats = await stat(directory);
  if (!stats.isDirectory()) {
    throw new SecretStoreError('unsafe-directory', `the secret store path ${directory} is not a directory`);
  }
  if (!POSIX) return;
  const uid = process.getuid!();
  if (stats.uid !== uid) {
    throw new SecretStoreError(
      'unsafe-directory',
      `the secret store directory ${directory} belongs to uid ${stats.uid}, not to this process (uid ${uid})`,
    );
  }
  if ((stats.mode & 0o077) !== 0) {
    const mode = (stats.mode & 0o777).toString(8).padStart(4, '0');
    throw new SecretStoreError(
      'unsafe-directory',
      `the secret store directory ${directory} has mode ${mode}: group and others must have no access (chmod 700)`,
    );
  }
}

async function createHeader(
  directory: string,
  input: KeyInput,
): Promise<{ header: Header; signature: string; derived: DerivedKeys } | undefined> {
  const existing = await secretFileNames(directory);
  if (existing.length > 0) {
    throw new SecretStoreError(
      'integrity',
      `${join(directory, HEADER_FILE)} is missing but the directory holds ${existing.length} secret file(s): restore the header from a backup (the secrets cannot be decrypted without it)`,
    );
  }
  const salt = randomBytes(SALT_BYTES);
  const kdf = kdfFor(input);
  const derived = await deriveKeys(input, kdf, salt);
  const id = randomBytes(KEY_ID_BYTES).toString('hex');
  const dataKey = randomBytes(KEY_BYTES);
  const header: Header = {
    format: FORMAT,
    version: VERSION,
    kdf,
    salt: salt.toString('base64'),
    check: derived.check.toString('base64'),
    currentKey: id,
    keys: [{ id, wrapped: wrapDataKey(derived.wrapKey, id, dataKey) }],
  };
  dataKey.fill(0);
  // link, not rename: two processes creating the store at once must not both win.
  const signature = await writeHeader(directory, header, false);
  return signature === undefined ? undefined : { header, signature, derived };
}

function checkMatches(header: Header, check: Buffer): boolean {
  const stored = Buffer.from(header.check, 'base64');
  return stored.length === check.length && timingSafeEqual(stored, check);
}

async function unlock(directory: string, header: Header, input: KeyInput): Promise<DerivedKeys> {
  const derived = await deriveKeys(input, header.kdf, Buffer.from(header.salt, 'base64'));
  if (!checkMatches(header, derived.check)) {
    throw new SecretStoreError('wrong-key', `wrong key or passphrase for the secret store in ${directory}`);
  }
  return derived;
}

/** Re-reads the header when another process replaced it; refuses once the key is not ours any more. */
async function refreshHeader(state: StoreState): Promise<void> {
  const path = join(state.directory, HEADER_FILE);
  let stats: { ino: bigint; size: bigint; mtimeNs: bigint };
  try {
    stats = await lstat(path, { bigint: true });
  } catch (cause) {
    throw new SecretStoreError('integrity', `the header ${path} has disappeared`, { cause });
  }
  if (signatureOf(stats) === state.headerSignature) return;
  const loaded = await readHeader(state.directory);
  if (!loaded) throw new SecretStoreError('integrity', `the header ${path} has disappeared`);
  if (!checkMatches(loaded.header, state.check)) {
    throw new SecretStoreError(
      'key-rotated',
      `the key of the secret store in ${state.directory} was rotated by another process: open it again with the new key`,
    );
  }
  state.keys = unwrapDataKeys(state.directory, loaded.header, state.wrapKey);
  state.header = loaded.header;
  state.headerSignature = loaded.signature;
}

/**
 * Moves one secret file under the current data key. Returns what to report when it cannot: the ref
 * when the file names one, else the file name.
 */
async function reencryptOne(state: StoreState, name: string): Promise<string | undefined> {
  const path = join(state.directory, name);
  let file: Awaited<ReturnType<typeof readRegularFile>>;
  try {
    file = await readRegularFile(path, MAX_SECRET_FILE_BYTES);
  } catch {
    return name;
  }
  if (!file) return undefined;
  const parsed = parseSecret(file.bytes, true);
  if (!parsed || parsed.version !== VERSION) return name;
  if (parsed.keyId === state.header.currentKey) return undefined;
  const dataKey = state.keys.get(parsed.keyId);
  if (!dataKey || secretFileName(parsed.ref) !== name) return JSON.stringify(parsed.ref);
  let plaintext: Buffer;
  try {
    plaintext = Buffer.from(unseal(dataKey, file.bytes, parsed), 'utf8');
  } catch {
    return JSON.stringify(parsed.ref);
  }
  try {
    await writeFileAtomic(state.directory, name, seal(state, parsed.ref, plaintext), {
      replace: true,
      syncDirectory: false,
    });
  } finally {
    plaintext.fill(0);
  }
  return undefined;
}

/**
 * Re-encrypts every secret still under a retired data key, then drops the retired keys that no
 * file refers to any more. Returns the secrets it could not move. A file that could not be moved
 * keeps its key in the header, so that a file swapped back or restored stays readable.
 */
async function reencryptRetired(state: StoreState): Promise<string[]> {
  const { directory } = state;
  const names = await secretFileNames(directory);
  const problems: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const problem = await reencryptOne(state, names[next++]!);
      if (problem !== undefined) problems.push(problem);
    }
  };
  await Promise.all(Array.from({ length: SWEEP_CONCURRENCY }, worker));
  // A fresh listing: a file another process wrote under a retired key during the sweep keeps it.
  const stillUsed = new Set<string>([state.header.currentKey]);
  for (const name of await secretFileNames(directory)) {
    const file = await readRegularFile(join(directory, name), MAX_SECRET_FILE_BYTES, MAX_PREFIX_BYTES).catch(
      () => undefined,
    );
    const parsed = file ? parseSecret(file.bytes, false) : undefined;
    if (parsed && state.keys.has(parsed.keyId)) stillUsed.add(parsed.keyId);
  }
  if (stillUsed.size < state.header.keys.length) {
    // The sweep's renames must be on disk before the keys that can read the old files are gone.
    await syncDirectory(directory);
    const header: Header = { ...state.header, keys: state.header.keys.filter((k) => stillUsed.has(k.id)) };
    state.headerSignature = (await writeHeader(directory, header, true))!;
    state.header = header;
    for (const [id, key] of state.keys) {
      if (!stillUsed.has(id)) {
        key.fill(0);
        state.keys.delete(id);
      }
    }
  }
  return problems;
}

/** Runs tasks with the same key one at a time, in call order. */
class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const tail = previous.then(() => new Promise<void>((done) => (release = done)));
    this.#tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/** Many shared holders or one exclusive holder; a waiting exclusive holder keeps new shared ones out. */
class SharedExclusiveLock {
  #shared = 0;
  #exclusive: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  async shared<T>(task: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    this.#shared++;
    try {
      return await task();
    } finally {
      this.#shared--;
      if (this.#shared === 0) this.#drained?.();
    }
  }

  async exclusive<T>(task: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    let release!: () => void;
    this.#exclusive = new Promise<void>((done) => (release = done));
    try {
      if (this.#shared > 0) await new Promise<void>((done) => (this.#drained = done));
      this.#drained = undefined;
      return await task();
    } finally {
      this.#exclusive = undefined;
      release();
    }
  }
}

const CONSTRUCT = Symbol('FileSecretStore');

/**
 * An encrypted, file-based {@link SecretStore}; see the module documentation for the format and
 * the guarantees. Obtain one with {@link openFileSecretStore}.
 */
export class FileSecretStore implements SecretStore {
  /** The absolute path of the store's directory. */
  readonly directory: string;
  readonly #state: StoreState;
  readonly #refs = new KeyedLock();
  readonly #rotation = new SharedExclusiveLock();

  /**
   * @internal Use {@link openFileSecretStore}. Typed loosely so that no private type leaks into the
   * published declarations.
   */
  constructor(token: symbol, state: object) {
    if (token !== CONSTRUCT) throw new TypeError('use openFileSecretStore() to open a FileSecretStore');
    this.#state = state as StoreState;
    this.directory = this.#state.directory;
  }

  #onRef<T>(ref: string, task: (name: string, path: string) => Promise<T>): Promise<T> {
    const name = secretFileName(ref);
    return this.#rotation.shared(() =>
      this.#refs.run(name, async () => {
        await refreshHeader(this.#state);
        return task(name, join(this.directory, name));
      }),
    );
  }

  /**
   * The secret under `ref`, or `undefined` when there is none.
   * @throws ValidationError when `ref` is not 1 to 512 printable characters.
   * @throws SecretStoreError `integrity` when the file was modified, swapped, renamed or is
   *   under a key this store does not have; `key-rotated`; `io`.
   */
  async get(ref: string): Promise<string | undefined> {
    validateRef(ref);
    return this.#onRef(ref, async (name, path) => {
      let file: Awaited<ReturnType<typeof readRegularFile>>;
      try {
        file = await readRegularFile(path, MAX_SECRET_FILE_BYTES);
      } catch (cause) {
        // Our own refusals (a symlink, a FIFO, an oversized file) carry no errno.
        const reason = errorCode(cause) === undefined ? 'integrity' : 'io';
        throw new SecretStoreError(reason, `cannot read secret ${JSON.stringify(ref)}`, { cause, ref });
      }
      if (!file) return undefined;
      const parsed = parseSecret(file.bytes, true);
      if (!parsed) {
        throw new SecretStoreError(
          'integrity',
          `secret ${JSON.stringify(ref)} is damaged: ${name} is not a secret file`,
          { ref },
        );
      }
      if (parsed.version !== VERSION) {
        throw new SecretStoreError(
          'unsupported-format',
          `secret ${JSON.stringify(ref)} has format version ${parsed.version}; this code reads version ${VERSION}`,
          { ref },
        );
      }
      if (parsed.ref !== ref) {
        throw new SecretStoreError(
          'integrity',
          `secret ${JSON.stringify(ref)} is damaged or was tampered with: its file holds another ref`,
          { ref },
        );
      }
      const dataKey = this.#state.keys.get(parsed.keyId);
      if (!dataKey) {
        throw new SecretStoreError(
          'integrity',
          `secret ${JSON.stringify(ref)} is encrypted under data key ${parsed.keyId}, which this store does not have (a file from another store or an old backup?)`,
          { ref },
        );
      }
      try {
        return unseal(dataKey, file.bytes, parsed);
      } catch (cause) {
        throw new SecretStoreError(
          'integrity',
          `secret ${JSON.stringify(ref)} is damaged or was tampered with: it does not authenticate`,
          { cause, ref },
        );
      }
    });
  }

  /**
   * Stores or replaces the secret; durable (file and directory fsynced) when it resolves.
   * @throws ValidationError when `ref` is not 1 to 512 printable characters, or `value` is not a
   *   well-formed string of at most 1 MiB of UTF-8.
   * @throws SecretStoreError `key-rotated`, `io`.
   */
  async set(ref: string, value: string): Promise<void> {
    validateRef(ref);
    const plaintext = validateValue(ref, value);
    try {
      await this.#onRef(ref, async (name) => {
        const sealed = seal(this.#state, ref, plaintext);
        try {
          await writeFileAtomic(this.directory, name, sealed, { replace: true, syncDirectory: true });
        } catch (cause) {
          throw ioError(`cannot store secret ${JSON.stringify(ref)}`, cause, ref);
        }
      });
    } finally {
      plaintext.fill(0);
    }
  }

  /**
   * Removes the secret; `false` when there was none. Durable when it resolves.
   * @throws ValidationError for a bad `ref`; SecretStoreError `key-rotated`, `io`.
   */
  async delete(ref: string): Promise<boolean> {
    validateRef(ref);
    return this.#onRef(ref, async (_name, path) => {
      try {
        await unlink(path);
      } catch (cause) {
        if (errorCode(cause) === 'ENOENT') return false;
        throw ioError(`cannot delete secret ${JSON.stringify(ref)}`, cause, ref);
      }
      try {
        await syncDirectory(this.directory);
      } catch (cause) {
        throw ioError(`cannot delete secret ${JSON.stringify(ref)}`, cause, ref);
      }
      return true;
    });
  }

  /**
   * Refs that start with `prefix`, sorted by UTF-16 code units (as `Array.prototype.sort`). Reads
   * the plaintext refs only: values are not decrypted, nor authenticated.
   * @throws ValidationError for a bad `prefix`; SecretStoreError `integrity` when a secret file is
   *   malformed or not named after the ref it holds; `key-rotated`; `io`.
   */
  async list(prefix = ''): Promise<string[]> {
    validatePrefix(prefix);
    return this.#rotation.shared(async () => {
      await refreshHeader(this.#state);
      let names: string[];
      try {
        names = await secretFileNames(this.directory);
      } catch (cause) {
        throw ioError(`cannot list the secret store in ${this.directory}`, cause);
      }
      const refs: string[] = [];
      let next = 0;
      const worker = async () => {
        while (next < names.length) {
          const name = names[next++]!;
          let file: Awaited<ReturnType<typeof readRegularFile>>;
          try {
            file = await readRegularFile(join(this.directory, name), MAX_SECRET_FILE_BYTES, MAX_PREFIX_BYTES);
          } catch (cause) {
            throw new SecretStoreError('integrity', `cannot read secret file ${name}`, { cause });
          }
          if (!file) continue;
          const parsed = parseSecret(file.bytes, false);
          if (!parsed || secretFileName(parsed.ref) !== name || refProblem(parsed.ref, false)) {
            throw new SecretStoreError(
              'integrity',
              `secret file ${join(this.directory, name)} is damaged or was renamed: it does not hold the ref it is named after`,
              { details: { file: name } },
            );
          }
          if (parsed.ref.startsWith(prefix)) refs.push(parsed.ref);
        }
      };
      await Promise.all(Array.from({ length: SWEEP_CONCURRENCY }, worker));
      return refs.sort();
    });
  }

  /**
   * Rewrites every secret under a new key, waiting for this object's operations in flight and
   * holding new ones until it is done. The switch is one atomic rename of the header: before it
   * only the old key opens the store, after it only the new one. Each secret is then re-encrypted
   * atomically; if the process dies meanwhile, opening with the new key finishes the job. Other
   * processes using the directory get `key-rotated` errors from then on; stop them first.
   * @throws ValidationError when `newKey` is not a 32-byte key or a passphrase of >= 12 characters.
   * @throws SecretStoreError `integrity` (after the switch) naming the secrets that could not be
   *   re-encrypted because their files are damaged; they keep the old data key in the header.
   */
  async rotateKey(newKey: Buffer | { passphrase: string }): Promise<void> {
    const input = validateKey(newKey, ['newKey']);
    try {
      await this.#rotate(input);
    } finally {
      if (input.kind === 'raw') input.key.fill(0);
    }
  }

  #rotate(input: KeyInput): Promise<void> {
    return this.#rotation.exclusive(async () => {
      const state = this.#state;
      await refreshHeader(state);
      const salt = randomBytes(SALT_BYTES);
      const kdf = kdfFor(input);
      const derived = await deriveKeys(input, kdf, salt);
      const keys = new Map(state.keys);
      if (keys.size >= MAX_DATA_KEYS) {
        throw new SecretStoreError(
          'integrity',
          `the secret store in ${state.directory} already holds ${keys.size} data keys: remove the damaged secrets that keep old keys alive, then rotate`,
        );
      }
      const id = newKeyId(keys);
      keys.set(id, randomBytes(KEY_BYTES));
      const header: Header = {
        format: FORMAT,
        version: VERSION,
        kdf,
        salt: salt.toString('base64'),
        check: derived.check.toString('base64'),
        currentKey: id,
        keys: [...keys].map(([keyId, dataKey]) => ({
          id: keyId,
          wrapped: wrapDataKey(derived.wrapKey, keyId, dataKey),
        })),
      };
      let problems: string[];
      try {
        const signature = (await writeHeader(state.directory, header, true))!;
        state.wrapKey.fill(0);
        Object.assign(state, {
          header,
          keys,
          wrapKey: derived.wrapKey,
          check: derived.check,
          headerSignature: signature,
        });
        problems = await reencryptRetired(state);
      } catch (cause) {
        throw ioError(`cannot rotate the key of the secret store in ${state.directory}`, cause);
      }
      if (problems.length > 0) {
        const shown = problems.slice(0, 10).join(', ');
        throw new SecretStoreError(
          'integrity',
          `the key was rotated, but ${problems.length} secret(s) could not be re-encrypted because they are damaged or misplaced: ${shown}${problems.length > 10 ? ', …' : ''}`,
        );
      }
    });
  }
}

/**
 * Opens (creating when missing) an encrypted secret store in `options.directory`. Removes temp
 * files left by crashed writers and finishes a key rotation that a crash interrupted.
 * @throws ValidationError for bad options (a key that is not 32 bytes, a passphrase shorter than 12
 *   characters).
 * @throws SecretStoreError `wrong-key` when the key or passphrase does not open the store;
 *   `unsafe-directory` when the directory is group/world accessible or not ours; `integrity` when
 *   the header is damaged or missing beside existing secrets; `unsupported-format`; `io`.
 */
export async function openFileSecretStore(options: FileSecretStoreOptions): Promise<FileSecretStore> {
  const { directory, key } = validateOptions(options);
  try {
    await prepareDirectory(directory);
    await removeAbandonedTempFiles(directory);
    let loaded = await readHeader(directory);
    let derived: DerivedKeys | undefined;
    if (!loaded) {
      const created = await createHeader(directory, key);
      if (created) ({ derived } = created);
      // Another process created it first: use theirs.
      loaded = created ?? (await readHeader(directory));
      if (!loaded)
        throw new SecretStoreError('integrity', `the header in ${directory} vanished while it was created`);
    }
    derived ??= await unlock(directory, loaded.header, key);
    const state: StoreState = {
      directory,
      header: loaded.header,
      wrapKey: derived.wrapKey,
      check: derived.check,
      keys: unwrapDataKeys(directory, loaded.header, derived.wrapKey),
      headerSignature: loaded.signature,
    };
    // Damaged files are left for get() and list() to report; the store itself is usable.
    if (state.header.keys.length > 1) await reencryptRetired(state);
    return new FileSecretStore(CONSTRUCT, state);
  } catch (cause) {
    throw ioError(`cannot open the secret store in ${directory}`, cause);
  } finally {
    if (key.kind === 'raw') key.key.fill(0);
  }
}
