import { IdSchema } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList } from '../pagination.js';
import { Principal, PrincipalInput, pageOf, RoleBinding } from '../schemas.js';
import { apiRoute, idParams, jsonBody, jsonResponse, type RouteModule } from './route.js';

const BindRoleInput = z
  .strictObject({
    roleId: IdSchema,
    /** Limit the binding to servers of these projects; absent means tenant-wide. */
    projectIds: z.array(IdSchema).min(1).optional(),
  })
  .openapi('BindRoleInput');

/** Principals and their role bindings (`iam.read`, `iam.write`). */
export const iamRoutes: RouteModule = (app) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/principals',
      operationId: 'listPrincipals',
      tags: ['iam'],
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Principal), 'A page of principals.') },
    }),
    async (c) => {
      const principals = await c.get('session').iam.listPrincipals();
      return c.json(
        pageList('principals', principals, (p) => p.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/principals',
      operationId: 'addPrincipal',
      tags: ['iam'],
      request: {
        body: jsonBody(PrincipalInput, {
          id: 'ci-bot',
          name: 'CI pipeline',
          kind: 'service',
          affiliation: 'employee',
        }),
      },
      responses: { 201: jsonResponse(Principal, 'The principal as stored.') },
    }),
    async (c) => c.json(await c.get('session').iam.addPrincipal(c.req.valid('json')), 201),
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/principals/{principalId}/role-bindings',
      operationId: 'bindRole',
      tags: ['iam'],
      summary: 'Binds a role to a principal, tenant-wide or for some projects.',
      request: {
        params: idParams('principalId'),
        body: jsonBody(BindRoleInput, { roleId: 'tenant-admin', projectIds: ['web'] }),
      },
      responses: { 201: jsonResponse(RoleBinding, 'The binding as stored.') },
    }),
    async (c) => {
      const { principalId } = c.req.valid('param');
      const { roleId, projectIds } = c.req.valid('json');
      const binding = await c
        .get('session')
        .iam.bindRole(principalId, roleId, projectIds ? { projectIds } : {});
      return c.json(binding, 201);
    },
  );
};
