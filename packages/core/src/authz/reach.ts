import type { Project, Role, Server } from '../domain/index.js';
import { ACTION_NAMES, type Action } from './actions.js';
import { compileAuthorization } from './compiled.js';
import type { AuthorizationContext, Resource } from './evaluate.js';

/**
 * What a principal may do, as a set of `action` × resource pairs over a chosen part of the tenant.
 * Two reaches taken before and after a change tell whether the change handed anyone something new.
 */
export type Reach = ReadonlySet<string>;

/** The part of the tenant a reach is taken over. */
export interface ReachResources {
  servers: readonly Server[];
  /** Also the tenant-wide, per-project and per-script resources (bindings and roles change those). */
  others: boolean;
}

/** A pair of a reach, split for messages. */
export interface ReachPair {
  action: Action;
  resource: string;
}

function keyOf(resource: Resource): string {
  if (resource.type === 'server' && 'server' in resource) return `server ${resource.server.id}`;
  const r = resource as { type: string; id?: string; projectId?: string };
  if (r.type === 'script') return `script ${r.id}`;
  if (r.projectId !== undefined) return `project ${r.projectId}`;
  return 'tenant';
}

/**
 * The resources a reach is taken over: every server given and, with `others`, one tenant-wide
 * resource, one per project (what a project-bound binding covers) and one per script that any
 * role names (script rules match by name).
 */
export function reachResources(
  scope: ReachResources,
  projects: Iterable<Project>,
  roles: Iterable<Role>,
): Resource[] {
  const resources: Resource[] = scope.servers.map((server) => ({ type: 'server', server }));
  if (!scope.others) return resources;
  resources.push({ type: 'tenant' });
  for (const project of projects) resources.push({ type: 'project', id: project.id, projectId: project.id });
  const scripts = new Set<string>();
  for (const role of roles) for (const rule of role.rules) for (const s of rule.scripts ?? []) scripts.add(s);
  for (const name of scripts) resources.push({ type: 'script', id: name });
  return resources;
}

/** Every action × resource pair the context's principal is allowed. */
export function reachOf(ctx: AuthorizationContext, resources: readonly Resource[]): Reach {
  const authz = compileAuthorization(ctx);
  const reach = new Set<string>();
  for (const resource of resources) {
    const key = keyOf(resource);
    for (const action of ACTION_NAMES) {
      if (authz.decide(action, resource).allowed) reach.add(`${action}\u0000${key}`);
    }
  }
  return reach;
}

/** The pairs of `after` that `before` does not have, at most `limit` of them. */
export function gained(before: Reach, after: Reach, limit = 5): ReachPair[] {
  const out: ReachPair[] = [];
  for (const pair of after) {
    if (before.has(pair)) continue;
    const [action, resource] = pair.split('\u0000') as [Action, string];
    out.push({ action, resource });
    if (out.length >= limit) break;
  }
  return out;
}

/** The pairs of `wanted` that `held` does not cover, at most `limit` of them. */
export function notHeld(wanted: Iterable<ReachPair>, held: Reach, limit = 5): ReachPair[] {
  const out: ReachPair[] = [];
  for (const pair of wanted) {
    if (held.has(`${pair.action}\u0000${pair.resource}`)) continue;
    out.push(pair);
    if (out.length >= limit) break;
  }
  return out;
}

/** "script.run on server db-1, inventory.write on server db-2" */
export function describePairs(pairs: readonly ReachPair[]): string {
  return pairs.map((p) => `${p.action} on ${p.resource}`).join(', ');
}
