import {
  type ComplianceRule,
  type ComplianceStandard,
  createFleet,
  createMemoryStore,
  evaluateServer,
  type ScanResult,
  type Store,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluateServerUntil } from '../../src/compliance/evaluate.js';
import { BASE, CATEGORIES, fleetArb, fullSummary, record, SEVERITIES, stores, T } from './fleets.js';
import { DAY, patch, server } from './helpers.js';

/** Fractional days too: the instants where a rule flips are then not whole days or even whole ms. */
const days = fc.double({ min: 0, max: 60, noNaN: true });
const fractionalRuleArb: fc.Arbitrary<ComplianceRule> = fc.oneof(
  fc.record({
    kind: fc.constant('max-pending-age' as const),
    categories: fc.subarray(CATEGORIES, { minLength: 1 }),
    minSeverity: fc.constantFrom(...SEVERITIES),
    maxAgeDays: days,
  }),
  fc.record({
    kind: fc.constant('no-pending' as const),
    categories: fc.subarray(CATEGORIES, { minLength: 1 }),
    minSeverity: fc.constantFrom(...SEVERITIES),
  }),
  fc.record({ kind: fc.constant('updated-within' as const), days }),
  fc.record({ kind: fc.constant('scanned-within' as const), days }),
);

const evaluationArb = fc.record({
  rules: fc.array(
    fc.record({ rule: fractionalRuleArb, alertAfterDays: fc.option(days, { nil: undefined }) }),
    {
      minLength: 1,
      maxLength: 4,
    },
  ),
  scanned: fc.option(fc.integer({ min: -40 * DAY, max: 0 }), { nil: undefined }),
  updated: fc.option(fc.integer({ min: -120 * DAY, max: 0 }), { nil: undefined }),
  patches: fc.array(
    fc.record({
      category: fc.constantFrom(...CATEGORIES),
      severity: fc.constantFrom(...SEVERITIES),
      seenBefore: fc.integer({ min: 0, max: 90 * DAY }),
    }),
    { maxLength: 5 },
  ),
  /** Where between `now` and the horizon a second evaluation is made (0: at `now`, 1: at the horizon). */
  within: fc.double({ min: 0, max: 1, noNaN: true }),
});

describe('evaluateServerUntil', () => {
  it('the evaluation holds at every instant from now through the horizon it gives, and changes soon after it', () => {
    const NOW = BASE + 100 * DAY + 12_345;
    let flipped = 0;
    fc.assert(
      fc.property(evaluationArb, (c) => {
        const standards = c.rules.map(
          (r, i): ComplianceStandard =>
            ({
              tenantId: T,
              id: `std${i}`,
              name: `standard ${i}`,
              rule: r.rule,
              enabled: true,
              ...(r.alertAfterDays !== undefined ? { alertAfterDays: r.alertAfterDays } : {}),
              version: 1,
              createdAt: '2026-01-01T00:00:00.000Z',
              updatedAt: '2026-01-01T00:00:00.000Z',
            }) as ComplianceStandard,
        );
        const scan: ScanResult | undefined =
          c.scanned === undefined
            ? undefined
            : ({
                tenantId: T,
                id: 'scan',
                serverId: 's',
                status: 'succeeded',
                scannedAt: new Date(NOW + c.scanned).toISOString(),
                ...(c.updated !== undefined
                  ? { lastUpdatedAt: new Date(NOW + c.updated).toISOString() }
                  : {}),
                patches: c.patches.map((p, i) =>
                  patch(`p${i}`, {
                    category: p.category,
                    severity: p.severity,
                    firstSeenAt: new Date(NOW + (c.scanned ?? 0) - p.seenBefore).toISOString(),
                  }),
                ),
                version: 1,
                createdAt: '2026-01-01T00:00:00.000Z',
                updatedAt: '2026-01-01T00:00:00.000Z',
              } as ScanResult);
        const at = (ms: number) =>
          evaluateServer({
            server: server('s'),
            latestScan: scan,
            standards,
            now: new Date(ms),
            explain: false,
          });
        const { evaluation, stableThrough } = evaluateServerUntil({
          server: server('s'),
          latestScan: scan,
          standards,
          now: new Date(NOW),
          explain: false,
        });
        expect(evaluation).toEqual(at(NOW));
        expect(stableThrough).toBeGreaterThanOrEqual(NOW);
        if (!Number.isFinite(stableThrough)) {
          // Nothing left to flip: far in the future it is still the same.
          expect(at(NOW + 4000 * DAY)).toEqual(evaluation);
          return;
        }
        expect(at(stableThrough)).toEqual(evaluation);
        expect(at(NOW + Math.floor(c.within * (stableThrough - NOW)))).toEqual(evaluation);
        if (JSON.stringify(at(stableThrough + 3)) !== JSON.stringify(evaluation)) flipped++;
      }),
      { numRuns: 2000 },
    );
    // Not merely safe but tight: many horizons are followed by a change of the evaluation at once
    // (many others by a flip that changes nothing visible, such as a second patch aging).
    expect(flipped).toBeGreaterThan(20);
  });
});

const stepArb = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.integer({ min: 0, max: 30 * DAY }),
    }),
  },
  fc.record({
    kind: fc.constant('scan' as const),
    server: fc.integer({ min: 0, max: 7 }),
    seenBefore: fc.array(fc.integer({ min: 0, max: 40 * DAY }), { maxLength: 3 }),
    category: fc.constantFrom(...CATEGORIES),
  }),
  fc.record({ kind: fc.constant('delete-server' as const), server: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('create-server' as const), server: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('relabel' as const), server: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('toggle-standard' as const), index: fc.nat() }),
);

type Step = typeof stepArb extends fc.Arbitrary<infer S> ? S : never;

/** One write or passing of time, as a fleet sees them between two page loads of a dashboard. */
async function apply(store: Store, clock: ManualClock, step: Step): Promise<void> {
  const id = 'server' in step ? `s${step.server}` : '';
  const existing = id ? await store.servers.get(T, id) : undefined;
  switch (step.kind) {
    case 'advance':
      clock.advance(step.ms);
      return;
    case 'scan':
      clock.advance(1000);
      await store.scanResults.create({
        tenantId: T,
        serverId: id,
        scannedAt: clock.now().toISOString(),
        status: 'succeeded',
        patches: step.seenBefore.map((ms, i) =>
          patch(`q${i}`, {
            category: step.category,
            firstSeenAt: new Date(clock.now().getTime() - ms).toISOString(),
          }),
        ),
      });
      return;
    case 'delete-server':
      if (existing) await store.servers.delete(T, id);
      return;
    case 'create-server':
      if (!existing) {
        await store.servers.create({
          tenantId: T,
          id,
          name: `server ${step.server}`,
          accountId: 'a1',
          provider: 'aws',
          region: 'eu',
          labels: { env: 'prod' },
        });
      }
      return;
    case 'relabel':
      if (existing) {
        await store.servers.update(
          T,
          id,
          { labels: { env: existing.labels['env'] === 'prod' ? 'dev' : 'prod' } },
          { expectedVersion: existing.version },
        );
      }
      return;
    case 'toggle-standard': {
      const standards = await store.complianceStandards.listAll(T);
      const standard = standards[step.index % Math.max(1, standards.length)];
      if (standard) {
        await store.complianceStandards.update(
          T,
          standard.id,
          { enabled: !standard.enabled },
          { expectedVersion: standard.version },
        );
      }
      return;
    }
  }
}

describe.each(stores)('compliance.summary over kept evaluations (%s)', (_name, open) => {
  it('after every write and every passing of time, gives the full evaluation’s numbers, for the tenant and a project', async () => {
    await fc.assert(
      fc.asyncProperty(fleetArb, fc.array(stepArb, { minLength: 1, maxLength: 12 }), async (fleet, steps) => {
        const clock = new ManualClock('2026-03-01T00:00:00.000Z');
        const store = open(clock);
        const facade = createFleet({ store, adapters: [], clock });
        try {
          await facade.bootstrapTenant({
            tenant: { id: T, name: 'T' },
            admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
          });
          await record(store, clock, fleet);
          // Two standards that always change with time, whatever the random ones are.
          await store.complianceStandards.create({
            tenantId: T,
            id: 'aging',
            name: 'aging',
            rule: {
              kind: 'max-pending-age',
              categories: ['security'],
              minSeverity: 'unspecified',
              maxAgeDays: 3.5,
            },
            alertAfterDays: 2,
            enabled: true,
          });
          await store.complianceStandards.create({
            tenantId: T,
            id: 'fresh',
            name: 'fresh',
            rule: { kind: 'scanned-within', days: 5 },
            enabled: true,
          });
          clock.set(new Date(BASE + fleet.nowDay * DAY + 3_600_000));
          const alice = facade.as({ tenantId: T, principalId: 'alice' });
          const check = async () => {
            const now = clock.now();
            const { generatedAt, ...tenant } = await alice.compliance.summary();
            expect(generatedAt).toBe(now.toISOString());
            expect(tenant).toEqual(await fullSummary(store, now));
            const {
              generatedAt: _,
              projectId,
              ...project
            } = await alice.compliance.summary({
              projectId: 'prod',
            });
            expect(projectId).toBe('prod');
            expect(project).toEqual(await fullSummary(store, now, 'prod'));
          };
          await check();
          for (const step of steps) {
            await apply(store, clock, step);
            await check();
          }
        } finally {
          await facade.close();
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('compliance.summary over kept evaluations', () => {
  it('a standard deleted and created again under its id, in the same millisecond, is judged by its new rule', async () => {
    const clock = new ManualClock('2026-03-01T00:00:00.000Z');
    const store = createMemoryStore({ clock });
    const facade = createFleet({ store, adapters: [], clock });
    await facade.bootstrapTenant({
      tenant: { id: T, name: 'T' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    await store.servers.create({
      tenantId: T,
      id: 's',
      name: 's',
      accountId: 'a',
      provider: 'ssh',
      labels: {},
    });
    await store.scanResults.create({
      tenantId: T,
      serverId: 's',
      scannedAt: clock.now().toISOString(),
      status: 'succeeded',
      patches: [patch('openssl', { firstSeenAt: clock.now().toISOString() })],
    });
    const standard = (rule: ComplianceRule) =>
      store.complianceStandards.create({ tenantId: T, id: 'std', name: 'std', rule, enabled: true });
    await standard({ kind: 'scanned-within', days: 1 });
    const alice = facade.as({ tenantId: T, principalId: 'alice' });
    expect((await alice.compliance.summary()).overall.compliant).toBe(1);
    await store.complianceStandards.delete(T, 'std');
    await standard({ kind: 'no-pending', categories: ['security'], minSeverity: 'unspecified' });
    expect((await alice.compliance.summary()).overall).toMatchObject({ compliant: 0, nonCompliant: 1 });
    await facade.close();
  });
});
