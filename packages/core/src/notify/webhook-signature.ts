import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  FleetwardError,
  type FleetwardErrorOptions,
  ValidationError,
  type ValidationIssue,
} from '../errors.js';

/** Prefix of a Standard Webhooks signing secret; the rest is the base64 of the key. */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/** How far `webhook-timestamp` may be from the receiver's clock, either way. @default 300 */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * A new Standard Webhooks signing secret: `whsec_` followed by the base64 of `bytes` random bytes.
 * @param bytes Key length, 24 to 64. @default 32
 */
export function generateWebhookSecret(bytes = 32): string {
  if (!Number.isInteger(bytes) || bytes < 24 || bytes > 64) {
    throw new ValidationError('generateWebhookSecret', [
      { path: ['bytes'], message: 'must be an integer from 24 to 64' },
    ]);
  }
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(bytes).toString('base64')}`;
}

/** Without trailing `=`; a loop, because `/=+$/` backtracks quadratically on a long run of `=` inside. */
function withoutPadding(text: string): string {
  let end = text.length;
  while (end > 0 && text[end - 1] === '=') end--;
  return text.slice(0, end);
}

function secretKey(secret: string, path: (string | number)[]): Buffer {
  const encoded = secret.startsWith(WEBHOOK_SECRET_PREFIX)
    ? secret.slice(WEBHOOK_SECRET_PREFIX.length)
    : secret;
  // Buffer.from(…, 'base64') skips junk silently; a secret that does not round-trip is a typo.
  const key = Buffer.from(encoded, 'base64');
  if (key.length === 0 || withoutPadding(key.toString('base64')) !== withoutPadding(encoded)) {
    throw new ValidationError('webhook secret', [
      { path, message: 'must be whsec_ followed by base64 (the secret itself is not shown)' },
    ]);
  }
  return key;
}

/** Unix seconds of a `Date`, or the number itself when it already is seconds. */
function unixSeconds(timestamp: Date | number): number {
  return typeof timestamp === 'number' ? Math.floor(timestamp) : Math.floor(timestamp.getTime() / 1000);
}

function hmac(key: Buffer, id: string, timestamp: number, body: string | Uint8Array): string {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64');
}

export interface SignWebhookInput {
  /** The `whsec_…` secret of the endpoint. */
  secret: string;
  /** The `webhook-id`: the delivery id, the same on every retry. */
  id: string;
  /** The `webhook-timestamp`: a `Date`, or Unix seconds. */
  timestamp: Date | number;
  /** The exact bytes sent as the request body. */
  body: string | Uint8Array;
}

/**
 * The `webhook-signature` entry for one secret: `v1,<base64 HMAC-SHA256>` over
 * `${id}.${timestamp}.${body}`, keyed with the base64-decoded part of the secret after `whsec_`.
 * Join several entries with a space to sign with more than one secret (during rotation).
 * @throws ValidationError when the secret is not `whsec_` + base64.
 */
export function signWebhook(input: SignWebhookInput): string {
  const key = secretKey(input.secret, ['secret']);
  return `v1,${hmac(key, input.id, unixSeconds(input.timestamp), input.body)}`;
}

/** Which check a webhook failed. */
export type WebhookVerificationFailure =
  | 'missing-header'
  | 'invalid-timestamp'
  | 'timestamp-too-old'
  | 'timestamp-too-new'
  | 'no-matching-signature';

/**
 * A received webhook is not authentic or not fresh. `reason` says which check failed; answer the
 * sender with 400/401 and do not act on the body.
 */
export class WebhookVerificationError extends FleetwardError {
  readonly reason: WebhookVerificationFailure;
  constructor(reason: WebhookVerificationFailure, message: string, options: FleetwardErrorOptions = {}) {
    super('UNAUTHORIZED', message, { fault: 'caller', retryable: false, ...options });
    this.reason = reason;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: this.reason };
  }
}

/**
 * Request headers as Node's `IncomingHttpHeaders`, a plain record (any case) or a fetch `Headers`.
 */
export type WebhookHeaders =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/** A header's value; anything but a string (or strings) counts as missing, so caller JSON cannot crash it. */
function header(headers: WebhookHeaders, name: string): string | undefined {
  let value: unknown;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    value = (headers as { get(name: string): unknown }).get(name);
  } else if (headers !== null && typeof headers === 'object') {
    const record = headers as Readonly<Record<string, unknown>>;
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    value = key === undefined ? undefined : record[key];
  }
  if (Array.isArray(value)) {
    return value.every((v) => typeof v === 'string') ? value.join(' ') : undefined;
  }
  return typeof value === 'string' ? value : undefined;
}

export interface VerifyWebhookInput {
  /** The endpoint's `whsec_…` secret, or several (old and new, while rotating). */
  secret: string | readonly string[];
  headers: WebhookHeaders;
  /** The raw request body, exactly as received: never re-serialised JSON. */
  body: string | Uint8Array;
  /** @default 300 */
  toleranceSeconds?: number;
  /** The receiver's time. @default new Date() */
  now?: Date;
}

/** What a verified webhook carried in its headers. */
export interface VerifiedWebhook {
  /** `webhook-id`: de-duplicate on it, retries repeat it. */
  id: string;
  /** `webhook-timestamp` as a Date. */
  timestamp: Date;
}

/**
 * Checks a received Standard Webhooks request: `webhook-id` present, `webhook-timestamp` within
 * `toleranceSeconds` of `now` both ways, and at least one `v1,` entry of `webhook-signature`
 * (space-separated) matching one of the secrets, compared in constant time.
 * @throws WebhookVerificationError naming the failed check.
 * @throws ValidationError when a secret is not `whsec_` + base64 (a receiver misconfiguration).
 */
export function verifyWebhook(input: VerifyWebhookInput): VerifiedWebhook {
  const secrets: unknown[] =
    typeof input.secret === 'string' ? [input.secret] : Array.isArray(input.secret) ? [...input.secret] : [];
  if (secrets.length === 0 || !secrets.every((s) => typeof s === 'string')) {
    throw new ValidationError('verifyWebhook', [
      { path: ['secret'], message: 'at least one secret is needed, each a string' },
    ]);
  }
  const keys = (secrets as string[]).map((s, i) => secretKey(s, ['secret', i]));
  // A NaN clock or tolerance makes both freshness comparisons false: the check would pass anything.
  const tolerance = input.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS;
  const now = unixSeconds(input.now ?? new Date());
  const misconfigured: ValidationIssue[] = [];
  if (typeof tolerance !== 'number' || Number.isNaN(tolerance) || tolerance < 0) {
    misconfigured.push({ path: ['toleranceSeconds'], message: 'must be a number of seconds, 0 or more' });
  }
  if (!Number.isFinite(now)) misconfigured.push({ path: ['now'], message: 'must be a valid Date' });
  if (typeof input.body !== 'string' && !(input.body instanceof Uint8Array)) {
    misconfigured.push({ path: ['body'], message: 'must be the raw body, a string or bytes' });
  }
  if (misconfigured.length) throw new ValidationError('verifyWebhook', misconfigured);
  const id = header(input.headers, 'webhook-id');
  const rawTimestamp = header(input.headers, 'webhook-timestamp');
  const signatures = header(input.headers, 'webhook-signature');
  for (const [name, value] of [
    ['webhook-id', id],
    ['webhook-timestamp', rawTimestamp],
    ['webhook-signature', signatures],
  ] as const) {
    if (!value) throw new WebhookVerificationError('missing-header', `the ${name} header is missing`);
  }
  if (!/^\d{1,12}$/.test(rawTimestamp!)) {
    throw new WebhookVerificationError('invalid-timestamp', 'webhook-timestamp is not Unix seconds');
  }
  const timestamp = Number(rawTimestamp);
  if (timestamp < now - tolerance) {
    throw new WebhookVerificationError(
      'timestamp-too-old',
      `webhook-timestamp is ${now - timestamp}s old, more than the ${tolerance}s tolerance`,
    );
  }
  if (timestamp > now + tolerance) {
    throw new WebhookVerificationError(
      'timestamp-too-new',
      `webhook-timestamp is ${timestamp - now}s in the future, more than the ${tolerance}s tolerance`,
    );
  }
  const expected = keys.map((key) => Buffer.from(hmac(key, id!, timestamp, input.body)));
  const offered = signatures!
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => Buffer.from(entry.slice(3)));
  // Every pair is compared, so the time taken does not reveal which secret or entry matched.
  let matched = false;
  for (const candidate of offered) {
    for (const wanted of expected) {
      if (candidate.length === wanted.length && timingSafeEqual(candidate, wanted)) matched = true;
    }
  }
  if (!matched) {
    throw new WebhookVerificationError(
      'no-matching-signature',
      offered.length
        ? 'no v1 signature in webhook-signature matches the body with any of the secrets'
        : 'webhook-signature has no v1 entry',
    );
  }
  return { id: id!, timestamp: new Date(timestamp * 1000) };
}

/**
 * What Fleetward keeps in the SecretStore under an endpoint's `secretRef`: the current secret and,
 * for a while after a rotation, the previous ones with the instant they stop being used. A bare
 * `whsec_…` value (set by hand) is read as a current secret with no previous ones.
 * @internal
 */
export interface StoredSigningSecrets {
  current: string;
  previous: { secret: string; until: string }[];
}

/** @internal */
export function encodeSigningSecrets(value: StoredSigningSecrets): string {
  return JSON.stringify(value);
}

/** @internal The secrets to sign with at `now`: the current one first, then unexpired previous ones. */
export function signingSecrets(stored: string, now: Date): string[] {
  const value = decodeSigningSecrets(stored);
  return [
    value.current,
    ...value.previous.filter((p) => Date.parse(p.until) > now.getTime()).map((p) => p.secret),
  ];
}

/** @internal */
export function decodeSigningSecrets(stored: string): StoredSigningSecrets {
  const trimmed = stored.trim();
  if (!trimmed.startsWith('{')) return { current: trimmed, previous: [] };
  try {
    const parsed = JSON.parse(trimmed) as Partial<StoredSigningSecrets>;
    if (typeof parsed.current === 'string') {
      const previous = Array.isArray(parsed.previous)
        ? parsed.previous.filter(
            (p): p is { secret: string; until: string } =>
              typeof p?.secret === 'string' && typeof p?.until === 'string',
          )
        : [];
      // Copied field by field: extra keys of the stored JSON (`__proto__` among them) stay behind.
      return {
        current: parsed.current,
        previous: previous.map((p) => ({ secret: p.secret, until: p.until })),
      };
    }
  } catch {
    // Falls through: the error below must not echo the stored value.
  }
  throw new ValidationError('webhook secret', [
    { path: [], message: 'the stored signing secret is neither whsec_… nor Fleetward JSON' },
  ]);
}
