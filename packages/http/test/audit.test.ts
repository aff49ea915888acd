import {
  AuditCheckpointSchema,
  createFleet,
  createMemoryStore,
  verifyAuditCheckpoint,
  verifyAuditExport,
} from '@fleetward/core';
import { createFleetwardApi, issueApiToken } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessAuditReportSchema } from '../src/access-audit-report.js';
import { type Harness, principalWithToken, problemOf, startHarness } from './support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const bravo = () => h.tokens.bravo;

describe('audit export', () => {
  it('GET /v1/audit/export — streams the whole log as JSON Lines that verifyAuditExport accepts', async () => {
    // Enough records for several chunks of the stream.
    const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
    for (let i = 0; i < 200; i++) {
      await admin.servers.add({ id: `export-${i}`, name: `export-${i}`, accountId: 'dc', provider: 'ssh' });
    }
    const response = await h.call('GET', '/v1/audit/export', { token: bravo() });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    expect(response.headers.get('content-disposition')).toMatch(
      /^attachment; filename="fleetward-audit-bravo-/,
    );
    expect(response.text.length).toBeGreaterThan(64 * 1024);
    const lines = response.text.trimEnd().split('\n');
    const header = JSON.parse(lines[0]!);
    expect(header).toMatchObject({ tenantId: 'bravo', fromSeq: 1, count: lines.length - 1 });
    const verification = await verifyAuditExport(response.text);
    expect(verification).toMatchObject({
      ok: true,
      problems: [],
      tenantId: 'bravo',
      checked: lines.length - 1,
    });
    expect(response.text).not.toMatch(/"tenantId":"alpha"/);

    // A file cut short is not a shorter valid log.
    const truncated = await verifyAuditExport(`${lines.slice(0, -5).join('\n')}\n`);
    expect(truncated.ok).toBe(false);
  });

  it('GET /v1/audit/export — needs audit.read', async () => {
    const token = await principalWithToken(h, {
      tenantId: 'bravo',
      id: 'no-audit',
      rules: [{ effect: 'allow', actions: ['inventory.read'] }],
    });
    const response = await h.call('GET', '/v1/audit/export', { token });
    expect(response.status).toBe(403);
    expect(problemOf(response).code).toBe('FORBIDDEN');
  });
});

describe('audit checkpoints', () => {
  it('POST /v1/audit/checkpoints — signs the head of the tenant’s log with the fleet’s key', async () => {
    const head = await h.fleet.store.audit.head('bravo');
    const response = await h.call('POST', '/v1/audit/checkpoints', { token: bravo() });
    expect(response.status, response.text).toBe(201);
    const checkpoint = AuditCheckpointSchema.parse(response.json());
    expect(checkpoint).toMatchObject({ tenantId: 'bravo', seq: head!.seq, hash: head!.hash });
    expect(verifyAuditCheckpoint(checkpoint, h.fleet.auditSigningKey!.publicKey)).toBe(true);
    const verified = await h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' }).audit.verify({
      checkpoints: [checkpoint],
    });
    expect(verified).toMatchObject({ ok: true, checkpointsVerified: 1 });
  });

  it('POST /v1/audit/checkpoints — a fleet without a signing key answers 501 CAPABILITY_MISSING', async () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [] });
    await fleet.bootstrapTenant({
      tenant: { id: 'acme', name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const { token } = await issueApiToken(fleet, { tenantId: 'acme', principalId: 'alice', name: 't' });
    const reported: unknown[] = [];
    const api = createFleetwardApi(fleet, { onError: (error) => reported.push(error) });
    const response = await api.request('/v1/audit/checkpoints', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(501);
    expect(await response.json()).toMatchObject({
      code: 'CAPABILITY_MISSING',
      detail: expect.stringMatching(/signing key/),
    });
    expect(reported).toHaveLength(1);
    await fleet.close();
  });
});

describe('access audit report', () => {
  it('GET /v1/audit/access-report — answers the report in the shape the document declares, for the period asked', async () => {
    // The clock stands still in the harness, and the period ends before "now": move past the records.
    h.clock.advance(1000);
    const response = await h.call('GET', '/v1/audit/access-report?unusedAfterDays=30', { token: bravo() });
    expect(response.status, response.text).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const report = AccessAuditReportSchema.parse(response.json());
    expect(report).toMatchObject({ tenantId: 'bravo', unusedAfterDays: 30 });
    expect(report.totals.records).toBeGreaterThan(100);
    expect(report.topActions.map((a) => a.action)).toContain('inventory.write');

    const future = new Date(h.clock.now().getTime() + 3_600_000).toISOString();
    const later = new Date(h.clock.now().getTime() + 7_200_000).toISOString();
    const empty = await h.call(
      'GET',
      `/v1/audit/access-report?since=${encodeURIComponent(future)}&until=${encodeURIComponent(later)}`,
      { token: bravo() },
    );
    expect(empty.json()).toMatchObject({
      period: { since: future, until: later, records: 0 },
      topActions: [],
    });
    const backwards = await h.call(
      'GET',
      `/v1/audit/access-report?since=${encodeURIComponent(later)}&until=${encodeURIComponent(future)}`,
      { token: bravo() },
    );
    expect(backwards.status).toBe(400);
    expect(problemOf(backwards).errors).toEqual([expect.objectContaining({ in: 'query', path: ['until'] })]);
  });

  it('GET /v1/audit/access-report — renders a CSV table and an HTML page that may run no script', async () => {
    const csv = await h.call('GET', '/v1/audit/access-report?format=csv&table=actions', { token: bravo() });
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.text.split('\r\n')[0]).toMatch(/^"action",/);
    const html = await h.call('GET', '/v1/audit/access-report?format=html&title=Bravo%20audit', {
      token: bravo(),
    });
    expect(html.status).toBe(200);
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(html.headers.get('content-security-policy')).toMatch(/script-src 'none'|default-src 'none'/);
    expect(html.text).toContain('Bravo audit');
    expect((await h.call('GET', '/v1/audit/access-report?table=everything', { token: bravo() })).status).toBe(
      400,
    );
  });
});
