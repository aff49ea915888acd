/**
 * The Fleetward SDK: `createFleet` and the session's APIs (inventory, scans, patches, access, SOP
 * scripts and runbooks, audit, compliance, reports, notifications), the domain types and schemas,
 * the ports adapters and stores implement, and the reference implementations.
 *
 * @module @fleetward/core
 */
export {
  type AccessApi,
  type AccessConnection,
  type AccessConnectOptions,
  AccessConnectOptionsSchema,
  type AccessDecisionOptions,
  type AccessOptions,
  AccessOptionsSchema,
  type AccessRequestOptions,
  AccessRequestOptionsSchema,
  type SweepResult,
  ticketPattern,
} from './access/api.js';
export {
  type AuthorizedKeyEntry,
  type AuthorizedKeyOption,
  type AuthorizedKeysLine,
  fingerprintOf,
  fleetwardMarker,
  isCloudAgentManaged,
  optionOf,
  type PublicKey,
  parseAuthorizedKeys,
  parsePublicKey,
  renderAuthorizedKeyLine,
  renderAuthorizedKeys,
  withFleetwardMarker,
} from './access/authorized-keys.js';
export { type GeneratedKeyPair, generateEd25519KeyPair } from './access/keygen.js';
export {
  credentialSecretRef,
  type DueCredential,
  type KeyRotationPoliciesApi,
  type KeyRotationPolicyInput,
  KeyRotationPolicyInputSchema,
  type KeysApi,
  managedCredentials,
  type RegisterCredentialInput,
} from './access/keys.js';
export {
  type RotationOptions,
  type RotationReport,
  secretRefs,
} from './access/rotation.js';
export {
  type AuthorizedKeysFile,
  editAuthorizedKeys,
  hostLocalTime,
  NoSuchLoginError,
  readAllAuthorizedKeys,
  readAuthorizedKeys,
  readSshdLog,
  sshdVersionOf,
  writeAuthorizedKeys,
} from './access/server-keys.js';
export {
  CERTIFICATE_EXTENSIONS,
  type CertificateExtension,
  canCertify,
  certificateAuthorityPublicKey,
  certificateKeyId,
  type ParsedCertificate,
  parseCertificate,
  type SignUserCertificateOptions,
  signUserCertificate,
} from './access/ssh-cert.js';
export { parseSshdLog, type SshLoginEvent } from './access/sshd-log.js';
export {
  expiryTimeOption,
  parseSshdVersion,
  type SshdVersion,
  supportsExpiryTime,
  supportsUtcExpiry,
  UnsupportedSshdError,
} from './access/sshd-version.js';
export {
  AccessSweeper,
  type AccessSweeperOptions,
  type AccessSweepTick,
  createAccessSweeper,
} from './access/sweeper.js';
export type {
  AccessReportOptions,
  AuditApi,
  AuditExportOptions,
  VerifyAuditLogOptions,
} from './audit/api.js';
// The offline audit tools (also the `./audit` entry point).
export * from './audit/index.js';
export { ACTION_NAMES, ACTIONS, type Action, actionMatches } from './authz/actions.js';
export {
  type CompiledAuthorization,
  compileAuthorization,
  compileSelector,
  type ServerPredicate,
} from './authz/compiled.js';
export { type AuthorizationContext, type Decision, evaluate, type Resource } from './authz/evaluate.js';
export {
  type DiffPoliciesOptions,
  diffPolicies,
  type ExplainNames,
  explain,
  type PolicyChange,
  type PolicySet,
  type Simulation,
  simulate,
} from './authz/tools.js';
export {
  type ComplianceApi,
  type ComplianceStandardChanges,
  type ComplianceStandardsApi,
  type ComplianceSummaryOptions,
  ComplianceSummaryOptionsSchema,
  type ComplianceSummaryResult,
  type LatestScans,
  type ListStandardsOptions,
} from './compliance/api.js';
export {
  type CompliancePatch,
  type ComplianceReason,
  type ComplianceStatus,
  type EvaluateServerInput,
  evaluateServer,
  projectsOf,
  type ServerEvaluation,
  type StandardResult,
} from './compliance/evaluate.js';
export {
  type ComplianceAlert,
  type ComplianceCounts,
  type ComplianceGroup,
  type CompliancePercentages,
  type ComplianceSummary,
  osKey,
  type StandardSummary,
  type SummarizeOptions,
  type SummaryServer,
  summarize,
} from './compliance/summary.js';
export {
  type ComplianceState,
  type ComplianceStateAttempt,
  ComplianceStateBackfill,
  type ComplianceStateScan,
  type ComplianceStateScanRef,
  type ComplianceStateServer,
  complianceStateOf,
  type PatchDigest,
} from './domain/compliance-state.js';
export * from './domain/index.js';
export * from './domain/runbook.js';
export { type RunOptions, runCommand } from './engine/exec.js';
export {
  BOOT_ID_COMMAND,
  REBOOT_SCRIPT,
  type RebootProgress,
  type VerifiedRebootOptions,
  verifiedReboot,
} from './engine/reboot.js';
export * from './errors.js';
export {
  type Actor,
  type BootstrapTenantInput,
  createFleet,
  Fleet,
  type FleetOptions,
  FleetSession,
  TENANT_ADMIN_ROLE_ID,
} from './fleet/fleet.js';
export type { BindRoleOptions, IamApi, ListBindingsOptions } from './iam/api.js';
export type {
  AccountsApi,
  InventoryApi,
  InventoryDiscoveryApi,
  ProjectChanges,
  ProjectsApi,
  ServerChanges,
  ServersApi,
} from './inventory/api.js';
export {
  type AccountDiscovery,
  type DiscoverOptions,
  type DiscoveryError,
  type DiscoveryOutcome,
  discoveredLabelPrefix,
  discoveredServerId,
  tagsToLabels,
} from './inventory/discover.js';
export { carryHistory, type ScanOptions, type ScanOutcome } from './inventory/scan.js';
export { resolveTargets, type Targets, TargetsSchema } from './inventory/targets.js';
export type { Escalation, FleetEvents } from './kernel/events.js';
export { RedactingLogger } from './kernel/log.js';
export { eventMatches } from './kernel/outbox.js';
export {
  type AddWebhookInput,
  AddWebhookInputSchema,
  type NotifyApi,
  type OutboxApi,
  type RotateWebhookSecretOptions,
  RotateWebhookSecretOptionsSchema,
  type WebhookEndpointWithSecret,
  type WebhooksApi,
} from './notify/api.js';
export {
  createDispatcher,
  createWebhookDelivery,
  type DeliveryContext,
  type DeliveryHandler,
  type DeliveryResult,
  type Dispatcher,
  type DispatcherOptions,
  DispatcherOptionsSchema,
  type DispatchSummary,
  type WebhookDeliveryOptions,
  WebhookDeliveryOptionsSchema,
  webhookBody,
} from './notify/dispatcher.js';
export {
  type SubscribeWebhooksOptions,
  subscribeWebhooks,
  WEBHOOK_EVENT_TYPES,
  type WebhookEventType,
} from './notify/outbox.js';
export {
  DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  generateWebhookSecret,
  type SignWebhookInput,
  signWebhook,
  type VerifiedWebhook,
  type VerifyWebhookInput,
  verifyWebhook,
  WEBHOOK_SECRET_PREFIX,
  type WebhookHeaders,
  WebhookVerificationError,
  type WebhookVerificationFailure,
} from './notify/webhook-signature.js';
// The OS drivers and parsers and scanServer (also the `./os` entry point).
export * from './os/index.js';
export {
  type BuildChangeRequestInput,
  buildChangeRequest,
  type ChangeRequestPatchSource,
  pendingSetHash,
  type ServerPendingPatches,
} from './patch/change-request-payload.js';
export { type ExecuteOptions, ExecuteOptionsSchema } from './patch/execute.js';
export {
  type ApproveOptions,
  ApproveOptionsSchema,
  assignWaves,
  type PatchApi,
  type PatchPoliciesApi,
  type PatchPolicyChanges,
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
export type {
  ComplianceReportOptions,
  EmailComplianceReportOptions,
  ReportScopeInput,
  ReportsApi,
} from './report/build.js';
export * from './report/index.js';
export type { AddScanScheduleInput, ScheduleApi } from './schedule/api.js';
export {
  createDiscoveryScheduler,
  type DiscoveringFleet,
  type DiscoverySchedule,
  DiscoveryScheduler,
  type DiscoverySchedulerOptions,
  type DiscoveryTickResult,
} from './schedule/discovery.js';
export {
  createScanScheduler,
  latestSlot,
  ScanScheduler,
  type SchedulerOptions,
  type SchedulerTickResult,
} from './schedule/scheduler.js';
export {
  type ApproveScriptOptions,
  ApproveScriptOptionsSchema,
  type ImportResult,
  type ScriptApi,
} from './sop/api.js';
export {
  fileSha256,
  type ScriptContent,
  scriptCommand,
  scriptContentHash,
  scriptVersionId,
} from './sop/content.js';
export { type ScriptEvents, scriptEvents } from './sop/events.js';
export {
  MANIFEST_FILE,
  type Manifest,
  type ManifestEntry,
  ManifestEntrySchema,
  ManifestSchema,
  readRepository,
  type WriteRepositoryOptions,
  writeRepository,
} from './sop/files.js';
export {
  auditedParameters,
  MAX_PARAMETER_BYTES,
  type ParameterInput,
  type ResolvedParameters,
  redactSecrets,
  resolveParameters,
} from './sop/params.js';
export {
  type AddScriptInput,
  AddScriptInputSchema,
  type ApprovalState,
} from './sop/repository.js';
export {
  decideRolloutEnd,
  type ExecuteRolloutOptions,
  executeRollout,
  type KnownServerState,
  planWaves,
  type RolloutOutcome,
  type RolloutPolicy,
  type RolloutPolicyInput,
  type RolloutTally,
  type ServerOutcome,
  type ServerRunState,
  stopConditionFor,
} from './sop/rollout.js';
export {
  type ExecuteRunOptions,
  ExecuteRunOptionsSchema,
  type PlanRunInput,
  PlanRunInputSchema,
  type ScriptRunResults,
  type ServerRunResult,
} from './sop/run.js';
export {
  type ApproveStepOptions,
  ApproveStepOptionsSchema,
  type DefineRunbookInput,
  DefineRunbookInputSchema,
  type RunbookApi,
  type RunbookEvents,
  runbookContentHash,
  type StartRunbookInput,
  StartRunbookInputSchema,
} from './sop/runbook.js';
export { type ExecuteRunbookOptions, ExecuteRunbookOptionsSchema } from './sop/runbook-steps.js';
export {
  type AddedVersion,
  latestOfEach,
  parseVersionRef,
  revisionKey,
  VERSION_REF_MESSAGE,
  VERSION_REF_PATTERN,
  type Version,
  type VersionRef,
  VersionRefSchema,
  versionOptions,
} from './sop/versioned.js';
export { type CreateStoreOptions, createStore } from './store/create-store.js';
export { createMemoryStore, type MemoryStoreOptions, matchesAuditQuery } from './store/memory-store.js';
export {
  createLocalAdapter,
  type LocalAdapterOptions,
  LocalAdapterOptionsSchema,
} from './transport/local.js';
export { canonicalJson } from './util/canonical-json.js';
export {
  type BuildArgvOptions,
  type BuiltCommand,
  buildArgv,
  quoteArgv,
  quoteShellArg,
  validateCommand,
} from './util/command.js';
export { Mutex } from './util/mutex.js';
export { OutputCollector } from './util/output.js';
export {
  assertNoLinksSync,
  type CreateFileOptions,
  createFileInFolder,
  openFolder,
  type PendingFile,
  readFileInFolder,
  removeFileInFolder,
  type SafeFolder,
  UnsafePathError,
  type UnsafePathReason,
  writeFileInFolder,
  writeFileNoFollow,
} from './util/safe-fs.js';
