import { AccessGrantSchema, AccessRequestSchema, generateEd25519KeyPair } from '@fleetward/core';
import { type FleetwardServer, type MfaVerifiedAt, serveFleetwardApi } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, principalWithToken, problemOf, startHarness } from './support/harness.js';

let h: Harness;
let requester: string;
let approver: string;

beforeAll(async () => {
  h = await startHarness();
  const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
  // Reachable by no adapter: grants of mode `actions` never touch it, `ssh-key` ones fail on it.
  await admin.servers.add({
    id: 'app-1',
    name: 'app-1',
    accountId: 'dc',
    provider: 'ssh',
    address: '10.9.0.1',
  });
  requester = await principalWithToken(h, {
    tenantId: 'bravo',
    id: 'dev',
    rules: [{ effect: 'allow', actions: ['access.request'] }],
  });
  approver = await principalWithToken(h, { tenantId: 'bravo', id: 'lead' });
});
afterAll(() => h.close());

const actionsRequest = {
  servers: { serverIds: ['app-1'] },
  mode: 'actions',
  actions: ['inventory.read'],
  durationMinutes: 30,
  reason: 'Read the inventory of the app tier for the audit.',
  ticket: 'CHG-7',
};

async function requestAccess(body: object = actionsRequest): Promise<string> {
  const response = await h.call('POST', '/v1/access-requests', { token: requester, body });
  expect(response.status, response.text).toBe(201);
  return response.json().id;
}

describe('access requests', () => {
  it('POST /v1/access-requests — refuses a request without a reason or ticket, naming the fields', async () => {
    const { reason: _r, ticket: _t, ...bare } = actionsRequest;
    const response = await h.call('POST', '/v1/access-requests', { token: requester, body: bare });
    expect(response.status).toBe(400);
    const paths = problemOf(response).errors!.map((e) => e.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['reason', 'ticket']));
  });

  it('POST /v1/access-requests/{requestId}/approval — another principal approves and the grant comes back', async () => {
    const requestId = await requestAccess();
    const created = await h.call('GET', `/v1/access-requests/${requestId}`, { token: requester });
    expect(AccessRequestSchema.parse(created.json())).toMatchObject({
      status: 'pending',
      requesterId: 'dev',
    });

    const approved = await h.call('POST', `/v1/access-requests/${requestId}/approval`, {
      token: approver,
      body: { comment: 'ok for the audit' },
    });
    expect(approved.status, approved.text).toBe(200);
    const { request, grant } = approved.json();
    expect(request).toMatchObject({ id: requestId, status: 'approved', grantId: grant.id });
    expect(request.approvals).toEqual([
      expect.objectContaining({ principalId: 'lead', comment: 'ok for the audit' }),
    ]);
    expect(AccessGrantSchema.parse(grant)).toMatchObject({
      principalId: 'dev',
      status: 'active',
      mode: 'actions',
    });

    const mine = await h.call('GET', '/v1/access-grants?mine=true', { token: requester });
    expect(mine.json().items.map((g: { id: string }) => g.id)).toContain(grant.id);
    const own = await h.call('GET', `/v1/access-grants/${grant.id}`, { token: requester });
    expect(own.status).toBe(200);
  });

  it('POST /v1/access-requests/{requestId}/approval — the requester may not approve their own request, and the denial is audited', async () => {
    const requestId = await requestAccess();
    const response = await h.call('POST', `/v1/access-requests/${requestId}/approval`, { token: requester });
    expect(response.status).toBe(403);
    expect(problemOf(response).code).toBe('FORBIDDEN');
    const denied = await h.fleet.store.audit.list('bravo', { action: 'access.approve' });
    expect(denied.at(-1)).toMatchObject({ decision: 'deny', actor: { principalId: 'dev' } });
  });

  it('POST /v1/access-requests/{requestId}/approval — an ssh-key grant reports, per server, a key it could not install', async () => {
    const key = generateEd25519KeyPair('dev@laptop');
    const requestId = await requestAccess({
      servers: { serverIds: ['app-1'] },
      login: 'dev',
      publicKey: key.publicKey,
      durationMinutes: 15,
      reason: 'Look at the app logs during the incident.',
      ticket: 'INC-9',
    });
    const approved = await h.call('POST', `/v1/access-requests/${requestId}/approval`, { token: approver });
    expect(approved.status, approved.text).toBe(200);
    expect(approved.json().grant.targets).toEqual([
      expect.objectContaining({ serverId: 'app-1', state: 'failed', error: expect.any(Object) }),
    ]);
  });

  it('POST …/rejection and …/cancellation — decide pending requests only, each by the right principal', async () => {
    const rejectedId = await requestAccess();
    const rejected = await h.call('POST', `/v1/access-requests/${rejectedId}/rejection`, {
      token: approver,
      body: { comment: 'use the dashboards' },
    });
    expect(rejected.status).toBe(200);
    expect(rejected.json()).toMatchObject({ status: 'rejected', rejection: { principalId: 'lead' } });
    const again = await h.call('POST', `/v1/access-requests/${rejectedId}/approval`, { token: approver });
    expect(again.status).toBe(409);

    const cancelledId = await requestAccess();
    const byOther = await h.call('POST', `/v1/access-requests/${cancelledId}/cancellation`, {
      token: approver,
    });
    expect(byOther.status).toBe(403);
    const cancelled = await h.call('POST', `/v1/access-requests/${cancelledId}/cancellation`, {
      token: requester,
    });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json().status).toBe('cancelled');
    const twice = await h.call('POST', `/v1/access-requests/${cancelledId}/cancellation`, {
      token: requester,
    });
    expect(twice.status).toBe(409);
  });

  it('POST /v1/access-grants/{grantId}/revocation — the grantee ends their grant early; ending it again is a 409', async () => {
    const requestId = await requestAccess();
    const approved = await h.call('POST', `/v1/access-requests/${requestId}/approval`, { token: approver });
    const grantId = approved.json().grant.id;
    const revoked = await h.call('POST', `/v1/access-grants/${grantId}/revocation`, {
      token: requester,
      body: { reason: 'done early' },
    });
    expect(revoked.status, revoked.text).toBe(200);
    expect(revoked.json()).toMatchObject({ id: grantId, status: 'revoked', revokedBy: 'dev' });
    const request = await h.call('GET', `/v1/access-requests/${requestId}`, { token: requester });
    expect(request.json().status).toBe('revoked');
    expect(
      (await h.call('POST', `/v1/access-grants/${grantId}/revocation`, { token: requester })).status,
    ).toBe(409);
  });

  it('GET /v1/access-requests — all of the tenant’s only with audit.read; mine=true for the requester', async () => {
    await requestAccess();
    const all = await h.call('GET', '/v1/access-requests', { token: requester });
    expect(all.status).toBe(403);
    const first = await h.call('GET', '/v1/access-requests?mine=true&status=pending&limit=1', {
      token: requester,
    });
    expect(first.status).toBe(200);
    expect(first.json().items).toHaveLength(1);
    const cursor = encodeURIComponent(first.json().next);
    const second = await h.call(
      'GET',
      `/v1/access-requests?mine=true&status=pending&limit=1&cursor=${cursor}`,
      {
        token: requester,
      },
    );
    const mine = [...first.json().items, ...second.json().items];
    expect(new Set(mine.map((r: { id: string }) => r.id)).size).toBe(2);
    for (const item of mine) expect(item).toMatchObject({ requesterId: 'dev', status: 'pending' });
    // A cursor belongs to its list: the same one on the unfiltered list is refused.
    const other = await h.call('GET', `/v1/access-requests?mine=true&cursor=${cursor}`, { token: requester });
    expect(other.status).toBe(400);
    const everyone = await h.call('GET', '/v1/access-requests?limit=1000', { token: approver });
    expect(everyone.json().items.length).toBeGreaterThan(mine.length);
  });

  it('POST /v1/access/sweep — expires requests nobody decided in time', async () => {
    const requestId = await requestAccess();
    h.clock.advance(25 * 3_600_000);
    const swept = await h.call('POST', '/v1/access/sweep', { token: approver });
    expect(swept.status, swept.text).toBe(200);
    expect(swept.json().expiredRequests).toContain(requestId);
    const after = await h.call('GET', `/v1/access-requests/${requestId}`, { token: requester });
    expect(after.json().status).toBe('expired');
    expect((await h.call('POST', '/v1/access/sweep', { token: requester })).status).toBe(403);
  });
});

describe('mfaVerifiedAt', () => {
  let server: FleetwardServer;
  let mfaToken: string;
  const asked: { caller: unknown; cookie: string | null }[] = [];
  const failures: unknown[] = [];
  // What the embedding server's session store says: session id → when its user passed MFA.
  const sessions = new Map<string, string>();
  const mfaVerifiedAt: MfaVerifiedAt = (request, caller) => {
    const cookie = request.headers.get('cookie');
    asked.push({ caller, cookie });
    if (cookie === 'session=broken') return 'yesterday';
    return sessions.get(cookie?.replace(/^session=/, '') ?? '');
  };

  beforeAll(async () => {
    mfaToken = await principalWithToken(h, {
      tenantId: 'bravo',
      id: 'mfa-lead',
      rules: [{ effect: 'allow', actions: ['access.approve'], mfaWithinMinutes: 15 }],
    });
    server = await serveFleetwardApi(h.fleet, {
      port: 0,
      mfaVerifiedAt,
      onError: (error) => failures.push(error),
    });
  });
  afterAll(() => server.close());

  const approve = (requestId: string, cookie?: string) =>
    fetch(`${server.url}/v1/access-requests/${requestId}/approval`, {
      method: 'POST',
      headers: { authorization: `Bearer ${mfaToken}`, ...(cookie ? { cookie } : {}) },
    });

  it('createFleetwardApi — a rule with mfaWithinMinutes allows only when the embedding server reports a recent second factor', async () => {
    const now = h.clock.now().getTime();
    sessions.set('stale', new Date(now - 60 * 60_000).toISOString());
    sessions.set('fresh', new Date(now - 2 * 60_000).toISOString());

    const requestId = await requestAccess();
    const without = await approve(requestId);
    expect(without.status).toBe(403);
    expect(((await without.json()) as { detail: string }).detail).toMatch(/MFA verified within 15 minutes/);
    expect((await approve(requestId, 'session=stale')).status).toBe(403);
    // The token alone proves no second factor, on the server without the option either.
    const plain = await h.call('POST', `/v1/access-requests/${requestId}/approval`, {
      token: mfaToken,
      headers: { cookie: 'session=fresh' },
    });
    expect(plain.status).toBe(403);

    const fresh = await approve(requestId, 'session=fresh');
    expect(fresh.status, await fresh.clone().text()).toBe(200);
    expect(((await fresh.json()) as { grant: { approverIds: string[] } }).grant.approverIds).toEqual([
      'mfa-lead',
    ]);
    expect(asked.at(-1)).toEqual({
      caller: { tenantId: 'bravo', principalId: 'mfa-lead', tokenId: expect.any(String) },
      cookie: 'session=fresh',
    });
  });

  it('createFleetwardApi — an mfaVerifiedAt that returns something other than an instant is the server’s failure (500)', async () => {
    const requestId = await requestAccess();
    const response = await approve(requestId, 'session=broken');
    expect(response.status).toBe(500);
    expect(((await response.json()) as { code: string }).code).toBe('INTERNAL');
    expect(String(failures.at(-1))).toMatch(
      /mfaVerifiedAt option returned a string that is not an ISO 8601 instant/,
    );
  });
});
