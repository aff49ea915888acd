import {
  createDispatcher,
  createMemoryStore,
  type DispatcherOptions,
  generateWebhookSecret,
  MemorySecretStore,
  type OutboxMessage,
  type Store,
  type WebhookEndpoint,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { enqueue, recordEvent } from '../../src/kernel/outbox.js';
import { freePort, Receiver } from './receiver.js';

const T = 'tenant-a';
const REF = 'tenant-a/webhooks/main';

let clock: ManualClock;
let store: Store;
let secrets: MemorySecretStore;
let secret: string;
let receiver: Receiver;
let answer: (index: number) => number;
let endpoint: WebhookEndpoint;

beforeEach(async () => {
  clock = new ManualClock('2026-05-01T00:00:00.000Z');
  store = createMemoryStore({ clock });
  secrets = new MemorySecretStore();
  secret = generateWebhookSecret();
  await secrets.set(REF, secret);
  await store.tenants.create({ tenantId: T, id: T, name: 'A' });
  answer = () => 200;
  receiver = await Receiver.start({
    secrets: () => [secret],
    now: () => clock.now(),
    respond: (_, i) => answer(i),
  });
  endpoint = await store.webhookEndpoints.create({
    tenantId: T,
    url: receiver.url,
    secretRef: REF,
    events: ['scan.*', 'patch.*'],
  });
});
afterEach(async () => {
  await receiver.close();
  await store.close();
});

/** Jitter pinned near its ceiling so that the test knows how far to move the clock. */
const dispatcher = (options: Partial<DispatcherOptions> = {}) =>
  createDispatcher({
    store,
    secrets,
    clock,
    random: () => 0.999,
    backoff: { baseMs: 1000, capMs: 60_000 },
    ...options,
  });

async function only(): Promise<OutboxMessage> {
  const all = await store.outbox.listAll(T);
  expect(all).toHaveLength(1);
  return all[0]!;
}

describe('createDispatcher', () => {
  it('runOnce — retries a failing endpoint with back-off until 2xx: one message, three attempts, one webhook-id', async () => {
    answer = (i) => (i < 2 ? 500 : 200);
    const [message] = await recordEvent(
      store,
      T,
      'scan.completed',
      { tenantId: T, jobId: 'job-1' },
      { clock },
    );
    const d = dispatcher();

    expect(await d.runOnce()).toMatchObject({ attempted: 1, retried: 1 });
    const first = await only();
    expect(first).toMatchObject({
      status: 'pending',
      attempts: 1,
      lastError: 'HTTP 500 Internal Server Error',
    });
    const wait1 = Date.parse(first.nextAttemptAt) - clock.now().getTime();
    expect(wait1).toBeGreaterThan(0);
    expect(wait1).toBeLessThanOrEqual(1000);

    expect(await d.runOnce(), 'not due before its back-off').toMatchObject({ attempted: 0 });
    clock.advance(wait1);
    expect(await d.runOnce()).toMatchObject({ attempted: 1, retried: 1 });
    const second = await only();
    const wait2 = Date.parse(second.nextAttemptAt) - clock.now().getTime();
    expect(wait2).toBeGreaterThan(1000);
    expect(wait2).toBeLessThanOrEqual(2000);

    clock.advance(wait2);
    expect(await d.runOnce()).toMatchObject({ attempted: 1, delivered: 1 });
    const done = await only();
    expect(done).toMatchObject({ status: 'delivered', attempts: 3, deliveredAt: clock.now().toISOString() });
    expect(done.deliveryId).toBe(message!.deliveryId);

    expect(receiver.received).toHaveLength(3);
    expect(receiver.received.map((r) => r.id)).toEqual([done.deliveryId, done.deliveryId, done.deliveryId]);
    expect(receiver.received.every((r) => r.verified === true)).toBe(true);
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    // Only the signature's timestamp moves between attempts (whole seconds, so two may share one).
    const stamps = receiver.received.map((r) => Number(r.headers['webhook-timestamp']));
    expect(stamps.at(-1)).toBe(Math.floor(clock.now().getTime() / 1000));
    expect(stamps.at(-1)).toBeGreaterThan(stamps[0]!);
    expect(receiver.received[0]!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(receiver.received[0]!.body)).toEqual({
      type: 'scan.completed',
      timestamp: done.createdAt,
      data: { tenantId: T, jobId: 'job-1' },
    });
    expect(await d.runOnce()).toMatchObject({ attempted: 0 });
  });

  it('runOnce — a 410 answer disables the endpoint and parks the message; later messages park unsent', async () => {
    answer = () => 410;
    await recordEvent(store, T, 'scan.completed', { n: 1 }, { clock });
    const d = dispatcher();
    expect(await d.runOnce()).toMatchObject({ attempted: 1, parked: 1 });
    const disabled = await store.webhookEndpoints.require(T, endpoint.id);
    expect(disabled.disabled).toBe(true);
    expect(disabled.disabledReason).toMatch(/410 Gone/);
    expect((await only()).lastError).toMatch(/410 Gone.*endpoint disabled/);

    // Endpoints that are disabled get no new messages; one queued before the 410 is parked unsent.
    expect(await recordEvent(store, T, 'scan.completed', { n: 2 }, { clock })).toEqual([]);
    await enqueue(store, {
      tenantId: T,
      channel: 'webhook',
      destinationId: endpoint.id,
      eventType: 'scan.completed',
      payload: { n: 3 },
      nextAttemptAt: clock.now(),
    });
    expect(await d.runOnce()).toMatchObject({ parked: 1 });
    expect(receiver.received).toHaveLength(1);
    expect(await d.listParked(T)).toHaveLength(2);
  });

  it('runOnce — parks after maxAttempts without keeping headers or the secret; replay delivers with the same id', async () => {
    answer = () => 503;
    await recordEvent(store, T, 'patch.run.completed', { planId: 'p1' }, { clock });
    const d = dispatcher({ maxAttempts: 2 });
    await d.runOnce();
    clock.advance(60_000);
    expect(await d.runOnce()).toMatchObject({ parked: 1 });
    const [parked] = await d.listParked(T);
    expect(parked).toMatchObject({
      status: 'parked',
      attempts: 2,
      lastError: 'HTTP 503 Service Unavailable',
    });
    expect(JSON.stringify(parked)).not.toContain(secret.slice(6));
    expect(JSON.stringify(parked)).not.toMatch(/v1,|webhook-signature/);

    clock.advance(3_600_000);
    expect(await d.runOnce(), 'a parked message is never retried by itself').toMatchObject({ attempted: 0 });
    answer = () => 204;
    const replayed = await d.replay(T, parked!.id);
    expect(replayed).toMatchObject({ status: 'pending', attempts: 0 });
    await expect(d.replay(T, parked!.id)).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await d.runOnce()).toMatchObject({ delivered: 1 });
    expect(await only()).toMatchObject({ status: 'delivered', attempts: 1, receipt: { status: 204 } });
    expect(receiver.countsById()).toEqual(new Map([[parked!.deliveryId, 3]]));
  });

  it('runOnce — an endpoint that is down is retried, with the network error and no URL in lastError', async () => {
    const port = await freePort();
    const down = await store.webhookEndpoints.create({
      tenantId: T,
      url: `http://127.0.0.1:${port}/hooks?token=abc123`,
      secretRef: REF,
      events: ['*'],
    });
    await store.webhookEndpoints.delete(T, endpoint.id);
    await recordEvent(store, T, 'authz.denied', { action: 'patch.execute' }, { clock });
    expect(await dispatcher().runOnce()).toMatchObject({ retried: 1 });
    const message = await only();
    expect(message.destinationId).toBe(down.id);
    expect(message.lastError).toMatch(/ECONNREFUSED/);
    expect(message.lastError).not.toMatch(/abc123|127\.0\.0\.1:\d+\/hooks/);
  });

  it('runOnce — a fetch error quoting the URL is kept without it', async () => {
    await recordEvent(store, T, 'scan.completed', {}, { clock });
    const d = dispatcher({
      webhook: {
        fetch: async (url) => {
          throw new TypeError(`cannot reach ${String(url)}?token=abc123`);
        },
      },
    });
    expect(await d.runOnce()).toMatchObject({ retried: 1 });
    expect((await only()).lastError).toBe('cannot reach [url]');
  });

  it('runOnce — a removed endpoint parks its messages; a channel without a handler stays pending', async () => {
    await recordEvent(store, T, 'scan.completed', {}, { clock });
    await store.webhookEndpoints.delete(T, endpoint.id);
    await enqueue(store, {
      tenantId: T,
      channel: 'email',
      destinationId: 'smtp-1',
      eventType: 'scan.completed',
      payload: {},
      nextAttemptAt: clock.now(),
    });
    expect(await dispatcher().runOnce()).toMatchObject({ attempted: 1, parked: 1 });
    const byChannel = Object.fromEntries((await store.outbox.listAll(T)).map((m) => [m.channel, m]));
    expect(byChannel['webhook']).toMatchObject({
      status: 'parked',
      lastError: expect.stringMatching(/removed/),
    });
    expect(byChannel['email']).toMatchObject({ status: 'pending', attempts: 0 });

    const sent: string[] = [];
    const withEmail = dispatcher({
      deliver: {
        email: async (m) => {
          sent.push(m.deliveryId);
          return { outcome: 'delivered', receipt: { messageId: '<1@mail>' } };
        },
      },
    });
    expect(await withEmail.runOnce()).toMatchObject({ delivered: 1 });
    expect(sent).toEqual([byChannel['email']!.deliveryId]);
  });

  it('runOnce — skips a message whose lease another dispatcher holds, and takes it once released', async () => {
    const [message] = await recordEvent(store, T, 'scan.completed', {}, { clock });
    const lease = await store.leases.acquire(`fleetward-outbox:${T}:${message!.id}`, 'other-process', 60_000);
    const d = dispatcher();
    expect(await d.runOnce()).toMatchObject({ attempted: 0, skipped: 1 });
    expect(receiver.received).toHaveLength(0);
    await store.leases.release(lease!);
    expect(await d.runOnce()).toMatchObject({ delivered: 1 });
  });

  it('runOnce — a handler that throws is retried with the error as lastError', async () => {
    await enqueue(store, {
      tenantId: T,
      channel: 'ticket',
      destinationId: 'jira-1',
      eventType: 'patch.escalation',
      payload: {},
      nextAttemptAt: clock.now(),
    });
    const d = dispatcher({
      deliver: {
        ticket: async () => {
          throw new Error('Jira answered 502');
        },
      },
    });
    expect(await d.runOnce()).toMatchObject({ retried: 1 });
    expect((await only()).lastError).toMatch(/Jira answered 502/);
  });

  it('start — delivers in the background until stop', async () => {
    const d = dispatcher();
    d.start({ intervalMs: 5 });
    await recordEvent(store, T, 'scan.completed', {}, { clock });
    await vi.waitFor(async () => expect((await only()).status).toBe('delivered'), { timeout: 10_000 });
    await d.stop();
    await d.stop();
    expect(receiver.received).toHaveLength(1);
  });

  it('createDispatcher — refuses bad options, naming the field', () => {
    expect(() => dispatcher({ concurrency: 0 })).toThrow(/concurrency/);
    expect(() => createDispatcher({ store } as DispatcherOptions)).toThrow(/secrets/);
  });
});
