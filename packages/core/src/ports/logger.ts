/**
 * One log method of a {@link Logger}: a record with structured fields and a message, or a message
 * alone. The shape is pino's, so that `pino()` (or any of its children) can be passed as it is;
 * bunyan and `console` fit too.
 *
 * Fleetward always calls the first form, `(fields, message)`, with a plain object of JSON values
 * (no `Error` instances, no functions, no cycles) and a message that contains no `%` placeholder
 * arguments. Implementations must accept the second form as well, because it is how applications
 * call the same logger.
 *
 * A log method must not throw. If one does, Fleetward drops the record and carries on: a logger
 * never fails a workflow.
 */
export interface LogFn {
  /**
   * Logs `fields` (merged into the record: pino writes them beside `msg`) with `message`.
   * @param fields What the operator filters on: `tenantId`, `jobId`, `serverId`, `code`, …
   * @param message One human sentence, e.g. `scan finished`. Optional in the contract, always
   * given by Fleetward.
   */
  (fields: object, message?: string): void;
  /** Logs `message` alone. */
  (message: string): void;
}

/**
 * What Fleetward writes operator logs to (`createFleet({ logger })`): the few things a person
 * running the SDK in production needs to see, never a secret. Pass a pino logger as it is:
 *
 * ```ts
 * import pino from 'pino';
 * const fleet = createFleet({ store, adapters, logger: pino({ level: 'info' }) });
 * ```
 *
 * What is logged, and at which level:
 * - `error`: something failed that nobody will retry by themselves and that needs a person: a
 *   changed host key, an outbox message given up (parked), a scheduled scan, access sweep or key
 *   rotation that failed, an HTTP request answered with a 5xx.
 * - `warn`: a failure the SDK works around or that ends one part of a job: a server failing in a
 *   scan, patch run or script run (code, message, server id; never the command's output), a job
 *   ending `failed`, `partial` or `stopped`, a run lease lost, a run taken over from a process
 *   that stopped renewing its lease, a webhook delivery that will be retried.
 * - `info`: the lifecycle of jobs: scans, patch runs and script runs started, resumed, paused and
 *   finished, key rotations finished, with their summary (servers succeeded / failed, status,
 *   reason, duration).
 * - `debug`: details: each delivered outbox message, each scheduled slot claimed, each access
 *   sweep's counts.
 *
 * Every record passes through Fleetward's redaction before it reaches the logger: fields whose
 * names look secret (`password`, `token`, `privateKey`, `authorization`, …), PEM private keys,
 * `Bearer` tokens, `Authorization` values, credentials in URLs, webhook signing secrets
 * (`whsec_…`), the values of secret script parameters and every value the Fleet's SecretStore gave
 * or took in this process are replaced by `[REDACTED]`.
 * Records carry ids, codes, counts and messages; never request bodies, headers or command output.
 *
 * Levels other than these four (pino's `trace` and `fatal`) are never called: a library does not
 * decide that its process is dying, and `debug` is as fine-grained as Fleetward gets.
 */
export interface Logger {
  /** A failure that needs a person. See {@link LogFn}. */
  error: LogFn;
  /** A failure worked around, or one that ended part of a job. See {@link LogFn}. */
  warn: LogFn;
  /** Lifecycle: a job started or finished. See {@link LogFn}. */
  info: LogFn;
  /** Details, for troubleshooting. See {@link LogFn}. */
  debug: LogFn;
  /**
   * A logger whose every record carries `bindings` (pino's `child`). Fleetward binds what a group
   * of records shares (`{ tenantId, jobId }`) once. Optional: without it, Fleetward merges the
   * bindings into each record's fields itself.
   * @param bindings Plain fields, already redacted.
   */
  child?(bindings: Record<string, unknown>): Logger;
}

function discard(): void {}

/** The default {@link Logger}: drops every record. */
export const silentLogger: Logger = {
  error: discard,
  warn: discard,
  info: discard,
  debug: discard,
  child: () => silentLogger,
};

/** Whether `value` has the four log methods of a {@link Logger} (`child` is not required). */
export function isLogger(value: unknown): value is Logger {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
  const candidate = value as Record<string, unknown>;
  return (['error', 'warn', 'info', 'debug'] as const).every(
    (level) => typeof candidate[level] === 'function',
  );
}
