import {
  ACCESS_AUDIT_CSV_TABLES,
  type AuditLogVerification,
  REPORT_CSP,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
  TimestampSchema,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { AccessAuditReportSchema } from '../access-audit-report.js';
import { decodeCursor, encodeCursor, PageQuery } from '../pagination.js';
import { RequestValidationError } from '../problem.js';
import { AuditCheckpoint, AuditRecord, pageOf, type Same } from '../schemas.js';
import { apiRoute, jsonResponse, problems, type RouteModule } from './route.js';

/** Characters of export lines gathered into one chunk of the response stream. */
const EXPORT_CHUNK_BYTES = 64 * 1024;

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
          'column-mismatch',
        ]),
        column: z.string().optional(),
        message: z.string(),
      }),
    ),
  })
  .openapi('AuditVerification');

// The SDK's verification result is an interface: this mirror fails the build when they drift apart.
const sameVerification: Same<z.infer<typeof AuditVerification>, AuditLogVerification> = true;
void sameVerification;

const AccessReportQuery = z.strictObject({
  since: TimestampSchema.optional().openapi({
    param: { name: 'since', in: 'query' },
    description: 'Only records (and timed logins) at or after this instant.',
  }),
  until: TimestampSchema.optional().openapi({
    param: { name: 'until', in: 'query' },
    description: 'Only records (and timed logins) before this instant. Default: now.',
  }),
  unusedAfterDays: z.coerce
    .number()
    .int()
    .min(1)
    .max(3660)
    .optional()
    .openapi({
      param: { name: 'unusedAfterDays', in: 'query' },
      description: 'A key not used for this many days counts as unused. Default 90.',
    }),
  format: z
    .enum(['json', 'csv', 'html'])
    .default('json')
    .openapi({ param: { name: 'format', in: 'query' } }),
  table: z
    .enum(ACCESS_AUDIT_CSV_TABLES)
    .default('access')
    .openapi({ param: { name: 'table', in: 'query' }, description: 'The table a CSV report holds.' }),
  title: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .openapi({ param: { name: 'title', in: 'query' }, description: 'Title of an HTML report.' }),
});

/**
 * The tenant's audit log (`audit.read`): queries, verification of its hash chain, a streamed export
 * for offline checks, signed checkpoints and the post-action access audit.
 */
export const auditRoutes: RouteModule = (app, { fleet, onError }) => {
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

  // Registered for the document and routed as plain Hono: the typed handlers of `app.openapi` know no
  // response type for a stream of a media type other than JSON or text.
  const exportRoute = apiRoute({
    method: 'get',
    path: '/v1/audit/export',
    operationId: 'exportAuditLog',
    tags: ['audit'],
    summary: 'The whole log as JSON Lines for offline verification (`verifyAuditExport`), streamed.',
    description:
      'A header line, then every record up to the head at the time of the request, in `seq` order. A ' +
      'failure after the first byte ends the stream early; the file then fails verification as ' +
      '`truncated` rather than passing short.',
    responses: {
      200: {
        description: 'One JSON object per line.',
        content: { 'application/x-ndjson': { schema: z.string() } },
      },
    },
  });
  app.openAPIRegistry.registerPath(exportRoute);
  app.get(exportRoute.getRoutingPath(), async (c) => {
    const lines = await c.get('session').audit.export();
    const encoder = new TextEncoder();
    const path = c.req.path;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          let chunk = '';
          while (chunk.length < EXPORT_CHUNK_BYTES) {
            const next = await lines.next();
            if (next.done) {
              if (chunk) controller.enqueue(encoder.encode(chunk));
              controller.close();
              return;
            }
            chunk += next.value;
          }
          controller.enqueue(encoder.encode(chunk));
        } catch (error) {
          onError(error, { method: 'GET', path });
          controller.error(error);
        }
      },
      async cancel() {
        await lines.return(undefined);
      },
    });
    const day = fleet.clock.now().toISOString().slice(0, 10);
    return new Response(body, {
      status: 200,
      headers: {
        'content-type': 'application/x-ndjson; charset=utf-8',
        'content-disposition': `attachment; filename="fleetward-audit-${c.get('actor').tenantId}-${day}.jsonl"`,
        'cache-control': 'no-store',
      },
    });
  });

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/audit/checkpoints',
      operationId: 'createAuditCheckpoint',
      tags: ['audit'],
      summary: 'Signs the head of the log with the fleet’s audit signing key.',
      description:
        'The checkpoint is also sent as an `audit.checkpoint` webhook. Keep checkpoints away from the ' +
        'store: with them a log cut short or recomputed is caught. A fleet without a signing key ' +
        'answers 501.',
      responses: {
        201: jsonResponse(AuditCheckpoint, 'The signed checkpoint.'),
        ...problems(501),
      },
    }),
    async (c) => c.json(await c.get('session').audit.checkpoint(), 201),
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/audit/access-report',
      operationId: 'getAccessAuditReport',
      tags: ['audit'],
      summary: 'The post-action audit of access: who did what, where, with which keys, and was it allowed.',
      request: { query: AccessReportQuery },
      responses: {
        200: {
          description: 'The report as JSON, one of its tables as CSV, or a self-contained HTML page.',
          content: {
            'application/json': { schema: AccessAuditReportSchema },
            'text/csv': { schema: z.string() },
            'text/html': { schema: z.string() },
          },
        },
      },
    }),
    async (c) => {
      const query = c.req.valid('query');
      if (query.since && query.until && Date.parse(query.since) >= Date.parse(query.until)) {
        throw new RequestValidationError('query', [{ path: ['until'], message: 'must be after since' }]);
      }
      const report = await c.get('session').audit.accessReport({
        ...(query.since ? { since: new Date(query.since) } : {}),
        ...(query.until ? { until: new Date(query.until) } : {}),
        ...(query.unusedAfterDays === undefined ? {} : { unusedAfterDays: query.unusedAfterDays }),
      });
      if (query.format === 'csv') {
        c.header('Content-Type', 'text/csv; charset=utf-8');
        return c.body(renderAccessAuditCsv(report, { table: query.table }), 200);
      }
      if (query.format === 'html') {
        c.header('Content-Type', 'text/html; charset=utf-8');
        c.header('Content-Security-Policy', REPORT_CSP);
        return c.body(renderAccessAuditHtml(report, query.title ? { title: query.title } : {}), 200);
      }
      c.header('Content-Type', 'application/json; charset=utf-8');
      return c.body(renderAccessAuditJson(report), 200);
    },
  );
};
