import { randomUUID } from 'node:crypto';
import type { ChangeRequest, OutboxMessage, PatchPolicy, ScanResult, Server } from '../domain/index.js';
import { matchesSelector } from '../domain/index.js';
import { TimeoutError, TransportError, toFleetwardError } from '../errors.js';
import { newestScan } from '../inventory/scans.js';
import type { DeliveryHandler } from '../notify/dispatcher.js';
import { enqueue } from '../notify/outbox.js';
import { selectPatches } from '../patch/selection.js';
import type { Store } from '../ports/store.js';
import { buildChangeRequest, pendingSetHash } from './change-request.js';
import { createJiraIntegration } from './jira.js';
import { createServiceNowIntegration } from './servicenow.js';
import type { ChangeRequestPayload, TicketingIntegration } from './types.js';

/**
 * For every policy with `changeRequests` whose project includes one of `serverIds`: the patches the
 * policy would install on the project's servers (from their latest scans) form a pending set; when
 * no change request exists yet for that project and set, one is recorded and its ticket queued in
 * the outbox, in one transaction. Returns the change requests opened.
 */
export async function requestChangesForScan(
  store: Store,
  tenantId: string,
  serverIds: readonly string[],
  now: Date,
): Promise<ChangeRequest[]> {
  const policies = (await store.patchPolicies.listAll(tenantId)).filter((p) => p.changeRequests);
  if (policies.length === 0) return [];
  const touched = new Set(serverIds);
  const opened: ChangeRequest[] = [];
  for (const policy of policies) {
    const project = await store.projects.get(tenantId, policy.projectId);
    if (!project) continue;
    const servers = await store.servers.listAll(tenantId, { selector: project.selector });
    if (!servers.some((s) => touched.has(s.id))) continue;
    const scans = new Map<string, ScanResult>();
    for (const server of servers) {
      const latest = newestScan(
        await store.scanResults.listAll(tenantId, { where: { serverId: server.id } }),
        {
          succeededOnly: true,
        },
      );
      if (latest) scans.set(server.id, latest);
    }
    const pending = servers
      .filter((s: Server) => matchesSelector(s, project.selector))
      .map((server) => ({
        serverName: server.name,
        patches: selectPatches(policy, scans.get(server.id)?.patches ?? []).selected,
      }))
      .filter((p) => p.patches.length > 0);
    if (pending.length === 0) continue;
    const hash = pendingSetHash(
      project.id,
      pending.flatMap((p) =>
        p.patches.map((patch) => ({
          serverName: p.serverName,
          name: patch.name,
          candidateVersion: patch.candidateVersion,
        })),
      ),
    );
    const request = await store.transaction(async (tx) => {
      const existing = await tx.changeRequests.list(tenantId, {
        where: { projectId: project.id, pendingSetHash: hash },
        limit: 1,
      });
      if (existing.length) return undefined;
      const payload = buildChangeRequest({
        project: { id: project.id, name: project.name },
        policy: policyInfo(policy),
        pending,
      });
      const id = randomUUID();
      const message = await enqueue(tx, {
        tenantId,
        channel: 'ticket',
        destinationId: policy.changeRequests!.integrationId,
        eventType: 'patch.change-request',
        nextAttemptAt: now,
        payload: { changeRequestId: id, request: payload as unknown as Record<string, unknown> },
      });
      return tx.changeRequests.create({
        tenantId,
        id,
        projectId: project.id,
        integrationId: policy.changeRequests!.integrationId,
        pendingSetHash: hash,
        status: 'requested',
        outboxId: message.id,
      });
    });
    if (request) opened.push(request);
  }
  return opened;
}

function policyInfo(policy: PatchPolicy) {
  return {
    name: policy.name,
    categories: policy.categories,
    minSeverity: policy.minSeverity,
    reboot: policy.reboot,
  };
}

/** Builds the ServiceNow or Jira client of an integration entity, with its secret. */
async function integrationFor(
  store: Store,
  secrets: { get(ref: string): Promise<string | undefined> },
  message: OutboxMessage,
): Promise<TicketingIntegration | string> {
  const integration = await store.integrations.get(message.tenantId, message.destinationId);
  if (!integration) return `integration ${message.destinationId} does not exist`;
  const secret = integration.secretRef ? await secrets.get(integration.secretRef) : undefined;
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
 * The outbox handler of the `ticket` channel: opens the change request in ServiceNow or Jira with
 * the change request's id as idempotency key (a retried delivery finds the ticket it opened), and
 * records the ticket on the ChangeRequest. Network and 5xx failures retry; refusals park.
 */
export function createTicketDelivery(): DeliveryHandler {
  return async (message, context) => {
    const changeRequestId = String(message.payload['changeRequestId'] ?? '');
    const integration = await integrationFor(context.store, context.secrets, message);
    if (typeof integration === 'string') return { outcome: 'park', error: integration };
    try {
      const receipt = await integration.openChangeRequest(
        message.payload['request'] as ChangeRequestPayload,
        {
          idempotencyKey: changeRequestId || message.deliveryId,
        },
      );
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
