import {
  type AccessApi,
  AccessGrantSchema,
  AccessRequestOptionsSchema,
  AccessRequestSchema,
  type SweepResult,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList } from '../pagination.js';
import { AccessGrant, AccessRequest, pageOf, type Same } from '../schemas.js';
import { openapi } from '../zod-openapi.js';
import {
  apiRoute,
  idParams,
  jsonBody,
  jsonResponse,
  locationHeader,
  optionalJsonBody,
  type RouteModule,
} from './route.js';

const AccessRequestInput = openapi(AccessRequestOptionsSchema, 'AccessRequestInput');

const AccessDecision = z
  .strictObject({ comment: z.string().max(2000).optional() })
  .openapi('AccessDecision', { description: 'Kept with the decision and in its audit record.' });
const sameDecision: Same<
  z.input<typeof AccessDecision>,
  NonNullable<Parameters<AccessApi['approve']>[1]>
> = true;
void sameDecision;

const Revocation = z
  .strictObject({ reason: z.string().min(1).max(2000).optional() })
  .openapi('AccessRevocation', { description: 'Why the grant ends early; kept in the audit record.' });

const ApprovalOutcome = z
  .strictObject({
    request: AccessRequest,
    grant: AccessGrant.optional().openapi({
      description:
        'Present when this was the last approval needed: the grant, active now (or at `startAt`); ' +
        'an `ssh-key` grant has been installed on its servers already.',
    }),
  })
  .openapi('AccessApprovalOutcome');

const AccessSweepResult = z
  .strictObject({
    expiredRequests: z.array(z.string()),
    started: z.array(z.string()),
    expiredGrants: z.array(z.string()),
    installed: z.number().int(),
    removed: z.number().int(),
    failures: z.array(z.strictObject({ grantId: z.string(), serverId: z.string(), message: z.string() })),
  })
  .openapi('AccessSweepResult');
const sameSweep: Same<z.infer<typeof AccessSweepResult>, SweepResult> = true;
void sameSweep;

const mineQuery = (what: string) =>
  z
    .enum(['true', 'false'])
    .default('false')
    .openapi({
      param: { name: 'mine', in: 'query' },
      description: `Only the caller’s own ${what}; otherwise every one of the tenant (needs \`audit.read\`).`,
    });

const RequestListQuery = PageQuery.extend({
  mine: mineQuery('requests'),
  status: openapi(AccessRequestSchema.shape.status.optional(), { param: { name: 'status', in: 'query' } }),
});
const GrantListQuery = PageQuery.extend({
  mine: mineQuery('grants'),
  status: openapi(AccessGrantSchema.shape.status.optional(), { param: { name: 'status', in: 'query' } }),
});

const requestExample = {
  servers: { serverIds: ['web-1'] },
  mode: 'ssh-key' as const,
  login: 'deploy',
  publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8DR1BWsxgABm7PLjyU+8BxpTvIssWPhViixyUGrECA alice@laptop',
  durationMinutes: 60,
  reason: 'Investigate the 502s of the web tier after the last deploy.',
  ticket: 'INC-4711',
};

/** Just-in-time access: requests, decisions, grants, revocation and housekeeping. */
export const accessRoutes: RouteModule = (app) => {
  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access-requests',
      operationId: 'requestAccess',
      tags: ['access'],
      summary: 'Asks for time-bound access to servers, with a reason and a ticket; others approve it.',
      description:
        'Mode `ssh-key` asks for a login with the requester’s own public key, which the servers expire by ' +
        'themselves; mode `actions` asks for Fleetward actions (and scripts) only. The servers are fixed ' +
        'now, so approvers approve exactly what will be granted. Needs `access.request` on each of them.',
      request: { body: jsonBody(AccessRequestInput, requestExample) },
      responses: {
        201: { ...jsonResponse(AccessRequest, 'The request, pending.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const request = await c.get('session').access.request(c.req.valid('json'));
      c.header('Location', `/v1/access-requests/${encodeURIComponent(request.id)}`);
      return c.json(request, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/access-requests',
      operationId: 'listAccessRequests',
      tags: ['access'],
      summary: 'Access requests in every state: the caller’s own, or all of the tenant.',
      request: { query: RequestListQuery },
      responses: { 200: jsonResponse(pageOf(AccessRequest), 'A page of requests.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const requests = await c.get('session').access.listRequests({
        mine: query.mine === 'true',
        ...(query.status ? { status: query.status } : {}),
      });
      return c.json(
        pageList(`access-requests/${query.mine}/${query.status ?? ''}`, requests, (r) => r.id, query),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/access-requests/{requestId}',
      operationId: 'getAccessRequest',
      tags: ['access'],
      summary: 'One request: its requester, or someone allowed to approve it, may read it.',
      request: { params: idParams('requestId') },
      responses: { 200: jsonResponse(AccessRequest, 'The request.') },
    }),
    async (c) => c.json(await c.get('session').access.getRequest(c.req.valid('param').requestId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access-requests/{requestId}/approval',
      operationId: 'approveAccessRequest',
      tags: ['access'],
      summary: 'Approves a pending request as the caller, who must not be its requester.',
      description:
        'Needs `access.approve` on every server of the request; roles may require a recent second factor ' +
        '(`mfaWithinMinutes`), which the embedding server reports through `mfaVerifiedAt`. The last ' +
        'approval needed creates the grant and, for `ssh-key`, installs the key on the servers before ' +
        'answering.',
      request: {
        params: idParams('requestId'),
        body: optionalJsonBody(AccessDecision, { comment: 'Matches INC-4711; one hour is enough.' }),
      },
      responses: {
        200: jsonResponse(ApprovalOutcome, 'The request with the approval, and the grant if it is complete.'),
      },
    }),
    async (c) => {
      const { requestId } = c.req.valid('param');
      return c.json(await c.get('session').access.approve(requestId, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access-requests/{requestId}/rejection',
      operationId: 'rejectAccessRequest',
      tags: ['access'],
      summary: 'Rejects a pending request (by someone other than the requester, with `access.approve`).',
      request: {
        params: idParams('requestId'),
        body: optionalJsonBody(AccessDecision, { comment: 'Use the read-only dashboards for this.' }),
      },
      responses: { 200: jsonResponse(AccessRequest, 'The request, rejected.') },
    }),
    async (c) => {
      const { requestId } = c.req.valid('param');
      return c.json(await c.get('session').access.reject(requestId, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access-requests/{requestId}/cancellation',
      operationId: 'cancelAccessRequest',
      tags: ['access'],
      summary: 'The requester withdraws a pending request.',
      request: { params: idParams('requestId') },
      responses: { 200: jsonResponse(AccessRequest, 'The request, cancelled.') },
    }),
    async (c) => c.json(await c.get('session').access.cancel(c.req.valid('param').requestId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/access-grants',
      operationId: 'listAccessGrants',
      tags: ['access'],
      summary: 'Grants: the caller’s own, or all of the tenant.',
      request: { query: GrantListQuery },
      responses: { 200: jsonResponse(pageOf(AccessGrant), 'A page of grants.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const grants = await c.get('session').access.listGrants({
        mine: query.mine === 'true',
        ...(query.status ? { status: query.status } : {}),
      });
      return c.json(
        pageList(`access-grants/${query.mine}/${query.status ?? ''}`, grants, (g) => g.id, query),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/access-grants/{grantId}',
      operationId: 'getAccessGrant',
      tags: ['access'],
      summary: 'One grant, with the state of its key on each server.',
      request: { params: idParams('grantId') },
      responses: { 200: jsonResponse(AccessGrant, 'The grant.') },
    }),
    async (c) => c.json(await c.get('session').access.getGrant(c.req.valid('param').grantId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access-grants/{grantId}/revocation',
      operationId: 'revokeAccessGrant',
      tags: ['access'],
      summary: 'Ends a grant now and removes its key from every server, verifying the removal.',
      description:
        'Its grantee may end their own grant; others need `access.approve` on its servers. A server that ' +
        'cannot be reached keeps the key only until it expires there; the sweep retries the removal.',
      request: {
        params: idParams('grantId'),
        body: optionalJsonBody(Revocation, { reason: 'The incident is resolved.' }),
      },
      responses: {
        200: jsonResponse(AccessGrant, 'The grant, revoked, with the removal per server.'),
      },
    }),
    async (c) => {
      const { grantId } = c.req.valid('param');
      const { reason } = c.req.valid('json');
      return c.json(await c.get('session').access.revoke(grantId, reason ? { reason } : {}), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/access/sweep',
      operationId: 'sweepAccess',
      tags: ['access'],
      summary: 'Runs the tenant’s access housekeeping now; needs `access.approve` tenant-wide.',
      description:
        'Pending requests past their deadline expire, scheduled grants whose start has come are installed, ' +
        'and grants past their end (or revoked) are removed from every server. A long-running process ' +
        'does this on a timer (`createAccessSweeper`); this is for the one that does not.',
      responses: { 200: jsonResponse(AccessSweepResult, 'What the sweep did.') },
    }),
    async (c) => c.json(await c.get('session').access.sweep(), 200),
  );
};
