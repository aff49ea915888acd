import { ApiTokenSchema, PatchPlanSchema, ServerSchema, TENANT_ADMIN_ROLE_ID } from '@fleetward/core';
import { issueApiToken, serveFleetwardApi } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComplianceSummary, ServerEvaluation } from '../src/schemas.js';
import { type Harness, problemOf, startHarness } from './support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const bravo = () => h.tokens.bravo;

/** A principal of bravo bound to a role with these rules, and a token for it. */
async function principalWith(
  id: string,
  rules: { effect: 'allow' | 'deny'; actions: string[]; servers?: object }[],
) {
  await h.fleet.store.roles.create({
    tenantId: 'bravo',
    id: `${id}-role`,
    name: `${id} role`,
    rules,
  } as never);
  await h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' }).iam.addPrincipal({
    id,
    name: id,
    kind: 'service',
    affiliation: 'contractor',
  });
  await h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' }).iam.bindRole(id, `${id}-role`);
  return (await issueApiToken(h.fleet, { tenantId: 'bravo', principalId: id, name: id })).token;
}

async function walkPages(path: string, token: string, limit: number) {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query: string = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const response = await h.call('GET', `${path}${path.includes('?') ? '&' : '?'}${query}`, { token });
    expect(response.status, response.text).toBe(200);
    const page = response.json() as { items: { id: string }[]; next: string | null };
    expect(page.items.length).toBeLessThanOrEqual(limit);
    ids.push(...page.items.map((s) => s.id));
    cursor = page.next;
    pages++;
    expect(pages).toBeLessThan(1000);
  } while (cursor);
  return { ids, pages };
}

describe('problem+json', () => {
  it('POST /v1/servers — a body that fails its schema is a 400 with a field error per bad or unknown field', async () => {
    const response = await h.call('POST', '/v1/servers', {
      token: bravo(),
      body: { name: 7, accountId: 'dc', provider: 'mainframe', labels: { 'bad key!': 'x' }, colour: 'red' },
    });
    expect(response.status).toBe(400);
    const problem = problemOf(response);
    expect(problem).toMatchObject({
      contentType: 'application/problem+json',
      type: 'https://fleetward.dev/problems/validation-failed',
      title: 'Validation failed',
      status: 400,
      code: 'VALIDATION_FAILED',
      instance: '/v1/servers',
      retryable: false,
    });
    const byPointer = new Map(problem.errors!.map((e) => [e.pointer, e]));
    expect(problem.errors!.every((e) => e.in === 'body')).toBe(true);
    expect(byPointer.get('/name')?.path).toEqual(['name']);
    expect(byPointer.get('/provider')?.path).toEqual(['provider']);
    expect(byPointer.get('/colour')?.message).toBe('is not a field of this request');
    expect([...byPointer.keys()].some((p) => p?.startsWith('/labels'))).toBe(true);
    expect((await h.fleet.store.servers.listAll('bravo')).some((s) => s.accountId === 'dc')).toBe(false);
  });

  it('GET /v1/servers — a bad query parameter is a 400 naming it, unknown ones too', async () => {
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
      ['provider=mainframe', 'provider'],
      ['label=novalue', 'label'],
      ['sort=name', 'sort'],
    ] as const) {
      const response = await h.call('GET', `/v1/servers?${query}`, { token: bravo() });
      expect(response.status, query).toBe(400);
      const problem = problemOf(response);
      expect(problem.code).toBe('VALIDATION_FAILED');
      expect(
        problem.errors?.map((e) => [e.in, e.path[0]]),
        query,
      ).toContainEqual(['query', field]);
    }
  });

  it('POST /v1/servers — malformed JSON is a 400, another media type a 415, both problem+json', async () => {
    const malformed = await h.call('POST', '/v1/servers', {
      token: bravo(),
      raw: '{"name": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(malformed.status).toBe(400);
    expect(problemOf(malformed)).toMatchObject({
      code: 'VALIDATION_FAILED',
      contentType: 'application/problem+json',
    });
    expect(problemOf(malformed).errors?.[0]).toMatchObject({ in: 'body', path: [] });

    const text = await h.call('POST', '/v1/servers', {
      token: bravo(),
      raw: 'name=web',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(text.status).toBe(415);
    expect(problemOf(text)).toMatchObject({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      type: 'https://fleetward.dev/problems/unsupported-media-type',
    });
  });

  it('POST /v1/servers — a body over the limit is a 413 problem, with and without Content-Length', async () => {
    const big = JSON.stringify({
      name: 'x',
      accountId: 'a',
      provider: 'ssh',
      labels: { k: 'v'.repeat(1100 * 1024) },
    });
    const response = await h.call('POST', '/v1/servers', {
      token: bravo(),
      raw: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(413);
    expect(problemOf(response)).toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
      status: 413,
      type: 'https://fleetward.dev/problems/payload-too-large',
    });
    // The rest of the body is never read, so the connection is not offered for reuse.
    expect(response.headers.get('connection')).toBe('close');
    expect((await h.call('GET', '/v1/accounts', { token: bravo() })).status).toBe(200);

    const small = await serveFleetwardApi(h.fleet, { port: 0, maxBodyBytes: 1024 });
    try {
      const chunks = [new TextEncoder().encode('{"name":"'), new TextEncoder().encode('x'.repeat(4096))];
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = chunks.shift();
          if (next) controller.enqueue(next);
          else controller.close();
        },
      });
      const chunked = await fetch(`${small.url}/v1/servers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bravo()}`, 'content-type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(413);
      expect(((await chunked.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE');
    } finally {
      await small.close();
    }
  });

  it('POST /v1/tokens — input the SDK refuses after the request was accepted is a 422 with its field', async () => {
    const response = await h.call('POST', '/v1/tokens', {
      token: bravo(),
      body: { name: 'late', expiresAt: '2001-01-01T00:00:00Z' },
    });
    expect(response.status).toBe(422);
    const problem = problemOf(response);
    expect(problem.code).toBe('VALIDATION_FAILED');
    expect(problem.errors).toEqual([{ path: ['expiresAt'], message: 'must be in the future' }]);
  });

  it('POST /v1/servers — a principal without the permission gets 403, and the denial is audited', async () => {
    const token = await principalWith('reader', [{ effect: 'allow', actions: ['inventory.read'] }]);
    const response = await h.call('POST', '/v1/servers', {
      token,
      body: { id: 'not-allowed', name: 'n', accountId: 'a', provider: 'ssh' },
    });
    expect(response.status).toBe(403);
    expect(problemOf(response)).toMatchObject({
      code: 'FORBIDDEN',
      type: 'https://fleetward.dev/problems/forbidden',
    });
    const denials = await h.fleet.store.audit.list('bravo', { actorId: 'reader', action: 'inventory.write' });
    expect(denials.at(-1)).toMatchObject({ decision: 'deny', result: 'denied' });
    expect(await h.fleet.store.servers.get('bravo', 'not-allowed')).toBeUndefined();
  });

  it('unknown routes — are a 404 problem, also under /v1 with a valid token', async () => {
    const response = await h.call('GET', '/v1/nothing-here', { token: bravo() });
    expect(response.status).toBe(404);
    expect(problemOf(response)).toMatchObject({ code: 'NOT_FOUND', contentType: 'application/problem+json' });
  });
});

describe('pagination', () => {
  beforeAll(async () => {
    await h.fleet.store.transaction(async (tx) => {
      for (let i = 0; i < 250; i++) {
        await tx.servers.create({
          tenantId: 'bravo',
          id: `fleet-${String(i).padStart(3, '0')}`,
          name: `fleet-${i}`,
          accountId: 'dc-1',
          provider: 'ssh',
          labels: { env: i % 3 === 0 ? 'prod' : 'staging', pool: 'fleet' },
        });
      }
    });
  });

  it('GET /v1/servers — walks a 250-server inventory page by page without duplicates or gaps', async () => {
    const all = (await h.fleet.store.servers.listAll('bravo')).map((s) => s.id);
    expect(all.length).toBeGreaterThanOrEqual(250);
    const { ids, pages } = await walkPages('/v1/servers', bravo(), 7);
    expect(ids).toEqual(all);
    expect(new Set(ids).size).toBe(ids.length);
    expect(pages).toBe(Math.ceil(all.length / 7));
    const first = (await h.call('GET', '/v1/servers?limit=3', { token: bravo() })).json();
    for (const server of first.items) expect(() => ServerSchema.parse(server)).not.toThrow();
  });

  it('GET /v1/servers — a principal who may read a third of the servers pages through exactly those', async () => {
    const token = await principalWith('prod-reader', [
      { effect: 'allow', actions: ['inventory.read'], servers: { labels: { env: 'prod' } } },
    ]);
    const readable = (
      await h.fleet.store.servers.listAll('bravo', { selector: { labels: { env: 'prod' } } })
    ).map((s) => s.id);
    expect(readable.length).toBe(84);
    for (const limit of [1, 5, 100]) {
      const { ids } = await walkPages('/v1/servers', token, limit);
      expect(ids, `limit ${limit}`).toEqual(readable);
    }
  });

  it('GET /v1/servers — filters by label and provider, still in pages', async () => {
    const { ids } = await walkPages(
      '/v1/servers?provider=ssh&label=env%3Dprod&label=pool%3Dfleet',
      bravo(),
      10,
    );
    expect(ids).toHaveLength(84);
    expect(ids.every((id) => id.startsWith('fleet-'))).toBe(true);
  });

  it('GET /v1/servers — a cursor of another list, or made up, is a 400', async () => {
    const principals = (await h.call('GET', '/v1/principals?limit=1', { token: bravo() })).json();
    expect(principals.next).toBeTruthy();
    for (const cursor of [principals.next, 'bm9wZQ', 'not base64!']) {
      const response = await h.call('GET', `/v1/servers?cursor=${encodeURIComponent(cursor)}`, {
        token: bravo(),
      });
      expect(response.status).toBe(400);
      expect(problemOf(response).errors?.[0]).toMatchObject({ in: 'query', path: ['cursor'] });
    }
  });

  it('GET /v1/audit — pages through the audit log in seq order', async () => {
    const total = (await h.fleet.store.audit.list('bravo', { limit: 10_000 })).length;
    const seqs: number[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = (await h.call('GET', `/v1/audit?limit=25${query}`, { token: bravo() })).json();
      seqs.push(...page.items.map((r: { seq: number }) => r.seq));
      cursor = page.next;
    } while (cursor);
    // Each page's read is itself audited, after the page was read.
    expect(seqs.slice(0, total)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(new Set(seqs).size).toBe(seqs.length);
  });
});

describe('inventory writes', () => {
  it('PATCH /v1/servers/{serverId} — changes only the fields sent, clears with null, refuses a stale version', async () => {
    const created = await h.call('POST', '/v1/servers', {
      token: bravo(),
      body: {
        id: 'patch-me',
        name: 'patch-me',
        accountId: 'dc',
        provider: 'ssh',
        region: 'r1',
        labels: { a: 'b' },
      },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/servers/patch-me');

    const renamed = await h.call('PATCH', '/v1/servers/patch-me', {
      token: bravo(),
      body: { expectedVersion: 1, name: 'renamed', region: null },
    });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.json()).toMatchObject({ name: 'renamed', labels: { a: 'b' }, version: 2 });
    expect(renamed.json().region).toBeUndefined();

    const stale = await h.call('PATCH', '/v1/servers/patch-me', {
      token: bravo(),
      body: { expectedVersion: 1, name: 'again' },
    });
    expect(stale.status).toBe(409);
    expect(problemOf(stale)).toMatchObject({ code: 'CONFLICT', retryable: true });

    const removed = await h.call('DELETE', '/v1/servers/patch-me?expectedVersion=2', { token: bravo() });
    expect(removed.status).toBe(204);
    expect((await h.call('GET', '/v1/servers/patch-me', { token: bravo() })).status).toBe(404);
  });
});

describe('tokens', () => {
  it('POST/GET/DELETE /v1/tokens — a token is shown once, listed without its hash, and dead once revoked', async () => {
    const created = await h.call('POST', '/v1/tokens', { token: bravo(), body: { name: 'ci' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('cache-control')).toBe('no-store');
    const { apiToken, token } = created.json();
    expect(token).toMatch(/^fwt_bravo_[a-f0-9]{24}_[A-Za-z0-9_-]{43}$/);
    expect(apiToken).toMatchObject({ principalId: 'bravo-admin', createdBy: 'bravo-admin', name: 'ci' });
    expect(token.startsWith(apiToken.prefix)).toBe(true);
    expect(apiToken.tokenHash).toBeUndefined();

    const stored = ApiTokenSchema.parse(await h.fleet.store.apiTokens.get('bravo', apiToken.id));
    expect(JSON.stringify(stored)).not.toContain(token.slice(-43));

    expect((await h.call('GET', '/v1/servers?limit=1', { token })).status).toBe(200);
    const listed = await h.call('GET', '/v1/tokens?limit=1000', { token: bravo() });
    expect(listed.text).not.toContain('tokenHash');
    expect(listed.json().items.map((t: { id: string }) => t.id)).toContain(apiToken.id);

    expect((await h.call('DELETE', `/v1/tokens/${apiToken.id}`, { token: bravo() })).status).toBe(204);
    expect((await h.call('GET', '/v1/servers?limit=1', { token })).status).toBe(401);
    expect((await h.call('DELETE', `/v1/tokens/${apiToken.id}`, { token: bravo() })).status).toBe(204);
    const audit = await h.fleet.store.audit.list('bravo', { action: 'iam.write', limit: 10_000 });
    expect(audit.filter((r) => r.target?.id === apiToken.id).map((r) => r.result)).toEqual([
      'success',
      'success',
      'success',
    ]);
  });

  it('POST /v1/tokens — mints for another principal only with iam.write, and never across tenants', async () => {
    const reader = await principalWith('iam-reader', [{ effect: 'allow', actions: ['iam.read'] }]);
    const refused = await h.call('POST', '/v1/tokens', {
      token: reader,
      body: { name: 'escalate', principalId: 'bravo-admin' },
    });
    expect(refused.status).toBe(403);
    const foreign = await h.call('POST', '/v1/tokens', {
      token: bravo(),
      body: { name: 'foreign', principalId: h.alpha.principalId },
    });
    expect(foreign.status).toBe(404);
  });

  it('POST /v1/tokens — an IAM admin cannot mint a token acting as someone who may do more than it', async () => {
    const iamAdmin = await principalWith('iam-admin', [{ effect: 'allow', actions: ['iam.*'] }]);
    const escalate = await h.call('POST', '/v1/tokens', {
      token: iamAdmin,
      body: { name: 'escalate', principalId: 'bravo-admin' },
    });
    expect(escalate.status).toBe(403);
    expect(problemOf(escalate).detail).toMatch(/acting as bravo-admin would let iam-admin do/);
    const minted = (await h.fleet.store.apiTokens.listAll('bravo')).filter((t) => t.name === 'escalate');
    expect(minted).toEqual([]);
    const last = (await h.fleet.store.audit.list('bravo')).at(-1)!;
    expect(last).toMatchObject({
      action: 'iam.write',
      decision: 'deny',
      actor: { principalId: 'iam-admin' },
    });
    // A principal who may do no more than the IAM admin can get a token from it.
    await principalWith('iam-peer', [{ effect: 'allow', actions: ['iam.read'] }]);
    const peer = await h.call('POST', '/v1/tokens', {
      token: iamAdmin,
      body: { name: 'peer', principalId: 'iam-peer' },
    });
    expect(peer.status, peer.text).toBe(201);
  });

  it('createTokenVerifier — writes lastUsedAt at most once a minute per token', async () => {
    const { apiToken, token } = await issueApiToken(h.fleet, {
      tenantId: 'bravo',
      principalId: 'bravo-admin',
      name: 'busy',
    });
    const get = () => h.fleet.store.apiTokens.require('bravo', apiToken.id);
    await Promise.all(Array.from({ length: 10 }, () => h.call('GET', '/v1/accounts', { token })));
    const first = await get();
    expect(first.lastUsedAt).toBe(h.clock.now().toISOString());
    expect(first.version).toBe(2);
    h.clock.advance(30_000);
    for (let i = 0; i < 5; i++) await h.call('GET', '/v1/accounts', { token });
    expect((await get()).version).toBe(2);
    h.clock.advance(31_000);
    await h.call('GET', '/v1/accounts', { token });
    const later = await get();
    expect(later.version).toBe(3);
    expect(later.lastUsedAt).toBe(h.clock.now().toISOString());
  });
});

describe('compliance', () => {
  it('GET /v1/compliance/evaluations and /summary — answer in the shapes the document declares', async () => {
    const evaluations = await h.call('GET', '/v1/compliance/evaluations?limit=5', { token: bravo() });
    expect(evaluations.status, evaluations.text).toBe(200);
    const page = evaluations.json();
    expect(page.items).toHaveLength(5);
    for (const item of page.items) ServerEvaluation.parse(item);
    const summary = await h.call('GET', '/v1/compliance/summary', { token: bravo() });
    expect(summary.status).toBe(200);
    ComplianceSummary.parse(summary.json());
  });

  it('GET /v1/compliance/report — renders CSV and HTML with their media types, and 404s an unknown account', async () => {
    const csv = await h.call('GET', '/v1/compliance/report?format=csv&table=servers', { token: bravo() });
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.text.split('\r\n')[0]).toMatch(/^"id","name","provider"/);
    const html = await h.call('GET', '/v1/compliance/report?format=html', { token: bravo() });
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(html.headers.get('content-security-policy')).toContain("default-src 'none'");
    const json = await h.call('GET', '/v1/compliance/report', { token: bravo() });
    expect(json.json().tenant).toEqual({ id: 'bravo', name: 'Bravo' });
    const unknown = await h.call('GET', `/v1/compliance/report?accountId=${h.alpha.serverId}`, {
      token: bravo(),
    });
    expect(unknown.status).toBe(404);
  });
});

describe('scans', () => {
  it('POST /v1/scans — scans this machine over the local adapter and GET …/scans/latest returns that result', async () => {
    const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
    await admin.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
    const response = await h.call('POST', '/v1/scans', {
      token: bravo(),
      body: { targets: { serverIds: ['localhost'] } },
    });
    expect(response.status, response.text).toBe(200);
    const outcome = response.json();
    expect(outcome.job).toMatchObject({ kind: 'scan', requestedBy: 'bravo-admin', serverIds: ['localhost'] });
    expect(outcome.results).toHaveLength(1);
    const latest = await h.call('GET', '/v1/servers/localhost/scans/latest', { token: bravo() });
    expect(latest.json().scan.id).toBe(outcome.results[0].id);
    expect(latest.json().server.id).toBe('localhost');
  }, 300_000);
});

describe('patch runs', () => {
  async function approvedPlan(id: string) {
    const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
    if (!(await h.fleet.store.projects.get('bravo', 'runs'))) {
      await admin.projects.add({ id: 'runs', name: 'runs', selector: { ids: ['gone-1'] } });
      await admin.patch.policies.add({ id: 'runs-policy', name: 'runs', projectId: 'runs' });
    }
    // A plan whose server has left the inventory: the run starts, records the failure and ends.
    const hash = 'b'.repeat(64);
    return h.fleet.store.patchPlans.create({
      tenantId: 'bravo',
      id,
      policyId: 'runs-policy',
      projectId: 'runs',
      requestedBy: 'someone-else',
      status: 'approved',
      servers: [{ serverId: 'gone-1', scanId: 'scan-1', selected: [], resolved: [], heldBack: [] }],
      waves: [{ name: 'all', serverIds: ['gone-1'] }],
      stopCondition: {
        errorBudget: { count: 5 },
        maxFailures: 5,
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
      hash,
      approvals: [{ principalId: 'approver', at: h.clock.now().toISOString(), hash }],
    });
  }

  async function settled(planId: string) {
    for (let i = 0; i < 200; i++) {
      const plan = PatchPlanSchema.parse(await h.fleet.store.patchPlans.get('bravo', planId));
      if (plan.status !== 'approved' && plan.status !== 'executing') return plan;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`plan ${planId} did not finish`);
  }

  it('POST /v1/patch/plans/{planId}/runs — answers 202 with its own run’s job, even for concurrent runs', async () => {
    await approvedPlan('run-a');
    await approvedPlan('run-b');
    const [a, b] = await Promise.all(
      ['run-a', 'run-b'].map((id) =>
        h.call('POST', `/v1/patch/plans/${id}/runs`, { token: bravo(), body: {} }),
      ),
    );
    expect(a!.status, a!.text).toBe(202);
    expect(b!.status, b!.text).toBe(202);
    expect(a!.json().jobId).not.toBe(b!.json().jobId);
    const planA = await settled('run-a');
    const planB = await settled('run-b');
    expect(planA.jobId).toBe(a!.json().jobId);
    expect(planB.jobId).toBe(b!.json().jobId);
    expect(a!.json()).toMatchObject({ planId: 'run-a', resumed: false });
  });

  it('POST /v1/patch/plans/{planId}/runs — a plan that cannot run is refused in the answer, not in the background', async () => {
    const { version: _v, createdAt: _c, updatedAt: _u, ...approved } = await approvedPlan('run-c');
    await h.fleet.store.patchPlans.create({
      ...approved,
      id: 'not-approved',
      status: 'awaiting-approval',
      approvals: [],
    });
    const response = await h.call('POST', '/v1/patch/plans/not-approved/runs', { token: bravo(), body: {} });
    expect(response.status).toBe(409);
    expect(problemOf(response).code).toBe('CONFLICT');
  });
});

describe('audit', () => {
  it('GET /v1/audit/verification — checks the whole chain of the tenant', async () => {
    const response = await h.call('GET', '/v1/audit/verification', { token: bravo() });
    expect(response.status).toBe(200);
    const result = response.json();
    expect(result).toMatchObject({ ok: true, problems: [], tenantId: 'bravo' });
    expect(result.checked).toBeGreaterThan(10);
  });

  it('GET /v1/audit — filters by action and actor', async () => {
    const response = await h.call('GET', '/v1/audit?action=tenant.bootstrap', { token: bravo() });
    expect(response.json().items).toHaveLength(1);
    expect(response.json().items[0]).toMatchObject({ tenantId: 'bravo', action: 'tenant.bootstrap' });
    const none = await h.call('GET', '/v1/audit?actorId=nobody', { token: bravo() });
    expect(none.json()).toEqual({ items: [], next: null });
  });
});

describe('IAM', () => {
  it('POST /v1/principals/{principalId}/role-bindings — binds a role of the tenant', async () => {
    const added = await h.call('POST', '/v1/principals', {
      token: bravo(),
      body: { id: 'ops', name: 'Ops', kind: 'human', affiliation: 'employee' },
    });
    expect(added.status).toBe(201);
    const bound = await h.call('POST', '/v1/principals/ops/role-bindings', {
      token: bravo(),
      body: { roleId: TENANT_ADMIN_ROLE_ID },
    });
    expect(bound.status).toBe(201);
    expect(bound.json()).toMatchObject({
      principalId: 'ops',
      roleId: TENANT_ADMIN_ROLE_ID,
      tenantId: 'bravo',
    });
  });
});
