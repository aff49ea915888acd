import type { AuditRecord, OutboxMessage } from '../domain/index.js';
import { ConflictError, redact, toFleetwardError } from '../errors.js';
import { recordEvent } from '../kernel/outbox.js';
import type { Runtime } from '../kernel/runtime.js';
import type { StoreScope } from '../ports/store.js';

/** The webhook event types Fleetward sends today. */
export const WEBHOOK_EVENT_TYPES = [
  'scan.completed',
  'inventory.discovered',
  'patch.run.completed',
  'patch.escalation',
  'authz.denied',
  'access.requested',
  'access.approved',
  'access.install-failed',
  'access.installed',
  'access.rejected',
  'access.expired',
  'access.revoked',
  'audit.checkpoint',
  'script.run.completed',
  'runbook.run.completed',
] as const;
/** One of {@link WEBHOOK_EVENT_TYPES}. */
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

/** Options of {@link subscribeWebhooks}. */
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
export function subscribeWebhooks(
  fleet: Pick<Runtime, 'events' | 'store' | 'clock'>,
  options: SubscribeWebhooksOptions = {},
): () => void {
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
