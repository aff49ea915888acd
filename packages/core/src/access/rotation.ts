import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import type { AuditInput, Credential, Job, Server, TaskResult } from '../domain/index.js';
import { type OperationStop, stopsOperation } from '../engine/stop.js';
import {
  CapabilityMissingError,
  ConflictError,
  FleetwardError,
  toFleetwardError,
  ValidationError,
} from '../errors.js';
import { jobLogger, logJobFinished, logJobStarted, startJob } from '../kernel/jobs.js';
import type { Runtime } from '../kernel/runtime.js';
import type { SecretStore } from '../ports/secret-store.js';
import {
  type AuthorizedKeyEntry,
  type AuthorizedKeysLine,
  isCloudAgentManaged,
  parseAuthorizedKeys,
  parsePublicKey,
  renderAuthorizedKeyLine,
  renderAuthorizedKeys,
  withFleetwardMarker,
} from './authorized-keys.js';
import { type GeneratedKeyPair, generateEd25519KeyPair } from './keygen.js';
import { editAuthorizedKeys, readAuthorizedKeys, sshdVersionOf } from './server-keys.js';
import { expiryTimeOption, supportsUtcExpiry } from './sshd-version.js';

/**
 * Key rotation that never locks anyone out. For one managed credential, on every server it is on:
 *
 * 1. a new key pair is generated; its private key goes to the SecretStore (`<ref>.next`) first;
 * 2. the new public key is added next to the old one (atomic compare-and-swap write);
 * 3. the new key must log in over a NEW connection on every server (`login.probe`);
 *    any failure removes the new key everywhere again, proves the old key still logs in, and
 *    reports — nothing else changes;
 * 4. the SecretStore's `<ref>` switches to the new key (the old one kept at `<ref>.previous`);
 * 5. the old line gets a short `expiry-time` (a dead-man switch should anything stop here), is
 *    then removed, and the old key must be refused by the server;
 * 6. the credential records the new fingerprint and rotation time.
 *
 * Each step is a task state in the store (job kind `key-rotation`), audited with both
 * fingerprints; `resume` continues a rotation a crashed process left behind.
 */

export interface RotationOptions {
  /** Also require `sudo -n true` to work with the new key. @default false */
  verifySudo?: boolean;
  /** How long the retired key's `expiry-time` runs before sshd refuses it by itself. @default 5 */
  graceMinutes?: number;
  /**
   * Where new key pairs come from (e.g. a KMS or an HSM-backed agent).
   * @default Ed25519 generated in process
   */
  generateKeyPair?: (comment: string) => GeneratedKeyPair;
  signal?: AbortSignal;
}

export interface RotationReport {
  credentialId: string;
  jobId: string;
  status: 'succeeded' | 'failed' | 'rolled-back';
  oldFingerprint: string;
  newFingerprint: string;
  servers: { serverId: string; step: string; error?: { code: string; message: string } }[];
  /** Why the rotation did not complete, when it did not. */
  reason?: string;
}

/** References of a credential's private keys in the SecretStore. */
export function secretRefs(credential: Pick<Credential, 'secretRef' | 'id'>): {
  current: string;
  next: string;
  previous: string;
} {
  if (!credential.secretRef) {
    throw new ValidationError('Credential', [
      {
        path: ['secretRef'],
        message: `credential ${credential.id} has no private key in the SecretStore, so Fleetward cannot rotate it`,
      },
    ]);
  }
  return {
    current: credential.secretRef,
    next: `${credential.secretRef}.next`,
    previous: `${credential.secretRef}.previous`,
  };
}

const isEntry = (line: AuthorizedKeysLine): line is AuthorizedKeyEntry => line.kind === 'key';

/** Options to carry from the old line to the new: everything but its expiry. */
function carriedOptions(old: AuthorizedKeyEntry | undefined) {
  return (old?.options ?? []).filter((o) => o.name.toLowerCase() !== 'expiry-time');
}

function requireSecrets(fleet: Runtime): SecretStore {
  if (!fleet.secrets) {
    throw new CapabilityMissingError(
      'key rotation needs a SecretStore (createFleet({ secrets })) for the new private keys',
    );
  }
  return fleet.secrets;
}

/** Adds the new key next to the old one (idempotent). */
async function addKey(
  fleet: Runtime,
  server: Server,
  credential: Credential,
  newPublicKey: string,
): Promise<void> {
  const key = parsePublicKey(newPublicKey);
  await editAuthorizedKeys(fleet.adapterFor(server), server, credential.login, (current) => {
    const lines = parseAuthorizedKeys(current.text);
    if (lines.some((l) => isEntry(l) && l.fingerprint === key.fingerprint)) return undefined;
    const old = lines.find(
      (l, i): l is AuthorizedKeyEntry =>
        isEntry(l) && l.fingerprint === credential.fingerprint && !isCloudAgentManaged(lines, i),
    );
    const line = renderAuthorizedKeyLine({
      options: carriedOptions(old),
      keyType: key.keyType,
      keyBase64: key.keyBase64,
      comment: withFleetwardMarker(`fleetward ${credential.login}`, { credentialId: credential.id }),
    });
    return `${renderAuthorizedKeys(lines)}${line}\n`;
  });
}

/** Removes every line of `fingerprint` that Fleetward may edit; returns how many were removed. */
async function removeKey(fleet: Runtime, server: Server, login: string, fingerprint: string): Promise<void> {
  await editAuthorizedKeys(fleet.adapterFor(server), server, login, (current) => {
    const lines = parseAuthorizedKeys(current.text);
    const kept = lines.filter(
      (l, i) => !(isEntry(l) && l.fingerprint === fingerprint && !isCloudAgentManaged(lines, i)),
    );
    return kept.length === lines.length ? undefined : renderAuthorizedKeys(kept);
  });
  const after = parseAuthorizedKeys((await readAuthorizedKeys(fleet.adapterFor(server), server, login)).text);
  if (after.some((l) => isEntry(l) && l.fingerprint === fingerprint)) {
    throw new ConflictError(
      `key ${fingerprint} is still in authorized_keys of ${login} on ${server.name} after removing it`,
    );
  }
}

/** Puts an `expiry-time` on the old key's lines: if anything stops now, sshd retires it anyway. */
async function stampExpiry(
  fleet: Runtime,
  server: Server,
  credential: Credential,
  fingerprint: string,
  at: Date,
): Promise<void> {
  const adapter = fleet.adapterFor(server);
  const version = await sshdVersionOf(adapter, server);
  // An sshd that cannot read expiry-time gets the removal only (writing it would void the line now).
  if (!version || !supportsUtcExpiry(version)) return;
  const expiry = expiryTimeOption(at, version);
  await editAuthorizedKeys(adapter, server, credential.login, (current) => {
    const lines = parseAuthorizedKeys(current.text);
    let changed = false;
    const next = lines.map((l, i) => {
      if (!isEntry(l) || l.fingerprint !== fingerprint || isCloudAgentManaged(lines, i)) return l;
      changed = true;
      return {
        ...l,
        options: [expiry, ...l.options.filter((o) => o.name.toLowerCase() !== 'expiry-time')],
      };
    });
    return changed ? renderAuthorizedKeys(next) : undefined;
  });
}

async function probe(fleet: Runtime, server: Server, login: string, privateKey: string, sudo: boolean) {
  const adapter = fleet.adapterFor(server);
  if (!adapter.login) {
    throw new CapabilityMissingError(
      `adapter ${adapter.name} cannot prove a login on ${server.name} (no login capability): Fleetward never rotates a key it cannot verify`,
    );
  }
  return adapter.login.probe(server, { username: login, privateKey }, { sudo });
}

interface RotationState {
  fleet: Runtime;
  tenantId: string;
  actor: AuditInput['actor'];
  credential: Credential;
  job: Job;
  tasks: Map<string, TaskResult>;
  servers: Server[];
  newPublicKey: string;
  newFingerprint: string;
  options: Required<Pick<RotationOptions, 'verifySudo' | 'graceMinutes'>>;
}

async function setStep(
  state: RotationState,
  serverId: string,
  step: string,
  extra: Partial<TaskResult> = {},
): Promise<void> {
  const { fleet, tenantId } = state;
  for (let attempt = 1; ; attempt++) {
    const task = await fleet.store.taskResults.require(tenantId, `${state.job.id}:${serverId}`);
    try {
      const updated = await fleet.store.taskResults.update(
        tenantId,
        task.id,
        { step, ...extra, details: { ...(task.details ?? {}), ...(extra.details ?? {}) } },
        { expectedVersion: task.version },
      );
      state.tasks.set(serverId, updated);
      return;
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= 5) throw error;
    }
  }
}

async function auditStep(
  state: RotationState,
  server: Server | undefined,
  step: string,
  result: 'success' | 'failure' | 'started',
  details: Record<string, unknown> = {},
  reason?: string,
) {
  await state.fleet.audit(state.fleet.store, {
    tenantId: state.tenantId,
    actor: state.actor,
    action: 'keys.rotate',
    target: server ? { type: 'server', id: server.id } : { type: 'credential', id: state.credential.id },
    decision: 'allow',
    result,
    ...(reason ? { reason: reason.slice(0, 2000) } : {}),
    details: {
      step,
      credentialId: state.credential.id,
      jobId: state.job.id,
      login: state.credential.login,
      oldFingerprint: state.credential.fingerprint,
      newFingerprint: state.newFingerprint,
      ...details,
    },
  });
}

const stopDetails = (stop: OperationStop | undefined) =>
  stop ? { stoppedBy: { code: stop.code, serverId: stop.serverId, reason: stop.reason } } : {};

function errorOf(error: unknown, what: string) {
  const e = toFleetwardError(error, what);
  return { code: e.code, message: e.message.slice(0, 4000) };
}

async function finishJob(state: RotationState, status: Job['status'], reason?: string): Promise<void> {
  const { fleet, tenantId } = state;
  const job = await fleet.store.jobs.require(tenantId, state.job.id);
  const tasks = [...state.tasks.values()];
  const finished = await fleet.store.jobs.update(
    tenantId,
    job.id,
    {
      status,
      finishedAt: fleet.clock.now().toISOString(),
      summary: {
        total: tasks.length,
        succeeded: tasks.filter((t) => t.step === 'retired').length,
        failed: tasks.filter((t) => t.status === 'failed').length,
      },
      ...(reason ? { reason: reason.slice(0, 2000) } : {}),
    },
    { expectedVersion: job.version },
  );
  logJobFinished(jobLogger(fleet.logger, finished), finished, fleet.clock.now(), {
    credentialId: state.credential.id,
  });
}

function report(state: RotationState, status: RotationReport['status'], reason?: string): RotationReport {
  return {
    credentialId: state.credential.id,
    jobId: state.job.id,
    status,
    oldFingerprint: state.credential.fingerprint,
    newFingerprint: state.newFingerprint,
    servers: state.servers.map((s) => {
      const t = state.tasks.get(s.id);
      return { serverId: s.id, step: t?.step ?? 'pending', ...(t?.error ? { error: t.error } : {}) };
    }),
    ...(reason ? { reason } : {}),
  };
}

/** Takes the new key off every server it reached and proves the old key still logs in. */
async function rollBack(
  state: RotationState,
  secrets: SecretStore,
  oldPrivateKey: string,
  why: string,
  stop?: OperationStop,
): Promise<RotationReport> {
  const { fleet, credential } = state;
  const queue = new PQueue({ concurrency: 8 });
  const problems: string[] = [];
  await Promise.all(
    state.servers.map((server) =>
      queue.add(async () => {
        if (stop) {
          // After a changed host key only the servers already worked on are touched again: those
          // after it were never reached, and the one that stopped it cannot be trusted.
          if (server.id === stop.serverId) return;
          if ((state.tasks.get(server.id)?.step ?? 'pending') === 'pending') {
            await setStep(state, server.id, 'not-started', {
              status: 'skipped',
              error: { code: 'NOT_STARTED', message: `not started: ${stop.reason}` },
            });
            return;
          }
        }
        try {
          // Removal is idempotent, so a server a crash left unrecorded is cleaned up as well.
          await removeKey(fleet, server, credential.login, state.newFingerprint);
          if ((state.tasks.get(server.id)?.step ?? 'pending') === 'pending') {
            await setStep(state, server.id, 'not-started', { status: 'skipped' });
            return;
          }
          const old = await probe(fleet, server, credential.login, oldPrivateKey, state.options.verifySudo);
          if (!old.ok)
            throw new ConflictError(
              `after rolling back, the old key does not log in to ${server.name}: ${old.message}`,
            );
          await setStep(state, server.id, 'rolled-back', { status: 'failed' });
          await auditStep(state, server, 'rolled-back', 'success', { oldKeyVerified: true });
        } catch (error) {
          const err = errorOf(error, `rolling back on ${server.name}`);
          problems.push(`${server.name}: ${err.message}`);
          await setStep(state, server.id, 'rollback-failed', { status: 'failed', error: err });
          await auditStep(state, server, 'rollback-failed', 'failure', { code: err.code }, err.message);
        }
      }),
    ),
  );
  await secrets.delete(secretRefs(credential).next);
  const current = await fleet.store.credentials.require(state.tenantId, credential.id);
  await fleet.store.credentials.update(
    state.tenantId,
    credential.id,
    { status: 'active' },
    { expectedVersion: current.version },
  );
  const reason = problems.length ? `${why}; rollback problems: ${problems.join('; ')}` : why;
  await finishJob(state, stop ? 'stopped' : 'failed', reason);
  await auditStep(state, undefined, 'rolled-back', 'failure', stopDetails(stop), reason);
  fleet.events.emit('keys.rotation.failed', {
    tenantId: state.tenantId,
    credentialId: credential.id,
    jobId: state.job.id,
    reason,
  });
  return report(state, 'rolled-back', reason);
}

/**
 * Runs (or resumes) the rotation of `credential`: see the module comment for the steps. Returns a
 * report; a failed verification is a `rolled-back` report, not an exception.
 */
export async function rotateCredential(
  fleet: Runtime,
  tenantId: string,
  actor: AuditInput['actor'],
  credentialId: string,
  options: RotationOptions = {},
): Promise<RotationReport> {
  const secrets = requireSecrets(fleet);
  const store = fleet.store;
  let credential = await store.credentials.require(tenantId, credentialId);
  const refs = secretRefs(credential);
  const graceMinutes = options.graceMinutes ?? 5;
  if (!Number.isInteger(graceMinutes) || graceMinutes < 1 || graceMinutes > 1440) {
    throw new ValidationError('RotationOptions', [
      { path: ['graceMinutes'], message: 'must be 1 to 1440 minutes' },
    ]);
  }
  const holder = `${process.pid}-${randomUUID()}`;
  const lease = await store.leases.acquire(`key-rotation:${tenantId}:${credentialId}`, holder, 10 * 60_000);
  if (!lease) throw new ConflictError(`credential ${credentialId} is being rotated by another process`);
  try {
    const servers = await store.servers.listAll(tenantId, { selector: { ids: credential.serverIds } });
    if (servers.length === 0) {
      throw new ValidationError('Credential', [
        { path: ['serverIds'], message: `credential ${credentialId} is on no known server` },
      ]);
    }
    // Refused before a key is generated or a file edited: a key that cannot be proven to log in
    // is never added, so finding out on the second server would mean undoing the first.
    for (const server of servers) {
      const adapter = fleet.adapterFor(server);
      const missing = (['exec', 'login'] as const).filter((c) => !adapter[c]);
      if (missing.length > 0) {
        throw new CapabilityMissingError(
          `adapter ${adapter.name} of ${server.name} has no ${missing.join(' and ')} capability: Fleetward never rotates a key it cannot verify, and nothing was changed`,
          { details: { serverId: server.id, adapter: adapter.name, missing } },
        );
      }
    }
    const oldPrivateKey =
      credential.status === 'rotating'
        ? ((await secrets.get(refs.previous)) ?? (await secrets.get(refs.current)))
        : await secrets.get(refs.current);
    if (!oldPrivateKey)
      throw new ValidationError('Credential', [
        { path: ['secretRef'], message: `no private key under ${refs.current}` },
      ]);

    // A rotation a dead process left behind is resumed, never started over.
    const unfinished = (
      await store.jobs.listAll(tenantId, { where: { kind: 'key-rotation', status: 'running' } })
    ).find(
      (j) =>
        j.serverIds.join(',') === servers.map((s) => s.id).join(',') &&
        j.reason === `credential ${credentialId}`,
    );
    let job: Job;
    let newPublicKey: string;
    let newPrivateKey: string | undefined;
    if (unfinished) {
      job = unfinished;
      const tasks = await store.taskResults.listAll(tenantId, { where: { jobId: job.id } });
      newPublicKey = String(tasks[0]?.details?.newPublicKey ?? '');
      newPrivateKey = await secrets.get(refs.next);
    } else {
      const pair = (options.generateKeyPair ?? generateEd25519KeyPair)(
        `fleetward ${credential.login} ${credentialId}`,
      );
      newPublicKey = pair.publicKey;
      newPrivateKey = pair.privateKey;
      // Durable before the key exists anywhere else: a crash from here on can always finish or undo.
      await secrets.set(refs.next, pair.privateKey);
      const jobId = randomUUID();
      job = await store.transaction(async (tx) => {
        const { job: created } = await startJob(tx, {
          tenantId,
          jobId,
          kind: 'key-rotation',
          requestedBy: actor.principalId,
          serverIds: servers.map((s) => s.id),
          startedAt: fleet.clock.now().toISOString(),
          reason: `credential ${credentialId}`,
          task: {
            status: 'running',
            step: 'pending',
            details: { newPublicKey: pair.publicKey, newFingerprint: pair.fingerprint },
          },
        });
        const current = await tx.credentials.require(tenantId, credentialId);
        credential = await tx.credentials.update(
          tenantId,
          credentialId,
          { status: 'rotating' },
          { expectedVersion: current.version },
        );
        return created;
      });
    }
    logJobStarted(jobLogger(fleet.logger, job), job, { credentialId, resumed: Boolean(unfinished) });
    const newFingerprint = parsePublicKey(newPublicKey).fingerprint;
    const tasks = new Map(
      (await store.taskResults.listAll(tenantId, { where: { jobId: job.id } })).map((t) => [t.serverId, t]),
    );
    const state: RotationState = {
      fleet,
      tenantId,
      actor,
      credential,
      job,
      tasks,
      servers,
      newPublicKey,
      newFingerprint,
      options: { verifySudo: options.verifySudo ?? false, graceMinutes },
    };
    const switched = credential.fingerprint === newFingerprint;
    if (!switched) {
      state.credential = credential;
      if (!newPrivateKey) {
        // The new private key was lost before anything depended on it: undo the additions.
        return rollBack(state, secrets, oldPrivateKey, `the new private key is missing from ${refs.next}`);
      }
      await auditStep(state, undefined, unfinished ? 'resumed' : 'started', 'started');

      // Add and verify on every server; the first failure stops adding to further servers.
      for (const server of servers) {
        options.signal?.throwIfAborted();
        const step = tasks.get(server.id)?.step ?? 'pending';
        try {
          if (step === 'pending') {
            await addKey(fleet, server, credential, newPublicKey);
            await setStep(state, server.id, 'added');
            await auditStep(state, server, 'added', 'success');
          }
          if (step !== 'verified') {
            const result = await probe(
              fleet,
              server,
              credential.login,
              newPrivateKey,
              state.options.verifySudo,
            );
            if (!result.ok) {
              throw new FleetwardError(
                'COMMAND_FAILED',
                `the new key did not log in to ${server.name} as ${credential.login}: ${result.message}`,
                {
                  fault: 'remote',
                  details: { refused: result.refused },
                },
              );
            }
            await setStep(state, server.id, 'verified');
            await auditStep(state, server, 'verified', 'success', { newConnection: true });
          }
        } catch (error) {
          const err = errorOf(error, `adding the new key on ${server.name}`);
          const stop = stopsOperation(err, server);
          await setStep(state, server.id, 'verify-failed', { status: 'failed', error: err });
          await auditStep(state, server, 'verify-failed', 'failure', { code: err.code }, err.message);
          return rollBack(
            state,
            secrets,
            oldPrivateKey,
            stop
              ? `stopped: ${stop.reason}, so no further server was touched: ${err.message}`
              : `verification failed on ${server.name}: ${err.message}`,
            stop,
          );
        }
      }

      // Every server accepts the new key: switch. The old private key is kept until it is refused.
      await secrets.set(refs.previous, oldPrivateKey);
      await secrets.set(refs.current, newPrivateKey);
      const current = await store.credentials.require(tenantId, credentialId);
      credential = await store.credentials.update(
        tenantId,
        credentialId,
        {
          publicKey: newPublicKey,
          fingerprint: newFingerprint,
          previousFingerprint: current.fingerprint,
          rotatedAt: fleet.clock.now().toISOString(),
        },
        { expectedVersion: current.version },
      );
      await auditStep(state, undefined, 'switched', 'success');
    }
    const oldFingerprint = credential.previousFingerprint!;
    state.credential = { ...credential, fingerprint: oldFingerprint };

    // Retire the old key: dead-man expiry first, then removal, then proof that it is refused.
    const problems: string[] = [];
    let stop: OperationStop | undefined;
    for (const server of servers) {
      if (tasks.get(server.id)?.step === 'retired') continue;
      if (stop) {
        // The new key works everywhere, so stopping here locks nobody out; the old key stays.
        await setStep(state, server.id, 'not-started', {
          status: 'skipped',
          error: { code: 'NOT_STARTED', message: `old key not retired: ${stop.reason}` },
        });
        continue;
      }
      try {
        await stampExpiry(
          fleet,
          server,
          credential,
          oldFingerprint,
          new Date(fleet.clock.now().getTime() + graceMinutes * 60_000),
        );
        await setStep(state, server.id, 'expiring');
        await removeKey(fleet, server, credential.login, oldFingerprint);
        const old = await probe(fleet, server, credential.login, oldPrivateKey, false);
        if (old.ok || !old.refused) {
          throw new ConflictError(
            old.ok
              ? `the old key still logs in to ${server.name} after removal (another authorized_keys file or line grants it)`
              : `could not prove the old key is refused on ${server.name}: ${old.message}`,
          );
        }
        await setStep(state, server.id, 'retired', {
          status: 'succeeded',
          finishedAt: fleet.clock.now().toISOString(),
        });
        await auditStep(state, server, 'retired', 'success', { oldKeyRefused: true });
      } catch (error) {
        const err = errorOf(error, `retiring the old key on ${server.name}`);
        stop = stopsOperation(err, server);
        problems.push(`${server.name}: ${err.message}`);
        await setStep(state, server.id, 'retire-failed', { status: 'failed', error: err });
        await auditStep(state, server, 'retire-failed', 'failure', { code: err.code }, err.message);
      }
    }
    const done = await store.credentials.require(tenantId, credentialId);
    await store.credentials.update(
      tenantId,
      credentialId,
      { status: 'active' },
      { expectedVersion: done.version },
    );
    await secrets.delete(refs.next);
    if (problems.length === 0) await secrets.delete(refs.previous);
    const reason = stop
      ? `stopped: ${stop.reason}; the new key works everywhere, the old key stays where it was not retired: ${problems.join('; ')}`
      : problems.length
        ? `the new key works everywhere, but retiring the old key failed: ${problems.join('; ')} (it still expires by itself)`
        : undefined;
    await finishJob(state, stop ? 'stopped' : problems.length ? 'partial' : 'succeeded', reason);
    await auditStep(
      state,
      undefined,
      'completed',
      problems.length ? 'failure' : 'success',
      stopDetails(stop),
      reason,
    );
    fleet.events.emit('keys.rotation.completed', {
      tenantId,
      credentialId,
      jobId: job.id,
      status: problems.length ? 'partial' : 'succeeded',
    });
    return report(state, problems.length ? 'failed' : 'succeeded', reason);
  } finally {
    await store.leases.release(lease).catch(() => {});
  }
}
