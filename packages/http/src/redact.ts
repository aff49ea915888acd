import { FleetwardError, redactSecrets, ValidationError } from '@fleetward/core';
import { RequestValidationError } from './problem.js';

/**
 * Keeping secrets that arrive in a request body (a private key to register, the values of secret
 * script parameters) out of everything the API sends back or hands to `onError`. The SDK already
 * keeps them out of what it stores; this is the HTTP layer's own guard, because an answer or an
 * error message built from input is where a value would slip out.
 */

const live = (secrets: readonly string[]) => secrets.filter((s) => s.length > 0);

/** `value` with every occurrence of a secret in its strings (keys included) replaced by `[REDACTED]`. */
export function redactDeep<T>(value: T, secrets: readonly string[]): T {
  const values = live(secrets);
  if (values.length === 0) return value;
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return redactSecrets(node, values).text;
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === 'object' && !(node instanceof Date)) {
      return Object.fromEntries(
        Object.entries(node).map(([k, v]) => [redactSecrets(k, values).text, walk(v)]),
      );
    }
    return node;
  };
  return walk(value) as T;
}

function causes(error: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && out.length < 10; ) {
    out.push(e);
    e = e instanceof Error ? e.cause : undefined;
  }
  return out;
}

function textOf(error: unknown): string {
  if (error instanceof ValidationError) return JSON.stringify([error.message, error.issues, error.details]);
  if (error instanceof FleetwardError) return JSON.stringify([error.message, error.details]);
  if (error instanceof Error) return `${error.message}\n${error.stack ?? ''}`;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/**
 * The error to answer with instead of `error` when `error`, or anything in its `cause` chain,
 * mentions a secret: the same code, fault and retryability (and field paths for a validation
 * error) with the secrets redacted. The cause is dropped, since it may hold the secret in a form
 * this cannot see. An error without secrets comes back unchanged.
 */
export function scrubError(error: unknown, secrets: readonly string[]): unknown {
  const values = live(secrets);
  if (values.length === 0) return error;
  if (!causes(error).some((e) => values.some((s) => textOf(e).includes(s)))) return error;
  const clean = (text: string) => redactSecrets(text, values).text;
  if (error instanceof ValidationError) {
    const issues = error.issues.map((issue) => ({
      ...issue,
      path: issue.path.map((p) => (typeof p === 'string' ? clean(p) : p)),
      message: clean(issue.message),
    }));
    if (error instanceof RequestValidationError) return new RequestValidationError(error.location, issues);
    return new ValidationError(clean(error.subject), issues, {
      fault: error.fault,
      retryable: error.retryable,
    });
  }
  if (error instanceof FleetwardError) {
    return new FleetwardError(error.code, clean(error.message), {
      fault: error.fault,
      retryable: error.retryable,
      details: redactDeep(error.details, values),
    });
  }
  return new FleetwardError('INTERNAL', clean(error instanceof Error ? error.message : String(error)), {
    fault: 'internal',
  });
}

/**
 * Runs `fn` and gives back its result with the secrets redacted, or throws its error scrubbed
 * (see {@link scrubError}).
 */
export async function withoutSecrets<T>(secrets: readonly string[], fn: () => Promise<T>): Promise<T> {
  try {
    return redactDeep(await fn(), secrets);
  } catch (error) {
    throw scrubError(error, secrets);
  }
}
