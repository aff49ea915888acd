import type { RoleBinding, Server, ServerSelector } from '../domain/index.js';
import type { Action } from './actions.js';
import {
  type AuthorizationContext,
  type Decision,
  mfaHint,
  mfaSatisfied,
  type Resource,
  scopeHint,
  scopeOf,
} from './evaluate.js';

/** A precompiled server predicate; the same answers as `matchesSelector` for a fixed selector. */
export type ServerPredicate = (server: Server) => boolean;

const never: ServerPredicate = () => false;

/**
 * Turns a selector into a predicate with the exact semantics of `matchesSelector`: an empty
 * selector matches nothing, all criteria AND, list entries OR, labels compared directly.
 */
export function compileSelector(selector: ServerSelector): ServerPredicate {
  const hasCriteria = Boolean(
    selector.ids ||
      selector.providers ||
      selector.accountIds ||
      selector.regions ||
      (selector.labels && Object.keys(selector.labels).length) ||
      selector.expressions?.length,
  );
  if (!selector.all && !hasCriteria) return never;
  const checks: ServerPredicate[] = [];
  if (selector.ids) {
    const ids = new Set(selector.ids);
    checks.push((s) => ids.has(s.id));
  }
  if (selector.providers) {
    const providers = new Set<string>(selector.providers);
    checks.push((s) => providers.has(s.provider));
  }
  if (selector.accountIds) {
    const accounts = new Set(selector.accountIds);
    checks.push((s) => accounts.has(s.accountId));
  }
  if (selector.regions) {
    const regions = new Set(selector.regions);
    checks.push((s) => s.region !== undefined && regions.has(s.region));
  }
  const labels = Object.entries(selector.labels ?? {});
  if (labels.length === 1) {
    const [k, v] = labels[0]!;
    checks.push((s) => s.labels[k] === v);
  } else if (labels.length > 1) {
    checks.push((s) => {
      for (const [k, v] of labels) if (s.labels[k] !== v) return false;
      return true;
    });
  }
  for (const e of selector.expressions ?? []) {
    const key = e.key;
    const values = new Set(e.values ?? []);
    switch (e.operator) {
      case 'Exists':
        checks.push((s) => Object.hasOwn(s.labels, key));
        break;
      case 'DoesNotExist':
        checks.push((s) => !Object.hasOwn(s.labels, key));
        break;
      case 'In':
        checks.push((s) => Object.hasOwn(s.labels, key) && values.has(s.labels[key]!));
        break;
      case 'NotIn':
        checks.push((s) => !(Object.hasOwn(s.labels, key) && values.has(s.labels[key]!)));
        break;
    }
  }
  if (checks.length === 0) return () => true;
  if (checks.length === 1) return checks[0]!;
  return (s) => {
    for (const check of checks) if (!check(s)) return false;
    return true;
  };
}

/** One (live binding, rule) pair of the principal, in evaluation order. */
interface Entry {
  seq: number;
  matched: NonNullable<Decision['matched']>;
  reason: string;
  /** The binding's project ids; undefined for a tenant-wide binding. */
  projectIds: readonly string[] | undefined;
  /** The rule's server predicate; undefined when the rule is not limited to servers. */
  servers: ServerPredicate | undefined;
  /** The rule's script names; undefined when the rule is not limited to scripts. */
  scripts: ReadonlySet<string> | undefined;
  /** Set when the rule's MFA condition does not hold: it never matches, it only explains. */
  mfaHint: string | undefined;
  /** For an allow rule: how a default deny names it when it did not cover the resource. */
  scopeHint: string;
}

export interface CompiledAuthorization {
  /** The same Decision as `evaluate(ctx, action, resource)`, field for field. */
  decide(action: Action, resource: Resource): Decision;
}

function isServer(resource: Resource): resource is { type: 'server'; server: Server } {
  return resource.type === 'server' && 'server' in resource;
}

function serverRef(server: Server): Decision['resource'] {
  return { type: 'server', id: server.id };
}

function otherRef(resource: Resource): Decision['resource'] {
  return { type: resource.type, ...('id' in resource && resource.id ? { id: resource.id } : {}) };
}

function coversAny(projectIds: readonly string[], memberOf: Set<string>): boolean {
  for (const id of projectIds) if (memberOf.has(id)) return true;
  return false;
}

function baseOf(action: Action, principalId: string, resource: Resource) {
  return {
    action,
    principalId,
    resource: isServer(resource) ? serverRef(resource.server) : otherRef(resource),
  };
}

/**
 * Compiles a principal's authorization context once so that many decisions are cheap.
 *
 * The context is a snapshot: bindings that are foreign, expired at `ctx.now`, point to a missing
 * role or whose rules exclude the principal's affiliation are dropped up front. Rules are indexed
 * by action pattern (exact, `family.*`, `*`) and merged per action, in the evaluator's order, on
 * first use. Project membership is cached per server id (and server object, so a changed server
 * object is re-evaluated).
 */
export function compileAuthorization(ctx: AuthorizationContext): CompiledAuthorization {
  const principal = ctx.principal;
  const principalId = principal.id;
  if (principal.disabled) {
    return {
      decide: (action, resource) => ({
        ...baseOf(action, principalId, resource),
        allowed: false,
        reason: 'principal is disabled',
      }),
    };
  }

  const exact = new Map<string, Entry[]>();
  const family = new Map<string, Entry[]>();
  const star: Entry[] = [];
  const push = (map: Map<string, Entry[]>, key: string, entry: Entry) => {
    const list = map.get(key);
    if (list) list.push(entry);
    else map.set(key, [entry]);
  };
  const projectIdsInUse = new Set<string>();
  const nowMs = ctx.now.getTime();
  let seq = 0;
  const live = (b: RoleBinding) =>
    b.principalId === principalId && !(b.expiresAt && Date.parse(b.expiresAt) <= nowMs);
  for (const binding of ctx.bindings) {
    if (!live(binding)) continue;
    const role = ctx.roles.get(binding.roleId);
    if (!role) continue;
    for (const id of binding.projectIds ?? []) projectIdsInUse.add(id);
    for (const [ruleIndex, rule] of role.rules.entries()) {
      if (rule.affiliations && !rule.affiliations.includes(principal.affiliation)) continue;
      const entry: Entry = {
        seq: seq++,
        matched: { bindingId: binding.id, roleId: role.id, ruleIndex, effect: rule.effect },
        reason: `${rule.effect === 'deny' ? 'denied' : 'allowed'} by role ${role.name} rule ${ruleIndex}`,
        projectIds: binding.projectIds,
        servers: rule.servers ? compileSelector(rule.servers) : undefined,
        scripts: rule.scripts ? new Set(rule.scripts) : undefined,
        mfaHint: mfaSatisfied(rule, ctx) ? undefined : mfaHint(role.name, ruleIndex, rule),
        scopeHint: rule.effect === 'allow' ? scopeHint(role.name, ruleIndex, scopeOf(rule, binding)) : '',
      };
      // A deny whose condition fails can never apply; an allow is kept to explain the denial.
      if (entry.mfaHint && rule.effect === 'deny') continue;
      for (const pattern of new Set(rule.actions)) {
        if (pattern === '*') star.push(entry);
        else if (pattern.endsWith('.*')) push(family, pattern.slice(0, -1), entry);
        else push(exact, pattern, entry);
      }
    }
  }

  const byAction = new Map<string, Entry[]>();
  const candidates = (action: string): Entry[] => {
    let list = byAction.get(action);
    if (list) return list;
    const found = new Set<Entry>(exact.get(action));
    for (const e of star) found.add(e);
    // `x.*` covers every action starting with `x.`; try each prefix ending in a dot.
    for (const [prefix, entries] of family) {
      if (action.startsWith(prefix)) for (const e of entries) found.add(e);
    }
    list = [...found].sort((a, b) => a.seq - b.seq);
    byAction.set(action, list);
    return list;
  };

  const projectPredicates: [string, ServerPredicate][] = [];
  for (const id of projectIdsInUse) {
    const project = ctx.projects.get(id);
    if (project) projectPredicates.push([id, compileSelector(project.selector)]);
  }
  const membership = new Map<string, { server: Server; projects: Set<string> }>();
  const projectsOf = (server: Server): Set<string> => {
    const cached = membership.get(server.id);
    if (cached && cached.server === server) return cached.projects;
    const projects = new Set<string>();
    for (const [id, pred] of projectPredicates) if (pred(server)) projects.add(id);
    membership.set(server.id, { server, projects });
    return projects;
  };

  const decision = (
    action: Action,
    resource: Decision['resource'],
    entry: Entry | undefined,
    hint = '',
  ): Decision => {
    if (!entry) {
      return {
        action,
        principalId,
        resource,
        allowed: false,
        reason: `no role allows it (deny by default)${hint}`,
      };
    }
    const m = entry.matched;
    return {
      action,
      principalId,
      resource,
      allowed: m.effect === 'allow',
      matched: { bindingId: m.bindingId, roleId: m.roleId, ruleIndex: m.ruleIndex, effect: m.effect },
      reason: entry.reason,
    };
  };

  return {
    decide(action, resource) {
      if (isServer(resource)) {
        const server = resource.server;
        let serverProjects: Set<string> | undefined;
        let allow: Entry | undefined;
        let hint: string | undefined;
        let nearMiss: string | undefined;
        for (const entry of candidates(action)) {
          if (entry.projectIds) {
            serverProjects ??= projectsOf(server);
            if (!coversAny(entry.projectIds, serverProjects)) {
              nearMiss ||= entry.scopeHint;
              continue;
            }
          }
          if ((entry.servers && !entry.servers(server)) || entry.scripts) {
            nearMiss ||= entry.scopeHint;
            continue;
          }
          if (entry.mfaHint) {
            hint ??= entry.mfaHint;
            continue;
          }
          if (entry.matched.effect === 'deny') return decision(action, serverRef(server), entry);
          allow ??= entry;
        }
        return decision(action, serverRef(server), allow, hint || nearMiss);
      }
      const projectId = 'projectId' in resource ? resource.projectId : undefined;
      const resourceId = 'id' in resource ? resource.id : undefined;
      let allow: Entry | undefined;
      let hint: string | undefined;
      let nearMiss: string | undefined;
      for (const entry of candidates(action)) {
        if (
          (entry.projectIds && (projectId === undefined || !entry.projectIds.includes(projectId))) ||
          entry.servers ||
          (entry.scripts && !(resource.type === 'script' && resourceId && entry.scripts.has(resourceId)))
        ) {
          nearMiss ||= entry.scopeHint;
          continue;
        }
        if (entry.mfaHint) {
          hint ??= entry.mfaHint;
          continue;
        }
        if (entry.matched.effect === 'deny') return decision(action, otherRef(resource), entry);
        allow ??= entry;
      }
      return decision(action, otherRef(resource), allow, hint || nearMiss);
    },
  };
}
