import { randomUUID } from 'node:crypto';
import type { ChangeRequest, PatchPolicy, ScanResult, Server } from '../domain/index.js';
import { matchesSelector } from '../domain/index.js';
import { toFleetwardError } from '../errors.js';
import { newestScan } from '../inventory/scans.js';
import { enqueue } from '../kernel/outbox.js';
import type { FinishedScan } from '../kernel/runtime.js';
import type { TicketOutboxPayload } from '../ports/integrations.js';
import type { Store } from '../ports/store.js';
import { buildChangeRequest, pendingSetHash } from './change-request-payload.js';
import { selectPatches } from './selection.js';

/**
 * For every policy with `changeRequests` whose project includes one of `serverIds`: the patches the
 * policy would install on the project's servers (from their latest scans) form a pending set; when
 * no change request exists yet for that project and set, one is recorded and its ticket queued in
 * the outbox (channel `ticket`, a {@link TicketOutboxPayload}), in one transaction. Returns the
 * change requests opened.
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
      const ticket: TicketOutboxPayload = { changeRequestId: id, request: payload };
      const message = await enqueue(tx, {
        tenantId,
        channel: 'ticket',
        destinationId: policy.changeRequests!.integrationId,
        eventType: 'patch.change-request',
        nextAttemptAt: now,
        payload: ticket as unknown as Record<string, unknown>,
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

/**
 * The {@link AfterScanHook} that opens change requests for what a scan found (see
 * {@link requestChangesForScan}), each audited as started; a failure is audited and never fails
 * the scan.
 */
export async function openChangeRequestsAfterScan({
  runtime: fleet,
  tenantId,
  jobId,
  actor,
  results,
}: FinishedScan): Promise<void> {
  try {
    const scanned = results.filter((r) => r.status === 'succeeded').map((r) => r.serverId);
    for (const request of await requestChangesForScan(fleet.store, tenantId, scanned, fleet.clock.now())) {
      await fleet.audit(fleet.store, {
        tenantId,
        actor,
        action: 'patch.plan',
        target: { type: 'change-request', id: request.id },
        decision: 'allow',
        result: 'started',
        details: {
          projectId: request.projectId,
          integrationId: request.integrationId,
          pendingSetHash: request.pendingSetHash,
          jobId,
        },
      });
    }
  } catch (thrown) {
    const error = toFleetwardError(thrown, 'requesting changes');
    await fleet.audit(fleet.store, {
      tenantId,
      actor,
      action: 'patch.plan',
      target: { type: 'job', id: jobId },
      decision: 'allow',
      result: 'failure',
      reason: error.message.slice(0, 2000),
      details: { code: error.code },
    });
  }
}
