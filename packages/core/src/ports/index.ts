/**
 * The plugin contracts, for their authors: what an adapter, a store, a secret store, a clock, a
 * logger and a ticketing or email integration must do; with the system clock, the in-memory secret
 * store and the silent logger.
 *
 * @module @fleetward/core/ports
 */
export type * from './adapter.js';
export { CAPABILITIES } from './adapter.js';
export type { Clock } from './clock.js';
export { systemClock } from './clock.js';
export type * from './integrations.js';
export type { LogFn, Logger } from './logger.js';
export { isLogger, silentLogger } from './logger.js';
export type * from './rollouts.js';
export type { SecretStore } from './secret-store.js';
export { MemorySecretStore } from './secret-store.js';
export type * from './store.js';
