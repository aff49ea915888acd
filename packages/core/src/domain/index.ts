/**
 * The domain: entities, operations and their zod schemas, shared by the SDK, its stores and its
 * adapters.
 *
 * @module @fleetward/core/domain
 */
export * from './access.js';
export * from './audit.js';
export * from './common.js';
export * from './entities.js';
export * from './operations.js';
export * from './patch.js';
export * from './plan.js';
export * from './selector.js';
export * from './sop.js';
export { toIssues, validate } from './validate.js';
