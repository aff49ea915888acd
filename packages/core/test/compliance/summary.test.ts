import { evaluateServer, osKey, type ServerEvaluation, summarize } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { daysAgo, NOW, patch, project, SEVEN_DAY_SECURITY, scan, server, standard } from './helpers.js';

const debian = {
  family: 'debian' as const,
  id: 'debian',
  versionId: '12',
  prettyName: 'Debian GNU/Linux 12',
};
const rocky = { family: 'rhel' as const, id: 'rocky', versionId: '9.4', prettyName: '' };

const servers = [
  server('a1', {
    provider: 'aws',
    accountId: 'acct-1',
    region: 'eu-west-1',
    os: debian,
    labels: { env: 'prod' },
  }),
  server('a2', {
    provider: 'aws',
    accountId: 'acct-1',
    region: 'eu-west-1',
    os: rocky,
    labels: { env: 'prod' },
  }),
  server('z1', {
    provider: 'azure',
    accountId: 'acct-2',
    region: 'westeurope',
    os: debian,
    labels: { env: 'dev' },
  }),
  server('s1', { provider: 'ssh', accountId: 'dc', labels: {} }),
];
const projects = [
  project('prod', { labels: { env: 'prod' } }, { name: 'Production' }),
  project('eu', { regions: ['eu-west-1', 'westeurope'] }, { name: 'Europe' }),
  project('empty', { labels: { env: 'nowhere' } }, { name: 'Empty' }),
];
const standards = [
  standard('sec-7', SEVEN_DAY_SECURITY, { name: 'Security within 7 days', alertAfterDays: 7 }),
  standard('scan-7', { kind: 'scanned-within', days: 7 }, { name: 'Scanned weekly' }),
];
const scans = {
  // Compliant.
  a1: scan('a1', { scannedAt: daysAgo(1), lastUpdatedAt: daysAgo(20) }),
  // Non-compliant and in alert: 30 − 7 = 23 days failing > 7.
  a2: scan('a2', { scannedAt: daysAgo(2), patches: [patch('openssl', { firstSeenAt: daysAgo(30) })] }),
  // Non-compliant, not in alert.
  z1: scan('z1', {
    scannedAt: daysAgo(3),
    lastUpdatedAt: daysAgo(40),
    patches: [patch('curl', { firstSeenAt: daysAgo(9) })],
  }),
} as const;

function evaluations(): ServerEvaluation[] {
  return servers.map((s) =>
    evaluateServer({
      server: s,
      latestScan: scans[s.id as keyof typeof scans],
      standards,
      projects,
      now: NOW,
    }),
  );
}

describe('summarize', () => {
  it('summarize — counts and percentages overall; the three shares add up to exactly 100', () => {
    const summary = summarize(evaluations(), servers, projects);
    expect(summary.overall).toMatchObject({
      key: null,
      total: 4,
      compliant: 1,
      nonCompliant: 2,
      unknown: 1,
      alerts: 1,
      percent: { compliant: 25, nonCompliant: 50, unknown: 25 },
      oldestLastScannedAt: daysAgo(3),
      neverScanned: 1,
      oldestLastUpdatedAt: daysAgo(40),
      neverUpdated: 2,
    });
    const thirds = summarize(evaluations().slice(0, 3), servers, projects).overall.percent;
    expect(thirds.compliant + thirds.nonCompliant + thirds.unknown).toBe(100);
    expect(thirds).toEqual({ compliant: 33.3, nonCompliant: 66.7, unknown: 0 });
  });

  it('summarize — groups by provider, account, region and OS, with a null group for servers without a value', () => {
    const summary = summarize(evaluations(), servers, projects, {
      accountNames: new Map([['acct-1', 'Production AWS']]),
    });
    const pick = (groups: typeof summary.byRegion) =>
      groups.map((g) => [g.key, g.label, g.total, g.compliant, g.nonCompliant, g.unknown]);
    expect(pick(summary.byProvider)).toEqual([
      ['aws', 'aws', 2, 1, 1, 0],
      ['azure', 'azure', 1, 0, 1, 0],
      ['ssh', 'ssh', 1, 0, 0, 1],
    ]);
    expect(pick(summary.byAccount)).toEqual([
      ['acct-1', 'Production AWS', 2, 1, 1, 0],
      ['acct-2', 'acct-2', 1, 0, 1, 0],
      ['dc', 'dc', 1, 0, 0, 1],
    ]);
    expect(pick(summary.byRegion)).toEqual([
      ['eu-west-1', 'eu-west-1', 2, 1, 1, 0],
      ['westeurope', 'westeurope', 1, 0, 1, 0],
      [null, '(none)', 1, 0, 0, 1],
    ]);
    expect(pick(summary.byOs)).toEqual([
      ['Debian GNU/Linux 12', 'Debian GNU/Linux 12', 2, 1, 1, 0],
      ['rocky 9.4', 'rocky 9.4', 1, 0, 1, 0],
      [null, '(none)', 1, 0, 0, 1],
    ]);
    expect(summary.byRegion[0]).toMatchObject({
      oldestLastScannedAt: daysAgo(2),
      neverScanned: 0,
      oldestLastUpdatedAt: daysAgo(20),
      neverUpdated: 1,
      percent: { compliant: 50, nonCompliant: 50, unknown: 0 },
    });
  });

  it('summarize — a server counts in every project that selects it; empty projects are listed; the rest are in a null group', () => {
    const summary = summarize(evaluations(), servers, projects);
    expect(
      summary.byProject.map((g) => [g.key, g.label, g.total, g.compliant, g.nonCompliant, g.unknown]),
    ).toEqual([
      ['empty', 'Empty', 0, 0, 0, 0],
      ['eu', 'Europe', 3, 1, 2, 0],
      ['prod', 'Production', 2, 1, 1, 0],
      [null, '(none)', 1, 0, 0, 1],
    ]);
    expect(summary.byProject[0]!.percent).toEqual({ compliant: 0, nonCompliant: 0, unknown: 0 });
  });

  it('summarize — per standard, and the servers over the alert threshold, longest first', () => {
    const summary = summarize(evaluations(), servers, projects);
    expect(
      summary.byStandard.map((s) => [
        s.standardId,
        s.total,
        s.compliant,
        s.nonCompliant,
        s.unknown,
        s.alerts,
      ]),
    ).toEqual([
      ['scan-7', 4, 3, 0, 1, 0],
      ['sec-7', 4, 1, 2, 1, 1],
    ]);
    expect(summary.alerts).toEqual([
      { serverId: 'a2', serverName: 'a2', alertSince: daysAgo(16), standardIds: ['sec-7'] },
    ]);
  });

  it('summarize — evaluations of servers not given are left out', () => {
    const summary = summarize(evaluations(), servers.slice(0, 1), projects);
    expect(summary.overall.total).toBe(1);
  });

  it('osKey — prettyName, else id and version, else null', () => {
    expect(osKey({ os: debian })).toBe('Debian GNU/Linux 12');
    expect(osKey({ os: rocky })).toBe('rocky 9.4');
    expect(osKey({ os: { ...rocky, id: '', versionId: '' } })).toBe('rhel');
    expect(osKey({})).toBeNull();
  });
});
