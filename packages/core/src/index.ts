export type { AuditChainProblem, AuditChainVerification } from './audit/chain.js';
export { auditRecordHash, GENESIS_HASH, verifyAuditChain } from './audit/chain.js';
export * from './domain/index.js';
export * from './errors.js';
export * from './ports/index.js';
export { type CreateStoreOptions, createStore } from './store/create-store.js';
export { createMemoryStore, type MemoryStoreOptions, matchesAuditQuery } from './store/memory-store.js';
export { canonicalJson } from './util/canonical-json.js';
export { Mutex } from './util/mutex.js';
