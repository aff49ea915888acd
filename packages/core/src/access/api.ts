import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { z } from 'zod';
import { type Action, isAction } from '../authz/actions.js';
import { type AccessOptions, AccessOptionsSchema } from '../domain/access.js';
import {
  type AccessGrant,
  AccessGrantSchema,
  type AccessRequest,
  AccessRequestSchema,
  type AuditInput,
  IdSchema,
  LoginSchema,
  PublicKeyLineSchema,
  ScriptNameSchema,
  type Server,
  type ServerSelector,
  TimestampSchema,
  validate,
} from '../domain/index.js';
import { ReasonOptionsSchema, validateOptions } from '../domain/options.js';
import { OperationStopLatch, stopsOperation } from '../engine/stop.js';
import { AuthorizationError, ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import { resolveTargets, TargetsSchema } from '../inventory/targets.js';
import { audited, denied } from '../kernel/call-audit.js';
import { type CallContext, createCallContext } from '../kernel/context.js';
import { enqueueEvent } from '../kernel/outbox.js';
import type { Runtime } from '../kernel/runtime.js';
import type { StoreScope } from '../ports/store.js';
import { parsePublicKey } from './authorized-keys.js';
import {
  type AccessConnection,
  type AccessConnectOptions,
  checkEphemeralServers,
  connectThroughGrant,
  settleEphemeralGrant,
} from './ephemeral.js';
import {
  certifyGrant,
  checkServersForGrant,
  installationOf,
  installGrantOn,
  removeGrantFrom,
  serverCheckError,
  withTargets,
} from './grants.js';
import { auditRefusedRequest } from './refusal.js';
import { canCertify } from './ssh-cert.js';

export { type AccessConnection, type AccessConnectOptions, AccessConnectOptionsSchema } from './ephemeral.js';
export { type AccessOptions, AccessOptionsSchema };

/** Validates a ticket reference against a pattern, e.g. `/^(INC|CHG)-\d{3,}$/`. */
export function ticketPattern(pattern: RegExp, example?: string) {
  return (ticket: string): string | undefined =>
    pattern.test(ticket) ? undefined : `must match ${pattern}${example ? ` (like ${example})` : ''}`;
}

/** Actions a grant of mode `actions` must never carry: they would let it widen itself. */
const NOT_GRANTABLE = new Set<string>(['iam.write', 'access.approve', 'keys.rotate', 'audit.read']);

export const AccessRequestOptionsSchema = z
  .strictObject({
    servers: TargetsSchema,
    mode: z.enum(['ssh-key', 'ssh-cert', 'actions', 'ephemeral-key']).default('ssh-key'),
    login: LoginSchema.optional(),
    publicKey: PublicKeyLineSchema.optional(),
    actions: z.array(z.string()).min(1).max(50).optional(),
    scripts: z.array(ScriptNameSchema).min(1).max(200).optional(),
    durationMinutes: z.number().int().min(1),
    startAt: TimestampSchema.optional(),
    reason: z.string().trim().min(10, 'must explain the need in at least 10 characters').max(2000),
    ticket: z.string().trim().min(1, 'is required').max(128),
  })
  .superRefine((v, ctx) => {
    if (v.mode === 'ssh-key' || v.mode === 'ssh-cert') {
      if (!v.login)
        ctx.addIssue({ code: 'custom', path: ['login'], message: `is required for ${v.mode} access` });
      if (!v.publicKey) {
        ctx.addIssue({ code: 'custom', path: ['publicKey'], message: `is required for ${v.mode} access` });
      } else if (v.mode === 'ssh-cert' && !canCertify(v.publicKey.split(' ')[0]!)) {
        ctx.addIssue({
          code: 'custom',
          path: ['publicKey'],
          message: `key type ${v.publicKey.split(' ')[0]} cannot be certified; use Ed25519, ECDSA or RSA`,
        });
      }
      if (v.actions || v.scripts) {
        ctx.addIssue({ code: 'custom', path: ['actions'], message: 'only for mode "actions"' });
      }
    } else if (v.mode === 'ephemeral-key') {
      if (!v.login)
        ctx.addIssue({ code: 'custom', path: ['login'], message: 'is required for ephemeral-key access' });
      if (v.publicKey) {
        ctx.addIssue({
          code: 'custom',
          path: ['publicKey'],
          message: 'is not part of an ephemeral-key request: give it to access.connect for each login',
        });
      }
      if (v.actions || v.scripts) {
        ctx.addIssue({ code: 'custom', path: ['actions'], message: 'only for mode "actions"' });
      }
    } else {
      if (!v.actions)
        ctx.addIssue({ code: 'custom', path: ['actions'], message: 'is required for mode "actions"' });
      for (const [i, action] of (v.actions ?? []).entries()) {
        if (!isAction(action)) {
          ctx.addIssue({
            code: 'custom',
            path: ['actions', i],
            message: `unknown action ${JSON.stringify(action)}`,
          });
        } else if (NOT_GRANTABLE.has(action)) {
          ctx.addIssue({
            code: 'custom',
            path: ['actions', i],
            message: `${action} cannot be granted just in time`,
          });
        }
      }
      if (v.scripts && !v.actions?.includes('script.run')) {
        ctx.addIssue({ code: 'custom', path: ['scripts'], message: 'needs the action script.run' });
      }
      if (v.login || v.publicKey) {
        ctx.addIssue({
          code: 'custom',
          path: ['login'],
          message: 'only for modes "ssh-key", "ssh-cert" and "ephemeral-key"',
        });
      }
    }
  });
export type AccessRequestOptions = z.input<typeof AccessRequestOptionsSchema>;

const DecisionOptionsSchema = z.strictObject({ comment: z.string().max(2000).optional() });
/**
 * Options of approving or rejecting an access request.
 *
 * @useDeclaredType
 */
export type AccessDecisionOptions = z.input<typeof DecisionOptionsSchema>;

/** What one access sweep did. */
export interface SweepResult {
  expiredRequests: string[];
  started: string[];
  expiredGrants: string[];
  installed: number;
  removed: number;
  failures: { grantId: string; serverId: string; message: string }[];
}

const ListRequestsOptionsSchema = z.strictObject({
  mine: z.boolean().optional(),
  status: AccessRequestSchema.shape.status.optional(),
});
const ListGrantsOptionsSchema = z.strictObject({
  mine: z.boolean().optional(),
  status: AccessGrantSchema.shape.status.optional(),
});

const emptySweep = (): SweepResult => ({
  expiredRequests: [],
  started: [],
  expiredGrants: [],
  installed: 0,
  removed: 0,
  failures: [],
});

function selectorOf(targets: z.output<typeof TargetsSchema>, servers: Server[]): ServerSelector {
  if ('selector' in targets) return targets.selector;
  return { ids: servers.map((s) => s.id) };
}

const SERVER_QUEUE_CONCURRENCY = 16;
/** How long a server may take to say whether a requested login exists on it. */
const SERVER_CHECK_TIMEOUT_MS = 20_000;

/** A target that could not be reached when its grant started: tried again by every sweep while the grant lasts. */
const unreachableBefore = (target: AccessGrant['targets'][number]) =>
  target.state === 'failed' &&
  (target.error?.code === 'TRANSPORT_FAILED' || target.error?.code === 'TIMEOUT');

/**
 * Records on the grant why its servers in `serverIds` were left alone: their state is unchanged
 * and their `error` says why (a pending target with an error is not in effect, see
 * {@link installationOf}).
 */
async function noteNotStarted(
  fleet: Runtime,
  grant: AccessGrant,
  serverIds: readonly string[],
  error: { code: string; message: string },
): Promise<AccessGrant> {
  const skipped = new Set(serverIds);
  for (let attempt = 1; ; attempt++) {
    const current = await fleet.store.accessGrants.require(grant.tenantId, grant.id);
    if (skipped.size === 0) return current;
    const targets = current.targets.map((t) => (skipped.has(t.serverId) ? { ...t, error } : t));
    try {
      return await fleet.store.accessGrants.update(grant.tenantId, grant.id, withTargets(current, targets), {
        expectedVersion: current.version,
      });
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= 10) throw e;
    }
  }
}

/**
 * Keeps the request of an open `ssh-key` or `ssh-cert` grant from reading as a success while the
 * grant is not in effect everywhere: `install-failed` while its installation is `partial` or
 * `failed`, `approved` again once a sweep has installed it on every server. Requests in any
 * other state (revoked, ended) are left as they are.
 */
async function settleRequestStatus(fleet: Runtime, grant: AccessGrant): Promise<void> {
  if (grant.mode === 'actions' || grant.status !== 'active') return;
  const installation = installationOf(grant.targets);
  const wanted = installation === 'failed' || installation === 'partial' ? 'install-failed' : 'approved';
  for (let attempt = 1; ; attempt++) {
    const request = await fleet.store.accessRequests.require(grant.tenantId, grant.requestId);
    if (request.status === wanted) return;
    if (request.status !== 'approved' && request.status !== 'install-failed') return;
    try {
      // The change and its webhook (`access.install-failed`, or `access.installed` once a sweep
      // put the key everywhere) in one transaction: a subscriber that saw `access.approved` learns
      // that the access is not (or now is) in effect.
      await fleet.store.transaction(async (tx) => {
        await tx.accessRequests.update(
          grant.tenantId,
          request.id,
          { status: wanted },
          { expectedVersion: request.version },
        );
        await enqueueEvent(tx, {
          tenantId: grant.tenantId,
          eventType: wanted === 'install-failed' ? 'access.install-failed' : 'access.installed',
          payload: {
            tenantId: grant.tenantId,
            requestId: request.id,
            grantId: grant.id,
            requesterId: request.requesterId,
            installation: installationOf(grant.targets),
            servers: grant.targets.map((t) => ({
              serverId: t.serverId,
              state: t.state,
              ...(t.error ? { error: { code: t.error.code, message: t.error.message } } : {}),
            })),
          },
          now: fleet.clock.now(),
        });
      });
      return;
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= 10) throw e;
    }
  }
}

/**
 * Records on the grant why its servers in `notStarted` were left alone (their state unchanged),
 * and audits the stop against the grant, as the system.
 */
async function recordGrantStop(
  fleet: Runtime,
  grant: AccessGrant,
  stop: OperationStopLatch,
  notStarted: string[],
  action: 'access.grant.install' | 'access.grant.remove',
): Promise<void> {
  const why = stop.stopped!;
  await noteNotStarted(fleet, grant, notStarted, {
    code: 'NOT_STARTED',
    message: `${action === 'access.grant.install' ? 'not installed' : 'not removed'}: ${why.reason}`,
  });
  await fleet.audit(fleet.store, {
    tenantId: grant.tenantId,
    actor: { principalId: 'system', kind: 'system' },
    action,
    target: { type: 'access-grant', id: grant.id },
    decision: 'allow',
    result: 'failure',
    reason: `stopped: ${why.reason}`.slice(0, 2000),
    ticket: grant.ticket,
    details: {
      requestId: grant.requestId,
      code: why.code,
      ...stop.details(),
      notStarted: notStarted.slice(0, 1000),
    },
  });
}

/** Installs (when due) and removes (when over) the grant's keys on each of its servers. */
async function reconcileGrant(fleet: Runtime, given: AccessGrant, result: SweepResult): Promise<AccessGrant> {
  let grant = given;
  const tenantId = grant.tenantId;
  if (grant.mode === 'actions') return grant;
  if (grant.mode === 'ephemeral-key') return settleEphemeralGrant(fleet, grant);
  const request = await fleet.store.accessRequests.require(tenantId, grant.requestId);
  const now = fleet.clock.now().getTime();
  const over = grant.status === 'expired' || grant.status === 'revoked';
  const due = !over && Date.parse(grant.notBefore) <= now && now < Date.parse(grant.notAfter);
  if (due && grant.mode === 'ssh-cert' && !grant.certificate) {
    // The certificate comes before any server trusts the CA, so a grant never trusts without one.
    try {
      grant = await certifyGrant(fleet, grant, request.publicKey!);
    } catch (error) {
      const failure = toFleetwardError(error, `signing the certificate of grant ${grant.id}`);
      for (const t of grant.targets)
        result.failures.push({ grantId: grant.id, serverId: t.serverId, message: failure.message });
      // Still pending (the next sweep signs again), but shown as not in effect until then.
      const pending = grant.targets.filter((t) => t.state === 'pending').map((t) => t.serverId);
      grant = await noteNotStarted(fleet, grant, pending, {
        code: failure.code,
        message: `not installed: the certificate could not be signed: ${failure.message}`.slice(0, 4000),
      });
      await settleRequestStatus(fleet, grant);
      return grant;
    }
  }
  const servers = new Map(
    (
      await fleet.store.servers.listAll(tenantId, { selector: { ids: grant.targets.map((t) => t.serverId) } })
    ).map((s) => [s.id, s]),
  );
  // A changed host key stops the grant's installation for good (rule 6): its other servers stay
  // pending until someone has looked, and the grant is revoked or left to expire. Removal goes on
  // in later sweeps, since it takes access away, but tries the servers that stopped it last.
  const stop = new OperationStopLatch();
  const stoppedBefore = grant.targets.find(
    (t) => t.state === 'failed' && stopsOperation(t.error, { id: t.serverId, name: t.serverId }),
  );
  const notStarted: string[] = [];
  const ordered = over
    ? [...grant.targets].sort(
        (a, b) =>
          Number(stopsOperation(a.error, { id: a.serverId, name: a.serverId }) !== undefined) -
          Number(stopsOperation(b.error, { id: b.serverId, name: b.serverId }) !== undefined),
      )
    : grant.targets;
  const queue = new PQueue({ concurrency: SERVER_QUEUE_CONCURRENCY });
  await Promise.all(
    ordered.map((target) =>
      queue.add(async () => {
        const server = servers.get(target.serverId);
        if (!server) return;
        if (due && (target.state === 'pending' || unreachableBefore(target))) {
          if (stop.stopped || stoppedBefore) {
            if (stop.stopped) notStarted.push(server.id);
            return;
          }
          const after = await installGrantOn(fleet, grant, server, request.publicKey!);
          stop.note(after.error, server);
          if (after.state === 'installed') result.installed++;
          else
            result.failures.push({
              grantId: grant.id,
              serverId: server.id,
              message: after.error?.message ?? '',
            });
        } else if (
          over &&
          (target.state === 'installed' || target.state === 'remove-failed' || target.state === 'failed')
        ) {
          if (stop.stopped) {
            notStarted.push(server.id);
            return;
          }
          // A failed install may still have written its line before failing: remove and verify.
          const after = await removeGrantFrom(fleet, grant, server);
          stop.note(after.error, server);
          if (after.state === 'removed') result.removed++;
          else
            result.failures.push({
              grantId: grant.id,
              serverId: server.id,
              message: after.error?.message ?? '',
            });
        }
      }),
    ),
  );
  if (stop.stopped) {
    for (const serverId of notStarted) {
      result.failures.push({ grantId: grant.id, serverId, message: `not started: ${stop.stopped.reason}` });
    }
    await recordGrantStop(
      fleet,
      grant,
      stop,
      notStarted,
      over ? 'access.grant.remove' : 'access.grant.install',
    );
  }
  const updated = await fleet.store.accessGrants.require(tenantId, grant.id);
  if (!over) await settleRequestStatus(fleet, updated);
  if (
    over &&
    !updated.cleanedUp &&
    updated.targets.every((t) => t.state === 'removed' || t.state === 'pending')
  ) {
    return fleet.store.accessGrants.update(
      tenantId,
      grant.id,
      { cleanedUp: true },
      { expectedVersion: updated.version },
    );
  }
  return updated;
}

async function endActionsGrant(tx: StoreScope, grant: AccessGrant): Promise<void> {
  if (grant.bindingId) await tx.roleBindings.delete(grant.tenantId, grant.bindingId);
  if (grant.roleId) await tx.roles.delete(grant.tenantId, grant.roleId);
}

async function startActionsGrant(
  tx: StoreScope,
  grant: AccessGrant,
  request: AccessRequest,
): Promise<AccessGrant> {
  const roleId = `jit-${grant.id}`;
  const servers = { ids: request.serverIds };
  await tx.roles.create({
    tenantId: grant.tenantId,
    id: roleId,
    name: `Just-in-time grant ${grant.id}`,
    description: `Access request ${request.id}, ticket ${request.ticket}: ${request.reason}`.slice(0, 2000),
    rules: [
      { effect: 'allow', actions: request.actions!, servers },
      ...(request.scripts
        ? [{ effect: 'allow' as const, actions: ['script.run'], scripts: request.scripts }]
        : []),
    ],
  });
  const binding = await tx.roleBindings.create({
    tenantId: grant.tenantId,
    principalId: grant.principalId,
    roleId,
    expiresAt: grant.notAfter,
  });
  return tx.accessGrants.update(
    grant.tenantId,
    grant.id,
    { roleId, bindingId: binding.id, status: 'active', installation: 'installed' },
    { expectedVersion: grant.version },
  );
}

/**
 * Housekeeping of one tenant's access, as the system: pending requests past their deadline
 * expire, scheduled grants whose start has come are installed, grants past their end (or revoked)
 * are removed from every server and the removal verified. Safe to run from several processes; a
 * grant changed concurrently is simply picked up by the next sweep.
 */
export async function sweepAccess(fleet: Runtime, tenantId: string): Promise<SweepResult> {
  const store = fleet.store;
  const result = emptySweep();
  const nowDate = fleet.clock.now();
  const now = nowDate.getTime();
  const system = createCallContext(fleet, { tenantId, principalId: 'system' });
  /** The sweep's own audit record of a request or grant it moved on, as the system. */
  const entry = (
    action: 'access.expire' | 'access.grant.start',
    target: { type: 'access-request' | 'access-grant'; id: string },
    ticket: string,
    details: Record<string, unknown>,
    reason?: string,
  ): Omit<AuditInput, 'tenantId'> => ({
    actor: { principalId: 'system', kind: 'system' },
    action,
    target,
    decision: 'allow',
    result: 'success',
    ...(reason ? { reason } : {}),
    ticket,
    details,
  });
  const audit = (tx: StoreScope, ...args: Parameters<typeof entry>) =>
    fleet.audit(tx, { ...entry(...args), tenantId });

  for (const request of await store.accessRequests.listAll(tenantId, { where: { status: 'pending' } })) {
    if (Date.parse(request.expiresAt) > now) continue;
    try {
      await store.transaction(async (tx) => {
        const current = await tx.accessRequests.require(tenantId, request.id);
        if (current.status !== 'pending') return;
        await tx.accessRequests.update(
          tenantId,
          request.id,
          { status: 'expired', decidedAt: nowDate.toISOString() },
          { expectedVersion: current.version },
        );
        await system.record(tx, {
          audit: entry(
            'access.expire',
            { type: 'access-request', id: request.id },
            request.ticket,
            { requesterId: request.requesterId, approvals: request.approvals.length },
            'not decided before it expired',
          ),
          outbox: {
            eventType: 'access.expired',
            payload: {
              tenantId,
              requestId: request.id,
              requesterId: request.requesterId,
              ticket: request.ticket,
            },
          },
        });
      });
      result.expiredRequests.push(request.id);
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
    }
  }

  const open = [
    ...(await store.accessGrants.listAll(tenantId, { where: { status: 'scheduled' } })),
    ...(await store.accessGrants.listAll(tenantId, { where: { status: 'active' } })),
  ];
  for (let grant of open) {
    try {
      if (Date.parse(grant.notAfter) <= now) {
        grant = await store.transaction(async (tx) => {
          const current = await tx.accessGrants.require(tenantId, grant.id);
          if (current.status !== 'active' && current.status !== 'scheduled') return current;
          if (current.mode === 'actions') await endActionsGrant(tx, current);
          const ended = await tx.accessGrants.update(
            tenantId,
            grant.id,
            { status: 'expired' },
            { expectedVersion: current.version },
          );
          const request = await tx.accessRequests.require(tenantId, grant.requestId);
          if (request.status === 'approved' || request.status === 'install-failed') {
            await tx.accessRequests.update(
              tenantId,
              request.id,
              { status: 'ended' },
              { expectedVersion: request.version },
            );
          }
          await audit(
            tx,
            'access.expire',
            { type: 'access-grant', id: grant.id },
            grant.ticket,
            { requestId: grant.requestId, principalId: grant.principalId, notAfter: grant.notAfter },
            'the grant reached its end',
          );
          return ended;
        });
        result.expiredGrants.push(grant.id);
      } else if (grant.status === 'scheduled' && Date.parse(grant.notBefore) <= now) {
        grant = await store.transaction(async (tx) => {
          const current = await tx.accessGrants.require(tenantId, grant.id);
          if (current.status !== 'scheduled') return current;
          const request = await tx.accessRequests.require(tenantId, current.requestId);
          const started =
            current.mode === 'actions'
              ? await startActionsGrant(tx, current, request)
              : await tx.accessGrants.update(
                  tenantId,
                  grant.id,
                  { status: 'active' },
                  { expectedVersion: current.version },
                );
          await audit(tx, 'access.grant.start', { type: 'access-grant', id: grant.id }, grant.ticket, {
            requestId: grant.requestId,
            principalId: grant.principalId,
            notBefore: grant.notBefore,
          });
          return started;
        });
        result.started.push(grant.id);
      }
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      continue;
    }
    await reconcileGrant(fleet, grant, result);
  }

  // Ended grants whose removal is not done yet (a server was down, or the process died).
  for (const status of ['expired', 'revoked'] as const) {
    for (const grant of await store.accessGrants.listAll(tenantId, { where: { status } })) {
      if (grant.cleanedUp || grant.mode === 'actions') continue;
      if (open.some((g) => g.id === grant.id)) continue;
      await reconcileGrant(fleet, grant, result);
    }
  }
  return result;
}

/**
 * Just-in-time access of a session (`session.access`): requests with a reason and a ticket,
 * approvals by others, grants enforced by the servers (an `authorized_keys` line with an expiry,
 * an SSH certificate, or an expiring role binding for mode `actions`), revocation and expiry.
 * Every call is authorized and audited, allowed or denied; the options of the runtime
 * (`createFleet({ access })`) set the approvals needed, the pending TTL, the longest duration and
 * the ticket check.
 */
export interface AccessApi {
  /**
   * Asks for access. Reason and ticket are required (the ticket checked by `validateTicket`);
   * the servers are fixed at request time so approvers approve exactly what will be granted.
   * The requester must be allowed `access.request` on every one of them. The request waits for
   * approval until `pendingTtlMinutes` have passed, and is announced as `access.requested`.
   *
   * Mode `ephemeral-key` (access through Fleetward, see {@link AccessApi.connect}) needs `login`
   * and no `publicKey`, and every server's adapter must have the `ephemeralKeys` capability: a
   * request naming a server without one is refused (audited, nothing stored).
   *
   * For modes `ssh-key`, `ssh-cert` and `ephemeral-key`, every server is then asked, the way the
   * grant will reach it (its adapter, as root), whether `login` exists there: `getent passwd --
   * <login>`, the login one argv element, never shell text; `checkServers.concurrency` servers at
   * a time (default 16), each within `checkServers.timeoutMs` (default 20 s). A server that lacks the login or cannot be
   * asked refuses the whole request: nothing is stored, and the refusal is audited as a failure
   * of `access.request` naming each server and why (`details.refusedBy`). `createFleet({ access:
   * { checkServers: false } })` skips the check.
   * @default options.mode 'ssh-key'
   * @throws ValidationError for options that do not fit {@link AccessRequestOptionsSchema}, a
   *   duration above `maxDurationMinutes` (default 480), a ticket `validateTicket` refuses,
   *   `ssh-cert` without a SecretStore, servers that choose none, or a start in the past; and
   *   when the login does not exist on a server: an issue at `login` naming every server without
   *   it (and one at `servers` naming any that could not be asked); `details.servers` lists each
   *   failing server with its `problem`, `code` and `message`.
   * @throws TransportError when the login exists wherever it could be checked but some servers
   *   could not be asked (unreachable, no answer in time, a changed host key, no adapter with
   *   `exec`, the lookup refused there): the message names each with its code, `details.servers`
   *   lists them all; `retryable` when every one of them is.
   * @throws CapabilityMissingError for mode `ephemeral-key` when the adapter of a server lacks
   *   `ephemeralKeys` (or no adapter is registered for it): the message names each such server,
   *   `details.servers` lists them.
   * @throws AuthorizationError without `access.request` on a server (checked before any server
   *   is asked).
   */
  request(options: AccessRequestOptions): Promise<AccessRequest>;
  /**
   * Approves a request as the calling principal, who must not be the requester and must be
   * allowed `access.approve` on every server of it. The last approval needed (`requiredApprovals`,
   * default 1) creates the grant: its window starts now (or at `startAt`), and for `ssh-key` and
   * `ssh-cert` its key is installed at once. The result says whether that worked: the grant's
   * `installation` is `installed`, `partial` or `failed` (`pending` for a later start), each
   * target says `installed` or `failed` with its error, and a request whose grant is not in effect
   * on every server comes back `install-failed`, not `approved`. A server that could not be
   * reached is tried again by every sweep while the grant lasts; once all are installed the grant
   * reads `installed` and the request `approved`. Other failures (a key with standing access, a
   * login gone since the request, an unsafe path) stay `failed` until the grant ends. Mode
   * `ephemeral-key` installs nothing: its targets read `installed` once the grant starts, without
   * a server being touched, and the grantee connects with {@link AccessApi.connect}.
   * @throws ValidationError for unknown options; NotFoundError for an unknown request.
   * @throws AuthorizationError without `access.approve`, or (audited) for the requester.
   * @throws ConflictError when the request is not pending, has expired or was approved by the
   *   caller already (audited), or changed meanwhile.
   */
  approve(
    requestId: string,
    options?: AccessDecisionOptions,
  ): Promise<{ request: AccessRequest; grant?: AccessGrant }>;
  /**
   * Rejects a request, by someone other than the requester allowed `access.approve` on its
   * servers; announced as `access.rejected`.
   * @throws as {@link AccessApi.approve}.
   */
  reject(requestId: string, options?: AccessDecisionOptions): Promise<AccessRequest>;
  /**
   * The requester withdraws a pending request.
   * @throws AuthorizationError (audited) for anyone but the requester; NotFoundError.
   * @throws ConflictError when the request is not pending.
   */
  cancel(requestId: string): Promise<AccessRequest>;
  /**
   * Ends a grant now: the requester may end their own (`access.request`), others need
   * `access.approve` on its servers. The keys are removed from every server and the removal
   * verified; a server that fails is reported on the grant and tried again by the sweep. An
   * `ephemeral-key` grant has nothing to remove: {@link AccessApi.connect} refuses it from now on,
   * but a key it offered before stays accepted until that offer's `expiresAt` (60 s with EC2
   * Instance Connect), and a session already open is not closed.
   * @throws ValidationError for unknown options; NotFoundError; AuthorizationError.
   * @throws ConflictError when the grant is neither active nor scheduled.
   */
  revoke(grantId: string, options?: { reason?: string }): Promise<AccessGrant>;
  /**
   * One request, whatever its state (history is kept forever): the requester's own, or any with
   * `access.approve` on its servers.
   * @throws NotFoundError; AuthorizationError.
   */
  getRequest(requestId: string): Promise<AccessRequest>;
  /**
   * Requests, newest first. `mine` lists the caller's own; otherwise every request of the
   * tenant, for principals allowed `audit.read` (pending, decided and expired alike).
   * @default options.mine false
   * @throws ValidationError for unknown options; AuthorizationError.
   */
  listRequests(options?: { mine?: boolean; status?: AccessRequest['status'] }): Promise<AccessRequest[]>;
  /**
   * Grants: the caller's own with `mine`, else every grant of the tenant, for `audit.read`.
   * @default options.mine false
   * @throws ValidationError for unknown options; AuthorizationError.
   */
  listGrants(options?: { mine?: boolean; status?: AccessGrant['status'] }): Promise<AccessGrant[]>;
  /**
   * One grant: the grantee's own, or any for `audit.read`.
   * @throws NotFoundError; AuthorizationError.
   */
  getGrant(grantId: string): Promise<AccessGrant>;
  /**
   * Access through Fleetward (grants of mode `ephemeral-key`): makes one server of the caller's
   * grant accept `publicKey` for the grant's login for a short time, through the server adapter's
   * `ephemeralKeys` capability (EC2 Instance Connect: `SendSSHPublicKey`, 60 s), and says where to
   * log in. Nothing is installed on the server; call it again for every login. Only the grantee
   * may call it (and must still be allowed `access.request` somewhere); the grant must be active
   * by the Fleet's clock (`notBefore` ≤ now < `notAfter`) and not revoked, and the server one of
   * its servers. Every call is audited as `access.connect` against the grant, refused or not,
   * with its ticket, the server, the login and the key's fingerprint (never the key itself), and
   * `expiresAt` when the key was accepted.
   * @throws ValidationError for options that do not fit (`publicKey` not an OpenSSH public key
   *   line, at `publicKey`), a grant of another mode (at `grantId`) or a server that is not one of
   *   the grant's (at `serverId`); audited once the caller is known to be the grantee.
   * @throws NotFoundError for an unknown grant, or a server of the grant no longer in the inventory.
   * @throws AuthorizationError (audited as a deny of `access.request`) for anyone but the grantee,
   *   or a grantee no longer allowed `access.request`.
   * @throws ConflictError when the grant is revoked, has expired, or is outside its window.
   * @throws CapabilityMissingError when the server's adapter (no longer) has `ephemeralKeys`.
   * @throws FleetwardError as the adapter's `offer` threw it (e.g. `TransportError`,
   *   `AuthorizationError` when the provider refused the adapter's credentials): nothing was offered.
   */
  connect(options: AccessConnectOptions): Promise<AccessConnection>;
  /**
   * Runs the tenant's access housekeeping now, as the caller: pending requests past their
   * deadline expire, scheduled grants whose start has come are installed, ended grants are removed
   * from every server. Needs `access.approve` tenant-wide; audited even when it found nothing to
   * do. Long-running processes use `createAccessSweeper` instead.
   * @throws AuthorizationError.
   */
  sweep(): Promise<SweepResult>;
}

/**
 * Refuses a request (audited as a failure of `access.request`, nothing stored) when one of its
 * servers cannot take the grant: the login is missing there, or the server cannot be asked. The
 * caller is authorized first, so only those allowed to request access to a server learn anything
 * about its logins.
 */
async function checkRequestedServers(
  ctx: CallContext,
  request: { id: string; servers: Server[]; login: string; ticket: string },
  options: { timeoutMs: number; concurrency: number },
): Promise<void> {
  const target = { type: 'access-request', id: request.id };
  const resources = request.servers.map((server) => ({ type: 'server' as const, server }));
  const { principal, rule } = await ctx.decide('access.request', resources, target);
  const failures = await checkServersForGrant(ctx.runtime, request.servers, request.login, options);
  if (failures.length === 0) return;
  const error = serverCheckError(failures, request.servers.length, request.login);
  await auditRefusedRequest(ctx, {
    principal,
    rule,
    target,
    ticket: request.ticket,
    error,
    details: {
      login: request.login,
      checked: request.servers.length,
      refusedBy: failures
        .slice(0, 100)
        .map((f) => ({ serverId: f.serverId, problem: f.problem, code: f.code, message: f.message })),
      refused: failures.length,
    },
  });
  throw error;
}

/** Just-in-time access: requests, approvals, grants enforced by the servers, revocation. */
export function createAccessApi(internals: () => CallContext): AccessApi {
  const optionsOf = (ctx: CallContext) => {
    const o = ctx.runtime.accessOptions;
    return {
      requiredApprovals: o.requiredApprovals ?? 1,
      pendingTtlMinutes: o.pendingTtlMinutes ?? 24 * 60,
      maxDurationMinutes: o.maxDurationMinutes ?? 8 * 60,
      validateTicket: o.validateTicket,
      checkServers:
        o.checkServers === false
          ? (false as const)
          : {
              timeoutMs: o.checkServers?.timeoutMs ?? SERVER_CHECK_TIMEOUT_MS,
              concurrency: o.checkServers?.concurrency ?? SERVER_QUEUE_CONCURRENCY,
            },
    };
  };

  const serverResources = async (ctx: CallContext, ids: string[]) =>
    (await ctx.runtime.store.servers.listAll(ctx.tenantId, { selector: { ids } })).map((server) => ({
      type: 'server' as const,
      server,
    }));

  async function decide(
    requestId: string,
    verdict: 'approve' | 'reject',
    options: z.input<typeof DecisionOptionsSchema>,
  ): Promise<{ request: AccessRequest; grant?: AccessGrant }> {
    const ctx = internals();
    const fleet = ctx.runtime;
    const store = fleet.store;
    const opts = validate(DecisionOptionsSchema, options, 'AccessDecision');
    const request = await store.accessRequests.require(
      ctx.tenantId,
      validate(IdSchema, requestId, 'requestId'),
    );
    const resources = await serverResources(ctx, request.serverIds);
    const target = { type: 'access-request', id: request.id };
    const { principal, rule } = await ctx.decide('access.approve', resources, target);
    const actor = { principalId: principal.id, kind: principal.kind };
    const refuse = async (message: string, Err: typeof ConflictError | typeof AuthorizationError) => {
      await fleet.audit(store, {
        tenantId: ctx.tenantId,
        actor,
        action: `access.${verdict}`,
        target,
        decision: Err === AuthorizationError ? 'deny' : 'allow',
        result: Err === AuthorizationError ? 'denied' : 'failure',
        reason: message,
        ticket: request.ticket,
      });
      throw Err === AuthorizationError
        ? new AuthorizationError(message, { reason: message })
        : new ConflictError(message);
    };
    if (principal.id === request.requesterId) {
      await refuse(
        `${principal.id} requested ${request.id} and cannot ${verdict} it: approval is by others only`,
        AuthorizationError,
      );
    }
    const now = fleet.clock.now();
    if (request.status !== 'pending')
      await refuse(`request ${request.id} is ${request.status}, not pending`, ConflictError);
    if (Date.parse(request.expiresAt) <= now.getTime()) {
      await refuse(`request ${request.id} expired at ${request.expiresAt}`, ConflictError);
    }
    if (request.approvals.some((a) => a.principalId === principal.id)) {
      await refuse(`${principal.id} already approved request ${request.id}`, ConflictError);
    }
    const entry = {
      principalId: principal.id,
      at: now.toISOString(),
      ...(opts.comment ? { comment: opts.comment } : {}),
    };

    const outcome = await store.transaction(async (tx) => {
      const current = await tx.accessRequests.require(ctx.tenantId, request.id);
      if (current.version !== request.version)
        throw new ConflictError(`request ${request.id} changed; decide again`);
      if (verdict === 'reject') {
        const rejected = await tx.accessRequests.update(
          ctx.tenantId,
          request.id,
          { status: 'rejected', rejection: entry, decidedAt: entry.at },
          { expectedVersion: current.version },
        );
        await ctx.record(tx, {
          audit: {
            actor,
            action: 'access.reject',
            target,
            decision: 'allow',
            ...(rule ? { rule } : {}),
            result: 'success',
            ...(opts.comment ? { reason: opts.comment } : {}),
            ticket: request.ticket,
            details: { requesterId: request.requesterId },
          },
          outbox: {
            eventType: 'access.rejected',
            payload: {
              tenantId: ctx.tenantId,
              requestId: request.id,
              requesterId: request.requesterId,
              rejectedBy: principal.id,
            },
          },
        });
        return { request: rejected };
      }
      const approvals = [...current.approvals, entry];
      const complete = approvals.length >= current.requiredApprovals;
      let grant: AccessGrant | undefined;
      let updated: AccessRequest;
      if (complete) {
        // The window starts now (or at the requested start), never at the time of the request.
        const start = Math.max(now.getTime(), current.startAt ? Date.parse(current.startAt) : 0);
        const grantId = randomUUID();
        grant = await tx.accessGrants.create({
          tenantId: ctx.tenantId,
          id: grantId,
          requestId: current.id,
          principalId: current.requesterId,
          mode: current.mode,
          ...(current.login ? { login: current.login } : {}),
          ...(current.fingerprint ? { fingerprint: current.fingerprint } : {}),
          reason: current.reason,
          ticket: current.ticket,
          approverIds: approvals.map((a) => a.principalId),
          notBefore: new Date(start).toISOString(),
          notAfter: new Date(start + current.durationMinutes * 60_000).toISOString(),
          status: start <= now.getTime() ? 'active' : 'scheduled',
          targets:
            current.mode !== 'actions'
              ? current.serverIds.map((serverId) => ({ serverId, state: 'pending' as const }))
              : [],
        });
        if (grant.mode === 'actions' && grant.status === 'active')
          grant = await startActionsGrant(tx, grant, current);
        updated = await tx.accessRequests.update(
          ctx.tenantId,
          current.id,
          { approvals, status: 'approved', decidedAt: entry.at, grantId },
          { expectedVersion: current.version },
        );
      } else {
        updated = await tx.accessRequests.update(
          ctx.tenantId,
          current.id,
          { approvals },
          { expectedVersion: current.version },
        );
      }
      await ctx.record(tx, {
        audit: {
          actor,
          action: 'access.approve',
          target,
          decision: 'allow',
          ...(rule ? { rule } : {}),
          result: 'success',
          ...(opts.comment ? { reason: opts.comment } : {}),
          ticket: request.ticket,
          details: {
            requesterId: request.requesterId,
            approvals: approvals.length,
            required: current.requiredApprovals,
            ...(grant ? { grantId: grant.id, notBefore: grant.notBefore, notAfter: grant.notAfter } : {}),
          },
        },
        ...(grant
          ? {
              outbox: {
                eventType: 'access.approved',
                payload: {
                  tenantId: ctx.tenantId,
                  requestId: current.id,
                  grantId: grant.id,
                  requesterId: current.requesterId,
                  approverIds: grant.approverIds,
                  notBefore: grant.notBefore,
                  notAfter: grant.notAfter,
                },
              },
            }
          : {}),
      });
      return { request: updated, ...(grant ? { grant } : {}) };
    });
    if (outcome.grant?.status === 'active' && outcome.grant.mode !== 'actions') {
      outcome.grant = await reconcileGrant(fleet, outcome.grant, emptySweep());
      // Reads `install-failed` when the grant did not take effect on every server.
      outcome.request = await store.accessRequests.require(ctx.tenantId, outcome.request.id);
    }
    return outcome;
  }

  return {
    async request(options: AccessRequestOptions): Promise<AccessRequest> {
      const ctx = internals();
      const fleet = ctx.runtime;
      const opts = validate(AccessRequestOptionsSchema, options, 'AccessRequestOptions');
      const config = optionsOf(ctx);
      if (opts.durationMinutes > config.maxDurationMinutes) {
        throw new ValidationError('AccessRequestOptions', [
          { path: ['durationMinutes'], message: `must be at most ${config.maxDurationMinutes} minutes` },
        ]);
      }
      if (config.validateTicket) {
        const problem = await config.validateTicket(opts.ticket);
        if (problem)
          throw new ValidationError('AccessRequestOptions', [{ path: ['ticket'], message: problem }]);
      }
      const fingerprint = opts.publicKey ? parsePublicKey(opts.publicKey).fingerprint : undefined;
      // The user CA lives in the SecretStore: without one, fail now rather than at approval.
      if (opts.mode === 'ssh-cert' && !fleet.secrets) {
        throw new ValidationError('AccessRequestOptions', [
          { path: ['mode'], message: 'ssh-cert access needs a SecretStore (createFleet({ secrets }))' },
        ]);
      }
      const servers = await resolveTargets(fleet.store, ctx.tenantId, opts.servers);
      if (servers.length === 0) {
        throw new ValidationError('AccessRequestOptions', [
          { path: ['servers'], message: 'chooses no server' },
        ]);
      }
      const now = fleet.clock.now();
      if (opts.startAt && Date.parse(opts.startAt) < now.getTime() - 60_000) {
        throw new ValidationError('AccessRequestOptions', [{ path: ['startAt'], message: 'is in the past' }]);
      }
      const id = randomUUID();
      const resources = servers.map((server) => ({ type: 'server' as const, server }));
      if (opts.mode === 'ephemeral-key') {
        await checkEphemeralServers(ctx, { id, servers, ticket: opts.ticket });
      }
      if (opts.mode !== 'actions' && config.checkServers) {
        await checkRequestedServers(
          ctx,
          { id, servers, login: opts.login!, ticket: opts.ticket },
          config.checkServers,
        );
      }
      return ctx.write(
        'access.request',
        resources,
        { type: 'access-request', id },
        async (tx) => {
          const created = await tx.accessRequests.create({
            tenantId: ctx.tenantId,
            id,
            requesterId: ctx.actor.principalId,
            mode: opts.mode,
            servers: selectorOf(opts.servers, servers),
            serverIds: servers.map((s) => s.id),
            ...(opts.login ? { login: opts.login } : {}),
            ...(opts.publicKey ? { publicKey: opts.publicKey, fingerprint } : {}),
            ...(opts.actions ? { actions: opts.actions } : {}),
            ...(opts.scripts ? { scripts: opts.scripts } : {}),
            durationMinutes: opts.durationMinutes,
            ...(opts.startAt ? { startAt: opts.startAt } : {}),
            reason: opts.reason,
            ticket: opts.ticket,
            status: 'pending',
            requiredApprovals: config.requiredApprovals,
            requestedAt: now.toISOString(),
            expiresAt: new Date(now.getTime() + config.pendingTtlMinutes * 60_000).toISOString(),
          });
          await enqueueEvent(tx, {
            tenantId: ctx.tenantId,
            eventType: 'access.requested',
            payload: {
              tenantId: ctx.tenantId,
              requestId: id,
              requesterId: created.requesterId,
              serverIds: created.serverIds,
              mode: created.mode,
              durationMinutes: created.durationMinutes,
              reason: created.reason,
              ticket: created.ticket,
              expiresAt: created.expiresAt,
            },
            now,
          });
          return created;
        },
        (r) => ({
          servers: r.serverIds.length,
          mode: r.mode,
          durationMinutes: r.durationMinutes,
          ticket: r.ticket,
        }),
      );
    },

    approve: (requestId: string, options: AccessDecisionOptions = {}) =>
      decide(requestId, 'approve', options),

    reject: async (requestId: string, options: AccessDecisionOptions = {}) =>
      (await decide(requestId, 'reject', options)).request,

    async cancel(requestId: string): Promise<AccessRequest> {
      const ctx = internals();
      const request = await ctx.runtime.store.accessRequests.require(
        ctx.tenantId,
        validate(IdSchema, requestId, 'requestId'),
      );
      if (request.requesterId !== ctx.actor.principalId) {
        throw await denied(
          ctx,
          'access.request',
          { type: 'access-request', id: request.id },
          'only the requester can cancel a request',
        );
      }
      return ctx.write('access.request', [], { type: 'access-request', id: request.id }, async (tx) => {
        const current = await tx.accessRequests.require(ctx.tenantId, request.id);
        if (current.status !== 'pending')
          throw new ConflictError(`request ${request.id} is ${current.status}, not pending`);
        return tx.accessRequests.update(
          ctx.tenantId,
          request.id,
          { status: 'cancelled', decidedAt: ctx.runtime.clock.now().toISOString() },
          { expectedVersion: current.version },
        );
      });
    },

    async revoke(grantId: string, options: { reason?: string } = {}): Promise<AccessGrant> {
      const ctx = internals();
      const fleet = ctx.runtime;
      const { reason } = validateOptions(ReasonOptionsSchema, options, 'RevokeOptions');
      const grant = await fleet.store.accessGrants.require(
        ctx.tenantId,
        validate(IdSchema, grantId, 'grantId'),
      );
      const request = await fleet.store.accessRequests.require(ctx.tenantId, grant.requestId);
      const own = grant.principalId === ctx.actor.principalId;
      const resources = own ? [] : await serverResources(ctx, request.serverIds);
      const revoked = await ctx.write(
        own ? 'access.request' : 'access.approve',
        resources,
        { type: 'access-grant', id: grant.id },
        async (tx) => {
          const current = await tx.accessGrants.require(ctx.tenantId, grant.id);
          if (current.status !== 'active' && current.status !== 'scheduled') {
            throw new ConflictError(`grant ${grant.id} is ${current.status}`);
          }
          if (current.mode === 'actions') await endActionsGrant(tx, current);
          const updated = await tx.accessGrants.update(
            ctx.tenantId,
            grant.id,
            { status: 'revoked', revokedBy: ctx.actor.principalId },
            { expectedVersion: current.version },
          );
          const currentRequest = await tx.accessRequests.require(ctx.tenantId, request.id);
          await tx.accessRequests.update(
            ctx.tenantId,
            request.id,
            { status: 'revoked' },
            { expectedVersion: currentRequest.version },
          );
          await enqueueEvent(tx, {
            tenantId: ctx.tenantId,
            eventType: 'access.revoked',
            payload: {
              tenantId: ctx.tenantId,
              grantId: grant.id,
              requestId: request.id,
              revokedBy: ctx.actor.principalId,
              ...(reason ? { reason } : {}),
            },
            now: fleet.clock.now(),
          });
          return updated;
        },
        () => ({
          requestId: request.id,
          ...(reason ? { reason: reason.slice(0, 500) } : {}),
        }),
      );
      return reconcileGrant(fleet, revoked, emptySweep());
    },

    getRequest: async (requestId: string) => {
      const ctx = internals();
      const request = await ctx.runtime.store.accessRequests.require(
        ctx.tenantId,
        validate(IdSchema, requestId, 'requestId'),
      );
      const own = request.requesterId === ctx.actor.principalId;
      return ctx.read(
        own ? 'access.request' : 'access.approve',
        own ? [] : await serverResources(ctx, request.serverIds),
        { type: 'access-request', id: request.id },
        async () => request,
      );
    },

    listRequests: async (input: { mine?: boolean; status?: AccessRequest['status'] } = {}) => {
      const ctx = internals();
      const options = validateOptions(ListRequestsOptionsSchema, input, 'ListAccessRequestsOptions');
      const store = ctx.runtime.store;
      const where = {
        ...(options.mine ? { requesterId: ctx.actor.principalId } : {}),
        ...(options.status ? { status: options.status } : {}),
      };
      const list = async () =>
        (await store.accessRequests.listAll(ctx.tenantId, { where })).sort((a, b) =>
          a.requestedAt < b.requestedAt ? 1 : a.requestedAt > b.requestedAt ? -1 : 0,
        );
      return options.mine
        ? ctx.read('access.request', [], { type: 'access-request', id: 'mine' }, list)
        : ctx.read('audit.read', [{ type: 'audit' }], { type: 'access-request', id: '*' }, list);
    },

    listGrants: async (input: { mine?: boolean; status?: AccessGrant['status'] } = {}) => {
      const ctx = internals();
      const options = validateOptions(ListGrantsOptionsSchema, input, 'ListAccessGrantsOptions');
      const store = ctx.runtime.store;
      const where = {
        ...(options.mine ? { principalId: ctx.actor.principalId } : {}),
        ...(options.status ? { status: options.status } : {}),
      };
      const list = () => store.accessGrants.listAll(ctx.tenantId, { where });
      return options.mine
        ? ctx.read('access.request', [], { type: 'access-grant', id: 'mine' }, list)
        : ctx.read('audit.read', [{ type: 'audit' }], { type: 'access-grant', id: '*' }, list);
    },

    getGrant: async (grantId: string) => {
      const ctx = internals();
      const grant = await ctx.runtime.store.accessGrants.require(
        ctx.tenantId,
        validate(IdSchema, grantId, 'grantId'),
      );
      const own = grant.principalId === ctx.actor.principalId;
      return ctx.read(
        own ? 'access.request' : 'audit.read',
        own ? [] : [{ type: 'audit' }],
        { type: 'access-grant', id: grant.id },
        async () => grant,
      );
    },

    connect: (options: AccessConnectOptions) => connectThroughGrant(internals(), options),

    sweep: async () => {
      const ctx = internals();
      const target = { type: 'access-sweep', id: ctx.tenantId };
      const decided = await ctx.decide('access.approve', [{ type: 'access-sweep' }], target);
      // The sweep audits what it moved on as the system; this record is the caller's, so a sweep
      // that found nothing to do is in the log too.
      return audited(
        ctx,
        decided,
        'access.approve',
        target,
        () => sweepAccess(ctx.runtime, ctx.tenantId),
        (r) => ({
          expiredRequests: r.expiredRequests.length,
          started: r.started.length,
          expiredGrants: r.expiredGrants.length,
          installed: r.installed,
          removed: r.removed,
          failures: r.failures.length,
        }),
        (r) => (r.failures.length ? 'failure' : 'success'),
      );
    },
  };
}

export type { Action };
