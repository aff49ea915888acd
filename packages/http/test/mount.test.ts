import type { AddressInfo } from 'node:net';
import { createFleet, createMemoryStore } from '@fleetward/core';
import { createFleetwardApi, issueApiToken, openApiDocument } from '@fleetward/http';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';

describe('createFleetwardApi', () => {
  it('createFleetwardApi — mounts under a prefix of an existing Hono server, errors and all', async () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [] });
    await fleet.bootstrapTenant({
      tenant: { id: 'acme', name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const { token } = await issueApiToken(fleet, { tenantId: 'acme', principalId: 'alice', name: 'portal' });
    const api = createFleetwardApi(fleet, { document: { servers: [{ url: '/fleet' }] } });
    const portal = new Hono();
    portal.get('/health', (c) => c.text('ok'));
    portal.route('/fleet', api);

    const server = serve({ fetch: portal.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(await (await fetch(`${base}/health`)).text()).toBe('ok');
      const auth = { authorization: `Bearer ${token}` };
      const created = await fetch(`${base}/fleet/v1/projects`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'web', name: 'Web', selector: { all: true } }),
      });
      expect(created.status).toBe(201);
      const listed = await fetch(`${base}/fleet/v1/projects`, { headers: auth });
      expect(((await listed.json()) as { items: { id: string }[] }).items.map((p) => p.id)).toEqual(['web']);

      const anonymous = await fetch(`${base}/fleet/v1/projects`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('content-type')).toBe('application/problem+json');
      const invalid = await fetch(`${base}/fleet/v1/projects`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'web' }),
      });
      expect(invalid.status).toBe(400);
      expect(((await invalid.json()) as { instance: string }).instance).toBe('/fleet/v1/projects');

      const doc = (await (await fetch(`${base}/fleet/openapi.json`)).json()) as { servers: unknown };
      expect(doc.servers).toEqual([{ url: '/fleet' }]);
      expect(openApiDocument(api).servers).toEqual([{ url: '/fleet' }]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await fleet.close();
    }
  });

  it('createFleetwardApi — refuses invalid options with the field named', () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [] });
    expect(() => createFleetwardApi(fleet, { maxBodyBytes: 0 })).toThrow(/maxBodyBytes/);
    expect(() => createFleetwardApi(fleet, { colour: 'red' } as never)).toThrow(/colour/);
    expect(() => createFleetwardApi(fleet, { mfaVerifiedAt: '2026-01-01T00:00:00Z' } as never)).toThrow(
      /mfaVerifiedAt/,
    );
  });
});
