import { AuthorizationError, ConflictError } from '@fleetward/core';
import { createCallContext } from '@fleetward/core/kernel';
import { beforeEach, describe, expect, it } from 'vitest';
import { createAccessApi, sweepAccess } from '../../src/access/api.js';
import { createKeysApi } from '../../src/access/keys.js';
import { addUnboundPrincipal, KERNEL_ADMIN, type KernelFixture, kernelFixture } from '../kernel-support.js';

// Access requests and managed keys on a kernel context alone: a Runtime over a memory store, no
// Fleet. A webhook endpoint subscribed to `access.*` shows what the outbox received (nothing
// delivers it: no dispatcher runs).

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl carol@laptop';

let fx: KernelFixture;
const as = (principalId: string) => () =>
  createCallContext(fx.runtime, { tenantId: fx.tenantId, principalId });

const REQUEST = {
  servers: { serverIds: ['s1'] },
  mode: 'actions' as const,
  actions: ['inventory.read'],
  durationMinutes: 30,
  reason: 'look at the inventory of s1 for the incident',
  ticket: 'INC-1234',
};

/** The outbox's messages as `eventType:requestId`, sorted (the store lists them by id). */
const outbox = async () =>
  (await fx.store.outbox.listAll(fx.tenantId)).map((m) => `${m.eventType}:${m.payload['requestId']}`).sort();
const auditOf = async (action: string) =>
  (await fx.store.audit.list(fx.tenantId)).filter((r) => r.action === action);

beforeEach(async () => {
  fx = await kernelFixture();
  await fx.store.principals.create({
    tenantId: fx.tenantId,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fx.store.roleBindings.create({ tenantId: fx.tenantId, principalId: 'bob', roleId: 'everything' });
  await fx.store.servers.create({
    tenantId: fx.tenantId,
    id: 's1',
    name: 's1',
    accountId: 'local',
    provider: 'local',
  });
  await fx.store.webhookEndpoints.create({
    tenantId: fx.tenantId,
    id: 'hook',
    url: 'https://hooks.example.test/fleetward',
    secretRef: 'webhooks/hook',
    events: ['access.*'],
  });
});

describe('access requests on a kernel context', () => {
  it('request — recorded as pending, audited, and its event in the outbox', async () => {
    const request = await createAccessApi(as(KERNEL_ADMIN)).request(REQUEST);
    expect(request).toMatchObject({
      status: 'pending',
      requesterId: KERNEL_ADMIN,
      serverIds: ['s1'],
      requiredApprovals: 1,
      expiresAt: '2026-05-02T00:00:00.000Z',
    });
    expect(await fx.store.accessRequests.require(fx.tenantId, request.id)).toMatchObject({
      status: 'pending',
    });
    expect(await auditOf('access.request')).toMatchObject([
      { result: 'success', target: { id: request.id } },
    ]);
    expect(await outbox()).toEqual([`access.requested:${request.id}`]);
  });

  it('approve — the requester is refused (audited); another approver grants, with audit record and event', async () => {
    const request = await createAccessApi(as(KERNEL_ADMIN)).request(REQUEST);
    await expect(createAccessApi(as(KERNEL_ADMIN)).approve(request.id)).rejects.toThrow(AuthorizationError);
    expect(await auditOf('access.approve')).toMatchObject([
      { decision: 'deny', result: 'denied', ticket: 'INC-1234' },
    ]);

    const { request: approved, grant } = await createAccessApi(as('bob')).approve(request.id, {
      comment: 'fine',
    });
    expect(approved.status).toBe('approved');
    expect(grant).toMatchObject({ status: 'active', principalId: KERNEL_ADMIN, approverIds: ['bob'] });
    // Mode `actions` grants through an expiring role binding.
    expect(await fx.store.roleBindings.get(fx.tenantId, grant!.bindingId!)).toMatchObject({
      principalId: KERNEL_ADMIN,
      expiresAt: grant!.notAfter,
    });
    const [, allowed] = await auditOf('access.approve');
    expect(allowed).toMatchObject({
      result: 'success',
      reason: 'fine',
      actor: { principalId: 'bob' },
      details: { grantId: grant!.id, approvals: 1, required: 1 },
    });
    expect(await outbox()).toEqual([`access.approved:${request.id}`, `access.requested:${request.id}`]);
  });

  it('sweepAccess — a request past its deadline expires, audited as the system, announced in the outbox', async () => {
    const request = await createAccessApi(as(KERNEL_ADMIN)).request(REQUEST);
    fx.clock.advance(24 * 60 * 60_000);
    const swept = await sweepAccess(fx.runtime, fx.tenantId);
    expect(swept.expiredRequests).toEqual([request.id]);
    expect(await fx.store.accessRequests.require(fx.tenantId, request.id)).toMatchObject({
      status: 'expired',
    });
    expect(await auditOf('access.expire')).toMatchObject([
      {
        actor: { principalId: 'system', kind: 'system' },
        target: { type: 'access-request', id: request.id },
        reason: 'not decided before it expired',
      },
    ]);
    expect(await outbox()).toEqual([`access.expired:${request.id}`, `access.requested:${request.id}`]);
    await expect(createAccessApi(as('bob')).approve(request.id)).rejects.toThrow(ConflictError);
  });
});

describe('managed keys on a kernel context', () => {
  it('register — a key is managed once per tenant; the second registration names the first', async () => {
    const keys = createKeysApi(as(KERNEL_ADMIN));
    const credential = await keys.register({
      id: 'deploy',
      login: 'deploy',
      publicKey: KEY,
      caretakerId: 'bob',
      serverIds: ['s1'],
    });
    expect(credential).toMatchObject({ caretakerId: 'bob', serverIds: ['s1'], kind: 'ssh-key' });
    await expect(
      keys.register({ login: 'other', publicKey: KEY, caretakerId: KERNEL_ADMIN, serverIds: ['s1'] }),
    ).rejects.toThrow(`is already managed as credential deploy (caretaker bob)`);
    expect(await auditOf('keys.rotate')).toMatchObject([
      { result: 'success', target: { type: 'credential', id: 'deploy' } },
    ]);
  });

  it('list — a principal without keys.read is denied and the denial audited', async () => {
    await addUnboundPrincipal(fx, 'mallory');
    await expect(createKeysApi(as('mallory')).list()).rejects.toThrow(AuthorizationError);
    expect(await auditOf('keys.read')).toMatchObject([
      { decision: 'deny', result: 'denied', actor: { principalId: 'mallory' } },
    ]);
  });
});
