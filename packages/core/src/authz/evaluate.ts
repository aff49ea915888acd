import type { Principal, Project, Role, RoleBinding, Server } from '../domain/index.js';
import { matchesSelector } from '../domain/index.js';
import type { Action } from './actions.js';
import { actionMatches } from './actions.js';

/** What an action is done to: a server, or something else of the tenant (a project, a policy…). */
export type Resource = { type: 'server'; server: Server } | { type: string; id?: string; projectId?: string };

/** Why a decision came out the way it did. */
export interface Decision {
  allowed: boolean;
  action: Action;
  principalId: string;
  resource: { type: string; id?: string };
  /** The binding, role and rule that decided; absent when nothing matched (default deny). */
  matched?: { bindingId: string; roleId: string; ruleIndex: number; effect: 'allow' | 'deny' };
  reason: string;
}

/** Everything the evaluator needs, loaded by the caller from the store. */
export interface AuthorizationContext {
  principal: Principal;
  bindings: RoleBinding[];
  roles: Map<string, Role>;
  projects: Map<string, Project>;
  now: Date;
}

function bindingCovers(binding: RoleBinding, resource: Resource, projects: Map<string, Project>): boolean {
  if (!binding.projectIds) return true;
  if (resource.type === 'server' && 'server' in resource) {
    return binding.projectIds.some((id) => {
      const project = projects.get(id);
      return project !== undefined && matchesSelector(resource.server, project.selector);
    });
  }
  const projectId = 'projectId' in resource ? resource.projectId : undefined;
  return projectId !== undefined && binding.projectIds.includes(projectId);
}

/**
 * Decides whether `principal` may do `action` on `resource`. Deny by default; an explicit deny
 * beats any allow whatever their order; a disabled principal is denied everything.
 */
export function evaluate(ctx: AuthorizationContext, action: Action, resource: Resource): Decision {
  const base = {
    action,
    principalId: ctx.principal.id,
    resource:
      resource.type === 'server' && 'server' in resource
        ? { type: 'server', id: resource.server.id }
        : { type: resource.type, ...('id' in resource && resource.id ? { id: resource.id } : {}) },
  };
  if (ctx.principal.disabled) return { ...base, allowed: false, reason: 'principal is disabled' };
  let allow: Decision['matched'];
  for (const binding of ctx.bindings) {
    if (binding.principalId !== ctx.principal.id) continue;
    if (binding.expiresAt && Date.parse(binding.expiresAt) <= ctx.now.getTime()) continue;
    if (!bindingCovers(binding, resource, ctx.projects)) continue;
    const role = ctx.roles.get(binding.roleId);
    if (!role) continue;
    for (const [ruleIndex, rule] of role.rules.entries()) {
      if (!rule.actions.some((p) => actionMatches(p, action))) continue;
      if (rule.affiliations && !rule.affiliations.includes(ctx.principal.affiliation)) continue;
      if (rule.servers) {
        if (!(resource.type === 'server' && 'server' in resource)) continue;
        if (!matchesSelector(resource.server, rule.servers)) continue;
      }
      const matched = { bindingId: binding.id, roleId: role.id, ruleIndex, effect: rule.effect };
      if (rule.effect === 'deny') {
        return { ...base, allowed: false, matched, reason: `denied by role ${role.name} rule ${ruleIndex}` };
      }
      allow ??= matched;
    }
  }
  if (allow) {
    const role = ctx.roles.get(allow.roleId)!;
    return {
      ...base,
      allowed: true,
      matched: allow,
      reason: `allowed by role ${role.name} rule ${allow.ruleIndex}`,
    };
  }
  return { ...base, allowed: false, reason: 'no role allows it (deny by default)' };
}
