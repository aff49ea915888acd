import { AsyncLocalStorage } from 'node:async_hooks';
import {
  AddScriptInputSchema,
  ApproveScriptOptionsSchema,
  ExecuteRunOptionsSchema,
  type Fleet,
  type FleetSession,
  OutputSummarySchema,
  PlanRunInputSchema,
  ScriptNameSchema,
  type ScriptRunResults,
  ScriptRunStatusSchema,
  scriptEvents,
  versionOptions,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import type { BackgroundRuns } from '../background.js';
import { PageQuery, pageList } from '../pagination.js';
import { scrubError, withoutSecrets } from '../redact.js';
import { Job, pageOf, type Same, Script, ScriptApproval, ScriptRun } from '../schemas.js';
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
import { pageOfCurrent, pageOfVersions, VersionQuery } from './versioned.js';

const ScriptInput = openapi(AddScriptInputSchema, 'ScriptInput');
const ScriptApprovalInput = openapi(ApproveScriptOptionsSchema, 'ScriptApprovalInput');
const ScriptRunPlanInput = openapi(PlanRunInputSchema, 'ScriptRunPlanInput');

// Lease, output files and cancel polling belong to the process that runs the script, not to the
// caller: `outputDir` in particular would let a caller write files on the API's machine.
const execute = ExecuteRunOptionsSchema.shape;
const ScriptRunExecution = z
  .strictObject({
    maxOutputBytes: execute.maxOutputBytes.unwrap().optional(),
    acknowledgeFailures: execute.acknowledgeFailures.unwrap().optional(),
    secrets: openapi(execute.secrets, {
      description:
        'Values of the run’s secret parameters, when the Fleet has no SecretStore to keep them from ' +
        'planning to start. Never returned, stored with the run or audited.',
    }),
  })
  .openapi('ScriptRunExecution');

const ScriptRunCancellation = z
  .strictObject({ reason: z.string().min(1).max(500).optional() })
  .openapi('ScriptRunCancellation');

const ScriptRunStarted = z
  .strictObject({
    runId: z.string(),
    jobId: z.string(),
    resumed: z.boolean(),
  })
  .openapi('ScriptRunStarted', { description: 'Follow the run with `GET /v1/script-runs/{runId}`.' });

const ServerRunState = z.enum(['pending', 'running', 'succeeded', 'failed', 'not-started', 'cancelled']);
const OutputSummary = openapi(OutputSummarySchema, 'OutputSummary');
const ServerRunResult = z
  .strictObject({
    serverId: z.string(),
    wave: z.string(),
    state: ServerRunState,
    attempt: z.number().int(),
    exitCode: z.number().int().nullable().optional(),
    unreachable: z.boolean(),
    timedOut: z.boolean(),
    countsAgainstBudget: z.boolean(),
    startedAt: z.string().optional(),
    finishedAt: z.string().optional(),
    durationMs: z.number().optional(),
    error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
    stdout: OutputSummary.optional(),
    stderr: OutputSummary.optional(),
    fullOutput: z.strictObject({ stdout: z.string(), stderr: z.string() }).optional(),
    outputRedacted: z.boolean().optional(),
  })
  .openapi('ServerRunResult', {
    description: 'Secret parameter values in the kept output are replaced by `[REDACTED]`.',
  });
const ScriptRunResultsSchema = z
  .strictObject({
    run: ScriptRun,
    job: Job.optional(),
    servers: z.array(ServerRunResult),
    counts: z.record(ServerRunState, z.number().int()),
  })
  .openapi('ScriptRunResults');
const sameResults: Same<z.infer<typeof ScriptRunResultsSchema>, ScriptRunResults> = true;
void sameResults;

const scriptParams = z.strictObject({
  scriptName: openapi(ScriptNameSchema, {
    param: { name: 'scriptName', in: 'path' },
    example: 'restart-nginx',
  }),
});

const ScriptListQuery = PageQuery.extend({
  tag: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .openapi({ param: { name: 'tag', in: 'query' }, description: 'Only scripts with this tag.' }),
});

const RunListQuery = PageQuery.extend({
  script: openapi(ScriptNameSchema.optional(), {
    param: { name: 'script', in: 'query' },
    description: 'Only runs of this script.',
  }),
  status: openapi(ScriptRunStatusSchema.optional(), { param: { name: 'status', in: 'query' } }),
});

/**
 * The values of `params` that the script (in any of its versions) declares secret. Read from the
 * store, not through the facade: they only decide what to redact and never reach the caller.
 */
async function secretParamValues(
  fleet: Fleet,
  session: FleetSession,
  script: string,
  params: Record<string, string | number | boolean>,
): Promise<string[]> {
  const versions = await fleet.store.scripts.listAll(session.actor.tenantId, { where: { name: script } });
  const secret = new Set(versions.flatMap((v) => v.parameters.filter((p) => p.secret).map((p) => p.name)));
  return Object.entries(params)
    .filter(([name]) => secret.has(name))
    .map(([, value]) => String(value));
}

/**
 * Starts or resumes a run and resolves once it has started (its `script.run.started` event), or
 * rejects with why it could not start. The run goes on afterwards, tracked by `background`.
 */
function startInBackground(
  fleet: Fleet,
  background: BackgroundRuns,
  runContext: AsyncLocalStorage<symbol>,
  session: FleetSession,
  runId: string,
  mode: 'start' | 'resume',
  body: z.output<typeof ScriptRunExecution>,
): Promise<z.infer<typeof ScriptRunStarted>> {
  const secrets = Object.values(body.secrets ?? {});
  const options = {
    ...(body.maxOutputBytes === undefined ? {} : { maxOutputBytes: body.maxOutputBytes }),
    ...(body.acknowledgeFailures === undefined ? {} : { acknowledgeFailures: body.acknowledgeFailures }),
    ...(body.secrets === undefined ? {} : { secrets: body.secrets }),
    signal: background.signal,
  };
  const events = scriptEvents(fleet);
  const tag = Symbol(runId);
  let answered = false;
  let started: ((e: { jobId: string; resumed: boolean }) => void) | undefined;
  const whenStarted = new Promise<{ jobId: string; resumed: boolean }>((resolve) => {
    started = resolve;
  });
  // Among concurrent starts, only the event of the execution this request began counts.
  const onStarted = (event: { jobId: string; resumed: boolean }) => {
    if (runContext.getStore() !== tag) return;
    answered = true;
    started?.(event);
  };
  events.on('script.run.started', onStarted);
  const run = runContext
    .run(tag, () =>
      mode === 'start' ? session.scripts.startRun(runId, options) : session.scripts.resumeRun(runId, options),
    )
    .catch((error: unknown) => {
      throw scrubError(error, secrets);
    });
  const ended = background
    .track(run, () => !answered, `script run ${runId}`)
    .then((results) => ({ jobId: results.job?.id ?? results.run.jobId ?? '', resumed: mode === 'resume' }));
  return Promise.race([whenStarted, ended])
    .then((first) => ({ runId, jobId: first.jobId, resumed: first.resumed }))
    .finally(() => events.off('script.run.started', onStarted));
}

/** The script repository and script runs. */
export const scriptRoutes: RouteModule = (app, { fleet, background }) => {
  const runContext = new AsyncLocalStorage<symbol>();

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/scripts',
      operationId: 'listScripts',
      tags: ['scripts'],
      summary: 'The current version of every script, by name.',
      request: { query: ScriptListQuery },
      responses: { 200: jsonResponse(pageOf(Script), 'A page of scripts.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const scripts = await c.get('session').scripts.list(query.tag === undefined ? {} : { tag: query.tag });
      return c.json(pageOfCurrent(`scripts/${query.tag ?? ''}`, scripts, query), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/scripts',
      operationId: 'addScript',
      tags: ['scripts'],
      summary: 'Adds a version of a script (creating it on its first version).',
      description:
        'Content equal to the current version adds nothing and answers with the current version. Any ' +
        'other change is a new revision with a new content hash, which voids the approvals of a risky ' +
        'script. Lowering a script’s risk also needs `script.approve`.',
      request: {
        body: jsonBody(ScriptInput, {
          name: 'restart-nginx',
          description: 'Restarts a web service and shows its state.',
          interpreter: 'sh',
          body: 'systemctl restart "$SERVICE" && systemctl --no-pager status "$SERVICE"\n',
          parameters: [{ name: 'SERVICE', type: 'string', required: true, allowed: ['nginx', 'php-fpm'] }],
          tags: ['web'],
          runAsRoot: true,
        }),
      },
      responses: {
        201: { ...jsonResponse(Script, 'The current version of the script.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const script = await c.get('session').scripts.add(c.req.valid('json'));
      c.header('Location', `/v1/scripts/${encodeURIComponent(script.name)}`);
      return c.json(script, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/scripts/{scriptName}',
      operationId: 'getScript',
      tags: ['scripts'],
      summary: 'The current version of a script, or the one asked for.',
      request: { params: scriptParams, query: VersionQuery },
      responses: { 200: jsonResponse(Script, 'The version.') },
    }),
    async (c) => {
      const { scriptName } = c.req.valid('param');
      const asked = versionOptions(c.req.valid('query').version);
      return c.json(await c.get('session').scripts.get(scriptName, asked), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/scripts/{scriptName}/versions',
      operationId: 'listScriptVersions',
      tags: ['scripts'],
      summary: 'Every version of a script, oldest first.',
      request: { params: scriptParams, query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Script), 'A page of versions.') },
    }),
    async (c) => {
      const { scriptName } = c.req.valid('param');
      const versions = await c.get('session').scripts.versions(scriptName);
      return c.json(pageOfVersions('script', scriptName, versions, c.req.valid('query')), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/scripts/{scriptName}/approvals',
      operationId: 'approveScript',
      tags: ['scripts'],
      summary: 'Approves the current version of a risky script, named by the content hash reviewed.',
      description:
        'Its author cannot approve it, nor anyone twice; a hash that is no longer current is a 409 ' +
        '(review the new version).',
      request: {
        params: scriptParams,
        body: jsonBody(ScriptApprovalInput, {
          hash: '5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592',
          comment: 'Reviewed: restarts only the named service.',
        }),
      },
      responses: {
        201: jsonResponse(ScriptApproval, 'The approval.'),
      },
    }),
    async (c) => {
      const { scriptName } = c.req.valid('param');
      return c.json(await c.get('session').scripts.approve(scriptName, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/script-runs',
      operationId: 'planScriptRun',
      tags: ['scripts'],
      summary: 'Plans a run without running anything: version, servers, parameters, waves, stop condition.',
      description:
        'The run waits as `awaiting-start`. Needs `script.run` on the script and every server. Values of ' +
        'secret parameters are kept in the SecretStore for the run’s lifetime (without one, pass them ' +
        'again when starting) and appear in no answer.',
      request: {
        body: jsonBody(ScriptRunPlanInput, {
          script: 'restart-nginx',
          targets: { serverIds: ['web-1'] },
          params: { SERVICE: 'nginx' },
          rollout: {
            waves: [{ name: 'canary', selector: { labels: { canary: 'true' } } }],
            maxConcurrency: 5,
            errorBudget: { count: 0 },
          },
          ticket: 'CHG-1024',
        }),
      },
      responses: {
        201: { ...jsonResponse(ScriptRun, 'The run, awaiting its start.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const input = c.req.valid('json');
      const session = c.get('session');
      const secrets = await secretParamValues(fleet, session, input.script, input.params);
      const run = await withoutSecrets(secrets, () => session.scripts.planRun(input));
      c.header('Location', `/v1/script-runs/${encodeURIComponent(run.id)}`);
      return c.json(run, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/script-runs',
      operationId: 'listScriptRuns',
      tags: ['scripts'],
      summary: 'Runs of every script (needs `script.read` on all scripts) or of one.',
      request: { query: RunListQuery },
      responses: { 200: jsonResponse(pageOf(ScriptRun), 'A page of runs.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const runs = await c.get('session').scripts.listRuns({
        ...(query.script ? { script: query.script } : {}),
        ...(query.status ? { status: query.status } : {}),
      });
      return c.json(
        pageList(`script-runs/${query.script ?? ''}/${query.status ?? ''}`, runs, (r) => r.id, query),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/script-runs/{runId}',
      operationId: 'getScriptRun',
      tags: ['scripts'],
      summary: 'A run with every server’s state and result: exit code and what was kept of the output.',
      request: { params: idParams('runId') },
      responses: { 200: jsonResponse(ScriptRunResultsSchema, 'The run and its servers.') },
    }),
    async (c) => c.json(await c.get('session').scripts.getRun(c.req.valid('param').runId), 200),
  );

  const startRoute = (mode: 'start' | 'resume') =>
    apiRoute({
      method: 'post',
      path: mode === 'start' ? '/v1/script-runs/{runId}/start' : '/v1/script-runs/{runId}/resumption',
      operationId: mode === 'start' ? 'startScriptRun' : 'resumeScriptRun',
      tags: ['scripts'],
      summary:
        mode === 'start'
          ? 'Starts a planned run and answers once it has started.'
          : 'Resumes a run whose process died, or one paused by its error budget (`acknowledgeFailures`).',
      description:
        'The run goes on after the answer; follow it with `GET /v1/script-runs/{runId}`. A risky script ' +
        'runs only with an approval of its current content hash. A run already executing elsewhere is a ' +
        '409. Servers that finished keep their results: nothing runs twice on a server.',
      request: {
        params: idParams('runId'),
        body: optionalJsonBody(
          ScriptRunExecution,
          mode === 'start' ? { maxOutputBytes: 65_536 } : { acknowledgeFailures: true },
        ),
      },
      responses: { 202: jsonResponse(ScriptRunStarted, 'The run has started.') },
    });

  for (const mode of ['start', 'resume'] as const) {
    app.openapi(startRoute(mode), async (c) => {
      const { runId } = c.req.valid('param');
      const started = await startInBackground(
        fleet,
        background,
        runContext,
        c.get('session'),
        runId,
        mode,
        c.req.valid('json'),
      );
      return c.json(started, 202);
    });
  }

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/script-runs/{runId}/cancellation',
      operationId: 'cancelScriptRun',
      tags: ['scripts'],
      summary: 'Cancels a run: at once when it is not executing, otherwise its process stops it.',
      description:
        'A run executing in a process (this one or another) is marked; that process kills the scripts ' +
        'still running, starts no further server and ends the run as `cancelled`.',
      request: {
        params: idParams('runId'),
        body: optionalJsonBody(ScriptRunCancellation, { reason: 'Wrong maintenance window.' }),
      },
      responses: { 200: jsonResponse(ScriptRun, 'The run, cancelled or marked for cancellation.') },
    }),
    async (c) => {
      const { runId } = c.req.valid('param');
      const { reason } = c.req.valid('json');
      const run = await c.get('session').scripts.cancelRun(runId, reason ? { reason } : {});
      return c.json(run, 200);
    },
  );
};
