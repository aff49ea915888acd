import { FleetwardError, type FleetwardErrorOptions } from '@fleetward/core';

/** Why a `FileSecretStore` operation failed. */
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
 * never a value, a key or a passphrase. Its `code` is `STORE_FAILED`; branch on {@link reason}.
 */
export class SecretStoreError extends FleetwardError {
  /** What went wrong, for callers to branch on. */
  readonly reason: SecretStoreFailure;
  /** The ref the operation was about, when there was one. */
  readonly ref: string | undefined;

  /**
   * @param reason What went wrong; `wrong-key`, `key-rotated` and `unsafe-directory` are the
   *   caller's fault, the others internal. Never retryable.
   * @param message Names the ref or the path concerned, never a value, a key or a passphrase.
   * @param options The usual {@link FleetwardErrorOptions}, plus the `ref` concerned.
   */
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

  /** The base error's JSON plus `reason` and `ref`. */
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: this.reason, ref: this.ref };
  }
}

/** The errno code of a file system error, if it is one. */
export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Our own errors pass through; anything else (a file system error) becomes an `io` failure. */
export function ioError(message: string, cause: unknown, ref?: string): FleetwardError {
  if (cause instanceof FleetwardError) return cause;
  return new SecretStoreError('io', message, { cause, ...(ref === undefined ? {} : { ref }) });
}
