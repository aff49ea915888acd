import { randomBytes } from 'node:crypto';
import type { OutboxMessage, WebhookEndpoint } from '../domain/index.js';
import { type Clock, systemClock } from '../ports/clock.js';
import type { Store, StoreScope } from '../ports/store.js';

/** A stable delivery id: `msg_` and 22 random base64url characters. It is the `webhook-id`. */
export function newDeliveryId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`;
}

export interface EnqueueInput {
  tenantId: string;
  channel: OutboxMessage['channel'];
  /** The webhook endpoint (or integration) id it goes to. */
  destinationId: string;
  eventType: string;
  /** The event's data: it becomes `data` of the webhook body. Keep secrets out of it. */
  payload: Record<string, unknown>;
  /** When the first attempt is due, normally now. */
  nextAttemptAt: Date;
  /** Only to re-enqueue a message under the id receivers already know. @default a new id */
  deliveryId?: string;
}

/**
 * Inserts one pending outbox message through `tx`, so that it commits or rolls back with the
 * caller's other writes: the message exists if and only if the state change it reports does.
 * @throws ValidationError when the input does not fit the outbox schema.
 */
export function enqueue(tx: StoreScope, input: EnqueueInput): Promise<OutboxMessage> {
  return tx.outbox.create({
    tenantId: input.tenantId,
    channel: input.channel,
    destinationId: input.destinationId,
    eventType: input.eventType,
    payload: input.payload,
    deliveryId: input.deliveryId ?? newDeliveryId(),
    status: 'pending',
    attempts: 0,
    nextAttemptAt: input.nextAttemptAt.toISOString(),
  });
}

/**
 * Whether an endpoint's event pattern covers `eventType`: `*` covers everything, `patch.*` every
 * type starting with `patch.`, anything else only itself.
 */
export function eventMatches(pattern: string, eventType: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return eventType.startsWith(pattern.slice(0, -1));
  return pattern === eventType;
}

export interface EnqueueEventInput {
  tenantId: string;
  eventType: string;
  payload: Record<string, unknown>;
  /** When it is due. */
  now: Date;
}

/**
 * Fans one event out to every enabled webhook endpoint of the tenant subscribed to its type, as
 * outbox messages written through `tx`. This is what a workflow calls inside the transaction of
 * the state change it reports. Resolves the messages (none when no endpoint wants the event).
 */
export async function enqueueEvent(tx: StoreScope, input: EnqueueEventInput): Promise<OutboxMessage[]> {
  const endpoints = await tx.webhookEndpoints.listAll(input.tenantId, { where: { disabled: false } });
  const messages: OutboxMessage[] = [];
  for (const endpoint of endpoints.filter((e) => wants(e, input.eventType))) {
    messages.push(
      await enqueue(tx, {
        tenantId: input.tenantId,
        channel: 'webhook',
        destinationId: endpoint.id,
        eventType: input.eventType,
        payload: input.payload,
        nextAttemptAt: input.now,
      }),
    );
  }
  return messages;
}

function wants(endpoint: WebhookEndpoint, eventType: string): boolean {
  return endpoint.events.some((pattern) => eventMatches(pattern, eventType));
}

/**
 * Enqueues an event for the tenant's matching endpoints in a transaction of its own.
 *
 * This is NOT the transactional outbox: a crash between the caller's commit and this one loses
 * the event. It exists for events that today are only announced after their commit (see
 * `subscribeWebhooks` in notify); workflows that must never lose a notification call
 * {@link enqueueEvent} with their own `tx` instead.
 */
export function recordEvent(
  store: Store,
  tenantId: string,
  eventType: string,
  payload: Record<string, unknown>,
  options: { clock?: Clock } = {},
): Promise<OutboxMessage[]> {
  const now = (options.clock ?? systemClock).now();
  return store.transaction((tx) => enqueueEvent(tx, { tenantId, eventType, payload, now }));
}
