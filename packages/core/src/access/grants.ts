import type { AccessGrant, AuditInput, GrantTarget, Server } from '../domain/index.js';
import { ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import type { Fleet } from '../fleet/fleet.js';
import {
  type AuthorizedKeyEntry,
  fleetwardMarker,
  parseAuthorizedKeys,
  parsePublicKey,
  renderAuthorizedKeyLine,
  renderAuthorizedKeys,
  withFleetwardMarker,
} from './authorized-keys.js';
import {
  editAuthorizedKeys,
  hostLocalTime,
  NoSuchLoginError,
  readAuthorizedKeys,
  sshdVersionOf,
} from './server-keys.js';
import { expiryTimeOption, supportsUtcExpiry } from './sshd-version.js';

/**
 * Putting a grant's key on its servers and taking it off again. The line sshd gets carries its own
 * `expiry-time`, so the server refuses the key after `notAfter` even if Fleetward never runs again;
 * removal afterwards is housekeeping, verified by reading the file back.
 */

const SYSTEM_ACTOR: AuditInput['actor'] = { principalId: 'system', kind: 'system' };

/** Options on every grant line: the expiry, no forwarding of any kind, but a terminal. */
function grantLine(grant: AccessGrant, publicKey: string, expiry: { name: string; value?: string }): string {
  const key = parsePublicKey(publicKey);
  return renderAuthorizedKeyLine({
    options: [expiry, { name: 'restrict' }, { name: 'pty' }],
    keyType: key.keyType,
    keyBase64: key.keyBase64,
    comment: withFleetwardMarker(`fleetward-jit ${grant.principalId}`, { grantId: grant.id }),
  });
}

const isEntry = (line: ReturnType<typeof parseAuthorizedKeys>[number]): line is AuthorizedKeyEntry =>
  line.kind === 'key';

/** Records one target's new state on the grant, retrying on concurrent updates of other targets. */
async function updateTarget(
  fleet: Fleet,
  tenantId: string,
  grantId: string,
  serverId: string,
  patch: Partial<GrantTarget>,
  clear: (keyof GrantTarget)[] = [],
): Promise<AccessGrant> {
  for (let attempt = 1; ; attempt++) {
    const grant = await fleet.store.accessGrants.require(tenantId, grantId);
    const targets = grant.targets.map((t) => {
      if (t.serverId !== serverId) return t;
      const next: GrantTarget = { ...t, ...patch };
      for (const key of clear) delete next[key];
      return next;
    });
    try {
      return await fleet.store.accessGrants.update(
        tenantId,
        grantId,
        { targets },
        { expectedVersion: grant.version },
      );
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= 10) throw error;
    }
  }
}

function failure(error: unknown, what: string) {
  const e = toFleetwardError(error, what);
  return { code: e.code, message: e.message.slice(0, 4000) };
}

/** The audit record of one grant step on one server, as the system. */
function auditStep(
  fleet: Fleet,
  grant: AccessGrant,
  server: Server,
  action: 'access.grant.install' | 'access.grant.remove',
  outcome:
    | { ok: true; details: Record<string, unknown>; reason?: string }
    | { ok: false; error: { code: string; message: string } },
) {
  return fleet.audit(fleet.store, {
    tenantId: grant.tenantId,
    actor: SYSTEM_ACTOR,
    action,
    target: { type: 'server', id: server.id },
    decision: 'allow',
    result: outcome.ok ? 'success' : 'failure',
    ...(outcome.ok
      ? outcome.reason
        ? { reason: outcome.reason }
        : {}
      : { reason: outcome.error.message.slice(0, 2000) }),
    ticket: grant.ticket,
    details: {
      grantId: grant.id,
      requestId: grant.requestId,
      ...(outcome.ok ? outcome.details : { code: outcome.error.code }),
    },
  });
}

/**
 * Installs the grant's key line on one server. Idempotent: a line of the same grant is replaced,
 * so a run that died after writing but before recording it can simply run again. Refuses a key
 * that already has standing access for the login there (sshd would take that line and the expiry
 * would mean nothing), and an sshd too old for `expiry-time` (it would reject the whole line).
 */
export async function installGrantOn(
  fleet: Fleet,
  grant: AccessGrant,
  server: Server,
  publicKey: string,
): Promise<GrantTarget> {
  const tenantId = grant.tenantId;
  const login = grant.login!;
  try {
    const adapter = fleet.adapterFor(server);
    const version = await sshdVersionOf(adapter, server);
    if (!version) {
      throw new ValidationError('AccessGrant', [
        {
          path: ['targets', server.id],
          message: `the sshd version of ${server.name} is unknown; refusing to write expiry-time it might reject`,
        },
      ]);
    }
    const notAfter = new Date(grant.notAfter);
    const option = supportsUtcExpiry(version)
      ? expiryTimeOption(notAfter, version)
      : expiryTimeOption(notAfter, version, await hostLocalTime(adapter, server, notAfter));
    const line = grantLine(grant, publicKey, option);
    const fingerprint = parsePublicKey(publicKey).fingerprint;
    await editAuthorizedKeys(adapter, server, login, (current) => {
      const lines = parseAuthorizedKeys(current.text);
      const standing = lines
        .filter(isEntry)
        .find((e) => e.fingerprint === fingerprint && fleetwardMarker(e).grantId === undefined);
      if (standing) {
        throw new ConflictError(
          `the key ${fingerprint} already has standing access as ${login} on ${server.name} (line ${standing.lineNo}); a time-bound grant would not limit it`,
        );
      }
      const kept = lines.filter((l) => !(isEntry(l) && fleetwardMarker(l).grantId === grant.id));
      const body = renderAuthorizedKeys(kept);
      return `${body}${line}\n`;
    });
    const after = parseAuthorizedKeys((await readAuthorizedKeys(adapter, server, login)).text).filter(
      isEntry,
    );
    if (!after.some((e) => fleetwardMarker(e).grantId === grant.id && e.fingerprint === fingerprint)) {
      throw new ConflictError(
        `the grant's line is not in authorized_keys of ${login} on ${server.name} after writing it`,
      );
    }
    const target: GrantTarget = {
      serverId: server.id,
      state: 'installed',
      sshdVersion: version.raw,
      expiryTime: option.value ?? '',
      installedAt: fleet.clock.now().toISOString(),
    };
    await updateTarget(fleet, tenantId, grant.id, server.id, target, ['error']);
    await auditStep(fleet, grant, server, 'access.grant.install', {
      ok: true,
      reason: grant.reason,
      details: {
        principalId: grant.principalId,
        login,
        fingerprint,
        expiryTime: option.value,
        sshdVersion: version.raw,
        notAfter: grant.notAfter,
      },
    });
    return target;
  } catch (error) {
    const err = failure(error, `installing grant ${grant.id} on ${server.name}`);
    const target: GrantTarget = { serverId: server.id, state: 'failed', error: err };
    await updateTarget(fleet, tenantId, grant.id, server.id, target);
    await auditStep(fleet, grant, server, 'access.grant.install', { ok: false, error: err });
    return target;
  }
}

/**
 * Takes the grant's line off one server and reads the file back to prove it is gone. A server
 * that cannot be reached stays `remove-failed` and is retried by the next sweep; meanwhile sshd
 * refuses the key anyway once `expiry-time` has passed.
 */
export async function removeGrantFrom(
  fleet: Fleet,
  grant: AccessGrant,
  server: Server,
): Promise<GrantTarget> {
  const tenantId = grant.tenantId;
  const login = grant.login!;
  try {
    const adapter = fleet.adapterFor(server);
    await editAuthorizedKeys(adapter, server, login, (current) => {
      const lines = parseAuthorizedKeys(current.text);
      const kept = lines.filter((l) => !(isEntry(l) && fleetwardMarker(l).grantId === grant.id));
      return kept.length === lines.length ? undefined : renderAuthorizedKeys(kept);
    });
    const after = parseAuthorizedKeys((await readAuthorizedKeys(adapter, server, login)).text).filter(
      isEntry,
    );
    if (after.some((e) => fleetwardMarker(e).grantId === grant.id)) {
      throw new ConflictError(`the grant's line is still in authorized_keys of ${login} on ${server.name}`);
    }
    const target: Partial<GrantTarget> = { state: 'removed', removedAt: fleet.clock.now().toISOString() };
    const updated = await updateTarget(fleet, tenantId, grant.id, server.id, target, ['error']);
    await auditStep(fleet, grant, server, 'access.grant.remove', {
      ok: true,
      details: { login, verified: true },
    });
    return updated.targets.find((t) => t.serverId === server.id)!;
  } catch (error) {
    if (error instanceof NoSuchLoginError) {
      // The login is gone from the server, and its keys with it.
      const updated = await updateTarget(fleet, tenantId, grant.id, server.id, {
        state: 'removed',
        removedAt: fleet.clock.now().toISOString(),
      });
      return updated.targets.find((t) => t.serverId === server.id)!;
    }
    const err = failure(error, `removing grant ${grant.id} from ${server.name}`);
    const updated = await updateTarget(fleet, tenantId, grant.id, server.id, {
      state: 'remove-failed',
      error: err,
    });
    await auditStep(fleet, grant, server, 'access.grant.remove', { ok: false, error: err });
    return updated.targets.find((t) => t.serverId === server.id)!;
  }
}
