import type { Action } from '../authz/actions.js';
import { compileAuthorization } from '../authz/compiled.js';
import {
  type AuthorizationContext,
  type Decision,
  evaluateAnywhere,
  type Resource,
} from '../authz/evaluate.js';
import type { AuditInput, AuditRecord, OutboxMessage, Principal, Server } from '../domain/index.js';
import { validate } from '../domain/index.js';
import { AuthorizationError, toFleetwardError } from '../errors.js';
import type { StoreScope } from '../ports/store.js';
import { type Actor, ActorSchema } from './actor.js';
import type { FleetEvents } from './events.js';
import { enqueueEvent } from './outbox.js';
import {
  impersonationOf,
  type ReachGuard,
  ReachWideningRefusal,
  snapshotReach,
  wideningOf,
} from './reach-guard.js';
import type { Runtime } from './runtime.js';

type Target = NonNullable<AuditInput['target']>;

/** What {@link CallContext.record} writes together in one transaction. */
export interface Occurrence<E extends keyof FleetEvents = keyof FleetEvents> {
  /** The audit record (its tenant is the call's). */
  audit?: Omit<AuditInput, 'tenantId'>;
  /** A webhook event fanned out to the tenant's subscribed endpoints through the outbox. */
  outbox?: { eventType: string; payload: Record<string, unknown> };
  /** The in-process event, emitted only after the transaction committed. */
  event?: { name: E; args: FleetEvents[E] };
}

/**
 * One call's view of the kernel: the runtime, the tenant and the actor, and the machinery every
 * module builds on. Authorization is decided here, every decision leaves an audit record, and a
 * write commits together with its audit record, outbox messages and (after the commit) its event.
 * Modules receive a CallContext; they never see the Fleet.
 */
export interface CallContext {
  /** Shared services: store, clock, secrets, events, adapters, drivers, options. */
  readonly runtime: Runtime;
  readonly tenantId: string;
  readonly actor: Actor;
  /** The calling principal, or undefined when it does not exist (any decision then denies). */
  principal(): Promise<Principal | undefined>;
  /**
   * Decides `action` on every resource (on an empty list: whether the principal may do it
   * anywhere). Any denial is audited, announced as `authz.denied` and thrown before anything
   * happens.
   * @throws AuthorizationError naming the action and the reason of the first denial.
   */
  authorize(action: Action, resources: Resource[], target?: AuditInput['target']): Promise<Principal>;
  /** As {@link CallContext.authorize}, also returning the rule that allowed it, for the caller's audit record. */
  decide(
    action: Action,
    resources: Resource[],
    target?: AuditInput['target'],
  ): Promise<{ principal: Principal; rule: AuditInput['rule'] }>;
  /**
   * Authorizes, then runs `fn` in a transaction together with its success audit record; a failure
   * is audited too (as `failure` with the error's code) and thrown as a FleetwardError. With a
   * `guard`, the change is also decided on what it results in: it is refused (`AuthorizationError`,
   * audited as a deny) when it would widen the caller's own reach or hand another principal
   * something the caller may not do itself.
   */
  write<T>(
    action: Action,
    resources: Resource[],
    target: Target,
    fn: (tx: StoreScope) => Promise<T>,
    details?: (result: T) => Record<string, unknown>,
    guard?: ReachGuard,
  ): Promise<T>;
  /** Authorizes, runs `fn`, and audits the successful read ("who looked at what" is an audit question). */
  read<T>(action: Action, resources: Resource[], target: Target, fn: () => Promise<T>): Promise<T>;
  /** The servers among `servers` the principal may do `action` on, in their order; none for an unknown principal. */
  allowedAmong(action: Action, servers: readonly Server[]): Promise<Server[]>;
  /**
   * Writes what happened in `tx`: the audit record and the outbox fan-out commit or roll back with
   * the caller's other writes. Resolves a function that emits the in-process event; call it after
   * the transaction committed (an event must never announce a state change that rolled back).
   */
  record<E extends keyof FleetEvents>(
    tx: StoreScope,
    occurrence: Occurrence<E>,
  ): Promise<{ audit?: AuditRecord; messages: OutboxMessage[]; emit: () => void }>;
  /**
   * The context of another principal of the same tenant, for work started on that principal's
   * behalf (a runbook step runs as whoever started the run). Authorization is that principal's.
   */
  as(principalId: string): CallContext;
}

/**
 * Creates the context of one actor's calls on `runtime`.
 * @throws ValidationError when `actor` is not a valid {@link Actor}.
 */
export function createCallContext(runtime: Runtime, actor: Actor): CallContext {
  const valid = validate(ActorSchema, actor, 'Actor');
  return new KernelContext(runtime, valid);
}

class KernelContext implements CallContext {
  readonly runtime: Runtime;
  readonly actor: Actor;

  constructor(runtime: Runtime, actor: Actor) {
    this.runtime = runtime;
    this.actor = actor;
  }

  get tenantId(): string {
    return this.actor.tenantId;
  }

  principal(): Promise<Principal | undefined> {
    return this.runtime.store.principals.get(this.tenantId, this.actor.principalId);
  }

  as(principalId: string): CallContext {
    return createCallContext(this.runtime, { tenantId: this.tenantId, principalId });
  }

  async authorize(action: Action, resources: Resource[], target?: AuditInput['target']): Promise<Principal> {
    return (await this.decide(action, resources, target)).principal;
  }

  async decide(
    action: Action,
    resources: Resource[],
    target?: AuditInput['target'],
  ): Promise<{ principal: Principal; rule: AuditInput['rule'] }> {
    const runtime = this.runtime;
    const principal = await this.principal();
    const actorKind = principal?.kind ?? 'human';
    const deny = async (decision: Decision, denied: Decision[]) => {
      await runtime.audit(runtime.store, {
        tenantId: this.tenantId,
        actor: { principalId: this.actor.principalId, kind: actorKind },
        action,
        ...(target ? { target } : {}),
        decision: 'deny',
        result: 'denied',
        reason: decision.reason,
        details: {
          denied: denied
            .slice(0, 100)
            .map((d) => ({ resource: d.resource, reason: d.reason, matched: d.matched })),
        },
      });
      runtime.events.emit('authz.denied', decision);
      throw new AuthorizationError(
        `${this.actor.principalId} may not ${action}: ${decision.reason}`,
        decision,
      );
    };
    if (!principal) {
      const decision: Decision = {
        allowed: false,
        action,
        principalId: this.actor.principalId,
        resource: target ?? { type: 'tenant' },
        reason: 'unknown principal',
      };
      return deny(decision, [decision]);
    }
    const ctx = await this.#authorizationContext(principal);
    // Compiled once per call: a scan or plan over thousands of servers decides each in microseconds.
    const authz = compileAuthorization(ctx);
    // An empty set is no free pass: the principal must be allowed the action somewhere.
    const decisions = resources.length
      ? resources.map((r) => authz.decide(action, r))
      : [evaluateAnywhere(ctx, action, target ?? { type: 'tenant' })];
    const denied = decisions.filter((d) => !d.allowed);
    if (denied.length) await deny(denied[0]!, denied);
    const matched = decisions[0]?.matched;
    const rule = matched
      ? { roleId: matched.roleId, bindingId: matched.bindingId, ruleIndex: matched.ruleIndex }
      : undefined;
    return { principal, rule };
  }

  async write<T>(
    action: Action,
    resources: Resource[],
    target: Target,
    fn: (tx: StoreScope) => Promise<T>,
    details: (result: T) => Record<string, unknown> = () => ({}),
    guard?: ReachGuard,
  ): Promise<T> {
    const runtime = this.runtime;
    const { principal, rule } = await this.decide(action, resources, target);
    const actor = { principalId: principal.id, kind: principal.kind };
    try {
      return await runtime.store.transaction(async (tx) => {
        const now = runtime.clock.now();
        const caller = {
          principalId: principal.id,
          mfaVerifiedAt: this.actor.mfaVerifiedAt ? new Date(this.actor.mfaVerifiedAt) : undefined,
        };
        const before = guard ? await snapshotReach(tx, this.tenantId, guard, caller, now) : undefined;
        const impersonation =
          guard?.impersonates && before
            ? impersonationOf(before, principal.id, guard.impersonates)
            : undefined;
        if (impersonation) throw new ReachWideningRefusal(action, principal.id, target, impersonation);
        const result = await fn(tx);
        if (guard && before) {
          const after = await snapshotReach(tx, this.tenantId, guard, caller, now);
          const widening = wideningOf(before, after, principal.id);
          if (widening) throw new ReachWideningRefusal(action, principal.id, target, widening);
        }
        await runtime.audit(tx, {
          tenantId: this.tenantId,
          actor,
          action,
          target,
          decision: 'allow',
          ...(rule ? { rule } : {}),
          result: 'success',
          details: details(result),
        });
        return result;
      });
    } catch (error) {
      if (error instanceof ReachWideningRefusal) {
        await runtime.audit(runtime.store, {
          tenantId: this.tenantId,
          actor,
          action,
          target,
          decision: 'deny',
          result: 'denied',
          reason: error.decision.reason,
          details: { widening: true },
        });
        runtime.events.emit('authz.denied', error.decision);
        throw error;
      }
      const failure = toFleetwardError(error, action);
      await runtime.audit(runtime.store, {
        tenantId: this.tenantId,
        actor,
        action,
        target,
        decision: 'allow',
        result: 'failure',
        reason: failure.message.slice(0, 2000),
        details: { code: failure.code },
      });
      throw failure;
    }
  }

  async read<T>(action: Action, resources: Resource[], target: Target, fn: () => Promise<T>): Promise<T> {
    const { principal, rule } = await this.decide(action, resources, target);
    const result = await fn();
    await this.runtime.audit(this.runtime.store, {
      tenantId: this.tenantId,
      actor: { principalId: principal.id, kind: principal.kind },
      action,
      target,
      decision: 'allow',
      ...(rule ? { rule } : {}),
      result: 'success',
    });
    return result;
  }

  async allowedAmong(action: Action, servers: readonly Server[]): Promise<Server[]> {
    const principal = await this.principal();
    if (!principal) return [];
    const authz = compileAuthorization(await this.#authorizationContext(principal));
    return servers.filter((server) => authz.decide(action, { type: 'server', server }).allowed);
  }

  async record<E extends keyof FleetEvents>(
    tx: StoreScope,
    occurrence: Occurrence<E>,
  ): Promise<{ audit?: AuditRecord; messages: OutboxMessage[]; emit: () => void }> {
    const audit = occurrence.audit
      ? await this.runtime.audit(tx, { ...occurrence.audit, tenantId: this.tenantId })
      : undefined;
    const messages = occurrence.outbox
      ? await enqueueEvent(tx, {
          tenantId: this.tenantId,
          eventType: occurrence.outbox.eventType,
          payload: occurrence.outbox.payload,
          now: this.runtime.clock.now(),
        })
      : [];
    const event = occurrence.event;
    const emit = () => {
      // eventemitter3's types cannot spread a generic tuple; the Occurrence type checked it.
      if (event)
        (this.runtime.events.emit as (name: E, ...args: unknown[]) => boolean)(event.name, ...event.args);
    };
    return { ...(audit ? { audit } : {}), messages, emit };
  }

  async #authorizationContext(principal: Principal): Promise<AuthorizationContext> {
    const store = this.runtime.store;
    const tenantId = this.tenantId;
    // Only what the principal's bindings name: a decision reads its roles and the projects it is
    // scoped to, never every role and project of the tenant, so its cost does not grow with them.
    const bindings = await store.roleBindings.listAll(tenantId, { where: { principalId: principal.id } });
    const roleIds = [...new Set(bindings.map((b) => b.roleId))];
    const projectIds = [...new Set(bindings.flatMap((b) => b.projectIds ?? []))];
    const [roles, projects] = await Promise.all([
      Promise.all(roleIds.map((id) => store.roles.get(tenantId, id))),
      Promise.all(projectIds.map((id) => store.projects.get(tenantId, id))),
    ]);
    return {
      principal,
      bindings,
      roles: new Map(roles.filter((r) => r !== undefined).map((r) => [r.id, r])),
      projects: new Map(projects.filter((p) => p !== undefined).map((p) => [p.id, p])),
      now: this.runtime.clock.now(),
      mfaVerifiedAt: this.actor.mfaVerifiedAt ? new Date(this.actor.mfaVerifiedAt) : undefined,
    };
  }
}
