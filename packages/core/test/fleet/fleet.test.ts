import { execFileSync } from 'node:child_process';
import {
  type Adapter,
  AuthorizationError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  type FleetEvents,
  NotFoundError,
  TransportError,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { itIfAvailable, ManualClock, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const A = 'tenant-a';
const B = 'tenant-b';

/** An adapter that reaches nothing: every command fails as an unreachable host would. */
const unreachable: Adapter = {
  name: 'unreachable',
  exec: {
    async exec(server) {
      throw new TransportError(`connect ECONNREFUSED ${server.address ?? server.name}:22`);
    },
  },
};

let fleet: Fleet;
let clock: ManualClock;

beforeEach(async () => {
  clock = new ManualClock('2026-05-01T00:00:00.000Z');
  fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [createLocalAdapter(), unreachable],
    clock,
  });
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
});

const server = (id: string, labels: Record<string, string>, adapter = 'unreachable') => ({
  id,
  name: id,
  accountId: 'dc',
  provider: 'ssh' as const,
  address: '10.250.0.9',
  adapter,
  labels,
});

describe('Fleet', () => {
  it('createFleet — refuses an adapter with no capability, naming what is missing', () => {
    expect(() => createFleet({ store: createMemoryStore(), adapters: [{ name: 'empty' }] })).toThrow(
      /none of the capabilities discover, exec, scan, install, keys, snapshot/,
    );
  });

  it('servers.add — is allowed for the tenant admin and leaves an allow/success audit record in the same chain', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    await alice.servers.add(server('web-1', { env: 'prod' }));
    const log = await fleet.store.audit.list(A);
    const add = log.find((r) => r.action === 'inventory.write');
    expect(add).toMatchObject({
      decision: 'allow',
      result: 'success',
      actor: { principalId: 'alice' },
      details: { serverId: 'web-1' },
    });
    expect(verifyAuditChain(log).ok).toBe(true);
  });

  it('servers.add — a principal with no role is denied, the denial is audited, and nothing is stored', async () => {
    await fleet.store.principals.create({
      tenantId: A,
      id: 'mallory',
      name: 'Mallory',
      kind: 'human',
      affiliation: 'contractor',
    });
    const mallory = fleet.as({ tenantId: A, principalId: 'mallory' });
    await expect(mallory.servers.add(server('evil', {}))).rejects.toBeInstanceOf(AuthorizationError);
    expect(await fleet.store.servers.get(A, 'evil')).toBeUndefined();
    const denial = (await fleet.store.audit.list(A)).at(-1)!;
    expect(denial).toMatchObject({
      action: 'inventory.write',
      decision: 'deny',
      result: 'denied',
      actor: { principalId: 'mallory' },
    });
    expect(denial.reason).toMatch(/deny by default/);
  });

  it('servers.add — an unknown principal is denied and audited', async () => {
    await expect(fleet.as({ tenantId: A, principalId: 'ghost' }).servers.list()).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    expect((await fleet.store.audit.list(A)).at(-1)).toMatchObject({
      decision: 'deny',
      reason: 'unknown principal',
    });
  });

  it('servers.add — invalid input is a ValidationError with paths, audited as a failure, nothing stored', async () => {
    const alice = fleet.as({ tenantId: A, principalId: 'alice' });
    const error = await alice.servers
      .add({ ...server('bad', {}), address: '$(reboot)', port: 0 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).paths).toEqual(expect.arrayContaining(['address', 'port']));
    expect(await fleet.store.servers.get(A, 'bad')).toBeUndefined();
    expect((await fleet.store.audit.list(A)).at(-1)).toMatchObject({
      result: 'failure',
      details: { code: 'VALIDATION_FAILED' },
    });
  });

  it('as — tenants never see or touch each other’s servers', async () => {
    await fleet.as({ tenantId: A, principalId: 'alice' }).servers.add(server('web-1', { env: 'prod' }));
    const bob = fleet.as({ tenantId: B, principalId: 'bob' });
    expect(await bob.servers.list()).toEqual([]);
    expect(await bob.servers.get('web-1')).toBeUndefined();
    await expect(bob.scan({ serverIds: ['web-1'] })).rejects.toBeInstanceOf(NotFoundError);
    expect(await bob.servers.remove('web-1')).toBe(false);
    expect(await fleet.store.servers.get(A, 'web-1')).toBeDefined();
    // Alice's id is not a principal of tenant B.
    await expect(fleet.as({ tenantId: B, principalId: 'alice' }).servers.list()).rejects.toBeInstanceOf(
      AuthorizationError,
    );
  });

  describe('with a scoped operator role', () => {
    beforeEach(async () => {
      const alice = fleet.as({ tenantId: A, principalId: 'alice' });
      await alice.servers.add(server('prod-1', { env: 'prod' }));
      await alice.servers.add(server('stage-1', { env: 'staging' }));
      const s = fleet.store;
      await s.principals.create({
        tenantId: A,
        id: 'olga',
        name: 'Olga',
        kind: 'human',
        affiliation: 'contractor',
      });
      await s.roles.create({
        tenantId: A,
        id: 'prod-scanner',
        name: 'Prod scanner',
        rules: [
          { effect: 'allow', actions: ['patch.*', 'inventory.read'], servers: { labels: { env: 'prod' } } },
          { effect: 'allow', actions: ['inventory.read'] },
        ],
      });
      await s.roleBindings.create({ tenantId: A, principalId: 'olga', roleId: 'prod-scanner' });
    });

    it('scan — refuses the whole call when one target is not allowed, and nothing runs', async () => {
      const olga = fleet.as({ tenantId: A, principalId: 'olga' });
      const error = await olga.scan({ selector: { all: true } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AuthorizationError);
      expect((error as AuthorizationError).decision).toMatchObject({
        resource: { type: 'server', id: 'stage-1' },
      });
      expect(await fleet.store.jobs.list(A)).toEqual([]);
      expect(await fleet.store.scanResults.list(A)).toEqual([]);
    });

    it('scan — an explicit deny beats the allow, whatever the rule order', async () => {
      await fleet.store.roles.create({
        tenantId: A,
        id: 'no-contractor-scans',
        name: 'No contractor scans',
        rules: [{ effect: 'deny', actions: ['patch.scan'], affiliations: ['contractor'] }],
      });
      await fleet.store.roleBindings.create({
        tenantId: A,
        principalId: 'olga',
        roleId: 'no-contractor-scans',
      });
      const error = await fleet
        .as({ tenantId: A, principalId: 'olga' })
        .scan({ serverIds: ['prod-1'] })
        .catch((e: unknown) => e);
      expect((error as AuthorizationError).decision).toMatchObject({
        matched: { roleId: 'no-contractor-scans', effect: 'deny' },
      });
    });

    it('scan — an unreachable server gives a failed ScanResult with the error, a failed job and events in order', async () => {
      const seen: string[] = [];
      const names: (keyof FleetEvents)[] = [
        'scan.started',
        'scan.server.started',
        'scan.server.failed',
        'scan.completed',
      ];
      for (const n of names) fleet.events.on(n, () => seen.push(n));
      const outcome = await fleet
        .as({ tenantId: A, principalId: 'olga' })
        .scan({ selector: { labels: { env: 'prod' } } });
      expect(outcome.job).toMatchObject({ status: 'failed', summary: { total: 1, succeeded: 0, failed: 1 } });
      expect(outcome.results[0]).toMatchObject({
        serverId: 'prod-1',
        status: 'failed',
        error: { code: 'TRANSPORT_FAILED' },
      });
      expect(seen).toEqual(names);
      const tasks = await fleet.store.taskResults.list(A, { where: { jobId: outcome.job.id } });
      expect(tasks).toMatchObject([
        { serverId: 'prod-1', status: 'failed', error: { code: 'TRANSPORT_FAILED' } },
      ]);
      const audit = (await fleet.store.audit.list(A, { action: 'patch.scan' })).map((r) => r.result);
      expect(audit).toEqual(['started', 'failure']);
    });

    it('servers.list — leaves out servers the principal may not read', async () => {
      await fleet.store.roles.update(
        A,
        'prod-scanner',
        { rules: [{ effect: 'allow', actions: ['inventory.read'], servers: { labels: { env: 'prod' } } }] },
        { expectedVersion: 1 },
      );
      const ids = (await fleet.as({ tenantId: A, principalId: 'olga' }).servers.list()).map((s) => s.id);
      expect(ids).toEqual(['prod-1']);
    });
  });

  itIfAvailable(
    'scan — on this Debian machine through the local adapter lists exactly what apt list --upgradable lists',
    unavailableWithout({ commands: ['apt-get'] }),
    async () => {
      const alice = fleet.as({ tenantId: A, principalId: 'alice' });
      await alice.servers.add({
        id: 'localhost',
        name: 'localhost',
        accountId: 'local',
        provider: 'local',
        labels: {},
      });
      const outcome = await alice.scan({ serverIds: ['localhost'] });
      const expected = execFileSync('apt', ['list', '--upgradable'], {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['ignore', 'pipe', 'ignore'],
      })
        .toString()
        .split('\n')
        .filter((l) => l.includes('[upgradable from:'))
        .map((l) => {
          const [nameSuite, version] = l.split(' ');
          return `${nameSuite!.split('/')[0]}=${version}`;
        })
        .sort();
      const result = outcome.results[0]!;
      expect(result.status, JSON.stringify(result.error)).toBe('succeeded');
      const got = result.patches
        .filter((p) => !p.isNew)
        .map((p) => `${p.name}=${p.candidateVersion}`)
        .sort();
      expect(got).toEqual(expected);
      expect((await fleet.store.servers.require(A, 'localhost')).os).toMatchObject({
        family: 'debian',
        packageManager: 'apt',
      });
    },
  );
});
