/**
 * Key rotation: a new header holding a new data key and the old ones (one atomic switch), then
 * every secret re-encrypted under the new data key, then the retired keys dropped. The sweep also
 * runs at open, which finishes a rotation that a crash interrupted.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { deriveKeys, kdfFor, newKeyId, seal, unseal } from './crypto.js';
import { SecretStoreError } from './errors.js';
import {
  type RegularFile,
  readRegularFile,
  secretFileNames,
  syncDirectory,
  writeFileAtomic,
} from './files.js';
import {
  type Header,
  KEY_BYTES,
  MAX_DATA_KEYS,
  MAX_PREFIX_BYTES,
  MAX_SECRET_FILE_BYTES,
  parseSecret,
  SALT_BYTES,
  secretFileName,
  VERSION,
} from './format.js';
import { buildHeader, currentDataKey, type StoreState, writeHeader } from './header.js';
import type { KeyInput } from './options.js';

/** Writes of secrets in flight at once during a sweep (and reads during `list`). */
export const SWEEP_CONCURRENCY = 8;

/** What {@link commitRotation} switches a store to. */
export interface PendingRotation {
  header: Header;
  keys: Map<string, Buffer>;
  wrapKey: Buffer;
  check: Buffer;
}

/**
 * Derives the new key and builds the header that switches to it: a new data key, current, beside
 * every data key the store has now, all wrapped under the new key. Writes nothing.
 * @throws SecretStoreError `integrity` when the store already holds the maximum of data keys.
 */
export async function prepareRotation(state: StoreState, input: KeyInput): Promise<PendingRotation> {
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
  const header = buildHeader({ kdf, salt, derived, keys, currentKey: id });
  return { header, keys, wrapKey: derived.wrapKey, check: derived.check };
}

/** The switch: writes the new header (one atomic rename) and moves `state` onto it. */
export async function commitRotation(state: StoreState, rotation: PendingRotation): Promise<void> {
  const signature = (await writeHeader(state.directory, rotation.header, true))!;
  state.wrapKey.fill(0);
  Object.assign(state, {
    header: rotation.header,
    keys: rotation.keys,
    wrapKey: rotation.wrapKey,
    check: rotation.check,
    headerSignature: signature,
  });
}

/**
 * Moves one secret file under the current data key. Returns what to report when it cannot: the ref
 * when the file names one, else the file name.
 */
async function reencryptOne(state: StoreState, name: string): Promise<string | undefined> {
  const path = join(state.directory, name);
  let file: RegularFile | undefined;
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
    await writeFileAtomic(state.directory, name, seal(currentDataKey(state), parsed.ref, plaintext), {
      replace: true,
      syncDirectory: false,
    });
  } finally {
    plaintext.fill(0);
  }
  return undefined;
}

/** The data keys that secret files in the directory refer to now, and the current one. */
async function dataKeysInUse(state: StoreState): Promise<Set<string>> {
  const inUse = new Set<string>([state.header.currentKey]);
  for (const name of await secretFileNames(state.directory)) {
    const file = await readRegularFile(
      join(state.directory, name),
      MAX_SECRET_FILE_BYTES,
      MAX_PREFIX_BYTES,
    ).catch(() => undefined);
    const parsed = file ? parseSecret(file.bytes, false) : undefined;
    if (parsed && state.keys.has(parsed.keyId)) inUse.add(parsed.keyId);
  }
  return inUse;
}

/** Rewrites the header without the data keys not in `inUse`, and forgets (zeroes) them. */
async function dropDataKeys(state: StoreState, inUse: ReadonlySet<string>): Promise<void> {
  const header: Header = { ...state.header, keys: state.header.keys.filter((k) => inUse.has(k.id)) };
  state.headerSignature = (await writeHeader(state.directory, header, true))!;
  state.header = header;
  for (const [id, key] of state.keys) {
    if (!inUse.has(id)) {
      key.fill(0);
      state.keys.delete(id);
    }
  }
}

/**
 * Re-encrypts every secret still under a retired data key, then drops the retired keys that no
 * file refers to any more. Returns the secrets it could not move. A file that could not be moved
 * keeps its key in the header, so that a file swapped back or restored stays readable.
 */
export async function reencryptRetired(state: StoreState): Promise<string[]> {
  const names = await secretFileNames(state.directory);
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
  const inUse = await dataKeysInUse(state);
  if (inUse.size < state.header.keys.length) {
    // The sweep's renames must be on disk before the keys that can read the old files are gone.
    await syncDirectory(state.directory);
    await dropDataKeys(state, inUse);
  }
  return problems;
}
