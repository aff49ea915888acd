import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { z } from 'zod';
import {
  type Credential,
  FingerprintSchema,
  IdSchema,
  type KeyInventory,
  type KeyRotationPolicy,
  LoginSchema,
  type ObservedKey,
  PublicKeyLineSchema,
  type Server,
  validate,
} from '../domain/index.js';
import { validateOptions } from '../domain/options.js';
import { OperationStopLatch } from '../engine/stop.js';
import { ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import { resolveTargets, type Targets, validateTargets } from '../inventory/targets.js';
import { audited, refused } from '../kernel/call-audit.js';
import type { CallContext } from '../kernel/context.js';
import type { Runtime } from '../kernel/runtime.js';
import {
  fleetwardMarker,
  isCloudAgentManaged,
  optionOf,
  parseAuthorizedKeys,
  parsePublicKey,
} from './authorized-keys.js';
import { USER_CA_MARKER } from './grants.js';
import type { GeneratedKeyPair } from './keygen.js';
import { type RotationOptions, type RotationReport, rotateCredential } from './rotation.js';
import { readAllAuthorizedKeys, readSshdLog, sshdVersionOf } from './server-keys.js';
import { parseSshdLog } from './sshd-log.js';

const RegisterSchema = z.strictObject({
  id: IdSchema.optional(),
  login: LoginSchema,
  publicKey: PublicKeyLineSchema,
  /** The private key, when Fleetward is to hold (and rotate) it: kept in the SecretStore only. */
  privateKey: z
    .string()
    .min(1)
    .max(64 * 1024)
    .optional(),
  /** The one principal responsible for the key. */
  caretakerId: IdSchema,
  serverIds: z.array(IdSchema).min(1).max(10_000),
});
/**
 * A managed SSH key to register (`keys.register`): its login, public key, caretaker and servers,
 * and optionally the private key for Fleetward to hold and rotate.
 *
 * @useDeclaredType
 */
export type RegisterCredentialInput = z.input<typeof RegisterSchema>;

/** What sets the rotation policy of a project's keys. */
export const KeyRotationPolicyInputSchema = z.strictObject({
  projectId: IdSchema,
  intervalHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 366),
  graceMinutes: z.number().int().min(1).max(1440).optional(),
  enabled: z.boolean().optional(),
});

const RotationOptionsSchema = z.strictObject({
  verifySudo: z.boolean().optional(),
  graceMinutes: z.number().int().min(1).max(1440).optional(),
  generateKeyPair: z
    .custom<(comment: string) => GeneratedKeyPair>((v) => typeof v === 'function', 'expected a function')
    .optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});
/** `graceMinutes` comes from each key's policy. */
const RotateDueOptionsSchema = RotationOptionsSchema.omit({ graceMinutes: true });

const InventoryOptionsSchema = z.strictObject({
  concurrency: z.number().int().min(1).max(256).optional(),
});

/** A managed credential whose rotation is due under a project's policy. */
export interface DueCredential {
  credential: Credential;
  policy: KeyRotationPolicy;
  /** When it was last rotated (or registered). */
  since: string;
  dueAt: string;
}

/** Where a tenant's private keys live in the SecretStore. */
export const credentialSecretRef = (tenantId: string, credentialId: string) =>
  `tenants/${tenantId}/credentials/${credentialId}`;

/**
 * A `credentialsFor` for the SSH adapter that logs in with Fleetward's managed keys: the
 * credential on the server (for `login`, if given) whose private key is in the SecretStore. Read
 * for every command, so a rotated key is used from the next command on.
 */
export function managedCredentials(fleet: Runtime, options: { login?: string } = {}) {
  return async (server: Server): Promise<{ username: string; privateKey: string } | undefined> => {
    if (!fleet.secrets) return undefined;
    const candidates = (
      await fleet.store.credentials.listAll(
        server.tenantId,
        options.login ? { where: { login: options.login } } : {},
      )
    )
      .filter((c) => c.secretRef && c.status !== 'retired' && c.serverIds.includes(server.id))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const credential of candidates) {
      const privateKey = await fleet.secrets.get(credential.secretRef!);
      if (privateKey) return { username: credential.login, privateKey };
    }
    return undefined;
  };
}

/** What one server's keys look like: every login's authorized_keys by fingerprint, and their use. */
async function inventoryServer(
  fleet: Runtime,
  server: Server,
  credentials: Map<string, Credential>,
): Promise<Omit<KeyInventory, 'id' | 'tenantId' | 'version' | 'createdAt' | 'updatedAt'>> {
  const scannedAt = fleet.clock.now().toISOString();
  try {
    const adapter = fleet.adapterFor(server);
    const [files, log, version] = await Promise.all([
      readAllAuthorizedKeys(adapter, server),
      readSshdLog(adapter, server),
      sshdVersionOf(adapter, server),
    ]);
    const events = parseSshdLog(log.text, { year: new Date(scannedAt).getUTCFullYear() }).filter(
      (e) => e.result === 'accepted',
    );
    const keys: ObservedKey[] = [];
    for (const [login, text] of [...files.entries()].sort()) {
      if (!LoginSchema.safeParse(login).success) continue;
      const lines = parseAuthorizedKeys(text);
      lines.forEach((line, index) => {
        if (line.kind !== 'key') return;
        const marker = fleetwardMarker(line);
        const credential = credentials.get(line.fingerprint);
        const used = events.filter((e) => e.login === login && e.fingerprint === line.fingerprint);
        const timed = used.filter((e) => e.at).sort((a, b) => (a.at! < b.at! ? 1 : -1));
        const expiry = optionOf(line, 'expiry-time')?.value;
        keys.push({
          login,
          fingerprint: line.fingerprint,
          keyType: line.keyType,
          comment: line.comment.slice(0, 1024),
          options: [...new Set(line.options.map((o) => o.name.toLowerCase()))].slice(0, 32),
          ...(expiry ? { expiryTime: expiry.slice(0, 32) } : {}),
          ...(credential && credential.login === login
            ? { credentialId: credential.id }
            : marker.credentialId
              ? { credentialId: marker.credentialId }
              : {}),
          ...(marker.grantId ? { grantId: marker.grantId } : {}),
          cloudAgent: isCloudAgentManaged(lines, index),
          fleetwardUserCa:
            optionOf(line, 'cert-authority') !== undefined &&
            line.comment.split(/\s+/).includes(USER_CA_MARKER),
          logins: used.length,
          ...(timed[0]?.at ? { lastUsedAt: timed[0].at } : {}),
          ...(used.at(-1) ? { lastUsedFrom: used.at(-1)!.from.slice(0, 64) } : {}),
        });
      });
    }
    const logins = events
      .slice(-500)
      .reverse()
      .map((e) => ({
        login: e.login.slice(0, 64),
        ...(e.at ? { at: e.at } : {}),
        from: e.from.slice(0, 64),
        ...(e.fingerprint && FingerprintSchema.safeParse(e.fingerprint).success
          ? { fingerprint: e.fingerprint }
          : {}),
        method: e.method,
      }));
    return {
      serverId: server.id,
      scannedAt,
      status: 'succeeded',
      ...(version ? { sshdVersion: version.raw.slice(0, 64) } : {}),
      keys,
      logins,
      logSource: log.source.slice(0, 256),
    };
  } catch (error) {
    const e = toFleetwardError(error, `key inventory of ${server.name}`);
    return {
      serverId: server.id,
      scannedAt,
      status: 'failed',
      keys: [],
      logins: [],
      error: { code: e.code, message: e.message.slice(0, 4000) },
    };
  }
}

/** Managed credentials whose rotation is due under their projects' policies (the strictest wins). */
export async function dueCredentials(fleet: Runtime, tenantId: string): Promise<DueCredential[]> {
  const store = fleet.store;
  const now = fleet.clock.now().getTime();
  const policies = (await store.keyRotationPolicies.listAll(tenantId)).filter((p) => p.enabled);
  if (policies.length === 0) return [];
  const credentials = (await store.credentials.listAll(tenantId)).filter((c) => c.status !== 'retired');
  const out: DueCredential[] = [];
  for (const credential of credentials) {
    let best: { policy: KeyRotationPolicy; dueAt: number } | undefined;
    const since = credential.rotatedAt ?? credential.createdAt;
    for (const policy of policies) {
      const project = await store.projects.get(tenantId, policy.projectId);
      if (!project) continue;
      const inProject = await store.servers.listAll(tenantId, {
        selector: { ...project.selector, ids: credential.serverIds },
      });
      if (inProject.length === 0) continue;
      const dueAt = Date.parse(since) + policy.intervalHours * 3_600_000;
      if (!best || dueAt < best.dueAt) best = { policy, dueAt };
    }
    if (best && best.dueAt <= now) {
      out.push({ credential, policy: best.policy, since, dueAt: new Date(best.dueAt).toISOString() });
    }
  }
  return out;
}

/** What sets the rotation policy of a project's keys. */
export type KeyRotationPolicyInput = z.input<typeof KeyRotationPolicyInputSchema>;

/** Rotation policies: how often the managed keys on a project's servers must be rotated. */
export interface KeyRotationPoliciesApi {
  /**
   * Sets the rotation interval of a project's keys (one policy per project, id
   * `rotation-<projectId>`): creates it, or changes the existing one. Needs `keys.rotate` on the
   * project's key policy.
   * @default input.enabled true
   * @throws ValidationError for input that does not fit {@link KeyRotationPolicyInputSchema}.
   * @throws NotFoundError for an unknown project; AuthorizationError; ConflictError when the
   *   policy changed meanwhile.
   */
  set(input: KeyRotationPolicyInput): Promise<KeyRotationPolicy>;
  /** Every rotation policy of the tenant. @throws AuthorizationError without `keys.read`. */
  list(): Promise<KeyRotationPolicy[]>;
}

/**
 * Managed SSH keys of a session (`session.keys`): each with exactly one caretaker, rotated without
 * ever locking anyone out, and the key inventory of servers (what is in every `authorized_keys`
 * and who logged in with it). Every call is authorized (`keys.read`, `keys.rotate` on the servers
 * concerned) and audited.
 */
export interface KeysApi {
  /**
   * Registers a managed key with its one caretaker. With `privateKey`, Fleetward holds (and can
   * rotate) it: it goes to the SecretStore only. Needs `keys.rotate` on every server of the key.
   * @throws ValidationError for bad input, unknown servers, or a private key without a SecretStore.
   * @throws ConflictError when the key (fingerprint) is already managed in the tenant, naming the
   *   existing credential.
   * @throws NotFoundError for an unknown caretaker; AuthorizationError.
   */
  register(input: RegisterCredentialInput): Promise<Credential>;
  /**
   * Hands a key to another caretaker (still exactly one). Needs `keys.rotate` on its servers.
   * @throws NotFoundError for an unknown credential or caretaker; AuthorizationError.
   * @throws ConflictError when the credential changed meanwhile.
   */
  setCaretaker(credentialId: string, caretakerId: string): Promise<Credential>;
  /** Every managed key of the tenant. @throws AuthorizationError without `keys.read`. */
  list(): Promise<Credential[]>;
  /**
   * Rotates a managed key on all its servers without ever locking anyone out: the new key is
   * installed and proven everywhere before the old one is retired (with a dead-man expiry), and a
   * failed proof rolls back (a `rolled-back` report, not an exception). Needs `keys.rotate` on
   * every server of the key.
   * @default options.graceMinutes 5
   * Refusals before the rotation's first record are audited too.
   * @throws ValidationError for bad options, a key on no known server or without its private key
   *   in the SecretStore; NotFoundError; AuthorizationError.
   * @throws ConflictError when another process rotates the key.
   * @throws CapabilityMissingError without a SecretStore, or when a server's adapter lacks the
   *   `exec` or `login` capability (nothing is changed).
   */
  rotate(credentialId: string, options?: RotationOptions): Promise<RotationReport>;
  /** Rotation policies of projects. */
  policies: KeyRotationPoliciesApi;
  /**
   * Managed keys overdue for rotation under their projects' policies (the strictest wins), used
   * and unused alike.
   * @throws AuthorizationError without `keys.read`.
   */
  due(): Promise<DueCredential[]>;
  /**
   * Rotates every overdue key, one after another, with the grace of its policy; a failed one is
   * reported and the rest go on. Needs `keys.rotate` on every server of every due key (or
   * somewhere, when none is due), or nothing is rotated; the call is audited (`credential` `due`)
   * even when nothing is due.
   * @throws ValidationError for bad options; AuthorizationError; what {@link KeysApi.rotate}
   *   throws before a rotation starts.
   */
  rotateDue(options?: Omit<RotationOptions, 'graceMinutes'>): Promise<RotationReport[]>;
  /**
   * Reads every login's authorized_keys and the sshd log on the targeted servers and stores
   * what is there by fingerprint: managed (credential), granted (JIT), cloud-agent or unmanaged,
   * with use seen in the log. A changed host key stops it: servers not yet read get no record.
   * Needs `keys.read` on every server.
   * @default options.concurrency 16
   * @throws ValidationError for bad targets or options; AuthorizationError.
   */
  inventory(targets: Targets, options?: { concurrency?: number }): Promise<KeyInventory[]>;
  /** The newest key inventory of each server that has one. @throws AuthorizationError. */
  latestInventory(): Promise<KeyInventory[]>;
}

/** Managed SSH keys (one caretaker each), key inventory of servers, and rotation. */
export function createKeysApi(internals: () => CallContext): KeysApi {
  const serverResources = async (ctx: CallContext, ids: string[]) => {
    const servers = await ctx.runtime.store.servers.listAll(ctx.tenantId, { selector: { ids } });
    const missing = ids.filter((id) => !servers.some((s) => s.id === id));
    if (missing.length) {
      throw new ValidationError('serverIds', [
        { path: [], message: `unknown servers: ${missing.slice(0, 10).join(', ')}` },
      ]);
    }
    return servers.map((server) => ({ type: 'server' as const, server }));
  };

  return {
    async register(input: RegisterCredentialInput): Promise<Credential> {
      const ctx = internals();
      const opts = validate(RegisterSchema, input, 'RegisterCredential');
      const key = parsePublicKey(opts.publicKey);
      const id = opts.id ?? `cred-${randomUUID()}`;
      const resources = await serverResources(ctx, opts.serverIds);
      const existing = await ctx.runtime.store.credentials.listAll(ctx.tenantId, {
        where: { fingerprint: key.fingerprint },
      });
      if (existing.length) {
        throw new ConflictError(
          `key ${key.fingerprint} is already managed as credential ${existing[0]!.id} (caretaker ${existing[0]!.caretakerId})`,
        );
      }
      if (opts.privateKey && !ctx.runtime.secrets) {
        throw new ValidationError('RegisterCredential', [
          { path: ['privateKey'], message: 'needs a SecretStore (createFleet({ secrets }))' },
        ]);
      }
      const secretRef = opts.privateKey ? credentialSecretRef(ctx.tenantId, id) : undefined;
      return ctx.write(
        'keys.rotate',
        resources,
        { type: 'credential', id },
        async (tx) => {
          await tx.principals.require(ctx.tenantId, opts.caretakerId);
          const created = await tx.credentials.create({
            tenantId: ctx.tenantId,
            id,
            kind: 'ssh-key',
            publicKey: opts.publicKey,
            fingerprint: key.fingerprint,
            caretakerId: opts.caretakerId,
            login: opts.login,
            serverIds: [...new Set(opts.serverIds)].sort(),
            ...(secretRef ? { secretRef } : {}),
          });
          // The secret is written inside the transaction's span: if it fails, nothing is registered.
          if (secretRef && opts.privateKey) await ctx.runtime.secrets!.set(secretRef, opts.privateKey);
          return created;
        },
        (c) => ({
          fingerprint: c.fingerprint,
          caretakerId: c.caretakerId,
          login: c.login,
          servers: c.serverIds.length,
        }),
      );
    },

    async setCaretaker(credentialId: string, caretakerId: string): Promise<Credential> {
      const ctx = internals();
      const credential = await ctx.runtime.store.credentials.require(ctx.tenantId, credentialId);
      return ctx.write(
        'keys.rotate',
        await serverResources(ctx, credential.serverIds),
        { type: 'credential', id: credentialId },
        async (tx) => {
          await tx.principals.require(ctx.tenantId, validate(IdSchema, caretakerId, 'caretakerId'));
          return tx.credentials.update(
            ctx.tenantId,
            credentialId,
            { caretakerId },
            { expectedVersion: credential.version },
          );
        },
        () => ({ from: credential.caretakerId, to: caretakerId }),
      );
    },

    list: () => {
      const ctx = internals();
      return ctx.read('keys.read', [{ type: 'credential' }], { type: 'credential', id: '*' }, () =>
        ctx.runtime.store.credentials.listAll(ctx.tenantId),
      );
    },

    async rotate(credentialId: string, options: RotationOptions = {}): Promise<RotationReport> {
      const ctx = internals();
      const credential = await ctx.runtime.store.credentials.require(
        ctx.tenantId,
        validate(IdSchema, credentialId, 'credentialId'),
      );
      const opts = validateOptions(RotationOptionsSchema, options, 'RotationOptions');
      const target = { type: 'credential', id: credentialId };
      const { principal, rule } = await ctx.decide(
        'keys.rotate',
        await serverResources(ctx, credential.serverIds),
        target,
      );
      try {
        return await rotateCredential(
          ctx.runtime,
          ctx.tenantId,
          { principalId: principal.id, kind: principal.kind },
          credentialId,
          opts,
        );
      } catch (error) {
        // Refusals before the rotation's first record (no `login` capability, no private key,
        // another process rotating) are in the log too.
        throw await refused(ctx, principal, 'keys.rotate', target, error, rule);
      }
    },

    policies: {
      set: async (input: KeyRotationPolicyInput): Promise<KeyRotationPolicy> => {
        const ctx = internals();
        const opts = validate(KeyRotationPolicyInputSchema, input, 'KeyRotationPolicy');
        const id = `rotation-${opts.projectId}`;
        return ctx.write(
          'keys.rotate',
          [{ type: 'key-policy', projectId: opts.projectId }],
          { type: 'key-policy', id },
          async (tx) => {
            await tx.projects.require(ctx.tenantId, opts.projectId);
            const current = await tx.keyRotationPolicies.get(ctx.tenantId, id);
            const fields = {
              intervalHours: opts.intervalHours,
              ...(opts.graceMinutes ? { graceMinutes: opts.graceMinutes } : {}),
              ...(opts.enabled !== undefined ? { enabled: opts.enabled } : {}),
            };
            return current
              ? tx.keyRotationPolicies.update(ctx.tenantId, id, fields, { expectedVersion: current.version })
              : tx.keyRotationPolicies.create({
                  id,
                  projectId: opts.projectId,
                  ...fields,
                  tenantId: ctx.tenantId,
                });
          },
        );
      },
      list: () => {
        const ctx = internals();
        return ctx.read('keys.read', [{ type: 'key-policy' }], { type: 'key-policy', id: '*' }, () =>
          ctx.runtime.store.keyRotationPolicies.listAll(ctx.tenantId),
        );
      },
    },

    due: () => {
      const ctx = internals();
      return ctx.read('keys.read', [{ type: 'credential' }], { type: 'credential', id: 'due' }, () =>
        dueCredentials(ctx.runtime, ctx.tenantId),
      );
    },

    async rotateDue(options: Omit<RotationOptions, 'graceMinutes'> = {}): Promise<RotationReport[]> {
      const ctx = internals();
      const opts = validateOptions(RotateDueOptionsSchema, options, 'RotateDueOptions');
      const due = await dueCredentials(ctx.runtime, ctx.tenantId);
      const resources = [];
      for (const item of due) resources.push(...(await serverResources(ctx, item.credential.serverIds)));
      const target = { type: 'credential', id: 'due' };
      // Decided before anything is rotated, on all of it: an empty set is no free pass either.
      const decided = await ctx.decide('keys.rotate', resources, target);
      const actor = { principalId: decided.principal.id, kind: decided.principal.kind };
      return audited(
        ctx,
        decided,
        'keys.rotate',
        target,
        async () => {
          const reports: RotationReport[] = [];
          for (const item of due) {
            const credentialTarget = { type: 'credential', id: item.credential.id };
            try {
              reports.push(
                await rotateCredential(ctx.runtime, ctx.tenantId, actor, item.credential.id, {
                  ...opts,
                  graceMinutes: item.policy.graceMinutes,
                }),
              );
            } catch (error) {
              throw await refused(
                ctx,
                decided.principal,
                'keys.rotate',
                credentialTarget,
                error,
                decided.rule,
              );
            }
          }
          return reports;
        },
        (reports) => ({
          due: due.length,
          credentials: reports.map((r) => ({ credentialId: r.credentialId, status: r.status })).slice(0, 100),
        }),
        (reports) => (reports.every((r) => r.status === 'succeeded') ? 'success' : 'failure'),
      );
    },

    async inventory(targets: Targets, options: { concurrency?: number } = {}): Promise<KeyInventory[]> {
      const ctx = internals();
      const store = ctx.runtime.store;
      const parsedTargets = validateTargets(targets);
      const opts = validateOptions(InventoryOptionsSchema, options, 'KeyInventoryOptions');
      const servers = await resolveTargets(store, ctx.tenantId, parsedTargets);
      const principal = await ctx.authorize(
        'keys.read',
        servers.map((server) => ({ type: 'server', server })),
        { type: 'key-inventory', id: servers.length === 1 ? servers[0]!.id : `${servers.length} servers` },
      );
      const credentials = new Map(
        (await store.credentials.listAll(ctx.tenantId)).map((c) => [c.fingerprint, c]),
      );
      const queue = new PQueue({ concurrency: opts.concurrency ?? 16 });
      // A changed host key stops the inventory: servers not yet read get no record at all.
      const stop = new OperationStopLatch();
      const notStarted: string[] = [];
      const results = (
        await Promise.all(
          servers.map((server) =>
            queue.add(async () => {
              if (stop.stopped) {
                notStarted.push(server.id);
                return undefined;
              }
              const inventory = await inventoryServer(ctx.runtime, server, credentials);
              stop.note(inventory.error, server);
              const stored = await store.keyInventories.create({ ...inventory, tenantId: ctx.tenantId });
              ctx.runtime.events.emit('keys.inventory.server.completed', {
                tenantId: ctx.tenantId,
                serverId: server.id,
                status: stored.status,
                keys: stored.keys.length,
                ...(stored.error
                  ? { error: { code: stored.error.code, message: stored.error.message } }
                  : {}),
              });
              return stored;
            }),
          ),
        )
      ).filter((r): r is KeyInventory => r !== undefined);
      await ctx.runtime.audit(store, {
        tenantId: ctx.tenantId,
        actor: { principalId: principal.id, kind: principal.kind },
        action: 'keys.read',
        target: {
          type: 'key-inventory',
          id: servers.length === 1 ? servers[0]!.id : `${servers.length} servers`,
        },
        decision: 'allow',
        result: results.every((r) => r.status === 'succeeded') && !stop.stopped ? 'success' : 'failure',
        ...(stop.stopped ? { reason: `stopped: ${stop.stopped.reason}`.slice(0, 2000) } : {}),
        details: {
          ...stop.details(),
          ...(stop.stopped ? { notStarted: notStarted.slice(0, 1000) } : {}),
          servers: servers.length,
          keys: results.reduce((n, r) => n + r.keys.length, 0),
          unmanaged: results.reduce(
            (n, r) => n + r.keys.filter((k) => !k.credentialId && !k.grantId && !k.cloudAgent).length,
            0,
          ),
        },
      });
      return results.sort((a, b) => (a.serverId < b.serverId ? -1 : 1));
    },

    latestInventory: async (): Promise<KeyInventory[]> => {
      const ctx = internals();
      return ctx.read(
        'keys.read',
        [{ type: 'key-inventory' }],
        { type: 'key-inventory', id: '*' },
        async () => {
          const newest = new Map<string, KeyInventory>();
          for (const inv of await ctx.runtime.store.keyInventories.listAll(ctx.tenantId)) {
            const seen = newest.get(inv.serverId);
            if (!seen || seen.scannedAt < inv.scannedAt) newest.set(inv.serverId, inv);
          }
          return [...newest.values()].sort((a, b) => (a.serverId < b.serverId ? -1 : 1));
        },
      );
    },
  };
}
