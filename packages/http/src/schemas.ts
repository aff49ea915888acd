import {
  AccessGrantSchema,
  AccessRequestSchema,
  AccountSchema,
  AccountSchemas,
  ApiTokenSchema,
  AuditCheckpointSchema,
  AuditRecordSchema,
  ComplianceReportDataSchema,
  ComplianceStandardSchema,
  ComplianceStandardSchemas,
  type ComplianceSummaryResult,
  CredentialSchema,
  JobSchema,
  KeyInventorySchema,
  KeyRotationPolicySchema,
  PatchCategorySchema,
  PatchPlanSchema,
  PatchPolicySchema,
  PatchPolicySchemas,
  PrincipalSchema,
  PrincipalSchemas,
  ProjectSchema,
  ProjectSchemas,
  RoleBindingSchema,
  ScanResultSchema,
  ScriptApprovalSchema,
  ScriptRunSchema,
  ScriptSchema,
  type ServerEvaluation as SdkServerEvaluation,
  ServerSchema,
  ServerSchemas,
  SeveritySchema,
  TargetsSchema,
  TimestampSchema,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { openapi } from './zod-openapi.js';

// Stored entities come straight from the SDK's schemas; `openapi(schema, name)` only names them for
// the document (components/schemas), parsing is unchanged.
export const Server = openapi(ServerSchema, 'Server');
export const Account = openapi(AccountSchema, 'Account');
export const Project = openapi(ProjectSchema, 'Project');
export const Principal = openapi(PrincipalSchema, 'Principal');
export const RoleBinding = openapi(RoleBindingSchema, 'RoleBinding');
export const PatchPolicy = openapi(PatchPolicySchema, 'PatchPolicy');
export const PatchPlan = openapi(PatchPlanSchema, 'PatchPlan');
export const Job = openapi(JobSchema, 'Job');
export const ScanResult = openapi(ScanResultSchema, 'ScanResult');
export const ComplianceStandard = openapi(ComplianceStandardSchema, 'ComplianceStandard');
export const ComplianceReportData = openapi(ComplianceReportDataSchema, 'ComplianceReportData');
export const AuditRecord = openapi(AuditRecordSchema, 'AuditRecord');
export const Targets = openapi(TargetsSchema, 'Targets');
export const ApiToken = openapi(ApiTokenSchema.omit({ tokenHash: true }), 'ApiToken');
export const AccessRequest = openapi(AccessRequestSchema, 'AccessRequest');
export const AccessGrant = openapi(AccessGrantSchema, 'AccessGrant');
export const Credential = openapi(CredentialSchema, 'Credential');
export const KeyRotationPolicy = openapi(KeyRotationPolicySchema, 'KeyRotationPolicy');
export const KeyInventory = openapi(KeyInventorySchema, 'KeyInventory');
export const Script = openapi(ScriptSchema, 'Script');
export const ScriptApproval = openapi(ScriptApprovalSchema, 'ScriptApproval');
export const ScriptRun = openapi(ScriptRunSchema, 'ScriptRun');
export const AuditCheckpoint = openapi(AuditCheckpointSchema, 'AuditCheckpoint');

/**
 * `true` when A and B are the same type. Where the SDK returns a TypeScript interface rather than
 * a schema, the API mirrors it in zod and pins the mirror with `const same: Same<…> = true`, so the
 * build fails when the two drift apart.
 */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

type Shape = z.ZodRawShape;
type Unwrapped<T> = T extends z.ZodDefault<infer Inner> ? Inner : T;
type ChangeShape<S extends Shape, Omitted extends keyof S> = {
  [K in Exclude<keyof S, Omitted>]: S[K] extends z.ZodOptional<z.ZodType> | z.ZodDefault<z.ZodType>
    ? z.ZodOptional<z.ZodNullable<Unwrapped<S[K]>>>
    : z.ZodOptional<Unwrapped<S[K]>>;
};

/**
 * The body of a PATCH: every field optional, nothing defaulted (a default would overwrite the
 * stored value of a field the caller did not send), and `null` clears an optional field as in
 * JSON Merge Patch. `expectedVersion` is required: no write may silently undo another.
 */
export function changesSchema<S extends Shape, const Omitted extends keyof S & string>(
  input: z.ZodObject<S>,
  omit: readonly Omitted[],
) {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(input.shape) as [string, z.ZodType][]) {
    if ((omit as readonly string[]).includes(key)) continue;
    const clearable = field instanceof z.ZodOptional || field instanceof z.ZodDefault;
    const inner = field instanceof z.ZodDefault ? (field.unwrap() as z.ZodType) : field;
    shape[key] = (clearable ? inner.nullable() : inner).optional();
  }
  return z.strictObject({
    ...(shape as ChangeShape<S, Omitted>),
    expectedVersion: z.number().int().positive().openapi({ description: 'The version the caller read.' }),
  });
}

/** Splits a PATCH body into the SDK's `changes` (nulls become "unset") and `expectedVersion`. */
export function splitChanges<T extends { expectedVersion: number }>(body: T) {
  const { expectedVersion, ...rest } = body;
  const changes = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v === null ? undefined : v]));
  return {
    expectedVersion,
    changes: changes as { [K in keyof typeof rest]: Exclude<(typeof rest)[K], null> },
  };
}

const omitTenant = { tenantId: true } as const;
export const ServerInput = ServerSchemas.input.omit(omitTenant).openapi('ServerInput');
export const ServerChanges = changesSchema(ServerSchemas.input, ['tenantId', 'id']).openapi('ServerChanges');
export const AccountInput = AccountSchemas.input.omit(omitTenant).openapi('AccountInput');
export const ProjectInput = ProjectSchemas.input.omit(omitTenant).openapi('ProjectInput');
export const ProjectChanges = changesSchema(ProjectSchemas.input, ['tenantId', 'id']).openapi(
  'ProjectChanges',
);
export const PrincipalInput = PrincipalSchemas.input.omit(omitTenant).openapi('PrincipalInput');
export const PatchPolicyInput = PatchPolicySchemas.input.omit(omitTenant).openapi('PatchPolicyInput');
export const PatchPolicyChanges = changesSchema(PatchPolicySchemas.input, ['tenantId', 'id']).openapi(
  'PatchPolicyChanges',
);
export const ComplianceStandardInput = ComplianceStandardSchemas.input
  .omit(omitTenant)
  .openapi('ComplianceStandardInput');
export const ComplianceStandardChanges = changesSchema(ComplianceStandardSchemas.input, [
  'tenantId',
  'id',
]).openapi('ComplianceStandardChanges');

// The compliance results are TypeScript interfaces in the SDK, not schemas. These mirror them, and
// the type checks below fail the build when the two drift apart.
const ComplianceStatus = z.enum(['compliant', 'non-compliant', 'unknown']);

export const ServerEvaluation = z
  .strictObject({
    serverId: z.string(),
    status: ComplianceStatus,
    results: z.array(
      z.strictObject({
        standardId: z.string(),
        name: z.string(),
        status: ComplianceStatus,
        reasons: z.array(
          z.strictObject({
            message: z.string(),
            patches: z
              .array(
                z.strictObject({
                  name: z.string(),
                  candidateVersion: z.string(),
                  category: PatchCategorySchema,
                  severity: SeveritySchema,
                  firstSeenAt: z.string(),
                  ageDays: z.number(),
                  held: z.boolean().optional(),
                }),
              )
              .optional(),
            since: z.string().optional(),
          }),
        ),
        failingSince: z.string().optional(),
        alert: z.boolean(),
        alertSince: z.string().optional(),
      }),
    ),
    projectIds: z.array(z.string()),
    lastScannedAt: z.string().optional(),
    lastUpdatedAt: z.string().optional(),
    lastFailedScanAt: z.string().optional(),
    alert: z.boolean(),
    alertSince: z.string().optional(),
  })
  .openapi('ServerEvaluation');

const counts = {
  total: z.number().int(),
  compliant: z.number().int(),
  nonCompliant: z.number().int(),
  unknown: z.number().int(),
  percent: z.strictObject({ compliant: z.number(), nonCompliant: z.number(), unknown: z.number() }),
  alerts: z.number().int(),
};
const ComplianceGroup = z.strictObject({
  ...counts,
  key: z.string().nullable(),
  label: z.string(),
  oldestLastScannedAt: z.string().optional(),
  neverScanned: z.number().int(),
  oldestLastUpdatedAt: z.string().optional(),
  neverUpdated: z.number().int(),
});

export const ComplianceSummary = z
  .strictObject({
    generatedAt: TimestampSchema,
    projectId: z.string().optional(),
    overall: ComplianceGroup,
    byProject: z.array(ComplianceGroup),
    byAccount: z.array(ComplianceGroup),
    byRegion: z.array(ComplianceGroup),
    byProvider: z.array(ComplianceGroup),
    byOs: z.array(ComplianceGroup),
    byStandard: z.array(z.strictObject({ ...counts, standardId: z.string(), name: z.string() })),
    alerts: z.array(
      z.strictObject({
        serverId: z.string(),
        serverName: z.string(),
        alertSince: z.string(),
        standardIds: z.array(z.string()),
      }),
    ),
  })
  .openapi('ComplianceSummary');

const sameEvaluation: Same<z.infer<typeof ServerEvaluation>, SdkServerEvaluation> = true;
const sameSummary: Same<z.infer<typeof ComplianceSummary>, ComplianceSummaryResult> = true;
void sameEvaluation;
void sameSummary;

/** A page of a list, in id order. */
export function pageOf<S extends z.ZodType>(item: S) {
  return z.strictObject({
    items: z.array(item),
    next: z
      .string()
      .nullable()
      .openapi({ description: 'Pass as `cursor` for the next page; `null` on the last page.' }),
  });
}
