import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  type OutboxMessage,
  validate,
  type WebhookEndpoint,
  WebhookEndpointFields,
} from '../domain/index.js';
import { validateId } from '../domain/options.js';
import { CapabilityMissingError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { SecretStore } from '../ports/secret-store.js';
import { listParked, replayMessage } from './outbox.js';
import { decodeSigningSecrets, encodeSigningSecrets, generateWebhookSecret } from './webhook-signature.js';

export const AddWebhookInputSchema = z.strictObject({
  /** Where events are POSTed. `https` except for endpoints on a trusted network. */
  url: WebhookEndpointFields.url.refine(
    // Malformed URLs are left to the url check before it, which names the real problem.
    (url) => !URL.canParse(url) || (new URL(url).username === '' && new URL(url).password === ''),
    'must not contain a user name or password: receivers authenticate requests by their signature',
  ),
  /** Event types: exact (`scan.completed`), family (`patch.*`) or `*`. */
  events: WebhookEndpointFields.events,
  description: WebhookEndpointFields.description,
});
/** What `notify.webhooks.add` takes. */
export type AddWebhookInput = z.input<typeof AddWebhookInputSchema>;

export const RotateWebhookSecretOptionsSchema = z.strictObject({
  /**
   * How long the old secret keeps signing alongside the new one (two `v1,` entries), so receivers
   * can switch without dropping a message. 0 stops it at once. @default 86_400_000 (24 h)
   */
  previousValidForMs: z
    .number()
    .int()
    .min(0)
    .max(30 * 86_400_000)
    .default(86_400_000),
});
/** Options of `notify.webhooks.rotateSecret`. */
export type RotateWebhookSecretOptions = z.input<typeof RotateWebhookSecretOptionsSchema>;

/** An endpoint and its signing secret. The secret is shown here only: keep it in the receiver. */
export interface WebhookEndpointWithSecret {
  /** The endpoint as stored. */
  endpoint: WebhookEndpoint;
  /** The current `whsec_…` signing secret. */
  secret: string;
}

/**
 * Webhook endpoints of the tenant. Changes are authorized as `patch.policy` and reads as
 * `patch.read` (the catalogue has no notification action yet): notifications report on patching,
 * so whoever sets patch policy decides where its news goes. Every call is audited; no audit record
 * holds a secret.
 */
export interface WebhooksApi {
  /**
   * Adds an endpoint with a new `whsec_…` secret, kept in the Fleet's SecretStore (stored before
   * the endpoint, and removed again when the endpoint cannot be written).
   * @throws CapabilityMissingError when the Fleet has no SecretStore; ValidationError for a bad
   * URL (credentials in it included) or event list; AuthorizationError.
   */
  add(input: AddWebhookInput): Promise<WebhookEndpointWithSecret>;
  /** The tenant's endpoints (without secrets). @throws AuthorizationError. */
  list(): Promise<WebhookEndpoint[]>;
  /**
   * Removes an endpoint and its secret. Its pending messages are parked when their turn comes.
   * Resolves `false` when there was none.
   * @throws ValidationError for a malformed id; AuthorizationError.
   */
  remove(id: string): Promise<boolean>;
  /**
   * Re-enables an endpoint disabled by a 410 answer (or by hand); an enabled one is returned as is.
   * @throws NotFoundError; AuthorizationError.
   */
  enable(id: string): Promise<WebhookEndpoint>;
  /**
   * Replaces the signing secret. The old one keeps signing too for `previousValidForMs`
   * (by default 24 h); when the change cannot be committed, the old secret is put back.
   * @throws CapabilityMissingError when the Fleet has no SecretStore; NotFoundError;
   * ValidationError for bad options; AuthorizationError.
   */
  rotateSecret(id: string, options?: RotateWebhookSecretOptions): Promise<WebhookEndpointWithSecret>;
}

/** The tenant's outbox: `patch.read` to list, `patch.policy` to replay; audited. */
export interface OutboxApi {
  /** Messages that exhausted their attempts or could not be delivered. @throws AuthorizationError. */
  listParked(): Promise<OutboxMessage[]>;
  /**
   * Queues a parked message again, due now, with a fresh attempt budget and its old `deliveryId`
   * (receivers that saw an earlier attempt can still de-duplicate).
   * @throws NotFoundError; ConflictError when it is not parked; AuthorizationError.
   */
  replay(id: string): Promise<OutboxMessage>;
}

/** Webhooks and the outbox of a session: `fleet.as(actor).notify`. */
export interface NotifyApi {
  /** Webhook endpoints of the tenant and their signing secrets. */
  readonly webhooks: WebhooksApi;
  /** The tenant's outbox of undelivered notifications. */
  readonly outbox: OutboxApi;
}

function requireSecrets(ctx: CallContext): SecretStore {
  if (!ctx.runtime.secrets) {
    throw new CapabilityMissingError(
      'webhook signing secrets need a SecretStore: pass `secrets` to createFleet',
    );
  }
  return ctx.runtime.secrets;
}

/** Where an endpoint's secret lives; tenant first so that a tenant's secrets list together. */
const secretRef = (tenantId: string, endpointId: string) => `${tenantId}/webhooks/${endpointId}`;

/** Creates the notify module on a session's call context. */
export function createNotifyApi(internals: () => CallContext): NotifyApi {
  const resource = (id: string) => [{ type: 'webhook-endpoint', id }];
  const target = (id: string) => ({ type: 'webhook-endpoint', id });

  return {
    webhooks: {
      add: async (input) => {
        const ctx = internals();
        const parsed = validate(AddWebhookInputSchema, input, 'AddWebhookInput');
        const secrets = requireSecrets(ctx);
        const id = randomUUID();
        const ref = secretRef(ctx.tenantId, id);
        await ctx.authorize('patch.policy', resource(id), target(id));
        const secret = generateWebhookSecret();
        // The secret is stored first: an endpoint must never exist without one to sign with.
        await secrets.set(ref, encodeSigningSecrets({ current: secret, previous: [] }));
        try {
          const endpoint = await ctx.write(
            'patch.policy',
            resource(id),
            target(id),
            (tx) =>
              tx.webhookEndpoints.create({
                tenantId: ctx.tenantId,
                id,
                url: parsed.url,
                events: parsed.events,
                secretRef: ref,
                ...(parsed.description === undefined ? {} : { description: parsed.description }),
              }),
            (e) => ({ endpointId: e.id, host: new URL(e.url).host, events: e.events }),
          );
          return { endpoint, secret };
        } catch (error) {
          await secrets.delete(ref).catch(() => undefined);
          throw error;
        }
      },
      list: async () => {
        const ctx = internals();
        return ctx.read('patch.read', resource('*'), target('*'), () =>
          ctx.runtime.store.webhookEndpoints.listAll(ctx.tenantId),
        );
      },
      remove: async (id) => {
        const ctx = internals();
        validateId(id, 'webhookId');
        const existing = await ctx.runtime.store.webhookEndpoints.get(ctx.tenantId, id);
        if (!existing) return false;
        const removed = await ctx.write('patch.policy', resource(id), target(id), (tx) =>
          tx.webhookEndpoints.delete(ctx.tenantId, id),
        );
        if (removed) await ctx.runtime.secrets?.delete(existing.secretRef);
        return removed;
      },
      enable: async (id) => {
        const ctx = internals();
        return ctx.write('patch.policy', resource(id), target(id), async (tx) => {
          const current = await tx.webhookEndpoints.require(ctx.tenantId, id);
          if (!current.disabled) return current;
          return tx.webhookEndpoints.update(
            ctx.tenantId,
            id,
            { disabled: false, disabledReason: undefined },
            { expectedVersion: current.version },
          );
        });
      },
      rotateSecret: async (id, options = {}) => {
        const ctx = internals();
        const parsed = validate(RotateWebhookSecretOptionsSchema, options, 'RotateWebhookSecretOptions');
        const secrets = requireSecrets(ctx);
        const secret = generateWebhookSecret();
        let restore: (() => Promise<unknown>) | undefined;
        try {
          const endpoint = await ctx.write(
            'patch.policy',
            resource(id),
            target(id),
            async (tx) => {
              const current = await tx.webhookEndpoints.require(ctx.tenantId, id);
              const stored = await secrets.get(current.secretRef);
              const now = ctx.runtime.clock.now().getTime();
              const old = stored ? decodeSigningSecrets(stored) : undefined;
              const until = new Date(now + parsed.previousValidForMs).toISOString();
              const previous =
                old && parsed.previousValidForMs > 0
                  ? [{ secret: old.current, until }, ...old.previous.filter((p) => Date.parse(p.until) > now)]
                  : [];
              // The SecretStore is not part of the transaction: if the commit fails the old value is
              // put back, or the endpoint would be signed with a secret nobody was given.
              restore = () =>
                stored === undefined
                  ? secrets.delete(current.secretRef)
                  : secrets.set(current.secretRef, stored);
              await secrets.set(current.secretRef, encodeSigningSecrets({ current: secret, previous }));
              return current;
            },
            (e) => ({ endpointId: e.id, previousValidForMs: parsed.previousValidForMs }),
          );
          return { endpoint, secret };
        } catch (error) {
          await restore?.().catch(() => undefined);
          throw error;
        }
      },
    },
    outbox: {
      listParked: async () => {
        const ctx = internals();
        return ctx.read('patch.read', [{ type: 'outbox' }], { type: 'outbox', id: '*' }, () =>
          listParked(ctx.runtime.store, ctx.tenantId),
        );
      },
      replay: async (id) => {
        const ctx = internals();
        return ctx.write(
          'patch.policy',
          [{ type: 'outbox', id }],
          { type: 'outbox-message', id },
          (tx) => replayMessage(tx, ctx.tenantId, id, ctx.runtime.clock.now()),
          (m) => ({ deliveryId: m.deliveryId, eventType: m.eventType }),
        );
      },
    },
  };
}
