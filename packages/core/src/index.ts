export {
  type AccessApi,
  type AccessOptions,
  AccessOptionsSchema,
  type AccessRequestOptions,
  AccessRequestOptionsSchema,
  createAccessApi,
  type SweepResult,
  sweepAccess,
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
export { installGrantOn, removeGrantFrom } from './access/grants.js';
export { type GeneratedKeyPair, generateEd25519KeyPair } from './access/keygen.js';
export {
  createKeysApi,
  credentialSecretRef,
  type DueCredential,
  dueCredentials,
  type KeysApi,
  managedCredentials,
  type RegisterCredentialInput,
} from './access/keys.js';
export {
  type RotationOptions,
  type RotationReport,
  rotateCredential,
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
export { type AuditApi, auditRecords, createAuditApi, type VerifyAuditLogOptions } from './audit/api.js';
export type { AuditChainProblem, AuditChainVerification } from './audit/chain.js';
export { auditRecordHash, GENESIS_HASH, verifyAuditChain } from './audit/chain.js';
export {
  AUDIT_CHECKPOINT_FORMAT,
  type AuditCheckpoint,
  type AuditCheckpointHead,
  AuditCheckpointHeadSchema,
  AuditCheckpointSchema,
  auditSigningKeyId,
  generateAuditSigningKey,
  signAuditCheckpoint,
  verifyAuditCheckpoint,
} from './audit/checkpoint.js';
export {
  AUDIT_COLUMNS,
  type AuditColumnMismatch,
  auditColumnMismatches,
  auditColumnsOf,
} from './audit/columns.js';
export {
  AUDIT_EXPORT_FORMAT,
  AUDIT_EXPORT_MAX_LINE,
  type AuditExportHeader,
  AuditExportHeaderSchema,
  type AuditLogVerification,
  type AuditProblem,
  type ExportAuditLogInput,
  exportAuditLog,
  type VerifyAuditExportOptions,
  type VerifyAuditRecordsOptions,
  type VerifyStoredAuditRowsOptions,
  verifyAuditExport,
  verifyAuditRecords,
  verifyStoredAuditRows,
} from './audit/export.js';
export {
  type AccessAuditAccess,
  type AccessAuditAction,
  type AccessAuditCommand,
  type AccessAuditCoverage,
  type AccessAuditDenial,
  type AccessAuditInput,
  type AccessAuditKey,
  type AccessAuditPeriod,
  type AccessAuditPerson,
  type AccessAuditReport,
  type AccessAuditRotation,
  type AccessAuditScript,
  type AccessAuditTotals,
  type AccessVia,
  buildAccessAuditReport,
  buildAccessAuditReportAsync,
  type KeyKind,
  type KeyNeeded,
} from './audit/report.js';
export {
  ACCESS_AUDIT_CSV_TABLES,
  type AccessAuditCsvTable,
  type RenderAccessAuditCsvOptions,
  RenderAccessAuditCsvOptionsSchema,
  type RenderAccessAuditHtmlOptions,
  RenderAccessAuditHtmlOptionsSchema,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
} from './audit/report-render.js';
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
  type ComplianceSummaryOptions,
  ComplianceSummaryOptionsSchema,
  type ComplianceSummaryResult,
  createComplianceApi,
  type LatestScans,
  loadLatestScans,
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
  summarize,
} from './compliance/summary.js';
export * from './domain/index.js';
export * from './domain/runbook.js';
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
export {
  type BuildChangeRequestInput,
  buildChangeRequest,
  type ChangeRequestPatchSource,
  pendingSetHash,
  type ServerPendingPatches,
} from './integrations/change-request.js';
export { createEmailDelivery } from './integrations/email.js';
export { type FetchLike, idempotencyTag } from './integrations/http.js';
export {
  type AdfDoc,
  type AdfNode,
  buildJiraDescription,
  createJiraIntegration,
  type JiraIntegrationOptions,
  plainTextToAdf,
} from './integrations/jira.js';
export { createTicketDelivery, requestChangesForScan } from './integrations/requests.js';
export {
  createServiceNowIntegration,
  type ServiceNowIntegrationOptions,
  toServiceNowDateTime,
} from './integrations/servicenow.js';
export { createSmtpSender, type SmtpSenderOptions } from './integrations/smtp.js';
export {
  type ChangeRequestPatch,
  type ChangeRequestPayload,
  type ChangeRequestReceipt,
  type EmailAttachment,
  type EmailMessage,
  type EmailSender,
  IntegrationError,
  type IntegrationErrorOptions,
  type IntegrationKind,
  type OpenChangeRequestOptions,
  type TicketingIntegration,
} from './integrations/types.js';
export { resolveTargets, type Targets, TargetsSchema } from './inventory/targets.js';
export {
  type AddWebhookInput,
  AddWebhookInputSchema,
  createNotifyApi,
  type NotifyApi,
  type RotateWebhookSecretOptions,
  RotateWebhookSecretOptionsSchema,
  type WebhookEndpointWithSecret,
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
  type EnqueueEventInput,
  type EnqueueInput,
  enqueue,
  enqueueEvent,
  eventMatches,
  listParked,
  newDeliveryId,
  recordEvent,
  replayMessage,
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
export { buildComplianceReport, emailComplianceReport, type ReportScopeInput } from './report/build.js';
export * from './report/index.js';
export {
  createScanScheduler,
  latestSlot,
  ScanScheduler,
  type SchedulerOptions,
  type SchedulerTickResult,
} from './schedule/scheduler.js';
export {
  FileSecretStore,
  type FileSecretStoreOptions,
  openFileSecretStore,
  SecretStoreError,
  type SecretStoreFailure,
} from './secrets/file-secret-store.js';
export {
  type ApproveScriptOptions,
  ApproveScriptOptionsSchema,
  createScriptApi,
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
  BOOT_ID_COMMAND,
  REBOOT_SCRIPT,
  type RebootProgress,
  type VerifiedRebootOptions,
  verifiedReboot,
} from './sop/reboot.js';
export {
  type AddScriptInput,
  AddScriptInputSchema,
  type ApprovalState,
  approvalState,
} from './sop/repository.js';
export {
  type ExecuteRolloutOptions,
  executeRollout,
  type KnownServerState,
  planWaves,
  type RolloutOutcome,
  type RolloutPolicy,
  type RolloutPolicyInput,
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
  createRunbookApi,
  type DefineRunbookInput,
  DefineRunbookInputSchema,
  findRunbookVersion,
  type RunbookApi,
  type RunbookEvents,
  runbookContentHash,
  type StartRunbookInput,
  StartRunbookInputSchema,
} from './sop/runbook.js';
export { type ExecuteRunbookOptions, ExecuteRunbookOptionsSchema } from './sop/runbook-steps.js';
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
export {
  assertNoLinksSync,
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
