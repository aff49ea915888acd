import type { AccessAuditReport } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import type { Same } from './schemas.js';

// The access audit report is a TypeScript interface in the SDK, not a schema. This mirrors it for
// the OpenAPI document, and the type check at the end fails the build when the two drift apart.

const Affiliation = z.enum(['employee', 'contractor']);
const KeyKind = z.enum(['managed', 'granted', 'user-ca', 'cloud-agent', 'unmanaged']);
const KeyNeeded = z.enum(['yes', 'review', 'no']);

const Person = z.strictObject({
  principalId: z.string(),
  name: z.string(),
  affiliation: Affiliation.optional(),
  disabled: z.boolean(),
  known: z.boolean(),
});

const Period = z.strictObject({
  since: z.string().optional(),
  until: z.string(),
  records: z.number().int(),
  firstRecordAt: z.string().optional(),
  lastRecordAt: z.string().optional(),
});

const Totals = z.strictObject({
  records: z.number().int(),
  denied: z.number().int(),
  failed: z.number().int(),
  principalsActive: z.number().int(),
  scriptRuns: z.number().int(),
  servers: z.number().int(),
  serversInventoried: z.number().int(),
  loginsSeen: z.number().int(),
  unmatchedAccess: z.number().int(),
  keys: z.number().int(),
  keysByKind: z.record(KeyKind, z.number().int()),
  keysNeeded: z.record(KeyNeeded, z.number().int()),
  credentials: z.number().int(),
  rotationOverdue: z.number().int(),
  rotationWithoutPolicy: z.number().int(),
});

const ActionCount = z.strictObject({
  action: z.string(),
  count: z.number().int(),
  denied: z.number().int(),
  failed: z.number().int(),
  principals: z.number().int(),
});

const ScriptCount = z.strictObject({
  script: z.string(),
  contentHash: z.string().optional(),
  contentHashes: z.array(z.string()),
  runs: z.number().int(),
  failedRuns: z.number().int(),
  serverRuns: z.number().int(),
  serverFailures: z.number().int(),
  denied: z.number().int(),
  principalIds: z.array(z.string()),
  lastRunAt: z.string().optional(),
});

const CommandCount = z.strictObject({
  command: z.string(),
  count: z.number().int(),
  principals: z.number().int(),
  lastAt: z.string(),
});

const Denial = z.strictObject({
  principalId: z.string(),
  name: z.string(),
  affiliation: Affiliation.optional(),
  action: z.string(),
  count: z.number().int(),
  firstAt: z.string(),
  lastAt: z.string(),
  lastReason: z.string(),
  serverIds: z.array(z.string()),
});

const Access = z.strictObject({
  principalId: z.string().optional(),
  name: z.string(),
  affiliation: Affiliation.optional(),
  disabled: z.boolean(),
  serverId: z.string(),
  serverName: z.string(),
  via: z.enum(['grant', 'role', 'managed-key', 'unknown-key', 'unattributed']),
  grantIds: z.array(z.string()),
  credentialId: z.string().optional(),
  fingerprints: z.array(z.string()),
  remoteUsers: z.array(z.string()),
  loginsSeen: z.number().int(),
  untimedLogins: z.number().int(),
  actions: z.number().int(),
  firstAt: z.string().optional(),
  lastAt: z.string().optional(),
  matchedRole: z.boolean(),
  explanation: z.string(),
});

const Key = z.strictObject({
  serverId: z.string(),
  serverName: z.string(),
  login: z.string(),
  fingerprint: z.string(),
  keyType: z.string(),
  comment: z.string(),
  kind: KeyKind,
  credentialId: z.string().optional(),
  grantId: z.string().optional(),
  owner: Person.extend({ relation: z.enum(['caretaker', 'grantee', 'requester']) }).optional(),
  expiryTime: z.string().optional(),
  logins: z.number().int(),
  lastUsedAt: z.string().optional(),
  needed: KeyNeeded,
  why: z.string(),
});

const Rotation = z.strictObject({
  credentialId: z.string(),
  login: z.string(),
  fingerprint: z.string(),
  status: z.enum(['active', 'rotating', 'retired']),
  caretaker: Person,
  servers: z.number().int(),
  registeredAt: z.string(),
  lastRotatedAt: z.string().optional(),
  ageDays: z.number().int(),
  policyProjectId: z.string().optional(),
  policyIntervalHours: z.number().int().optional(),
  dueAt: z.string().optional(),
  overdue: z.boolean(),
  lastAttempt: z
    .strictObject({
      at: z.string(),
      step: z.string(),
      result: z.enum(['success', 'failure', 'denied', 'started']),
      reason: z.string().optional(),
    })
    .optional(),
  why: z.string(),
});

const Coverage = z.strictObject({
  serverId: z.string(),
  serverName: z.string(),
  status: z.enum(['succeeded', 'failed', 'missing']),
  scannedAt: z.string().optional(),
  logSource: z.string().optional(),
  earliestLoginAt: z.string().optional(),
  keys: z.number().int(),
  logins: z.number().int(),
  error: z.string().optional(),
});

/** The post-action access audit (`session.audit.accessReport()`), as JSON. */
export const AccessAuditReportSchema = z
  .strictObject({
    tenantId: z.string(),
    tenantName: z.string().optional(),
    generatedAt: z.string(),
    unusedAfterDays: z.number().int(),
    period: Period,
    totals: Totals,
    topActions: z.array(ActionCount),
    topScripts: z.array(ScriptCount),
    topCommands: z.array(CommandCount),
    denials: z.array(Denial),
    access: z.array(Access),
    keys: z.array(Key),
    rotation: z.array(Rotation),
    coverage: z.array(Coverage),
    notes: z.array(z.string()),
  })
  .openapi('AccessAuditReport', {
    description:
      'Which actions, scripts and commands ran most; refused attempts; who reached which servers and ' +
      'whether their roles or grants allowed it; the keys on the servers and whether they are needed; ' +
      'the rotation state of every managed key. Lists put what needs attention first.',
  });

const sameReport: Same<z.infer<typeof AccessAuditReportSchema>, AccessAuditReport> = true;
void sameReport;
