import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  type Actor,
  type ApiToken,
  ConflictError,
  type Fleet,
  IdSchema,
  NameSchema,
  TimestampSchema,
  ValidationError,
  validate,
} from '@fleetward/core';
import { type CallContext, createCallContext } from '@fleetward/core/kernel';
import { z } from 'zod';
import { UnauthenticatedError } from './problem.js';

/** Every API token starts with this, so that secret scanners and people can recognise one. */
export const API_TOKEN_PREFIX = 'fwt_';

const SECRET_BYTES = 32;
/** base64url of 32 bytes, without padding. */
const SECRET_LENGTH = 43;
const SHOWN_SECRET_CHARS = 4;
// Tenant ids may contain `_` too, so the token is read from its fixed-length end.
const TOKEN_PATTERN = new RegExp(
  `^${API_TOKEN_PREFIX}([A-Za-z0-9][A-Za-z0-9._:-]{0,127})_([a-f0-9]{24})_([A-Za-z0-9_-]{${SECRET_LENGTH}})$`,
);
const MAX_TOKEN_LENGTH = API_TOKEN_PREFIX.length + 128 + 1 + 24 + 1 + SECRET_LENGTH;
/** `lastUsedAt` is written at most this often per token: a write per request would double the load. */
export const LAST_USED_RESOLUTION_MS = 60_000;

/** The parts of an API token. */
export interface ParsedApiToken {
  tenantId: string;
  tokenId: string;
  secret: string;
}

/** `fwt_<tenantId>_<tokenId>_<secret>`. */
export function formatApiToken(parts: ParsedApiToken): string {
  return `${API_TOKEN_PREFIX}${parts.tenantId}_${parts.tokenId}_${parts.secret}`;
}

/** Splits a token into its parts, or `undefined` when it is not shaped like one. */
export function parseApiToken(token: string): ParsedApiToken | undefined {
  if (token.length > MAX_TOKEN_LENGTH) return undefined;
  const match = TOKEN_PATTERN.exec(token);
  if (!match) return undefined;
  return { tenantId: match[1]!, tokenId: match[2]!, secret: match[3]! };
}

/** sha256 (hex) of a token's secret part: what the store keeps instead of the secret. */
export function hashTokenSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** An API token as the API shows it: everything but the hash of its secret. */
export type ApiTokenView = Omit<ApiToken, 'tokenHash'>;

/** A new token and its secret. `token` is shown once, here: only its hash is kept. */
export interface IssuedApiToken {
  apiToken: ApiTokenView;
  /** The bearer token, `fwt_<tenantId>_<tokenId>_<secret>`. */
  token: string;
}

export const CreateApiTokenInputSchema = z.strictObject({
  /** What the token is for, e.g. `ci-pipeline`. */
  name: NameSchema,
  /** The principal the token acts as. @default the caller */
  principalId: IdSchema.optional(),
  /** When the token stops working. @default never */
  expiresAt: TimestampSchema.optional(),
});
export type CreateApiTokenInput = z.input<typeof CreateApiTokenInputSchema>;

export const IssueApiTokenInputSchema = z.strictObject({
  tenantId: IdSchema,
  principalId: IdSchema,
  name: NameSchema,
  expiresAt: TimestampSchema.optional(),
});
export type IssueApiTokenInput = z.input<typeof IssueApiTokenInputSchema>;

/** API tokens of a tenant, managed as a principal: `iam.write` to create and revoke, `iam.read` to list. */
export interface ApiTokenApi {
  /**
   * Creates a token for `principalId` (default: the caller), who must exist in the tenant.
   * @throws ValidationError (also when `expiresAt` is not in the future), NotFoundError, AuthorizationError.
   */
  create(input: CreateApiTokenInput): Promise<IssuedApiToken>;
  /** The tenant's tokens, revoked and expired ones included, without their hashes. */
  list(): Promise<ApiTokenView[]>;
  /** Revokes a token for good. Resolves `false` when the tenant has no token with this id. */
  revoke(tokenId: string): Promise<boolean>;
}

const view = ({ tokenHash: _, ...rest }: ApiToken): ApiTokenView => rest;

function newToken(tenantId: string) {
  const tokenId = randomBytes(12).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  const token = formatApiToken({ tenantId, tokenId, secret });
  return {
    tokenId,
    token,
    tokenHash: hashTokenSecret(secret),
    prefix: `${API_TOKEN_PREFIX}${tenantId}_${tokenId}_${secret.slice(0, SHOWN_SECRET_CHARS)}`,
  };
}

function checkExpiry(expiresAt: string | undefined, now: Date, subject: string): void {
  if (expiresAt !== undefined && Date.parse(expiresAt) <= now.getTime()) {
    throw new ValidationError(subject, [{ path: ['expiresAt'], message: 'must be in the future' }]);
  }
}

/** Builds a session's {@link ApiTokenApi} from its internals, like the SDK's own workflow APIs. */
export function createApiTokenApi(internals: () => CallContext): ApiTokenApi {
  const resource = (id?: string) => [{ type: 'api-token', ...(id ? { id } : {}) }];
  return {
    create: async (input) => {
      const ctx = internals();
      const parsed = validate(CreateApiTokenInputSchema, input, 'CreateApiTokenInput');
      checkExpiry(parsed.expiresAt, ctx.runtime.clock.now(), 'CreateApiTokenInput');
      const principalId = parsed.principalId ?? ctx.actor.principalId;
      const minted = newToken(ctx.tenantId);
      const stored = await ctx.write(
        'iam.write',
        resource(minted.tokenId),
        { type: 'api-token', id: minted.tokenId },
        async (tx) => {
          await tx.principals.require(ctx.tenantId, principalId);
          return tx.apiTokens.create({
            tenantId: ctx.tenantId,
            id: minted.tokenId,
            principalId,
            name: parsed.name,
            tokenHash: minted.tokenHash,
            prefix: minted.prefix,
            createdBy: ctx.actor.principalId,
            ...(parsed.expiresAt ? { expiresAt: parsed.expiresAt } : {}),
          });
        },
        // The target names the token: a `tokenId` detail would be redacted as if it were a secret.
        (t) => ({ principalId: t.principalId, name: t.name, expiresAt: t.expiresAt ?? null }),
        // A token for someone else acts as them: only for a caller that may do all they may.
        { principals: [principalId], servers: 'all', others: true, impersonates: principalId },
      );
      return { apiToken: view(stored), token: minted.token };
    },
    list: async () => {
      const ctx = internals();
      const tokens = await ctx.read('iam.read', resource(), { type: 'api-token', id: '*' }, () =>
        ctx.runtime.store.apiTokens.listAll(ctx.tenantId),
      );
      return tokens.map(view);
    },
    revoke: async (tokenId) => {
      const ctx = internals();
      if (!(await ctx.runtime.store.apiTokens.get(ctx.tenantId, tokenId))) return false;
      await ctx.write(
        'iam.write',
        resource(tokenId),
        { type: 'api-token', id: tokenId },
        async (tx) => {
          const current = await tx.apiTokens.require(ctx.tenantId, tokenId);
          if (current.revokedAt) return current;
          return tx.apiTokens.update(
            ctx.tenantId,
            tokenId,
            { revokedAt: ctx.runtime.clock.now().toISOString() },
            { expectedVersion: current.version },
          );
        },
        (t) => ({ principalId: t.principalId }),
      );
      return true;
    },
  };
}

/**
 * The {@link ApiTokenApi} of `actor`: every call authorized and audited as that principal, by the
 * kernel's call context (the same one the SDK's own modules run on).
 * @throws ValidationError when `actor` is not a valid Actor.
 */
export function apiTokensAs(fleet: Fleet, actor: Actor): ApiTokenApi {
  const ctx = createCallContext(fleet, actor);
  return createApiTokenApi(() => ctx);
}

/**
 * Mints a token for a principal without an authorizing caller, the way `bootstrapTenant` creates
 * the first admin: only code that holds the Fleet can do it (`fleetward token create`, or an
 * application handing its first token out). Audited as the `system` actor.
 * @throws ValidationError, NotFoundError when the tenant or the principal does not exist.
 */
export async function issueApiToken(fleet: Fleet, input: IssueApiTokenInput): Promise<IssuedApiToken> {
  const parsed = validate(IssueApiTokenInputSchema, input, 'IssueApiTokenInput');
  checkExpiry(parsed.expiresAt, fleet.clock.now(), 'IssueApiTokenInput');
  const { tenantId, principalId } = parsed;
  const minted = newToken(tenantId);
  const stored = await fleet.store.transaction(async (tx) => {
    await tx.tenants.require(tenantId, tenantId);
    await tx.principals.require(tenantId, principalId);
    const created = await tx.apiTokens.create({
      tenantId,
      id: minted.tokenId,
      principalId,
      name: parsed.name,
      tokenHash: minted.tokenHash,
      prefix: minted.prefix,
      createdBy: 'system',
      ...(parsed.expiresAt ? { expiresAt: parsed.expiresAt } : {}),
    });
    await fleet.audit(tx, {
      tenantId,
      actor: { principalId: 'system', kind: 'system' },
      action: 'iam.write',
      target: { type: 'api-token', id: created.id },
      decision: 'allow',
      result: 'success',
      details: { principalId, name: created.name, expiresAt: created.expiresAt ?? null },
    });
    return created;
  });
  return { apiToken: view(stored), token: minted.token };
}

/** Who a verified token acts as. */
export interface VerifiedApiToken {
  actor: Actor;
  tokenId: string;
}

/** Options of {@link createTokenVerifier}. */
export interface TokenVerifierOptions {
  /** How many tokens' last write of `lastUsedAt` are remembered in memory. @default 10_000 */
  maxRemembered?: number;
}

const DUMMY_HASH = Buffer.alloc(32);
const INVALID = 'the bearer token is invalid, expired or revoked';

/**
 * Verifies bearer tokens against the store: shape, hash (compared in constant time), revocation,
 * expiry, and that the principal still exists and is enabled. Refusals are `UnauthenticatedError`s
 * that do not say which check failed. `lastUsedAt` is written at most once a minute per token.
 */
export function createTokenVerifier(fleet: Fleet, options: TokenVerifierOptions = {}) {
  const maxRemembered = options.maxRemembered ?? 10_000;
  /** Per token, when this process last wrote `lastUsedAt`: concurrent requests must not all write. */
  const written = new Map<string, number>();

  async function touch(token: ApiToken, now: Date): Promise<void> {
    const key = `${token.tenantId}/${token.id}`;
    const last = Math.max(written.get(key) ?? 0, token.lastUsedAt ? Date.parse(token.lastUsedAt) : 0);
    if (now.getTime() - last < LAST_USED_RESOLUTION_MS) return;
    if (written.size >= maxRemembered) written.clear();
    written.set(key, now.getTime());
    try {
      await fleet.store.apiTokens.update(
        token.tenantId,
        token.id,
        { lastUsedAt: now.toISOString() },
        { expectedVersion: token.version },
      );
    } catch (error) {
      // Another request or process wrote it first (or revoked the token): the time is there anyway.
      if (!(error instanceof ConflictError)) throw error;
    }
  }

  return async function verify(bearer: string): Promise<VerifiedApiToken> {
    const parsed = parseApiToken(bearer);
    if (!parsed) throw new UnauthenticatedError(INVALID, 'invalid_token');
    const stored = await fleet.store.apiTokens.get(parsed.tenantId, parsed.tokenId);
    const presented = createHash('sha256').update(parsed.secret, 'utf8').digest();
    // Compared even without a stored token, so that an unknown id takes as long as a wrong secret.
    const expected = stored ? Buffer.from(stored.tokenHash, 'hex') : DUMMY_HASH;
    const matches = timingSafeEqual(presented, expected) && stored !== undefined;
    const now = fleet.clock.now();
    if (
      !matches ||
      !stored ||
      stored.revokedAt !== undefined ||
      (stored.expiresAt !== undefined && Date.parse(stored.expiresAt) <= now.getTime())
    ) {
      throw new UnauthenticatedError(INVALID, 'invalid_token');
    }
    const principal = await fleet.store.principals.get(stored.tenantId, stored.principalId);
    if (!principal || principal.disabled) throw new UnauthenticatedError(INVALID, 'invalid_token');
    try {
      await touch(stored, now);
    } catch {
      // Bookkeeping only: a failed write of `lastUsedAt` must not fail the request it describes.
    }
    return { actor: { tenantId: stored.tenantId, principalId: stored.principalId }, tokenId: stored.id };
  };
}
