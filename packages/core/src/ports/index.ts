/**
 * The plugin contracts, for their authors: what an adapter, a store, a secret store, a clock and
 * a ticketing or email integration must do; with the system clock and the in-memory secret store.
 *
 * @module @fleetward/core/ports
 */
export type * from './adapter.js';
export { CAPABILITIES } from './adapter.js';
export type { Clock } from './clock.js';
export { systemClock } from './clock.js';
export type * from './integrations.js';
export type { SecretStore } from './secret-store.js';
export { MemorySecretStore } from './secret-store.js';
export type * from './store.js';
