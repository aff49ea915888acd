import { FleetwardError } from '@fleetward/core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { callMethod, outcomeOf, WALK_TABLE, WalkFixtures } from './walk-table.js';

// Rule 8 as a property: whatever value an integrator passes in any argument of any facade method
// (a number, null, a list, an object with odd keys, a deep structure), the call is either accepted
// or refused with a typed FleetwardError. A raw TypeError means a value reached code unchecked.

/**
 * Methods that let a raw error escape for some value, by method, not fixed yet: the property is
 * expected to fail for them (`it.fails`), and a fix makes the entry fail so that it is removed.
 */
const KNOWN: Record<string, string> = {};

const fixtures = new WalkFixtures();
afterAll(() => fixtures.close());

const EDGE_VALUES: unknown[] = [
  null,
  undefined,
  [],
  'text',
  42,
  Object.create(null),
  JSON.parse('{"__proto__":{"polluted":"yes"}}'),
];

/** Argument positions a walk may fill with anything: not folders (the embedder's choice). */
const positionsOf = (name: string): number[] => {
  const row = WALK_TABLE[name]!;
  const count = row.args(PLACEHOLDER_IDS).length;
  return [...Array(count).keys()].filter((i) => !row.pathArgs?.includes(i));
};

describe('any value walk', () => {
  for (const name of Object.keys(WALK_TABLE).filter((n) => positionsOf(n).length > 0)) {
    const test = KNOWN[name] ? it.fails : it;
    test(`${name} — any value in any argument is accepted or refused with a FleetwardError${KNOWN[name] ? ` (known gap: ${KNOWN[name]})` : ''}`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...positionsOf(name)),
          fc.anything({ withNullPrototype: true }),
          async (i, value) => {
            const f = await fixtures.get();
            const args = WALK_TABLE[name]!.args(f.ids).map((a, j) => (j === i ? value : a));
            const outcome = await outcomeOf(callMethod(f.admin, name, args));
            if (!outcome.ok) expect(outcome.error).toBeInstanceOf(FleetwardError);
          },
        ),
        {
          numRuns: 20,
          // The values integrators pass by mistake most often, tried every time for every argument.
          examples: positionsOf(name).flatMap((i) => EDGE_VALUES.map((v): [number, unknown] => [i, v])),
        },
      );
    });
  }
});

/** The walk table's argument shapes do not depend on the ids (see walk-tenant). */
const PLACEHOLDER_IDS = new Proxy({} as Parameters<(typeof WALK_TABLE)[string]['args']>[0], {
  get: (_, key) => (String(key).endsWith('Version') ? 1 : `placeholder-${String(key)}`),
});
