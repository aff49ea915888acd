import {
  IdSchema,
  NotFoundError,
  ProviderSchema,
  type ServerSelector,
  ServerSelectorSchema,
  toIssues,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList, readableServersPage } from '../pagination.js';
import { RequestValidationError } from '../problem.js';
import {
  Account,
  AccountInput,
  Project,
  ProjectChanges,
  ProjectInput,
  pageOf,
  Server,
  ServerChanges,
  ServerInput,
  splitChanges,
} from '../schemas.js';
import { apiRoute, idParams, jsonBody, jsonResponse, locationHeader, type RouteModule } from './route.js';

const ServerListQuery = PageQuery.extend({
  provider: ProviderSchema.optional().openapi({ param: { name: 'provider', in: 'query' } }),
  accountId: IdSchema.optional().openapi({ param: { name: 'accountId', in: 'query' } }),
  region: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .openapi({ param: { name: 'region', in: 'query' } }),
  label: z
    .union([z.string(), z.array(z.string())])
    .optional()
    .openapi({
      param: { name: 'label', in: 'query' },
      description: '`key=value`; repeat for several labels, all of which must match.',
    }),
});

function selectorOf(query: z.output<typeof ServerListQuery>): ServerSelector | undefined {
  // No prototype: `label=__proto__=x` must become an own key the schema refuses, not a no-op
  // assignment to the prototype that silently widens the filter to every server.
  const labels: Record<string, string> = Object.create(null);
  for (const pair of query.label === undefined ? [] : [query.label].flat()) {
    const eq = pair.indexOf('=');
    if (eq < 1) {
      throw new RequestValidationError('query', [{ path: ['label'], message: 'must be key=value' }]);
    }
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const selector = {
    ...(query.provider ? { providers: [query.provider] } : {}),
    ...(query.accountId ? { accountIds: [query.accountId] } : {}),
    ...(query.region ? { regions: [query.region] } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
  };
  if (Object.keys(selector).length === 0) return undefined;
  const parsed = ServerSelectorSchema.safeParse(selector);
  if (!parsed.success) throw new RequestValidationError('query', toIssues(parsed.error));
  return parsed.data;
}

const ExpectedVersionQuery = z.strictObject({
  expectedVersion: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .openapi({
      param: { name: 'expectedVersion', in: 'query' },
      description: 'Delete only if the stored version is this one.',
    }),
});

const serverExample = {
  id: 'web-1',
  name: 'web-1',
  accountId: 'dc-berlin',
  provider: 'ssh' as const,
  address: '10.0.0.12',
  labels: { env: 'prod', tier: 'web' },
};

/** Servers, accounts and projects. */
export const inventoryRoutes: RouteModule = (app, { fleet }) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/servers',
      operationId: 'listServers',
      tags: ['inventory'],
      summary: 'Servers the caller may read, in id order, optionally filtered.',
      request: { query: ServerListQuery },
      responses: { 200: jsonResponse(pageOf(Server), 'A page of servers.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const selector = selectorOf(query);
      const page = await readableServersPage(fleet, c.get('session'), {
        list: 'servers',
        limit: query.limit,
        cursor: query.cursor,
        ...(selector ? { selector } : {}),
      });
      return c.json(page, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/servers',
      operationId: 'addServer',
      tags: ['inventory'],
      summary: 'Adds a server to the inventory.',
      request: { body: jsonBody(ServerInput, serverExample) },
      responses: { 201: { ...jsonResponse(Server, 'The server as stored.'), headers: locationHeader } },
    }),
    async (c) => {
      const server = await c.get('session').servers.add(c.req.valid('json'));
      c.header('Location', `/v1/servers/${encodeURIComponent(server.id)}`);
      return c.json(server, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/servers/{serverId}',
      operationId: 'getServer',
      tags: ['inventory'],
      request: { params: idParams('serverId') },
      responses: { 200: jsonResponse(Server, 'The server.') },
    }),
    async (c) => {
      const { serverId } = c.req.valid('param');
      const server = await c.get('session').servers.get(serverId);
      if (!server) throw new NotFoundError('server', serverId);
      return c.json(server, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'patch',
      path: '/v1/servers/{serverId}',
      operationId: 'updateServer',
      tags: ['inventory'],
      summary:
        'Changes the fields sent (`null` clears an optional one) if the server is still at `expectedVersion`.',
      request: {
        params: idParams('serverId'),
        body: jsonBody(ServerChanges, { expectedVersion: 1, labels: { env: 'staging' } }),
      },
      responses: { 200: jsonResponse(Server, 'The server as stored.') },
    }),
    async (c) => {
      const { serverId } = c.req.valid('param');
      const { changes, expectedVersion } = splitChanges(c.req.valid('json'));
      const server = await c.get('session').servers.update(serverId, changes, { expectedVersion });
      return c.json(server, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'delete',
      path: '/v1/servers/{serverId}',
      operationId: 'removeServer',
      tags: ['inventory'],
      request: { params: idParams('serverId'), query: ExpectedVersionQuery },
      responses: { 204: { description: 'Removed.' } },
    }),
    async (c) => {
      const { serverId } = c.req.valid('param');
      const { expectedVersion } = c.req.valid('query');
      const removed = await c
        .get('session')
        .servers.remove(serverId, expectedVersion === undefined ? {} : { expectedVersion });
      if (!removed) throw new NotFoundError('server', serverId);
      return c.body(null, 204);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/accounts',
      operationId: 'listAccounts',
      tags: ['inventory'],
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Account), 'A page of accounts.') },
    }),
    async (c) => {
      const accounts = await c.get('session').accounts.list();
      return c.json(
        pageList('accounts', accounts, (a) => a.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/accounts',
      operationId: 'addAccount',
      tags: ['inventory'],
      request: {
        body: jsonBody(AccountInput, {
          id: 'dc-berlin',
          name: 'Berlin data centre',
          provider: 'ssh',
          regions: ['dc-berlin-1'],
        }),
      },
      responses: { 201: jsonResponse(Account, 'The account as stored.') },
    }),
    async (c) => c.json(await c.get('session').accounts.add(c.req.valid('json')), 201),
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/projects',
      operationId: 'listProjects',
      tags: ['inventory'],
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Project), 'A page of projects.') },
    }),
    async (c) => {
      const projects = await c.get('session').projects.list();
      return c.json(
        pageList('projects', projects, (p) => p.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/projects',
      operationId: 'addProject',
      tags: ['inventory'],
      request: {
        body: jsonBody(ProjectInput, { id: 'web', name: 'Web tier', selector: { labels: { tier: 'web' } } }),
      },
      responses: { 201: { ...jsonResponse(Project, 'The project as stored.'), headers: locationHeader } },
    }),
    async (c) => {
      const project = await c.get('session').projects.add(c.req.valid('json'));
      c.header('Location', `/v1/projects/${encodeURIComponent(project.id)}`);
      return c.json(project, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/projects/{projectId}',
      operationId: 'getProject',
      tags: ['inventory'],
      request: { params: idParams('projectId') },
      responses: { 200: jsonResponse(Project, 'The project.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      const project = await c.get('session').projects.get(projectId);
      if (!project) throw new NotFoundError('project', projectId);
      return c.json(project, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'patch',
      path: '/v1/projects/{projectId}',
      operationId: 'updateProject',
      tags: ['inventory'],
      request: {
        params: idParams('projectId'),
        body: jsonBody(ProjectChanges, { expectedVersion: 1, name: 'Web tier (EU)' }),
      },
      responses: { 200: jsonResponse(Project, 'The project as stored.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      const { changes, expectedVersion } = splitChanges(c.req.valid('json'));
      return c.json(await c.get('session').projects.update(projectId, changes, { expectedVersion }), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'delete',
      path: '/v1/projects/{projectId}',
      operationId: 'removeProject',
      tags: ['inventory'],
      request: { params: idParams('projectId'), query: ExpectedVersionQuery },
      responses: { 204: { description: 'Removed.' } },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      const { expectedVersion } = c.req.valid('query');
      const removed = await c
        .get('session')
        .projects.remove(projectId, expectedVersion === undefined ? {} : { expectedVersion });
      if (!removed) throw new NotFoundError('project', projectId);
      return c.body(null, 204);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/projects/{projectId}/servers',
      operationId: 'listProjectServers',
      tags: ['inventory'],
      summary: 'The servers the project’s selector matches now that the caller may read.',
      request: { params: idParams('projectId'), query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Server), 'A page of servers.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      const query = c.req.valid('query');
      const session = c.get('session');
      const project = await session.projects.get(projectId);
      if (!project) throw new NotFoundError('project', projectId);
      const page = await readableServersPage(fleet, session, {
        list: `projects/${projectId}/servers`,
        selector: project.selector,
        limit: query.limit,
        cursor: query.cursor,
      });
      return c.json(page, 200);
    },
  );
};
