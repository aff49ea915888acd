import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import {
  AbortedError,
  type FleetwardError,
  type IntegrationKind,
  ParseError,
  redact,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { IntegrationError } from './errors.js';

/** `fetch` as the integrations call it; tests and proxies may pass their own. */
export type FetchLike = typeof globalThis.fetch;

/** Per-request time limit of the HTTP integrations unless their options say otherwise. */
export const DEFAULT_TIMEOUT_MS = 30_000;
const EXCERPT_CHARS = 500;
const MESSAGE_CHARS = 300;

const DISPLAY: Record<IntegrationKind, string> = { servicenow: 'ServiceNow', jira: 'Jira', smtp: 'SMTP' };

/**
 * The marker a ticket carries so that a retried delivery finds it: `fleetward-` and 16 hex digits
 * of sha256(key). Hashed rather than verbatim because it lands inside query languages (ServiceNow
 * encoded queries, JQL) where a raw key could change the query, and in fields with tight limits
 * (Jira labels forbid spaces; ServiceNow `correlation_id` holds 100 characters).
 */
export function idempotencyTag(idempotencyKey: string): string {
  return `fleetward-${createHash('sha256').update(idempotencyKey, 'utf8').digest('hex').slice(0, 16)}`;
}

/** Throws unless the key is usable: 1–256 characters without control characters. */
export function checkIdempotencyKey(key: string): void {
  if (typeof key !== 'string' || key.length < 1 || key.length > 256 || /\p{Cc}/u.test(key)) {
    throw new ValidationError('OpenChangeRequestOptions', [
      { path: ['idempotencyKey'], message: 'must be 1-256 characters without control characters' },
    ]);
  }
}

/** `localhost`, `::1` or an address in 127.0.0.0/8: traffic that never leaves the machine. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * Parses and checks a base URL: http(s), no credentials, query or fragment, trailing slashes
 * dropped. Plain http is refused unless the host is loopback or the caller opts in, because every
 * request carries a password or token.
 */
export function parseBaseUrl(subject: string, baseUrl: string, allowInsecureHttp = false): string {
  const fail = (message: string): never => {
    throw new ValidationError(subject, [{ path: ['baseUrl'], message }]);
  };
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return fail('must be an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') fail('must be an http(s) URL');
  // Userinfo would end up in logs and error messages, and fetch refuses it anyway.
  if (url.username || url.password) fail('must not contain credentials; pass them as options');
  if (url.search || url.hash) fail('must not have a query or fragment');
  if (url.protocol === 'http:' && !allowInsecureHttp && !isLoopbackHost(url.hostname)) {
    fail('plain http sends credentials in the clear; use https (or allowInsecureHttp for a lab)');
  }
  // A loop, not `/\/+$/`: that backtracks quadratically on a path of many slashes not at its end.
  let end = url.pathname.length;
  while (end > 0 && url.pathname[end - 1] === '/') end--;
  return `${url.origin}${url.pathname.slice(0, end)}`;
}

/** Single line, at most `max` characters: for summary fields that reject or mangle line breaks. */
export function oneLine(text: string, max: number): string {
  const flat = text
    .replace(/[\r\n\t\v\f\u2028\u2029]+/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/**
 * Removes credentials from text that came back from a remote system before it is kept: the
 * literal secrets (and their Basic-auth encodings, which a misbehaving proxy may echo), any
 * `Basic …`/`Bearer …` value, secret-looking JSON fields and PEM keys. Then cuts it to `max`;
 * scrubbing comes first so that a cut can never leave part of a secret behind.
 */
export function scrub(text: string, secrets: readonly string[], max = EXCERPT_CHARS): string {
  let out = text;
  try {
    out = JSON.stringify(redact(JSON.parse(text)));
  } catch {
    // Not JSON: scrub it as text.
  }
  for (const secret of secrets) {
    if (secret.length < 4) continue;
    out = out.split(secret).join('[REDACTED]');
    const encoded = Buffer.from(secret, 'utf8').toString('base64').replace(/=+$/, '');
    if (encoded.length >= 4) out = out.split(encoded).join('[REDACTED]');
  }
  // Only values that look encoded (a digit or base64 punctuation), so prose like "Basic
  // authentication failed" survives.
  out = out.replace(
    /\b(Basic|Bearer)\s+(?=[A-Za-z0-9+/=._~-]*[0-9+/=])[A-Za-z0-9+/=._~-]+/gi,
    '$1 [REDACTED]',
  );
  out = (redact(out) as string).replace(/\s+/g, ' ').trim();
  return out.length <= max ? out : `${out.slice(0, max - 1)}…`;
}

/** One request of {@link callJson}. */
export interface HttpCall {
  integration: 'servicenow' | 'jira';
  fetch: FetchLike;
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: unknown;
  signal?: AbortSignal;
  timeoutMs: number;
  /** Values to scrub from anything kept from the answer. */
  secrets: readonly string[];
  /** Pulls a human message out of the system's error body. */
  remoteMessage?: (body: unknown) => string | undefined;
}

/**
 * One HTTP exchange with a JSON answer. Classifies failures: network errors, time-outs, 408, 429
 * and 5xx are retryable TransportErrors (or TimeoutError); other non-2xx answers are
 * IntegrationErrors; a 2xx that is not JSON is a ParseError. Redirects are not followed: an API
 * call redirected (typically to an SSO login page) is misconfigured, and following it could carry
 * the Authorization header to another host.
 */
export async function callJson(call: HttpCall): Promise<unknown> {
  const name = DISPLAY[call.integration];
  const path = new URL(call.url).pathname;
  const what = `${call.method} ${path}`;
  if (call.signal?.aborted) throw new AbortedError(`${name} ${what} aborted`);

  const timeout = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
  const failure = (error: unknown): FleetwardError => {
    if (call.signal?.aborted) return new AbortedError(`${name} ${what} aborted`, { cause: error });
    if (timeout.aborted) {
      return new TimeoutError(`${name} did not answer ${what} within ${call.timeoutMs} ms`, {
        details: { integration: call.integration },
      });
    }
    const reason = error instanceof Error ? describeNetworkError(error) : String(error);
    return new TransportError(
      `${name} unreachable for ${what}: ${scrub(reason, call.secrets, MESSAGE_CHARS)}`,
      {
        cause: error,
        details: { integration: call.integration },
      },
    );
  };

  let response: Response;
  let text: string;
  try {
    const headers: Record<string, string> = { Accept: 'application/json', ...call.headers };
    if (call.body !== undefined) headers['Content-Type'] = 'application/json';
    response = await call.fetch(call.url, {
      method: call.method,
      headers,
      body: call.body === undefined ? null : JSON.stringify(call.body),
      redirect: 'manual',
      signal,
    });
    text = await response.text();
  } catch (error) {
    throw failure(error);
  }

  if (response.status >= 200 && response.status < 300) {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new ParseError(`${name} answered ${what} with ${response.status} but not with JSON`, {
        cause: error,
        details: {
          integration: call.integration,
          status: response.status,
          bodyExcerpt: scrub(text, call.secrets),
        },
      });
    }
  }

  const bodyExcerpt = scrub(text, call.secrets);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const remote = parsed === undefined ? undefined : call.remoteMessage?.(parsed);
  const message =
    `${name} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''} to ${what}` +
    (remote ? `: ${scrub(remote, call.secrets, MESSAGE_CHARS)}` : '');
  const details: Record<string, unknown> = {
    integration: call.integration,
    status: response.status,
    bodyExcerpt,
  };

  const status = response.status;
  if (status >= 500 || status === 429 || status === 408) {
    const retryAfter = response.headers.get('retry-after');
    if (retryAfter) details['retryAfter'] = retryAfter;
    throw new TransportError(message, { details });
  }
  const code = status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : 'COMMAND_FAILED';
  throw new IntegrationError(
    code,
    status >= 300 && status < 400 ? `${message} (redirect not followed)` : message,
    {
      integration: call.integration,
      status,
      bodyExcerpt,
      fault: status >= 400 ? 'caller' : 'remote',
    },
  );
}

/** undici hides the useful part (`ECONNREFUSED 127.0.0.1:1`) in `cause`. */
function describeNetworkError(error: Error): string {
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return `${error.message} (${code ? `${code}: ` : ''}${cause.message})`;
  }
  return error.message;
}

/** A string field of a reply: plain, or a reference `{ value, link }` / `{ value, display_value }`. */
export function fieldString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (value && typeof value === 'object' && 'value' in value) {
    const inner = (value as { value: unknown }).value;
    if (typeof inner === 'string') return inner;
  }
  return undefined;
}

/** The value as a plain object, or `undefined` for anything else (arrays included). */
export function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
