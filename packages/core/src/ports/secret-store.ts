/**
 * Where private keys, passwords and API credentials live. Never the ordinary {@link Store}, never
 * a log line, an event or an error message.
 *
 * References (`ref`) are opaque names chosen by the caller, e.g. `tenant-a/keys/cred-123`.
 * Implementations must keep values confidential at rest (encrypt or delegate to a vault).
 */
export interface SecretStore {
  /** The secret, or `undefined` when there is none under `ref`. */
  get(ref: string): Promise<string | undefined>;
  /** Stores or replaces the secret under `ref`. Must be durable when it resolves. */
  set(ref: string, value: string): Promise<void>;
  /** Removes the secret; resolves `false` when there was none. */
  delete(ref: string): Promise<boolean>;
  /** References that start with `prefix`, sorted. Never the values. */
  list(prefix?: string): Promise<string[]>;
}

/** A SecretStore that keeps secrets in memory only: for tests and short-lived scripts. */
export class MemorySecretStore implements SecretStore {
  readonly #values = new Map<string, string>();
  async get(ref: string) {
    return this.#values.get(ref);
  }
  async set(ref: string, value: string) {
    this.#values.set(ref, value);
  }
  async delete(ref: string) {
    return this.#values.delete(ref);
  }
  async list(prefix = '') {
    return [...this.#values.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}
