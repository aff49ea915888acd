import {
  IdSchema,
  NotFoundError,
  REPORT_CSP,
  type ReportScopeInput,
  renderCsv,
  renderHtml,
  renderJson,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList, readableServersPage } from '../pagination.js';
import { RequestValidationError } from '../problem.js';
import {
  ComplianceReportData,
  ComplianceStandard,
  ComplianceStandardChanges,
  ComplianceStandardInput,
  ComplianceSummary,
  pageOf,
  ServerEvaluation,
  splitChanges,
} from '../schemas.js';
import { apiRoute, idParams, jsonBody, jsonResponse, type RouteModule } from './route.js';

const projectIdQuery = IdSchema.optional().openapi({
  param: { name: 'projectId', in: 'query' },
  description: 'Only this project’s servers.',
});

const ReportQuery = z.strictObject({
  projectId: projectIdQuery,
  accountId: IdSchema.optional().openapi({
    param: { name: 'accountId', in: 'query' },
    description: 'Only this account’s servers.',
  }),
  format: z
    .enum(['json', 'csv', 'html'])
    .default('json')
    .openapi({ param: { name: 'format', in: 'query' } }),
  table: z
    .enum(['servers', 'patches'])
    .default('servers')
    .openapi({ param: { name: 'table', in: 'query' }, description: 'The table a CSV report holds.' }),
  securityOnly: z
    .enum(['true', 'false'])
    .default('false')
    .openapi({ param: { name: 'securityOnly', in: 'query' }, description: 'Only security updates.' }),
  title: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .openapi({ param: { name: 'title', in: 'query' } }),
});

const ExpectedVersionQuery = z.strictObject({
  expectedVersion: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .openapi({ param: { name: 'expectedVersion', in: 'query' } }),
});

/** Compliance standards, evaluations, the summary and shareable reports. */
export const complianceRoutes: RouteModule = (app, { fleet }) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/compliance/standards',
      operationId: 'listComplianceStandards',
      tags: ['compliance'],
      summary: 'The tenant’s standards; with `projectId`, those that apply to that project’s servers.',
      request: { query: PageQuery.extend({ projectId: projectIdQuery }) },
      responses: { 200: jsonResponse(pageOf(ComplianceStandard), 'A page of standards.') },
    }),
    async (c) => {
      const { projectId, ...page } = c.req.valid('query');
      const standards = await c
        .get('session')
        .compliance.standards.list(projectId === undefined ? {} : { projectId });
      return c.json(
        pageList('compliance/standards', standards, (s) => s.id, page),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/compliance/standards',
      operationId: 'addComplianceStandard',
      tags: ['compliance'],
      request: {
        body: jsonBody(ComplianceStandardInput, {
          id: 'sec-7d',
          name: 'No security patch pending longer than 7 days',
          rule: { kind: 'max-pending-age', maxAgeDays: 7 },
          alertAfterDays: 30,
        }),
      },
      responses: { 201: jsonResponse(ComplianceStandard, 'The standard as stored.') },
    }),
    async (c) => c.json(await c.get('session').compliance.standards.add(c.req.valid('json')), 201),
  );

  app.openapi(
    apiRoute({
      method: 'patch',
      path: '/v1/compliance/standards/{standardId}',
      operationId: 'updateComplianceStandard',
      tags: ['compliance'],
      request: {
        params: idParams('standardId'),
        body: jsonBody(ComplianceStandardChanges, { expectedVersion: 1, enabled: false }),
      },
      responses: { 200: jsonResponse(ComplianceStandard, 'The standard as stored.') },
    }),
    async (c) => {
      const { standardId } = c.req.valid('param');
      const { changes, expectedVersion } = splitChanges(c.req.valid('json'));
      const standard = await c
        .get('session')
        .compliance.standards.update(standardId, changes, { expectedVersion });
      return c.json(standard, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'delete',
      path: '/v1/compliance/standards/{standardId}',
      operationId: 'removeComplianceStandard',
      tags: ['compliance'],
      request: { params: idParams('standardId'), query: ExpectedVersionQuery },
      responses: { 204: { description: 'Removed.' } },
    }),
    async (c) => {
      const { standardId } = c.req.valid('param');
      const { expectedVersion } = c.req.valid('query');
      const removed = await c
        .get('session')
        .compliance.standards.remove(standardId, expectedVersion === undefined ? {} : { expectedVersion });
      if (!removed) throw new NotFoundError('compliance standard', standardId);
      return c.body(null, 204);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/compliance/evaluations',
      operationId: 'listComplianceEvaluations',
      tags: ['compliance'],
      summary: 'Each readable server judged against the standards that apply to it, in server id order.',
      description: 'Needs `patch.read` on every server of the page.',
      request: { query: PageQuery.extend({ projectId: projectIdQuery }) },
      responses: { 200: jsonResponse(pageOf(ServerEvaluation), 'A page of evaluations.') },
    }),
    async (c) => {
      const { projectId, limit, cursor } = c.req.valid('query');
      const session = c.get('session');
      let selector: Parameters<typeof readableServersPage>[2]['selector'];
      if (projectId !== undefined) {
        const project = await session.projects.get(projectId);
        if (!project) throw new NotFoundError('project', projectId);
        selector = project.selector;
      }
      const page = await readableServersPage(fleet, session, {
        list: projectId === undefined ? 'compliance/evaluations' : `compliance/evaluations/${projectId}`,
        limit,
        cursor,
        ...(selector ? { selector } : {}),
      });
      const items = page.items.length
        ? await session.compliance.evaluate({ serverIds: page.items.map((s) => s.id) })
        : [];
      return c.json({ items, next: page.next }, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/compliance/summary',
      operationId: 'getComplianceSummary',
      tags: ['compliance'],
      summary: 'The bird’s-eye view by project, account, region, provider, OS and standard.',
      description: 'Needs `patch.read` on every server in scope.',
      request: { query: z.strictObject({ projectId: projectIdQuery }) },
      responses: { 200: jsonResponse(ComplianceSummary, 'The summary.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('query');
      const summary = await c.get('session').compliance.summary(projectId === undefined ? {} : { projectId });
      return c.json(summary, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/compliance/report',
      operationId: 'getComplianceReport',
      tags: ['compliance'],
      summary: 'A shareable compliance and pending-patch report of the tenant, a project or an account.',
      request: { query: ReportQuery },
      responses: {
        200: {
          description: 'The report as JSON data, a CSV table, or a self-contained HTML page.',
          content: {
            'application/json': { schema: ComplianceReportData },
            'text/csv': { schema: z.string() },
            'text/html': { schema: z.string() },
          },
        },
      },
    }),
    async (c) => {
      const query = c.req.valid('query');
      if (query.projectId !== undefined && query.accountId !== undefined) {
        throw new RequestValidationError('query', [
          { path: ['accountId'], message: 'give either projectId or accountId' },
        ]);
      }
      const session = c.get('session');
      let scope: ReportScopeInput = { kind: 'tenant' };
      if (query.projectId !== undefined) scope = { kind: 'project', id: query.projectId };
      if (query.accountId !== undefined) {
        // The report of an unknown account would be empty rather than missing: make it a 404.
        if (!(await session.accounts.list()).some((a) => a.id === query.accountId)) {
          throw new NotFoundError('account', query.accountId);
        }
        scope = { kind: 'account', id: query.accountId };
      }
      const data = await session.reports.compliance(scope, {
        securityOnly: query.securityOnly === 'true',
        ...(query.title ? { title: query.title } : {}),
      });
      if (query.format === 'csv') {
        c.header('Content-Type', 'text/csv; charset=utf-8');
        return c.body(renderCsv(data, { table: query.table }), 200);
      }
      if (query.format === 'html') {
        c.header('Content-Type', 'text/html; charset=utf-8');
        c.header('Content-Security-Policy', REPORT_CSP);
        return c.body(renderHtml(data), 200);
      }
      c.header('Content-Type', 'application/json; charset=utf-8');
      return c.body(renderJson(data), 200);
    },
  );
};
