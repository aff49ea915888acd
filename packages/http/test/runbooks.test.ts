import { RunbookRunSchema, RunbookSchema } from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, principalWithToken, problemOf, type Reply, startHarness } from './support/harness.js';

let h: Harness;
let approver: string;
let secondApprover: string;
const failures: unknown[] = [];

beforeAll(async () => {
  h = await startHarness({ onError: (error) => failures.push(error) });
  const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
  await admin.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
  approver = await principalWithToken(h, { tenantId: 'bravo', id: 'approver' });
  secondApprover = await principalWithToken(h, { tenantId: 'bravo', id: 'second-approver' });
  for (const script of [
    { name: 'noop', interpreter: 'sh', body: 'true\n' },
    { name: 'risky-noop', interpreter: 'sh', body: 'true\n', risky: true },
  ]) {
    const added = await h.call('POST', '/v1/scripts', { token: bravo(), body: script });
    expect(added.status, added.text).toBe(201);
  }
});
afterAll(() => h.close());

const bravo = () => h.tokens.bravo;
const onLocalhost = { serverIds: ['localhost'] };

async function define(body: object): Promise<Reply> {
  const response = await h.call('POST', '/v1/runbooks', { token: bravo(), body });
  expect(response.status, response.text).toBe(201);
  return response;
}

async function start(body: object): Promise<string> {
  const response = await h.call('POST', '/v1/runbook-runs', { token: bravo(), body });
  expect(response.status, response.text).toBe(202);
  expect(response.json()).toEqual({ runId: expect.any(String), executing: true });
  const { runId } = response.json();
  expect(response.headers.get('location')).toBe(`/v1/runbook-runs/${runId}`);
  return runId;
}

/** Polls the run until its status is one of `statuses`. */
async function until(runId: string, statuses: string[]) {
  let last = '';
  for (let i = 0; i < 400; i++) {
    const response = await h.call('GET', `/v1/runbook-runs/${runId}`, { token: bravo() });
    expect(response.status, response.text).toBe(200);
    const run = RunbookRunSchema.parse(response.json());
    if (statuses.includes(run.status)) return run;
    last = run.status;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`runbook run ${runId} stayed ${last}, never ${statuses.join(' or ')}`);
}

describe('runbooks', () => {
  it('POST /v1/runbooks and GET /v1/runbooks[/{runbookName}] — versions by revision and hash; the same definition adds nothing', async () => {
    const definition = {
      name: 'settle',
      description: 'Waits for things to settle.',
      steps: [{ id: 'pause', kind: 'wait', durationSeconds: 5 }],
    };
    const first = await define(definition);
    expect(first.headers.get('location')).toBe('/v1/runbooks/settle');
    expect(RunbookSchema.parse(first.json())).toMatchObject({
      name: 'settle',
      revision: 1,
      createdBy: 'bravo-admin',
      steps: [{ id: 'pause', kind: 'wait', durationSeconds: 5, onFailure: 'stop' }],
    });
    expect((await define(definition)).json().revision).toBe(1);
    const second = await define({
      ...definition,
      steps: [{ id: 'pause', kind: 'wait', durationSeconds: 9 }],
    });
    expect(second.json().revision).toBe(2);
    expect(second.json().contentHash).not.toBe(first.json().contentHash);

    const current = await h.call('GET', '/v1/runbooks/settle', { token: bravo() });
    expect(current.json()).toMatchObject({ revision: 2, steps: [{ durationSeconds: 9 }] });
    const byRevision = await h.call('GET', '/v1/runbooks/settle?version=1', { token: bravo() });
    expect(byRevision.json().steps[0].durationSeconds).toBe(5);
    const byHash = await h.call('GET', `/v1/runbooks/settle?version=${first.json().contentHash}`, {
      token: bravo(),
    });
    expect(byHash.json().revision).toBe(1);
    expect((await h.call('GET', '/v1/runbooks/settle?version=3', { token: bravo() })).status).toBe(404);
    expect((await h.call('GET', '/v1/runbooks/settle?version=latest', { token: bravo() })).status).toBe(400);
    expect((await h.call('GET', '/v1/runbooks/nothing-here', { token: bravo() })).status).toBe(404);

    const listed = await h.call('GET', '/v1/runbooks', { token: bravo() });
    expect(listed.json().items).toContainEqual(expect.objectContaining({ name: 'settle', revision: 2 }));
  });

  it('POST /v1/runbooks — a malformed definition is a 400 naming the body field; a step naming a missing script a 422 naming the step', async () => {
    const backwards = await h.call('POST', '/v1/runbooks', {
      token: bravo(),
      body: {
        name: 'loops',
        steps: [
          { id: 'first', kind: 'wait', durationSeconds: 1 },
          { id: 'second', kind: 'wait', durationSeconds: 1, onFailure: { goto: 'first' } },
        ],
      },
    });
    expect(backwards.status).toBe(400);
    expect(problemOf(backwards)).toMatchObject({
      contentType: 'application/problem+json',
      code: 'VALIDATION_FAILED',
      errors: [
        expect.objectContaining({
          in: 'body',
          path: ['steps', 1, 'onFailure', 'goto'],
          pointer: '/steps/1/onFailure/goto',
          message: expect.stringMatching(/never loops/),
        }),
      ],
    });

    const unknownField = await h.call('POST', '/v1/runbooks', {
      token: bravo(),
      body: { name: 'typo', steps: [{ id: 'pause', kind: 'wait', durationSecs: 1 }] },
    });
    expect(unknownField.status).toBe(400);
    expect(problemOf(unknownField).errors).toEqual([
      expect.objectContaining({ path: ['steps', 0, 'durationSeconds'] }),
      expect.objectContaining({ path: ['steps', 0, 'durationSecs'], pointer: '/steps/0/durationSecs' }),
    ]);

    const missing = await h.call('POST', '/v1/runbooks', {
      token: bravo(),
      body: { name: 'ghostly', steps: [{ id: 'run', kind: 'script', script: 'no-such-script' }] },
    });
    expect(missing.status).toBe(422);
    const problem = problemOf(missing);
    expect(problem).toMatchObject({ code: 'VALIDATION_FAILED', status: 422 });
    expect(problem.errors).toEqual([
      { path: ['steps', 0, 'script'], message: 'no script no-such-script in the repository' },
    ]);
    expect((await h.call('GET', '/v1/runbooks/ghostly', { token: bravo() })).status).toBe(404);
  });
});

describe('runbook runs', () => {
  it('POST /v1/runbook-runs — waits, pauses at the approval gate, refuses the starter’s approval and runs `true` on localhost once another principal approves', async () => {
    await define({
      name: 'check-host',
      steps: [
        { id: 'settle', kind: 'wait', durationSeconds: 1 },
        { id: 'go-ahead', kind: 'approval', instructions: 'Is localhost quiet?' },
        { id: 'run-true', kind: 'script', script: 'noop' },
      ],
    });
    const runId = await start({ runbook: 'check-host', targets: onLocalhost, ticket: 'CHG-7' });

    const waiting = await until(runId, ['waiting']);
    expect(waiting.steps.map((s) => s.status)).toEqual(['running', 'pending', 'pending']);
    // The wait is measured on the Fleet's clock: the run stays at it until that clock moves.
    h.clock.advance(1000);
    const paused = await until(runId, ['awaiting-approval']);
    expect(paused).toMatchObject({ startedBy: 'bravo-admin', currentStep: 1, ticket: 'CHG-7' });
    expect(paused.steps.map((s) => s.status)).toEqual(['succeeded', 'running', 'pending']);

    const byStarter = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, { token: bravo() });
    expect(byStarter.status).toBe(403);
    expect(problemOf(byStarter)).toMatchObject({
      code: 'FORBIDDEN',
      detail: expect.stringMatching(/started runbook run .* cannot approve/),
    });
    expect((await until(runId, ['awaiting-approval'])).approvals).toEqual([]);

    const approved = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, {
      token: approver,
      body: { stepId: 'go-ahead', comment: 'quiet' },
    });
    expect(approved.status, approved.text).toBe(202);
    expect(approved.json()).toEqual({
      runId,
      stepId: 'go-ahead',
      principalId: 'approver',
      approvals: 1,
      required: 1,
      executing: true,
    });

    const done = await until(runId, ['succeeded', 'failed', 'cancelled']);
    expect(done.status, done.reason).toBe('succeeded');
    expect(done.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['settle', 'succeeded'],
      ['go-ahead', 'succeeded'],
      ['run-true', 'succeeded'],
    ]);
    expect(done.approvals).toEqual([
      expect.objectContaining({ stepId: 'go-ahead', principalId: 'approver', comment: 'quiet' }),
    ]);
    const scriptRun = await h.call('GET', `/v1/script-runs/${done.steps[2]!.scriptRunId}`, {
      token: bravo(),
    });
    expect(scriptRun.json().run).toMatchObject({ scriptName: 'noop', status: 'succeeded' });
    expect(scriptRun.json().servers).toEqual([
      expect.objectContaining({ serverId: 'localhost', state: 'succeeded', exitCode: 0 }),
    ]);
    expect(failures).toEqual([]);
  });

  it('POST …/approvals — a step needing two approvals answers 201 to the first and 202 to the second; nobody approves twice', async () => {
    await define({
      name: 'two-keys',
      steps: [
        { id: 'both', kind: 'approval', approvals: 2 },
        { id: 'run-true', kind: 'script', script: 'noop' },
      ],
    });
    const runId = await start({ runbook: 'two-keys', targets: onLocalhost });
    await until(runId, ['awaiting-approval']);

    const first = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, { token: approver });
    expect(first.status, first.text).toBe(201);
    expect(first.json()).toMatchObject({ approvals: 1, required: 2, executing: false });
    const again = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, { token: approver });
    expect(again.status).toBe(409);
    expect(problemOf(again).detail).toMatch(/already approved/);
    expect((await until(runId, ['awaiting-approval'])).approvals).toHaveLength(1);

    const second = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, { token: secondApprover });
    expect(second.status, second.text).toBe(202);
    expect(second.json()).toMatchObject({ approvals: 2, required: 2, executing: true });
    expect((await until(runId, ['succeeded', 'failed', 'cancelled'])).status).toBe('succeeded');
  });

  it('POST …/approvals — of two concurrent approvals of a one-approval step, one continues the run and the other gets a 409', async () => {
    await define({
      name: 'race',
      steps: [
        { id: 'gate', kind: 'approval' },
        { id: 'run-true', kind: 'script', script: 'noop' },
      ],
    });
    const runId = await start({ runbook: 'race', targets: onLocalhost });
    await until(runId, ['awaiting-approval']);
    const replies = await Promise.all(
      [approver, secondApprover].map((token) =>
        h.call('POST', `/v1/runbook-runs/${runId}/approvals`, { token, body: { stepId: 'gate' } }),
      ),
    );
    expect(replies.map((r) => r.status).sort()).toEqual([202, 409]);
    const done = await until(runId, ['succeeded', 'failed', 'cancelled']);
    expect(done.status).toBe('succeeded');
    expect(done.approvals).toHaveLength(1);
    const scriptRuns = await h.call('GET', '/v1/script-runs?script=noop', { token: bravo() });
    const ofThisRun = scriptRuns
      .json()
      .items.filter((r: { id: string }) => r.id === done.steps[1]!.scriptRunId);
    expect(ofThisRun).toHaveLength(1);
  });

  it('POST /v1/runbook-runs — refusals are the answer itself: a bad parameter (422 with its path), an unknown field (400), an unapproved risky script (403)', async () => {
    await define({
      name: 'tuned',
      parameters: [{ name: 'MODE', type: 'string', required: true, allowed: ['fast', 'slow'] }],
      steps: [{ id: 'run-true', kind: 'script', script: 'noop' }],
    });
    const badParam = await h.call('POST', '/v1/runbook-runs', {
      token: bravo(),
      body: { runbook: 'tuned', targets: onLocalhost, params: { MODE: 'reckless' } },
    });
    expect(badParam.status).toBe(422);
    expect(problemOf(badParam).errors).toEqual([expect.objectContaining({ path: ['params', 'MODE'] })]);

    const unknownField = await h.call('POST', '/v1/runbook-runs', {
      token: bravo(),
      body: { runbook: 'tuned', targets: onLocalhost, params: { MODE: 'fast' }, holder: 'me' },
    });
    expect(unknownField.status).toBe(400);
    expect(problemOf(unknownField).errors).toEqual([
      expect.objectContaining({ in: 'body', path: ['holder'], pointer: '/holder' }),
    ]);

    await define({ name: 'risky', steps: [{ id: 'run', kind: 'script', script: 'risky-noop' }] });
    const risky = await h.call('POST', '/v1/runbook-runs', {
      token: bravo(),
      body: { runbook: 'risky', targets: onLocalhost },
    });
    expect(risky.status).toBe(403);
    expect(problemOf(risky).detail).toMatch(/refused: .*risky/);

    const runs = await h.call('GET', '/v1/runbook-runs?runbook=tuned', { token: bravo() });
    expect(runs.json()).toEqual({ items: [], next: null });
    expect((await h.call('GET', '/v1/runbook-runs?runbook=risky', { token: bravo() })).json().items).toEqual(
      [],
    );
    expect(failures).toEqual([]);
  });

  it('POST …/resumption and …/cancellation — a run awaiting approval is left as it is (200), cancelled at once, and then neither resumed nor approved (409)', async () => {
    await define({
      name: 'held',
      steps: [
        { id: 'gate', kind: 'approval' },
        { id: 'run-true', kind: 'script', script: 'noop' },
      ],
    });
    const runId = await start({ runbook: 'held', targets: onLocalhost });
    await until(runId, ['awaiting-approval']);

    const resumed = await h.call('POST', `/v1/runbook-runs/${runId}/resumption`, { token: bravo() });
    expect(resumed.status, resumed.text).toBe(200);
    expect(resumed.json()).toEqual({ runId, executing: false });
    const wrongStep = await h.call('POST', `/v1/runbook-runs/${runId}/approvals`, {
      token: approver,
      body: { stepId: 'run-true' },
    });
    expect(wrongStep.status).toBe(409);
    expect(problemOf(wrongStep).detail).toMatch(/awaits approval of step gate, not run-true/);

    const cancelled = await h.call('POST', `/v1/runbook-runs/${runId}/cancellation`, {
      token: bravo(),
      body: { reason: 'change withdrawn' },
    });
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(RunbookRunSchema.parse(cancelled.json())).toMatchObject({
      status: 'cancelled',
      reason: expect.stringMatching(/change withdrawn/),
    });
    for (const [path, token] of [
      ['resumption', bravo()],
      ['approvals', approver],
      ['cancellation', bravo()],
    ] as const) {
      const reply = await h.call('POST', `/v1/runbook-runs/${runId}/${path}`, { token });
      expect(reply.status, path).toBe(409);
      expect(problemOf(reply).detail, path).toMatch(/has ended \(cancelled\)|awaits no approval/);
    }
    const listed = await h.call('GET', '/v1/runbook-runs?runbook=held&status=cancelled', { token: bravo() });
    expect(listed.json().items.map((r: { id: string }) => r.id)).toEqual([runId]);
  });

  it('GET /v1/runbook-runs — pages through every run once, and refuses a cursor of another list', async () => {
    const all = await h.call('GET', '/v1/runbook-runs?limit=1000', { token: bravo() });
    const ids = all.json().items.map((r: { id: string }) => r.id);
    expect(ids.length).toBeGreaterThan(3);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Reply = await h.call(
        'GET',
        `/v1/runbook-runs?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        { token: bravo() },
      );
      expect(page.status, page.text).toBe(200);
      expect(page.json().items.length).toBeLessThanOrEqual(2);
      seen.push(...page.json().items.map((r: { id: string }) => r.id));
      cursor = page.json().next;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect(new Set(seen).size).toBe(ids.length);

    const scripts = await h.call('GET', '/v1/scripts?limit=1', { token: bravo() });
    const foreign = await h.call('GET', `/v1/runbook-runs?cursor=${scripts.json().next}`, { token: bravo() });
    expect(foreign.status).toBe(400);
    expect(problemOf(foreign).errors).toEqual([expect.objectContaining({ in: 'query', path: ['cursor'] })]);
  });
});

describe('shutdown', () => {
  it('FleetwardServer.close — interrupts a run waiting in the background without holding the shutdown; the run stays resumable', async () => {
    const other = await startHarness();
    try {
      const admin = other.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
      await admin.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
      await admin.runbooks.define({
        name: 'long-wait',
        steps: [{ id: 'nap', kind: 'wait', durationSeconds: 3600 }],
      });
      const started = await other.call('POST', '/v1/runbook-runs', {
        token: other.tokens.bravo,
        body: { runbook: 'long-wait', targets: onLocalhost },
      });
      expect(started.status, started.text).toBe(202);
      const { runId } = started.json();
      for (let i = 0; (await admin.runbooks.getRun(runId)).status !== 'waiting'; i++) {
        if (i > 400) throw new Error('the run never reached its wait');
        await new Promise((r) => setTimeout(r, 25));
      }
      await other.server.close();
      const run = await admin.runbooks.getRun(runId);
      // Nothing is lost: the wait's deadline is in the store, and the run is not cancelled.
      expect(run.status).toBe('waiting');
      expect(run.steps[0]).toMatchObject({ status: 'running' });
      expect(run.steps[0]!.waitUntil).toBeDefined();
    } finally {
      await other.close();
    }
  });
});
