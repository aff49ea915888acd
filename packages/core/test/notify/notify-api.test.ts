import {
  AuthorizationError,
  CapabilityMissingError,
  createDispatcher,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  generateWebhookSecret,
  MemorySecretStore,
  subscribeWebhooks,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { enqueue, enqueueEvent } from '../../src/kernel/outbox.js';
import { Receiver } from './receiver.js';

const A = 'tenant-a';
const B = 'tenant-b';

let clock: ManualClock;
let secrets: MemorySecretStore;
let fleet: Fleet;
let receiver: Receiver;
let trusted: string[];

beforeEach(async () => {
  clock = new ManualClock('2026-05-01T00:00:00.000Z');
  secrets = new MemorySecretStore();
  fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [createLocalAdapter()],
    secrets,
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
  trusted = [];
  receiver = await Receiver.start({ secrets: () => trusted, now: () => clock.now() });
});
afterEach(async () => {
  await receiver.close();
  await fleet.close();
});

const alice = () => fleet.as({ tenantId: A, principalId: 'alice' });

/** A principal of tenant A allowed only `patch.read`. */
async function addReader() {
  await fleet.store.roles.create({
    tenantId: A,
    id: 'reader',
    name: 'Reader',
    rules: [{ effect: 'allow', actions: ['patch.read'] }],
  });
  await alice().iam.addPrincipal({ id: 'rita', name: 'Rita', kind: 'human', affiliation: 'employee' });
  await alice().iam.bindRole('rita', 'reader');
  return fleet.as({ tenantId: A, principalId: 'rita' });
}

describe('notify API', () => {
  it('webhooks.add — keeps the new secret in the SecretStore, returns it once, and audits without it', async () => {
    const { endpoint, secret } = await alice().notify.webhooks.add({
      url: receiver.url,
      events: ['scan.completed'],
      description: 'ops channel',
    });
    expect(secret).toMatch(/^whsec_/);
    expect(endpoint).toMatchObject({ url: receiver.url, events: ['scan.completed'], disabled: false });
    expect(endpoint.secretRef).toBe(`${A}/webhooks/${endpoint.id}`);
    expect(JSON.stringify(endpoint)).not.toContain(secret);
    expect(await secrets.get(endpoint.secretRef)).toContain(secret);
    const log = await fleet.store.audit.list(A);
    const add = log.find((r) => r.action === 'patch.policy' && r.target?.type === 'webhook-endpoint');
    expect(add).toMatchObject({ decision: 'allow', result: 'success', details: { endpointId: endpoint.id } });
    expect(JSON.stringify(log)).not.toContain(secret.slice(6));
    expect(await alice().notify.webhooks.list()).toEqual([endpoint]);
    expect(await fleet.as({ tenantId: B, principalId: 'bob' }).notify.webhooks.list()).toEqual([]);
  });

  it('webhooks.add — fails clearly when the Fleet has no SecretStore', async () => {
    const bare = createFleet({
      store: createMemoryStore({ clock }),
      adapters: [createLocalAdapter()],
      clock,
    });
    await bare.bootstrapTenant({
      tenant: { id: A, name: 'A' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const call = bare
      .as({ tenantId: A, principalId: 'alice' })
      .notify.webhooks.add({ url: receiver.url, events: ['*'] });
    await expect(call).rejects.toThrow(CapabilityMissingError);
    await expect(call).rejects.toThrow(/SecretStore/);
    expect(await bare.store.webhookEndpoints.listAll(A)).toEqual([]);
    await bare.close();
  });

  it('webhooks.add — is denied without patch.policy (audited), while patch.read may list', async () => {
    const rita = await addReader();
    await expect(rita.notify.webhooks.add({ url: receiver.url, events: ['*'] })).rejects.toThrow(
      AuthorizationError,
    );
    expect(await secrets.list()).toEqual([]);
    expect(await rita.notify.webhooks.list()).toEqual([]);
    const denied = (await fleet.store.audit.list(A)).filter((r) => r.decision === 'deny');
    expect(denied).toMatchObject([{ action: 'patch.policy', actor: { principalId: 'rita' } }]);
  });

  it('webhooks.add — refuses a bad URL or event pattern, naming the field', async () => {
    await expect(alice().notify.webhooks.add({ url: 'ftp://example.com/x', events: ['*'] })).rejects.toThrow(
      /url/,
    );
    await expect(
      alice().notify.webhooks.add({ url: 'https://user:pw@example.com/x', events: ['*'] }),
    ).rejects.toThrow(/url: must not contain a user name or password/);
    await expect(
      alice().notify.webhooks.add({ url: receiver.url, events: ['Scan.Completed'] }),
    ).rejects.toThrow(/events/);
  });

  it('webhooks.rotateSecret — signs with both secrets during the grace period, then with the new one only', async () => {
    const { endpoint, secret: oldSecret } = await alice().notify.webhooks.add({
      url: receiver.url,
      events: ['*'],
    });
    const { secret: newSecret } = await alice().notify.webhooks.rotateSecret(endpoint.id, {
      previousValidForMs: 3_600_000,
    });
    expect(newSecret).not.toBe(oldSecret);
    const dispatcher = createDispatcher({ store: fleet.store, secrets, clock, maxAttempts: 1 });
    const send = async () => {
      await fleet.store.transaction((tx) =>
        enqueueEvent(tx, { tenantId: A, eventType: 'scan.completed', payload: {}, now: clock.now() }),
      );
      await dispatcher.runOnce();
      return receiver.received.at(-1)!;
    };

    trusted = [oldSecret];
    expect((await send()).verified).toBe(true);
    trusted = [newSecret];
    const both = await send();
    expect(both.verified).toBe(true);
    expect(String(both.headers['webhook-signature']).split(' ')).toHaveLength(2);

    clock.advance(3_600_001);
    trusted = [oldSecret];
    expect((await send()).verified).toBe('no-matching-signature');
    trusted = [newSecret];
    const after = await send();
    expect(after.verified).toBe(true);
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1);
  });

  it('webhooks.remove — deletes the endpoint and its secret; webhooks.enable re-enables a disabled one', async () => {
    const { endpoint } = await alice().notify.webhooks.add({ url: receiver.url, events: ['*'] });
    const second = (await alice().notify.webhooks.add({ url: receiver.url, events: ['*'] })).endpoint;
    await fleet.store.webhookEndpoints.update(
      A,
      second.id,
      { disabled: true, disabledReason: 'the endpoint answered 410 Gone' },
      { expectedVersion: second.version },
    );
    const enabled = await alice().notify.webhooks.enable(second.id);
    expect(enabled.disabled).toBe(false);
    expect(enabled.disabledReason).toBeUndefined();

    expect(await alice().notify.webhooks.remove(endpoint.id)).toBe(true);
    expect(await alice().notify.webhooks.remove(endpoint.id)).toBe(false);
    expect(await secrets.get(endpoint.secretRef)).toBeUndefined();
    expect((await alice().notify.webhooks.list()).map((e) => e.id)).toEqual([second.id]);
  });

  it('outbox.replay — queues a parked message again through the session, audited; listParked needs patch.read', async () => {
    const { endpoint, secret } = await alice().notify.webhooks.add({ url: receiver.url, events: ['*'] });
    trusted = [generateWebhookSecret()];
    const dispatcher = createDispatcher({ store: fleet.store, secrets, clock, maxAttempts: 1 });
    await fleet.store.transaction((tx) =>
      enqueueEvent(tx, {
        tenantId: A,
        eventType: 'patch.escalation',
        payload: { planId: 'p' },
        now: clock.now(),
      }),
    );
    expect(await dispatcher.runOnce()).toMatchObject({ parked: 1 });
    const [parked] = await alice().notify.outbox.listParked();
    expect(parked).toMatchObject({ destinationId: endpoint.id, lastError: 'HTTP 401 Unauthorized' });

    const rita = await addReader();
    expect(await rita.notify.outbox.listParked()).toHaveLength(1);
    await expect(rita.notify.outbox.replay(parked!.id)).rejects.toThrow(AuthorizationError);

    trusted = [secret];
    expect(await alice().notify.outbox.replay(parked!.id)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(await dispatcher.runOnce()).toMatchObject({ delivered: 1 });
    expect(await alice().notify.outbox.listParked()).toEqual([]);
    expect(receiver.countsById().get(parked!.deliveryId)).toBe(2);
    const replays = (await fleet.store.audit.list(A)).filter((r) => r.target?.type === 'outbox-message');
    expect(replays).toMatchObject([
      { actor: { principalId: 'rita' }, result: 'denied' },
      { actor: { principalId: 'alice' }, result: 'success', details: { deliveryId: parked!.deliveryId } },
    ]);
  });
});

describe('outbox', () => {
  it('enqueue — commits and rolls back with the caller’s transaction', async () => {
    const input = {
      tenantId: A,
      channel: 'webhook' as const,
      destinationId: 'ep-1',
      eventType: 'scan.completed',
      payload: { jobId: 'j' },
      nextAttemptAt: clock.now(),
    };
    await expect(
      fleet.store.transaction(async (tx) => {
        await enqueue(tx, input);
        throw new Error('the state change failed');
      }),
    ).rejects.toThrow(/state change failed/);
    expect(await fleet.store.outbox.listAll(A)).toEqual([]);

    const [a, b] = await fleet.store.transaction(async (tx) => [
      await enqueue(tx, input),
      await enqueue(tx, input),
    ]);
    expect(a!.deliveryId).toMatch(/^msg_[A-Za-z0-9_-]{22}$/);
    expect(a!.deliveryId).not.toBe(b!.deliveryId);
    expect(a).toMatchObject({ status: 'pending', attempts: 0, nextAttemptAt: clock.now().toISOString() });
  });

  it('subscribeWebhooks — enqueues escalations and denials for the enabled endpoints of its tenant that want them', async () => {
    const add = (events: string[], tenant = alice()) =>
      tenant.notify.webhooks.add({ url: receiver.url, events });
    const scans = (await add(['scan.completed'])).endpoint;
    const patch = (await add(['patch.*'])).endpoint;
    const all = (await add(['*'])).endpoint;
    const denials = (await add(['authz.denied'])).endpoint;
    const off = (await add(['*'])).endpoint;
    await fleet.store.webhookEndpoints.update(
      A,
      off.id,
      { disabled: true },
      { expectedVersion: off.version },
    );
    const other = (await add(['*'], fleet.as({ tenantId: B, principalId: 'bob' }))).endpoint;

    const unsubscribe = subscribeWebhooks(fleet);
    fleet.events.emit('scan.completed', {
      tenantId: A,
      jobId: 'j1',
      status: 'succeeded',
      total: 1,
      succeeded: 1,
      failed: 0,
    });
    fleet.events.emit('scan.server.completed', {
      tenantId: A,
      jobId: 'j1',
      serverId: 's',
      result: {} as never,
    });
    fleet.events.emit('patch.run.completed', { tenantId: A, planId: 'p1', jobId: 'j2', status: 'succeeded' });
    fleet.events.emit('patch.escalation', {
      tenantId: A,
      planId: 'p1',
      planHash: 'h',
      jobId: 'j2',
      kind: 'server-failed',
      reason: 'apt failed',
      outputExcerpt:
        'password=hunter2\n-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----',
    });
    await expect(fleet.as({ tenantId: A, principalId: 'nobody' }).notify.webhooks.list()).rejects.toThrow(
      AuthorizationError,
    );

    // scan.completed and patch.run.completed are written by the workflows in their own transactions
    // (see workflow-events.test.ts), so emitting them here enqueues nothing.
    const expected = { [patch.id]: 1, [all.id]: 2, [denials.id]: 1 };
    expect(scans.id).toBeDefined();
    await vi.waitFor(async () => expect((await fleet.store.outbox.listAll(A)).length).toBe(4));
    unsubscribe();
    fleet.events.emit('scan.completed', {
      tenantId: A,
      jobId: 'j3',
      status: 'failed',
      total: 1,
      succeeded: 0,
      failed: 1,
    });

    const messages = await fleet.store.outbox.listAll(A);
    const perEndpoint: Record<string, number> = {};
    for (const m of messages) perEndpoint[m.destinationId] = (perEndpoint[m.destinationId] ?? 0) + 1;
    expect(perEndpoint).toEqual(expected);
    expect(await fleet.store.outbox.listAll(B)).toEqual([]);
    expect(other.disabled).toBe(false);

    const types = new Set(messages.map((m) => m.eventType));
    expect(types).toEqual(new Set(['patch.escalation', 'authz.denied']));
    const escalation = messages.find((m) => m.eventType === 'patch.escalation')!;
    expect(JSON.stringify(escalation.payload)).not.toMatch(/BEGIN OPENSSH PRIVATE KEY/);
    const denied = messages.find((m) => m.eventType === 'authz.denied')!;
    expect(denied.payload).toMatchObject({ tenantId: A, action: 'patch.read', principalId: 'nobody' });
  });
});
