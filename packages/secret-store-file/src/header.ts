/**
 * `header.json` and what a store object derives from it: reading, writing and creating the header,
 * unlocking it with the caller's key, and noticing when another process replaced it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  checkMatches,
  type DataKey,
  type DerivedKeys,
  deriveKeys,
  kdfFor,
  newKeyId,
  unwrapDataKeys,
  wrapDataKey,
} from './crypto.js';
import { SecretStoreError } from './errors.js';
import { type RegularFile, readRegularFile, secretFileNames, signatureOf, writeFileAtomic } from './files.js';
import {
  FORMAT,
  HEADER_FILE,
  type Header,
  HeaderSchema,
  type Kdf,
  KEY_BYTES,
  MAX_HEADER_BYTES,
  SALT_BYTES,
  VERSION,
} from './format.js';
import type { KeyInput } from './options.js';

/** Everything a store object knows about its directory; replaced when the header changes. */
export interface StoreState {
  directory: string;
  header: Header;
  wrapKey: Buffer;
  check: Buffer;
  keys: Map<string, Buffer>;
  /** Identity of the header file these keys came from: inode, size and mtime. */
  headerSignature: string;
}

/** A header read from disk and the identity of the file it came from. */
export interface LoadedHeader {
  header: Header;
  signature: string;
}

/** The data key new secrets are sealed with. */
export function currentDataKey(state: StoreState): DataKey {
  const id = state.header.currentKey;
  return { id, key: state.keys.get(id)! };
}

/** A header for `keys` (all wrapped under `derived.wrapKey`), sealing new secrets with `currentKey`. */
export function buildHeader(parts: {
  kdf: Kdf;
  salt: Buffer;
  derived: DerivedKeys;
  keys: ReadonlyMap<string, Buffer>;
  currentKey: string;
}): Header {
  const { kdf, salt, derived, keys, currentKey } = parts;
  return {
    format: FORMAT,
    version: VERSION,
    kdf,
    salt: salt.toString('base64'),
    check: derived.check.toString('base64'),
    currentKey,
    keys: [...keys].map(([id, dataKey]) => ({ id, wrapped: wrapDataKey(derived.wrapKey, id, dataKey) })),
  };
}

/**
 * The header of `directory`, or `undefined` when there is none.
 * @throws SecretStoreError `unsupported-format` for another format or version; `integrity` when it
 *   cannot be read, is not JSON or is malformed.
 */
export async function readHeader(directory: string): Promise<LoadedHeader | undefined> {
  const path = join(directory, HEADER_FILE);
  let file: RegularFile | undefined;
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

/**
 * Writes the header atomically and durably; with `replace: false` an existing header wins and
 * `undefined` is returned. Returns the signature of the file written.
 */
export async function writeHeader(
  directory: string,
  header: Header,
  replace: boolean,
): Promise<string | undefined> {
  const bytes = Buffer.from(`${JSON.stringify(header, null, 2)}\n`, 'utf8');
  return writeFileAtomic(directory, HEADER_FILE, bytes, { replace, syncDirectory: true });
}

/**
 * Starts a new store: one fresh data key wrapped under `input`. `undefined` when another process
 * created the header first.
 * @throws SecretStoreError `integrity` when secret files are there without a header.
 */
export async function createHeader(
  directory: string,
  input: KeyInput,
): Promise<(LoadedHeader & { derived: DerivedKeys }) | undefined> {
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
  const id = newKeyId(new Map());
  const dataKey = randomBytes(KEY_BYTES);
  const header = buildHeader({ kdf, salt, derived, keys: new Map([[id, dataKey]]), currentKey: id });
  dataKey.fill(0);
  // link, not rename: two processes creating the store at once must not both win.
  const signature = await writeHeader(directory, header, false);
  return signature === undefined ? undefined : { header, signature, derived };
}

/**
 * The keys `input` derives under this header.
 * @throws SecretStoreError `wrong-key` when they do not match its check value.
 */
export async function unlock(directory: string, header: Header, input: KeyInput): Promise<DerivedKeys> {
  const derived = await deriveKeys(input, header.kdf, Buffer.from(header.salt, 'base64'));
  if (!checkMatches(header, derived.check)) {
    throw new SecretStoreError('wrong-key', `wrong key or passphrase for the secret store in ${directory}`);
  }
  return derived;
}

/**
 * Re-reads the header when another process replaced it; refuses once the key is not ours any more.
 * @throws SecretStoreError `key-rotated`; `integrity` when the header disappeared or is damaged.
 */
export async function refreshHeader(state: StoreState): Promise<void> {
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
