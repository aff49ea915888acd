import { FleetwardError, redact } from '../errors.js';
import { type Logger, silentLogger } from '../ports/logger.js';
import type { SecretStore } from '../ports/secret-store.js';

const REDACTED = '[REDACTED]';
type Level = 'error' | 'warn' | 'info' | 'debug';

/** Longest string a record keeps; the rest is cut (after known secrets and private keys went). */
const MAX_TEXT = 8192;
// Credentials that have a recognisable shape wherever they appear in a sentence. Every repetition
// before the credential itself is bounded, so that no text makes a pattern backtrack for long.
const PATTERNS: [RegExp, string][] = [
  [/-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*/g, '[REDACTED PRIVATE KEY]'],
  [/\b(Bearer)\s{1,10}[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  [/(\b(?:proxy-)?authorization["']?\s{0,10}[:=]\s{0,10})[^\r\n]*/gi, `$1${REDACTED}`],
  [/\bwhsec_[A-Za-z0-9+/=]+/g, REDACTED],
  [
    /(\b[\w-]{0,40}(?:passw(?:or)?d|passphrase|secret|api[_-]?key|access[_-]?key|token)[\w-]{0,40}\s{0,10}[=:]\s{0,10})("[^"]*"|'[^']*'|[^\s,;&]+)/gi,
    `$1${REDACTED}`,
  ],
  [/\b([a-z][a-z0-9+.-]{0,30}:\/\/)[^\s/@:]{1,200}:[^\s/@]{1,200}@/gi, `$1${REDACTED}@`],
  [
    /([?&][^=&\s#]{0,60}(?:token|secret|passw(?:or)?d|api[_-]?key|signature|sig|auth)[^=&\s#]{0,60}=)[^&\s#]+/gi,
    `$1${REDACTED}`,
  ],
];
const ISO_INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

/**
 * The strings a stored secret is made of: the value itself and, when it is JSON (the SDK keeps a
 * script run's secret parameters and an endpoint's signing secrets that way), every string in it
 * but timestamps.
 */
function partsOf(stored: string): string[] {
  const parts = [stored];
  const trimmed = stored.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const walk = (node: unknown): void => {
        if (typeof node === 'string') {
          if (!ISO_INSTANT.test(node)) parts.push(node);
        } else if (Array.isArray(node)) node.forEach(walk);
        else if (node && typeof node === 'object') Object.values(node).forEach(walk);
      };
      walk(JSON.parse(trimmed));
    } catch {
      // Not JSON after all: the value as a whole is the secret.
    }
  }
  return parts.filter((p) => p.length > 0);
}

/**
 * The secret values this process has seen pass through a SecretStore, by reference, so that a
 * logger can scrub them from what it writes even when they turn up where no field name says so
 * (an adapter's error message quoting a password, say). A value leaves when its secret is deleted.
 */
export class SecretValues {
  readonly #byRef = new Map<string, string[]>();
  #sorted: string[] | undefined;

  /** Keeps the value (and its parts) stored under `ref`. */
  note(ref: string, value: string): void {
    this.#byRef.set(ref, partsOf(value));
    this.#sorted = undefined;
  }

  /** Drops what was stored under `ref`. */
  forget(ref: string): void {
    if (this.#byRef.delete(ref)) this.#sorted = undefined;
  }

  /** Every value, longest first (so that a secret containing another is hidden whole). */
  values(): readonly string[] {
    this.#sorted ??= [...new Set([...this.#byRef.values()].flat())].sort((a, b) => b.length - a.length);
    return this.#sorted;
  }
}

/**
 * `store`, noting in `values` every secret it gives or takes and forgetting each one it deletes.
 * Everything else is `store`'s own behaviour, errors included.
 */
export function noteSecrets(store: SecretStore, values: SecretValues): SecretStore {
  return {
    async get(ref) {
      const value = await store.get(ref);
      if (value !== undefined) values.note(ref, value);
      return value;
    },
    async set(ref, value) {
      values.note(ref, value);
      await store.set(ref, value);
    },
    async delete(ref) {
      const deleted = await store.delete(ref);
      values.forget(ref);
      return deleted;
    },
    list: (prefix) => store.list(prefix),
  };
}

/**
 * `text` with every one of `secrets` (longest first) and then every credential shape replaced by
 * `[REDACTED]`: known values go first, so that a shape never cuts a known secret in two.
 */
function scrubText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  out = redact(out) as string;
  if (out.length > MAX_TEXT) out = `${out.slice(0, MAX_TEXT)}…[cut]`;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** What of an error a log record keeps: its kind, code and message. Never its cause, stack or details. */
export function errorFields(error: unknown): { type: string; code?: string; message: string } {
  if (error instanceof FleetwardError) return { type: error.name, code: error.code, message: error.message };
  if (error instanceof Error) return { type: error.name, message: error.message };
  return { type: typeof error, message: String(error) };
}

/** A plain JSON value: errors as {@link errorFields}, dates as ISO strings, no functions, no cycles. */
function plain(value: unknown, seen: WeakSet<object>, depth: number): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return undefined;
  if (depth > 8) return '[depth]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (value instanceof Error) return errorFields(value);
  if (Array.isArray(value)) return value.map((v) => plain(v, seen, depth + 1) ?? null);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const kept = plain(v, seen, depth + 1);
    if (kept !== undefined) out[key] = kept;
  }
  return out;
}

/** `value` (plain) with secret-looking fields, credential shapes and `secrets` redacted, keys included. */
function scrub(value: unknown, secrets: readonly string[]): unknown {
  if (typeof value === 'string') return scrubText(value, secrets);
  if (Array.isArray(value)) return value.map((v) => scrub(v, secrets));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(redact(value) as Record<string, unknown>).map(([k, v]) => [
        scrubText(k, secrets),
        scrub(v, secrets),
      ]),
    );
  }
  return value;
}

/** Fields of a record, made plain and scrubbed. */
function cleanFields(fields: unknown, secrets: readonly string[]): Record<string, unknown> {
  const made = plain(fields, new WeakSet(), 0);
  const object = made && typeof made === 'object' && !Array.isArray(made) ? made : { value: made };
  return scrub(object, secrets) as Record<string, unknown>;
}

/**
 * The logger every part of the SDK writes to: a {@link Logger} given by the application, behind
 * the SDK's redaction. Each record is made plain (errors reduced to type, code and message) and
 * scrubbed before it reaches the target: fields whose names look secret, PEM private keys,
 * `Bearer` tokens, `Authorization` values, `whsec_` signing secrets, credentials in
 * URLs, the values the runtime's SecretStore gave or took, and the values added with
 * {@link RedactingLogger.withSecrets}. A target that throws loses the record, never the caller's
 * work. The runtime's is `runtime.logger`.
 */
export class RedactingLogger implements Logger {
  readonly #target: Logger;
  readonly #known: SecretValues | undefined;
  #scoped: readonly string[] = [];
  /** Bindings merged into every record, for a target without `child`. */
  #bindings: Record<string, unknown> = {};

  /**
   * @param target Where records go. @default the silent logger
   * @param known Secret values to scrub, as they are at each record (see {@link noteSecrets}).
   */
  constructor(target: Logger = silentLogger, known?: SecretValues) {
    this.#target = target;
    this.#known = known;
  }

  #derive(target: Logger, scoped: readonly string[], bindings: Record<string, unknown>): RedactingLogger {
    const next = new RedactingLogger(target, this.#known);
    next.#scoped = scoped;
    next.#bindings = bindings;
    return next;
  }

  /** Whether records go nowhere (the target is the silent logger). */
  get silent(): boolean {
    return this.#target === silentLogger;
  }

  /** Writes a redacted `error` record; see {@link Logger}. Never throws. */
  readonly error = (fields: object | string, message?: string): void => this.#write('error', fields, message);
  /** Writes a redacted `warn` record; see {@link Logger}. Never throws. */
  readonly warn = (fields: object | string, message?: string): void => this.#write('warn', fields, message);
  /** Writes a redacted `info` record; see {@link Logger}. Never throws. */
  readonly info = (fields: object | string, message?: string): void => this.#write('info', fields, message);
  /** Writes a redacted `debug` record; see {@link Logger}. Never throws. */
  readonly debug = (fields: object | string, message?: string): void => this.#write('debug', fields, message);

  /** A logger whose records all carry `bindings` (redacted now, through the target's `child` when it has one). */
  child(bindings: Record<string, unknown>): RedactingLogger {
    if (this.silent) return this;
    let clean: Record<string, unknown>;
    let target: Logger | undefined;
    try {
      clean = cleanFields(bindings, this.#secrets());
      target = this.#target.child?.(clean);
    } catch {
      // Bindings that cannot be read, or a child that cannot be made: the records go unbound.
      return this;
    }
    return target
      ? this.#derive(target, this.#scoped, this.#bindings)
      : this.#derive(this.#target, this.#scoped, { ...this.#bindings, ...clean });
  }

  /** A logger that also scrubs `values` (a script run's secret parameters, say) wherever they appear. */
  withSecrets(values: readonly string[]): RedactingLogger {
    const live = values.filter((v) => typeof v === 'string' && v.length > 0);
    if (live.length === 0 || this.silent) return this;
    return this.#derive(this.#target, [...this.#scoped, ...live], this.#bindings);
  }

  /**
   * The same redaction (known and scoped secrets, bindings merged by this logger) writing to
   * `target` instead. Bindings an earlier target keeps through its own `child` stay with it.
   */
  to(target: Logger): RedactingLogger {
    return this.#derive(target, this.#scoped, this.#bindings);
  }

  #secrets(): readonly string[] {
    const known = this.#known?.values() ?? [];
    if (this.#scoped.length === 0) return known;
    return [...new Set([...this.#scoped, ...known])].sort((a, b) => b.length - a.length);
  }

  #write(level: Level, first: object | string, second: string | undefined): void {
    if (this.silent) return;
    try {
      const secrets = this.#secrets();
      const [fields, message] = typeof first === 'string' ? [{}, first] : [first, second];
      const record = { ...this.#bindings, ...cleanFields(fields, secrets) };
      if (message === undefined) this.#target[level](record);
      else this.#target[level](record, scrubText(String(message), secrets));
    } catch {
      // A logger never fails the work it reports on.
    }
  }
}
