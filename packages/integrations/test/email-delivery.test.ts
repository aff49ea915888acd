import type { AddressInfo } from 'node:net';
import {
  createDispatcher,
  createFleet,
  createMemoryStore,
  type Fleet,
  MemorySecretStore,
} from '@fleetward/core';
import { createEmailDelivery } from '@fleetward/integrations';
import { ManualClock } from '@fleetward/testkit';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

let smtp: SMTPServer;
let port: number;
const inbox: { to: string[]; raw: string }[] = [];
let fleet: Fleet;
let clock: ManualClock;

beforeEach(async () => {
  inbox.length = 0;
  smtp = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _s, cb) {
      return auth.username === 'reports' && auth.password === 'smtp-secret'
        ? cb(null, { user: 'reports' })
        : cb(new Error('bad auth'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        cb();
      });
    },
  });
  await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
  port = (smtp.server.address() as AddressInfo).port;
  clock = new ManualClock('2026-04-01T00:00:00.000Z');
  fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [
      {
        name: 'ssh',
        exec: {
          exec: async () => {
            throw new Error('unused');
          },
        },
      },
    ],
    clock,
  });
  await fleet.bootstrapTenant({
    tenant: { id: 't', name: 'Acme' },
    admin: { id: 'ops', name: 'Ops', kind: 'human', affiliation: 'employee' },
  });
  const ops = fleet.as({ tenantId: 't', principalId: 'ops' });
  await ops.servers.add({
    id: 'web-1',
    name: 'web-1',
    accountId: 'dc',
    provider: 'ssh',
    address: '10.250.9.9',
  });
  await ops.projects.add({ id: 'web', name: 'Web', selector: { all: true } });
  await fleet.store.scanResults.create({
    tenantId: 't',
    serverId: 'web-1',
    scannedAt: '2026-03-20T00:00:00.000Z',
    status: 'succeeded',
    patches: [
      {
        name: 'openssl',
        arch: 'amd64',
        installedVersion: '3.0.1',
        candidateVersion: '3.0.2',
        origins: [],
        category: 'security',
        severity: 'unspecified',
        firstSeenAt: '2026-03-20T00:00:00.000Z',
      },
    ],
  });
  await ops.compliance.standards.add({
    id: 'sec7',
    name: 'Security within 7 days',
    rule: { kind: 'max-pending-age', maxAgeDays: 7 },
  });
  await fleet.store.integrations.create({
    tenantId: 't',
    id: 'mail',
    kind: 'smtp',
    name: 'Mail',
    config: {
      host: '127.0.0.1',
      port,
      from: 'Fleetward <reports@fleet.test>',
      user: 'reports',
      secure: false,
    },
    secretRef: 'smtp/password',
  });
});
afterEach(async () => {
  await fleet.close();
  await new Promise<void>((r) => smtp.close(() => r()));
});

describe('reports.emailCompliance', () => {
  it('emailCompliance — queues the report in the outbox; the dispatcher sends it over SMTP with HTML and CSV attachments', async () => {
    const secrets = new MemorySecretStore();
    await secrets.set('smtp/password', 'smtp-secret');
    const queued = await fleet
      .as({ tenantId: 't', principalId: 'ops' })
      .reports.emailCompliance(
        { kind: 'project', id: 'web' },
        { integrationId: 'mail', to: ['cio@acme.test'] },
      );
    expect(queued).toMatchObject({ channel: 'email', status: 'pending' });
    expect(inbox).toHaveLength(0);
    const dispatcher = createDispatcher({
      store: fleet.store,
      secrets,
      clock,
      deliver: { email: createEmailDelivery() },
    });
    await dispatcher.runOnce();
    expect(inbox).toHaveLength(1);
    expect(inbox[0]!.to).toEqual(['cio@acme.test']);
    const mail = await simpleParser(inbox[0]!.raw);
    expect(mail.subject).toBe('Patch compliance report: Web');
    expect(mail.text).toContain('1 servers: 0 compliant, 1 non-compliant, 0 unknown');
    expect(mail.attachments.map((a) => a.filename).sort()).toEqual([
      'pending-patches.csv',
      'report.html',
      'servers.csv',
    ]);
    const patches = mail.attachments.find((a) => a.filename === 'pending-patches.csv')!.content.toString();
    expect(patches).toContain('openssl');
    expect((await fleet.store.outbox.require('t', queued.id)).status).toBe('delivered');
  });
});
