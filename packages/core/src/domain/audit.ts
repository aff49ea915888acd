import { z } from 'zod';
import { IdSchema, PlainDataRecordSchema, TimestampSchema } from './common.js';

/** What a caller appends. The log adds `seq`, `at`, `prevHash` and `hash`. */
export const AuditInputSchema = z.strictObject({
  tenantId: IdSchema,
  actor: z.strictObject({ principalId: IdSchema, kind: z.enum(['human', 'service', 'system']) }),
  /** An action name from the catalogue, e.g. `inventory.server.create`, `patch.scan`. */
  action: z.string().min(1).max(128),
  target: z.strictObject({ type: z.string().min(1).max(64), id: z.string().max(512) }).optional(),
  /** The authorization decision that preceded the action. */
  decision: z.enum(['allow', 'deny']),
  /** The role rule that allowed the action (denials name theirs in `reason` and `details`). */
  rule: z
    .strictObject({ roleId: IdSchema, bindingId: IdSchema, ruleIndex: z.number().int().min(0) })
    .optional(),
  result: z.enum(['success', 'failure', 'denied', 'started']),
  reason: z.string().max(2000).optional(),
  ticket: z.string().max(128).optional(),
  details: PlainDataRecordSchema.default({}),
});
export type AuditInput = z.input<typeof AuditInputSchema>;

/** An entry of the append-only, hash-chained audit log of one tenant. */
export const AuditRecordSchema = AuditInputSchema.extend({
  /** Position in the tenant's chain, from 1, without gaps. */
  seq: z.number().int().positive(),
  id: IdSchema,
  at: TimestampSchema,
  /** `hash` of the previous record of the tenant; 64 zeros for the first. */
  prevHash: z.string().regex(/^[a-f0-9]{64}$/),
  /** sha256 over the canonical JSON of every other field. */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
});
export type AuditRecord = z.infer<typeof AuditRecordSchema>;
