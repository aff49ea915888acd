import { AuthorizationError, FleetwardError, redact, TransportError } from '@fleetward/core';

/** Error codes with which AWS refuses the credentials or the caller's rights. */
const AUTH_CODES = new Set([
  'AuthFailure',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredToken',
  'ExpiredTokenException',
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'SignatureDoesNotMatch',
]);

/** The AWS error code of an SDK error (`e.name` for service exceptions), or undefined. */
export function awsCode(error: unknown): string | undefined {
  if (error && typeof error === 'object') {
    const e = error as { name?: unknown; Code?: unknown; code?: unknown };
    for (const v of [e.Code, e.code, e.name]) if (typeof v === 'string' && v !== 'Error') return v;
  }
  return undefined;
}

/**
 * A copy of an SDK error that keeps its code, message and HTTP status but none of the request
 * (headers, signed URLs) or response objects the SDK may attach.
 */
export function sanitized(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(redact(String(error))));
  const copy = new Error(String(redact(error.message)));
  copy.name = error.name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status !== undefined) Object.assign(copy, { $metadata: { httpStatusCode: status } });
  return copy;
}

/**
 * Turns an SDK failure of `operation` into a FleetwardError: `AuthorizationError` when AWS
 * refused the credentials or the rights, otherwise `TransportError`. The SDK error is kept,
 * sanitized, as the cause; a FleetwardError passes through.
 */
export function awsError(error: unknown, operation: string, where: string): FleetwardError {
  if (error instanceof FleetwardError) return error;
  const code = awsCode(error) ?? 'UnknownError';
  const cause = sanitized(error);
  const message = `AWS ${operation} failed for ${where}: ${code}: ${cause.message}`;
  const details = { operation, awsCode: code, where };
  if (AUTH_CODES.has(code)) {
    return new AuthorizationError(message, { reason: 'aws-refused', awsCode: code }, { cause, details });
  }
  return new TransportError(message, { cause, details });
}
