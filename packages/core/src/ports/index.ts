export type * from './adapter.js';
export { CAPABILITIES } from './adapter.js';
export type { Clock } from './clock.js';
export { systemClock } from './clock.js';
export type { SecretStore } from './secret-store.js';
export { MemorySecretStore } from './secret-store.js';
export type * from './store.js';
