import { z } from 'zod';
import { isActionPattern } from '../authz/actions.js';
import {
  AccessGrantFields,
  AccessRequestFields,
  FingerprintSchema,
  KeyInventoryFields,
  KeyRotationPolicyFields,
  LoginSchema,
  PublicKeyLineSchema,
} from './access.js';
import {
  AddressSchema,
  EntityMetaSchema,
  IdSchema,
  LabelsSchema,
  NameSchema,
  PlainDataRecordSchema,
  ProviderSchema,
  TimestampSchema,
} from './common.js';
import { ApiTokenFields } from './http.js';
import {
  ChangeRequestFields,
  ComplianceStandardFields,
  IntegrationFields,
  OutboxFields,
  ScanScheduleFields,
  WebhookEndpointFields,
} from './operations.js';
import { PackageManagerSchema, PatchPolicyFields, PendingPatchSchema } from './patch.js';
import { PatchPlanFields } from './plan.js';
import { RunbookFields, RunbookRunFields } from './runbook.js';
import { ServerSelectorSchema } from './selector.js';
import { ScriptApprovalFields, ScriptFields, ScriptNameSchema, ScriptRunFields } from './sop.js';

/**
 * Each entity has two schemas: `XInputSchema` for what callers pass to `create`/`update`
 * (`id` optional on create; store-managed fields absent) and `XSchema` for what the store
 * returns (with `version`, `createdAt`, `updatedAt`).
 */
function entity<F extends z.ZodRawShape>(fields: F) {
  const input = z.strictObject({ tenantId: IdSchema, id: IdSchema.optional(), ...fields });
  const stored = z.strictObject({ ...EntityMetaSchema.shape, ...fields });
  return { input, stored };
}

export const TenantSchemas = entity({ name: NameSchema, labels: LabelsSchema.default({}) });
export const TenantSchema = TenantSchemas.stored;
export type Tenant = z.infer<typeof TenantSchema>;
export type TenantInput = z.input<typeof TenantSchemas.input>;

export const AccountSchemas = entity({
  name: NameSchema,
  provider: ProviderSchema,
  regions: z.array(z.string().min(1).max(64)).default([]),
  /** Name of the credentials in the SecretStore. Never the secret itself. */
  credentialsRef: z.string().min(1).max(256).optional(),
  labels: LabelsSchema.default({}),
});
export const AccountSchema = AccountSchemas.stored;
export type Account = z.infer<typeof AccountSchema>;
export type AccountInput = z.input<typeof AccountSchemas.input>;

export const OsFamilySchema = z.enum(['debian', 'rhel', 'suse', 'windows', 'unknown']);
export type OsFamily = z.infer<typeof OsFamilySchema>;

export const OsFactsSchema = z.strictObject({
  family: OsFamilySchema,
  /** `ID` from os-release, e.g. `debian`, `ubuntu`, `rocky`. */
  id: z.string().max(64),
  versionId: z.string().max(64).default(''),
  prettyName: z.string().max(256).default(''),
  packageManager: PackageManagerSchema.optional(),
  kernel: z.string().max(256).optional(),
  arch: z.string().max(32).optional(),
});
export type OsFacts = z.infer<typeof OsFactsSchema>;

/**
 * The provider's management agent on a server (the SSM agent on AWS), as discovery last saw it:
 * whether the provider manages the server through it, and the agent's status and version.
 */
export const AgentFactsSchema = z.strictObject({
  /** The agent, e.g. `amazon-ssm-agent`. */
  name: z.string().min(1).max(64),
  /** Whether the provider manages the server through the agent (SSM: a managed instance). */
  managed: z.boolean(),
  /** The provider's word for the agent's state, e.g. SSM's `PingStatus`: `Online`, `ConnectionLost`, `Inactive`. */
  status: z.string().min(1).max(64).optional(),
  version: z.string().min(1).max(64).optional(),
});
export type AgentFacts = z.infer<typeof AgentFactsSchema>;

export const ServerSchemas = entity({
  accountId: IdSchema,
  provider: ProviderSchema,
  region: z.string().min(1).max(64).optional(),
  /** The provider's own id (instance id, VM resource id); for ssh the address. */
  providerId: z.string().min(1).max(512).optional(),
  name: NameSchema,
  address: AddressSchema.optional(),
  port: z.number().int().min(1).max(65535).optional(),
  /** Name of the registered adapter that reaches this server; defaults to the provider. */
  adapter: z.string().min(1).max(64).optional(),
  os: OsFactsSchema.optional(),
  /** The provider's management agent, as discovery last saw it; absent for servers discovery does not own. */
  agent: AgentFactsSchema.optional(),
  labels: LabelsSchema.default({}),
  /**
   * Set by discovery when the provider no longer lists the server (it is kept, never deleted);
   * cleared when it is listed again. Absent for servers discovery does not own.
   */
  goneAt: TimestampSchema.optional(),
});
export const ServerSchema = ServerSchemas.stored;
export type Server = z.infer<typeof ServerSchema>;
export type ServerInput = z.input<typeof ServerSchemas.input>;

export const RaciSchema = z.strictObject({
  responsible: z.array(IdSchema).default([]),
  accountable: z.array(IdSchema).default([]),
  consulted: z.array(IdSchema).default([]),
  informed: z.array(IdSchema).default([]),
});

export const ProjectSchemas = entity({
  name: NameSchema,
  selector: ServerSelectorSchema,
  raci: RaciSchema.optional(),
  labels: LabelsSchema.default({}),
});
export const ProjectSchema = ProjectSchemas.stored;
export type Project = z.infer<typeof ProjectSchema>;
export type ProjectInput = z.input<typeof ProjectSchemas.input>;

export const PrincipalSchemas = entity({
  name: NameSchema,
  kind: z.enum(['human', 'service']),
  /** Employees and contractors are distinct so that policies can treat them differently. */
  affiliation: z.enum(['employee', 'contractor']),
  email: z.email().optional(),
  disabled: z.boolean().default(false),
  labels: LabelsSchema.default({}),
});
export const PrincipalSchema = PrincipalSchemas.stored;
export type Principal = z.infer<typeof PrincipalSchema>;
export type PrincipalInput = z.input<typeof PrincipalSchemas.input>;

/** An action name from the catalogue (`patch.plan`), a family wildcard (`patch.*`) or `*`. */
export const ActionPatternSchema = z
  .string()
  .regex(/^(\*|[a-z]+(\.[a-z-]+)*(\.\*)?)$/, {
    error: 'must be an action like "patch.plan", "patch.*" or "*"',
    abort: true,
  })
  // A name outside the catalogue (`constructor`, a typo) would be a rule that silently never
  // applies: a deny that denies nothing.
  .refine(isActionPattern, { error: (i) => `unknown action ${JSON.stringify(i.input)}` });

export const RoleRuleSchema = z.strictObject({
  effect: z.enum(['allow', 'deny']),
  actions: z.array(ActionPatternSchema).min(1),
  /** Servers the rule covers; absent means the rule is not limited to servers. */
  servers: ServerSelectorSchema.optional(),
  /** Only for these affiliations; absent means any. */
  affiliations: z.array(z.enum(['employee', 'contractor'])).optional(),
  /** Scripts (by name) the rule covers; the rule then applies only to `script` resources. */
  scripts: z.array(ScriptNameSchema).min(1).optional(),
  /**
   * The rule applies only when the actor verified MFA at most this many minutes ago
   * (`Actor.mfaVerifiedAt`), e.g. for approvals.
   */
  mfaWithinMinutes: z
    .number()
    .int()
    .min(1)
    .max(24 * 60)
    .optional(),
});
export type RoleRule = z.infer<typeof RoleRuleSchema>;

export const RoleSchemas = entity({
  name: NameSchema,
  description: z.string().max(2000).optional(),
  rules: z.array(RoleRuleSchema).min(1),
});
export const RoleSchema = RoleSchemas.stored;
export type Role = z.infer<typeof RoleSchema>;
export type RoleInput = z.input<typeof RoleSchemas.input>;

export const RoleBindingSchemas = entity({
  principalId: IdSchema,
  roleId: IdSchema,
  /** Limit the binding to servers of these projects; absent means tenant-wide. */
  projectIds: z.array(IdSchema).optional(),
  expiresAt: TimestampSchema.optional(),
});
export const RoleBindingSchema = RoleBindingSchemas.stored;
export type RoleBinding = z.infer<typeof RoleBindingSchema>;
export type RoleBindingInput = z.input<typeof RoleBindingSchemas.input>;

export const PatchPolicySchemas = entity(PatchPolicyFields);
export const PatchPolicySchema = PatchPolicySchemas.stored;
export type PatchPolicy = z.infer<typeof PatchPolicySchema>;
export type PatchPolicyInput = z.input<typeof PatchPolicySchemas.input>;

export const PatchPlanSchemas = entity(PatchPlanFields);
export const PatchPlanSchema = PatchPlanSchemas.stored;
export type PatchPlan = z.infer<typeof PatchPlanSchema>;
export type PatchPlanInput = z.input<typeof PatchPlanSchemas.input>;

export const ScriptSchemas = entity({ ...ScriptFields, osFamilies: z.array(OsFamilySchema).default([]) });
export const ScriptSchema = ScriptSchemas.stored;
export type Script = z.infer<typeof ScriptSchema>;
export type ScriptInput = z.input<typeof ScriptSchemas.input>;

export const ScriptApprovalSchemas = entity(ScriptApprovalFields);
export const ScriptApprovalSchema = ScriptApprovalSchemas.stored;
export type ScriptApproval = z.infer<typeof ScriptApprovalSchema>;
export type ScriptApprovalInput = z.input<typeof ScriptApprovalSchemas.input>;

export const ScriptRunSchemas = entity(ScriptRunFields);
export const ScriptRunSchema = ScriptRunSchemas.stored;
export type ScriptRun = z.infer<typeof ScriptRunSchema>;
export type ScriptRunInput = z.input<typeof ScriptRunSchemas.input>;

export const RunbookSchemas = entity(RunbookFields);
export const RunbookSchema = RunbookSchemas.stored;
export type Runbook = z.infer<typeof RunbookSchema>;
export type RunbookInput = z.input<typeof RunbookSchemas.input>;

export const RunbookRunSchemas = entity(RunbookRunFields);
export const RunbookRunSchema = RunbookRunSchemas.stored;
export type RunbookRun = z.infer<typeof RunbookRunSchema>;
export type RunbookRunInput = z.input<typeof RunbookRunSchemas.input>;

export const JobStatusSchema = z.enum([
  'pending',
  'running',
  'succeeded',
  'failed',
  'partial',
  'stopped',
  'cancelled',
]);
export type JobStatus = z.infer<typeof JobStatusSchema>;

export const JobSchemas = entity({
  kind: z.enum(['scan', 'patch', 'script', 'key-rotation', 'access']),
  status: JobStatusSchema,
  requestedBy: IdSchema,
  serverIds: z.array(IdSchema),
  startedAt: TimestampSchema.optional(),
  finishedAt: TimestampSchema.optional(),
  summary: z
    .strictObject({ total: z.number().int(), succeeded: z.number().int(), failed: z.number().int() })
    .optional(),
  reason: z.string().max(2000).optional(),
});
export const JobSchema = JobSchemas.stored;
export type Job = z.infer<typeof JobSchema>;
export type JobInput = z.input<typeof JobSchemas.input>;

/** How much output was kept, and how to tell whether it was all of it. */
export const OutputSummarySchema = z.strictObject({
  /** The kept text (at most the cap). */
  text: z.string(),
  /** Bytes the command actually wrote, including what was not kept. */
  bytes: z.number().int().min(0),
  /** sha256 (hex) over all bytes written, kept or not. */
  sha256: z.string().regex(/^[a-f0-9]{64}$/),
  truncated: z.boolean(),
});
export type OutputSummary = z.infer<typeof OutputSummarySchema>;

export const TaskErrorSchema = z.strictObject({ code: z.string(), message: z.string() });

export const TaskResultSchemas = entity({
  jobId: IdSchema,
  serverId: IdSchema,
  status: z.enum(['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled']),
  attempt: z.number().int().min(0).default(0),
  startedAt: TimestampSchema.optional(),
  finishedAt: TimestampSchema.optional(),
  exitCode: z.number().int().nullable().optional(),
  stdout: OutputSummarySchema.optional(),
  stderr: OutputSummarySchema.optional(),
  error: TaskErrorSchema.optional(),
  /** The step a multi-step task is at (`preflight`, `install`, `reboot`, …). */
  step: z.string().max(64).optional(),
  /** Step-specific facts a resumed run needs (boot id before reboot, snapshot id, …). */
  details: PlainDataRecordSchema.optional(),
});
export const TaskResultSchema = TaskResultSchemas.stored;
export type TaskResult = z.infer<typeof TaskResultSchema>;
export type TaskResultInput = z.input<typeof TaskResultSchemas.input>;

export const ScanResultSchemas = entity({
  serverId: IdSchema,
  jobId: IdSchema.optional(),
  scannedAt: TimestampSchema,
  status: z.enum(['succeeded', 'failed']),
  os: OsFactsSchema.optional(),
  packageManager: PackageManagerSchema.optional(),
  patches: z.array(PendingPatchSchema).default([]),
  rebootRequired: z.boolean().default(false),
  /** Packages whose update needs the reboot, where the OS says (`/var/run/reboot-required.pkgs`). */
  rebootPackages: z.array(z.string()).default([]),
  /**
   * The last time a scan saw pending packages disappear (they were installed), carried forward
   * from scan to scan; absent until that has been observed.
   */
  lastUpdatedAt: TimestampSchema.optional(),
  /** Non-fatal remarks from the package manager (warnings, skipped repositories). */
  warnings: z.array(z.string()).default([]),
  error: TaskErrorSchema.optional(),
});
export const ScanResultSchema = ScanResultSchemas.stored;
export type ScanResult = z.infer<typeof ScanResultSchema>;
export type ScanResultInput = z.input<typeof ScanResultSchemas.input>;

export const CredentialSchemas = entity({
  kind: z.literal('ssh-key'),
  /** OpenSSH public key line: `type base64 [comment]`. */
  publicKey: PublicKeyLineSchema,
  fingerprint: FingerprintSchema,
  /** The one principal responsible for this key. Exactly one, always. */
  caretakerId: IdSchema,
  login: LoginSchema,
  /** Where the private key lives in the SecretStore, if Fleetward holds it. */
  secretRef: z.string().min(1).max(256).optional(),
  serverIds: z.array(IdSchema).default([]),
  /** `rotating` while a rotation is between adding the new key and retiring the old one. */
  status: z.enum(['active', 'rotating', 'retired']).default('active'),
  /** The key this one replaced, kept for the audit trail. */
  previousFingerprint: FingerprintSchema.optional(),
  rotatedAt: TimestampSchema.optional(),
  expiresAt: TimestampSchema.optional(),
});
export const CredentialSchema = CredentialSchemas.stored;
export type Credential = z.infer<typeof CredentialSchema>;
export type CredentialInput = z.input<typeof CredentialSchemas.input>;

export const AccessRequestSchemas = entity(AccessRequestFields);
export const AccessRequestSchema = AccessRequestSchemas.stored;
export type AccessRequest = z.infer<typeof AccessRequestSchema>;
export type AccessRequestInput = z.input<typeof AccessRequestSchemas.input>;

export const AccessGrantSchemas = entity(AccessGrantFields);
export const AccessGrantSchema = AccessGrantSchemas.stored;
export type AccessGrant = z.infer<typeof AccessGrantSchema>;
export type AccessGrantInput = z.input<typeof AccessGrantSchemas.input>;

export const KeyRotationPolicySchemas = entity(KeyRotationPolicyFields);
export const KeyRotationPolicySchema = KeyRotationPolicySchemas.stored;
export type KeyRotationPolicy = z.infer<typeof KeyRotationPolicySchema>;
export type KeyRotationPolicyInput = z.input<typeof KeyRotationPolicySchemas.input>;

export const KeyInventorySchemas = entity(KeyInventoryFields);
export const KeyInventorySchema = KeyInventorySchemas.stored;
export type KeyInventory = z.infer<typeof KeyInventorySchema>;
export type KeyInventoryInput = z.input<typeof KeyInventorySchemas.input>;

export const ComplianceStandardSchemas = entity(ComplianceStandardFields);
export const ComplianceStandardSchema = ComplianceStandardSchemas.stored;
export type ComplianceStandard = z.infer<typeof ComplianceStandardSchema>;
export type ComplianceStandardInput = z.input<typeof ComplianceStandardSchemas.input>;

export const ScanScheduleSchemas = entity(ScanScheduleFields);
export const ScanScheduleSchema = ScanScheduleSchemas.stored;
export type ScanSchedule = z.infer<typeof ScanScheduleSchema>;
export type ScanScheduleInput = z.input<typeof ScanScheduleSchemas.input>;

export const WebhookEndpointSchemas = entity(WebhookEndpointFields);
export const WebhookEndpointSchema = WebhookEndpointSchemas.stored;
export type WebhookEndpoint = z.infer<typeof WebhookEndpointSchema>;
export type WebhookEndpointInput = z.input<typeof WebhookEndpointSchemas.input>;

export const OutboxSchemas = entity(OutboxFields);
export const OutboxMessageSchema = OutboxSchemas.stored;
export type OutboxMessage = z.infer<typeof OutboxMessageSchema>;
export type OutboxMessageInput = z.input<typeof OutboxSchemas.input>;

export const IntegrationSchemas = entity(IntegrationFields);
export const IntegrationSchema = IntegrationSchemas.stored;
export type Integration = z.infer<typeof IntegrationSchema>;
export type IntegrationInput = z.input<typeof IntegrationSchemas.input>;

export const ChangeRequestSchemas = entity(ChangeRequestFields);
export const ChangeRequestSchema = ChangeRequestSchemas.stored;
export type ChangeRequest = z.infer<typeof ChangeRequestSchema>;
export type ChangeRequestInput = z.input<typeof ChangeRequestSchemas.input>;

export const ApiTokenSchemas = entity(ApiTokenFields);
export const ApiTokenSchema = ApiTokenSchemas.stored;
export type ApiToken = z.infer<typeof ApiTokenSchema>;
export type ApiTokenInput = z.input<typeof ApiTokenSchemas.input>;

/** Every kind of stored entity, with its schemas; stores and the conformance suite iterate it. */
export const ENTITY_SCHEMAS = {
  tenants: TenantSchemas,
  accounts: AccountSchemas,
  servers: ServerSchemas,
  projects: ProjectSchemas,
  principals: PrincipalSchemas,
  roles: RoleSchemas,
  roleBindings: RoleBindingSchemas,
  patchPolicies: PatchPolicySchemas,
  patchPlans: PatchPlanSchemas,
  scripts: ScriptSchemas,
  scriptApprovals: ScriptApprovalSchemas,
  scriptRuns: ScriptRunSchemas,
  runbooks: RunbookSchemas,
  runbookRuns: RunbookRunSchemas,
  jobs: JobSchemas,
  taskResults: TaskResultSchemas,
  scanResults: ScanResultSchemas,
  credentials: CredentialSchemas,
  accessRequests: AccessRequestSchemas,
  accessGrants: AccessGrantSchemas,
  keyRotationPolicies: KeyRotationPolicySchemas,
  keyInventories: KeyInventorySchemas,
  complianceStandards: ComplianceStandardSchemas,
  scanSchedules: ScanScheduleSchemas,
  webhookEndpoints: WebhookEndpointSchemas,
  outbox: OutboxSchemas,
  integrations: IntegrationSchemas,
  changeRequests: ChangeRequestSchemas,
  apiTokens: ApiTokenSchemas,
} as const;
export type EntityKind = keyof typeof ENTITY_SCHEMAS;
export const ENTITY_KINDS = Object.keys(ENTITY_SCHEMAS) as EntityKind[];

/** Each kind in words, as messages name it (`patch policy "x" not found`). */
export const ENTITY_NOUNS: Readonly<Record<EntityKind, string>> = {
  tenants: 'tenant',
  accounts: 'account',
  servers: 'server',
  projects: 'project',
  principals: 'principal',
  roles: 'role',
  roleBindings: 'role binding',
  patchPolicies: 'patch policy',
  patchPlans: 'patch plan',
  scripts: 'script',
  scriptApprovals: 'script approval',
  scriptRuns: 'script run',
  runbooks: 'runbook',
  runbookRuns: 'runbook run',
  jobs: 'job',
  taskResults: 'task result',
  scanResults: 'scan result',
  credentials: 'credential',
  accessRequests: 'access request',
  accessGrants: 'access grant',
  keyRotationPolicies: 'key rotation policy',
  keyInventories: 'key inventory',
  complianceStandards: 'compliance standard',
  scanSchedules: 'scan schedule',
  webhookEndpoints: 'webhook endpoint',
  outbox: 'outbox message',
  integrations: 'integration',
  changeRequests: 'change request',
  apiTokens: 'API token',
};

export interface EntityTypes {
  tenants: Tenant;
  accounts: Account;
  servers: Server;
  projects: Project;
  principals: Principal;
  roles: Role;
  roleBindings: RoleBinding;
  patchPolicies: PatchPolicy;
  patchPlans: PatchPlan;
  scripts: Script;
  scriptApprovals: ScriptApproval;
  scriptRuns: ScriptRun;
  runbooks: Runbook;
  runbookRuns: RunbookRun;
  jobs: Job;
  taskResults: TaskResult;
  scanResults: ScanResult;
  credentials: Credential;
  accessRequests: AccessRequest;
  accessGrants: AccessGrant;
  keyRotationPolicies: KeyRotationPolicy;
  keyInventories: KeyInventory;
  complianceStandards: ComplianceStandard;
  scanSchedules: ScanSchedule;
  webhookEndpoints: WebhookEndpoint;
  outbox: OutboxMessage;
  integrations: Integration;
  changeRequests: ChangeRequest;
  apiTokens: ApiToken;
}
export type EntityInputs = { [K in EntityKind]: z.input<(typeof ENTITY_SCHEMAS)[K]['input']> };

/** Fields a store can filter on with equality (`where`), per entity kind. */
export const INDEXED_FIELDS: { [K in EntityKind]: readonly (keyof EntityTypes[K] & string)[] } = {
  tenants: [],
  accounts: ['provider'],
  servers: ['accountId', 'provider', 'region', 'name'],
  projects: ['name'],
  principals: ['kind', 'affiliation'],
  roles: ['name'],
  roleBindings: ['principalId', 'roleId'],
  patchPolicies: ['projectId'],
  patchPlans: ['projectId', 'policyId', 'status'],
  scripts: ['name', 'contentHash'],
  scriptApprovals: ['scriptName', 'contentHash'],
  scriptRuns: ['scriptName', 'contentHash', 'status', 'jobId'],
  runbooks: ['name', 'contentHash'],
  runbookRuns: ['runbookName', 'contentHash', 'status', 'startedBy'],
  jobs: ['kind', 'status'],
  taskResults: ['jobId', 'serverId', 'status'],
  scanResults: ['serverId', 'jobId', 'status'],
  credentials: ['caretakerId', 'fingerprint', 'login'],
  accessRequests: ['requesterId', 'status'],
  accessGrants: ['requestId', 'principalId', 'status'],
  keyRotationPolicies: ['projectId'],
  keyInventories: ['serverId'],
  complianceStandards: ['projectId'],
  scanSchedules: ['projectId', 'enabled'],
  webhookEndpoints: ['disabled'],
  outbox: ['status', 'channel', 'destinationId'],
  integrations: ['kind'],
  changeRequests: ['projectId', 'pendingSetHash', 'status'],
  apiTokens: ['tokenHash', 'principalId'],
};

export { PendingPatchSchema };
