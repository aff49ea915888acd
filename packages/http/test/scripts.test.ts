import { ScriptRunSchema, ScriptSchema } from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, principalWithToken, problemOf, type Reply, startHarness } from './support/harness.js';

let h: Harness;
let reviewer: string;
const failures: unknown[] = [];

beforeAll(async () => {
  h = await startHarness({ onError: (error) => failures.push(error) });
  const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
  await admin.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
  reviewer = await principalWithToken(h, { tenantId: 'bravo', id: 'reviewer' });
});
afterAll(() => h.close());

const bravo = () => h.tokens.bravo;
const SECRET = 'tok-5ecr3t-Zq9w';

async function addScript(body: object): Promise<Reply> {
  const response = await h.call('POST', '/v1/scripts', { token: bravo(), body });
  expect(response.status, response.text).toBe(201);
  return response;
}

async function plan(body: object): Promise<string> {
  const response = await h.call('POST', '/v1/script-runs', { token: bravo(), body });
  expect(response.status, response.text).toBe(201);
  return response.json().id;
}

async function finished(runId: string) {
  for (let i = 0; i < 400; i++) {
    const response = await h.call('GET', `/v1/script-runs/${runId}`, { token: bravo() });
    const status = response.json().run.status;
    if (!['awaiting-start', 'running'].includes(status)) return response;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`run ${runId} did not end`);
}

describe('script repository', () => {
  it('POST /v1/scripts and GET /v1/scripts/{scriptName}[/versions] — versions by revision; the same content adds nothing', async () => {
    const first = await addScript({ name: 'uptime', interpreter: 'sh', body: 'uptime\n', tags: ['ops'] });
    expect(first.headers.get('location')).toBe('/v1/scripts/uptime');
    expect(ScriptSchema.parse(first.json())).toMatchObject({
      name: 'uptime',
      revision: 1,
      createdBy: 'bravo-admin',
    });
    const same = await addScript({ name: 'uptime', interpreter: 'sh', body: 'uptime\n', tags: ['ops'] });
    expect(same.json().revision).toBe(1);
    const second = await addScript({ name: 'uptime', interpreter: 'sh', body: 'uptime -p\n', tags: ['ops'] });
    expect(second.json()).toMatchObject({ revision: 2 });
    expect(second.json().contentHash).not.toBe(first.json().contentHash);

    const current = await h.call('GET', '/v1/scripts/uptime', { token: bravo() });
    expect(current.json().revision).toBe(2);
    const byRevision = await h.call('GET', '/v1/scripts/uptime?version=1', { token: bravo() });
    expect(byRevision.json().body).toBe('uptime\n');
    const byHash = await h.call('GET', `/v1/scripts/uptime?version=${first.json().contentHash}`, {
      token: bravo(),
    });
    expect(byHash.json().revision).toBe(1);
    expect((await h.call('GET', '/v1/scripts/uptime?version=7', { token: bravo() })).status).toBe(404);
    expect((await h.call('GET', '/v1/scripts/uptime?version=latest', { token: bravo() })).status).toBe(400);

    const page = await h.call('GET', '/v1/scripts/uptime/versions?limit=1', { token: bravo() });
    expect(page.json().items.map((s: { revision: number }) => s.revision)).toEqual([1]);
    const rest = await h.call('GET', `/v1/scripts/uptime/versions?limit=1&cursor=${page.json().next}`, {
      token: bravo(),
    });
    expect(rest.json()).toMatchObject({ items: [expect.objectContaining({ revision: 2 })], next: null });
    const tagged = await h.call('GET', '/v1/scripts?tag=ops', { token: bravo() });
    expect(tagged.json().items.map((s: { name: string }) => s.name)).toEqual(['uptime']);
    expect((await h.call('GET', '/v1/scripts/nothing-here/versions', { token: bravo() })).status).toBe(404);
  });

  it('POST /v1/scripts/{scriptName}/approvals — not by the author; by another principal for the current hash only', async () => {
    const added = await addScript({ name: 'reboot', interpreter: 'sh', body: 'echo reboot\n', risky: true });
    const hash = added.json().contentHash;
    const byAuthor = await h.call('POST', '/v1/scripts/reboot/approvals', { token: bravo(), body: { hash } });
    expect(byAuthor.status).toBe(403);
    const stale = await h.call('POST', '/v1/scripts/reboot/approvals', {
      token: reviewer,
      body: { hash: 'a'.repeat(64) },
    });
    expect(stale.status).toBe(409);
    const approved = await h.call('POST', '/v1/scripts/reboot/approvals', {
      token: reviewer,
      body: { hash, comment: 'read it' },
    });
    expect(approved.status, approved.text).toBe(201);
    expect(approved.json()).toMatchObject({
      scriptName: 'reboot',
      contentHash: hash,
      principalId: 'reviewer',
    });
  });
});

describe('script runs', () => {
  it('POST /v1/script-runs/{runId}/start — runs on this machine in the background, and no answer, audit record or failure shows a secret parameter', async () => {
    await addScript({
      name: 'greet',
      interpreter: 'sh',
      body: 'printf "token=%s\\n" "$API_TOKEN"\nprintf "hello %s\\n" "$GREETING"\n',
      parameters: [
        { name: 'API_TOKEN', type: 'string', required: true, secret: true, pattern: '[A-Za-z0-9-]+' },
        { name: 'GREETING', type: 'string', default: 'world' },
      ],
    });
    const planned = await h.call('POST', '/v1/script-runs', {
      token: bravo(),
      body: {
        script: 'greet',
        targets: { serverIds: ['localhost'] },
        params: { API_TOKEN: SECRET },
        ticket: 'CHG-1',
      },
    });
    expect(planned.status, planned.text).toBe(201);
    const run = ScriptRunSchema.parse(planned.json());
    expect(run).toMatchObject({
      status: 'awaiting-start',
      params: { GREETING: 'world' },
      secretParams: ['API_TOKEN'],
    });
    expect(planned.headers.get('location')).toBe(`/v1/script-runs/${run.id}`);

    const started = await h.call('POST', `/v1/script-runs/${run.id}/start`, { token: bravo() });
    expect(started.status, started.text).toBe(202);
    expect(started.json()).toEqual({ runId: run.id, jobId: expect.any(String), resumed: false });
    const result = await finished(run.id);
    const body = result.json();
    expect(body.run).toMatchObject({ status: 'succeeded', jobId: started.json().jobId });
    expect(body.servers).toEqual([
      expect.objectContaining({
        serverId: 'localhost',
        state: 'succeeded',
        exitCode: 0,
        outputRedacted: true,
      }),
    ]);
    expect(body.servers[0].stdout.text).toBe('token=[REDACTED]\nhello world\n');
    expect(body.counts).toMatchObject({ succeeded: 1, failed: 0 });

    const refused = await h.call('POST', '/v1/script-runs', {
      token: bravo(),
      body: {
        script: 'greet',
        targets: { serverIds: ['localhost'] },
        params: { API_TOKEN: 'not $ecret ok' },
      },
    });
    expect(refused.status).toBe(422);
    expect(problemOf(refused).errors).toEqual([expect.objectContaining({ path: ['API_TOKEN'] })]);

    const listed = await h.call('GET', '/v1/script-runs?script=greet', { token: bravo() });
    const audit = await h.call('GET', '/v1/audit?limit=1000', { token: bravo() });
    const exported = await h.call('GET', '/v1/audit/export', { token: bravo() });
    for (const reply of [planned, started, result, refused, listed, audit, exported]) {
      expect(reply.text).not.toContain(SECRET);
      expect(reply.text).not.toContain('not $ecret ok');
    }
    for (const failure of failures) expect(String(failure)).not.toContain(SECRET);
  });

  it('POST /v1/script-runs/{runId}/start — a risky script without an approval is refused in the answer, not in the background', async () => {
    await addScript({ name: 'drop-caches', interpreter: 'sh', body: 'echo 3\n', risky: true });
    const runId = await plan({ script: 'drop-caches', targets: { serverIds: ['localhost'] } });
    const response = await h.call('POST', `/v1/script-runs/${runId}/start`, { token: bravo(), body: {} });
    expect(response.status).toBe(403);
    expect(problemOf(response).detail).toMatch(/refused/);
    const run = await h.call('GET', `/v1/script-runs/${runId}`, { token: bravo() });
    expect(run.json().run.status).toBe('awaiting-start');
  });

  it('POST /v1/script-runs/{runId}/start — of two concurrent starts of one run, one starts it and the other gets a 409', async () => {
    await addScript({ name: 'nap', interpreter: 'sh', body: 'sleep 0.2; echo rested\n' });
    const runId = await plan({ script: 'nap', targets: { serverIds: ['localhost'] } });
    const replies = await Promise.all(
      [0, 1].map(() => h.call('POST', `/v1/script-runs/${runId}/start`, { token: bravo() })),
    );
    expect(replies.map((r) => r.status).sort()).toEqual([202, 409]);
    const winner = replies.find((r) => r.status === 202)!;
    const result = await finished(runId);
    expect(result.json().run).toMatchObject({ status: 'succeeded', jobId: winner.json().jobId });
    expect(result.json().servers[0].stdout.text).toBe('rested\n');
  });

  it('POST …/cancellation and …/resumption — a cancelled run cannot start; a run that never started cannot resume', async () => {
    await addScript({ name: 'noop', interpreter: 'sh', body: 'true\n' });
    const cancelledId = await plan({ script: 'noop', targets: { serverIds: ['localhost'] } });
    const cancelled = await h.call('POST', `/v1/script-runs/${cancelledId}/cancellation`, {
      token: bravo(),
      body: { reason: 'not today' },
    });
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.json()).toMatchObject({
      status: 'cancelled',
      reason: expect.stringMatching(/not today/),
    });
    expect((await h.call('POST', `/v1/script-runs/${cancelledId}/start`, { token: bravo() })).status).toBe(
      409,
    );

    const plannedId = await plan({ script: 'noop', targets: { serverIds: ['localhost'] } });
    const resumed = await h.call('POST', `/v1/script-runs/${plannedId}/resumption`, {
      token: bravo(),
      body: { acknowledgeFailures: true },
    });
    expect(resumed.status).toBe(409);
    expect(problemOf(resumed).detail).toMatch(/has not started yet/);
    const statuses = await h.call('GET', '/v1/script-runs?script=noop&status=cancelled', { token: bravo() });
    expect(statuses.json().items.map((r: { id: string }) => r.id)).toEqual([cancelledId]);
  });

  it('POST /v1/script-runs/{runId}/start — refuses execution options that belong to the server, naming them', async () => {
    const runId = await plan({ script: 'noop', targets: { serverIds: ['localhost'] } });
    const response = await h.call('POST', `/v1/script-runs/${runId}/start`, {
      token: bravo(),
      body: { outputDir: '/tmp/anywhere', holder: 'me' },
    });
    expect(response.status).toBe(400);
    expect(
      problemOf(response)
        .errors!.map((e) => e.path.join('.'))
        .sort(),
    ).toEqual(['holder', 'outputDir']);
  });
});
