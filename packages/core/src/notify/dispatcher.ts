import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { z } from 'zod';
import { type OutboxMessage, validate } from '../domain/index.js';
import { ConflictError, redact, toFleetwardError } from '../errors.js';
import { noteSecrets, RedactingLogger, SecretValues } from '../kernel/log.js';
import { type Clock, systemClock } from '../ports/clock.js';
import { isLogger, type Logger } from '../ports/logger.js';
import type { SecretStore } from '../ports/secret-store.js';
import type { Store } from '../ports/store.js';
import { listParked, replayMessage } from './outbox.js';
import { signingSecrets, signWebhook } from './webhook-signature.js';

/** What a delivery handler gets besides the message. */
export interface DeliveryContext {
  /** The store the message is in (endpoints and integrations are read from it). */
  store: Store;
  /** Where signing secrets and integration credentials are. */
  secrets: SecretStore;
  /** The dispatcher's clock: stamps the attempt. */
  clock: Clock;
  /** 1 for the first attempt of the message (counting from its last replay). */
  attempt: number;
}

/**
 * How one attempt went. `retry` is tried again after a back-off (at least `retryAfterMs` when
 * given) until `maxAttempts`; `park` stops at once (nothing will change by retrying).
 * `error` is stored as the message's `lastError`: never put credentials or request headers in it.
 */
export type DeliveryResult =
  | { outcome: 'delivered'; receipt?: Record<string, unknown> }
  | { outcome: 'retry'; error: string; retryAfterMs?: number }
  | { outcome: 'park'; error: string };

/**
 * Delivers one outbox message of a channel. May be called more than once for the same message
 * (at-least-once): pass `message.deliveryId` on as the idempotency key. A throw counts as `retry`.
 */
export type DeliveryHandler = (message: OutboxMessage, context: DeliveryContext) => Promise<DeliveryResult>;

const fn = <T>() => z.custom<T>((v) => typeof v === 'function', 'must be a function');

export const WebhookDeliveryOptionsSchema = z.strictObject({
  /** Time limit of one POST, response headers included. @default 15_000 */
  timeoutMs: z.number().int().min(100).max(300_000).default(15_000),
  /** The fetch to use; tests and proxies inject their own. @default globalThis.fetch */
  fetch: fn<typeof fetch>().optional(),
  /** @default 'Fleetward-Webhooks/1' */
  userAgent: z.string().min(1).max(200).default('Fleetward-Webhooks/1'),
});
/** Options of {@link createWebhookDelivery}. */
export type WebhookDeliveryOptions = z.input<typeof WebhookDeliveryOptionsSchema>;

/** The exact body of a webhook: Standard Webhooks' `{ type, timestamp, data }`, the same on every attempt. */
export function webhookBody(message: OutboxMessage): string {
  return JSON.stringify({ type: message.eventType, timestamp: message.createdAt, data: message.payload });
}

function retryAfterMs(value: string | null, now: Date): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}

/** A network failure as one line, without the URL (it may carry credentials) or any header. */
function networkError(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return 'the endpoint did not answer in time';
  }
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  // Some fetch errors quote the URL, and a URL can carry a token in its query.
  const message = (error instanceof Error ? error.message : String(error)).replace(
    /\b[a-z][a-z0-9+.-]*:\/\/\S+/gi,
    '[url]',
  );
  return code ? `${message} (${code})` : message;
}

/**
 * The webhook channel: POSTs {@link webhookBody} to the endpoint with `webhook-id` (the message's
 * `deliveryId`), `webhook-timestamp` and `webhook-signature` (one `v1,` entry per live secret, so
 * receivers keep verifying through a rotation). 2xx is delivered; 410 disables the endpoint and
 * parks the message; anything else, a timeout or a network error is retried. Redirects are not
 * followed: the signed request goes only where the endpoint says.
 */
export function createWebhookDelivery(options: WebhookDeliveryOptions = {}): DeliveryHandler {
  const parsed = validate(WebhookDeliveryOptionsSchema, options, 'WebhookDeliveryOptions');
  return async (message, { store, secrets, clock }) => {
    const endpoint = await store.webhookEndpoints.get(message.tenantId, message.destinationId);
    if (!endpoint) return { outcome: 'park', error: `webhook endpoint ${message.destinationId} was removed` };
    if (endpoint.disabled) {
      return {
        outcome: 'park',
        error: `webhook endpoint ${endpoint.id} is disabled${endpoint.disabledReason ? `: ${endpoint.disabledReason}` : ''}`,
      };
    }
    const stored = await secrets.get(endpoint.secretRef);
    if (!stored) {
      return { outcome: 'park', error: `no signing secret in the SecretStore under ${endpoint.secretRef}` };
    }
    const body = webhookBody(message);
    const now = clock.now();
    let signature: string;
    try {
      signature = signingSecrets(stored, now)
        .map((secret) => signWebhook({ secret, id: message.deliveryId, timestamp: now, body }))
        .join(' ');
    } catch {
      return { outcome: 'park', error: `the signing secret under ${endpoint.secretRef} is malformed` };
    }
    let response: Response;
    try {
      response = await (parsed.fetch ?? fetch)(endpoint.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': parsed.userAgent,
          'webhook-id': message.deliveryId,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(parsed.timeoutMs),
      });
    } catch (error) {
      return { outcome: 'retry', error: networkError(error) };
    }
    // The answer's body is not read: it is the receiver's, may echo our headers, and holds the socket.
    await response.body?.cancel().catch(() => undefined);
    if (response.status >= 200 && response.status < 300) {
      return { outcome: 'delivered', receipt: { status: response.status } };
    }
    if (response.status === 410) {
      const reason = `the endpoint answered 410 Gone at ${now.toISOString()}`;
      await disableEndpoint(store, message.tenantId, endpoint.id, reason);
      return { outcome: 'park', error: `${reason}; endpoint disabled` };
    }
    const after = retryAfterMs(response.headers.get('retry-after'), now);
    return {
      outcome: 'retry',
      error: `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`,
      ...(after !== undefined && (response.status === 429 || response.status === 503)
        ? { retryAfterMs: after }
        : {}),
    };
  };
}

async function disableEndpoint(store: Store, tenantId: string, id: string, reason: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await store.webhookEndpoints.get(tenantId, id);
    if (!current || current.disabled) return;
    try {
      await store.webhookEndpoints.update(
        tenantId,
        id,
        { disabled: true, disabledReason: reason },
        { expectedVersion: current.version },
      );
      return;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
    }
  }
}

export const DispatcherOptionsSchema = z.strictObject({
  /** The store whose outbox is delivered. */
  store: z.custom<Store>(
    (v) => typeof (v as Store | undefined)?.transaction === 'function',
    'must be a Store',
  ),
  /** Where endpoints' signing secrets are (`endpoint.secretRef`). */
  secrets: z.custom<SecretStore>(
    (v) => typeof (v as SecretStore | undefined)?.get === 'function',
    'must be a SecretStore',
  ),
  /** Decides when messages are due and stamps `webhook-timestamp`. @default the system clock */
  clock: z.custom<Clock>((v) => typeof (v as Clock | undefined)?.now === 'function').optional(),
  /**
   * Handlers by channel. `webhook` defaults to {@link createWebhookDelivery}; a channel with no
   * handler is left pending for a dispatcher that has one.
   */
  deliver: z
    .strictObject({
      webhook: fn<DeliveryHandler>().optional(),
      email: fn<DeliveryHandler>().optional(),
      ticket: fn<DeliveryHandler>().optional(),
    })
    .default({}),
  /** Options of the default webhook handler. */
  webhook: WebhookDeliveryOptionsSchema.optional(),
  /** Deliveries in flight at once. @default 8 */
  concurrency: z.number().int().min(1).max(1024).default(8),
  /** At most this many due messages per tenant per run. @default 100 */
  batchSize: z.number().int().min(1).max(10_000).default(100),
  /** Failed attempts after which a message is parked. @default 12 */
  maxAttempts: z.number().int().min(1).max(1000).default(12),
  /** Exponential back-off with full jitter: after attempt n, wait random(0, min(capMs, baseMs·2ⁿ⁻¹)). */
  backoff: z
    .strictObject({
      /** @default 5_000 */
      baseMs: z.number().int().min(0).default(5_000),
      /** @default 3_600_000 (1 h) */
      capMs: z.number().int().min(0).default(3_600_000),
    })
    .default({ baseMs: 5_000, capMs: 3_600_000 }),
  /** Prefix of the per-message leases. @default 'fleetward-outbox' */
  leaseName: z.string().min(1).max(100).default('fleetward-outbox'),
  /** How long a message stays claimed; must outlast one delivery. @default webhook timeout + 30 s */
  leaseTtlMs: z.number().int().min(1000).optional(),
  /** Who holds the leases. @default a random UUID per dispatcher */
  holder: z.string().min(1).max(200).optional(),
  /** The jitter source, in [0, 1). @default Math.random */
  random: fn<() => number>().optional(),
  /**
   * Errors of the `start` loop (a failing store).
   * @default logged to `logger` when there is one, else `process.emitWarning`
   */
  onError: fn<(error: unknown) => void>().optional(),
  /**
   * Where the dispatcher tells the operator about deliveries: failed and retried (warn), given up
   * and parked (error), delivered (debug), and errors of the `start` loop (error). Records carry
   * the message's ids, channel, event type, attempt and error line; never its payload, the
   * endpoint's URL or a header. Redacted like the Fleet's (pass `fleet.logger` to share its
   * bindings and redaction). @default nothing is logged
   */
  logger: z
    .custom<Logger>(isLogger, 'must have the methods error, warn, info and debug (a pino logger fits)')
    .optional(),
});
/** Options of {@link createDispatcher}: the store, the SecretStore, and how to deliver and retry. */
export type DispatcherOptions = z.input<typeof DispatcherOptionsSchema>;

/** What one {@link Dispatcher.runOnce} did. */
export interface DispatchSummary {
  /** Attempts made. */
  attempted: number;
  /** Messages delivered. */
  delivered: number;
  /** Failed attempts that will be retried. */
  retried: number;
  /** Messages parked: their attempts are spent, or the handler said retrying cannot help. */
  parked: number;
  /** Due messages left alone: another dispatcher had them, or they changed before the attempt. */
  skipped: number;
}

/** Delivers the outbox: a process-wide worker, any number of which may share one store. */
export interface Dispatcher {
  /**
   * One pass: claims the due messages (pending, `nextAttemptAt` ≤ now) of every tenant, delivers
   * them `concurrency` at a time and records each outcome. Each message is claimed with a store
   * lease and written with its version, so concurrent dispatchers (in any process) do not attempt
   * the same message at once. Delivery is at-least-once: a dispatcher that dies after delivering
   * but before recording it leaves the message to be sent again, with the same `deliveryId`.
   */
  runOnce(): Promise<DispatchSummary>;
  /** Runs `runOnce` every `intervalMs` (after the previous run ends) until `stop`. @default 1000 */
  start(options?: { intervalMs?: number }): void;
  /** Stops the loop; resolves when the run in progress has finished. */
  stop(): Promise<void>;
  /**
   * Puts a parked message back in the queue, due now, with a fresh attempt budget.
   * @throws NotFoundError, ConflictError when it is not parked.
   */
  replay(tenantId: string, id: string): Promise<OutboxMessage>;
  /** The tenant's parked messages. */
  listParked(tenantId: string): Promise<OutboxMessage[]>;
}

/**
 * Creates the outbox dispatcher. Not authorized or audited: it is a process-wide worker of the
 * embedding application, like a scheduler. Sessions reach the same replay through
 * `fleet.as(actor).notify.outbox`.
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const o = validate(DispatcherOptionsSchema, options, 'DispatcherOptions');
  // Signing secrets and integration credentials read through `secrets` are scrubbed from the log.
  const known = new SecretValues();
  const secrets = noteSecrets(o.secrets, known);
  const log = new RedactingLogger(o.logger, known).child({ component: 'outbox-dispatcher' });
  const clock = o.clock ?? systemClock;
  const random = o.random ?? Math.random;
  const holder = o.holder ?? randomUUID();
  const webhookTimeout = o.webhook?.timeoutMs ?? 15_000;
  const leaseTtlMs = o.leaseTtlMs ?? webhookTimeout + 30_000;
  const handlers: Partial<Record<OutboxMessage['channel'], DeliveryHandler>> = {
    webhook: o.deliver.webhook ?? createWebhookDelivery(o.webhook ?? {}),
    ...(o.deliver.email ? { email: o.deliver.email } : {}),
    ...(o.deliver.ticket ? { ticket: o.deliver.ticket } : {}),
  };
  const onError =
    o.onError ??
    (o.logger
      ? () => undefined
      : (error: unknown) =>
          process.emitWarning(
            `Fleetward outbox dispatcher: ${toFleetwardError(error, 'dispatching').message}`,
          ));

  const backoffMs = (attempts: number, retryAfter?: number) => {
    const ceiling = Math.min(o.backoff.capMs, o.backoff.baseMs * 2 ** Math.min(attempts - 1, 52));
    const jittered = Math.floor(random() * ceiling);
    return retryAfter === undefined ? jittered : Math.max(jittered, Math.min(retryAfter, o.backoff.capMs));
  };

  async function due(tenantId: string, now: number): Promise<OutboxMessage[]> {
    const found: OutboxMessage[] = [];
    let after: string | undefined;
    // Pending rows come in id order, not due order, so the page walk continues past rows not yet due.
    for (;;) {
      const page = await o.store.outbox.list(tenantId, {
        where: { status: 'pending' },
        limit: 1000,
        ...(after ? { after } : {}),
      });
      for (const m of page) {
        if (handlers[m.channel] && Date.parse(m.nextAttemptAt) <= now) found.push(m);
      }
      if (page.length < 1000) break;
      after = page[page.length - 1]!.id;
    }
    found.sort((a, b) => Date.parse(a.nextAttemptAt) - Date.parse(b.nextAttemptAt) || (a.id < b.id ? -1 : 1));
    return found.slice(0, o.batchSize);
  }

  async function attempt(listed: OutboxMessage, summary: DispatchSummary): Promise<void> {
    const lease = await o.store.leases.acquire(
      `${o.leaseName}:${listed.tenantId}:${listed.id}`,
      holder,
      leaseTtlMs,
    );
    if (!lease) {
      summary.skipped++;
      return;
    }
    try {
      // Re-read under the lease: the listing may predate another dispatcher's delivery.
      const message = await o.store.outbox.get(listed.tenantId, listed.id);
      if (message?.status !== 'pending' || Date.parse(message.nextAttemptAt) > clock.now().getTime()) {
        summary.skipped++;
        return;
      }
      const attempts = message.attempts + 1;
      let result: DeliveryResult;
      try {
        result = await handlers[message.channel]!(message, {
          store: o.store,
          secrets,
          clock,
          attempt: attempts,
        });
      } catch (error) {
        result = { outcome: 'retry', error: toFleetwardError(error, `${message.channel} delivery`).message };
      }
      summary.attempted++;
      const now = clock.now();
      let changes: Partial<OutboxMessage>;
      if (result.outcome === 'delivered') {
        changes = {
          status: 'delivered',
          attempts,
          deliveredAt: now.toISOString(),
          ...(result.receipt ? { receipt: result.receipt } : {}),
        };
      } else {
        const lastError = String(redact(result.error)).slice(0, 2000);
        const park = result.outcome === 'park' || attempts >= o.maxAttempts;
        changes = park
          ? { status: 'parked', attempts, lastError }
          : {
              attempts,
              lastError,
              nextAttemptAt: new Date(
                now.getTime() +
                  backoffMs(attempts, result.outcome === 'retry' ? result.retryAfterMs : undefined),
              ).toISOString(),
            };
      }
      try {
        await o.store.outbox.update(message.tenantId, message.id, changes, {
          expectedVersion: message.version,
        });
      } catch (error) {
        // Someone else recorded an outcome first (a replay, or a dispatcher after our lease expired).
        if (error instanceof ConflictError) {
          summary.skipped++;
          return;
        }
        throw error;
      }
      const about = {
        tenantId: message.tenantId,
        messageId: message.id,
        deliveryId: message.deliveryId,
        channel: message.channel,
        eventType: message.eventType,
        destinationId: message.destinationId,
        attempt: attempts,
      };
      if (changes.status === 'delivered') {
        summary.delivered++;
        log.debug(about, 'outbox message delivered');
      } else if (changes.status === 'parked') {
        summary.parked++;
        log.error(
          {
            ...about,
            error: changes.lastError,
            why: result.outcome === 'park' ? 'retrying cannot help' : `${o.maxAttempts} attempts spent`,
          },
          'outbox message given up: parked until replayed',
        );
      } else {
        summary.retried++;
        log.warn(
          { ...about, error: changes.lastError, nextAttemptAt: changes.nextAttemptAt },
          'outbox delivery failed; it will be retried',
        );
      }
    } finally {
      await o.store.leases.release(lease).catch(() => undefined);
    }
  }

  async function runOnce(): Promise<DispatchSummary> {
    const summary: DispatchSummary = { attempted: 0, delivered: 0, retried: 0, parked: 0, skipped: 0 };
    const now = clock.now().getTime();
    const queue = new PQueue({ concurrency: o.concurrency });
    const failures: unknown[] = [];
    for (const tenantId of await o.store.tenantIds()) {
      for (const message of await due(tenantId, now)) {
        queue.add(() => attempt(message, summary).catch((error: unknown) => void failures.push(error)));
      }
    }
    await queue.onIdle();
    if (failures.length) throw toFleetwardError(failures[0], 'dispatching the outbox');
    return summary;
  }

  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;

  return {
    runOnce,
    start({ intervalMs = 1000 } = {}) {
      if (loop) return;
      stopping = false;
      loop = (async () => {
        while (!stopping) {
          try {
            await runOnce();
          } catch (error) {
            log.error({ err: error }, 'outbox dispatcher pass failed');
            onError(error);
          }
          if (stopping) break;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, intervalMs);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      })();
    },
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      loop = undefined;
    },
    replay: (tenantId, id) => replayMessage(o.store, tenantId, id, clock.now()),
    listParked: (tenantId) => listParked(o.store, tenantId),
  };
}
