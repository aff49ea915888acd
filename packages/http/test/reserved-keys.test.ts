import { RESERVED_KEYS } from '@fleetward/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, problemOf, startHarness } from './support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const bravo = () => h.tokens.bravo;

/** A JSON body as an attacker writes it: `__proto__` stays an own key of the parsed object. */
const json = (text: string) => ({ raw: text, headers: { 'content-type': 'application/json' } });

/** Names every object inherits; none of them is an action. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);

describe('reserved keys over HTTP', () => {
  it('POST /v1/projects — a reserved label key in the selector is a 400 naming it, and nothing is stored', async () => {
    for (const key of RESERVED_KEYS) {
      const response = await h.call('POST', '/v1/projects', {
        token: bravo(),
        ...json(`{"id":"p-${key.replaceAll('_', 'u')}","name":"p","selector":{"labels":{"${key}":"web"}}}`),
      });
      expect(response.status, `${key}: ${response.text}`).toBe(400);
      const pointers = problemOf(response).errors!.map((e) => e.pointer);
      expect(pointers).toContain(`/selector/labels/${key}`);
    }
    expect(await h.fleet.store.projects.listAll('bravo')).toEqual([]);
  });

  it('PATCH /v1/projects/{projectId} — a __proto__ label cannot widen a selector to every server', async () => {
    const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
    await admin.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
    for (const [id, tier] of [
      ['b-web-1', 'web'],
      ['b-db-1', 'db'],
    ] as const) {
      await admin.servers.add({
        id,
        name: id,
        accountId: 'dc',
        provider: 'ssh',
        address: '10.0.0.2',
        labels: { tier },
      });
    }
    const project = await admin.projects.add({
      id: 'b-web',
      name: 'web',
      selector: { labels: { tier: 'web' } },
    });
    const response = await h.call('PATCH', '/v1/projects/b-web', {
      token: bravo(),
      ...json(`{"selector":{"labels":{"__proto__":"web"}},"expectedVersion":${project.version}}`),
    });
    expect(response.status, response.text).toBe(400);
    expect(problemOf(response).errors!.map((e) => e.pointer)).toContain('/selector/labels/__proto__');
    expect((await admin.projects.get('b-web'))?.selector).toEqual({ labels: { tier: 'web' } });
    const servers = await h.call('GET', '/v1/projects/b-web/servers', { token: bravo() });
    expect(servers.json().items.map((s: { id: string }) => s.id)).toEqual(['b-web-1']);
  });

  it('POST /v1/servers — a reserved label key is a 400 naming it', async () => {
    for (const key of RESERVED_KEYS) {
      const response = await h.call('POST', '/v1/servers', {
        token: bravo(),
        ...json(
          `{"name":"s","accountId":"dc","provider":"ssh","address":"10.0.0.3","labels":{"env":"prod","${key}":"x"}}`,
        ),
      });
      expect(response.status, `${key}: ${response.text}`).toBe(400);
      expect(problemOf(response).errors!.map((e) => e.pointer)).toContain(`/labels/${key}`);
    }
  });

  it('GET /v1/servers — a label filter on __proto__ is a 400, not a filter dropped to "every server"', async () => {
    const response = await h.call('GET', '/v1/servers?label=__proto__%3Dweb', { token: bravo() });
    expect(response.status, response.text).toBe(400);
    expect(problemOf(response).errors!.map((e) => e.path)).toContainEqual(['labels', '__proto__']);
  });

  it('POST /v1/access-requests — an Object.prototype name as an action is a 400 at actions/0', async () => {
    for (const name of PROTOTYPE_NAMES) {
      const response = await h.call('POST', '/v1/access-requests', {
        token: bravo(),
        body: {
          servers: { serverIds: ['b-web-1'] },
          mode: 'actions',
          actions: [name],
          durationMinutes: 30,
          reason: 'needs to look at the web servers',
          ticket: 'CHG-1',
        },
      });
      expect(response.status, `${name}: ${response.text}`).toBe(400);
      expect(problemOf(response).errors!.map((e) => e.pointer)).toContain('/actions/0');
    }
    expect(await h.fleet.store.accessRequests.listAll('bravo')).toEqual([]);
  });
});
