import { KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { AuditCheckpoint } from './checkpoint.js';

// The options objects of `audit.*`: refused (ValidationError naming the field) when they are not
// objects, carry an unknown key or an own `__proto__`. Checkpoints are checked as objects only
// here: verification reports a malformed one as a problem of the log, naming it.

const Checkpoints = z
  .array(
    z.custom<AuditCheckpoint>(
      (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
      'expected a checkpoint object',
    ),
  )
  .max(100_000);

export const AuditQuerySchema = z.strictObject({
  afterSeq: z.number().int().min(0).optional(),
  limit: z.number().int().min(1).max(10_000).optional(),
  action: z.string().min(1).max(128).optional(),
  actorId: z.string().min(1).max(128).optional(),
  since: z.date().optional(),
  until: z.date().optional(),
});

export const VerifyAuditLogOptionsSchema = z.strictObject({
  checkpoints: Checkpoints.optional(),
  publicKeys: z
    .array(
      z.custom<KeyObject | string>(
        (v) => typeof v === 'string' || v instanceof KeyObject,
        'expected a PEM string or a KeyObject',
      ),
    )
    .max(100)
    .optional(),
  storedCheckpoints: z.boolean().optional(),
  requireCheckpoint: z.boolean().optional(),
});

export const AuditExportOptionsSchema = z.strictObject({ checkpoints: Checkpoints.optional() });

export const AccessReportOptionsSchema = z.strictObject({
  since: z.date().optional(),
  until: z.date().optional(),
  unusedAfterDays: z.number().int().min(0).max(36_500).optional(),
});
