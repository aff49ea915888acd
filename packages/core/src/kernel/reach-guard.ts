import type { Action } from '../authz/actions.js';
import type { AuthorizationContext, Decision } from '../authz/evaluate.js';
import {
  describePairs,
  gained,
  notHeld,
  type Reach,
  type ReachPair,
  reachOf,
  reachResources,
} from '../authz/reach.js';
import type { Principal, Server } from '../domain/index.js';
import { AuthorizationError } from '../errors.js';
import type { StoreScope } from '../ports/store.js';

/**
 * Which reaches a change can alter: whose, and over which servers. A change of one server's
 * labels can alter anyone's reach on that server; a project's selector only the reach of
 * principals bound to that project; a binding only its principal's, everywhere.
 */
export interface ReachGuard {
  principals: 'all' | { boundToProject: string } | readonly string[];
  servers: 'all' | readonly string[];
  /** Tenant-wide, per-project and per-script resources too (bindings and roles change those). */
  others: boolean;
  /**
   * The change lets the caller act as this principal (an API token for them): refused unless the
   * caller may already do everything that principal may.
   */
  impersonates?: string;
}

/** The reaches of the guarded principals (the caller always among them), as the scope sees them now. */
export interface ReachSnapshot {
  reaches: Map<string, Reach>;
}

/**
 * Takes the reach of every principal the guard names, plus the caller's, over the guarded
 * servers. Read through `scope`, so inside a transaction it sees the change not yet committed.
 */
export async function snapshotReach(
  scope: StoreScope,
  tenantId: string,
  guard: ReachGuard,
  caller: { principalId: string; mfaVerifiedAt?: Date | undefined },
  now: Date,
): Promise<ReachSnapshot> {
  const [allBindings, roles, projects, servers] = await Promise.all([
    scope.roleBindings.listAll(tenantId),
    scope.roles.listAll(tenantId),
    scope.projects.listAll(tenantId),
    guard.servers === 'all' ? scope.servers.listAll(tenantId) : loadServers(scope, tenantId, guard.servers),
  ]);
  const ids = new Set<string>([caller.principalId]);
  if (guard.principals === 'all') {
    for (const p of await scope.principals.listAll(tenantId)) ids.add(p.id);
  } else if ('boundToProject' in guard.principals) {
    const projectId = guard.principals.boundToProject;
    for (const b of allBindings) if (b.projectIds?.includes(projectId)) ids.add(b.principalId);
  } else {
    for (const id of guard.principals) ids.add(id);
  }
  const roleMap = new Map(roles.map((r) => [r.id, r]));
  const projectMap = new Map(projects.map((p) => [p.id, p]));
  const resources = reachResources({ servers, others: guard.others }, projects, roles);
  const reaches = new Map<string, Reach>();
  for (const id of ids) {
    const principal = await scope.principals.get(tenantId, id);
    if (!principal) continue;
    const ctx: AuthorizationContext = {
      principal: principal as Principal,
      bindings: allBindings.filter((b) => b.principalId === id),
      roles: roleMap,
      projects: projectMap,
      now,
      // Only the caller's own MFA is known; another principal's MFA-gated rules count as held by
      // them, so the caller must hold those pairs as well.
      mfaVerifiedAt: id === caller.principalId ? caller.mfaVerifiedAt : now,
    };
    reaches.set(id, reachOf(ctx, resources));
  }
  return { reaches };
}

async function loadServers(scope: StoreScope, tenantId: string, ids: readonly string[]): Promise<Server[]> {
  const found = await Promise.all(ids.map((id) => scope.servers.get(tenantId, id)));
  return found.filter((s): s is Server => s !== undefined);
}

/**
 * Why the change between two snapshots widens a reach it may not: the caller gained anything, or
 * another principal gained something the caller could not do itself before. `undefined` when not.
 */
export function wideningOf(
  before: ReachSnapshot,
  after: ReachSnapshot,
  callerId: string,
): string | undefined {
  const empty: Reach = new Set();
  const callerBefore = before.reaches.get(callerId) ?? empty;
  for (const [id, reach] of after.reaches) {
    const added: ReachPair[] = gained(before.reaches.get(id) ?? empty, reach, Number.POSITIVE_INFINITY);
    if (!added.length) continue;
    if (id === callerId) {
      return `it would widen ${callerId}'s own reach (${describePairs(added.slice(0, 5))})`;
    }
    const beyond = notHeld(added, callerBefore);
    if (beyond.length) {
      return `it would give ${id} ${describePairs(beyond)}, which ${callerId} may not do itself`;
    }
  }
  return undefined;
}

/** Why acting as `principalId` would give the caller more than it has; `undefined` when it would not. */
export function impersonationOf(
  snapshot: ReachSnapshot,
  callerId: string,
  principalId: string,
): string | undefined {
  if (principalId === callerId) return undefined;
  const empty: Reach = new Set();
  const theirs = snapshot.reaches.get(principalId) ?? empty;
  const beyond = gained(snapshot.reaches.get(callerId) ?? empty, theirs);
  if (!beyond.length) return undefined;
  return `acting as ${principalId} would let ${callerId} do ${describePairs(beyond)}, which it may not do itself`;
}

/** A change refused because of what it results in; an `AuthorizationError` like any other denial. */
export class ReachWideningRefusal extends AuthorizationError {
  declare readonly decision: Decision;
  constructor(action: Action, principalId: string, target: { type: string; id: string }, why: string) {
    const decision: Decision = {
      allowed: false,
      action,
      principalId,
      resource: { type: target.type, id: target.id },
      reason: `refused because ${why}`,
    };
    super(`${principalId} may not ${action}: ${decision.reason}`, decision);
  }
}
