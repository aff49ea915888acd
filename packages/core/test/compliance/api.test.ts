import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthorizationError,
  createFleet,
  createMemoryStore,
  type Fleet,
  NotFoundError,
  type PendingPatch,
  type Store,
  verifyAuditChain,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const A = 'tenant-a';
const B = 'tenant-b';
const DAY = 86_400_000;

const stores: { name: string; open: (clock: ManualClock) => { store: Store; cleanup: () => void } }[] = [
  { name: 'memory store', open: (clock) => ({ store: createMemoryStore({ clock }), cleanup: () => {} }) },
  {
    name: 'SQLite store',
    open: (clock) => {
      const dir = mkdtempSync(join(tmpdir(), 'fleetward-compliance-'));
      return {
        store: createSqliteStore({ path: join(dir, 'fleet.db'), synchronous: 'normal', clock }),
        cleanup: () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
];

const securityPatch = (name: string, firstSeenAt: string): PendingPatch => ({
  name,
  arch: 'amd64',
  installedVersion: '1.0',
  candidateVersion: '1.1',
  origins: [{ origin: 'Debian', archive: 'bookworm-security' }],
  category: 'security',
  severity: 'unspecified',
  advisories: [],
  held: false,
  keptBack: false,
  isNew: false,
  firstSeenAt,
});

describe.each(stores)('compliance API on the $name', ({ open }) => {
  let clock: ManualClock;
  let fleet: Fleet;
  let cleanup: () => void;
  const ago = (days: number) => new Date(clock.now().getTime() - days * DAY).toISOString();

  const addServer = (tenantId: string, id: string, fields: Record<string, unknown> = {}) =>
    fleet.store.servers.create({
      tenantId,
      id,
      name: id,
      accountId: 'acct-1',
      provider: 'aws',
      region: 'eu-west-1',
      labels: { env: 'prod' },
      ...fields,
    });
  const addScan = (tenantId: string, serverId: string, fields: Record<string, unknown> = {}) =>
    fleet.store.scanResults.create({
      tenantId,
      serverId,
      scannedAt: clock.now().toISOString(),
      status: 'succeeded',
      ...fields,
    });

  beforeEach(async () => {
    clock = new ManualClock('2026-05-01T00:00:00.000Z');
    const opened = open(clock);
    cleanup = opened.cleanup;
    fleet = createFleet({ store: opened.store, adapters: [], clock });
    await fleet.bootstrapTenant({
      tenant: { id: A, name: 'A' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    await fleet.bootstrapTenant({
      tenant: { id: B, name: 'B' },
      admin: { id: 'bob', name: 'Bob', kind: 'human', affiliation: 'employee' },
    });
  });
  afterEach(async () => {
    await fleet.close();
    cleanup();
  });

  it('summary — evaluates each server from its latest successful scan, through the facade', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    await alice.compliance.standards.add({
      id: 'sec-7',
      name: 'No security patch pending over 7 days',
      rule: { kind: 'max-pending-age', maxAgeDays: 7 },
      alertAfterDays: 7,
    });
    await addServer(A, 'web-1');
    await addServer(A, 'web-2', { region: 'eu-central-1' });
    await addServer(A, 'web-3');
    // web-1: an old scan had an overdue patch; the newest successful one is clean, a failure after it changes nothing.
    await addScan(A, 'web-1', { scannedAt: ago(5), patches: [securityPatch('openssl', ago(30))] });
    clock.advance(1000);
    await addScan(A, 'web-1', { scannedAt: ago(1) });
    await addScan(A, 'web-1', {
      scannedAt: ago(0),
      status: 'failed',
      error: { code: 'TRANSPORT', message: 'down' },
    });
    // web-2: overdue for 23 days, past the alert threshold.
    await addScan(A, 'web-2', { scannedAt: ago(1), patches: [securityPatch('openssl', ago(30))] });
    // web-3: never scanned.

    const summary = await alice.compliance.summary();
    expect(summary.generatedAt).toBe(clock.now().toISOString());
    expect(summary.overall).toMatchObject({ total: 3, compliant: 1, nonCompliant: 1, unknown: 1, alerts: 1 });
    expect(summary.byRegion.map((g) => [g.key, g.total, g.nonCompliant])).toEqual([
      ['eu-central-1', 1, 1],
      ['eu-west-1', 2, 0],
    ]);
    expect(summary.alerts.map((a) => a.serverId)).toEqual(['web-2']);

    const [web1, web2, web3] = await alice.compliance.evaluate({ serverIds: ['web-1', 'web-2', 'web-3'] });
    expect(web1).toMatchObject({ status: 'compliant', lastScannedAt: ago(1), lastFailedScanAt: ago(0) });
    expect(web2!.results[0]!.reasons[0]!.patches![0]).toMatchObject({ name: 'openssl', ageDays: 30 });
    expect(web3!.status).toBe('unknown');

    const log = await fleet.store.audit.list(A);
    expect(log.filter((r) => r.action === 'patch.read' && r.decision === 'allow')).toHaveLength(2);
    expect(log.find((r) => r.action === 'patch.policy')).toMatchObject({
      result: 'success',
      target: { type: 'compliance-standard', id: 'sec-7' },
    });
    expect(verifyAuditChain(log).ok).toBe(true);
  });

  it('summary — many servers are read in one pass over the scans and agree with per-server reads', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    await alice.compliance.standards.add({ name: 'weekly', rule: { kind: 'scanned-within', days: 7 } });
    for (let i = 0; i < 40; i++) {
      const id = `s-${String(i).padStart(2, '0')}`;
      await addServer(A, id);
      if (i % 4 !== 0) await addScan(A, id, { scannedAt: ago(i % 3 === 0 ? 10 : 1) });
    }
    const all = await alice.compliance.evaluate();
    const few = await alice.compliance.evaluate({ serverIds: all.slice(0, 5).map((e) => e.serverId) });
    expect(few).toEqual(all.slice(0, 5));
    const summary = await alice.compliance.summary();
    const count = (status: string) => all.filter((e) => e.status === status).length;
    expect(summary.overall).toMatchObject({
      total: 40,
      compliant: count('compliant'),
      nonCompliant: count('non-compliant'),
      unknown: 10,
    });
  });

  it('summary — tenant B’s summary never counts tenant A’s servers or standards', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    const bob = fleet.as({ tenantId: B, principalId: 'bob' });
    await alice.compliance.standards.add({ name: 'weekly', rule: { kind: 'scanned-within', days: 7 } });
    for (const id of ['a-1', 'a-2', 'a-3']) {
      await addServer(A, id);
      await addScan(A, id, { scannedAt: ago(30) });
    }
    await addServer(B, 'b-1');
    await addScan(B, 'b-1', { scannedAt: ago(30) });
    // The same server id in both tenants must not mix their scans either.
    await addServer(B, 'a-1');

    const b = await bob.compliance.summary();
    expect(b.overall).toMatchObject({ total: 2, compliant: 2, nonCompliant: 0 });
    expect(b.byStandard).toEqual([]);
    expect((await bob.compliance.evaluate()).map((e) => [e.serverId, e.lastScannedAt])).toEqual([
      ['a-1', undefined],
      ['b-1', ago(30)],
    ]);
    expect(await bob.compliance.standards.list()).toEqual([]);
    expect((await alice.compliance.summary()).overall).toMatchObject({ total: 3, nonCompliant: 3 });
  });

  it('summary — a principal without patch.read is denied, and the denial is audited', async () => {
    await fleet.store.roles.create({
      tenantId: A,
      id: 'inventory-reader',
      name: 'Inventory reader',
      rules: [{ effect: 'allow', actions: ['inventory.read'] }],
    });
    await fleet.store.principals.create({
      tenantId: A,
      id: 'ivan',
      name: 'Ivan',
      kind: 'human',
      affiliation: 'contractor',
    });
    await fleet.store.roleBindings.create({ tenantId: A, principalId: 'ivan', roleId: 'inventory-reader' });
    await addServer(A, 'web-1');
    const ivan = fleet.as({ tenantId: A, principalId: 'ivan' });
    await expect(ivan.compliance.summary()).rejects.toBeInstanceOf(AuthorizationError);
    expect((await fleet.store.audit.list(A)).at(-1)).toMatchObject({
      action: 'patch.read',
      decision: 'deny',
      result: 'denied',
      actor: { principalId: 'ivan' },
      target: { type: 'compliance-summary', id: '*' },
    });
    await expect(ivan.compliance.evaluate()).rejects.toBeInstanceOf(AuthorizationError);
    await expect(
      ivan.compliance.standards.add({ name: 'x', rule: { kind: 'scanned-within', days: 7 } }),
    ).rejects.toBeInstanceOf(AuthorizationError);
    expect(await fleet.store.complianceStandards.listAll(A)).toEqual([]);
  });

  it('summary — a principal bound to one project reads that project’s summary but not the tenant’s', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    await alice.projects.add({ id: 'prod', name: 'Production', selector: { labels: { env: 'prod' } } });
    await alice.projects.add({ id: 'dev', name: 'Development', selector: { labels: { env: 'dev' } } });
    await alice.compliance.standards.add({
      id: 'prod-weekly',
      name: 'prod weekly',
      projectId: 'prod',
      rule: { kind: 'scanned-within', days: 7 },
    });
    await addServer(A, 'p-1');
    await addScan(A, 'p-1', { scannedAt: ago(30) });
    await addServer(A, 'd-1', { labels: { env: 'dev' } });
    await addScan(A, 'd-1', { scannedAt: ago(30) });
    await fleet.store.roles.create({
      tenantId: A,
      id: 'patch-reader',
      name: 'Patch reader',
      rules: [{ effect: 'allow', actions: ['patch.read'] }],
    });
    await fleet.store.principals.create({
      tenantId: A,
      id: 'pat',
      name: 'Pat',
      kind: 'human',
      affiliation: 'employee',
    });
    await fleet.store.roleBindings.create({
      tenantId: A,
      principalId: 'pat',
      roleId: 'patch-reader',
      projectIds: ['prod'],
    });
    const pat = fleet.as({ tenantId: A, principalId: 'pat' });

    const prod = await pat.compliance.summary({ projectId: 'prod' });
    expect(prod).toMatchObject({ projectId: 'prod', overall: { total: 1, nonCompliant: 1 } });
    expect(prod.byProject.map((g) => g.key)).toEqual(['prod']);
    await expect(pat.compliance.summary()).rejects.toBeInstanceOf(AuthorizationError);
    await expect(pat.compliance.summary({ projectId: 'dev' })).rejects.toBeInstanceOf(AuthorizationError);
    expect((await pat.compliance.standards.list({ projectId: 'prod' })).map((s) => s.id)).toEqual([
      'prod-weekly',
    ]);
    // The dev server is outside the project's standard: compliant, as nothing applies to it.
    expect((await alice.compliance.summary()).overall).toMatchObject({
      total: 2,
      compliant: 1,
      nonCompliant: 1,
    });
  });

  it('standards — add, update and remove are audited; a project standard needs an existing project', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    await expect(
      alice.compliance.standards.add({
        name: 'x',
        projectId: 'ghost',
        rule: { kind: 'scanned-within', days: 7 },
      }),
    ).rejects.toBeInstanceOf(NotFoundError);
    const added = await alice.compliance.standards.add({
      name: 'Updated quarterly',
      rule: { kind: 'updated-within', days: 90 },
    });
    const updated = await alice.compliance.standards.update(
      added.id,
      { alertAfterDays: 30 },
      { expectedVersion: added.version },
    );
    expect(updated).toMatchObject({ version: 2, alertAfterDays: 30, enabled: true });
    expect(await alice.compliance.standards.list()).toEqual([updated]);
    expect(await alice.compliance.standards.remove(added.id, { expectedVersion: 2 })).toBe(true);
    expect(await alice.compliance.standards.remove(added.id)).toBe(false);
    const writes = (await fleet.store.audit.list(A)).filter((r) => r.action === 'patch.policy');
    expect(writes.map((r) => r.result)).toEqual(['failure', 'success', 'success', 'success']);
  });
});
