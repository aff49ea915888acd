import {
  type Adapter,
  AuthorizationError,
  createDiscoveryScheduler,
  createFleet,
  type DiscoveredServer,
  type DiscoveryResult,
  discoveredServerId,
  IdSchema,
  LabelsSchema,
  NotFoundError,
  ServerSchema,
  TransportError,
  tagsToLabels,
  ValidationError,
} from '@fleetward/core';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { createInventoryApi } from '../../src/inventory/api.js';
import { addUnboundPrincipal, type KernelFixture, kernelFixture } from '../kernel-support.js';

/** What the fake provider lists, per account id: servers by region, failing regions, or a throw. */
interface FakeAccount {
  regions: Record<string, DiscoveredServer[]>;
  failing?: Record<string, Error>;
  throws?: unknown;
}

function fakeCloud(accounts: Record<string, FakeAccount>): Adapter {
  return {
    name: 'aws',
    discover: {
      async discover(account): Promise<DiscoveryResult> {
        const listed = accounts[account.id];
        if (!listed) return { servers: [] };
        if (listed.throws) throw listed.throws;
        const failing = listed.failing ?? {};
        return {
          servers: Object.entries(listed.regions)
            .filter(([region]) => !failing[region])
            .flatMap(([, servers]) => servers),
          failures: Object.entries(failing).map(([region, error]) => ({ region, error })),
        };
      },
    },
  };
}

const vm = (providerId: string, region: string, extra: Partial<DiscoveredServer> = {}): DiscoveredServer => ({
  providerId,
  name: providerId,
  region,
  address: '10.0.0.1',
  labels: { Name: providerId },
  ...extra,
});

let f: KernelFixture;
let cloud: Record<string, FakeAccount>;

async function addAccount(id: string, provider: 'aws' | 'ssh' = 'aws', tenantId = f.tenantId) {
  await f.store.accounts.create({ tenantId, id, name: id, provider });
}

const inventory = (principalId?: string) => createInventoryApi(f.ctx(principalId));
const servers = async (accountId: string) => f.store.servers.listAll(f.tenantId, { where: { accountId } });

const liveCloud = () => fakeCloud(new Proxy({}, { get: (_, k) => cloud[k as string] }));

beforeEach(async () => {
  cloud = {};
  f = await kernelFixture({ adapters: [liveCloud()] });
});

/** A Fleet on the fixture's store and clock: the scheduler runs discovery through its sessions. */
const fleetOf = () => createFleet({ store: f.store, clock: f.clock, adapters: [liveCloud()] });

describe('inventory.discover', () => {
  it('discover — adds listed servers with ids from their provider ids, tags as labels', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { 'eu-west-1': [vm('i-1', 'eu-west-1'), vm('i-2', 'eu-west-1')] } };
    const outcome = await inventory().discover();
    expect(outcome.accounts).toEqual([
      expect.objectContaining({ accountId: 'prod', status: 'succeeded', added: ['aws-i-1', 'aws-i-2'] }),
    ]);
    const stored = await f.store.servers.require(f.tenantId, 'aws-i-1');
    expect(stored).toMatchObject({
      accountId: 'prod',
      provider: 'aws',
      providerId: 'i-1',
      region: 'eu-west-1',
      address: '10.0.0.1',
      labels: { 'tag.aws/Name': 'i-1' },
    });
    expect(stored.goneAt).toBeUndefined();
  });

  it('discover — a webhook inventory.discovered per account, in the transaction of its servers (failed accounts too)', async () => {
    await f.store.webhookEndpoints.create({
      tenantId: f.tenantId,
      url: 'http://127.0.0.1:9/hooks',
      secretRef: 'hooks/main',
      events: ['inventory.*'],
    });
    await addAccount('prod');
    await addAccount('broken');
    cloud['prod'] = { regions: { 'eu-west-1': [vm('i-1', 'eu-west-1')] } };
    cloud['broken'] = { regions: {}, throws: new Error('the provider is down') };
    await inventory().discover();
    const messages = (await f.store.outbox.listAll(f.tenantId)).filter(
      (m) => m.eventType === 'inventory.discovered',
    );
    expect(
      messages
        .map((m) => m.payload)
        .sort((a, b) => String(a['accountId']).localeCompare(String(b['accountId']))),
    ).toEqual([
      expect.objectContaining({ accountId: 'broken', status: 'failed', added: 0 }),
      expect.objectContaining({ accountId: 'prod', status: 'succeeded', added: 1, gone: 0 }),
    ]);
  });

  it('discover — updates changed servers only, keeps hand-set labels, replaces discovered ones', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1'), vm('i-2', 'r1')] } };
    await inventory().discover();
    const before = await f.store.servers.require(f.tenantId, 'aws-i-2');
    const one = await f.store.servers.require(f.tenantId, 'aws-i-1');
    await f.store.servers.update(
      f.tenantId,
      'aws-i-1',
      { labels: { ...one.labels, owner: 'team-a', 'tag.aws/Stale': 'x' } },
      { expectedVersion: one.version },
    );
    cloud['prod'] = {
      regions: { r1: [vm('i-1', 'r1', { name: 'web-1', labels: { Env: 'prod' } }), vm('i-2', 'r1')] },
    };
    const outcome = await inventory().discover({ accountIds: ['prod'] });
    expect(outcome.accounts[0]).toMatchObject({ changed: ['aws-i-1'], unchanged: ['aws-i-2'], added: [] });
    const changed = await f.store.servers.require(f.tenantId, 'aws-i-1');
    expect(changed.name).toBe('web-1');
    expect(changed.labels).toEqual({ owner: 'team-a', 'tag.aws/Env': 'prod' });
    expect((await f.store.servers.require(f.tenantId, 'aws-i-2')).version).toBe(before.version);
  });

  it('discover — stores the management agent as listed, counts a change of its status as a change, drops a malformed one', async () => {
    await addAccount('prod');
    const agent = { name: 'amazon-ssm-agent', managed: true, status: 'Online', version: '3.3.1142.0' };
    cloud['prod'] = {
      regions: {
        r1: [
          vm('i-1', 'r1', { agent }),
          vm('i-2', 'r1', { agent: { name: 'amazon-ssm-agent', managed: 'yes' } as never }),
        ],
      },
    };
    await inventory().discover();
    expect((await f.store.servers.require(f.tenantId, 'aws-i-1')).agent).toEqual(agent);
    expect((await f.store.servers.require(f.tenantId, 'aws-i-2')).agent).toBeUndefined();
    const same = await inventory().discover();
    expect(same.accounts[0]).toMatchObject({ changed: [], unchanged: ['aws-i-1', 'aws-i-2'] });
    cloud['prod'] = {
      regions: { r1: [vm('i-1', 'r1', { agent: { ...agent, status: 'ConnectionLost' } }), vm('i-2', 'r1')] },
    };
    const lost = await inventory().discover();
    expect(lost.accounts[0]).toMatchObject({ changed: ['aws-i-1'] });
    expect((await f.store.servers.require(f.tenantId, 'aws-i-1')).agent?.status).toBe('ConnectionLost');
  });

  it('discover — marks servers no longer listed gone, keeps them, and un-gones them when listed again', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1'), vm('i-2', 'r1')] } };
    await inventory().discover();
    f.clock.advance(60_000);
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    const gone = await inventory().discover();
    expect(gone.accounts[0]).toMatchObject({ gone: ['aws-i-2'], unchanged: ['aws-i-1'] });
    expect((await f.store.servers.require(f.tenantId, 'aws-i-2')).goneAt).toBe(f.clock.now().toISOString());

    const again = await inventory().discover();
    expect(again.accounts[0]).toMatchObject({ gone: [], changed: [], unchanged: ['aws-i-1'] });

    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1'), vm('i-2', 'r1')] } };
    const back = await inventory().discover();
    expect(back.accounts[0]).toMatchObject({ changed: ['aws-i-2'], gone: [] });
    expect((await f.store.servers.require(f.tenantId, 'aws-i-2')).goneAt).toBeUndefined();
    expect(await servers('prod')).toHaveLength(2);
  });

  it('discover — a failed region keeps its servers as they were and reports the region', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { eu: [vm('i-eu', 'eu')], us: [vm('i-us', 'us'), vm('i-us2', 'us')] } };
    await inventory().discover();
    cloud['prod'] = {
      regions: { eu: [], us: [vm('i-us', 'us')] },
      failing: { eu: new TransportError('eu endpoint unreachable') },
    };
    const [report] = (await inventory().discover()).accounts;
    expect(report).toMatchObject({
      status: 'partial',
      regionFailures: [
        { region: 'eu', error: { code: 'TRANSPORT_FAILED', message: 'eu endpoint unreachable' } },
      ],
      unverified: ['aws-i-eu'],
      gone: ['aws-i-us2'],
      unchanged: ['aws-i-us'],
    });
    expect((await f.store.servers.require(f.tenantId, 'aws-i-eu')).goneAt).toBeUndefined();
  });

  it('discover — a failing account fails alone with its code and message; the others are stored', async () => {
    await addAccount('broken');
    await addAccount('crashing');
    await addAccount('prod');
    await addAccount('dc', 'ssh');
    cloud['broken'] = { regions: {}, throws: new TransportError('role could not be assumed') };
    cloud['crashing'] = { regions: {}, throws: new Error(`boom ${'x'.repeat(5000)}`) };
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    const outcome = await inventory().discover();
    const by = Object.fromEntries(outcome.accounts.map((a) => [a.accountId, a]));
    expect(by['broken']).toMatchObject({
      status: 'failed',
      error: { code: 'TRANSPORT_FAILED', message: 'role could not be assumed' },
      added: [],
    });
    expect(by['crashing']).toMatchObject({ status: 'failed', error: { code: 'INTERNAL' } });
    expect(by['crashing']!.error!.message).toContain('boom');
    expect(by['crashing']!.error!.message.length).toBeLessThanOrEqual(2000);
    expect(by['dc']).toMatchObject({ status: 'skipped', error: { code: 'CAPABILITY_MISSING' } });
    expect(by['prod']).toMatchObject({ status: 'succeeded', added: ['aws-i-1'] });
    expect(await servers('prod')).toHaveLength(1);

    const records = await f.store.audit.list(f.tenantId, { limit: 100 });
    const discovery = records.filter((r) => r.action === 'inventory.discover');
    expect(discovery).toContainEqual(
      expect.objectContaining({
        target: { type: 'account', id: 'broken' },
        decision: 'allow',
        result: 'failure',
        reason: 'role could not be assumed',
      }),
    );
    expect(discovery).toContainEqual(
      expect.objectContaining({
        target: { type: 'account', id: 'prod' },
        result: 'success',
        details: expect.objectContaining({ added: 1, gone: 0, changed: 0 }),
      }),
    );
  });

  it('discover — rejects unusable entries and duplicates without failing the account, and never marks them gone', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1'), vm('i-2', 'r1')] } };
    await inventory().discover();
    cloud['prod'] = {
      regions: {
        r1: [
          vm('i-1', 'r1'),
          vm('i-1', 'r1', { name: 'dup' }),
          vm('i-2', 'bad region; rm -rf /'),
          { name: 'no id', labels: {} } as unknown as DiscoveredServer,
          vm('i-3', 'r1', { address: 'not an address!', os: { family: 'nope' } as never }),
        ],
      },
    };
    const [report] = (await inventory().discover()).accounts;
    expect(report!.status).toBe('succeeded');
    expect(report!.rejected.map((r) => r.providerId)).toEqual(['i-1', 'i-2', undefined]);
    expect(report!.gone).toEqual([]);
    expect(report!.added).toEqual(['aws-i-3']);
    const added = await f.store.servers.require(f.tenantId, 'aws-i-3');
    expect(added.address).toBeUndefined();
    expect(added.os).toBeUndefined();
  });

  it('discover — derives safe, distinct ids from hostile provider ids', async () => {
    await addAccount('prod');
    const hostile = ['a/b', 'a-b', '../../etc/passwd; rm -rf /', `$(reboot)${'x'.repeat(400)}`, '-lead'];
    cloud['prod'] = { regions: { r1: hostile.map((id) => vm(id, 'r1')) } };
    const [report] = (await inventory().discover()).accounts;
    expect(report!.added).toHaveLength(hostile.length);
    expect(new Set(report!.added).size).toBe(hostile.length);
    for (const id of report!.added) expect(IdSchema.safeParse(id).success).toBe(true);
    expect(report!.added).toContain('aws-a-b');
    const again = await inventory().discover();
    expect(again.accounts[0]!.unchanged).toHaveLength(hostile.length);
  });

  it('discover — the same provider id in two accounts makes two servers', async () => {
    await addAccount('a1');
    await addAccount('a2');
    cloud['a1'] = { regions: { r1: [vm('i-1', 'r1')] } };
    cloud['a2'] = { regions: { r1: [vm('i-1', 'r1')] } };
    const outcome = await inventory().discover();
    const ids = outcome.accounts.flatMap((a) => a.added);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe('aws-i-1');
    expect(ids[1]).toBe(discoveredServerId('aws', 'a2', 'i-1', () => true));
  });

  it('discover — announces inventory.discovered per account', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    const seen: unknown[] = [];
    f.runtime.events.on('inventory.discovered', (e) => seen.push(e));
    await inventory().discover();
    expect(seen).toEqual([
      {
        tenantId: f.tenantId,
        accountId: 'prod',
        status: 'succeeded',
        added: 1,
        changed: 0,
        gone: 0,
        unchanged: 0,
      },
    ]);
  });

  it('discover — refuses a principal without inventory.discover, audits the denial, stores nothing', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    await addUnboundPrincipal(f, 'nobody');
    await expect(inventory('nobody').discover({ accountIds: ['prod'] })).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    await expect(inventory('nobody').discover()).rejects.toBeInstanceOf(AuthorizationError);
    const records = await f.store.audit.list(f.tenantId, { limit: 100 });
    expect(records).toContainEqual(
      expect.objectContaining({
        action: 'inventory.discover',
        decision: 'deny',
        result: 'denied',
        actor: expect.objectContaining({ principalId: 'nobody' }),
      }),
    );
    expect(await servers('prod')).toEqual([]);
  });

  it('discover — a role allowing only inventory.write is not enough', async () => {
    await addAccount('prod');
    await addUnboundPrincipal(f, 'writer');
    await f.store.roles.create({
      tenantId: f.tenantId,
      id: 'writer',
      name: 'Writer',
      rules: [{ effect: 'allow', actions: ['inventory.write', 'inventory.read'] }],
    });
    await f.store.roleBindings.create({ tenantId: f.tenantId, principalId: 'writer', roleId: 'writer' });
    await expect(inventory('writer').discover()).rejects.toBeInstanceOf(AuthorizationError);
  });

  it('discover — stays in the caller’s tenant: another tenant’s account is not found, its servers untouched', async () => {
    const other = 'other';
    await f.store.tenants.create({ tenantId: other, id: other, name: 'Other' });
    await addAccount('prod', 'aws', other);
    await f.store.servers.create({
      tenantId: other,
      id: 'aws-i-1',
      accountId: 'prod',
      provider: 'aws',
      providerId: 'i-1',
      name: 'theirs',
    });
    cloud['prod'] = { regions: { r1: [] } };
    await expect(inventory().discover({ accountIds: ['prod'] })).rejects.toBeInstanceOf(NotFoundError);
    await addAccount('mine');
    cloud['mine'] = { regions: { r1: [vm('i-1', 'r1')] } };
    await inventory().discover();
    const theirs = await f.store.servers.require(other, 'aws-i-1');
    expect(theirs).toMatchObject({ name: 'theirs', version: 1 });
    expect(theirs.goneAt).toBeUndefined();
    expect((await f.store.servers.require(f.tenantId, 'aws-i-1')).accountId).toBe('mine');
  });

  it('discover — refuses bad options with ValidationError', async () => {
    await expect(inventory().discover({ accountIds: ['../x'] })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(inventory().discover({ tenantId: 'other' } as never)).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
  });
});

const hostileKey = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'aws:cloudformation:stack-name',
    '',
    '-',
    'a/b/c',
    'x'.repeat(300),
  ),
);
const hostileValue = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', '$(reboot)', '; rm -rf /', 'v'.repeat(300), '\u0000'),
);
const tagSets = fc
  .array(fc.tuple(hostileKey, hostileValue), { maxLength: 40 })
  .map((pairs) => Object.fromEntries(pairs) as Record<string, string>);

describe('tags to labels', () => {
  it('tagsToLabels — never yields an invalid label, and every tag is either kept or counted as dropped', () => {
    fc.assert(
      fc.property(tagSets, (tags) => {
        const { labels, dropped } = tagsToLabels('aws', tags);
        expect(LabelsSchema.safeParse(labels).success).toBe(true);
        expect(Object.keys(labels).length + dropped).toBe(Object.keys(tags).length);
        for (const key of Object.keys(labels)) expect(key.startsWith('tag.aws/')).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('tagsToLabels — keeps clean tags as they are and drops both tags of a colliding pair', () => {
    expect(tagsToLabels('aws', { Name: 'web-1', Env: 'prod' })).toEqual({
      labels: { 'tag.aws/Name': 'web-1', 'tag.aws/Env': 'prod' },
      dropped: 0,
      sanitized: 0,
    });
    expect(tagsToLabels('aws', { 'a b': '1', 'a-b': '2', 'team:x': 'Ops Team' })).toEqual({
      labels: { 'tag.aws/team-x': 'Ops-Team' },
      dropped: 2,
      sanitized: 1,
    });
  });

  it('discover — hostile tags never crash discovery nor store an invalid label', async () => {
    await addAccount('prod');
    await fc.assert(
      fc.asyncProperty(tagSets, async (tags) => {
        cloud['prod'] = { regions: { r1: [vm('i-1', 'r1', { labels: tags })] } };
        const [report] = (await inventory().discover()).accounts;
        expect(report!.status).toBe('succeeded');
        const stored = await f.store.servers.require(f.tenantId, 'aws-i-1');
        expect(ServerSchema.safeParse(stored).success).toBe(true);
      }),
      { numRuns: 40 },
    );
  });
});

describe('discovery scheduler', () => {
  it('tick — runs each slot once across two schedulers on one store, and the next slot again', async () => {
    await addAccount('prod');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1'), vm('i-2', 'r1')] } };
    const schedules = [{ id: 'hourly', tenantId: f.tenantId, runAs: 'admin', intervalMinutes: 60 }];
    const a = createDiscoveryScheduler({ fleet: fleetOf(), schedules, holder: 'a' });
    const b = createDiscoveryScheduler({ fleet: fleetOf(), schedules, holder: 'b' });
    const first = [...(await a.tick()).ran, ...(await b.tick()).ran];
    expect(first).toHaveLength(1);
    expect(first[0]!.outcome!.accounts[0]!.added).toEqual(['aws-i-1', 'aws-i-2']);
    expect((await a.tick()).ran).toEqual([]);

    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    f.clock.advance(60 * 60_000);
    const second = [...(await b.tick()).ran, ...(await a.tick()).ran];
    expect(second).toHaveLength(1);
    expect(second[0]!.outcome!.accounts[0]!.gone).toEqual(['aws-i-2']);
  });

  it('tick — a runAs principal without inventory.discover is refused and reported, nothing stored', async () => {
    await addAccount('prod');
    await addUnboundPrincipal(f, 'robot');
    cloud['prod'] = { regions: { r1: [vm('i-1', 'r1')] } };
    const errors: unknown[] = [];
    const scheduler = createDiscoveryScheduler({
      fleet: fleetOf(),
      schedules: [{ id: 'nightly', tenantId: f.tenantId, runAs: 'robot', cron: '0 2 * * *' }],
      onError: (error) => errors.push(error),
    });
    f.clock.advance(3 * 60 * 60_000);
    const { ran } = await scheduler.tick();
    expect(ran).toEqual([{ tenantId: f.tenantId, scheduleId: 'nightly', slot: '2026-05-01T02:00:00.000Z' }]);
    expect(errors[0]).toBeInstanceOf(AuthorizationError);
    expect(await servers('prod')).toEqual([]);
  });

  it('createDiscoveryScheduler — refuses schedules with both or neither of cron and interval, a bad cron, a repeated id', () => {
    const base = { id: 's', tenantId: 'acme', runAs: 'admin' };
    for (const schedules of [
      [base],
      [{ ...base, cron: '0 2 * * *', intervalMinutes: 5 }],
      [{ ...base, cron: 'not a cron at all' }],
      [
        { ...base, intervalMinutes: 5 },
        { ...base, intervalMinutes: 10 },
      ],
    ]) {
      expect(() => createDiscoveryScheduler({ fleet: fleetOf(), schedules })).toThrow(ValidationError);
    }
  });
});
