import type { Principal, Project, Role, RoleBinding, Server } from '../domain/index.js';
import type { Action } from './actions.js';
import { ACTION_NAMES } from './actions.js';
import { compileAuthorization } from './compiled.js';
import type { AuthorizationContext, Decision, Resource } from './evaluate.js';

/** Names to use in explanations instead of ids, when known. */
export interface ExplainNames {
  principal?: Pick<Principal, 'id' | 'name'>;
  roles?: ReadonlyMap<string, Pick<Role, 'name'>>;
}

function describeResource(resource: Decision['resource']): string {
  return resource.id ? `${resource.type} ${resource.id}` : resource.type;
}

/**
 * One sentence saying who may or may not do what on what, and why:
 * `alice may patch.scan on server web-1: allowed by role Ops (binding b-1, rule 0)`.
 */
export function explain(decision: Decision, names: ExplainNames = {}): string {
  const who =
    names.principal && names.principal.id === decision.principalId
      ? names.principal.name
      : decision.principalId;
  const head = `${who} ${decision.allowed ? 'may' : 'may not'} ${decision.action} on ${describeResource(decision.resource)}`;
  const m = decision.matched;
  if (!m) return `${head}: ${decision.reason}`;
  const roleName = names.roles?.get(m.roleId)?.name ?? m.roleId;
  const verb = m.effect === 'deny' ? 'denied' : 'allowed';
  return `${head}: ${verb} by role ${roleName} (binding ${m.bindingId}, rule ${m.ruleIndex})`;
}

export interface Simulation {
  decision: Decision;
  explanation: string;
}

/** Decides and explains without side effects (no audit record, no error). */
export function simulate(ctx: AuthorizationContext, action: Action, resource: Resource): Simulation {
  const decision = compileAuthorization(ctx).decide(action, resource);
  return { decision, explanation: explain(decision, { principal: ctx.principal, roles: ctx.roles }) };
}

export interface PolicySet {
  roles: Role[];
  bindings: RoleBinding[];
}

export interface DiffPoliciesOptions {
  principals: Principal[];
  servers: Server[];
  projects: Project[];
  actions?: readonly Action[];
  now: Date;
  /**
   * Non-server resources to compare too; defaults to the tenant itself (`{ type: 'tenant' }`).
   * Give e.g. `{ type: 'policy', projectId }` to see project-scoped bindings on non-server resources.
   */
  resources?: Resource[];
}

export interface PolicyChange {
  principalId: string;
  action: Action;
  resource: { type: 'server'; id: string } | { type: string; id?: string };
  change: 'gained' | 'lost';
  before: Decision;
  after: Decision;
}

/**
 * Who gains or loses what between two policies: every principal × action × resource (each server
 * and each non-server resource) decided under both, reporting only where `allowed` differs.
 * Changes that only move the reason (another role now allows it) are not reported.
 */
export function diffPolicies(
  before: PolicySet,
  after: PolicySet,
  options: DiffPoliciesOptions,
): PolicyChange[] {
  const actions = options.actions ?? ACTION_NAMES;
  const projects = new Map(options.projects.map((p) => [p.id, p]));
  const resources: Resource[] = [
    ...options.servers.map((server): Resource => ({ type: 'server', server })),
    ...(options.resources ?? [{ type: 'tenant' }]),
  ];
  const context = (set: PolicySet, principal: Principal): AuthorizationContext => ({
    principal,
    bindings: set.bindings.filter((b) => b.principalId === principal.id),
    roles: new Map(set.roles.map((r) => [r.id, r])),
    projects,
    now: options.now,
  });
  const changes: PolicyChange[] = [];
  for (const principal of options.principals) {
    const a = compileAuthorization(context(before, principal));
    const b = compileAuthorization(context(after, principal));
    for (const action of actions) {
      for (const resource of resources) {
        const x = a.decide(action, resource);
        const y = b.decide(action, resource);
        if (x.allowed === y.allowed) continue;
        changes.push({
          principalId: principal.id,
          action,
          resource: y.resource,
          change: y.allowed ? 'gained' : 'lost',
          before: x,
          after: y,
        });
      }
    }
  }
  return changes;
}
