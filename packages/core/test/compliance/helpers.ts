import type {
  ComplianceRule,
  ComplianceStandard,
  PendingPatch,
  Project,
  ScanResult,
  Server,
  ServerSelector,
} from '@fleetward/core';

export const NOW = new Date('2026-05-01T00:00:00.000Z');
export const DAY = 86_400_000;

/** The instant `n` days before {@link NOW}. */
export const daysAgo = (n: number, from: Date = NOW) => new Date(from.getTime() - n * DAY).toISOString();

const meta = (id: string) => ({
  tenantId: 't',
  id,
  version: 1,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
});

export function server(id: string, fields: Partial<Server> = {}): Server {
  return { ...meta(id), accountId: 'acct-1', provider: 'aws', name: id, labels: {}, ...fields };
}

export function patch(name: string, fields: Partial<PendingPatch> = {}): PendingPatch {
  return {
    name,
    arch: 'amd64',
    installedVersion: '1.0',
    candidateVersion: '1.1',
    origins: [],
    category: 'security',
    severity: 'unspecified',
    advisories: [],
    held: false,
    keptBack: false,
    isNew: false,
    ...fields,
  };
}

export function scan(serverId: string, fields: Partial<ScanResult> = {}): ScanResult {
  return {
    ...meta(`scan-${serverId}-${fields.scannedAt ?? 'x'}`),
    serverId,
    scannedAt: daysAgo(0),
    status: 'succeeded',
    patches: [],
    rebootRequired: false,
    rebootPackages: [],
    warnings: [],
    ...fields,
  };
}

export function standard(
  id: string,
  rule: ComplianceRule,
  fields: Partial<Omit<ComplianceStandard, 'rule'>> = {},
): ComplianceStandard {
  return { ...meta(id), name: id, rule, enabled: true, ...fields };
}

/** The usual "no security patch pending longer than 7 days" rule. */
export const SEVEN_DAY_SECURITY: Extract<ComplianceRule, { kind: 'max-pending-age' }> = {
  kind: 'max-pending-age',
  categories: ['security'],
  minSeverity: 'unspecified',
  maxAgeDays: 7,
};

export function project(id: string, selector: ServerSelector, fields: Partial<Project> = {}): Project {
  return { ...meta(id), name: id, selector, labels: {}, ...fields };
}
