export * from './audit.js';
export * from './common.js';
export * from './entities.js';
export * from './operations.js';
export * from './patch.js';
export * from './plan.js';
export * from './selector.js';
export { toIssues, validate } from './validate.js';
