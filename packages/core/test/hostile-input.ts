/**
 * Hostile input for the parser fuzz tests (`*.fuzz.test.ts`): arbitrary text, and real captures
 * mutated the ways a cut, garbled or forged output can be (spliced, truncated, lines repeated,
 * separators and NULs injected, numbers made huge, reserved property names planted), plus the
 * property every parser keeps: it returns a well-formed result or throws a FleetwardError.
 */
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { expect } from 'vitest';
import { FleetwardError } from '../src/errors.js';

/** Reads every file of a fixture folder whose name passes `keep`. */
export function readFixtures(folder: URL, keep: (name: string) => boolean = () => true): string[] {
  return readdirSync(folder)
    .filter(keep)
    .sort()
    .map((name) => readFileSync(new URL(name, folder), 'utf8'));
}

/** Pieces an attacker or a broken tool puts into output: separators, NULs, reserved names, markup. */
export const HOSTILE_TOKENS = [
  '\n',
  '\r\n',
  '\r',
  '\0',
  '\t',
  ' ',
  '\u2028',
  '\uFEFF',
  '\uD800',
  '\u{1F600}',
  ':',
  '=',
  '"',
  "'",
  '\\',
  ',',
  '|',
  '-',
  '.',
  '/',
  '[',
  ']',
  '(',
  ')',
  '<',
  '>',
  '&',
  '&amp;',
  '&#0;',
  '&#xFFFFFFFF;',
  '&foo;',
  '<![CDATA[',
  ']]>',
  '<?xml version="1.0"?>',
  '<!DOCTYPE x [<!ENTITY a "aaaa">]>',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '{"__proto__":{"polluted":1}}',
  '{"constructor":{"prototype":{"polluted":1}}}',
  '@@fleetward:end',
  '@@fleetward:',
  '99999999999999999999999999999999999999999',
  '-1',
  '1e999',
  'NaN',
  'Infinity',
  '0x1F',
  '9007199254740993',
  '=====================',
  '%s%n',
  '$' + '{x}',
  '../../etc/passwd',
];

const token = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_TOKENS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer({ min: 16, max: 400 }).map((n) => '9'.repeat(n)) },
);

type Mutation =
  | { kind: 'splice'; at: number; length: number; insert: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicate-line'; line: number; times: number }
  | { kind: 'delete-line'; line: number }
  | { kind: 'swap-lines'; a: number; b: number }
  | { kind: 'inject'; at: number; text: string }
  | { kind: 'huge-number'; nth: number; digits: number }
  | { kind: 'huge-line'; line: number; unit: string; length: number }
  | { kind: 'crlf' }
  | { kind: 'replace-word'; nth: number; text: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('splice' as const),
    at: fc.nat(),
    length: fc.nat({ max: 200 }),
    insert: fc.string({ unit: 'binary', maxLength: 40 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('duplicate-line' as const),
    line: fc.nat(),
    times: fc.integer({ min: 1, max: 50 }),
  }),
  fc.record({ kind: fc.constant('delete-line' as const), line: fc.nat() }),
  fc.record({ kind: fc.constant('swap-lines' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('inject' as const), at: fc.nat(), text: token }),
  fc.record({
    kind: fc.constant('huge-number' as const),
    nth: fc.nat(),
    digits: fc.integer({ min: 17, max: 400 }),
  }),
  fc.record({
    kind: fc.constant('huge-line' as const),
    line: fc.nat(),
    unit: fc.constantFrom('a', ' ', '-', '.', ':', '0', '=', '<a>', '"', '\\', '\t', 'a-1.'),
    length: fc.integer({ min: 1_000, max: 60_000 }),
  }),
  fc.record({ kind: fc.constant('crlf' as const) }),
  fc.record({ kind: fc.constant('replace-word' as const), nth: fc.nat(), text: token }),
);

function applyMutation(text: string, m: Mutation): string {
  const lines = () => text.split('\n');
  switch (m.kind) {
    case 'splice': {
      const at = text.length === 0 ? 0 : m.at % (text.length + 1);
      return text.slice(0, at) + m.insert + text.slice(at + m.length);
    }
    case 'truncate':
      return text.slice(0, text.length === 0 ? 0 : m.at % (text.length + 1));
    case 'duplicate-line': {
      const ls = lines();
      const i = m.line % ls.length;
      ls.splice(i, 0, ...Array<string>(m.times).fill(ls[i]!));
      return ls.join('\n');
    }
    case 'delete-line': {
      const ls = lines();
      ls.splice(m.line % ls.length, 1);
      return ls.join('\n');
    }
    case 'swap-lines': {
      const ls = lines();
      const a = m.a % ls.length;
      const b = m.b % ls.length;
      [ls[a], ls[b]] = [ls[b]!, ls[a]!];
      return ls.join('\n');
    }
    case 'inject': {
      const at = text.length === 0 ? 0 : m.at % (text.length + 1);
      return text.slice(0, at) + m.text + text.slice(at);
    }
    case 'huge-number': {
      let n = 0;
      return text.replace(/\d+/g, (d) => (n++ === m.nth % 64 ? '9'.repeat(m.digits) : d));
    }
    case 'huge-line': {
      const ls = lines();
      const i = m.line % ls.length;
      ls[i] = `${ls[i]}${m.unit.repeat(Math.ceil(m.length / m.unit.length))}`;
      return ls.join('\n');
    }
    case 'crlf':
      return text.replace(/\n/g, '\r\n');
    case 'replace-word': {
      let n = 0;
      return text.replace(/[A-Za-z_][\w-]*/g, (w) => (n++ === m.nth % 256 ? m.text : w));
    }
  }
}

/** A real capture with one to six hostile mutations applied. */
export function mutated(fixtures: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...fixtures), fc.array(mutation, { minLength: 1, maxLength: 6 }))
    .map(([text, ms]) => ms.reduce(applyMutation, text));
}

/** Lines made of fixture lines and hostile tokens, joined by mixed separators. */
export function lineSoup(fixtures: readonly string[]): fc.Arbitrary<string> {
  const lines = [...new Set(fixtures.flatMap((f) => f.split('\n')))].slice(0, 2000);
  const piece = fc.oneof(
    { weight: 3, arbitrary: lines.length > 0 ? fc.constantFrom(...lines) : fc.constant('') },
    { weight: 1, arbitrary: token },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 80 }) },
  );
  return fc
    .array(fc.tuple(piece, fc.constantFrom('\n', '\n', '\n', '\r\n', '\r', '\0', '')), { maxLength: 80 })
    .map((parts) => parts.map(([p, sep]) => p + sep).join(''));
}

/** Any text, from random code points to mutated captures. */
export function hostileText(fixtures: readonly string[] = []): fc.Arbitrary<string> {
  const arbitrary: fc.Arbitrary<string>[] = [
    fc.string({ unit: 'binary', maxLength: 2_000 }),
    fc.string({ unit: 'grapheme', maxLength: 500 }),
    fc.array(token, { maxLength: 200 }).map((t) => t.join('')),
    fc
      .tuple(fc.constantFrom(...HOSTILE_TOKENS), fc.integer({ min: 1, max: 50_000 }))
      .map(([t, n]) => t.repeat(n)),
  ];
  if (fixtures.length > 0) arbitrary.push(mutated(fixtures), mutated(fixtures), lineSoup(fixtures));
  return fc.oneof(...arbitrary);
}

const PLAIN_PROTOTYPES = new Set<unknown>([
  Object.prototype,
  Array.prototype,
  Map.prototype,
  Set.prototype,
  Date.prototype,
  Uint8Array.prototype,
  Buffer.prototype,
  null,
]);

/**
 * Fails when a parser's result could pollute a prototype when a caller merges it: an object whose
 * prototype is not a plain one, or an own `__proto__` key holding an object (which `Object.assign`
 * would make the target's prototype).
 */
export function expectNoPollution(root: unknown): void {
  // Iterative: a parser may legitimately return trees deeper than the call stack.
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (value === null || typeof value !== 'object' || seen.has(value)) continue;
    seen.add(value);
    if (!PLAIN_PROTOTYPES.has(Object.getPrototypeOf(value))) {
      throw new Error(`parser returned an object with a foreign prototype: ${String(value)}`);
    }
    const proto = Object.getOwnPropertyDescriptor(value, '__proto__')?.value;
    if (proto !== null && (typeof proto === 'object' || typeof proto === 'function')) {
      throw new Error('parser returned an object whose own __proto__ key holds an object');
    }
    if (value instanceof Map) for (const [k, v] of value) stack.push(k, v);
    else if (value instanceof Set) for (const v of value) stack.push(v);
    else stack.push(...Object.values(value));
  }
}

const OBJECT_KEYS = Object.getOwnPropertyNames(Object.prototype).sort().join(',');

/**
 * The fuzz property: `parse` returns a value that passes `wellFormed` and pollutes nothing, or
 * throws a FleetwardError. Anything else (a TypeError, a RangeError from a stack overflow, a plain
 * Error) fails with the thrown error, and fast-check prints the input that caused it.
 */
export function expectTypedOutcome<T>(parse: () => T, wellFormed: (result: T) => void = () => {}): void {
  let result: T;
  try {
    result = parse();
  } catch (error) {
    if (error instanceof FleetwardError) {
      expect(error.code).toMatch(/^[A-Z_]+$/);
      expect(typeof error.message).toBe('string');
      return;
    }
    throw error;
  }
  expectNoPollution(result);
  wellFormed(result);
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  expect(Object.getOwnPropertyNames(Object.prototype).sort().join(',')).toBe(OBJECT_KEYS);
}

/** {@link expectTypedOutcome} for a parser that reads asynchronously (a folder, a stream). */
export async function expectTypedOutcomeAsync<T>(
  parse: () => Promise<T>,
  wellFormed: (result: T) => void = () => {},
): Promise<void> {
  let result: T;
  try {
    result = await parse();
  } catch (error) {
    if (error instanceof FleetwardError) return;
    throw error;
  }
  expectTypedOutcome(() => result, wellFormed);
}

/** Runs of each property: enough to reach the mutations, few enough that a file runs in seconds. */
export const RUNS = 300;
