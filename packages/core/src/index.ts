export type { AuditChainProblem, AuditChainVerification } from './audit/chain.js';
export { auditRecordHash, GENESIS_HASH, verifyAuditChain } from './audit/chain.js';
export { ACTION_NAMES, ACTIONS, type Action, actionMatches } from './authz/actions.js';
export { type AuthorizationContext, type Decision, evaluate, type Resource } from './authz/evaluate.js';
export * from './domain/index.js';
export { type RunOptions, runCommand } from './engine/exec.js';
export { DEFAULT_DRIVERS, detectOs, scanServer } from './engine/scan.js';
export * from './errors.js';
export type { Escalation, FleetEvents } from './fleet/events.js';
export type { SessionInternals } from './fleet/fleet.js';
export {
  type Actor,
  type BootstrapTenantInput,
  carryHistory,
  createFleet,
  Fleet,
  type FleetOptions,
  FleetSession,
  type ScanOptions,
  type ScanOutcome,
  TENANT_ADMIN_ROLE_ID,
} from './fleet/fleet.js';
export { resolveTargets, type Targets, TargetsSchema } from './inventory/targets.js';
export {
  aptDriver,
  isSecurityOrigin,
  parseAptCachePolicy,
  parseAptSimulation,
  refreshCommand as aptRefreshCommand,
} from './os/apt.js';
export { dnfDriver, dnfRefreshCommand, yumDriver, yumRefreshCommand } from './os/dnf.js';
export type { CommandOutput, PackageManagerDriver, ParsedScan } from './os/driver.js';
export { OS_RELEASE_COMMAND, parseOsRelease } from './os/os-release.js';
export { zypperDriver, zypperRefreshCommand } from './os/zypper.js';
export { type ExecuteOptions, ExecuteOptionsSchema, executePlan } from './patch/execute.js';
export {
  ApproveOptionsSchema,
  assignWaves,
  type PatchApi,
  type PlanOptions,
  PlanOptionsSchema,
  planHash,
} from './patch/plan.js';
export { type HoldReason, type PatchSelection, selectPatches } from './patch/selection.js';
export {
  canStartWithin,
  type MaintenanceWindow,
  nextWindow,
  validateWindow,
  type WindowOccurrence,
  windowAt,
} from './patch/window.js';
export * from './ports/index.js';
export {
  createScanScheduler,
  latestSlot,
  ScanScheduler,
  type SchedulerOptions,
  type SchedulerTickResult,
} from './schedule/scheduler.js';
export { type CreateStoreOptions, createStore } from './store/create-store.js';
export { createMemoryStore, type MemoryStoreOptions, matchesAuditQuery } from './store/memory-store.js';
export {
  createLocalAdapter,
  type LocalAdapterOptions,
  LocalAdapterOptionsSchema,
} from './transport/local.js';
export { canonicalJson } from './util/canonical-json.js';
export { buildArgv, quoteArgv, quoteShellArg, validateCommand } from './util/command.js';
export { Mutex } from './util/mutex.js';
export { OutputCollector } from './util/output.js';
