import { type AuditLogVerification, TimestampSchema } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { decodeCursor, encodeCursor, PageQuery } from '../pagination.js';
import { RequestValidationError } from '../problem.js';
import { AuditRecord, pageOf } from '../schemas.js';
import { apiRoute, jsonResponse, type RouteModule } from './route.js';

const AuditQuery = PageQuery.extend({
  action: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .openapi({
      param: { name: 'action', in: 'query' },
      description: 'Only this action, e.g. `patch.approve`.',
    }),
  actorId: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .openapi({ param: { name: 'actorId', in: 'query' }, description: 'Only records of this principal.' }),
  since: TimestampSchema.optional().openapi({
    param: { name: 'since', in: 'query' },
    description: 'Inclusive.',
  }),
  until: TimestampSchema.optional().openapi({
    param: { name: 'until', in: 'query' },
    description: 'Exclusive.',
  }),
});

const AuditVerification = z
  .strictObject({
    ok: z.boolean(),
    tenantId: z.string().optional(),
    checked: z.number().int(),
    firstSeq: z.number().int().optional(),
    lastSeq: z.number().int().optional(),
    headHash: z.string(),
    checkpointsVerified: z.number().int(),
    anchoredSeq: z.number().int().optional(),
    problems: z.array(
      z.strictObject({
        seq: z.number().int().optional(),
        id: z.string().optional(),
        line: z.number().int().optional(),
        problem: z.enum([
          'hash-mismatch',
          'broken-link',
          'gap',
          'reordered',
          'duplicate',
          'truncated',
          'bad-signature',
          'unknown-key',
          'checkpoint-mismatch',
          'missing-checkpoint',
          'malformed',
          'wrong-tenant',
        ]),
        message: z.string(),
      }),
    ),
  })
  .openapi('AuditVerification');

// The SDK's verification result is an interface: this mirror fails the build when they drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameVerification: Same<z.infer<typeof AuditVerification>, AuditLogVerification> = true;
void sameVerification;

/** The tenant's audit log: queries, and verification of its hash chain (`audit.read`). */
export const auditRoutes: RouteModule = (app) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/audit',
      operationId: 'queryAuditLog',
      tags: ['audit'],
      summary: 'Audit records of the tenant in `seq` order, filtered.',
      request: { query: AuditQuery },
      responses: { 200: jsonResponse(pageOf(AuditRecord), 'A page of audit records.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const after = decodeCursor('audit', query.cursor);
      const afterSeq = after === undefined ? undefined : Number(after);
      if (afterSeq !== undefined && !Number.isSafeInteger(afterSeq)) {
        throw new RequestValidationError('query', [
          { path: ['cursor'], message: 'is not a cursor of this list' },
        ]);
      }
      const records = await c.get('session').auditLog({
        limit: query.limit + 1,
        ...(afterSeq === undefined ? {} : { afterSeq }),
        ...(query.action ? { action: query.action } : {}),
        ...(query.actorId ? { actorId: query.actorId } : {}),
        ...(query.since ? { since: new Date(query.since) } : {}),
        ...(query.until ? { until: new Date(query.until) } : {}),
      });
      const items = records.slice(0, query.limit);
      const next =
        records.length > query.limit ? encodeCursor('audit', String(items[items.length - 1]!.seq)) : null;
      return c.json({ items, next }, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/audit/verification',
      operationId: 'verifyAuditLog',
      tags: ['audit'],
      summary: 'Checks the whole hash chain of the tenant’s audit log: hashes, links, gaps and order.',
      responses: {
        200: jsonResponse(AuditVerification, 'The outcome; `ok` is false when any record fails.'),
      },
    }),
    async (c) => c.json(await c.get('session').audit.verify(), 200),
  );
};
