import {
  type DeliveryContext,
  type DeliveryHandler,
  type OutboxMessage,
  type TicketingIntegration,
  type TicketOutboxPayload,
  TimeoutError,
  TransportError,
  toFleetwardError,
} from '@fleetward/core';
import { createJiraIntegration } from './jira.js';
import { createServiceNowIntegration } from './servicenow.js';

/** Builds the ServiceNow or Jira client of an integration entity, with its secret. */
async function integrationFor(
  context: DeliveryContext,
  message: OutboxMessage,
): Promise<TicketingIntegration | string> {
  const integration = await context.store.integrations.get(message.tenantId, message.destinationId);
  if (!integration) return `integration ${message.destinationId} does not exist`;
  const secret = integration.secretRef ? await context.secrets.get(integration.secretRef) : undefined;
  const c = integration.config;
  const str = (k: string) => (typeof c[k] === 'string' ? (c[k] as string) : undefined);
  if (integration.kind === 'servicenow') {
    return createServiceNowIntegration({
      baseUrl: str('baseUrl') ?? '',
      ...(str('username') ? { username: str('username')!, password: secret ?? '' } : { token: secret ?? '' }),
      ...(str('assignmentGroup') ? { assignmentGroup: str('assignmentGroup')! } : {}),
      ...(c['allowInsecureHttp'] === true ? { allowInsecureHttp: true } : {}),
    });
  }
  if (integration.kind === 'jira') {
    return createJiraIntegration({
      baseUrl: str('baseUrl') ?? '',
      email: str('email') ?? '',
      apiToken: secret ?? '',
      projectKey: str('projectKey') ?? '',
      ...(str('issueType') ? { issueType: str('issueType')! } : {}),
      ...(c['allowInsecureHttp'] === true ? { allowInsecureHttp: true } : {}),
    });
  }
  return `integration ${integration.id} is ${integration.kind}, not a ticketing system`;
}

/**
 * The outbox handler of the `ticket` channel: opens the change request of a `TicketOutboxPayload`
 * in ServiceNow or Jira with the change request's id as idempotency key (a retried delivery finds
 * the ticket it opened), and records the ticket on the ChangeRequest. Network and 5xx failures
 * retry; refusals park.
 */
export function createTicketDelivery(): DeliveryHandler {
  return async (message, context) => {
    const payload = message.payload as unknown as Partial<TicketOutboxPayload>;
    const changeRequestId = String(payload.changeRequestId ?? '');
    const integration = await integrationFor(context, message);
    if (typeof integration === 'string') return { outcome: 'park', error: integration };
    try {
      const receipt = await integration.openChangeRequest(payload.request!, {
        idempotencyKey: changeRequestId || message.deliveryId,
      });
      const current = changeRequestId
        ? await context.store.changeRequests.get(message.tenantId, changeRequestId)
        : undefined;
      if (current) {
        await context.store.changeRequests.update(
          message.tenantId,
          current.id,
          {
            status: 'opened',
            externalId: receipt.externalId,
            ...(receipt.externalUrl ? { externalUrl: receipt.externalUrl } : {}),
          },
          { expectedVersion: current.version },
        );
      }
      return { outcome: 'delivered', receipt: { ...receipt } };
    } catch (error) {
      const e = toFleetwardError(error, 'opening the change request');
      if (e instanceof TransportError || e instanceof TimeoutError || e.retryable)
        return { outcome: 'retry', error: e.message.slice(0, 500) };
      return { outcome: 'park', error: e.message.slice(0, 500) };
    }
  };
}
