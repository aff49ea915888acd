import { type Store, summarize } from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluateStates } from '../../src/compliance/api.js';
import { BASE, fleetArb, fullSummary, record, stores, T } from './fleets.js';
import { DAY } from './helpers.js';

async function stateSummary(store: Store, now: Date) {
  const [states, projects, standards] = await Promise.all([
    store.complianceStates.listAll(T),
    store.projects.listAll(T),
    store.complianceStandards.listAll(T),
  ]);
  const enabled = standards.filter((s) => s.enabled);
  return summarize(
    evaluateStates(states, enabled, projects, now),
    states.map((s) => s.server!),
    projects,
  );
}

describe.each(stores)('compliance states (%s)', (_name, open) => {
  it('summary — the states give the same numbers as the full evaluation, for every fleet and now', async () => {
    await fc.assert(
      fc.asyncProperty(fleetArb, async (fleet) => {
        const clock = new ManualClock('2026-03-01T00:00:00.000Z');
        const store = open(clock);
        try {
          await record(store, clock, fleet);
          const now = new Date(BASE + fleet.nowDay * DAY + 3_600_000);
          expect(await stateSummary(store, now)).toEqual(await fullSummary(store, now));
        } finally {
          await store.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});
