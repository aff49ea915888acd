import type { AuditInput, Principal } from '../domain/index.js';
import type { FleetwardError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';

/**
 * Audits a request refused after its caller was authorized (a server cannot take the grant): a
 * failure of `access.request` with the error's code and message, and `details` saying why.
 * Nothing of the request is stored.
 */
export async function auditRefusedRequest(
  ctx: CallContext,
  refusal: {
    principal: Principal;
    rule: AuditInput['rule'];
    target: { type: string; id: string };
    ticket: string;
    error: FleetwardError;
    details: Record<string, unknown>;
  },
): Promise<void> {
  const { principal, rule, error } = refusal;
  await ctx.runtime.audit(ctx.runtime.store, {
    tenantId: ctx.tenantId,
    actor: { principalId: principal.id, kind: principal.kind },
    action: 'access.request',
    target: refusal.target,
    decision: 'allow',
    ...(rule ? { rule } : {}),
    result: 'failure',
    reason: error.message.slice(0, 2000),
    ticket: refusal.ticket,
    details: { code: error.code, ...refusal.details },
  });
}
