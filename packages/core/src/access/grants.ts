import PQueue from 'p-queue';
import {
  type AccessGrant,
  type AuditInput,
  type GrantTarget,
  LoginSchema,
  type Server,
  validate,
} from '../domain/index.js';
import { runCommand } from '../engine/exec.js';
import {
  CommandFailedError,
  ConflictError,
  type FleetwardError,
  TimeoutError,
  TransportError,
  toFleetwardError,
  ValidationError,
} from '../errors.js';
import type { Runtime } from '../kernel/runtime.js';
import type { Command } from '../ports/adapter.js';
import {
  type AuthorizedKeyEntry,
  fleetwardMarker,
  parseAuthorizedKeys,
  parsePublicKey,
  renderAuthorizedKeyLine,
  renderAuthorizedKeys,
  withFleetwardMarker,
} from './authorized-keys.js';
import { generateEd25519KeyPair } from './keygen.js';
import {
  editAuthorizedKeys,
  hostLocalTime,
  NoSuchLoginError,
  readAuthorizedKeys,
  sshdVersionOf,
} from './server-keys.js';
import { certificateAuthorityPublicKey, certificateKeyId, signUserCertificate } from './ssh-cert.js';
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

/** A target on whose server the grant is not in effect and will not be until something changes. */
const notInEffect = (t: GrantTarget) =>
  t.state === 'failed' || (t.state === 'pending' && t.error !== undefined);

/**
 * The grant's `installation` for these targets: `installed` everywhere, `partial`, `failed`
 * (installed nowhere, failed somewhere) or `pending` (nothing failed, something still to do).
 */
export function installationOf(targets: readonly GrantTarget[]): AccessGrant['installation'] {
  const failed = targets.some(notInEffect);
  const installed = targets.some((t) => t.state === 'installed');
  if (failed) return installed ? 'partial' : 'failed';
  return targets.every((t) => t.state === 'installed') ? 'installed' : 'pending';
}

/**
 * The grant's targets replaced, with the `installation` they sum up to while the grant is open;
 * once it has ended, removal does not rewrite what its installation was.
 */
export function withTargets(
  grant: AccessGrant,
  targets: GrantTarget[],
): Pick<AccessGrant, 'targets'> & Partial<Pick<AccessGrant, 'installation'>> {
  const open = grant.status === 'active' || grant.status === 'scheduled';
  return open && grant.mode !== 'actions' ? { targets, installation: installationOf(targets) } : { targets };
}

/** Records one target's new state on the grant, retrying on concurrent updates of other targets. */
async function updateTarget(
  fleet: Runtime,
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
      return await fleet.store.accessGrants.update(tenantId, grantId, withTargets(grant, targets), {
        expectedVersion: grant.version,
      });
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
  fleet: Runtime,
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
  fleet: Runtime,
  grant: AccessGrant,
  server: Server,
  publicKey: string,
): Promise<GrantTarget> {
  if (grant.mode === 'ssh-cert') return installCertAuthorityOn(fleet, grant, server, publicKey);
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
  fleet: Runtime,
  grant: AccessGrant,
  server: Server,
): Promise<GrantTarget> {
  if (grant.mode === 'ssh-cert') return releaseCertAuthorityFrom(fleet, grant, server);
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

/** Why one server cannot take a grant for a login, found before the request is stored. */
export interface ServerCheckFailure {
  serverId: string;
  /** The server's name, as messages use it. */
  server: string;
  /**
   * `no-such-login`: the server answered and has no such login. `unreachable`: it could not be
   * asked — not reached, no answer in time, a changed host key, no adapter with `exec`, or the
   * lookup itself failed there (e.g. sudo refused).
   */
  problem: 'no-such-login' | 'unreachable';
  code: string;
  message: string;
  retryable: boolean;
}

/** getent's exit code for "no such entry". */
const GETENT_NOT_FOUND = 2;

/**
 * The command that asks a server whether `login` exists: argv with the login as one element after
 * `--`, never shell text, and as root like the grant's own edits of `authorized_keys`, so a server
 * where those would be refused is found now too.
 * @throws ValidationError for anything but a POSIX login name.
 */
export function loginLookupCommand(login: string): Command {
  return { argv: ['getent', 'passwd', '--', validate(LoginSchema, login, 'login')], sudo: true };
}

/** Asks one server for `login`, through the adapter that will install the grant, within `timeoutMs`. */
async function checkServer(
  fleet: Runtime,
  server: Server,
  command: Command,
  login: string,
  timeoutMs: number,
): Promise<ServerCheckFailure | undefined> {
  const failure = (
    problem: ServerCheckFailure['problem'],
    error: Pick<FleetwardError, 'code' | 'message' | 'retryable'>,
  ): ServerCheckFailure => ({
    serverId: server.id,
    server: server.name,
    problem,
    code: error.code,
    message: error.message.slice(0, 500),
    retryable: error.retryable,
  });
  // The adapter is told to stop at the deadline, but a hung one is not waited for.
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new TimeoutError(`no answer within ${timeoutMs} ms`));
      controller.abort();
    }, timeoutMs);
  });
  try {
    const asking = (async () =>
      runCommand(fleet.adapterFor(server), server, command, {
        timeoutMs,
        maxOutputBytes: 4096,
        signal: controller.signal,
      }))();
    asking.catch(() => {});
    const out = await Promise.race([asking, deadline]);
    if (out.exitCode === 0) return undefined;
    if (out.exitCode === GETENT_NOT_FOUND) {
      return failure('no-such-login', {
        code: 'NOT_FOUND',
        message: `login ${login} does not exist on ${server.name}`,
        retryable: false,
      });
    }
    const stderr = out.stderr.trim().slice(0, 300);
    return failure(
      'unreachable',
      new CommandFailedError(
        `looking up login ${login} failed: getent ${out.exitCode === null ? 'was ended by a signal' : `exited with ${out.exitCode}`}${stderr ? ` (${stderr})` : ''}`,
      ),
    );
  } catch (error) {
    return failure('unreachable', toFleetwardError(error, `asking ${server.name} for login ${login}`));
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asks every server whether `login` exists there, the way the grant will reach it (the server's
 * adapter, as root), `concurrency` servers at a time, each within `timeoutMs`. Resolves the
 * servers that cannot take the grant, in the order given; none when every one can.
 * @throws ValidationError for a login that is not a POSIX login name (no server is asked).
 */
export async function checkServersForGrant(
  fleet: Runtime,
  servers: readonly Server[],
  login: string,
  options: { timeoutMs: number; concurrency: number },
): Promise<ServerCheckFailure[]> {
  const command = loginLookupCommand(login);
  const queue = new PQueue({ concurrency: options.concurrency });
  const results = await Promise.all(
    servers.map((server) => queue.add(() => checkServer(fleet, server, command, login, options.timeoutMs))),
  );
  return results.filter((r): r is ServerCheckFailure => r !== undefined);
}

/** Up to `max` items joined, then how many more there are. */
function listed(items: readonly string[], max: number): string {
  const more = items.length > max ? `; and ${items.length - max} more` : '';
  return `${items.slice(0, max).join('; ')}${more}`;
}

/**
 * The error that refuses a request whose servers failed the check, naming each server and why
 * (the first 20 of each kind in the message, up to 1000 in `details.servers`): a
 * `ValidationError` when the login is missing anywhere (asking again will not help), with an
 * issue at `login` naming the servers without it and one at `servers` naming those that could not
 * be asked; else a `TransportError`, retryable when every failure is.
 */
export function serverCheckError(
  failures: readonly ServerCheckFailure[],
  total: number,
  login: string,
): FleetwardError {
  const details = {
    login,
    servers: failures.slice(0, 1000).map((f) => ({
      serverId: f.serverId,
      problem: f.problem,
      code: f.code,
      message: f.message,
    })),
  };
  const missing = failures.filter((f) => f.problem === 'no-such-login').map((f) => f.server);
  const unasked = failures
    .filter((f) => f.problem === 'unreachable')
    .map((f) => `${f.server} (${f.code}): ${f.message}`);
  if (missing.length > 0) {
    return new ValidationError(
      'AccessRequestOptions',
      [
        {
          path: ['login'],
          message: `${login} does not exist on ${listed(missing, 20)}`,
          code: 'no-such-login',
        },
        ...(unasked.length
          ? [
              {
                path: ['servers'],
                message: `could not be asked: ${listed(unasked, 20)}`,
                code: 'unreachable',
              },
            ]
          : []),
      ],
      { details },
    );
  }
  return new TransportError(
    `cannot check ${unasked.length} of ${total} server(s) for login ${login}, so the request was not stored: ${listed(unasked, 20)}`,
    { retryable: failures.every((f) => f.retryable), details },
  );
}

/** The comment that marks the tenant user CA's `cert-authority` lines. */
export const USER_CA_MARKER = 'fleetward:user-ca';

/** Where the tenant's user CA private key lives in the SecretStore. */
export const userCaSecretRef = (tenantId: string) => `tenants/${tenantId}/access/user-ca`;

/** Grants of mode `ssh-cert` are valid from this long before `notBefore`: clocks of servers drift. */
export const CERTIFICATE_CLOCK_SKEW_MS = 60_000;

/**
 * The tenant's user CA (an Ed25519 key in the SecretStore), created on first use. The SecretStore
 * has no compare-and-set: the key is read back after writing so that concurrent first uses in
 * one process settle on the stored one.
 * @throws ValidationError when the fleet has no SecretStore.
 */
export async function tenantUserCa(
  fleet: Runtime,
  tenantId: string,
): Promise<{ privateKey: string; publicKey: string }> {
  if (!fleet.secrets) {
    throw new ValidationError('AccessRequestOptions', [
      {
        path: ['mode'],
        message: 'ssh-cert access needs a SecretStore (createFleet({ secrets })) for the user CA',
      },
    ]);
  }
  const ref = userCaSecretRef(tenantId);
  let privateKey = await fleet.secrets.get(ref);
  if (privateKey === undefined) {
    await fleet.secrets.set(
      ref,
      generateEd25519KeyPair(`fleetward user CA ${tenantId}`.slice(0, 200)).privateKey,
    );
    privateKey = await fleet.secrets.get(ref);
    if (privateKey === undefined)
      throw new ConflictError(`the user CA vanished from ${ref} after writing it`);
  }
  return { privateKey, publicKey: certificateAuthorityPublicKey(privateKey) };
}

/**
 * Signs the grant's certificate (once; a grant that has one keeps it) and stores it on the grant.
 * Valid for the grant's login only, from a minute before `notBefore` to `notAfter`, with a
 * terminal and no forwarding; the key ID names tenant, request and ticket for sshd's log.
 */
export async function certifyGrant(
  fleet: Runtime,
  grant: AccessGrant,
  publicKey: string,
): Promise<AccessGrant> {
  if (grant.certificate) return grant;
  const ca = await tenantUserCa(fleet, grant.tenantId);
  const keyId = certificateKeyId({
    tenantId: grant.tenantId,
    requestId: grant.requestId,
    ticket: grant.ticket,
  });
  const certificate = signUserCertificate({
    caPrivateKey: ca.privateKey,
    publicKey,
    principals: [grant.login!],
    keyId,
    validAfter: new Date(Date.parse(grant.notBefore) - CERTIFICATE_CLOCK_SKEW_MS),
    validBefore: new Date(grant.notAfter),
    extensions: ['permit-pty'],
  });
  for (let attempt = 1; ; attempt++) {
    const current = await fleet.store.accessGrants.require(grant.tenantId, grant.id);
    if (current.certificate) return current;
    try {
      const updated = await fleet.store.accessGrants.update(
        grant.tenantId,
        grant.id,
        { certificate },
        { expectedVersion: current.version },
      );
      await fleet.audit(fleet.store, {
        tenantId: grant.tenantId,
        actor: SYSTEM_ACTOR,
        action: 'access.grant.certify',
        target: { type: 'access-grant', id: grant.id },
        decision: 'allow',
        result: 'success',
        ticket: grant.ticket,
        details: {
          requestId: grant.requestId,
          principalId: grant.principalId,
          login: grant.login,
          fingerprint: parsePublicKey(publicKey).fingerprint,
          keyId,
          caFingerprint: parsePublicKey(ca.publicKey).fingerprint,
          validBefore: grant.notAfter,
        },
      });
      return updated;
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= 10) throw error;
    }
  }
}

/** Whether `entry` is the tenant CA's line for `login`, as Fleetward writes it. */
function isCaLineFor(entry: AuthorizedKeyEntry, caKeyBase64: string, login: string): boolean {
  return (
    entry.keyBase64 === caKeyBase64 &&
    entry.comment.split(/[ \t]+/).includes(USER_CA_MARKER) &&
    entry.options.some((o) => o.name === 'cert-authority') &&
    entry.options.some((o) => o.name === 'principals' && o.value === login)
  );
}

function caLine(caPublicKey: string, login: string): string {
  const key = parsePublicKey(caPublicKey);
  return renderAuthorizedKeyLine({
    options: [{ name: 'cert-authority' }, { name: 'principals', value: login }],
    keyType: key.keyType,
    keyBase64: key.keyBase64,
    comment: USER_CA_MARKER,
  });
}

async function writeCaLine(
  fleet: Runtime,
  server: Server,
  login: string,
  caPublicKey: string,
  userKey?: string,
) {
  const adapter = fleet.adapterFor(server);
  const ca = parsePublicKey(caPublicKey);
  const fingerprint = userKey ? parsePublicKey(userKey).fingerprint : undefined;
  await editAuthorizedKeys(adapter, server, login, (current) => {
    const lines = parseAuthorizedKeys(current.text);
    const standing = fingerprint
      ? lines
          .filter(isEntry)
          .find((e) => e.fingerprint === fingerprint && fleetwardMarker(e).grantId === undefined)
      : undefined;
    if (standing) {
      throw new ConflictError(
        `the key ${fingerprint} already has standing access as ${login} on ${server.name} (line ${standing.lineNo}); a certificate would not limit it`,
      );
    }
    if (lines.filter(isEntry).some((e) => isCaLineFor(e, ca.keyBase64, login))) return undefined;
    return `${renderAuthorizedKeys(lines)}${caLine(caPublicKey, login)}\n`;
  });
  const after = parseAuthorizedKeys((await readAuthorizedKeys(adapter, server, login)).text).filter(isEntry);
  if (!after.some((e) => isCaLineFor(e, ca.keyBase64, login))) {
    throw new ConflictError(
      `the user CA line is not in authorized_keys of ${login} on ${server.name} after writing it`,
    );
  }
}

/**
 * Mode `ssh-cert`: makes `login` on the server trust the tenant's user CA for that login only
 * (`cert-authority,principals="<login>" <ca> fleetward:user-ca`), once per login and server, and
 * reads it back. The grant's certificate is signed before (see {@link certifyGrant}); sshd then
 * enforces its validity, so nothing on the server carries the grant's end.
 */
async function installCertAuthorityOn(
  fleet: Runtime,
  grant: AccessGrant,
  server: Server,
  publicKey: string,
): Promise<GrantTarget> {
  const login = grant.login!;
  try {
    const ca = await tenantUserCa(fleet, grant.tenantId);
    await writeCaLine(fleet, server, login, ca.publicKey, publicKey);
    const target: GrantTarget = {
      serverId: server.id,
      state: 'installed',
      installedAt: fleet.clock.now().toISOString(),
    };
    await updateTarget(fleet, grant.tenantId, grant.id, server.id, target, ['error']);
    await auditStep(fleet, grant, server, 'access.grant.install', {
      ok: true,
      reason: grant.reason,
      details: {
        principalId: grant.principalId,
        login,
        fingerprint: parsePublicKey(publicKey).fingerprint,
        caFingerprint: parsePublicKey(ca.publicKey).fingerprint,
        notAfter: grant.notAfter,
      },
    });
    return target;
  } catch (error) {
    const err = failure(error, `installing grant ${grant.id} on ${server.name}`);
    const target: GrantTarget = { serverId: server.id, state: 'failed', error: err };
    await updateTarget(fleet, grant.tenantId, grant.id, server.id, target);
    await auditStep(fleet, grant, server, 'access.grant.install', { ok: false, error: err });
    return target;
  }
}

/** Other live certificate grants that rely on the CA line of `login` on `serverId`. */
async function othersNeedingCa(fleet: Runtime, grant: AccessGrant, serverId: string): Promise<string[]> {
  const now = fleet.clock.now().getTime();
  return (await fleet.store.accessGrants.listAll(grant.tenantId, { where: { status: 'active' } }))
    .filter(
      (g) =>
        g.id !== grant.id &&
        g.mode === 'ssh-cert' &&
        g.login === grant.login &&
        Date.parse(g.notAfter) > now &&
        g.targets.some((t) => t.serverId === serverId && (t.state === 'installed' || t.state === 'pending')),
    )
    .map((g) => g.id);
}

/**
 * Mode `ssh-cert`: the grant lets go of the CA line of its login on the server. The line is
 * removed (and checked gone) unless another active certificate grant of that login on that server
 * still needs it; should one have installed it meanwhile, the line is put back. A single
 * certificate cannot be revoked this way while the line stays: that needs `RevokedKeys` in
 * sshd_config, which Fleetward does not manage.
 */
async function releaseCertAuthorityFrom(
  fleet: Runtime,
  grant: AccessGrant,
  server: Server,
): Promise<GrantTarget> {
  const tenantId = grant.tenantId;
  const login = grant.login!;
  try {
    const adapter = fleet.adapterFor(server);
    const ca = await tenantUserCa(fleet, tenantId);
    const caKey = parsePublicKey(ca.publicKey).keyBase64;
    let kept = await othersNeedingCa(fleet, grant, server.id);
    if (kept.length === 0) {
      await editAuthorizedKeys(adapter, server, login, (current) => {
        const lines = parseAuthorizedKeys(current.text);
        const rest = lines.filter((l) => !(isEntry(l) && isCaLineFor(l, caKey, login)));
        return rest.length === lines.length ? undefined : renderAuthorizedKeys(rest);
      });
      kept = await othersNeedingCa(fleet, grant, server.id);
      if (kept.length > 0) {
        await writeCaLine(fleet, server, login, ca.publicKey);
      } else {
        const after = parseAuthorizedKeys((await readAuthorizedKeys(adapter, server, login)).text).filter(
          isEntry,
        );
        if (after.some((e) => isCaLineFor(e, caKey, login))) {
          throw new ConflictError(
            `the user CA line is still in authorized_keys of ${login} on ${server.name}`,
          );
        }
      }
    }
    const updated = await updateTarget(
      fleet,
      tenantId,
      grant.id,
      server.id,
      { state: 'removed', removedAt: fleet.clock.now().toISOString() },
      ['error'],
    );
    await auditStep(fleet, grant, server, 'access.grant.remove', {
      ok: true,
      details: {
        login,
        caLine: kept.length ? 'kept' : 'removed',
        ...(kept.length ? { neededBy: kept.slice(0, 20) } : { verified: true }),
      },
    });
    return updated.targets.find((t) => t.serverId === server.id)!;
  } catch (error) {
    if (error instanceof NoSuchLoginError) {
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
