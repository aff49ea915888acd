import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ApproveStepOptionsSchema,
  DefineRunbookInputSchema,
  type Fleet,
  FleetwardError,
  type RunbookEvents,
  RunbookNameSchema,
  RunbookRunSchema,
  RunbookRunStatusSchema,
  RunbookSchema,
  RunbookStepIdSchema,
  type RunbookRun as SdkRunbookRun,
  StartRunbookInputSchema,
  versionOptions,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import type { BackgroundRuns } from '../background.js';
import { PageQuery, pageList } from '../pagination.js';
import { pageOf } from '../schemas.js';
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
import { pageOfCurrent, VersionQuery } from './versioned.js';

const Runbook = openapi(RunbookSchema, 'Runbook');
const RunbookRun = openapi(RunbookRunSchema, 'RunbookRun');
const RunbookInput = openapi(DefineRunbookInputSchema, 'RunbookInput');
const RunbookRunInput = openapi(StartRunbookInputSchema, 'RunbookRunInput');
// `continueRun: false` is the SDK's way to record an approval without continuing; over HTTP the
// run then waits for `POST …/resumption`, exactly as it does for an SDK caller.
const RunbookStepApprovalInput = openapi(ApproveStepOptionsSchema, 'RunbookStepApprovalInput');

const RunbookRunCancellation = z
  .strictObject({ reason: z.string().min(1).max(500).optional() })
  .openapi('RunbookRunCancellation');

const executing = z.boolean().openapi({
  description:
    'Whether this server now executes the run in the background (follow it with ' +
    '`GET /v1/runbook-runs/{runbookRunId}`); `false` when the run still waits where it waited.',
});

const RunbookRunExecution = z.strictObject({ runId: z.string(), executing }).openapi('RunbookRunExecution');

const RunbookStepApproval = z
  .strictObject({
    runId: z.string(),
    stepId: RunbookStepIdSchema,
    principalId: z.string(),
    approvals: z.number().int().openapi({ description: 'Distinct approvals the step has now.' }),
    required: z.number().int().openapi({ description: 'Distinct approvals the step needs.' }),
    executing,
  })
  .openapi('RunbookStepApproval');

const runbookParams = z.strictObject({
  runbookName: openapi(RunbookNameSchema, {
    param: { name: 'runbookName', in: 'path' },
    example: 'rolling-restart',
  }),
});

// `runbookRunId`, not `runId`: a path parameter's name says which kind of entity it names, and
// `runId` already names script runs.
const runParams = idParams('runbookRunId');

const RunListQuery = PageQuery.extend({
  runbook: openapi(RunbookNameSchema.optional(), {
    param: { name: 'runbook', in: 'query' },
    description: 'Only runs of this runbook.',
  }),
  status: openapi(RunbookRunStatusSchema.optional(), { param: { name: 'status', in: 'query' } }),
});

type Started = RunbookEvents['runbook.run.started'][0];
type Approved = RunbookEvents['runbook.step.approved'][0];

/** What a call that may execute a run had done by the time it is answered. */
interface Progress {
  runId: string;
  /** Whether the run now executes in the background (the call's `runbook.run.started` event came). */
  executing: boolean;
  /** The approval the call recorded (its `runbook.step.approved` event). */
  approved?: Approved;
}

/**
 * Calls `call` (a start, resume or approval) and resolves once the run executes (its
 * `runbook.run.started` event), or once the call returned without executing it (a run still
 * awaiting approvals), or rejects with why it failed. Execution goes on afterwards, tracked by
 * `background`: a run that pauses at an approval step or a wait is then simply in that state.
 */
function executeInBackground(
  fleet: Fleet,
  background: BackgroundRuns,
  runContext: AsyncLocalStorage<symbol>,
  what: string,
  call: (signal: AbortSignal) => Promise<SdkRunbookRun>,
): Promise<Progress> {
  const tag = Symbol(what);
  let approved: Approved | undefined;
  let answered = false;
  let started: ((runId: string) => void) | undefined;
  const whenStarted = new Promise<string>((resolve) => {
    started = resolve;
  });
  // Among concurrent calls, only the events of the call this request made count.
  const onStarted = (event: Started) => {
    if (runContext.getStore() !== tag) return;
    answered = true;
    started?.(event.runId);
  };
  const onApproved = (event: Approved) => {
    if (runContext.getStore() === tag) approved = event;
  };
  fleet.events.on('runbook.run.started', onStarted);
  fleet.events.on('runbook.step.approved', onApproved);
  const run = runContext.run(tag, () => call(background.signal));
  const ended = background.track(run, () => !answered, what);
  return Promise.race([
    whenStarted.then((runId) => ({ runId, executing: true })),
    ended.then((returned) => ({ runId: returned.id, executing: false })),
  ])
    .then((progress) => (approved ? { ...progress, approved } : progress))
    .finally(() => {
      fleet.events.off('runbook.run.started', onStarted);
      fleet.events.off('runbook.step.approved', onApproved);
    });
}

/** Runbooks and their runs. */
export const runbookRoutes: RouteModule = (app, { fleet, background }) => {
  const runContext = new AsyncLocalStorage<symbol>();
  const inBackground = (what: string, call: (signal: AbortSignal) => Promise<SdkRunbookRun>) =>
    executeInBackground(fleet, background, runContext, what, call);

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/runbooks',
      operationId: 'listRunbooks',
      tags: ['runbooks'],
      summary: 'The current version of every runbook, by name.',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Runbook), 'A page of runbooks.') },
    }),
    async (c) => {
      const runbooks = await c.get('session').runbooks.list();
      return c.json(pageOfCurrent('runbooks', runbooks, c.req.valid('query')), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/runbooks',
      operationId: 'defineRunbook',
      tags: ['runbooks'],
      summary: 'Adds a version of a runbook (creating it on its first version).',
      description:
        'A definition equal to the current version adds nothing and answers with the current version. ' +
        'Step ids must be unique and a `goto` must point forward (`400` naming the field); the scripts ' +
        'and webhook endpoints the steps name must exist (`422` naming the step’s field).',
      request: {
        body: jsonBody(RunbookInput, {
          name: 'rolling-restart',
          description: 'Restarts a web service once the change is approved, then lets it settle.',
          parameters: [{ name: 'SERVICE', type: 'string', required: true, allowed: ['nginx', 'php-fpm'] }],
          steps: [
            {
              id: 'change-approved',
              kind: 'approval',
              instructions: 'Check the change ticket and that the on-call engineer knows.',
            },
            {
              id: 'restart',
              kind: 'script',
              script: 'restart-nginx',
              params: { SERVICE: { param: 'SERVICE' } },
              rollout: { maxConcurrency: 1 },
            },
            { id: 'settle', kind: 'wait', durationSeconds: 60 },
          ],
        }),
      },
      responses: {
        201: { ...jsonResponse(Runbook, 'The current version of the runbook.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const runbook = await c.get('session').runbooks.define(c.req.valid('json'));
      c.header('Location', `/v1/runbooks/${encodeURIComponent(runbook.name)}`);
      return c.json(runbook, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/runbooks/{runbookName}',
      operationId: 'getRunbook',
      tags: ['runbooks'],
      summary: 'The current version of a runbook, or the one asked for.',
      request: { params: runbookParams, query: VersionQuery },
      responses: { 200: jsonResponse(Runbook, 'The version.') },
    }),
    async (c) => {
      const { runbookName } = c.req.valid('param');
      const asked = versionOptions(c.req.valid('query').version);
      return c.json(await c.get('session').runbooks.get(runbookName, asked), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/runbook-runs',
      operationId: 'startRunbookRun',
      tags: ['runbooks'],
      summary: 'Starts a run of a runbook and answers once it executes.',
      description:
        'Targets are resolved to servers, every script step’s version is pinned (a risky one must be ' +
        'approved) and every parameter is checked before anything runs: a refusal is the answer ' +
        'itself. The run then goes on in the background; one at an approval step is ' +
        '`awaiting-approval` and one at a wait step `waiting` when fetched. Needs `script.run` on ' +
        'every server and script of the runbook (and `patch.scan` when it scans).',
      request: {
        body: jsonBody(RunbookRunInput, {
          runbook: 'rolling-restart',
          targets: { serverIds: ['web-1'] },
          params: { SERVICE: 'nginx' },
          ticket: 'CHG-1024',
        }),
      },
      responses: {
        202: {
          ...jsonResponse(RunbookRunExecution, 'The run executes; follow it with its `Location`.'),
          headers: locationHeader,
        },
      },
    }),
    async (c) => {
      const input = c.req.valid('json');
      const session = c.get('session');
      const { runId, executing } = await inBackground(`runbook run of ${input.runbook}`, (signal) =>
        session.runbooks.start(input, { signal }),
      );
      c.header('Location', `/v1/runbook-runs/${encodeURIComponent(runId)}`);
      return c.json({ runId, executing }, 202);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/runbook-runs',
      operationId: 'listRunbookRuns',
      tags: ['runbooks'],
      summary: 'Runs of every runbook (needs `script.read` on all runbooks) or of one.',
      request: { query: RunListQuery },
      responses: { 200: jsonResponse(pageOf(RunbookRun), 'A page of runs.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const runs = await c.get('session').runbooks.listRuns({
        ...(query.runbook ? { runbook: query.runbook } : {}),
        ...(query.status ? { status: query.status } : {}),
      });
      return c.json(
        pageList(`runbook-runs/${query.runbook ?? ''}/${query.status ?? ''}`, runs, (r) => r.id, query),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/runbook-runs/{runbookRunId}',
      operationId: 'getRunbookRun',
      tags: ['runbooks'],
      summary: 'A run with every step’s state, its approvals and where it is.',
      request: { params: runParams },
      responses: { 200: jsonResponse(RunbookRun, 'The run.') },
    }),
    async (c) => c.json(await c.get('session').runbooks.getRun(c.req.valid('param').runbookRunId), 200),
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/runbook-runs/{runbookRunId}/approvals',
      operationId: 'approveRunbookStep',
      tags: ['runbooks'],
      summary: 'Approves the approval step a run awaits; with its last approval the run goes on.',
      description:
        'Needs `runbook.approve`. The principal who started the run cannot approve it, nor anyone ' +
        'twice, nor anyone outside the step’s `approvers`. Naming `stepId` makes sure the run still ' +
        'awaits the step reviewed (`409` otherwise). Once the step has all its approvals the run ' +
        'continues in the background with the rights of the principal who started it.',
      request: {
        params: runParams,
        body: optionalJsonBody(RunbookStepApprovalInput, {
          stepId: 'change-approved',
          comment: 'CHG-1024 was approved by the change board.',
        }),
      },
      responses: {
        201: jsonResponse(RunbookStepApproval, 'The approval is recorded; the run still awaits approval.'),
        202: jsonResponse(RunbookStepApproval, 'The approval is recorded and the run executes again.'),
      },
    }),
    async (c) => {
      const { runbookRunId } = c.req.valid('param');
      const session = c.get('session');
      const body = c.req.valid('json');
      const progress = await inBackground(`runbook run ${runbookRunId}`, (signal) =>
        session.runbooks.approveStep(runbookRunId, body, { signal }),
      );
      const { approved } = progress;
      // approveStep resolves, or goes on executing, only after it has recorded and announced the approval.
      if (!approved) {
        throw new FleetwardError('INTERNAL', `approving runbook run ${runbookRunId} announced no approval`, {
          fault: 'internal',
        });
      }
      const answer = {
        runId: runbookRunId,
        stepId: approved.stepId,
        principalId: approved.principalId,
        approvals: approved.approvals,
        required: approved.required,
        executing: progress.executing,
      };
      return answer.executing ? c.json(answer, 202) : c.json(answer, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/runbook-runs/{runbookRunId}/resumption',
      operationId: 'resumeRunbookRun',
      tags: ['runbooks'],
      summary: 'Continues a run from the step it is at, in the background.',
      description:
        'For a run whose process died (once its lease expired) or one approved with ' +
        '`continueRun: false`. A step that was running is taken up again without doing anything ' +
        'twice. A run still awaiting approvals is left as it is (`200`, `executing: false`); one that ' +
        'ended, or that another process executes, is a `409`.',
      request: { params: runParams },
      responses: {
        200: jsonResponse(RunbookRunExecution, 'The run still waits on approvals; nothing was resumed.'),
        202: jsonResponse(RunbookRunExecution, 'The run executes again.'),
      },
    }),
    async (c) => {
      const { runbookRunId } = c.req.valid('param');
      const session = c.get('session');
      const { executing } = await inBackground(`runbook run ${runbookRunId}`, (signal) =>
        session.runbooks.resume(runbookRunId, { signal }),
      );
      const answer = { runId: runbookRunId, executing };
      return answer.executing ? c.json(answer, 202) : c.json(answer, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/runbook-runs/{runbookRunId}/cancellation',
      operationId: 'cancelRunbookRun',
      tags: ['runbooks'],
      summary: 'Cancels a run: at once when nobody executes it, otherwise its process stops it.',
      description:
        'A paused run (awaiting approval, or waiting in a process that died) ends `cancelled` at once, ' +
        'with the script run its current step left behind. A run executing in a process is marked; that ' +
        'process kills the scripts still running, starts no further step and ends the run `cancelled`.',
      request: {
        params: runParams,
        body: optionalJsonBody(RunbookRunCancellation, { reason: 'The change was rolled back.' }),
      },
      responses: { 200: jsonResponse(RunbookRun, 'The run, cancelled or marked for cancellation.') },
    }),
    async (c) => {
      const { runbookRunId } = c.req.valid('param');
      const { reason } = c.req.valid('json');
      const run = await c.get('session').runbooks.cancel(runbookRunId, reason ? { reason } : {});
      return c.json(run, 200);
    },
  );
};
