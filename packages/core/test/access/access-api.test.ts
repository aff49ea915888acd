import {
  type Adapter,
  AuthorizationError,
  ConflictError,
  certificateAuthorityPublicKey,
  createFleet,
  createMemoryStore,
  type Fleet,
  MemorySecretStore,
  parseCertificate,
  TransportError,
  ticketPattern,
  ValidationError,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sweepAccess } from '../../src/access/api.js';

// The request/approval state machine, without touching a server: mode `actions` grants through
// an expiring role binding, and an unreachable adapter shows what ssh-key grants do on failure.
// The server side of ssh-key grants is proven on the lab (e2e/access-lab.test.ts).

const T = 'acme';
const OTHER = 'globex';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl carol@laptop';

const unreachable: Adapter = {
  name: 'ssh',
  exec: {
    async exec(server) {
      throw new TransportError(`connect ECONNREFUSED ${server.address ?? server.name}:22`);
    },
  },
};

let fleet: Fleet;
let clock: ManualClock;
const as = (principalId: string, extra: { mfaVerifiedAt?: string } = {}) =>
  fleet.as({ tenantId: T, principalId, ...extra });

beforeEach(async () => {
  clock = new ManualClock('2026-05-01T09:00:00.000Z');
  fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [unreachable],
    clock,
    access: {
      // These tests are about the request workflow; the server check is tested in request-checks.test.ts.
      checkServers: false,
      requiredApprovals: 2,
      pendingTtlMinutes: 60,
      maxDurationMinutes: 240,
      validateTicket: ticketPattern(/^INC-\d{4}$/, 'INC-1234'),
    },
  });
  for (const [tenantId, admin] of [
    [T, 'alice'],
    [OTHER, 'zed'],
  ] as const) {
    await fleet.bootstrapTenant({
      tenant: { id: tenantId, name: tenantId },
      admin: { id: admin, name: admin, kind: 'human', affiliation: 'employee' },
    });
  }
  const store = fleet.store;
  for (const id of ['bob', 'dave']) {
    await store.principals.create({ tenantId: T, id, name: id, kind: 'human', affiliation: 'employee' });
  }
  await store.principals.create({
    tenantId: T,
    id: 'carol',
    name: 'Carol',
    kind: 'human',
    affiliation: 'contractor',
  });
  await store.roles.create({
    tenantId: T,
    id: 'requester',
    name: 'requester',
    rules: [{ effect: 'allow', actions: ['access.request'], servers: { labels: { env: 'staging' } } }],
  });
  await store.roles.create({
    tenantId: T,
    id: 'approver',
    name: 'approver',
    rules: [{ effect: 'allow', actions: ['access.approve', 'audit.read'], mfaWithinMinutes: 10 }],
  });
  for (const id of ['bob', 'dave'])
    await store.roleBindings.create({ tenantId: T, principalId: id, roleId: 'approver' });
  await store.roleBindings.create({ tenantId: T, principalId: 'carol', roleId: 'requester' });
  const alice = as('alice');
  for (const [id, env] of [
    ['web-1', 'staging'],
    ['web-2', 'staging'],
    ['db-1', 'prod'],
  ] as const) {
    await alice.servers.add({
      id,
      name: id,
      accountId: 'dc',
      provider: 'ssh',
      address: '10.250.0.9',
      labels: { env },
    });
  }
});
afterEach(() => fleet.close());

const mfa = () => ({ mfaVerifiedAt: clock.now().toISOString() });
const base = {
  servers: { selector: { labels: { env: 'staging' } } },
  mode: 'actions' as const,
  actions: ['patch.scan', 'script.run'],
  scripts: ['restart-web'],
  durationMinutes: 30,
  reason: 'restart the web tier after INC-4711',
  ticket: 'INC-4711',
};

describe('access.request', () => {
  it('request — reason and a valid ticket are required; the ticket check is pluggable', async () => {
    const carol = as('carol');
    const noReason = await carol.access.request({ ...base, reason: 'because' }).catch((e: unknown) => e);
    expect(noReason).toBeInstanceOf(ValidationError);
    expect((noReason as ValidationError).issues[0]!.path).toEqual(['reason']);
    const badTicket = await carol.access.request({ ...base, ticket: 'see slack' }).catch((e: unknown) => e);
    expect(badTicket).toBeInstanceOf(ValidationError);
    expect((badTicket as ValidationError).issues).toEqual([
      expect.objectContaining({ path: ['ticket'], message: 'must match /^INC-\\d{4}$/ (like INC-1234)' }),
    ]);
    const tooLong = await carol.access.request({ ...base, durationMinutes: 600 }).catch((e: unknown) => e);
    expect((tooLong as ValidationError).issues[0]!.path).toEqual(['durationMinutes']);
    // Grants must never widen themselves.
    const escalation = await carol.access
      .request({ ...base, actions: ['iam.write'] })
      .catch((e: unknown) => e);
    expect((escalation as ValidationError).issues[0]!.message).toBe(
      'iam.write cannot be granted just in time',
    );
    const hostileKey = await carol.access
      .request({
        ...base,
        mode: 'ssh-key',
        actions: undefined,
        scripts: undefined,
        login: 'root; rm -rf /',
        publicKey: KEY,
      })
      .catch((e: unknown) => e);
    expect((hostileKey as ValidationError).issues[0]!.path).toEqual(['login']);
    // A second line smuggled into the key (an authorized_keys line of the attacker's choosing).
    const smuggled = await carol.access
      .request({
        ...base,
        mode: 'ssh-key',
        actions: undefined,
        scripts: undefined,
        login: 'deploy',
        publicKey: `${KEY}\ncommand="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x`,
      })
      .catch((e: unknown) => e);
    expect((smuggled as ValidationError).issues[0]!.path).toEqual(['publicKey']);
    const notAKey = await carol.access
      .request({
        ...base,
        mode: 'ssh-key',
        actions: undefined,
        scripts: undefined,
        login: 'deploy',
        publicKey: 'ssh-ed25519 AAAAbm90IGEga2V5 x',
      })
      .catch((e: unknown) => e);
    expect(notAKey).toBeInstanceOf(ValidationError);
    expect(await fleet.store.accessRequests.listAll(T)).toEqual([]);
  });

  it('request — needs access.request on every chosen server; the denial names the rule that did not cover it', async () => {
    const denied = await as('carol')
      .access.request({ ...base, servers: { serverIds: ['web-1', 'db-1'] } })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(AuthorizationError);
    expect((denied as Error).message).toContain(
      'role requester rule 0 allows it only on servers matching env=staging',
    );
  });

  it('request — fixes the servers at request time, pending, expiring after the pending TTL', async () => {
    const request = await as('carol').access.request(base);
    expect(request).toMatchObject({
      status: 'pending',
      serverIds: ['web-1', 'web-2'],
      requiredApprovals: 2,
      requestedAt: '2026-05-01T09:00:00.000Z',
      expiresAt: '2026-05-01T10:00:00.000Z',
    });
    const outbox = await fleet.store.outbox.listAll(T);
    expect(outbox).toEqual([]);
  });
});

describe('access.approve', () => {
  it('approve — by others only, n-of-m distinct approvers, each with recent MFA; the window starts at approval', async () => {
    const request = await as('carol').access.request(base);
    await expect(as('carol', mfa()).access.approve(request.id)).rejects.toBeInstanceOf(AuthorizationError);
    const noMfa = await as('bob')
      .access.approve(request.id)
      .catch((e: unknown) => e);
    expect(noMfa).toBeInstanceOf(AuthorizationError);
    expect((noMfa as Error).message).toContain('would allow it with MFA verified within 10 minutes');

    clock.advance(20 * 60_000);
    const first = await as('bob', mfa()).access.approve(request.id, { comment: 'fine' });
    expect(first.request.status).toBe('pending');
    expect(first.grant).toBeUndefined();
    await expect(as('bob', mfa()).access.approve(request.id)).rejects.toBeInstanceOf(ConflictError);

    clock.advance(5 * 60_000);
    const second = await as('dave', mfa()).access.approve(request.id);
    expect(second.request.status).toBe('approved');
    // Requested at 09:00, approved at 09:25: 30 minutes from approval, not from the request.
    expect(second.grant).toMatchObject({
      status: 'active',
      notBefore: '2026-05-01T09:25:00.000Z',
      notAfter: '2026-05-01T09:55:00.000Z',
      approverIds: ['bob', 'dave'],
      mode: 'actions',
    });
  });

  it('approve — an actions grant allows exactly its actions and scripts on its servers, no shell, until it ends', async () => {
    const carol = as('carol');
    await expect(carol.scan({ serverIds: ['web-1'] })).rejects.toBeInstanceOf(AuthorizationError);
    const request = await carol.access.request(base);
    await as('bob', mfa()).access.approve(request.id);
    const { grant } = await as('dave', mfa()).access.approve(request.id);

    const scan = await carol.scan({ serverIds: ['web-1', 'web-2'] });
    expect(scan.job.status).toBe('failed'); // allowed: the servers are merely unreachable
    await expect(carol.scan({ serverIds: ['db-1'] })).rejects.toBeInstanceOf(AuthorizationError);
    await expect(carol.patch.planPatchRun({ policyId: 'none' })).rejects.toThrow();
    const role = await fleet.store.roles.require(T, grant!.roleId!);
    expect(role.rules).toEqual([
      { effect: 'allow', actions: ['patch.scan', 'script.run'], servers: { ids: ['web-1', 'web-2'] } },
      { effect: 'allow', actions: ['script.run'], scripts: ['restart-web'] },
    ]);

    clock.advance(31 * 60_000);
    // The binding expired with the grant: denied at once, before any sweep.
    await expect(carol.scan({ serverIds: ['web-1'] })).rejects.toBeInstanceOf(AuthorizationError);
    const swept = await sweepAccess(fleet, T);
    expect(swept.expiredGrants).toEqual([grant!.id]);
    expect(await fleet.store.roles.get(T, grant!.roleId!)).toBeUndefined();
    expect((await fleet.store.accessRequests.require(T, request.id)).status).toBe('ended');
  });

  it('approve — a request not decided in time expires and stays in the history', async () => {
    const request = await as('carol').access.request(base);
    clock.advance(61 * 60_000);
    await expect(as('bob', mfa()).access.approve(request.id)).rejects.toBeInstanceOf(ConflictError);
    const swept = await sweepAccess(fleet, T);
    expect(swept.expiredRequests).toEqual([request.id]);
    const history = await as('bob', mfa()).access.listRequests();
    expect(history).toEqual([expect.objectContaining({ id: request.id, status: 'expired' })]);
    expect(await as('carol').access.listRequests({ mine: true })).toHaveLength(1);
  });

  it('approve — a scheduled start opens the window at startAt, not at approval', async () => {
    const request = await as('carol').access.request({ ...base, startAt: '2026-05-01T12:00:00.000Z' });
    await as('bob', mfa()).access.approve(request.id);
    const { grant } = await as('dave', mfa()).access.approve(request.id);
    expect(grant).toMatchObject({
      status: 'scheduled',
      notBefore: '2026-05-01T12:00:00.000Z',
      notAfter: '2026-05-01T12:30:00.000Z',
    });
    await expect(as('carol').scan({ serverIds: ['web-1'] })).rejects.toBeInstanceOf(AuthorizationError);
    clock.set('2026-05-01T12:00:30.000Z');
    expect((await sweepAccess(fleet, T)).started).toEqual([grant!.id]);
    expect((await as('carol').scan({ serverIds: ['web-1'] })).job.status).toBe('failed');
  });

  it('revoke — ends a grant early; the requester can end their own', async () => {
    const request = await as('carol').access.request(base);
    await as('bob', mfa()).access.approve(request.id);
    const { grant } = await as('dave', mfa()).access.approve(request.id);
    const revoked = await as('carol').access.revoke(grant!.id, { reason: 'done early' });
    expect(revoked.status).toBe('revoked');
    await expect(as('carol').scan({ serverIds: ['web-1'] })).rejects.toBeInstanceOf(AuthorizationError);
    expect((await fleet.store.accessRequests.require(T, request.id)).status).toBe('revoked');
    await expect(as('carol').access.revoke(grant!.id)).rejects.toBeInstanceOf(ConflictError);
  });

  it('ssh-key — an unreachable server leaves its target failed, recorded, and the rest of the grant stands', async () => {
    const request = await as('carol').access.request({
      servers: { serverIds: ['web-1'] },
      login: 'carol',
      publicKey: KEY,
      durationMinutes: 30,
      reason: 'look at the logs of the web tier',
      ticket: 'INC-4712',
    });
    await as('bob', mfa()).access.approve(request.id);
    const { grant } = await as('dave', mfa()).access.approve(request.id);
    expect(grant!.targets).toEqual([
      expect.objectContaining({
        serverId: 'web-1',
        state: 'failed',
        error: expect.objectContaining({ code: 'TRANSPORT_FAILED' }),
      }),
    ]);
    const failures = await fleet.store.audit.list(T, { action: 'access.grant.install' });
    expect(failures).toEqual([expect.objectContaining({ result: 'failure', ticket: 'INC-4712' })]);
    // A server that was down is tried again by every sweep while the grant lasts, and not after.
    await sweepAccess(fleet, T);
    expect(await fleet.store.audit.list(T, { action: 'access.grant.install' })).toHaveLength(2);
    clock.advance(31 * 60_000);
    await sweepAccess(fleet, T);
    expect(await fleet.store.audit.list(T, { action: 'access.grant.install' })).toHaveLength(2);
  });

  it('ssh-cert — needs a SecretStore; approval signs a certificate for the login, valid from a minute before the window to its end', async () => {
    const certRequest = {
      mode: 'ssh-cert' as const,
      servers: { serverIds: ['web-1'] },
      login: 'deploy',
      publicKey: KEY,
      durationMinutes: 30,
      reason: 'look at the logs of the web tier',
      ticket: 'INC-4713',
    };
    const noSecrets = await as('carol')
      .access.request(certRequest)
      .catch((e: unknown) => e);
    expect(noSecrets).toBeInstanceOf(ValidationError);
    expect((noSecrets as ValidationError).issues[0]!.path).toEqual(['mode']);

    const secrets = new MemorySecretStore();
    const withSecrets = createFleet({
      store: fleet.store,
      adapters: [unreachable],
      clock,
      secrets,
      access: { requiredApprovals: 1, checkServers: false },
    });
    const carol = withSecrets.as({ tenantId: T, principalId: 'carol' });
    const request = await carol.access.request(certRequest);
    expect(await secrets.list()).toEqual([]);
    clock.advance(5 * 60_000);
    const { grant } = await withSecrets
      .as({ tenantId: T, principalId: 'bob', ...mfa() })
      .access.approve(request.id);
    expect(await secrets.list()).toEqual([`tenants/${T}/access/user-ca`]);
    const cert = parseCertificate(grant!.certificate!);
    expect(cert).toMatchObject({
      type: 'user',
      principals: ['deploy'],
      keyId: `fleetward:${T}:${request.id}:INC-4713`,
      validAfter: new Date('2026-05-01T09:04:00.000Z'),
      validBefore: new Date('2026-05-01T09:35:00.000Z'),
      extensions: ['permit-pty'],
      criticalOptions: {},
      fingerprint: request.fingerprint,
      signatureKey: certificateAuthorityPublicKey((await secrets.get(`tenants/${T}/access/user-ca`))!),
      signatureValid: true,
    });
    // The server is down: its target failed, but the certificate is the requester's to fetch.
    expect(grant!.targets).toEqual([expect.objectContaining({ serverId: 'web-1', state: 'failed' })]);
    expect((await carol.access.getGrant(grant!.id)).certificate).toBe(grant!.certificate);
    expect(await fleet.store.audit.list(T, { action: 'access.grant.certify' })).toEqual([
      expect.objectContaining({ result: 'success', ticket: 'INC-4713' }),
    ]);
    // A DSA key cannot be certified: refused at the request, not at approval.
    const dss = await carol.access
      .request({ ...certRequest, publicKey: 'ssh-dss AAAAB3NzaC1kc3MAAAABcAAAAAFxAAAAAWcAAAABeQ== x' })
      .catch((e: unknown) => e);
    expect((dss as ValidationError).issues[0]!.path).toEqual(['publicKey']);
    // withSecrets shares the store that afterEach closes through `fleet`; it has no adapter to close.
  });

  it('tenancy — a request id of another tenant is not found, never decided', async () => {
    const request = await as('carol').access.request(base);
    const zed = fleet.as({ tenantId: OTHER, principalId: 'zed' });
    await expect(zed.access.approve(request.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await fleet.store.accessRequests.require(T, request.id)).approvals).toEqual([]);
  });
});
