import {
  type DeliveryHandler,
  type EmailOutboxPayload,
  TimeoutError,
  TransportError,
  toFleetwardError,
} from '@fleetward/core';
import { createSmtpSender } from './smtp.js';

/**
 * The outbox handler of the `email` channel: sends `payload.message` (an `EmailOutboxPayload`)
 * through the SMTP integration named by the message's destination, with the password from the
 * dispatcher's SecretStore (`secretRef`). Temporary SMTP and network failures retry; refusals
 * (bad credentials, unknown recipients) park.
 */
export function createEmailDelivery(): DeliveryHandler {
  return async (message, context) => {
    const integration = await context.store.integrations.get(message.tenantId, message.destinationId);
    if (integration?.kind !== 'smtp') {
      return { outcome: 'park', error: `integration ${message.destinationId} is not an SMTP integration` };
    }
    const c = integration.config;
    const password = integration.secretRef ? await context.secrets.get(integration.secretRef) : undefined;
    try {
      const sender = createSmtpSender({
        host: String(c['host'] ?? ''),
        port: Number(c['port'] ?? 587),
        from: String(c['from'] ?? ''),
        ...(typeof c['user'] === 'string' && password ? { auth: { user: c['user'], pass: password } } : {}),
        ...(typeof c['secure'] === 'boolean' ? { secure: c['secure'] } : {}),
      });
      const { message: email } = message.payload as unknown as EmailOutboxPayload;
      const attachments = (email.attachments ?? []).map((a) => ({
        ...a,
        content: typeof a.content === 'string' ? a.content : Buffer.from(a.content),
      }));
      const sent = await sender.send({ ...email, attachments });
      return { outcome: 'delivered', receipt: { messageId: sent.messageId } };
    } catch (error) {
      const e = toFleetwardError(error, 'sending the email');
      if (e instanceof TransportError || e instanceof TimeoutError || e.retryable)
        return { outcome: 'retry', error: e.message.slice(0, 500) };
      return { outcome: 'park', error: e.message.slice(0, 500) };
    }
  };
}
