import type { ParameterValue, ScriptParameter } from '../domain/index.js';
import { ValidationError, type ValidationIssue } from '../errors.js';

/** The longest value one parameter may have: Linux refuses a single argv or env string past 128 KiB. */
export const MAX_PARAMETER_BYTES = 32 * 1024;

/** What a caller passes: values by parameter name. Strings are accepted for every type (CLI, HTTP). */
export type ParameterInput = Record<string, ParameterValue>;

/** Parameter values after validation and defaults, split by whether they are secret. */
export interface ResolvedParameters {
  /** Non-secret values, as typed values: stored with the run and shown in its audit records. */
  plain: Record<string, ParameterValue>;
  /** Secret values: only ever in the environment of the script and the SecretStore. */
  secret: Record<string, string>;
}

function coerce(
  parameter: ScriptParameter,
  value: ParameterValue,
): { value: ParameterValue } | { error: string } {
  switch (parameter.type) {
    case 'string':
      return typeof value === 'string' ? { value } : { error: 'must be a string' };
    case 'boolean':
      if (typeof value === 'boolean') return { value };
      if (value === 'true' || value === 'false') return { value: value === 'true' };
      return { error: 'must be true or false' };
    case 'integer':
    case 'number': {
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(value.trim())
            ? Number(value)
            : Number.NaN;
      if (!Number.isFinite(n))
        return { error: `must be ${parameter.type === 'integer' ? 'an integer' : 'a number'}` };
      if (parameter.type === 'integer' && !Number.isSafeInteger(n)) return { error: 'must be an integer' };
      return { value: n };
    }
  }
}

/** The text a value has in the script's environment. */
export function envText(value: ParameterValue): string {
  return typeof value === 'string' ? value : String(value);
}

/**
 * Checks `input` against a script's parameter schema and applies defaults: every value has the
 * declared type, is one of the allowed values, matches the pattern (the whole value), has no NUL
 * byte and fits in an environment variable; unknown names and missing required ones are refused.
 *
 * @throws ValidationError (subject `ScriptRun.params`) naming each bad parameter. A secret value
 *   never appears in the message.
 */
export function resolveParameters(
  schema: readonly ScriptParameter[],
  input: ParameterInput = {},
): ResolvedParameters {
  const issues: ValidationIssue[] = [];
  const known = new Map(schema.map((p) => [p.name, p]));
  for (const name of Object.keys(input)) {
    if (!known.has(name)) issues.push({ path: [name], message: 'is not a parameter of this script' });
  }
  const plain: Record<string, ParameterValue> = {};
  const secret: Record<string, string> = {};
  for (const parameter of schema) {
    const given = Object.hasOwn(input, parameter.name) ? input[parameter.name] : undefined;
    const raw = given ?? parameter.default;
    if (raw === undefined) {
      if (parameter.required) issues.push({ path: [parameter.name], message: 'is required' });
      continue;
    }
    const coerced = coerce(parameter, raw);
    if ('error' in coerced) {
      issues.push({ path: [parameter.name], message: coerced.error });
      continue;
    }
    const value = coerced.value;
    const text = envText(value);
    if (text.includes('\0')) {
      issues.push({ path: [parameter.name], message: 'must not contain NUL bytes' });
      continue;
    }
    if (Buffer.byteLength(text) > MAX_PARAMETER_BYTES) {
      issues.push({ path: [parameter.name], message: `must be at most ${MAX_PARAMETER_BYTES} bytes` });
      continue;
    }
    if (parameter.allowed && !parameter.allowed.some((a) => a === value || String(a) === text)) {
      issues.push({
        path: [parameter.name],
        message: `must be one of ${parameter.allowed.map((a) => JSON.stringify(a)).join(', ')}`,
      });
      continue;
    }
    if (parameter.pattern && !new RegExp(`^(?:${parameter.pattern})$`, 'u').test(text)) {
      issues.push({
        path: [parameter.name],
        message: parameter.secret ? 'does not match its pattern' : `must match /${parameter.pattern}/`,
      });
      continue;
    }
    if (parameter.secret) secret[parameter.name] = text;
    else plain[parameter.name] = value;
  }
  if (issues.length) throw new ValidationError('ScriptRun.params', issues);
  return { plain, secret };
}

/**
 * Replaces every occurrence of a secret value in `text` with `[REDACTED]`, longest first so that
 * a secret containing another is hidden whole. Returns the text and whether anything was replaced.
 */
export function redactSecrets(text: string, secrets: readonly string[]): { text: string; redacted: boolean } {
  let out = text;
  let redacted = false;
  for (const value of [...new Set(secrets)].filter((v) => v.length > 0).sort((a, b) => b.length - a.length)) {
    if (out.includes(value)) {
      out = out.replaceAll(value, '[REDACTED]');
      redacted = true;
    }
  }
  return { text: out, redacted };
}

/** The parameters as an audit record shows them: plain values as given, secret ones as `[REDACTED]`. */
export function auditedParameters(
  plain: Record<string, ParameterValue>,
  secretNames: readonly string[],
): Record<string, ParameterValue> {
  return { ...plain, ...Object.fromEntries(secretNames.map((n) => [n, '[REDACTED]'])) };
}
