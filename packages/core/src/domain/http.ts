import { z } from 'zod';
import { IdSchema, NameSchema, TimestampSchema } from './common.js';

/**
 * Fields of an API token of the HTTP API (`apiTokens`). The token itself is
 * `fwt_<tenantId>_<id>_<secret>`; only the sha256 of its secret part is stored, so a leaked store
 * does not leak usable tokens.
 */
export const ApiTokenFields = {
  /** The principal every request made with the token acts as. */
  principalId: IdSchema,
  /** What the token is for, e.g. `ci-pipeline`. */
  name: NameSchema,
  /** sha256 (hex) of the token's secret part. */
  tokenHash: z.string().regex(/^[a-f0-9]{64}$/),
  /** The first characters of the token, safe to show so that people can tell their tokens apart. */
  prefix: z.string().min(1).max(200),
  /** The principal (or `system`) that issued the token. */
  createdBy: IdSchema,
  /** The token is refused from this instant on. Absent: it does not expire. */
  expiresAt: TimestampSchema.optional(),
  /** Set when the token is revoked; a revoked token is refused and never comes back. */
  revokedAt: TimestampSchema.optional(),
  /** When the token last authenticated a request, to about a minute. */
  lastUsedAt: TimestampSchema.optional(),
};
