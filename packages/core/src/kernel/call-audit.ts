import type { Action } from '../authz/actions.js';
import type { Decision } from '../authz/evaluate.js';
import type { AuditInput, Principal } from '../domain/index.js';
import { AuthorizationError, type FleetwardError, toFleetwardError } from '../errors.js';
import type { CallContext } from './context.js';

// Rule 1 of the design: every call is decided and leaves an audit record, whether it was allowed
// or denied, and whatever became of it afterwards. `ctx.write` does this for writes in one
// transaction; these helpers are for calls that refuse or finish outside one.

type Target = NonNullable<AuditInput['target']>;
/** The principal an audit record names. @inline */
type Caller = Pick<Principal, 'id' | 'kind'>;
type Rule = AuditInput['rule'];

/**
 * Audits a call refused after its allow decision (a plan that is not approved, a run that has not
 * started, an adapter that cannot do it) as a failure with its reason and code, and returns the
 * typed error to throw: `throw await refused(ctx, principal, action, target, new ConflictError(…))`.
 */
export async function refused(
  ctx: CallContext,
  caller: Caller,
  action: string,
  target: Target,
  error: unknown,
  rule?: Rule,
): Promise<FleetwardError> {
  const failure = toFleetwardError(error, action);
  await ctx.runtime.audit(ctx.runtime.store, {
    tenantId: ctx.tenantId,
    actor: { principalId: caller.id, kind: caller.kind },
    action,
    target,
    decision: 'allow',
    ...(rule ? { rule } : {}),
    result: 'failure',
    reason: failure.message.slice(0, 2000),
    details: { code: failure.code },
  });
  return failure;
}

/**
 * Audits a refusal that is itself an authorization decision made by the workflow (only the
 * requester may cancel, the requester may not approve) as a deny, announces it like every other
 * denial, and returns the `AuthorizationError` to throw.
 */
export async function denied(
  ctx: CallContext,
  action: Action,
  target: Target,
  reason: string,
): Promise<AuthorizationError> {
  const principal = await ctx.runtime.store.principals.get(ctx.tenantId, ctx.actor.principalId);
  const decision: Decision = {
    allowed: false,
    action,
    principalId: ctx.actor.principalId,
    resource: target,
    reason,
  };
  await ctx.runtime.audit(ctx.runtime.store, {
    tenantId: ctx.tenantId,
    actor: { principalId: ctx.actor.principalId, kind: principal?.kind ?? 'human' },
    action,
    target,
    decision: 'deny',
    result: 'denied',
    reason,
    details: { denied: [{ resource: target, reason }] },
  });
  ctx.runtime.events.emit('authz.denied', decision);
  return new AuthorizationError(`${ctx.actor.principalId} may not ${action}: ${reason}`, decision);
}

/**
 * Runs `fn` for a call already decided as allowed, and leaves the call's own audit record whatever
 * happens: `success` (or what `result` says) with `details`, or `failure` with the error's reason
 * and code. For calls whose work audits only what it did, so that one that found nothing to do is
 * in the log too.
 */
export async function audited<T>(
  ctx: CallContext,
  decided: { principal: Caller; rule?: Rule },
  action: string,
  target: Target,
  fn: () => Promise<T>,
  details: (result: T) => Record<string, unknown> = () => ({}),
  result: (value: T) => 'success' | 'failure' = () => 'success',
): Promise<T> {
  let value: T;
  try {
    value = await fn();
  } catch (error) {
    throw await refused(ctx, decided.principal, action, target, error, decided.rule);
  }
  await ctx.runtime.audit(ctx.runtime.store, {
    tenantId: ctx.tenantId,
    actor: { principalId: decided.principal.id, kind: decided.principal.kind },
    action,
    target,
    decision: 'allow',
    ...(decided.rule ? { rule: decided.rule } : {}),
    result: result(value),
    details: details(value),
  });
  return value;
}
