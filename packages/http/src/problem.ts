import {
  FleetwardError,
  type FleetwardErrorCode,
  type FleetwardErrorOptions,
  ValidationError,
  type ValidationIssue,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';

/**
 * The `code` of a problem: the SDK's error codes, plus two that only HTTP has (the body was too
 * large, or not JSON). Callers branch on these exactly as they do on `FleetwardError.code`.
 */
export type ProblemCode = FleetwardErrorCode | 'PAYLOAD_TOO_LARGE' | 'UNSUPPORTED_MEDIA_TYPE';

/** Where a field error was found in the request. */
export type ProblemLocation = 'body' | 'query' | 'path' | 'header';

const CODES: Record<ProblemCode, { status: number; title: string }> = {
  VALIDATION_FAILED: { status: 422, title: 'Validation failed' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  CONFLICT: { status: 409, title: 'Conflict' },
  ALREADY_EXISTS: { status: 409, title: 'Already exists' },
  UNAUTHORIZED: { status: 401, title: 'Unauthorized' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  TRANSPORT_FAILED: { status: 502, title: 'Transport failed' },
  HOST_KEY_MISMATCH: { status: 502, title: 'Host key mismatch' },
  TIMEOUT: { status: 504, title: 'Timeout' },
  ABORTED: { status: 503, title: 'Aborted' },
  CAPABILITY_MISSING: { status: 501, title: 'Capability missing' },
  COMMAND_FAILED: { status: 502, title: 'Command failed' },
  PARSE_FAILED: { status: 502, title: 'Parse failed' },
  LEASE_NOT_HELD: { status: 409, title: 'Lease not held' },
  DRIFTED: { status: 409, title: 'Drifted' },
  TRANSACTION_REFUSED: { status: 409, title: 'Transaction refused' },
  STORE_FAILED: { status: 500, title: 'Store failed' },
  INTERNAL: { status: 500, title: 'Internal error' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
};

/** Every problem code, in a stable order (for the OpenAPI document). */
export const PROBLEM_CODES = Object.keys(CODES) as ProblemCode[];

/** The HTTP status of a code. `VALIDATION_FAILED` is 422 here; a request that fails its own schema is 400. */
export function problemStatus(code: ProblemCode): number {
  return CODES[code].status;
}

/** The `type` URI of a code: `https://fleetward.dev/problems/<code-in-lower-kebab>`. */
export function problemType(code: ProblemCode): string {
  return `https://fleetward.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`;
}

/** One field error of a validation problem. */
export interface ProblemFieldError {
  /** Where the field is; absent when the SDK found the problem after the request was accepted. */
  in?: ProblemLocation;
  /** The field path, e.g. `['labels', 'env']`; empty for the whole body. */
  path: (string | number)[];
  /** RFC 6901 JSON pointer of the field in the body, e.g. `/labels/env`. Body errors only. */
  pointer?: string;
  message: string;
  code?: string;
}

/** An RFC 9457 problem details object as the API sends it (`application/problem+json`). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The request path the problem occurred on. */
  instance: string;
  code: ProblemCode;
  /** Whether the same request may succeed later unchanged. */
  retryable: boolean;
  /** Field errors, for `VALIDATION_FAILED`. */
  errors?: ProblemFieldError[];
}

const pointerOf = (path: (string | number)[]) =>
  path.map((p) => `/${String(p).replaceAll('~', '~0').replaceAll('/', '~1')}`).join('');

/**
 * A request that does not match its route's schema (body, query or path parameters). Unlike a
 * `ValidationError` the SDK throws later, it is answered with 400: the request was malformed.
 */
export class RequestValidationError extends ValidationError {
  readonly location: ProblemLocation;

  constructor(location: ProblemLocation, issues: ValidationIssue[], options: FleetwardErrorOptions = {}) {
    super(`request ${location}`, issues, options);
    this.location = location;
  }
}

/** No valid credentials came with the request: answered with 401 and a `WWW-Authenticate` challenge. */
export class UnauthenticatedError extends FleetwardError {
  /** The RFC 6750 `error` of the challenge: absent when no token was sent at all. */
  readonly challenge: 'invalid_token' | 'invalid_request' | undefined;

  constructor(message: string, challenge?: 'invalid_token' | 'invalid_request') {
    super('UNAUTHORIZED', message, { fault: 'caller' });
    this.challenge = challenge;
  }
}

/** A refusal that only exists at the HTTP layer (413, 415). */
export class HttpProblemError extends Error {
  readonly code: ProblemCode;

  constructor(code: 'PAYLOAD_TOO_LARGE' | 'UNSUPPORTED_MEDIA_TYPE', message: string) {
    super(message);
    this.name = 'HttpProblemError';
    this.code = code;
  }
}

/** Builds the problem for a failure. Internal failures get a fixed detail: their messages stay in the logs. */
export function toProblem(error: FleetwardError | HttpProblemError, instance: string): Problem {
  const code = error.code;
  let status = problemStatus(code);
  const internal = status === 500;
  const problem: Problem = {
    type: problemType(code),
    title: CODES[code].title,
    status,
    detail: internal ? 'The server failed to complete the request; the failure is logged.' : error.message,
    instance,
    code,
    retryable: error instanceof FleetwardError ? error.retryable : false,
  };
  if (error instanceof ValidationError) {
    const location = error instanceof RequestValidationError ? error.location : undefined;
    if (location) status = 400;
    problem.status = status;
    problem.errors = error.issues.map((issue) => ({
      ...(location ? { in: location } : {}),
      path: issue.path,
      ...(location === 'body' ? { pointer: pointerOf(issue.path) } : {}),
      message: issue.message,
      ...(issue.code ? { code: issue.code } : {}),
    }));
  }
  return problem;
}

/** The problem body's schema, for the OpenAPI document. */
export const ProblemSchema = z
  .strictObject({
    type: z.url(),
    title: z.string(),
    status: z.number().int().min(400).max(599),
    detail: z.string(),
    instance: z.string(),
    code: z.enum(PROBLEM_CODES as [ProblemCode, ...ProblemCode[]]),
    retryable: z.boolean(),
    errors: z
      .array(
        z.strictObject({
          in: z.enum(['body', 'query', 'path', 'header']).optional(),
          path: z.array(z.union([z.string(), z.number()])),
          pointer: z.string().optional(),
          message: z.string(),
          code: z.string().optional(),
        }),
      )
      .optional(),
  })
  .openapi('Problem', {
    description: 'RFC 9457 problem details; `code` is the SDK error code callers branch on.',
  });
