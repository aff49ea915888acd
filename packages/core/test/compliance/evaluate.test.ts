import { carryHistory, evaluateServer, type ScanResult } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { DAY, daysAgo, NOW, patch, project, SEVEN_DAY_SECURITY, scan, server, standard } from './helpers.js';

const web = server('web-1', { labels: { env: 'prod' } });
const sevenDays = standard('sec-7', SEVEN_DAY_SECURITY);

describe('evaluateServer', () => {
  it('evaluateServer — a server never scanned is unknown for patch rules and scanned-within, never compliant', () => {
    const result = evaluateServer({
      server: web,
      standards: [
        sevenDays,
        standard('no-crit', { kind: 'no-pending', categories: ['security'], minSeverity: 'critical' }),
        standard('scan-7', { kind: 'scanned-within', days: 7 }),
        standard('upd-90', { kind: 'updated-within', days: 90 }),
      ],
      now: NOW,
    });
    expect(result.status).toBe('unknown');
    expect(result.results.map((r) => r.status)).toEqual(['unknown', 'unknown', 'unknown', 'unknown']);
    expect(result.results[0]!.reasons[0]!.message).toBe('never successfully scanned');
    expect(result.lastScannedAt).toBeUndefined();
    expect(result.alert).toBe(false);
  });

  it('evaluateServer — only failed scans: unknown, and the reason names the failed attempt', () => {
    const failed = scan('web-1', {
      status: 'failed',
      scannedAt: daysAgo(1),
      error: { code: 'TRANSPORT', message: 'connect ECONNREFUSED' },
    });
    const result = evaluateServer({ server: web, latestScan: failed, standards: [sevenDays], now: NOW });
    expect(result.status).toBe('unknown');
    expect(result.results[0]!.reasons[0]!.message).toMatch(/latest attempt at .* failed: TRANSPORT connect/);
    expect(result.lastFailedScanAt).toBe(daysAgo(1));
  });

  it('evaluateServer — 7-day security standard: a patch first seen 8 days ago is non-compliant, naming the patch and its age', () => {
    const latest = scan('web-1', {
      patches: [
        patch('openssl', { candidateVersion: '3.0.14-1', firstSeenAt: daysAgo(8) }),
        patch('curl', { firstSeenAt: daysAgo(2) }),
      ],
    });
    const result = evaluateServer({ server: web, latestScan: latest, standards: [sevenDays], now: NOW });
    expect(result.status).toBe('non-compliant');
    const [reason] = result.results[0]!.reasons;
    expect(reason!.message).toMatch(/1 patch of security pending for more than 7 days/);
    expect(reason!.message).toMatch(/openssl 3\.0\.14-1, first seen 8 days ago/);
    expect(reason!.patches).toEqual([
      {
        name: 'openssl',
        candidateVersion: '3.0.14-1',
        category: 'security',
        severity: 'unspecified',
        firstSeenAt: daysAgo(8),
        ageDays: 8,
      },
    ]);
    expect(reason!.since).toBe(daysAgo(1));
    expect(result.results[0]!.failingSince).toBe(daysAgo(1));
  });

  it('evaluateServer — 7-day security standard: a patch first seen 6 days ago is compliant', () => {
    const latest = scan('web-1', { patches: [patch('openssl', { firstSeenAt: daysAgo(6) })] });
    const result = evaluateServer({ server: web, latestScan: latest, standards: [sevenDays], now: NOW });
    expect(result.status).toBe('compliant');
    expect(result.results[0]).toMatchObject({ status: 'compliant', reasons: [], alert: false });
  });

  it('evaluateServer — a newer candidate of a still-pending package keeps the original first-seen date', () => {
    const first = carryHistory(undefined, [patch('openssl', { candidateVersion: '3.0.13-1' })], daysAgo(10));
    const before = scan('web-1', { scannedAt: daysAgo(10), ...first } as Partial<ScanResult>);
    const second = carryHistory(before, [patch('openssl', { candidateVersion: '3.0.14-1' })], daysAgo(1));
    const latest = scan('web-1', { scannedAt: daysAgo(1), ...second } as Partial<ScanResult>);
    const result = evaluateServer({ server: web, latestScan: latest, standards: [sevenDays], now: NOW });
    expect(result.status).toBe('non-compliant');
    expect(result.results[0]!.reasons[0]!.patches![0]).toMatchObject({
      candidateVersion: '3.0.14-1',
      firstSeenAt: daysAgo(10),
      ageDays: 10,
    });
  });

  it('evaluateServer — without firstSeenAt, age counts from the scan', () => {
    const old = scan('web-1', { scannedAt: daysAgo(9), patches: [patch('openssl')] });
    const result = evaluateServer({ server: web, latestScan: old, standards: [sevenDays], now: NOW });
    expect(result.results[0]!.reasons[0]!.patches![0]).toMatchObject({ firstSeenAt: daysAgo(9), ageDays: 9 });
  });

  it('evaluateServer — the severity filter counts patches at or above minSeverity, and unspecified ones like patch policies do', () => {
    const important = standard('imp', { ...SEVEN_DAY_SECURITY, minSeverity: 'important' });
    const judge = (severity: 'moderate' | 'critical' | 'unspecified') =>
      evaluateServer({
        server: web,
        latestScan: scan('web-1', { patches: [patch('kernel', { severity, firstSeenAt: daysAgo(30) })] }),
        standards: [important],
        now: NOW,
      }).status;
    expect(judge('moderate')).toBe('compliant');
    expect(judge('critical')).toBe('non-compliant');
    expect(judge('unspecified')).toBe('non-compliant');
  });

  it('evaluateServer — other categories do not count; an old patch of unknown category makes the rule unknown', () => {
    const judge = (category: 'bugfix' | 'unknown') =>
      evaluateServer({
        server: web,
        latestScan: scan('web-1', { patches: [patch('libfoo', { category, firstSeenAt: daysAgo(30) })] }),
        standards: [sevenDays],
        now: NOW,
      });
    expect(judge('bugfix').status).toBe('compliant');
    const unknown = judge('unknown');
    expect(unknown.status).toBe('unknown');
    expect(unknown.results[0]!.reasons[0]!.message).toMatch(/unknown category .* whether they are security/);
  });

  it('evaluateServer — new dependencies are not pending updates; pinned patches still count', () => {
    const result = evaluateServer({
      server: web,
      latestScan: scan('web-1', {
        patches: [
          patch('libnew', { isNew: true, firstSeenAt: daysAgo(30) }),
          patch('pinned', { held: true, firstSeenAt: daysAgo(30) }),
        ],
      }),
      standards: [sevenDays],
      now: NOW,
    });
    expect(result.results[0]!.reasons[0]!.patches!.map((p) => [p.name, p.held])).toEqual([['pinned', true]]);
  });

  it('evaluateServer — no-pending fails on any matching patch, failing since its first sighting', () => {
    const result = evaluateServer({
      server: web,
      latestScan: scan('web-1', {
        patches: [patch('kernel', { severity: 'critical', firstSeenAt: daysAgo(1) })],
      }),
      standards: [
        standard('no-crit', { kind: 'no-pending', categories: ['security'], minSeverity: 'critical' }),
      ],
      now: NOW,
    });
    expect(result.status).toBe('non-compliant');
    expect(result.results[0]!.failingSince).toBe(daysAgo(1));
  });

  it('evaluateServer — updated-within: compliant inside the window, non-compliant past it, unknown without lastUpdatedAt', () => {
    const within = standard('upd-90', { kind: 'updated-within', days: 90 });
    const judge = (lastUpdatedAt?: string) =>
      evaluateServer({
        server: web,
        latestScan: scan('web-1', lastUpdatedAt ? { lastUpdatedAt } : {}),
        standards: [within],
        now: NOW,
      });
    expect(judge(daysAgo(10)).status).toBe('compliant');
    const stale = judge(daysAgo(100));
    expect(stale.status).toBe('non-compliant');
    expect(stale.lastUpdatedAt).toBe(daysAgo(100));
    expect(stale.results[0]!.reasons[0]).toMatchObject({
      message: expect.stringMatching(/last updated 100 days ago .* more than 90 days/),
      since: daysAgo(10),
    });
    const never = judge(undefined);
    expect(never.status).toBe('unknown');
    expect(never.results[0]!.reasons[0]!.message).toMatch(/no scan has yet observed/);
  });

  it('evaluateServer — scanned-within judges the last successful scan; a later failed attempt does not refresh it', () => {
    const scanned7 = standard('scan-7', { kind: 'scanned-within', days: 7 });
    const fresh = evaluateServer({
      server: web,
      latestScan: scan('web-1', { scannedAt: daysAgo(3) }),
      standards: [scanned7],
      now: NOW,
    });
    expect(fresh.status).toBe('compliant');
    expect(fresh.lastScannedAt).toBe(daysAgo(3));
    const stale = evaluateServer({
      server: web,
      latestScan: scan('web-1', {
        scannedAt: daysAgo(10),
        patches: [patch('openssl', { firstSeenAt: daysAgo(12) })],
      }),
      latestAttempt: scan('web-1', { scannedAt: daysAgo(1), status: 'failed' }),
      standards: [scanned7, sevenDays],
      now: NOW,
    });
    expect(stale.results.map((r) => r.status)).toEqual(['non-compliant', 'non-compliant']);
    expect(stale.results[0]!.reasons[0]!.message).toMatch(/10 days ago .* the latest attempt at .* failed/);
    expect(stale.results[0]!.failingSince).toBe(daysAgo(3));
    expect(stale.lastFailedScanAt).toBe(daysAgo(1));
  });

  it('evaluateServer — project-scoped standards apply only to the servers the project selects', () => {
    const prod = project('prod', { labels: { env: 'prod' } });
    const scoped = standard('prod-scan', { kind: 'scanned-within', days: 1 }, { projectId: 'prod' });
    const old = (id: string) => scan(id, { scannedAt: daysAgo(5) });
    const inProject = evaluateServer({
      server: web,
      latestScan: old('web-1'),
      standards: [scoped],
      projects: [prod],
      now: NOW,
    });
    expect(inProject.projectIds).toEqual(['prod']);
    expect(inProject.results.map((r) => r.standardId)).toEqual(['prod-scan']);
    expect(inProject.status).toBe('non-compliant');
    const staging = server('web-2', { labels: { env: 'staging' } });
    const outside = evaluateServer({
      server: staging,
      latestScan: old('web-2'),
      standards: [scoped],
      projects: [prod],
      now: NOW,
    });
    expect(outside.projectIds).toEqual([]);
    expect(outside.results).toEqual([]);
    expect(outside.status).toBe('compliant');
    // Precomputed membership wins over the projects list.
    expect(
      evaluateServer({
        server: staging,
        latestScan: old('web-2'),
        standards: [scoped],
        projectIds: ['prod'],
        now: NOW,
      }).results,
    ).toHaveLength(1);
  });

  it('evaluateServer — disabled standards are skipped', () => {
    const result = evaluateServer({
      server: web,
      standards: [standard('off', SEVEN_DAY_SECURITY, { enabled: false })],
      now: NOW,
    });
    expect(result).toMatchObject({ status: 'compliant', results: [] });
  });

  it('evaluateServer — alert threshold: a rule failing for longer than alertAfterDays raises an alert, not before', () => {
    const alerting = standard('sec-7', SEVEN_DAY_SECURITY, { alertAfterDays: 14 });
    const judge = (age: number) =>
      evaluateServer({
        server: web,
        latestScan: scan('web-1', { patches: [patch('openssl', { firstSeenAt: daysAgo(age) })] }),
        standards: [alerting],
        now: NOW,
      });
    // 20 − 7 = 13 days failing: not yet past 14.
    expect(judge(20)).toMatchObject({ status: 'non-compliant', alert: false });
    // Exactly 14 days failing is not "longer than" 14.
    expect(judge(21).alert).toBe(false);
    const late = judge(22);
    expect(late.alert).toBe(true);
    expect(late.alertSince).toBe(new Date(Date.parse(daysAgo(22)) + 21 * DAY).toISOString());
    expect(late.results[0]).toMatchObject({ alert: true, alertSince: daysAgo(1) });
  });

  it('evaluateServer — updated-within alerts once days since update minus days exceeds alertAfterDays; unknown never alerts', () => {
    const rule = standard('upd-90', { kind: 'updated-within', days: 90 }, { alertAfterDays: 0 });
    const stale = evaluateServer({
      server: web,
      latestScan: scan('web-1', { lastUpdatedAt: daysAgo(91) }),
      standards: [rule],
      now: NOW,
    });
    expect(stale).toMatchObject({ alert: true, alertSince: daysAgo(1) });
    expect(evaluateServer({ server: web, standards: [rule], now: NOW }).alert).toBe(false);
  });

  it('evaluateServer — explain: false drops reasons and per-standard dates but keeps every status and alert', () => {
    const input = {
      server: web,
      latestScan: scan('web-1', {
        scannedAt: daysAgo(40),
        patches: [
          patch('a', { firstSeenAt: daysAgo(40) }),
          patch('b', { category: 'unknown', firstSeenAt: daysAgo(9) }),
        ],
      }),
      standards: [
        standard('upd', { kind: 'updated-within', days: 30 }),
        standard('scan', { kind: 'scanned-within', days: 30 }, { alertAfterDays: 5 }),
        standard('sec', SEVEN_DAY_SECURITY, { alertAfterDays: 5 }),
      ],
      now: NOW,
    };
    const full = evaluateServer(input);
    const lean = evaluateServer({ ...input, explain: false });
    expect(lean.results.every((r) => r.reasons.length === 0 && r.failingSince === undefined)).toBe(true);
    const strip = (e: typeof full) => ({
      ...e,
      results: e.results.map(({ standardId, status, alert }) => ({ standardId, status, alert })),
    });
    expect(strip(lean)).toEqual(strip(full));
  });

  it('evaluateServer — overall: non-compliant beats unknown, unknown beats compliant; earliest alert wins', () => {
    const result = evaluateServer({
      server: web,
      latestScan: scan('web-1', {
        scannedAt: daysAgo(40),
        patches: [patch('a', { firstSeenAt: daysAgo(40) })],
      }),
      standards: [
        standard('upd', { kind: 'updated-within', days: 30 }),
        standard('scan', { kind: 'scanned-within', days: 30 }, { alertAfterDays: 5 }),
        standard('sec', SEVEN_DAY_SECURITY, { alertAfterDays: 5 }),
      ],
      now: NOW,
    });
    expect(result.results.map((r) => r.status)).toEqual(['unknown', 'non-compliant', 'non-compliant']);
    expect(result.status).toBe('non-compliant');
    // sec: failing since 33 days ago, alert after 5 → 28 days ago; scan: 10 days ago + 5 → 5 days ago.
    expect(result.alertSince).toBe(daysAgo(28));
  });
});
