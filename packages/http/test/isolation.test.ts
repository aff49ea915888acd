import { issueApiToken } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALPHA_MARK, type AlphaIds, type Harness, problemOf, startHarness } from './support/harness.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

type Operation = {
  operationId: string;
  requestBody?: { required?: boolean; content: Record<string, { example?: unknown }> };
};

interface Call {
  name: string;
  method: string;
  path: string;
  /** The same operation on ids no tenant has. */
  ghostPath: string;
  /** The ids put into the path. */
  ids: string[];
  templated: boolean;
  /** Whether the operation declares a request body. */
  takesBody: boolean;
  body: unknown;
}

let h: Harness;
let calls: Call[];

/** Every operation of the served document, its path filled in with alpha's ids and its example body. */
async function walk(ids: AlphaIds): Promise<Call[]> {
  const doc = (await h.call('GET', '/openapi.json')).json() as {
    paths: Record<string, Record<string, Operation>>;
  };
  const out: Call[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const used: string[] = [];
      const path = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
        const id = ids[name as keyof AlphaIds];
        if (!id) throw new Error(`no id of alpha for path parameter ${name} of ${op.operationId}`);
        used.push(id);
        return encodeURIComponent(id);
      });
      // Lower case: a script name may not hold capitals, and a malformed id would be a 400, not a 404.
      const ghostPath = template.replace(/\{([^}]+)\}/g, (_, name: string) => `ghost-${name.toLowerCase()}`);
      const example = op.requestBody?.content['application/json']?.example;
      out.push({
        name: `${op.operationId} (${method.toUpperCase()} ${template})`,
        method: method.toUpperCase(),
        path,
        ghostPath,
        ids: used,
        templated: template.includes('{'),
        takesBody: op.requestBody !== undefined,
        body: example,
      });
    }
  }
  return out;
}

/** What alpha has, read through the store: it must be the same before and after bravo's calls. */
async function alphaState() {
  const store = h.fleet.store;
  const [servers, projects, policies, plans, standards, tokens, principals] = await Promise.all([
    store.servers.listAll('alpha'),
    store.projects.listAll('alpha'),
    store.patchPolicies.listAll('alpha'),
    store.patchPlans.listAll('alpha'),
    store.complianceStandards.listAll('alpha'),
    store.apiTokens.listAll('alpha'),
    store.principals.listAll('alpha'),
  ]);
  const [requests, grants, credentials, rotationPolicies, inventories, scripts, approvals, runs, jobs] =
    await Promise.all([
      store.accessRequests.listAll('alpha'),
      store.accessGrants.listAll('alpha'),
      store.credentials.listAll('alpha'),
      store.keyRotationPolicies.listAll('alpha'),
      store.keyInventories.listAll('alpha'),
      store.scripts.listAll('alpha'),
      store.scriptApprovals.listAll('alpha'),
      store.scriptRuns.listAll('alpha'),
      store.jobs.listAll('alpha'),
    ]);
  const [roles, bindings, runbooks, runbookRuns] = await Promise.all([
    store.roles.listAll('alpha'),
    store.roleBindings.listAll('alpha'),
    store.runbooks.listAll('alpha'),
    store.runbookRuns.listAll('alpha'),
  ]);
  const secrets = await h.secrets.list('tenants/alpha/');
  const secretValues = await Promise.all(secrets.map((ref) => h.secrets.get(ref)));
  const withoutUse = tokens.map(({ lastUsedAt: _, version: __, updatedAt: ___, ...t }) => t);
  return {
    servers,
    projects,
    policies,
    plans,
    standards,
    tokens: withoutUse,
    principals,
    requests,
    grants,
    credentials,
    rotationPolicies,
    inventories,
    scripts,
    approvals,
    runs,
    jobs,
    roles,
    bindings,
    runbooks,
    runbookRuns,
    secrets: Object.fromEntries(secrets.map((ref, i) => [ref, secretValues[i]])),
  };
}

function stripAlphaIds(text: string): string {
  let out = text;
  for (const id of Object.values(h.alpha))
    out = out.replaceAll(`"${id}"`, '"{id}"').replaceAll(`\\"${id}\\"`, '{id}');
  return out;
}

beforeAll(async () => {
  h = await startHarness();
  calls = await walk(h.alpha);
});
afterAll(() => h.close());

describe('every route of the OpenAPI document', () => {
  it('walk — finds every operation, each with a body example where it takes a body', () => {
    expect(calls.length).toBeGreaterThan(60);
    for (const call of calls.filter((c) => c.takesBody)) expect(call.body, call.name).toBeDefined();
    // Only operations without options take no body at all; every PATCH and PUT has one.
    const bodiless = calls.filter((c) => c.method !== 'GET' && c.method !== 'DELETE' && !c.takesBody);
    expect(bodiless.map((c) => c.name).sort()).toEqual([
      'cancelAccessRequest (POST /v1/access-requests/{requestId}/cancellation)',
      'createAuditCheckpoint (POST /v1/audit/checkpoints)',
      'resumeRunbookRun (POST /v1/runbook-runs/{runbookRunId}/resumption)',
      'sweepAccess (POST /v1/access/sweep)',
    ]);
  });

  it('every route — refuses a call without a token with 401 problem+json and a Bearer challenge', async () => {
    for (const call of calls) {
      const response = await h.call(call.method, call.path, { body: call.body });
      expect(response.status, call.name).toBe(401);
      const problem = problemOf(response);
      expect(problem.contentType, call.name).toBe('application/problem+json');
      expect(problem).toMatchObject({
        type: 'https://fleetward.dev/problems/unauthorized',
        status: 401,
        code: 'UNAUTHORIZED',
        instance: decodeURIComponent(call.path),
      });
      expect(response.headers.get('www-authenticate'), call.name).toBe('Bearer realm="fleetward"');
    }
  });

  it('every route — refuses malformed, unknown, expired, revoked and disabled-principal tokens with 401', async () => {
    const [, tenantAndRest] = h.tokens.alpha.split(/^fwt_/);
    const secret = h.tokens.alpha.slice(-43);
    const flipped = `${h.tokens.alpha.slice(0, -43)}${secret[0] === 'A' ? 'B' : 'A'}${secret.slice(1)}`;
    const expiring = await issueApiToken(h.fleet, {
      tenantId: 'alpha',
      principalId: h.alpha.principalId,
      name: 'expires soon',
      expiresAt: new Date(h.clock.now().getTime() + 60_000).toISOString(),
    });
    const revoked = await issueApiToken(h.fleet, {
      tenantId: 'alpha',
      principalId: h.alpha.principalId,
      name: 'to revoke',
    });
    const revoke = await h.call('DELETE', `/v1/tokens/${revoked.apiToken.id}`, { token: h.tokens.alpha });
    expect(revoke.status).toBe(204);
    await h.fleet.as({ tenantId: 'alpha', principalId: h.alpha.principalId }).iam.addPrincipal({
      id: `${ALPHA_MARK}-gone`,
      name: 'Disabled',
      kind: 'service',
      affiliation: 'contractor',
      disabled: true,
    });
    const disabled = await issueApiToken(h.fleet, {
      tenantId: 'alpha',
      principalId: `${ALPHA_MARK}-gone`,
      name: 'of a disabled principal',
    });
    h.clock.advance(120_000);

    const bad: Record<string, string> = {
      'not a token': 'hello',
      'another scheme': 'x',
      'wrong secret': flipped,
      'unknown token id': h.tokens.alpha.replace(/_[a-f0-9]{24}_/, `_${'0'.repeat(24)}_`),
      'unknown tenant': `fwt_nobody_${tenantAndRest!.split('_').slice(-2).join('_')}`,
      truncated: h.tokens.alpha.slice(0, -1),
      expired: expiring.token,
      revoked: revoked.token,
      'disabled principal': disabled.token,
    };
    for (const [why, token] of Object.entries(bad)) {
      for (const call of calls) {
        const headers = why === 'another scheme' ? { authorization: `Basic ${btoa('a:b')}` } : undefined;
        const response = await h.call(call.method, call.path, {
          ...(headers ? { headers } : { token }),
          body: call.body,
        });
        expect(response.status, `${why}: ${call.name}`).toBe(401);
        expect(problemOf(response).code, `${why}: ${call.name}`).toBe('UNAUTHORIZED');
        expect(response.headers.get('www-authenticate'), why).toMatch(
          /^Bearer realm="fleetward", error="invalid_/,
        );
        expect(response.text, why).not.toContain(secret);
      }
    }
  });

  it('every route — with the other tenant’s token, treats alpha’s ids as nonexistent and shows none of alpha’s data', async () => {
    const before = await alphaState();
    const auditBefore = await h.fleet.store.audit.head('alpha');
    for (const call of calls) {
      const response = await h.call(call.method, call.path, { token: h.tokens.bravo, body: call.body });
      expect(response.status, call.name).toBeLessThan(500);
      // A 404 names the id the caller sent, and bravo's audit log records what bravo asked for:
      // beyond those echoes of alpha's ids, nothing of alpha may show.
      let text = response.text;
      for (const id of call.ids) text = text.replaceAll(id, '{id}');
      const echoed = call.templated ? text : stripAlphaIds(text);
      if (call.templated) {
        expect(response.status, `${call.name}: ${response.text}`).toBe(404);
        expect(problemOf(response)).toMatchObject({ code: 'NOT_FOUND', status: 404 });
        const ghost = await h.call(call.method, call.ghostPath, { token: h.tokens.bravo, body: call.body });
        expect(text, `${call.name}: unlike an id no tenant has`).toBe(
          ghost.text.replace(/ghost-\w+/g, '{id}'),
        );
      }
      // The examples are valid requests: without ids of alpha, bravo's own calls succeed.
      if (!call.templated) expect(response.status, `${call.name}: ${response.text}`).toBeLessThan(300);
      expect(echoed, call.name).not.toContain(ALPHA_MARK);
      expect(response.text, call.name).not.toMatch(/"tenantId":"alpha"/);
    }
    expect(await alphaState()).toEqual(before);
    // Bravo's calls are audited in bravo's log; alpha's chain did not move.
    expect((await h.fleet.store.audit.head('alpha'))?.seq).toBe(auditBefore?.seq);
  });

  it('every route — alpha’s own token reaches alpha’s ids (the walk is not 404 for everyone)', async () => {
    const reads = calls.filter((c) => c.method === 'GET' && c.templated);
    expect(reads.length).toBeGreaterThan(4);
    for (const call of reads) {
      const response = await h.call('GET', call.path, { token: h.tokens.alpha });
      expect(response.status, `${call.name}: ${response.text}`).toBe(200);
      expect(response.text).toContain(ALPHA_MARK);
    }
  });
});
