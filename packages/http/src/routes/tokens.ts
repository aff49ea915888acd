import { NotFoundError } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList } from '../pagination.js';
import { ApiToken, pageOf } from '../schemas.js';
import { apiTokensAs, CreateApiTokenInputSchema } from '../tokens.js';
import { openapi } from '../zod-openapi.js';
import { apiRoute, idParams, jsonBody, jsonResponse, locationHeader, type RouteModule } from './route.js';

const CreateApiTokenInput = openapi(CreateApiTokenInputSchema, 'CreateApiTokenInput');
const IssuedApiToken = z
  .strictObject({
    apiToken: ApiToken,
    token: z.string().openapi({ description: 'The bearer token. Shown this once: only its hash is kept.' }),
  })
  .openapi('IssuedApiToken');

/** API tokens of the tenant: `iam.write` to create and revoke, `iam.read` to list. */
export const tokenRoutes: RouteModule = (app, { fleet }) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/tokens',
      operationId: 'listApiTokens',
      tags: ['tokens'],
      summary: 'The tenant’s API tokens, revoked and expired ones included, never their secrets.',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(ApiToken), 'A page of tokens.') },
    }),
    async (c) => {
      const tokens = await apiTokensAs(fleet, c.get('actor')).list();
      return c.json(
        pageList('tokens', tokens, (t) => t.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/tokens',
      operationId: 'createApiToken',
      tags: ['tokens'],
      summary: 'Creates a token for the caller or another principal of the tenant.',
      request: { body: jsonBody(CreateApiTokenInput, { name: 'ci-pipeline', principalId: 'ci-bot' }) },
      responses: { 201: { ...jsonResponse(IssuedApiToken, 'The token, once.'), headers: locationHeader } },
    }),
    async (c) => {
      const issued = await apiTokensAs(fleet, c.get('actor')).create(c.req.valid('json'));
      c.header('Location', `/v1/tokens/${encodeURIComponent(issued.apiToken.id)}`);
      c.header('Cache-Control', 'no-store');
      return c.json(issued, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'delete',
      path: '/v1/tokens/{tokenId}',
      operationId: 'revokeApiToken',
      tags: ['tokens'],
      summary: 'Revokes a token for good (revoking it again changes nothing).',
      request: { params: idParams('tokenId') },
      responses: { 204: { description: 'Revoked.' } },
    }),
    async (c) => {
      const { tokenId } = c.req.valid('param');
      if (!(await apiTokensAs(fleet, c.get('actor')).revoke(tokenId)))
        throw new NotFoundError('api token', tokenId);
      return c.body(null, 204);
    },
  );
};
