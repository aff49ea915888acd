import { z } from 'zod';
import { isAction } from '../authz/actions.js';
import { IdSchema, TimestampSchema } from './common.js';
import { ServerSelectorSchema } from './selector.js';
import { ScriptNameSchema } from './sop.js';

/** A POSIX login name as `useradd` accepts it: never anything a shell or sshd would parse. */
export const LoginSchema = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a POSIX login name');

/** An OpenSSH public key line, `type base64 [comment]`, on one line. */
export const PublicKeyLineSchema = z
  .string()
  .max(16_384)
  .regex(
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n\r\0]*)?$/,
    'must be an OpenSSH public key line ("ssh-ed25519 AAAA... comment")',
  );

/** `SHA256:` fingerprint as `ssh-keygen -l` prints it. */
export const FingerprintSchema = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'must be SHA256:<base64>');

const DecisionSchema = z.strictObject({
  principalId: IdSchema,
  at: TimestampSchema,
  comment: z.string().max(2000).optional(),
});

export const AccessRequestFields = {
  requesterId: IdSchema,
  /**
   * `ssh-key`: a time-bound `authorized_keys` line for `publicKey` that sshd itself expires.
   * `ssh-cert`: an OpenSSH user certificate for `publicKey`, signed by the tenant's user CA, whose
   * validity sshd itself enforces; the servers trust the CA for `login` only.
   * `actions`: no shell at all; the grant allows only `actions` (and `scripts`) on the servers.
   * `ephemeral-key`: access through Fleetward. Nothing is installed; while the grant is active its
   * grantee asks Fleetward (`access.connect`) to have a server accept a public key for `login`
   * for a short time (EC2 Instance Connect: 60 seconds), one login at a time. No `publicKey` at
   * request time: the grantee may use any key, each use audited with its fingerprint. Every server
   * of it needs an adapter with the `ephemeralKeys` capability.
   */
  mode: z.enum(['ssh-key', 'ssh-cert', 'actions', 'ephemeral-key']).default('ssh-key'),
  /** The servers as the requester chose them. */
  servers: ServerSelectorSchema,
  /** The servers the selector chose at request time: approvers approve exactly these. */
  serverIds: z.array(IdSchema).min(1).max(10_000),
  login: LoginSchema.optional(),
  /** The requester's own public key (modes `ssh-key`, `ssh-cert`); the private key never leaves them. */
  publicKey: PublicKeyLineSchema.optional(),
  fingerprint: FingerprintSchema.optional(),
  /** Mode `actions`: action names from the catalogue. */
  actions: z
    .array(z.string().refine(isAction, { error: (i) => `unknown action ${JSON.stringify(i.input)}` }))
    .max(50)
    .optional(),
  /** Mode `actions`: script names the grant may run (with `script.run`). */
  scripts: z.array(ScriptNameSchema).max(200).optional(),
  durationMinutes: z
    .number()
    .int()
    .min(1)
    .max(14 * 24 * 60),
  /** Access starts at approval, or at this instant if it is later. */
  startAt: TimestampSchema.optional(),
  reason: z.string().trim().min(10, 'must explain the need in at least 10 characters').max(2000),
  ticket: z.string().trim().min(1, 'is required').max(128),
  /**
   * `pending` until decided; `approved` once the last approval made the grant (in effect on every
   * server, or not tried yet); `install-failed` when the grant is NOT in effect on at least one of
   * its servers because installing it there failed (see the grant's `installation` and its
   * targets; a later sweep that installs it everywhere makes the request `approved` again);
   * `rejected`, `cancelled`, `expired` (not decided in time); `revoked` or `ended` once its grant is.
   */
  status: z.enum([
    'pending',
    'approved',
    'install-failed',
    'rejected',
    'expired',
    'cancelled',
    'revoked',
    'ended',
  ]),
  /** Approvals from distinct principals other than the requester needed to approve. */
  requiredApprovals: z.number().int().min(1).max(10),
  approvals: z.array(DecisionSchema).default([]),
  rejection: DecisionSchema.optional(),
  requestedAt: TimestampSchema,
  /** A request still pending then expires. Kept forever afterwards, like every request. */
  expiresAt: TimestampSchema,
  decidedAt: TimestampSchema.optional(),
  grantId: IdSchema.optional(),
};

export const GrantTargetSchema = z.strictObject({
  serverId: IdSchema,
  /**
   * `pending`: not on the server yet. `installed`: the line is on the server (sshd enforces its
   * expiry; for `ssh-cert`, the login trusts the tenant's user CA and sshd enforces the certificate's
   * validity). For `ssh-cert`, `removed` means this grant no longer holds the CA line there: it is
   * gone, or kept because another grant of that login still needs it. `removed`: taken off and checked gone. `failed`: could not install (see `error`;
   * a server that could not be reached, `TRANSPORT_FAILED` or `TIMEOUT`, is tried again by every
   * sweep while the grant lasts). `pending` with an `error`: not started, and why (a changed host
   * key elsewhere stopped the installation, or the certificate could not be signed).
   * `remove-failed`: removal could not be done or verified; retried by every sweep.
   *
   * Mode `ephemeral-key` installs nothing: its targets read `installed` from the moment the grant
   * starts (the server is not touched, and `installedAt` is that moment), meaning "in effect: the
   * grantee may connect through Fleetward"; when the grant ends they stay as they are and the grant
   * is `cleanedUp` at once, since nothing on a server outlives the keys the adapter offered.
   */
  state: z.enum(['pending', 'installed', 'failed', 'removed', 'remove-failed']),
  /** The sshd version found on the server, e.g. `OpenSSH_9.2p1`. */
  sshdVersion: z.string().max(64).optional(),
  /** The `expiry-time` value written, exactly. */
  expiryTime: z.string().max(32).optional(),
  installedAt: TimestampSchema.optional(),
  removedAt: TimestampSchema.optional(),
  error: z.strictObject({ code: z.string(), message: z.string().max(4000) }).optional(),
});
export type GrantTarget = z.infer<typeof GrantTargetSchema>;

export const AccessGrantFields = {
  requestId: IdSchema,
  principalId: IdSchema,
  mode: z.enum(['ssh-key', 'ssh-cert', 'actions', 'ephemeral-key']),
  login: LoginSchema.optional(),
  fingerprint: FingerprintSchema.optional(),
  /**
   * Mode `ssh-cert`: the signed `…-cert.pub` line, valid from a minute before `notBefore` (clock
   * skew) until `notAfter`. Public material: it is useless without the requester's private key.
   */
  certificate: z.string().max(16_384).optional(),
  reason: z.string().max(2000),
  ticket: z.string().max(128),
  approverIds: z.array(IdSchema).min(1),
  notBefore: TimestampSchema,
  notAfter: TimestampSchema,
  /** `scheduled` until `notBefore`, `active` until `notAfter`, then `expired`, or `revoked` early. */
  status: z.enum(['scheduled', 'active', 'expired', 'revoked']),
  targets: z.array(GrantTargetSchema).default([]),
  /**
   * Whether the grant is in effect on its servers, summed up from `targets` while the grant is
   * open (kept as it was once it has ended): `pending` while no server has failed and some are
   * still to do (a scheduled grant); `installed` on every server (mode `actions`: its role binding
   * exists; mode `ephemeral-key`: the grant has started, nothing is written anywhere); `partial`
   * installed on some servers and NOT in effect on the others (targets `failed`, or `pending`
   * with an `error`); `failed` NOT in effect on any server. The request of
   * a `partial` or `failed` grant reads `install-failed`.
   */
  installation: z.enum(['pending', 'installed', 'partial', 'failed']).default('pending'),
  /** Mode `actions`: the role and binding that carry the grant (the binding expires at `notAfter`). */
  roleId: IdSchema.optional(),
  bindingId: IdSchema.optional(),
  revokedBy: IdSchema.optional(),
  /**
   * True once every target is `removed` (or the grant never reached a server). Mode
   * `ephemeral-key`: true as soon as the grant has ended, since nothing was ever installed.
   */
  cleanedUp: z.boolean().default(false),
};

export const KeyRotationPolicyFields = {
  projectId: IdSchema,
  /** Rotate each managed key of the project's servers this often. */
  intervalHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 366),
  /** How long the retired key keeps an `expiry-time` before it is removed: the dead-man switch. */
  graceMinutes: z.number().int().min(1).max(1440).default(5),
  enabled: z.boolean().default(true),
};

export const ObservedKeySchema = z.strictObject({
  login: LoginSchema,
  fingerprint: FingerprintSchema,
  keyType: z.string().max(64),
  comment: z.string().max(1024),
  /** Option names on the line (`restrict`, `expiry-time`, `from`, …). */
  options: z.array(z.string().max(64)).default([]),
  expiryTime: z.string().max(32).optional(),
  /** The managed credential or the grant the key belongs to; neither means unmanaged. */
  credentialId: IdSchema.optional(),
  grantId: IdSchema.optional(),
  /** Written by a cloud agent (e.g. `# Added by Google`): never edited by Fleetward. */
  cloudAgent: z.boolean().default(false),
  /** The tenant's user CA line that Fleetward installs for certificate grants (`cert-authority`). */
  fleetwardUserCa: z.boolean().default(false),
  /** Accepted logins with this key in the part of the sshd log that was read. */
  logins: z.number().int().min(0).default(0),
  /** The newest of them, when the log says when (logs without timestamps do not). */
  lastUsedAt: TimestampSchema.optional(),
  lastUsedFrom: z.string().max(64).optional(),
});
export type ObservedKey = z.infer<typeof ObservedKeySchema>;

export const KeyInventoryFields = {
  serverId: IdSchema,
  scannedAt: TimestampSchema,
  status: z.enum(['succeeded', 'failed']),
  sshdVersion: z.string().max(64).optional(),
  keys: z.array(ObservedKeySchema).default([]),
  /** Logins the server's sshd log shows, newest first (at most 500). */
  logins: z
    .array(
      z.strictObject({
        login: z.string().max(64),
        at: TimestampSchema.optional(),
        from: z.string().max(64),
        fingerprint: FingerprintSchema.optional(),
        method: z.string().max(32),
      }),
    )
    .max(500)
    .default([]),
  /** Where the log was read from, or why logins are unknown. */
  logSource: z.string().max(256).optional(),
  error: z.strictObject({ code: z.string(), message: z.string().max(4000) }).optional(),
};

/** Tenant-wide rules of just-in-time access, given to `createFleet({ access })`. */
export interface AccessOptions {
  /** Approvals (by distinct principals other than the requester) a request needs. @default 1 */
  requiredApprovals?: number;
  /** A request not decided within this many minutes expires. @default 1440 (one day) */
  pendingTtlMinutes?: number;
  /** The longest access a request may ask for. @default 480 (eight hours) */
  maxDurationMinutes?: number;
  /**
   * Checks a ticket reference (format, or that it exists in the ticketing system). Return a
   * sentence saying what is wrong, or undefined when the ticket is good.
   * @default any non-empty reference
   */
  validateTicket?: (ticket: string) => string | undefined | Promise<string | undefined>;
  /**
   * Before a request of mode `ssh-key`, `ssh-cert` or `ephemeral-key` is stored, every one of its
   * servers is asked, through the adapter that will install the grant and as root (`sudo -n`
   * where the adapter's login is not root), whether the login exists there (`getent passwd --
   * <login>`, as argv). A server that cannot be reached within `timeoutMs`, or lacks the login,
   * refuses the request. `concurrency` servers are asked at a time. `false` skips the check
   * (logins made only after approval, servers switched on for the window): the grant then reports
   * such servers `failed` (mode `ephemeral-key`: `access.connect` fails there).
   * @default { timeoutMs: 20000, concurrency: 16 }
   */
  checkServers?: false | { timeoutMs?: number; concurrency?: number };
}

export const AccessOptionsSchema = z.strictObject({
  requiredApprovals: z.number().int().min(1).max(10).optional(),
  pendingTtlMinutes: z
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 60)
    .optional(),
  maxDurationMinutes: z
    .number()
    .int()
    .min(1)
    .max(14 * 24 * 60)
    .optional(),
  validateTicket: z
    .custom<NonNullable<AccessOptions['validateTicket']>>((v) => typeof v === 'function', {
      message: 'must be a function (ticket => problem | undefined)',
    })
    .optional(),
  checkServers: z
    .union([
      z.literal(false),
      z.strictObject({
        timeoutMs: z.number().int().min(1).max(600_000).optional(),
        concurrency: z.number().int().min(1).max(256).optional(),
      }),
    ])
    .optional(),
});
