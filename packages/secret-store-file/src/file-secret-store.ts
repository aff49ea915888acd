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
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { SecretStore } from '@fleetward/core/ports';
import { type DerivedKeys, seal, unseal, unwrapDataKeys } from './crypto.js';
import { errorCode, ioError, SecretStoreError } from './errors.js';
import {
  prepareDirectory,
  type RegularFile,
  readRegularFile,
  removeAbandonedTempFiles,
  secretFileNames,
  syncDirectory,
  writeFileAtomic,
} from './files.js';
import { MAX_PREFIX_BYTES, MAX_SECRET_FILE_BYTES, parseSecret, secretFileName, VERSION } from './format.js';
import {
  createHeader,
  currentDataKey,
  readHeader,
  refreshHeader,
  type StoreState,
  unlock,
} from './header.js';
import { KeyedLock, SharedExclusiveLock } from './locks.js';
import {
  type FileSecretStoreOptions,
  type KeyInput,
  refProblem,
  validateKey,
  validateOptions,
  validatePrefix,
  validateRef,
  validateValue,
} from './options.js';
import { commitRotation, prepareRotation, reencryptRetired, SWEEP_CONCURRENCY } from './rotation.js';

const CONSTRUCT = Symbol('FileSecretStore');

/**
 * The value held in the secret file `name`, read for `ref`.
 * @throws SecretStoreError `integrity` when the file is malformed, holds another ref, is under a
 *   data key this store does not have or does not authenticate; `unsupported-format`.
 */
function decryptSecret(state: StoreState, ref: string, name: string, bytes: Buffer): string {
  const parsed = parseSecret(bytes, true);
  if (!parsed) {
    throw new SecretStoreError(
      'integrity',
      `secret ${JSON.stringify(ref)} is damaged: ${name} is not a secret file`,
      {
        ref,
      },
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
  const dataKey = state.keys.get(parsed.keyId);
  if (!dataKey) {
    throw new SecretStoreError(
      'integrity',
      `secret ${JSON.stringify(ref)} is encrypted under data key ${parsed.keyId}, which this store does not have (a file from another store or an old backup?)`,
      { ref },
    );
  }
  try {
    return unseal(dataKey, bytes, parsed);
  } catch (cause) {
    throw new SecretStoreError(
      'integrity',
      `secret ${JSON.stringify(ref)} is damaged or was tampered with: it does not authenticate`,
      { cause, ref },
    );
  }
}

/**
 * The ref the secret file `name` holds, read from its plaintext prefix; `undefined` when the file
 * has gone.
 * @throws SecretStoreError `integrity` when it cannot be read, is malformed or is not named after
 *   the ref it holds.
 */
async function refOfSecretFile(directory: string, name: string): Promise<string | undefined> {
  let file: RegularFile | undefined;
  try {
    file = await readRegularFile(join(directory, name), MAX_SECRET_FILE_BYTES, MAX_PREFIX_BYTES);
  } catch (cause) {
    throw new SecretStoreError('integrity', `cannot read secret file ${name}`, { cause });
  }
  if (!file) return undefined;
  const parsed = parseSecret(file.bytes, false);
  if (!parsed || secretFileName(parsed.ref) !== name || refProblem(parsed.ref, false)) {
    throw new SecretStoreError(
      'integrity',
      `secret file ${join(directory, name)} is damaged or was renamed: it does not hold the ref it is named after`,
      { details: { file: name } },
    );
  }
  return parsed.ref;
}

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
      let file: RegularFile | undefined;
      try {
        file = await readRegularFile(path, MAX_SECRET_FILE_BYTES);
      } catch (cause) {
        // Our own refusals (a symlink, a FIFO, an oversized file) carry no errno.
        const reason = errorCode(cause) === undefined ? 'integrity' : 'io';
        throw new SecretStoreError(reason, `cannot read secret ${JSON.stringify(ref)}`, { cause, ref });
      }
      return file && decryptSecret(this.#state, ref, name, file.bytes);
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
        const sealed = seal(currentDataKey(this.#state), ref, plaintext);
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
          const ref = await refOfSecretFile(this.directory, names[next++]!);
          if (ref?.startsWith(prefix)) refs.push(ref);
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
      const rotation = await prepareRotation(state, input);
      let problems: string[];
      try {
        await commitRotation(state, rotation);
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
