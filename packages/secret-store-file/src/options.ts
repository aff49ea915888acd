import { resolve } from 'node:path';
import { ValidationError, type ValidationIssue } from '@fleetward/core';
import { KEY_BYTES, MAX_REF_CHARS, MAX_VALUE_BYTES } from './format.js';

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

/** A validated key: a private copy of the raw key, or the NFC-normalised passphrase. */
export type KeyInput = { kind: 'raw'; key: Buffer } | { kind: 'passphrase'; passphrase: string };

const MIN_PASSPHRASE_CHARS = 12;
const MAX_PASSPHRASE_CHARS = 1024;
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const LONE_SURROGATE = /\p{Cs}/u;

function issue(path: (string | number)[], message: string): ValidationIssue {
  return { path, message };
}

/** Describes a bad ref or prefix without echoing it: it may be 10 kB or carry terminal escapes. */
export function refProblem(ref: unknown, allowEmpty: boolean): string | undefined {
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

/** @throws ValidationError (path `ref`) when `ref` is not 1 to 512 printable characters. */
export function validateRef(ref: unknown): string {
  const problem = refProblem(ref, false);
  if (problem) throw new ValidationError('secret ref', [issue(['ref'], problem)]);
  return ref as string;
}

/** @throws ValidationError (path `prefix`) when `prefix` is not 0 to 512 printable characters. */
export function validatePrefix(prefix: unknown): string {
  const problem = refProblem(prefix, true);
  if (problem) throw new ValidationError('secret ref prefix', [issue(['prefix'], problem)]);
  return prefix as string;
}

/**
 * The value as UTF-8 bytes, for the caller to zero after use.
 * @throws ValidationError (path `value`, naming the ref but not the value) when `value` is not a
 *   well-formed string of at most 1 MiB of UTF-8.
 */
export function validateValue(ref: string, value: unknown): Buffer {
  const subject = `secret ${JSON.stringify(ref)}`;
  if (typeof value !== 'string') {
    throw new ValidationError(subject, [issue(['value'], 'must be a string')]);
  }
  // UTF-8 would turn a lone surrogate into U+FFFD: the value read back would differ silently.
  if (LONE_SURROGATE.test(value)) {
    throw new ValidationError(subject, [
      issue(['value'], 'must be well-formed Unicode (it contains a lone surrogate)'),
    ]);
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_VALUE_BYTES) {
    throw new ValidationError(subject, [
      issue(['value'], `must be at most ${MAX_VALUE_BYTES} bytes of UTF-8 (got ${bytes})`),
    ]);
  }
  return Buffer.from(value, 'utf8');
}

/**
 * @param path Where the key sits in the caller's argument, for the error (`['key']`, `['newKey']`).
 * @throws ValidationError when `key` is not a non-zero 32-byte key or `{ passphrase }` of 12 to
 *   1024 characters; the message never echoes it.
 */
export function validateKey(key: unknown, path: string[]): KeyInput {
  if (key instanceof Uint8Array) {
    if (key.length !== KEY_BYTES) {
      throw new ValidationError('secret store key', [
        issue(path, `must be exactly ${KEY_BYTES} bytes (got ${key.length})`),
      ]);
    }
    if (key.every((b) => b === 0)) {
      throw new ValidationError('secret store key', [
        issue(path, 'must not be all zeros (an uninitialised buffer?)'),
      ]);
    }
    // A copy: the caller may zero or reuse its buffer.
    return { kind: 'raw', key: Buffer.from(key) };
  }
  const passphrase = (key as { passphrase?: unknown } | null | undefined)?.passphrase;
  if (typeof passphrase !== 'string') {
    throw new ValidationError('secret store key', [
      issue(path, `must be a ${KEY_BYTES}-byte Buffer or { passphrase: string }`),
    ]);
  }
  const normalised = passphrase.normalize('NFC');
  const chars = [...normalised].length;
  if (chars < MIN_PASSPHRASE_CHARS || chars > MAX_PASSPHRASE_CHARS) {
    throw new ValidationError('secret store key', [
      issue(
        [...path, 'passphrase'],
        `must be ${MIN_PASSPHRASE_CHARS} to ${MAX_PASSPHRASE_CHARS} characters (got ${chars})`,
      ),
    ]);
  }
  return { kind: 'passphrase', passphrase: normalised };
}

/**
 * The options with the directory made absolute and the key validated.
 * @throws ValidationError for a missing or empty directory, or a bad key (see {@link validateKey}).
 */
export function validateOptions(options: unknown): { directory: string; key: KeyInput } {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('FileSecretStoreOptions', [issue([], 'must be an object')]);
  }
  const { directory, key } = options as { directory?: unknown; key?: unknown };
  if (typeof directory !== 'string' || directory.length === 0 || directory.includes('\0')) {
    throw new ValidationError('FileSecretStoreOptions', [
      issue(['directory'], 'must be a non-empty path without NUL'),
    ]);
  }
  return { directory: resolve(directory), key: validateKey(key, ['key']) };
}
