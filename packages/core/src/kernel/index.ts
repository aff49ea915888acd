/**
 * The kernel, for authors of modules that sit beside the built-in ones (the HTTP server's API
 * tokens, integrations, discovery): the runtime every module shares, the per-call context that
 * authorizes, audits and writes, and the mechanisms long-running work is built from.
 *
 * @module @fleetward/core/kernel
 */

export { sleep } from '../util/sleep.js';
export { type Actor, ActorSchema } from './actor.js';
export { audited, denied, refused } from './call-audit.js';
export { type CallContext, createCallContext, type Occurrence } from './context.js';
export type { Escalation, FleetEvents, RunbookEvents, ScriptEvents } from './events.js';
export {
  jobLogger,
  logJobFinished,
  logJobStarted,
  logServerFailed,
  type StartJobInput,
  startJob,
  taskId,
} from './jobs.js';
export { RunLease } from './lease.js';
export { errorFields, noteSecrets, RedactingLogger, SecretValues } from './log.js';
export {
  type EnqueueEventInput,
  type EnqueueInput,
  enqueue,
  enqueueEvent,
  eventMatches,
  newDeliveryId,
  recordEvent,
} from './outbox.js';
export type { ReachGuard } from './reach-guard.js';
export { type AfterScanHook, type FinishedScan, Runtime, type RuntimeOptions } from './runtime.js';
