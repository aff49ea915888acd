import { createHash } from 'node:crypto';
import type { EntityInputs, EntityKind } from '@fleetward/core';

const FINGERPRINT = `SHA256:${'A'.repeat(43)}`;
const PUBLIC_KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq8kQ5ZpBv7yq8mJkS3JmN2b5X4r4n2k0Y1pXcG0m1a test@fleetward';

/**
 * A valid input of `kind` in `tenantId`, distinct for each `n`. Conformance suites and tests use
 * these so that every store is tested with the same data.
 */
export function sampleInput<K extends EntityKind>(kind: K, tenantId: string, n = 1): EntityInputs[K] {
  const at = new Date(Date.UTC(2026, 0, 1, 0, 0, n % 60)).toISOString();
  const samples: { [P in EntityKind]: () => EntityInputs[P] } = {
    tenants: () => ({ tenantId, id: tenantId, name: `Tenant ${tenantId}` }),
    accounts: () => ({ tenantId, name: `account ${n}`, provider: 'aws', regions: ['eu-west-1'] }),
    servers: () => ({
      tenantId,
      accountId: 'acct-1',
      provider: 'ssh',
      region: n % 2 ? 'dc-1' : 'dc-2',
      name: `web-${n}`,
      address: `10.250.0.${(n % 250) + 1}`,
      labels: { env: n % 2 ? 'prod' : 'staging', tier: 'web' },
    }),
    projects: () => ({ tenantId, name: `project ${n}`, selector: { labels: { env: 'prod' } } }),
    principals: () => ({
      tenantId,
      name: `user ${n}`,
      kind: 'human',
      affiliation: n % 2 ? 'employee' : 'contractor',
    }),
    roles: () => ({ tenantId, name: `role ${n}`, rules: [{ effect: 'allow', actions: ['patch.*'] }] }),
    roleBindings: () => ({ tenantId, principalId: `p-${n}`, roleId: `r-${n}` }),
    patchPolicies: () => ({ tenantId, name: `policy ${n}`, projectId: `proj-${n}` }),
    patchPlans: () => ({
      tenantId,
      policyId: `policy-${n}`,
      projectId: `proj-${n}`,
      requestedBy: `p-${n}`,
      status: 'awaiting-approval',
      servers: [
        {
          serverId: `s-${n}`,
          scanId: `scan-${n}`,
          selected: [{ name: 'labdemo', version: '1.1-1', arch: 'all' }],
          resolved: [{ name: 'labdemo', version: '1.1-1', arch: 'all', isNew: false }],
          heldBack: [],
        },
      ],
      waves: [{ name: 'all', serverIds: [`s-${n}`] }],
      stopCondition: {
        errorBudget: { count: 0 },
        maxFailures: 0,
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
      hash: createHash('sha256').update(`plan-${n}`).digest('hex'),
    }),
    complianceStandards: () => ({
      tenantId,
      name: `no old security patches ${n}`,
      rule: { kind: 'max-pending-age', maxAgeDays: 7 },
    }),
    scanSchedules: () => ({
      tenantId,
      projectId: `proj-${n}`,
      runAs: `p-${n}`,
      intervalMinutes: 60 * 24 * 7,
    }),
    webhookEndpoints: () => ({
      tenantId,
      url: `http://127.0.0.1:9${String(n % 1000).padStart(3, '0')}/hooks`,
      secretRef: `webhooks/${n}`,
      events: ['scan.*'],
    }),
    outbox: () => ({
      tenantId,
      channel: 'webhook',
      destinationId: `hook-${n}`,
      eventType: 'scan.completed',
      payload: { n },
      deliveryId: `msg_${n}`,
      status: 'pending',
      nextAttemptAt: at,
    }),
    integrations: () => ({
      tenantId,
      kind: 'jira',
      name: `Jira ${n}`,
      config: { baseUrl: 'http://127.0.0.1:1', projectKey: 'OPS' },
    }),
    changeRequests: () => ({
      tenantId,
      projectId: `proj-${n}`,
      integrationId: `int-${n}`,
      pendingSetHash: createHash('sha256').update(`set-${n}`).digest('hex'),
      status: 'requested',
    }),
    scripts: () => {
      const body = `echo ${n}\n`;
      return {
        tenantId,
        name: `script-${n}`,
        interpreter: 'sh',
        body,
        contentHash: createHash('sha256').update(body).digest('hex'),
      };
    },
    jobs: () => ({ tenantId, kind: 'scan', status: 'pending', requestedBy: 'p-1', serverIds: [`s-${n}`] }),
    taskResults: () => ({ tenantId, jobId: 'job-1', serverId: `s-${n}`, status: 'pending' }),
    scanResults: () => ({
      tenantId,
      serverId: `s-${n}`,
      scannedAt: at,
      status: 'succeeded',
      packageManager: 'apt',
    }),
    credentials: () => ({
      tenantId,
      kind: 'ssh-key',
      publicKey: PUBLIC_KEY,
      fingerprint: FINGERPRINT,
      caretakerId: `p-${n}`,
      login: 'deploy',
    }),
    accessRequests: () => ({
      tenantId,
      requesterId: `p-${n}`,
      servers: { ids: ['s-1'] },
      login: 'deploy',
      durationMinutes: 60,
      reason: 'investigate incident on the web tier',
      ticket: `INC-${n}`,
      status: 'pending',
      requestedAt: at,
      expiresAt: at,
    }),
    accessGrants: () => ({
      tenantId,
      requestId: `req-${n}`,
      principalId: `p-${n}`,
      serverIds: ['s-1'],
      login: 'deploy',
      notBefore: at,
      notAfter: at,
      status: 'active',
    }),
  };
  return samples[kind]() as EntityInputs[K];
}

/** A field of each kind that `update` may change, with a valid new value. */
export const SAMPLE_CHANGES: { [K in EntityKind]: Partial<EntityInputs[K]> } = {
  tenants: { name: 'Renamed tenant' },
  accounts: { name: 'renamed account' },
  servers: { name: 'renamed-server' },
  projects: { name: 'renamed project' },
  principals: { name: 'renamed user' },
  roles: { name: 'renamed role' },
  roleBindings: { roleId: 'r-other' },
  patchPolicies: { name: 'renamed policy' },
  patchPlans: { status: 'superseded' },
  complianceStandards: { enabled: false },
  scanSchedules: { enabled: false },
  webhookEndpoints: { disabled: true },
  outbox: { status: 'delivered' },
  integrations: { name: 'renamed integration' },
  changeRequests: { status: 'opened' },
  scripts: { name: 'renamed-script' },
  jobs: { status: 'running' },
  taskResults: { status: 'running' },
  scanResults: { status: 'failed' },
  credentials: { login: 'ops' },
  accessRequests: { status: 'approved' },
  accessGrants: { status: 'revoked' },
};
