import { z } from 'zod';
import {
  type AccessGrant,
  type AuditInput,
  IdSchema,
  PublicKeyLineSchema,
  type Server,
  validate,
} from '../domain/index.js';
import {
  CapabilityMissingError,
  ConflictError,
  NotFoundError,
  toFleetwardError,
  ValidationError,
} from '../errors.js';
import { denied } from '../kernel/call-audit.js';
import type { CallContext } from '../kernel/context.js';
import type { Runtime } from '../kernel/runtime.js';
import type { Adapter } from '../ports/adapter.js';
import { parsePublicKey } from './authorized-keys.js';
import { withTargets } from './grants.js';
import { auditRefusedRequest } from './refusal.js';

/**
 * Grants of mode `ephemeral-key`: access through Fleetward. Nothing is installed on a server; while
 * the grant is active its grantee asks for each login, and the server's adapter makes the server
 * accept the grantee's key for a short time (`ephemeralKeys.offer`, EC2 Instance Connect: 60 s).
 */

export const AccessConnectOptionsSchema = z.strictObject({
  /** The grant to connect through: the caller's own, of mode `ephemeral-key`, active now. */
  grantId: IdSchema,
  /** One of the grant's servers. */
  serverId: IdSchema,
  /**
   * The OpenSSH public key line the server should accept; the private key never leaves the
   * caller. Checked as a key after authorization, so a refused key is audited.
   */
  publicKey: z.string().max(16_384),
});
/**
 * Options of `access.connect`.
 *
 * @useDeclaredType
 */
export type AccessConnectOptions = z.input<typeof AccessConnectOptionsSchema>;

/** What `access.connect` resolves: where and as whom to log in, and until when to start. */
export interface AccessConnection {
  serverId: string;
  /** The server's address as the inventory has it, when it has one. */
  address?: string;
  /** The login the grant is for: log in as this user. */
  login: string;
  /** The server accepts the key until this instant (ISO 8601, UTC): the login must start before. */
  expiresAt: string;
  /** The `SHA256:` fingerprint of the key offered, as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** The adapter of `server` when it can offer ephemeral keys, else undefined (also for no adapter). */
function ephemeralAdapterOf(fleet: Runtime, server: Server): Adapter | undefined {
  try {
    const adapter = fleet.adapterFor(server);
    return adapter.ephemeralKeys ? adapter : undefined;
  } catch (error) {
    if (error instanceof CapabilityMissingError) return undefined;
    throw error;
  }
}

/**
 * Refuses an `ephemeral-key` request (audited as a failure of `access.request`, nothing stored)
 * when the adapter of one of its servers lacks the `ephemeralKeys` capability, naming each such
 * server. The caller is authorized first, so only those allowed to request access to a server
 * learn how it is reached.
 * @throws CapabilityMissingError naming the servers (`details.servers`).
 */
export async function checkEphemeralServers(
  ctx: CallContext,
  request: { id: string; servers: Server[]; ticket: string },
): Promise<void> {
  const target = { type: 'access-request', id: request.id };
  const resources = request.servers.map((server) => ({ type: 'server' as const, server }));
  const { principal, rule } = await ctx.decide('access.request', resources, target);
  const lacking = request.servers.filter((server) => !ephemeralAdapterOf(ctx.runtime, server));
  if (lacking.length === 0) return;
  const names = lacking.slice(0, 20).map((s) => `${s.name} (adapter ${s.adapter ?? s.provider})`);
  const more = lacking.length > 20 ? `; and ${lacking.length - 20} more` : '';
  const error = new CapabilityMissingError(
    `ephemeral-key access needs adapters with the ephemeralKeys capability; ${lacking.length} of ${request.servers.length} server(s) have none: ${names.join('; ')}${more}`,
    {
      details: {
        servers: lacking.slice(0, 1000).map((s) => ({ serverId: s.id, adapter: s.adapter ?? s.provider })),
      },
    },
  );
  await auditRefusedRequest(ctx, {
    principal,
    rule,
    target,
    ticket: request.ticket,
    error,
    details: {
      mode: 'ephemeral-key',
      checked: request.servers.length,
      refusedBy: lacking.slice(0, 100).map((s) => ({ serverId: s.id, code: error.code })),
      refused: lacking.length,
    },
  });
  throw error;
}

/**
 * Mode `ephemeral-key` installs nothing: once due, its pending targets read `installed` without a
 * server being touched (see `GrantTargetSchema`); once the grant is over it is `cleanedUp` at
 * once, as nothing outlives the keys offered through it. Retries concurrent updates.
 */
export async function settleEphemeralGrant(fleet: Runtime, given: AccessGrant): Promise<AccessGrant> {
  for (let attempt = 1; ; attempt++) {
    const grant = await fleet.store.accessGrants.require(given.tenantId, given.id);
    const now = fleet.clock.now();
    const over = grant.status === 'expired' || grant.status === 'revoked';
    const due =
      !over && Date.parse(grant.notBefore) <= now.getTime() && now.getTime() < Date.parse(grant.notAfter);
    let patch: Partial<AccessGrant>;
    if (over) {
      if (grant.cleanedUp) return grant;
      patch = { cleanedUp: true };
    } else if (due && grant.targets.some((t) => t.state === 'pending')) {
      const targets = grant.targets.map((t) =>
        t.state === 'pending'
          ? { serverId: t.serverId, state: 'installed' as const, installedAt: now.toISOString() }
          : t,
      );
      patch = withTargets(grant, targets);
    } else {
      return grant;
    }
    try {
      return await fleet.store.accessGrants.update(grant.tenantId, grant.id, patch, {
        expectedVersion: grant.version,
      });
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= 10) throw error;
    }
  }
}

/** Why `grant` cannot be used to connect to `serverId` now, as the error to throw; undefined when it can. */
function grantRefusal(grant: AccessGrant, serverId: string, now: Date): Error | undefined {
  if (grant.mode !== 'ephemeral-key') {
    return new ValidationError('AccessConnectOptions', [
      {
        path: ['grantId'],
        message: `grant ${grant.id} is of mode ${grant.mode}; only ephemeral-key grants connect through Fleetward`,
      },
    ]);
  }
  if (grant.status === 'revoked' || grant.status === 'expired') {
    return new ConflictError(`grant ${grant.id} is ${grant.status}`);
  }
  if (now.getTime() < Date.parse(grant.notBefore)) {
    return new ConflictError(`grant ${grant.id} is not active yet: it starts at ${grant.notBefore}`);
  }
  if (now.getTime() >= Date.parse(grant.notAfter)) {
    return new ConflictError(`grant ${grant.id} is not active: it ended at ${grant.notAfter}`);
  }
  if (!grant.targets.some((t) => t.serverId === serverId)) {
    return new ValidationError('AccessConnectOptions', [
      { path: ['serverId'], message: `${serverId} is not a server of grant ${grant.id}` },
    ]);
  }
  return undefined;
}

/**
 * `access.connect`: the grantee has the grant's server accept `publicKey` for the grant's login for
 * a short time, through the server adapter's `ephemeralKeys`. Authorized as `access.request` of
 * the grantee (anyone else is denied); the call is audited as `access.connect` against the grant,
 * whatever becomes of it, with the server, login and the key's fingerprint, never the key.
 */
export async function connectThroughGrant(
  ctx: CallContext,
  options: AccessConnectOptions,
): Promise<AccessConnection> {
  const fleet = ctx.runtime;
  const opts = validate(AccessConnectOptionsSchema, options, 'AccessConnectOptions');
  const grant = await fleet.store.accessGrants.require(ctx.tenantId, opts.grantId);
  const target = { type: 'access-grant', id: grant.id };
  if (grant.principalId !== ctx.actor.principalId) {
    throw await denied(ctx, 'access.request', target, 'only the grantee can connect through a grant');
  }
  const { principal, rule } = await ctx.decide('access.request', [], target);
  let fingerprint: string | undefined;
  const record = (
    result: 'success' | 'failure',
    details: Record<string, unknown>,
    reason?: string,
  ): Promise<unknown> => {
    const entry: AuditInput = {
      tenantId: ctx.tenantId,
      actor: { principalId: principal.id, kind: principal.kind },
      action: 'access.connect',
      target,
      decision: 'allow',
      ...(rule ? { rule } : {}),
      result,
      ...(reason ? { reason } : {}),
      ticket: grant.ticket,
      details: {
        requestId: grant.requestId,
        serverId: opts.serverId,
        ...(grant.login ? { login: grant.login } : {}),
        ...(fingerprint ? { fingerprint } : {}),
        ...details,
      },
    };
    return fleet.audit(fleet.store, entry);
  };
  let connection: AccessConnection;
  try {
    const key = PublicKeyLineSchema.safeParse(opts.publicKey);
    if (!key.success) {
      throw new ValidationError('AccessConnectOptions', [
        {
          path: ['publicKey'],
          message: key.error.issues[0]?.message ?? 'must be an OpenSSH public key line',
        },
      ]);
    }
    try {
      fingerprint = parsePublicKey(key.data).fingerprint;
    } catch (error) {
      const reason = error instanceof ValidationError ? error.issues[0]?.message : undefined;
      throw new ValidationError('AccessConnectOptions', [
        { path: ['publicKey'], message: reason ?? 'is not a well-formed public key' },
      ]);
    }
    const refusal = grantRefusal(grant, opts.serverId, fleet.clock.now());
    if (refusal) throw refusal;
    const server = await fleet.store.servers.get(ctx.tenantId, opts.serverId);
    if (!server) throw new NotFoundError('server', opts.serverId);
    const adapter = fleet.adapterFor(server);
    if (!adapter.ephemeralKeys) {
      throw new CapabilityMissingError(
        `adapter ${adapter.name} of ${server.name} has no ephemeralKeys capability, so no key can be offered there`,
        { details: { serverId: server.id, adapter: adapter.name } },
      );
    }
    const offered = await adapter.ephemeralKeys.offer(server, { login: grant.login!, publicKey: key.data });
    connection = {
      serverId: server.id,
      ...(server.address ? { address: server.address } : {}),
      login: grant.login!,
      expiresAt: new Date(offered.expiresAt).toISOString(),
      fingerprint,
    };
  } catch (error) {
    const failure = toFleetwardError(error, `connecting through grant ${grant.id}`);
    await record('failure', { code: failure.code }, failure.message.slice(0, 2000));
    throw failure;
  }
  await record('success', { expiresAt: connection.expiresAt });
  return connection;
}
