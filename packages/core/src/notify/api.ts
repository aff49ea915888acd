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
import type { SessionInternals } from '../fleet/fleet.js';
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
export type RotateWebhookSecretOptions = z.input<typeof RotateWebhookSecretOptionsSchema>;

/** An endpoint and its signing secret. The secret is shown here only: keep it in the receiver. */
export interface WebhookEndpointWithSecret {
  endpoint: WebhookEndpoint;
  secret: string;
}

/** Webhooks and the outbox of a session: `fleet.as(actor).notify`. */
export interface NotifyApi {
  /**
   * Webhook endpoints of the tenant. Changes are authorized as `patch.policy` and reads as
   * `patch.read` (the catalogue has no notification action yet): notifications report on patching,
   * so whoever sets patch policy decides where its news goes. Every call is audited; no audit
   * record holds a secret.
   */
  webhooks: {
    /**
     * Adds an endpoint with a new `whsec_…` secret, kept in the Fleet's SecretStore.
     * @throws CapabilityMissingError when the Fleet has no SecretStore.
     * @throws ValidationError, AuthorizationError.
     */
    add(input: AddWebhookInput): Promise<WebhookEndpointWithSecret>;
    /** The tenant's endpoints (without secrets). */
    list(): Promise<WebhookEndpoint[]>;
    /**
     * Removes an endpoint and its secret. Its pending messages are parked when their turn comes.
     * Resolves `false` when there was none.
     */
    remove(id: string): Promise<boolean>;
    /** Re-enables an endpoint disabled by a 410 answer (or by hand). */
    enable(id: string): Promise<WebhookEndpoint>;
    /**
     * Replaces the signing secret. The old one keeps signing too for `previousValidForMs`.
     * @throws CapabilityMissingError when the Fleet has no SecretStore.
     */
    rotateSecret(id: string, options?: RotateWebhookSecretOptions): Promise<WebhookEndpointWithSecret>;
  };
  /** The tenant's outbox: `patch.read` to list, `patch.policy` to replay. */
  outbox: {
    /** Messages that exhausted their attempts or could not be delivered. */
    listParked(): Promise<OutboxMessage[]>;
    /**
     * Queues a parked message again, due now, with a fresh attempt budget and its old `deliveryId`.
     * @throws NotFoundError, ConflictError when it is not parked.
     */
    replay(id: string): Promise<OutboxMessage>;
  };
}

function requireSecrets(ctx: SessionInternals): SecretStore {
  if (!ctx.fleet.secrets) {
    throw new CapabilityMissingError(
      'webhook signing secrets need a SecretStore: pass `secrets` to createFleet',
    );
  }
  return ctx.fleet.secrets;
}

/** Where an endpoint's secret lives; tenant first so that a tenant's secrets list together. */
const secretRef = (tenantId: string, endpointId: string) => `${tenantId}/webhooks/${endpointId}`;

/** Builds a session's {@link NotifyApi} from its internals (see `createPatchApi`). */
export function createNotifyApi(internals: () => SessionInternals): NotifyApi {
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
          ctx.fleet.store.webhookEndpoints.listAll(ctx.tenantId),
        );
      },
      remove: async (id) => {
        const ctx = internals();
        validateId(id, 'webhookId');
        const existing = await ctx.fleet.store.webhookEndpoints.get(ctx.tenantId, id);
        if (!existing) return false;
        const removed = await ctx.write('patch.policy', resource(id), target(id), (tx) =>
          tx.webhookEndpoints.delete(ctx.tenantId, id),
        );
        if (removed) await ctx.fleet.secrets?.delete(existing.secretRef);
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
              const now = ctx.fleet.clock.now().getTime();
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
          listParked(ctx.fleet.store, ctx.tenantId),
        );
      },
      replay: async (id) => {
        const ctx = internals();
        return ctx.write(
          'patch.policy',
          [{ type: 'outbox', id }],
          { type: 'outbox-message', id },
          (tx) => replayMessage(tx, ctx.tenantId, id, ctx.fleet.clock.now()),
          (m) => ({ deliveryId: m.deliveryId, eventType: m.eventType }),
        );
      },
    },
  };
}
