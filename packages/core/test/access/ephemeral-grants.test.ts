import {
  type Adapter,
  AuthorizationError,
  CapabilityMissingError,
  ConflictError,
  createFleet,
  createMemoryStore,
  type Fleet,
  generateEd25519KeyPair,
  NotFoundError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sweepAccess } from '../../src/access/api.js';

// Grants of mode `ephemeral-key` (access through Fleetward): nothing is installed on a server;
// `access.connect` has the server's adapter accept the grantee's key for a short time. The adapter
// here records what it is asked; the AWS adapter's real offer is tested in
// packages/adapter-aws/test/ephemeral-grant.test.ts.

const T = 'acme';
const OFFER_LIFETIME_MS = 60_000;

interface Offer {
  serverId: string;
  login: string;
  publicKey: string;
}

let fleet: Fleet;
let clock: ManualClock;
let offers: Offer[];
/** Every call of a capability that could leave something on a server, other than the login check. */
let writes: string[];
/** The argv of every command the adapters ran. */
let commands: string[][];
let offerFailure: Error | undefined;

const empty = { text: '', bytes: 0, sha256: '0'.repeat(64), truncated: false };

function recordingAdapter(name: string, withOffers: boolean): Adapter {
  return {
    name,
    exec: {
      async exec(_server, command) {
        commands.push('argv' in command ? [...command.argv] : [...command.interpreter]);
        return { exitCode: 0, signal: null, stdout: empty, stderr: empty, durationMs: 1 };
      },
    },
    keys: {
      async list(server) {
        writes.push(`keys.list ${server.id}`);
        return [];
      },
      async install(server) {
        writes.push(`keys.install ${server.id}`);
      },
      async remove(server) {
        writes.push(`keys.remove ${server.id}`);
        return false;
      },
    },
    ...(withOffers
      ? {
          ephemeralKeys: {
            async offer(server, { login, publicKey }) {
              if (offerFailure) throw offerFailure;
              offers.push({ serverId: server.id, login, publicKey });
              return { expiresAt: new Date(clock.now().getTime() + OFFER_LIFETIME_MS).toISOString() };
            },
          },
        }
      : {}),
  };
}

const as = (principalId: string) => fleet.as({ tenantId: T, principalId });
const carolKey = generateEd25519KeyPair('carol@laptop');

beforeEach(async () => {
  clock = new ManualClock('2026-05-01T09:00:00.000Z');
  offers = [];
  writes = [];
  commands = [];
  offerFailure = undefined;
  fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [recordingAdapter('eic', true), recordingAdapter('plain', false)],
    clock,
    access: { requiredApprovals: 1, maxDurationMinutes: 240 },
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: T },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  for (const id of ['bob', 'carol', 'dave']) {
    await fleet.store.principals.create({
      tenantId: T,
      id,
      name: id,
      kind: 'human',
      affiliation: 'employee',
    });
  }
  await fleet.store.roles.create({
    tenantId: T,
    id: 'requester',
    name: 'requester',
    rules: [{ effect: 'allow', actions: ['access.request'] }],
  });
  await fleet.store.roles.create({
    tenantId: T,
    id: 'approver',
    name: 'approver',
    rules: [{ effect: 'allow', actions: ['access.approve', 'audit.read'] }],
  });
  for (const id of ['carol', 'dave'])
    await fleet.store.roleBindings.create({ tenantId: T, principalId: id, roleId: 'requester' });
  await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'approver' });
  for (const [id, adapter] of [
    ['web-1', 'eic'],
    ['web-2', 'eic'],
    ['legacy-1', 'plain'],
    ['legacy-2', 'plain'],
  ] as const) {
    await as('alice').servers.add({
      id,
      name: id,
      accountId: 'dc',
      provider: 'aws',
      adapter,
      address: `10.0.0.${id.endsWith('1') ? 1 : 2}`,
      labels: {},
    });
  }
});
afterEach(() => fleet.close());

const base = {
  mode: 'ephemeral-key' as const,
  servers: { serverIds: ['web-1', 'web-2'] },
  login: 'deploy',
  durationMinutes: 60,
  reason: 'look at the failing deploy on the web tier',
  ticket: 'INC-4711',
};

/** Carol's ephemeral-key grant, approved by Bob. */
async function approvedGrant(extra: Partial<typeof base> & { startAt?: string } = {}) {
  const request = await as('carol').access.request({ ...base, ...extra });
  const { grant } = await as('bob').access.approve(request.id);
  return grant!;
}

const connectRecords = async () => fleet.store.audit.list(T, { action: 'access.connect' });

/** The base64 body of a public key line: what must never reach the audit log. */
const keyBody = (line: string) => line.split(' ')[1]!;

describe('ephemeral-key requests', () => {
  it('request — needs a login, takes no public key (it is given at each connect) and no actions', async () => {
    const carol = as('carol');
    const noLogin = await carol.access.request({ ...base, login: undefined }).catch((e: unknown) => e);
    expect(noLogin).toBeInstanceOf(ValidationError);
    expect((noLogin as ValidationError).paths).toEqual(['login']);
    const withKey = await carol.access
      .request({ ...base, publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect((withKey as ValidationError).paths).toEqual(['publicKey']);
    const withActions = await carol.access
      .request({ ...base, actions: ['patch.scan'] })
      .catch((e: unknown) => e);
    expect((withActions as ValidationError).paths).toEqual(['actions']);
    expect(await fleet.store.accessRequests.listAll(T)).toEqual([]);
  });

  it('request — refused with CapabilityMissingError naming every server whose adapter cannot offer keys; audited, nothing stored, no server asked', async () => {
    const refused = await as('carol')
      .access.request({ ...base, servers: { serverIds: ['web-1', 'legacy-1', 'legacy-2'] } })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CapabilityMissingError);
    expect((refused as Error).message).toContain('2 of 3 server(s)');
    expect((refused as Error).message).toContain('legacy-1 (adapter plain)');
    expect((refused as Error).message).toContain('legacy-2 (adapter plain)');
    expect((refused as Error).message).not.toContain('web-1');
    expect((refused as CapabilityMissingError).details.servers).toEqual([
      { serverId: 'legacy-1', adapter: 'plain' },
      { serverId: 'legacy-2', adapter: 'plain' },
    ]);
    expect(await fleet.store.accessRequests.listAll(T)).toEqual([]);
    expect(commands).toEqual([]);
    const [record] = await fleet.store.audit.list(T, { action: 'access.request' });
    expect(record).toMatchObject({
      actor: { principalId: 'carol' },
      decision: 'allow',
      result: 'failure',
      ticket: 'INC-4711',
      details: { code: 'CAPABILITY_MISSING', refused: 2, checked: 3 },
    });
  });

  it('request — the login is still checked on every server, as argv, before the request is stored', async () => {
    await as('carol').access.request(base);
    expect(commands).toEqual([
      ['getent', 'passwd', '--', 'deploy'],
      ['getent', 'passwd', '--', 'deploy'],
    ]);
  });
});

describe('ephemeral-key grants', () => {
  it('approve — in effect at once with nothing installed: targets read installed without a server being touched', async () => {
    const request = await as('carol').access.request(base);
    commands = [];
    const { grant, request: approved } = await as('bob').access.approve(request.id);
    expect(approved.status).toBe('approved');
    expect(grant).toMatchObject({
      mode: 'ephemeral-key',
      login: 'deploy',
      status: 'active',
      installation: 'installed',
      targets: [
        { serverId: 'web-1', state: 'installed', installedAt: '2026-05-01T09:00:00.000Z' },
        { serverId: 'web-2', state: 'installed', installedAt: '2026-05-01T09:00:00.000Z' },
      ],
    });
    expect(grant?.fingerprint).toBeUndefined();
    expect(commands).toEqual([]);
    expect(writes).toEqual([]);
    expect(offers).toEqual([]);
  });

  it('connect — offers the caller’s key for the grant’s login through the adapter, says where to log in, and audits it with the fingerprint only', async () => {
    const grant = await approvedGrant();
    commands = [];
    clock.advance(5 * 60_000);
    const connection = await as('carol').access.connect({
      grantId: grant.id,
      serverId: 'web-2',
      publicKey: carolKey.publicKey,
    });
    expect(connection).toEqual({
      serverId: 'web-2',
      address: '10.0.0.2',
      login: 'deploy',
      expiresAt: '2026-05-01T09:06:00.000Z',
      fingerprint: expect.stringMatching(/^SHA256:/),
    });
    expect(offers).toEqual([{ serverId: 'web-2', login: 'deploy', publicKey: carolKey.publicKey }]);
    expect(writes).toEqual([]);
    expect(commands).toEqual([]);
    const records = await connectRecords();
    expect(records).toEqual([
      expect.objectContaining({
        actor: expect.objectContaining({ principalId: 'carol' }),
        target: { type: 'access-grant', id: grant.id },
        decision: 'allow',
        result: 'success',
        ticket: 'INC-4711',
        details: {
          requestId: grant.requestId,
          serverId: 'web-2',
          login: 'deploy',
          fingerprint: connection.fingerprint,
          expiresAt: '2026-05-01T09:06:00.000Z',
        },
      }),
    ]);
    expect(JSON.stringify(records)).not.toContain(keyBody(carolKey.publicKey));
    // Every login is a connect of its own, each audited.
    await as('carol').access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey });
    expect(offers.map((o) => o.serverId)).toEqual(['web-2', 'web-1']);
    expect(await connectRecords()).toHaveLength(2);
  });

  it('connect — refuses anyone but the grantee with AuthorizationError, audited as a deny, and offers nothing', async () => {
    const grant = await approvedGrant();
    const attempt = { grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey };
    for (const who of ['dave', 'bob', 'alice']) {
      const refused = await as(who)
        .access.connect(attempt)
        .catch((e: unknown) => e);
      expect(refused, who).toBeInstanceOf(AuthorizationError);
    }
    expect(offers).toEqual([]);
    const denials = await fleet.store.audit.list(T, { action: 'access.request' });
    expect(
      denials.filter((r) => r.decision === 'deny').map((r) => [r.actor.principalId, r.target, r.reason]),
    ).toEqual(
      ['dave', 'bob', 'alice'].map((who) => [
        who,
        { type: 'access-grant', id: grant.id },
        'only the grantee can connect through a grant',
      ]),
    );
    // The grantee who lost access.request is refused too.
    for (const binding of await fleet.store.roleBindings.listAll(T, { where: { principalId: 'carol' } }))
      await fleet.store.roleBindings.delete(T, binding.id);
    await expect(as('carol').access.connect(attempt)).rejects.toBeInstanceOf(AuthorizationError);
    expect(offers).toEqual([]);
  });

  it('connect — before notBefore the grant is refused with ConflictError (audited); once started it connects', async () => {
    const grant = await approvedGrant({ startAt: '2026-05-01T12:00:00.000Z' });
    expect(grant).toMatchObject({ status: 'scheduled', installation: 'pending' });
    expect(grant.targets.map((t) => t.state)).toEqual(['pending', 'pending']);
    const attempt = { grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey };
    const early = await as('carol')
      .access.connect(attempt)
      .catch((e: unknown) => e);
    expect(early).toBeInstanceOf(ConflictError);
    expect((early as Error).message).toBe(
      `grant ${grant.id} is not active yet: it starts at 2026-05-01T12:00:00.000Z`,
    );
    expect(offers).toEqual([]);
    expect(await connectRecords()).toEqual([
      expect.objectContaining({
        result: 'failure',
        decision: 'allow',
        reason: (early as Error).message,
        details: expect.objectContaining({ code: 'CONFLICT', serverId: 'web-1', login: 'deploy' }),
      }),
    ]);

    // By the Fleet's clock, not the grant's stored status: no sweep needed to start it.
    clock.set('2026-05-01T12:00:00.000Z');
    await as('carol').access.connect(attempt);
    expect(offers).toHaveLength(1);
    const swept = await sweepAccess(fleet, T);
    expect(swept).toMatchObject({ started: [grant.id], installed: 0, failures: [] });
    expect(await fleet.store.accessGrants.require(T, grant.id)).toMatchObject({
      status: 'active',
      installation: 'installed',
    });
    expect(writes).toEqual([]);
  });

  it('connect — after notAfter refused with ConflictError, even before a sweep; the sweep ends the grant, cleaned up with nothing to remove', async () => {
    const grant = await approvedGrant();
    commands = [];
    clock.advance(60 * 60_000);
    const late = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(late).toBeInstanceOf(ConflictError);
    expect((late as Error).message).toBe(`grant ${grant.id} is not active: it ended at ${grant.notAfter}`);
    const swept = await sweepAccess(fleet, T);
    expect(swept).toMatchObject({ expiredGrants: [grant.id], removed: 0, failures: [] });
    const ended = await fleet.store.accessGrants.require(T, grant.id);
    expect(ended).toMatchObject({ status: 'expired', cleanedUp: true, installation: 'installed' });
    expect((await fleet.store.accessRequests.require(T, grant.requestId)).status).toBe('ended');
    const again = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect((again as Error).message).toBe(`grant ${grant.id} is expired`);
    expect(offers).toEqual([]);
    expect(writes).toEqual([]);
    expect(commands).toEqual([]);
  });

  it('connect — a revoked grant is refused with ConflictError; revoking touched no server', async () => {
    const grant = await approvedGrant();
    commands = [];
    const revoked = await as('carol').access.revoke(grant.id, { reason: 'done early' });
    expect(revoked).toMatchObject({ status: 'revoked', cleanedUp: true });
    const refused = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConflictError);
    expect((refused as Error).message).toBe(`grant ${grant.id} is revoked`);
    expect(await connectRecords()).toEqual([
      expect.objectContaining({ result: 'failure', details: expect.objectContaining({ code: 'CONFLICT' }) }),
    ]);
    expect(offers).toEqual([]);
    expect(writes).toEqual([]);
    expect(commands).toEqual([]);
  });

  it('connect — a server not among the grant’s is a ValidationError at serverId; an unknown grant a NotFoundError', async () => {
    const grant = await approvedGrant({ servers: { serverIds: ['web-1'] } });
    const other = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-2', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(other).toBeInstanceOf(ValidationError);
    expect((other as ValidationError).paths).toEqual(['serverId']);
    expect(await connectRecords()).toEqual([
      expect.objectContaining({
        result: 'failure',
        details: expect.objectContaining({ code: 'VALIDATION_FAILED', serverId: 'web-2' }),
      }),
    ]);
    const unknown = await as('carol')
      .access.connect({ grantId: 'no-such-grant', serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect(offers).toEqual([]);
  });

  it('connect — a malformed or hostile public key is a ValidationError at publicKey, audited without the material', async () => {
    const grant = await approvedGrant();
    const hostile = [
      '',
      'not a key',
      `${carolKey.publicKey}\ncommand="/bin/sh" ${carolKey.publicKey}`,
      `command="/bin/sh" ${carolKey.publicKey}`,
      'ssh-ed25519 AAAAbm90IGEga2V5 x',
      'ssh-dss AAAAB3NzaC1kc3MAAACBAP x',
      carolKey.privateKey,
      `${carolKey.publicKey} \u0000`,
    ];
    for (const publicKey of hostile) {
      const refused = await as('carol')
        .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey })
        .catch((e: unknown) => e);
      expect(refused, JSON.stringify(publicKey)).toBeInstanceOf(ValidationError);
      expect((refused as ValidationError).paths, JSON.stringify(publicKey)).toEqual(['publicKey']);
    }
    expect(offers).toEqual([]);
    const records = await connectRecords();
    expect(records).toHaveLength(hostile.length);
    expect(records.every((r) => r.result === 'failure' && r.details?.code === 'VALIDATION_FAILED')).toBe(
      true,
    );
    const shown = JSON.stringify(records);
    expect(shown).not.toContain('PRIVATE KEY');
    expect(shown).not.toContain(keyBody(carolKey.publicKey));
  });

  it('connect — a grant of another mode is refused at grantId; an adapter failure is audited with its code and thrown typed', async () => {
    const actions = await as('carol').access.request({
      servers: { serverIds: ['web-1'] },
      mode: 'actions',
      actions: ['patch.scan'],
      durationMinutes: 30,
      reason: 'scan the web tier after the fix',
      ticket: 'INC-4712',
    });
    const { grant: actionsGrant } = await as('bob').access.approve(actions.id);
    const wrongMode = await as('carol')
      .access.connect({ grantId: actionsGrant!.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(wrongMode).toBeInstanceOf(ValidationError);
    expect((wrongMode as ValidationError).paths).toEqual(['grantId']);

    const grant = await approvedGrant();
    offerFailure = new TransportError('EC2 Instance Connect: instance is stopped', { retryable: false });
    const failed = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(TransportError);
    const last = (await connectRecords()).at(-1);
    expect(last).toMatchObject({
      result: 'failure',
      reason: 'EC2 Instance Connect: instance is stopped',
      details: {
        code: 'TRANSPORT_FAILED',
        serverId: 'web-1',
        fingerprint: expect.stringMatching(/^SHA256:/),
      },
    });
    expect(last?.details).not.toHaveProperty('expiresAt');
  });

  it('connect — a server whose adapter lost the capability since the request is refused with CapabilityMissingError', async () => {
    const grant = await approvedGrant({ servers: { serverIds: ['web-1'] } });
    const server = await fleet.store.servers.require(T, 'web-1');
    await as('alice').servers.update('web-1', { adapter: 'plain' }, { expectedVersion: server.version });
    const refused = await as('carol')
      .access.connect({ grantId: grant.id, serverId: 'web-1', publicKey: carolKey.publicKey })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CapabilityMissingError);
    expect(offers).toEqual([]);
  });
});
