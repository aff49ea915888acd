import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { z } from 'zod';
import { IdSchema, TimestampSchema } from '../domain/common.js';
import { validate } from '../domain/validate.js';
import { ValidationError } from '../errors.js';
import { canonicalJson } from '../util/canonical-json.js';

/** The `format` field of the signed payload; a new layout gets a new version, never a silent change. */
export const AUDIT_CHECKPOINT_FORMAT = 'fleetward-audit-checkpoint/1';

const HASH = /^[a-f0-9]{64}$/;
const KEY_ID = /^ed25519:[A-Za-z0-9_-]{22}$/;
// An Ed25519 signature is 64 bytes: 86 base64 characters and `==`.
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;

/** What a checkpoint vouches for: the head of one tenant's chain at a moment. */
export const AuditCheckpointHeadSchema = z.strictObject({
  tenantId: IdSchema,
  /** How many records the log had, i.e. the `seq` of its last record; 0 for an empty log. */
  seq: z.number().int().nonnegative(),
  /** `hash` of the record at `seq` (64 zeros for an empty log). */
  hash: z.string().regex(HASH, 'must be 64 lowercase hex characters'),
  /** When the checkpoint was taken (ISO-8601). */
  at: TimestampSchema,
});
export type AuditCheckpointHead = z.infer<typeof AuditCheckpointHeadSchema>;

/** A signed checkpoint, as kept next to the log and carried in exports. */
export const AuditCheckpointSchema = AuditCheckpointHeadSchema.extend({
  /** `ed25519:` + base64url of the first 16 bytes of sha256 over the public key's SPKI DER. */
  keyId: z.string().regex(KEY_ID, 'must be ed25519: and 22 base64url characters'),
  /** Ed25519 signature (base64) over the canonical JSON of the payload; see {@link signAuditCheckpoint}. */
  signature: z.string().regex(SIGNATURE, 'must be a base64 Ed25519 signature'),
});

/**
 * A signed statement "tenant T's log had `seq` records and its head hash was `hash` at `at`".
 * Kept apart from the log (another system, WORM storage, a ticket), it anchors the chain: a log
 * cut short or rewritten from some record on no longer matches it, and whoever rewrote the log
 * cannot make a new one without the private key.
 */
export type AuditCheckpoint = z.infer<typeof AuditCheckpointSchema>;

function keyError(message: string, cause?: unknown): ValidationError {
  return new ValidationError('AuditSigningKey', [{ path: [], message }], cause ? { cause } : {});
}

/** Reads a public (or private) Ed25519 key. @throws ValidationError otherwise. @internal */
export function toPublicKey(key: KeyObject | string): KeyObject {
  let publicKey: KeyObject;
  try {
    // createPublicKey also derives the public half of a private key, so either may be passed.
    publicKey = typeof key === 'string' || key.type !== 'public' ? createPublicKey(key) : key;
  } catch (error) {
    throw keyError('is not a PEM public key (SPKI) or a key object', error);
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') {
    throw keyError(`must be an Ed25519 key, not ${publicKey.asymmetricKeyType ?? 'a symmetric key'}`);
  }
  return publicKey;
}

function toPrivateKey(key: KeyObject | string): KeyObject {
  let privateKey: KeyObject;
  try {
    privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  } catch (error) {
    throw keyError('is not a PEM private key (PKCS#8) or a key object', error);
  }
  if (privateKey.type !== 'private') throw keyError('must be a private key to sign');
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw keyError(`must be an Ed25519 key, not ${privateKey.asymmetricKeyType ?? 'a symmetric key'}`);
  }
  return privateKey;
}

function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return `ed25519:${createHash('sha256').update(der).digest().subarray(0, 16).toString('base64url')}`;
}

/** The bytes that are signed: fixed field set, canonical JSON, so any implementation can rebuild them. */
function signedPayload(cp: AuditCheckpointHead & { keyId: string }): Buffer {
  return Buffer.from(
    canonicalJson({
      format: AUDIT_CHECKPOINT_FORMAT,
      tenantId: cp.tenantId,
      seq: cp.seq,
      hash: cp.hash,
      at: cp.at,
      keyId: cp.keyId,
    }),
    'utf8',
  );
}

/**
 * The id of a signing key: `ed25519:` + base64url of the first 16 bytes of sha256 over its SPKI
 * DER encoding. Accepts the public key, or the private key (its public half is used).
 * @throws ValidationError when the key cannot be read or is not Ed25519.
 */
export function auditSigningKeyId(publicKey: KeyObject | string): string {
  return keyIdOf(toPublicKey(publicKey));
}

/**
 * Signs the head of a tenant's chain, e.g. `{ tenantId, seq: head.seq, hash: head.hash, at }`
 * from `store.audit.head(tenantId)`. The signature is Ed25519 over the UTF-8 canonical JSON of
 * `{ format: 'fleetward-audit-checkpoint/1', tenantId, seq, hash, at, keyId }`.
 * @throws ValidationError when `head` is invalid, or the key is not an Ed25519 private key.
 */
export function signAuditCheckpoint(
  head: { tenantId: string; seq: number; hash: string; at: string },
  privateKey: KeyObject | string,
): AuditCheckpoint {
  const parsed = validate(AuditCheckpointHeadSchema, head, 'AuditCheckpoint');
  const key = toPrivateKey(privateKey);
  const keyId = keyIdOf(createPublicKey(key));
  const signature = sign(null, signedPayload({ ...parsed, keyId }), key).toString('base64');
  return { ...parsed, keyId, signature };
}

/**
 * Whether `cp` is well-formed, names this key and carries its valid signature. Any other checkpoint,
 * including one signed by a different key, is `false`: the caller decides which keys it trusts.
 * @throws ValidationError when `publicKey` cannot be read or is not Ed25519 (a caller error, not a
 *   property of the checkpoint).
 */
export function verifyAuditCheckpoint(cp: AuditCheckpoint, publicKey: KeyObject | string): boolean {
  const key = toPublicKey(publicKey);
  const parsed = AuditCheckpointSchema.safeParse(cp);
  if (!parsed.success || parsed.data.keyId !== keyIdOf(key)) return false;
  return verify(null, signedPayload(parsed.data), key, Buffer.from(parsed.data.signature, 'base64'));
}

/**
 * A new Ed25519 key pair for signing checkpoints, as PEM (PKCS#8 private, SPKI public). Keep the
 * private key away from the store whose log it vouches for: whoever holds both can rewrite history.
 */
export function generateAuditSigningKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}
