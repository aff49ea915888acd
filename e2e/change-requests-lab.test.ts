import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDispatcher, createMemoryStore, type Fleet, MemorySecretStore } from '@fleetward/core';
import { createTicketDelivery } from '@fleetward/integrations';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, expect, it } from 'vitest';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

let lab: Lab | undefined;
let fleet: Fleet | undefined;
let jira: HttpServer | undefined;
afterAll(async () => {
  await fleet?.close();
  await lab?.stop();
  await new Promise((r) => jira?.close(r));
}, 120_000);

interface Created {
  summary: string;
  labels: string[];
  description: { type: string; version: number };
  auth: string | undefined;
}

/** A Jira stand-in on loopback that records the issues created and answers label searches. */
async function startJira() {
  const created: Created[] = [];
  jira = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (req.method === 'GET' && url.pathname === '/rest/api/3/search/jql') {
        const label = /labels = "([^"]+)"/.exec(url.searchParams.get('jql') ?? '')?.[1];
        const issues = created
          .map((c, i) => ({ id: String(10_000 + i), key: `OPS-${i + 1}`, fields: { labels: c.labels } }))
          .filter((i) => label && i.fields.labels.includes(label));
        res.end(JSON.stringify({ issues }));
        return;
      }
      if (req.method === 'POST' && url.pathname === '/rest/api/3/issue') {
        const fields = (JSON.parse(body) as { fields: Created }).fields;
        created.push({ ...fields, auth: req.headers.authorization });
        res.statusCode = 201;
        res.end(
          JSON.stringify({
            id: String(10_000 + created.length - 1),
            key: `OPS-${created.length}`,
            self: 'x',
          }),
        );
        return;
      }
      res.statusCode = 404;
      res.end('{}');
    });
  });
  await new Promise<void>((r) => jira!.listen(0, '127.0.0.1', r));
  return { created, url: `http://127.0.0.1:${(jira.address() as AddressInfo).port}` };
}

// Issue #5: a scan that finds patches a policy covers opens ONE change request per project and
// pending set, delivered through the durable outbox to the ticketing system.
describeWithLab('change requests from scans', () => {
  it('scan — opens one Jira change request per pending set through the outbox, and a new one when the set changes', async () => {
    const { created, url } = await startJira();
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
    const access = labAccess(lab);
    const secrets = new MemorySecretStore();
    await secrets.set('jira/token', 'jira-api-token');
    const store = createMemoryStore();
    fleet = labFleet(access, store);
    await seed(fleet, access);
    await store.integrations.create({
      tenantId: TENANT,
      id: 'jira',
      kind: 'jira',
      name: 'Jira',
      config: { baseUrl: url, email: 'ops@example.com', projectKey: 'OPS' },
      secretRef: 'jira/token',
    });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      changeRequests: { integrationId: 'jira' },
    });
    const dispatcher = createDispatcher({ store, secrets, deliver: { ticket: createTicketDelivery() } });

    await alice.scan({ serverIds: ['deb1'] });
    await alice.scan({ serverIds: ['deb1'] });
    await dispatcher.runOnce();
    expect(created).toHaveLength(1);
    expect(created[0]!.summary).toContain('Lab');
    expect(created[0]!.description).toMatchObject({ type: 'doc', version: 1 });
    expect(created[0]!.auth).toBe(
      `Basic ${Buffer.from('ops@example.com:jira-api-token').toString('base64')}`,
    );
    const [request] = await store.changeRequests.list(TENANT);
    expect(request).toMatchObject({ status: 'opened', externalId: '10000', projectId: 'lab' });

    await lab.publish({
      apt: [{ suite: 'lab-security', packages: [{ name: 'labtool', version: '2.2', release: '1' }] }],
      refresh: true,
    });
    await alice.scan({ serverIds: ['deb1'] });
    await dispatcher.runOnce();
    expect(created).toHaveLength(2);
    expect(await store.changeRequests.list(TENANT)).toHaveLength(2);
    const audit = await store.audit.list(TENANT, { action: 'patch.plan' });
    expect(audit.filter((r) => r.target?.type === 'change-request')).toHaveLength(2);
  }, 240_000);
});
