import type { Principal, Project, Role, RoleBinding, RoleRule, Server } from '../domain/index.js';
import { describeSelector, matchesSelector } from '../domain/index.js';
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
  /** When the actor last verified MFA; rules with `mfaWithinMinutes` need it recent enough. */
  mfaVerifiedAt?: Date | undefined;
}

/** Whether a rule's MFA condition holds for the context (true when the rule has none). */
export function mfaSatisfied(
  rule: RoleRule,
  ctx: Pick<AuthorizationContext, 'now' | 'mfaVerifiedAt'>,
): boolean {
  if (rule.mfaWithinMinutes === undefined) return true;
  const at = ctx.mfaVerifiedAt?.getTime();
  if (at === undefined || Number.isNaN(at)) return false;
  const age = ctx.now.getTime() - at;
  return age >= -60_000 && age <= rule.mfaWithinMinutes * 60_000;
}

/** What an allow rule is limited to, for a default deny that it did not cover. */
export function scopeOf(rule: RoleRule, binding: RoleBinding): string {
  const parts: string[] = [];
  if (rule.servers) parts.push(`servers matching ${describeSelector(rule.servers)}`);
  if (rule.scripts) parts.push(`scripts ${rule.scripts.join(', ')}`);
  if (binding.projectIds) parts.push(`servers of project ${binding.projectIds.join(', ')}`);
  return parts.join(' and ');
}

/** The sentence a default deny adds for an allow rule of the action that did not cover the resource. */
export function scopeHint(roleName: string, ruleIndex: number, scope: string): string {
  return `; role ${roleName} rule ${ruleIndex} allows it only on ${scope}`;
}

/** The sentence a default deny adds for a rule that would have allowed but for its MFA condition. */
export function mfaHint(roleName: string, ruleIndex: number, rule: RoleRule): string {
  return `; role ${roleName} rule ${ruleIndex} would allow it with MFA verified within ${rule.mfaWithinMinutes} minutes`;
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

/** The rules of the principal's live bindings that name `action` and its affiliation, in order. */
function* rulesFor(
  ctx: AuthorizationContext,
  action: Action,
): Generator<{ binding: RoleBinding; role: Role; rule: RoleRule; ruleIndex: number }> {
  for (const binding of ctx.bindings) {
    if (binding.principalId !== ctx.principal.id) continue;
    if (binding.expiresAt && Date.parse(binding.expiresAt) <= ctx.now.getTime()) continue;
    const role = ctx.roles.get(binding.roleId);
    if (!role) continue;
    for (const [ruleIndex, rule] of role.rules.entries()) {
      if (!rule.actions.some((p) => actionMatches(p, action))) continue;
      if (rule.affiliations && !rule.affiliations.includes(ctx.principal.affiliation)) continue;
      yield { binding, role, rule, ruleIndex };
    }
  }
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
  let hint = '';
  let nearMiss = '';
  for (const { binding, role, rule, ruleIndex } of rulesFor(ctx, action)) {
    const miss = () => {
      if (rule.effect === 'allow' && !nearMiss)
        nearMiss = scopeHint(role.name, ruleIndex, scopeOf(rule, binding));
    };
    if (!bindingCovers(binding, resource, ctx.projects)) {
      miss();
      continue;
    }
    if (rule.servers) {
      if (
        !(resource.type === 'server' && 'server' in resource) ||
        !matchesSelector(resource.server, rule.servers)
      ) {
        miss();
        continue;
      }
    }
    if (rule.scripts) {
      if (
        resource.type !== 'script' ||
        !('id' in resource) ||
        !resource.id ||
        !rule.scripts.includes(resource.id)
      ) {
        miss();
        continue;
      }
    }
    if (!mfaSatisfied(rule, ctx)) {
      if (rule.effect === 'allow' && !hint) hint = mfaHint(role.name, ruleIndex, rule);
      continue;
    }
    const matched = { bindingId: binding.id, roleId: role.id, ruleIndex, effect: rule.effect };
    if (rule.effect === 'deny') {
      return { ...base, allowed: false, matched, reason: `denied by role ${role.name} rule ${ruleIndex}` };
    }
    allow ??= matched;
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
  return { ...base, allowed: false, reason: `no role allows it (deny by default)${hint || nearMiss}` };
}

/**
 * Decides `action` when a call names no resource at all (a list to be filtered one by one, a plan
 * whose servers are all gone): allowed only when some allow rule of the principal covers the
 * action somewhere, and no deny that is not limited to servers, scripts or projects forbids it.
 * So a principal without any rule for the action is refused, never let through by an empty set.
 */
export function evaluateAnywhere(
  ctx: AuthorizationContext,
  action: Action,
  resource: { type: string; id?: string },
): Decision {
  const base = { action, principalId: ctx.principal.id, resource };
  if (ctx.principal.disabled) return { ...base, allowed: false, reason: 'principal is disabled' };
  let allow: Decision['matched'];
  for (const { binding, role, rule, ruleIndex } of rulesFor(ctx, action)) {
    if (!mfaSatisfied(rule, ctx)) continue;
    const matched = { bindingId: binding.id, roleId: role.id, ruleIndex, effect: rule.effect };
    if (rule.effect === 'deny') {
      if (binding.projectIds || rule.servers || rule.scripts) continue;
      return { ...base, allowed: false, matched, reason: `denied by role ${role.name} rule ${ruleIndex}` };
    }
    allow ??= matched;
  }
  if (!allow)
    return { ...base, allowed: false, reason: `no role allows ${action} on anything (deny by default)` };
  const role = ctx.roles.get(allow.roleId)!;
  return {
    ...base,
    allowed: true,
    matched: allow,
    reason: `allowed by role ${role.name} rule ${allow.ruleIndex}`,
  };
}
