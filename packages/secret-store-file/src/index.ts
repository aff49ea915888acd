export { SecretStoreError, type SecretStoreFailure } from './errors.js';
export { FileSecretStore, openFileSecretStore } from './file-secret-store.js';
export type { FileSecretStoreOptions } from './options.js';
