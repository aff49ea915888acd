import {
  auditedParameters,
  redactSecrets,
  resolveParameters,
  ScriptParametersSchema,
  ValidationError,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const schema = ScriptParametersSchema.parse([
  { name: 'TARGET', type: 'string', required: true, pattern: '[a-z]+' },
  { name: 'COUNT', type: 'integer', default: 3 },
  { name: 'RATIO', type: 'number' },
  { name: 'DRY_RUN', type: 'boolean', default: true },
  { name: 'MODE', type: 'string', allowed: ['fast', 'safe'], default: 'safe' },
  { name: 'TOKEN', type: 'string', secret: true },
]);

function issuesOf(fn: () => unknown): Record<string, string> {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return Object.fromEntries((error as ValidationError).issues.map((i) => [i.path.join('.'), i.message]));
  }
  throw new Error('expected a ValidationError');
}

describe('resolveParameters', () => {
  it('resolveParameters — applies defaults, coerces strings from a CLI, and splits secret values off', () => {
    const resolved = resolveParameters(schema, {
      TARGET: 'web',
      COUNT: '7',
      RATIO: 0.5,
      DRY_RUN: 'false',
      TOKEN: 's3cr3t-value',
    });
    expect(resolved.plain).toEqual({ TARGET: 'web', COUNT: 7, RATIO: 0.5, DRY_RUN: false, MODE: 'safe' });
    expect(resolved.secret).toEqual({ TOKEN: 's3cr3t-value' });
  });

  it('resolveParameters — names every bad parameter: missing, unknown, wrong type, not allowed, pattern not matched as a whole', () => {
    const issues = issuesOf(() =>
      resolveParameters(schema, {
        TARGET: 'web01',
        COUNT: 1.5,
        MODE: 'reckless',
        EXTRA: 'x',
        DRY_RUN: 'yes',
      }),
    );
    expect(issues).toEqual({
      EXTRA: 'is not a parameter of this script',
      TARGET: 'must match /[a-z]+/',
      COUNT: 'must be an integer',
      DRY_RUN: 'must be true or false',
      MODE: 'must be one of "fast", "safe"',
    });
    expect(issuesOf(() => resolveParameters(schema, {}))).toEqual({ TARGET: 'is required' });
  });

  it('resolveParameters — a value a shell would read as syntax is accepted as the literal text it is', () => {
    const loose = ScriptParametersSchema.parse([{ name: 'X', type: 'string' }]);
    const value = "x'; touch /tmp/pwned; '";
    expect(resolveParameters(loose, { X: value }).plain).toEqual({ X: value });
  });

  it('resolveParameters — refuses NUL bytes and values too long for an environment variable', () => {
    const loose = ScriptParametersSchema.parse([{ name: 'X', type: 'string' }]);
    expect(issuesOf(() => resolveParameters(loose, { X: 'a\0b' }))).toEqual({
      X: 'must not contain NUL bytes',
    });
    expect(issuesOf(() => resolveParameters(loose, { X: 'a'.repeat(40_000) }))).toEqual({
      X: 'must be at most 32768 bytes',
    });
  });

  it('resolveParameters — a secret that misses its pattern is refused without echoing the pattern or value', () => {
    const secret = ScriptParametersSchema.parse([
      { name: 'PIN', type: 'string', secret: true, pattern: '\\d{4}' },
    ]);
    const issues = issuesOf(() => resolveParameters(secret, { PIN: 'hunter2' }));
    expect(issues).toEqual({ PIN: 'does not match its pattern' });
  });
});

describe('ScriptParametersSchema', () => {
  it('ScriptParametersSchema — refuses names the shell, the loader or Fleetward read, and duplicates', () => {
    for (const name of ['LD_PRELOAD', 'BASH_ENV', 'PATH', 'IFS', 'FLEETWARD_RUN_ID', 'PYTHONPATH', 'lower']) {
      expect(ScriptParametersSchema.safeParse([{ name, type: 'string' }]).success, name).toBe(false);
    }
    // What Windows, .NET and PowerShell read on their own (module path, profiler DLL, temp folder).
    for (const name of [
      'PSMODULEPATH',
      'COMSPEC',
      'TEMP',
      'TMP',
      'PATHEXT',
      'COR_PROFILER',
      'DOTNET_STARTUP_HOOKS',
    ]) {
      expect(ScriptParametersSchema.safeParse([{ name, type: 'string' }]).success, name).toBe(false);
    }
    expect(ScriptParametersSchema.safeParse([{ name: 'TEMPERATURE', type: 'string' }]).success).toBe(true);
    const duplicate = ScriptParametersSchema.safeParse([
      { name: 'A', type: 'string' },
      { name: 'A', type: 'integer' },
    ]);
    expect(duplicate.success).toBe(false);
  });

  it('ScriptParametersSchema — a secret has no default and no allowed list; a pattern must compile and is for strings', () => {
    const bad = [
      { name: 'S', type: 'string', secret: true, default: 'x' },
      { name: 'S', type: 'string', secret: true, allowed: ['a'] },
      { name: 'S', type: 'string', pattern: '(' },
      { name: 'S', type: 'integer', pattern: '\\d+' },
    ];
    for (const p of bad) expect(ScriptParametersSchema.safeParse([p]).success, JSON.stringify(p)).toBe(false);
  });
});

describe('redactSecrets', () => {
  it('redactSecrets — hides every occurrence, a longer secret containing a shorter one whole', () => {
    expect(redactSecrets('token=abc123 again abc123 and abc', ['abc', 'abc123'])).toEqual({
      text: 'token=[REDACTED] again [REDACTED] and [REDACTED]',
      redacted: true,
    });
    expect(redactSecrets('nothing here', ['abc'])).toEqual({ text: 'nothing here', redacted: false });
  });

  it('auditedParameters — shows plain values and only the names of secret ones', () => {
    expect(auditedParameters({ A: 1 }, ['TOKEN'])).toEqual({ A: 1, TOKEN: '[REDACTED]' });
  });
});
