/** Stable machine-readable error codes. Callers branch on these, never on messages. */
export type FleetwardErrorCode =
  | 'VALIDATION_FAILED'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'ALREADY_EXISTS'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'TRANSPORT_FAILED'
  | 'HOST_KEY_MISMATCH'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'CAPABILITY_MISSING'
  | 'COMMAND_FAILED'
  | 'PARSE_FAILED'
  | 'LEASE_NOT_HELD'
  | 'DRIFTED'
  | 'TRANSACTION_REFUSED'
  | 'STORE_FAILED'
  | 'INTERNAL';

/** Whose fault a failure is, as in Smithy's `$fault`. */
export type ErrorFault = 'caller' | 'remote' | 'internal';

export interface FleetwardErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  fault?: ErrorFault;
  /** Extra structured context; redacted before it is kept. */
  details?: Record<string, unknown>;
}

const SECRET_KEY = /(pass(word|phrase)?|secret|token|private.?key|authorization|credential|api.?key)/i;
/** Names that identify or fingerprint a secret without being it: `credentialId`, `secretRef`, `tokenHash`. */
const SECRET_REFERENCE = /(Ids?|Refs?|Hash|Fingerprint|Prefix)$/;
const PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g;

/**
 * Redacts secrets from a value before it is kept in an error, an event or an audit record:
 * fields whose names look secret and PEM private keys embedded in strings.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return '[depth]';
  if (typeof value === 'string') return value.replace(PEM, '[REDACTED PRIVATE KEY]');
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] =
        SECRET_KEY.test(k) && !SECRET_REFERENCE.test(k) && v !== undefined && v !== null
          ? '[REDACTED]'
          : redact(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** Base of every error the SDK throws. */
export class FleetwardError extends Error {
  readonly code: FleetwardErrorCode;
  readonly retryable: boolean;
  readonly fault: ErrorFault;
  readonly details: Record<string, unknown>;

  constructor(code: FleetwardErrorCode, message: string, options: FleetwardErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.fault = options.fault ?? 'internal';
    this.details = (redact(options.details ?? {}) as Record<string, unknown>) ?? {};
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      fault: this.fault,
      details: this.details,
    };
  }
}

/** One problem found in an input, with the path of the offending field. */
export interface ValidationIssue {
  /** Field path, e.g. `['labels', 'env']` or `['regions', 0]`. */
  path: (string | number)[];
  message: string;
  code?: string;
}

/** Input did not match its schema. Nothing was stored. */
export class ValidationError extends FleetwardError {
  readonly issues: ValidationIssue[];
  /** What was being validated, e.g. `Server` or `ScriptRun.params`. */
  readonly subject: string;

  constructor(subject: string, issues: ValidationIssue[], options: FleetwardErrorOptions = {}) {
    const summary = issues
      .slice(0, 5)
      .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
      .join('; ');
    super('VALIDATION_FAILED', `Invalid ${subject}: ${summary}${issues.length > 5 ? '; …' : ''}`, {
      fault: 'caller',
      ...options,
    });
    this.subject = subject;
    this.issues = issues;
  }

  /** The field paths as dotted strings, e.g. `['address', 'labels.env']`. */
  get paths(): string[] {
    return this.issues.map((i) => i.path.join('.'));
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), subject: this.subject, issues: this.issues };
  }
}

/** Nothing of that kind with that id (in the caller's tenant). `details` carries `what` and `id`. */
export class NotFoundError extends FleetwardError {
  /** What was looked for, in words: `server`, `patch policy`. */
  readonly what: string;
  readonly id: string;
  constructor(what: string, id: string, options: FleetwardErrorOptions = {}) {
    super('NOT_FOUND', `${what} ${JSON.stringify(id)} not found`, {
      fault: 'caller',
      ...options,
      details: { what, id, ...options.details },
    });
    this.what = what;
    this.id = id;
  }
}

/** A write lost a race: the stored version is not the one the caller read. */
export class ConflictError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('CONFLICT', message, { fault: 'caller', retryable: true, ...options });
  }
}

export class AlreadyExistsError extends FleetwardError {
  constructor(what: string, id: string, options: FleetwardErrorOptions = {}) {
    super('ALREADY_EXISTS', `${what} ${JSON.stringify(id)} already exists`, { fault: 'caller', ...options });
  }
}

/** The principal is not allowed to do this. `decision` says which rule decided. */
export class AuthorizationError extends FleetwardError {
  readonly decision: unknown;
  constructor(message: string, decision: unknown, options: FleetwardErrorOptions = {}) {
    super('FORBIDDEN', message, { fault: 'caller', ...options });
    this.decision = decision;
  }
}

export class TransportError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('TRANSPORT_FAILED', message, { fault: 'remote', retryable: true, ...options });
  }
}

export class HostKeyMismatchError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('HOST_KEY_MISMATCH', message, { fault: 'remote', retryable: false, ...options });
  }
}

export class TimeoutError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('TIMEOUT', message, { fault: 'remote', retryable: true, ...options });
  }
}

export class AbortedError extends FleetwardError {
  constructor(message = 'Operation aborted', options: FleetwardErrorOptions = {}) {
    super('ABORTED', message, { fault: 'caller', ...options });
  }
}

/** An adapter lacks a capability the operation needs. */
export class CapabilityMissingError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('CAPABILITY_MISSING', message, { fault: 'caller', ...options });
  }
}

/** A remote command ran and failed in a way the caller must see (e.g. the package manager errored). */
export class CommandFailedError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('COMMAND_FAILED', message, { fault: 'remote', ...options });
  }
}

/** Output of a tool could not be understood; the raw output is never silently ignored. */
export class ParseError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('PARSE_FAILED', message, { fault: 'remote', ...options });
  }
}

/** A server changed since its plan was approved; it is not patched until a plan is approved again. */
export class DriftedError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('DRIFTED', message, { fault: 'remote', ...options });
  }
}

/**
 * A package transaction a patch run must not carry out: it would remove a package, or install an
 * excluded package (often as a dependency) without its secondary approval. Nothing was installed;
 * `details.packages` names the packages.
 */
export class TransactionRefusedError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('TRANSACTION_REFUSED', message, { fault: 'remote', ...options });
  }
}

export class LeaseNotHeldError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('LEASE_NOT_HELD', message, { fault: 'caller', ...options });
  }
}

export class StoreError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('STORE_FAILED', message, { fault: 'internal', ...options });
  }
}

/**
 * The audit log as stored was damaged (rows edited or forged underneath the store) in a way that
 * stops this operation. `details` names the tenant and the row; `verifyAuditLog` lists the damage.
 */
export class AuditIntegrityError extends StoreError {}

/** Wraps anything thrown by an adapter or a library into a FleetwardError, keeping the original as `cause`. */
export function toFleetwardError(error: unknown, context: string): FleetwardError {
  if (error instanceof FleetwardError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new FleetwardError('INTERNAL', `${context}: ${redact(message)}`, { cause: error });
}
