import { AsyncLocalStorage } from 'node:async_hooks';
import { ApproveOptionsSchema, ExecuteOptionsSchema, type Job, PlanOptionsSchema } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList } from '../pagination.js';
import {
  PatchPlan,
  PatchPolicy,
  PatchPolicyChanges,
  PatchPolicyInput,
  pageOf,
  splitChanges,
} from '../schemas.js';
import { openapi } from '../zod-openapi.js';
import { apiRoute, idParams, jsonBody, jsonResponse, locationHeader, type RouteModule } from './route.js';

const PlanRequest = openapi(PlanOptionsSchema, 'PlanRequest');
const ApproveRequest = openapi(ApproveOptionsSchema, 'ApproveRequest');
const ExclusionApprovalRequest = z
  .strictObject({ packages: z.array(z.string().min(1).max(256)).min(1).max(1000) })
  .openapi('ExclusionApprovalRequest');
// The lease holder and window waiting belong to the process running the plan, not to the caller.
const RunRequest = ExecuteOptionsSchema.pick({
  expectedServerMs: true,
  commandTimeoutMs: true,
  rebootTimeoutMs: true,
  minFreeRootMiB: true,
  minFreeBootMiB: true,
  acknowledgeFailures: true,
}).openapi('RunRequest');
const RunStarted = z
  .strictObject({
    planId: z.string(),
    jobId: z.string(),
    resumed: z.boolean().openapi({ description: 'The run continues one that stopped (a crash, a pause).' }),
  })
  .openapi('RunStarted', { description: 'Follow the run on the plan: its `status` and `jobId`.' });

const HASH = 'a3f1c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778';

/** Patch policies, plans, approvals and runs. */
export const patchRoutes: RouteModule = (app, { fleet, background }) => {
  // Ties a run's `patch.run.started` event to the request that started it, among concurrent runs.
  const runContext = new AsyncLocalStorage<symbol>();

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/patch/policies',
      operationId: 'listPatchPolicies',
      tags: ['patch'],
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(PatchPolicy), 'A page of policies.') },
    }),
    async (c) => {
      const policies = await c.get('session').patch.policies.list();
      return c.json(
        pageList('patch/policies', policies, (p) => p.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/patch/policies',
      operationId: 'addPatchPolicy',
      tags: ['patch'],
      request: {
        body: jsonBody(PatchPolicyInput, {
          id: 'web-weekly',
          name: 'Web tier, security weekly',
          projectId: 'web',
          categories: ['security'],
          window: { cron: '0 2 * * 0', timeZone: 'Europe/Berlin', durationMinutes: 240 },
        }),
      },
      responses: { 201: { ...jsonResponse(PatchPolicy, 'The policy as stored.'), headers: locationHeader } },
    }),
    async (c) => {
      const policy = await c.get('session').patch.policies.add(c.req.valid('json'));
      c.header('Location', `/v1/patch/policies/${encodeURIComponent(policy.id)}`);
      return c.json(policy, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/patch/policies/{policyId}',
      operationId: 'getPatchPolicy',
      tags: ['patch'],
      request: { params: idParams('policyId') },
      responses: { 200: jsonResponse(PatchPolicy, 'The policy.') },
    }),
    async (c) => c.json(await c.get('session').patch.policies.get(c.req.valid('param').policyId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'patch',
      path: '/v1/patch/policies/{policyId}',
      operationId: 'updatePatchPolicy',
      tags: ['patch'],
      request: {
        params: idParams('policyId'),
        body: jsonBody(PatchPolicyChanges, { expectedVersion: 1, categories: ['security', 'bugfix'] }),
      },
      responses: { 200: jsonResponse(PatchPolicy, 'The policy as stored.') },
    }),
    async (c) => {
      const { policyId } = c.req.valid('param');
      const { changes, expectedVersion } = splitChanges(c.req.valid('json'));
      return c.json(
        await c.get('session').patch.policies.update(policyId, changes, { expectedVersion }),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/patch/plans',
      operationId: 'planPatchRun',
      tags: ['patch'],
      summary: 'Plans a patch run: exact packages per server, waves, stop condition and the hash to approve.',
      description: 'Servers without a fresh scan are scanned first, so this can take as long as a scan.',
      request: { body: jsonBody(PlanRequest, { policyId: 'web-weekly', maxScanAgeMs: 3_600_000 }) },
      responses: {
        201: { ...jsonResponse(PatchPlan, 'The plan, awaiting approval.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const plan = await c.get('session').patch.planPatchRun(c.req.valid('json'));
      c.header('Location', `/v1/patch/plans/${encodeURIComponent(plan.id)}`);
      return c.json(plan, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/patch/plans/{planId}',
      operationId: 'getPatchPlan',
      tags: ['patch'],
      summary: 'A plan, with its approvals, status and (once run) `jobId`.',
      request: { params: idParams('planId') },
      responses: { 200: jsonResponse(PatchPlan, 'The plan.') },
    }),
    async (c) => c.json(await c.get('session').patch.getPlan(c.req.valid('param').planId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/patch/plans/{planId}/approvals',
      operationId: 'approvePatchPlan',
      tags: ['patch'],
      summary: 'Approves the plan with the hash the approver reviewed; never by its requester.',
      request: {
        params: idParams('planId'),
        body: jsonBody(ApproveRequest, { hash: HASH, comment: 'Reviewed with the web team.' }),
      },
      responses: { 200: jsonResponse(PatchPlan, 'The plan with the approval.') },
    }),
    async (c) => {
      const { planId } = c.req.valid('param');
      return c.json(await c.get('session').patch.approvePlan(planId, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/patch/plans/{planId}/exclusion-approvals',
      operationId: 'approvePatchExclusions',
      tags: ['patch'],
      summary: 'Secondary approval of excluded packages: a new plan including them supersedes this one.',
      request: {
        params: idParams('planId'),
        body: jsonBody(ExclusionApprovalRequest, { packages: ['linux-image-amd64'] }),
      },
      responses: {
        201: { ...jsonResponse(PatchPlan, 'The new plan, awaiting approval.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const { planId } = c.req.valid('param');
      const plan = await c.get('session').patch.approveExclusions(planId, c.req.valid('json').packages);
      c.header('Location', `/v1/patch/plans/${encodeURIComponent(plan.id)}`);
      return c.json(plan, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/patch/plans/{planId}/runs',
      operationId: 'runPatchPlan',
      tags: ['patch'],
      summary: 'Starts (or resumes) the run of an approved plan and answers once it has started.',
      description:
        'The run goes on after the answer; follow it on the plan. Outside the maintenance window the ' +
        'run records that it is waiting and ends: start it again in the window.',
      request: { params: idParams('planId'), body: jsonBody(RunRequest, { acknowledgeFailures: false }) },
      responses: { 202: jsonResponse(RunStarted, 'The run has started.') },
    }),
    async (c) => {
      const { planId } = c.req.valid('param');
      const options = c.req.valid('json');
      const session = c.get('session');
      const tag = Symbol(planId);
      let started: ((e: { jobId: string; resumed: boolean }) => void) | undefined;
      const whenStarted = new Promise<{ jobId: string; resumed: boolean }>((resolve) => {
        started = resolve;
      });
      let answered = false;
      const onStarted = (event: { planId: string; jobId: string; resumed: boolean }) => {
        if (runContext.getStore() !== tag) return;
        answered = true;
        started?.(event);
      };
      fleet.events.on('patch.run.started', onStarted);
      try {
        const run = runContext.run(tag, () =>
          session.patch.executePlan(planId, { ...options, waitForWindow: false, signal: background.signal }),
        );
        const first = await Promise.race([
          whenStarted,
          background.track(run, () => !answered).then((job: Job) => ({ jobId: job.id, resumed: false })),
        ]);
        return c.json({ planId, jobId: first.jobId, resumed: first.resumed }, 202);
      } finally {
        fleet.events.off('patch.run.started', onStarted);
      }
    },
  );
};
