import { z } from 'zod';
import { IdSchema, NameSchema, PlainDataRecordSchema, plainRecord, TimestampSchema } from './common.js';
import { PatchCategorySchema, SeveritySchema } from './patch.js';

/** A rule every server in scope must satisfy. */
export const ComplianceRuleSchema = z.discriminatedUnion('kind', [
  /** No pending patch of these categories (and severity) older than `maxAgeDays` since first seen. */
  z.strictObject({
    kind: z.literal('max-pending-age'),
    categories: z.array(PatchCategorySchema).min(1).default(['security']),
    minSeverity: SeveritySchema.default('unspecified'),
    maxAgeDays: z.number().min(0).max(3650),
  }),
  /** No pending patch of these categories at or above `minSeverity` at all. */
  z.strictObject({
    kind: z.literal('no-pending'),
    categories: z.array(PatchCategorySchema).min(1).default(['security']),
    minSeverity: SeveritySchema.default('critical'),
  }),
  /** Packages were last installed on the server within `days` (as observed by scans). */
  z.strictObject({ kind: z.literal('updated-within'), days: z.number().min(0).max(3650) }),
  /** The server was successfully scanned within `days`; a server never scanned is unknown. */
  z.strictObject({ kind: z.literal('scanned-within'), days: z.number().min(0).max(3650) }),
]);
export type ComplianceRule = z.infer<typeof ComplianceRuleSchema>;

export const ComplianceStandardFields = {
  name: NameSchema,
  /** Only this project's servers; absent means every server of the tenant. */
  projectId: IdSchema.optional(),
  rule: ComplianceRuleSchema,
  /** Servers failing the rule for longer than this many days are listed as alerts. */
  alertAfterDays: z.number().min(0).max(3650).optional(),
  enabled: z.boolean().default(true),
};

export const ScanScheduleFields = {
  projectId: IdSchema,
  /** The principal whose authority scheduled scans run with (a service principal, usually). */
  runAs: IdSchema,
  /** Five-field cron, read in `timeZone`; or `intervalMinutes`. Exactly one of them. */
  cron: z.string().min(9).max(120).optional(),
  intervalMinutes: z
    .number()
    .int()
    .min(1)
    .max(366 * 24 * 60)
    .optional(),
  timeZone: z.string().min(1).max(64).default('UTC'),
  enabled: z.boolean().default(true),
  /** The slot that last ran (the schedule time, not the wall clock), so a slot never runs twice. */
  lastSlotAt: TimestampSchema.optional(),
  lastJobId: IdSchema.optional(),
};

export const WebhookEndpointFields = {
  url: z.url({ protocol: /^https?$/ }),
  /** SecretStore reference of the `whsec_…` signing secret. */
  secretRef: z.string().min(1).max(256),
  /** Event types it receives: exact (`scan.completed`), family (`patch.*`) or `*`. */
  events: z.array(z.string().regex(/^(\*|[a-z]+(\.[a-z-]+)*(\.\*)?)$/)).min(1),
  disabled: z.boolean().default(false),
  disabledReason: z.string().max(500).optional(),
  description: z.string().max(500).optional(),
};

export const OutboxFields = {
  /** How it is delivered. */
  channel: z.enum(['webhook', 'email', 'ticket']),
  /** The endpoint or integration entity it goes to. */
  destinationId: IdSchema,
  eventType: z.string().min(1).max(128),
  payload: PlainDataRecordSchema,
  /** Stable across retries (`webhook-id`), so receivers can de-duplicate. */
  deliveryId: z.string().min(1).max(128),
  status: z.enum(['pending', 'delivered', 'parked']),
  attempts: z.number().int().min(0).default(0),
  nextAttemptAt: TimestampSchema,
  lastError: z.string().max(2000).optional(),
  deliveredAt: TimestampSchema.optional(),
  /** What the destination answered on success (ticket number, message id). */
  receipt: PlainDataRecordSchema.optional(),
};

export const IntegrationFields = {
  kind: z.enum(['servicenow', 'jira', 'smtp']),
  name: NameSchema,
  /** Non-secret settings: base URL, project key, assignment group, SMTP host, from address… */
  config: plainRecord(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  /** SecretStore reference of its credentials (token, password). */
  secretRef: z.string().min(1).max(256).optional(),
};

export const ChangeRequestFields = {
  projectId: IdSchema,
  integrationId: IdSchema,
  /** sha256 over the sorted pending set it was opened for: one request per project and set. */
  pendingSetHash: z.string().regex(/^[a-f0-9]{64}$/),
  status: z.enum(['requested', 'opened', 'failed']),
  outboxId: IdSchema.optional(),
  externalId: z.string().max(256).optional(),
  externalUrl: z.string().max(2000).optional(),
};
