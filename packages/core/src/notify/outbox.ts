import { randomBytes } from 'node:crypto';
import type { AuditRecord, OutboxMessage, WebhookEndpoint } from '../domain/index.js';
import { ConflictError, redact, toFleetwardError } from '../errors.js';
import type { Fleet } from '../fleet/fleet.js';
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
 * {@link subscribeWebhooks}); workflows that must never lose a notification call
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

/** The webhook event types Fleetward sends today. */
export const WEBHOOK_EVENT_TYPES = [
  'scan.completed',
  'patch.run.completed',
  'patch.escalation',
  'authz.denied',
  'access.requested',
  'access.approved',
  'access.rejected',
  'access.expired',
  'access.revoked',
  'audit.checkpoint',
  'script.run.completed',
  'runbook.run.completed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

function deniedPayload(record: AuditRecord): Record<string, unknown> {
  return {
    tenantId: record.tenantId,
    action: record.action,
    principalId: record.actor.principalId,
    ...(record.target ? { target: record.target } : {}),
    ...(record.reason ? { reason: record.reason } : {}),
    auditSeq: record.seq,
    at: record.at,
  };
}

export interface SubscribeWebhooksOptions {
  /**
   * Called when an event could not be enqueued (the store failed). Listeners must not throw, so
   * this is where such an event is reported. @default `process.emitWarning`
   */
  onError?: (error: unknown, eventType: string) => void;
}

/**
 * Turns the Fleet events that are not written with a transaction of their own into outbox
 * messages for every enabled endpoint of the event's tenant that subscribes to its type:
 *
 * - `patch.escalation` — a server failed or a run stopped and a human must look.
 * - `authz.denied` — a call was refused. Taken from the `deny` audit records, because the
 *   `authz.denied` Fleet event carries no tenant.
 *
 * `scan.completed` and `patch.run.completed` need no subscription: the scan and the patch run
 * write them into the outbox in the same transaction as the job's completion, so they are never
 * lost. The two above are enqueued in a second transaction ({@link recordEvent}) after the event;
 * a crash in between can lose one of them.
 *
 * Returns a function that unsubscribes.
 */
export function subscribeWebhooks(fleet: Fleet, options: SubscribeWebhooksOptions = {}): () => void {
  const onError =
    options.onError ??
    ((error: unknown, eventType: string) =>
      process.emitWarning(
        `Fleetward could not enqueue a ${eventType} webhook: ${toFleetwardError(error, 'outbox').message}`,
      ));
  const record = (tenantId: string, eventType: WebhookEventType, payload: Record<string, unknown>) => {
    recordEvent(fleet.store, tenantId, eventType, redact(payload) as Record<string, unknown>, {
      clock: fleet.clock,
    }).catch((error: unknown) => onError(error, eventType));
  };
  const onEscalation = (event: { tenantId: string }) =>
    record(event.tenantId, 'patch.escalation', { ...event });
  const onAudit = (audit: AuditRecord) => {
    if (audit.decision === 'deny') record(audit.tenantId, 'authz.denied', deniedPayload(audit));
  };
  fleet.events.on('patch.escalation', onEscalation);
  fleet.events.on('audit.recorded', onAudit);
  return () => {
    fleet.events.off('patch.escalation', onEscalation);
    fleet.events.off('audit.recorded', onAudit);
  };
}

/** The tenant's parked messages (those that exhausted their attempts or cannot be delivered). */
export function listParked(store: StoreScope, tenantId: string): Promise<OutboxMessage[]> {
  return store.outbox.listAll(tenantId, { where: { status: 'parked' } });
}

/**
 * Puts a parked message back in the queue with a fresh attempt budget, due at `now`. It keeps its
 * `deliveryId`, so receivers that saw an earlier attempt can still de-duplicate.
 * @throws NotFoundError, ConflictError when the message is not parked.
 */
export async function replayMessage(
  scope: StoreScope,
  tenantId: string,
  id: string,
  now: Date,
): Promise<OutboxMessage> {
  const message = await scope.outbox.require(tenantId, id);
  if (message.status !== 'parked') {
    throw new ConflictError(
      `outbox message ${id} is ${message.status}; only a parked message can be replayed`,
    );
  }
  return scope.outbox.update(
    tenantId,
    id,
    { status: 'pending', attempts: 0, nextAttemptAt: now.toISOString() },
    { expectedVersion: message.version },
  );
}
