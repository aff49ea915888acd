/** Random fleets recorded into a store, and the summary of the full evaluation to compare with. */
import {
  type ComplianceRule,
  createMemoryStore,
  evaluateServer,
  type PatchCategory,
  projectsOf,
  type ScanResult,
  type Severity,
  type Store,
  summarize,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import type { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { loadLatestScans } from '../../src/compliance/api.js';
import { DAY, patch } from './helpers.js';

export const T = 't';
export const BASE = Date.parse('2026-03-01T00:00:00.000Z');
export const CATEGORIES: PatchCategory[] = ['security', 'bugfix', 'enhancement', 'unknown'];
export const SEVERITIES: Severity[] = ['unspecified', 'low', 'moderate', 'important', 'critical'];
export const at = (days: number) => new Date(BASE + days * DAY).toISOString();

const patchArb = fc.record({
  category: fc.constantFrom(...CATEGORIES),
  severity: fc.constantFrom(...SEVERITIES),
  seenDaysBefore: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
  isNew: fc.boolean(),
});

const scanArb = fc.record({
  server: fc.integer({ min: 0, max: 7 }),
  day: fc.integer({ min: 0, max: 10 }),
  failed: fc.boolean(),
  updatedDay: fc.option(fc.integer({ min: -200, max: 40 }), { nil: undefined }),
  patches: fc.array(patchArb, { maxLength: 5 }),
  /** Ticks of the store clock before the write: 0 gives ties in `createdAt`. */
  tick: fc.integer({ min: 0, max: 2 }),
});

export const ruleArb: fc.Arbitrary<ComplianceRule> = fc.oneof(
  fc.record({
    kind: fc.constant('max-pending-age' as const),
    categories: fc.subarray(CATEGORIES, { minLength: 1 }),
    minSeverity: fc.constantFrom(...SEVERITIES),
    maxAgeDays: fc.integer({ min: 0, max: 60 }),
  }),
  fc.record({
    kind: fc.constant('no-pending' as const),
    categories: fc.subarray(CATEGORIES, { minLength: 1 }),
    minSeverity: fc.constantFrom(...SEVERITIES),
  }),
  fc.record({ kind: fc.constant('updated-within' as const), days: fc.integer({ min: 0, max: 120 }) }),
  fc.record({ kind: fc.constant('scanned-within' as const), days: fc.integer({ min: 0, max: 30 }) }),
);

export const fleetArb = fc.record({
  servers: fc.array(
    fc.record({
      exists: fc.boolean(),
      provider: fc.constantFrom('aws' as const, 'azure' as const, 'ssh' as const),
      account: fc.constantFrom('a1', 'a2'),
      region: fc.option(fc.constantFrom('eu', 'us'), { nil: undefined }),
      env: fc.option(fc.constantFrom('prod', 'dev'), { nil: undefined }),
      os: fc.option(fc.constantFrom('debian', 'rhel'), { nil: undefined }),
    }),
    { minLength: 8, maxLength: 8 },
  ),
  scans: fc.array(scanArb, { maxLength: 24 }),
  /** Writes after the scans: a server relabelled or deleted, a scan deleted or marked failed. */
  edits: fc.array(
    fc.record({
      kind: fc.constantFrom('relabel', 'delete-server', 'delete-scan', 'fail-scan'),
      index: fc.nat(),
    }),
    { maxLength: 4 },
  ),
  standards: fc.array(
    fc.record({
      rule: ruleArb,
      project: fc.option(fc.constantFrom('prod', 'eu', 'missing'), { nil: undefined }),
      alertAfterDays: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
      enabled: fc.boolean(),
    }),
    { maxLength: 5 },
  ),
  nowDay: fc.integer({ min: 0, max: 200 }),
});

export type Fleet = typeof fleetArb extends fc.Arbitrary<infer F> ? F : never;

export async function record(store: Store, clock: ManualClock, fleet: Fleet): Promise<void> {
  await store.projects.create({
    tenantId: T,
    id: 'prod',
    name: 'Production',
    selector: { labels: { env: 'prod' } },
  });
  await store.projects.create({ tenantId: T, id: 'eu', name: 'EU', selector: { regions: ['eu'] } });
  for (const [i, s] of fleet.servers.entries()) {
    if (!s.exists) continue;
    await store.servers.create({
      tenantId: T,
      id: `s${i}`,
      name: `server ${i}`,
      accountId: s.account,
      provider: s.provider,
      ...(s.region ? { region: s.region } : {}),
      labels: s.env ? { env: s.env } : {},
      ...(s.os ? { os: { family: s.os, id: s.os, versionId: '1' } } : {}),
    } as never);
  }
  const scans: ScanResult[] = [];
  for (const s of fleet.scans) {
    clock.advance(s.tick * 1000);
    const scannedAt = at(s.day);
    const input = {
      tenantId: T,
      serverId: `s${s.server}`,
      scannedAt,
      status: s.failed ? ('failed' as const) : ('succeeded' as const),
      patches: s.failed
        ? []
        : s.patches.map((p, j) =>
            patch(`p${j}`, {
              category: p.category,
              severity: p.severity,
              isNew: p.isNew,
              ...(p.seenDaysBefore !== undefined ? { firstSeenAt: at(s.day - p.seenDaysBefore) } : {}),
            }),
          ),
      ...(s.updatedDay !== undefined && !s.failed ? { lastUpdatedAt: at(s.updatedDay) } : {}),
    };
    // Half of the scans are recorded inside a transaction, as the scan workflow does.
    scans.push(
      scans.length % 2
        ? await store.transaction((tx) => tx.scanResults.create(input))
        : await store.scanResults.create(input),
    );
  }
  for (const edit of fleet.edits) {
    const servers = await store.servers.listAll(T);
    const live = await store.scanResults.listAll(T);
    if (edit.kind === 'relabel' && servers.length) {
      const s = servers[edit.index % servers.length]!;
      await store.servers.update(
        T,
        s.id,
        { labels: { env: s.labels['env'] === 'prod' ? 'dev' : 'prod' } },
        {
          expectedVersion: s.version,
        },
      );
    } else if (edit.kind === 'delete-server' && servers.length) {
      await store.servers.delete(T, servers[edit.index % servers.length]!.id);
    } else if (edit.kind === 'delete-scan' && live.length) {
      await store.scanResults.delete(T, live[edit.index % live.length]!.id);
    } else if (edit.kind === 'fail-scan' && live.length) {
      const s = live[edit.index % live.length]!;
      await store.scanResults.update(
        T,
        s.id,
        { status: 'failed', patches: [] },
        { expectedVersion: s.version },
      );
    }
  }
  for (const [i, s] of fleet.standards.entries()) {
    await store.complianceStandards.create({
      tenantId: T,
      id: `std${i}`,
      name: `standard ${i}`,
      rule: s.rule,
      enabled: s.enabled,
      ...(s.project && s.project !== 'missing' ? { projectId: s.project } : {}),
      ...(s.alertAfterDays !== undefined ? { alertAfterDays: s.alertAfterDays } : {}),
    } as never);
  }
}

/** The summary from the servers and their latest scans, as `compliance.evaluate` reads them. */
/**
 * The full evaluation, as `compliance.evaluate` reads it: every server from its latest scans. With
 * `projectId`, the summary of that project's servers, listing the projects they belong to.
 */
export async function fullSummary(store: Store, now: Date, projectId?: string) {
  const [servers, projects, standards] = await Promise.all([
    store.servers.listAll(T),
    store.projects.listAll(T),
    store.complianceStandards.listAll(T),
  ]);
  const enabled = standards.filter((s) => s.enabled);
  // Below the per-server threshold and above it, both ways of finding the latest scans.
  const latest = await loadLatestScans(store, T, new Set(servers.map((s) => s.id)));
  const evaluations = servers.map((server) =>
    evaluateServer({
      server,
      latestScan: latest.get(server.id)?.succeeded,
      latestAttempt: latest.get(server.id)?.attempt,
      standards: enabled,
      projectIds: projectsOf(server, projects),
      now,
      explain: false,
    }),
  );
  if (projectId === undefined) return summarize(evaluations, servers, projects);
  const members = evaluations.filter((e) => e.projectIds.includes(projectId));
  const present = new Set([projectId, ...members.flatMap((e) => e.projectIds)]);
  const ids = new Set(members.map((e) => e.serverId));
  return summarize(
    members,
    servers.filter((s) => ids.has(s.id)),
    projects.filter((p) => present.has(p.id)),
  );
}

/** The stores the properties run on: the reference and the embedded default. */
export const stores: [string, (clock: ManualClock) => Store][] = [
  ['memory store', (clock) => createMemoryStore({ clock })],
  ['SQLite store', (clock) => createSqliteStore({ path: ':memory:', clock })],
];
