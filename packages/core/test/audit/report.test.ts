import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeIfAvailable } from '@fleetward/testkit';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { generateEd25519KeyPair } from '../../src/access/keygen.js';
import {
  type AccessAuditInput,
  type AccessAuditReport,
  buildAccessAuditReport,
  buildAccessAuditReportAsync,
} from '../../src/audit/report.js';
import {
  ACCESS_AUDIT_CSV_TABLES,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
} from '../../src/audit/report-render.js';
import {
  AccessGrantSchema,
  AccessRequestSchema,
  type AuditRecord,
  AuditRecordSchema,
  CredentialSchema,
  KeyInventorySchema,
  KeyRotationPolicySchema,
  PrincipalSchema,
  ProjectSchema,
  RoleBindingSchema,
  RoleSchema,
  ServerSchema,
} from '../../src/domain/index.js';
import { ValidationError } from '../../src/errors.js';

const T = 'acme';
const NOW = new Date('2026-05-01T00:00:00.000Z');
const SINCE = new Date('2026-04-01T00:00:00.000Z');
const FORMULA = "=cmd|' /C calc'!A0";
const SCRIPT = '<script>window.__pwned="script"</script>';
const IMG = '"><img src=x onerror="window.__pwned=\'img\'">';

const meta = (id: string, createdAt = '2026-01-01T00:00:00.000Z') => ({
  tenantId: T,
  id,
  version: 1,
  createdAt,
  updatedAt: createdAt,
});

// Real Ed25519 keys, so every fingerprint is one ssh-keygen would print for a real key.
const key = (comment: string) => generateEd25519KeyPair(comment);
const K = {
  deploy: key('alice deploy'),
  deployOld: key('alice deploy (before rotation)'),
  ci: key('ci'),
  backup: key('carol backup'),
  bob: key('bob@laptop'),
  mallory: key('unknown'),
  stale: key('stale'),
  google: key('google-ssh'),
  forged: key('forged'),
};

const principals = [
  PrincipalSchema.parse({ ...meta('alice'), name: 'Alice Ops', kind: 'human', affiliation: 'employee' }),
  PrincipalSchema.parse({ ...meta('bob'), name: 'Bob Contractor', kind: 'human', affiliation: 'contractor' }),
  PrincipalSchema.parse({
    ...meta('carol'),
    name: 'Carol Leaver',
    kind: 'human',
    affiliation: 'employee',
    disabled: true,
  }),
  PrincipalSchema.parse({ ...meta('dave'), name: 'Dave Auditor', kind: 'human', affiliation: 'employee' }),
  PrincipalSchema.parse({ ...meta('svc-ci'), name: 'CI pipeline', kind: 'service', affiliation: 'employee' }),
];

const servers = [
  ServerSchema.parse({
    ...meta('web-1'),
    accountId: 'aws-prod',
    provider: 'aws',
    name: 'web-1',
    labels: { env: 'prod', tier: 'web' },
  }),
  ServerSchema.parse({
    ...meta('web-2'),
    accountId: 'aws-prod',
    provider: 'aws',
    name: 'web-2',
    labels: { env: 'prod', tier: 'web' },
  }),
  ServerSchema.parse({
    ...meta('db-1'),
    accountId: 'dc-1',
    provider: 'ssh',
    name: 'db-1',
    labels: { env: 'prod', tier: 'db' },
  }),
];

const projects = [
  ProjectSchema.parse({ ...meta('web'), name: 'Web tier', selector: { labels: { tier: 'web' } } }),
  ProjectSchema.parse({ ...meta('db'), name: 'Databases', selector: { labels: { tier: 'db' } } }),
];

const roles = [
  RoleSchema.parse({
    ...meta('role-ops'),
    name: 'Operators',
    rules: [
      {
        effect: 'allow',
        actions: ['patch.*', 'script.*', 'keys.*', 'inventory.read'],
        servers: { labels: { env: 'prod' } },
      },
    ],
  }),
  RoleSchema.parse({
    ...meta('role-requester'),
    name: 'Access requester',
    rules: [{ effect: 'allow', actions: ['access.request'], servers: { all: true } }],
  }),
  RoleSchema.parse({
    ...meta('role-auditor'),
    name: 'Auditor',
    rules: [{ effect: 'allow', actions: ['audit.read'] }],
  }),
  RoleSchema.parse({
    ...meta('role-ci'),
    name: 'CI',
    rules: [{ effect: 'allow', actions: ['script.run'], servers: { labels: { tier: 'web' } } }],
  }),
];

const bindings = [
  // Alice operates the web tier only: the Operators role reaches db-1 through no binding of hers.
  RoleBindingSchema.parse({
    ...meta('b-alice'),
    principalId: 'alice',
    roleId: 'role-ops',
    projectIds: ['web'],
  }),
  RoleBindingSchema.parse({ ...meta('b-bob'), principalId: 'bob', roleId: 'role-requester' }),
  RoleBindingSchema.parse({
    ...meta('b-carol'),
    principalId: 'carol',
    roleId: 'role-ops',
    projectIds: ['db'],
  }),
  RoleBindingSchema.parse({ ...meta('b-dave'), principalId: 'dave', roleId: 'role-auditor' }),
  RoleBindingSchema.parse({ ...meta('b-ci'), principalId: 'svc-ci', roleId: 'role-ci' }),
];

const credentials = [
  CredentialSchema.parse({
    ...meta('cred-deploy', '2025-10-01T00:00:00.000Z'),
    kind: 'ssh-key',
    publicKey: K.deploy.publicKey,
    fingerprint: K.deploy.fingerprint,
    previousFingerprint: K.deployOld.fingerprint,
    caretakerId: 'alice',
    login: 'deploy',
    serverIds: ['db-1', 'web-1'],
    rotatedAt: '2026-01-10T00:00:00.000Z',
  }),
  CredentialSchema.parse({
    ...meta('cred-ci', '2026-04-20T00:00:00.000Z'),
    kind: 'ssh-key',
    publicKey: K.ci.publicKey,
    fingerprint: K.ci.fingerprint,
    caretakerId: 'svc-ci',
    login: 'ci',
    serverIds: ['web-2'],
  }),
  CredentialSchema.parse({
    ...meta('cred-backup', '2026-02-01T00:00:00.000Z'),
    kind: 'ssh-key',
    publicKey: K.backup.publicKey,
    fingerprint: K.backup.fingerprint,
    caretakerId: 'carol',
    login: 'backup',
    serverIds: ['db-1'],
  }),
];

const rotationPolicies = [
  KeyRotationPolicySchema.parse({ ...meta('rotation-web'), projectId: 'web', intervalHours: 90 * 24 }),
  KeyRotationPolicySchema.parse({
    ...meta('rotation-db'),
    projectId: 'db',
    intervalHours: 30 * 24,
    enabled: false,
  }),
];

const request = (id: string, serverIds: string[], grantId: string) =>
  AccessRequestSchema.parse({
    ...meta(id, '2026-04-09T00:00:00.000Z'),
    requesterId: 'bob',
    mode: 'ssh-key',
    servers: { ids: serverIds },
    serverIds,
    login: 'bob',
    publicKey: K.bob.publicKey,
    fingerprint: K.bob.fingerprint,
    durationMinutes: 240,
    reason: 'Investigate the replication lag on the database',
    ticket: 'INC-4711',
    status: 'ended',
    requiredApprovals: 1,
    approvals: [{ principalId: 'alice', at: '2026-04-10T09:00:00.000Z' }],
    requestedAt: '2026-04-09T00:00:00.000Z',
    expiresAt: '2026-04-10T00:00:00.000Z',
    grantId,
  });
const requests = [request('req-1', ['db-1'], 'g-bob-1'), request('req-2', ['web-2'], 'g-bob-2')];

const grants = [
  AccessGrantSchema.parse({
    ...meta('g-bob-1', '2026-04-10T09:00:00.000Z'),
    requestId: 'req-1',
    principalId: 'bob',
    mode: 'ssh-key',
    login: 'bob',
    fingerprint: K.bob.fingerprint,
    reason: 'Investigate the replication lag on the database',
    ticket: 'INC-4711',
    approverIds: ['alice'],
    notBefore: '2026-04-10T09:00:00.000Z',
    notAfter: '2026-04-10T13:00:00.000Z',
    status: 'expired',
    targets: [
      {
        serverId: 'db-1',
        state: 'remove-failed',
        expiryTime: '20260410130000Z',
        installedAt: '2026-04-10T09:00:05.000Z',
        error: { code: 'TRANSPORT_FAILED', message: 'db-1 unreachable' },
      },
    ],
  }),
  AccessGrantSchema.parse({
    ...meta('g-bob-2', '2026-04-30T20:00:00.000Z'),
    requestId: 'req-2',
    principalId: 'bob',
    mode: 'ssh-key',
    login: 'bob',
    fingerprint: K.bob.fingerprint,
    reason: 'Deploy hotfix with the web team',
    ticket: 'CHG-1200',
    approverIds: ['alice'],
    notBefore: '2026-04-30T20:00:00.000Z',
    notAfter: '2026-05-01T04:00:00.000Z',
    status: 'active',
    targets: [
      {
        serverId: 'web-2',
        state: 'installed',
        expiryTime: '20260501040000Z',
        installedAt: '2026-04-30T20:00:04.000Z',
      },
    ],
  }),
];

type Observed = {
  login: string;
  pair: { fingerprint: string };
  comment?: string;
  logins?: number;
  lastUsedAt?: string;
  credentialId?: string;
  grantId?: string;
  cloudAgent?: boolean;
  expiryTime?: string;
};
const observed = (o: Observed) => ({
  login: o.login,
  fingerprint: o.pair.fingerprint,
  keyType: 'ssh-ed25519',
  comment: o.comment ?? '',
  options: o.expiryTime ? ['expiry-time', 'restrict', 'pty'] : [],
  ...(o.expiryTime ? { expiryTime: o.expiryTime } : {}),
  ...(o.credentialId ? { credentialId: o.credentialId } : {}),
  ...(o.grantId ? { grantId: o.grantId } : {}),
  cloudAgent: o.cloudAgent ?? false,
  logins: o.logins ?? 0,
  ...(o.lastUsedAt ? { lastUsedAt: o.lastUsedAt } : {}),
});
const login = (
  login: string,
  pair: { fingerprint: string } | undefined,
  at?: string,
  from = '192.0.2.10',
) => ({
  login,
  ...(at ? { at } : {}),
  from,
  ...(pair ? { fingerprint: pair.fingerprint } : {}),
  method: pair ? 'publickey' : 'password',
});

const inventories = [
  // An older inventory of web-1 that the newest one replaces.
  KeyInventorySchema.parse({
    ...meta('inv-web-1-old', '2026-03-01T00:00:00.000Z'),
    serverId: 'web-1',
    scannedAt: '2026-03-01T00:00:00.000Z',
    status: 'succeeded',
    keys: [observed({ login: 'root', pair: K.stale })],
  }),
  KeyInventorySchema.parse({
    ...meta('inv-web-1', '2026-04-30T23:00:00.000Z'),
    serverId: 'web-1',
    scannedAt: '2026-04-30T23:00:00.000Z',
    status: 'succeeded',
    sshdVersion: 'OpenSSH_9.2p1',
    logSource: 'journalctl -u ssh',
    keys: [
      observed({
        login: 'deploy',
        pair: K.deploy,
        credentialId: 'cred-deploy',
        logins: 2,
        lastUsedAt: '2026-04-25T08:00:00.000Z',
      }),
      observed({ login: 'deploy', pair: K.deployOld, comment: 'alice deploy (before rotation)' }),
      observed({
        login: 'root',
        pair: K.mallory,
        comment: FORMULA,
        logins: 1,
        lastUsedAt: '2026-04-20T03:00:00.000Z',
      }),
    ],
    logins: [
      login('deploy', K.deploy, '2026-04-25T08:00:00.000Z'),
      login('root', K.mallory, '2026-04-20T03:00:00.000Z', '203.0.113.9'),
      login('admin', undefined, '2026-04-18T12:00:00.000Z', '198.51.100.7'),
      // Before the period: counted by the key, not by the period's access rows.
      login('deploy', K.deploy, '2026-01-15T08:00:00.000Z'),
    ],
  }),
  KeyInventorySchema.parse({
    ...meta('inv-web-2', '2026-04-30T23:00:00.000Z'),
    serverId: 'web-2',
    scannedAt: '2026-04-30T23:00:00.000Z',
    status: 'succeeded',
    logSource: '/var/log/auth.log',
    keys: [
      observed({
        login: 'bob',
        pair: K.bob,
        comment: 'fleetward-jit bob fleetward:grant=g-bob-2',
        grantId: 'g-bob-2',
        expiryTime: '20260501040000Z',
        logins: 1,
        lastUsedAt: '2026-04-30T21:00:00.000Z',
      }),
      observed({ login: 'ci', pair: K.ci, comment: 'ci', credentialId: 'cred-ci' }),
      observed({ login: 'deploy', pair: K.stale, comment: SCRIPT }),
      observed({
        login: 'root',
        pair: K.google,
        comment: 'google-ssh {"userName":"ops@example.com"}',
        cloudAgent: true,
      }),
    ],
    logins: [login('bob', K.bob, '2026-04-30T21:00:00.000Z')],
  }),
  KeyInventorySchema.parse({
    ...meta('inv-db-1', '2026-04-30T23:00:00.000Z'),
    serverId: 'db-1',
    scannedAt: '2026-04-30T23:00:00.000Z',
    status: 'succeeded',
    logSource: 'sshd -E /var/log/sshd.log',
    keys: [
      observed({ login: 'deploy', pair: K.deploy, logins: 1, lastUsedAt: '2026-04-26T08:00:00.000Z' }),
      observed({
        login: 'bob',
        pair: K.bob,
        comment: 'fleetward-jit bob fleetward:grant=g-bob-1',
        grantId: 'g-bob-1',
        expiryTime: '20260410130000Z',
        logins: 2,
        lastUsedAt: '2026-04-12T08:00:00.000Z',
      }),
      observed({ login: 'backup', pair: K.backup, credentialId: 'cred-backup', logins: 1 }),
      // Someone typed a grant marker on their own key to pass it off as a just-in-time grant.
      observed({ login: 'root', pair: K.forged, comment: 'ops fleetward:grant=g-bob-2', grantId: 'g-bob-2' }),
    ],
    logins: [
      login('deploy', K.deploy, '2026-04-26T08:00:00.000Z'),
      login('bob', K.bob, '2026-04-12T08:00:00.000Z'),
      login('bob', K.bob, '2026-04-10T10:00:00.000Z'),
      // A log without timestamps (sshd -E without a time prefix): the window cannot be checked.
      login('backup', K.backup),
    ],
  }),
];

let seq = 0;
type RecordFields = {
  actor: string;
  kind?: 'human' | 'service' | 'system';
  action: string;
  target?: { type: string; id: string };
  decision?: 'allow' | 'deny';
  result?: AuditRecord['result'];
  reason?: string;
  rule?: { roleId: string; bindingId: string; ruleIndex: number };
  details?: Record<string, unknown>;
};
function rec(at: string, f: RecordFields): AuditRecord {
  seq++;
  const decision = f.decision ?? 'allow';
  return AuditRecordSchema.parse({
    tenantId: T,
    seq,
    id: `rec-${seq}`,
    at,
    prevHash: createHash('sha256')
      .update(String(seq - 1))
      .digest('hex'),
    hash: createHash('sha256').update(String(seq)).digest('hex'),
    actor: { principalId: f.actor, kind: f.kind ?? 'human' },
    action: f.action,
    ...(f.target ? { target: f.target } : {}),
    decision,
    ...(f.rule ? { rule: f.rule } : {}),
    result: f.result ?? (decision === 'deny' ? 'denied' : 'success'),
    ...(f.reason ? { reason: f.reason } : {}),
    details: f.details ?? {},
  });
}

const H1 = 'a'.repeat(64);
const H2 = 'b'.repeat(64);
const H3 = 'c'.repeat(64);
const OPS = { roleId: 'role-ops', bindingId: 'b-alice', ruleIndex: 0 };

/** The records a script run leaves: planned, started, one per server, finished (as sop/run.ts writes them). */
function scriptRun(
  at: string,
  actor: string,
  kind: 'human' | 'service',
  runId: string,
  script: string,
  contentHash: string,
  results: Record<string, 'success' | 'failure'>,
): AuditRecord[] {
  const base = { runId, script, revision: 1, contentHash };
  const failed = Object.values(results).includes('failure');
  return [
    rec(at, {
      actor,
      kind,
      action: 'script.run',
      target: { type: 'script-run', id: runId },
      details: { phase: 'planned', ...base, servers: Object.keys(results).length },
    }),
    rec(at, {
      actor,
      kind,
      action: 'script.run',
      target: { type: 'script-run', id: runId },
      result: 'started',
      details: base,
    }),
    ...Object.entries(results).map(([serverId, result]) =>
      rec(at, {
        actor,
        kind,
        action: 'script.run',
        target: { type: 'server', id: serverId },
        result,
        details: {
          ...base,
          status: result === 'success' ? 'succeeded' : 'failed',
          exitCode: result === 'success' ? 0 : 1,
        },
      }),
    ),
    rec(at, {
      actor,
      kind,
      action: 'script.run',
      target: { type: 'script-run', id: runId },
      result: failed ? 'failure' : 'success',
      details: { ...base, status: failed ? 'stopped' : 'succeeded' },
    }),
  ];
}

function records(): AuditRecord[] {
  return [
    // Before the period: never counted.
    rec('2026-03-01T00:00:00.000Z', {
      actor: 'alice',
      action: 'patch.execute',
      target: { type: 'patch-plan', id: 'p0' },
    }),
    ...scriptRun('2026-04-05T10:00:00.000Z', 'alice', 'human', 'run-1', 'rotate-logs', H1, {
      'web-1': 'success',
      'web-2': 'failure',
    }),
    ...scriptRun('2026-04-20T10:00:00.000Z', 'alice', 'human', 'run-2', 'rotate-logs', H2, {
      'web-1': 'success',
    }),
    ...scriptRun('2026-04-21T10:00:00.000Z', 'svc-ci', 'service', 'run-3', 'deploy-app', H3, {
      'web-1': 'success',
      'web-2': 'success',
    }),
    rec('2026-04-22T10:00:00.000Z', {
      actor: 'bob',
      action: 'script.run',
      target: { type: 'script-run', id: 'run-4' },
      decision: 'deny',
      reason: 'no role allows it (deny by default)',
      details: {
        denied: [
          { resource: { type: 'script', id: 'rotate-logs' }, reason: 'no role allows it (deny by default)' },
        ],
      },
    }),
    rec('2026-04-09T00:00:00.000Z', {
      actor: 'bob',
      action: 'access.request',
      target: { type: 'access-request', id: 'req-1' },
    }),
    rec('2026-04-10T09:00:00.000Z', {
      actor: 'alice',
      action: 'access.approve',
      target: { type: 'access-request', id: 'req-1' },
      details: { requesterId: 'bob', grantId: 'g-bob-1' },
    }),
    rec('2026-04-10T09:00:05.000Z', {
      actor: 'system',
      kind: 'system',
      action: 'access.grant.install',
      target: { type: 'server', id: 'db-1' },
      details: { grantId: 'g-bob-1', principalId: 'bob', login: 'bob', fingerprint: K.bob.fingerprint },
    }),
    rec('2026-04-10T13:00:00.000Z', {
      actor: 'system',
      kind: 'system',
      action: 'access.expire',
      target: { type: 'access-grant', id: 'g-bob-1' },
    }),
    rec('2026-04-10T13:00:01.000Z', {
      actor: 'system',
      kind: 'system',
      action: 'access.grant.remove',
      target: { type: 'server', id: 'db-1' },
      result: 'failure',
      reason: 'db-1 unreachable',
      details: { grantId: 'g-bob-1', code: 'TRANSPORT_FAILED' },
    }),
    rec('2026-04-30T19:00:00.000Z', {
      actor: 'bob',
      action: 'access.request',
      target: { type: 'access-request', id: 'req-2' },
    }),
    rec('2026-04-30T20:00:00.000Z', {
      actor: 'alice',
      action: 'access.approve',
      target: { type: 'access-request', id: 'req-2' },
      details: { requesterId: 'bob', grantId: 'g-bob-2' },
    }),
    // A rotation of alice's key that failed its login check and was rolled back.
    rec('2026-04-15T02:00:00.000Z', {
      actor: 'alice',
      action: 'keys.rotate',
      target: { type: 'credential', id: 'cred-deploy' },
      result: 'started',
      details: { step: 'started', credentialId: 'cred-deploy' },
    }),
    rec('2026-04-15T02:00:01.000Z', {
      actor: 'alice',
      action: 'keys.rotate',
      target: { type: 'server', id: 'web-1' },
      rule: OPS,
      details: { step: 'added', credentialId: 'cred-deploy' },
    }),
    rec('2026-04-15T02:00:02.000Z', {
      actor: 'alice',
      action: 'keys.rotate',
      target: { type: 'credential', id: 'cred-deploy' },
      result: 'failure',
      reason: 'the new key could not log in to web-1',
      details: { step: 'rolled-back', credentialId: 'cred-deploy' },
    }),
    ...[1, 2, 3].map((i) =>
      rec(`2026-04-2${i}T09:00:00.000Z`, {
        actor: 'dave',
        action: 'audit.read',
        target: { type: 'audit', id: '*' },
      }),
    ),
    rec('2026-04-23T10:00:00.000Z', {
      actor: 'bob',
      action: 'keys.read',
      target: { type: 'key-inventory', id: 'web-1' },
      decision: 'deny',
      reason: 'first refusal',
      details: { denied: [{ resource: { type: 'server', id: 'web-1' }, reason: 'no role allows it' }] },
    }),
    rec('2026-04-24T10:00:00.000Z', {
      actor: 'bob',
      action: 'keys.read',
      target: { type: 'key-inventory', id: 'web-1' },
      decision: 'deny',
      reason: `no role allows it ${IMG}`,
      details: { denied: [{ resource: { type: 'server', id: 'web-1' }, reason: 'no role allows it' }] },
    }),
    // An integration's own action that names the command it ran.
    rec('2026-04-26T10:00:00.000Z', {
      actor: 'alice',
      action: 'exec.command',
      target: { type: 'server', id: 'web-1' },
      details: { command: FORMULA },
    }),
    rec('2026-04-27T10:00:00.000Z', {
      actor: 'alice',
      action: 'exec.command',
      target: { type: 'server', id: 'web-1' },
      details: { argv: ['systemctl', 'restart', 'nginx'] },
    }),
    rec('2026-04-28T10:00:00.000Z', {
      actor: 'alice',
      action: 'exec.command',
      target: { type: 'server', id: 'web-1' },
      details: { argv: ['systemctl', 'restart', 'nginx'] },
    }),
  ];
}

function input(overrides: Partial<AccessAuditInput> = {}): AccessAuditInput {
  return {
    tenantId: T,
    tenantName: 'Acme Corp',
    now: NOW,
    since: SINCE,
    records: records(),
    principals,
    servers,
    credentials,
    grants,
    requests,
    inventories,
    rotationPolicies,
    projects,
    roles,
    bindings,
    ...overrides,
  };
}

const report = buildAccessAuditReport(input());

function accessRow(r: AccessAuditReport, match: Partial<AccessAuditReport['access'][number]>) {
  const rows = r.access.filter((row) =>
    Object.entries(match).every(([k, v]) => (row as unknown as Record<string, unknown>)[k] === v),
  );
  expect(rows, JSON.stringify(match)).toHaveLength(1);
  return rows[0]!;
}
function keyRow(serverId: string, login: string, fingerprint: string) {
  const rows = report.keys.filter(
    (k) => k.serverId === serverId && k.login === login && k.fingerprint === fingerprint,
  );
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

describe('buildAccessAuditReport — most common actions, scripts and commands', () => {
  it('buildAccessAuditReport — counts actions in the period only, most frequent first, with denials and failures', () => {
    expect(report.period).toEqual({
      since: SINCE.toISOString(),
      until: NOW.toISOString(),
      records: records().length - 1,
      firstRecordAt: '2026-04-05T10:00:00.000Z',
      lastRecordAt: '2026-04-30T20:00:00.000Z',
    });
    expect(report.topActions[0]).toEqual({
      action: 'script.run',
      count: 15,
      denied: 1,
      failed: 2,
      principals: 3,
    });
    const byName = new Map(report.topActions.map((a) => [a.action, a]));
    expect(byName.get('patch.execute')).toBeUndefined();
    expect(byName.get('keys.read')).toEqual({
      action: 'keys.read',
      count: 2,
      denied: 2,
      failed: 0,
      principals: 1,
    });
    expect(byName.get('access.grant.remove')).toMatchObject({ count: 1, failed: 1 });
    expect(byName.get('audit.read')).toMatchObject({ count: 3, principals: 1 });
    const counts = report.topActions.map((a) => a.count);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
    expect(report.totals).toMatchObject({
      records: records().length - 1,
      denied: 3,
      failed: 4,
      principalsActive: 4,
    });
  });

  it('buildAccessAuditReport — ranks scripts by runs, separating run failures, server failures, denials and versions', () => {
    expect(report.topScripts).toEqual([
      {
        script: 'rotate-logs',
        contentHash: H2,
        contentHashes: [H1, H2],
        runs: 2,
        failedRuns: 1,
        serverRuns: 3,
        serverFailures: 1,
        denied: 1,
        principalIds: ['alice'],
        lastRunAt: '2026-04-20T10:00:00.000Z',
      },
      {
        script: 'deploy-app',
        contentHash: H3,
        contentHashes: [H3],
        runs: 1,
        failedRuns: 0,
        serverRuns: 2,
        serverFailures: 0,
        denied: 0,
        principalIds: ['svc-ci'],
        lastRunAt: '2026-04-21T10:00:00.000Z',
      },
    ]);
    expect(report.totals.scriptRuns).toBe(3);
  });

  it('buildAccessAuditReport — takes commands from details.command and details.argv, most frequent first', () => {
    expect(report.topCommands).toEqual([
      { command: 'systemctl restart nginx', count: 2, principals: 1, lastAt: '2026-04-28T10:00:00.000Z' },
      { command: FORMULA, count: 1, principals: 1, lastAt: '2026-04-26T10:00:00.000Z' },
    ]);
    const quiet = buildAccessAuditReport(
      input({ records: records().filter((r) => r.action !== 'exec.command') }),
    );
    expect(quiet.topCommands).toEqual([]);
    expect(quiet.notes.some((n) => n.startsWith('No audit record in the period names a command'))).toBe(true);
    expect(report.notes.some((n) => n.startsWith('No audit record in the period names a command'))).toBe(
      false,
    );
  });

  it('buildAccessAuditReport — groups denials by principal and action with the latest reason and the servers aimed at', () => {
    expect(report.denials).toEqual([
      {
        principalId: 'bob',
        name: 'Bob Contractor',
        affiliation: 'contractor',
        action: 'keys.read',
        count: 2,
        firstAt: '2026-04-23T10:00:00.000Z',
        lastAt: '2026-04-24T10:00:00.000Z',
        lastReason: `no role allows it ${IMG}`,
        serverIds: ['web-1'],
      },
      {
        principalId: 'bob',
        name: 'Bob Contractor',
        affiliation: 'contractor',
        action: 'script.run',
        count: 1,
        firstAt: '2026-04-22T10:00:00.000Z',
        lastAt: '2026-04-22T10:00:00.000Z',
        lastReason: 'no role allows it (deny by default)',
        serverIds: [],
      },
    ]);
  });
});

describe('buildAccessAuditReport — who accessed which servers, and did it match their roles', () => {
  it("buildAccessAuditReport — a managed key's login matches when the caretaker's roles reach the server", () => {
    const web = accessRow(report, { via: 'managed-key', serverId: 'web-1' });
    expect(web).toMatchObject({
      principalId: 'alice',
      name: 'Alice Ops',
      affiliation: 'employee',
      credentialId: 'cred-deploy',
      fingerprints: [K.deploy.fingerprint],
      remoteUsers: ['deploy'],
      loginsSeen: 1,
      matchedRole: true,
      lastAt: '2026-04-25T08:00:00.000Z',
    });
    expect(web.explanation).toContain('allowed by role Operators rule 0');

    const db = accessRow(report, { via: 'managed-key', serverId: 'db-1', principalId: 'alice' });
    expect(db.matchedRole).toBe(false);
    expect(db.explanation).toContain('no role of caretaker Alice Ops (alice) allows any action on db-1');
  });

  it('buildAccessAuditReport — being allowed to request access does not make a standing key match', () => {
    const standing = CredentialSchema.parse({
      ...meta('cred-bob', '2026-04-01T00:00:00.000Z'),
      kind: 'ssh-key',
      publicKey: K.stale.publicKey,
      fingerprint: K.stale.fingerprint,
      caretakerId: 'bob',
      login: 'deploy',
      serverIds: ['web-2'],
    });
    const web2 = inventories.find((i) => i.id === 'inv-web-2')!;
    const withLogin = {
      ...web2,
      logins: [...web2.logins, login('deploy', K.stale, '2026-04-29T10:00:00.000Z')],
    };
    const r = buildAccessAuditReport(
      input({
        credentials: [...credentials, standing],
        inventories: inventories.map((i) => (i.id === 'inv-web-2' ? withLogin : i)),
      }),
    );
    const row = accessRow(r, { via: 'managed-key', principalId: 'bob' });
    expect(row.matchedRole).toBe(false);
    expect(row.explanation).toContain('no role of caretaker Bob Contractor (bob) allows any action on web-2');
    const key = r.keys.find((k) => k.credentialId === 'cred-bob')!;
    expect(key).toMatchObject({ kind: 'managed', needed: 'review', owner: { relation: 'caretaker' } });
  });

  it('buildAccessAuditReport — a grant login matches only inside its window; outside it does not', () => {
    const inside = accessRow(report, { via: 'grant', serverId: 'db-1', matchedRole: true });
    expect(inside).toMatchObject({
      principalId: 'bob',
      affiliation: 'contractor',
      grantIds: ['g-bob-1'],
      loginsSeen: 1,
    });
    expect(inside.explanation).toContain('Inside the window of grant g-bob-1 (ticket INC-4711');

    const outside = accessRow(report, { via: 'grant', serverId: 'db-1', matchedRole: false });
    expect(outside).toMatchObject({
      principalId: 'bob',
      grantIds: ['g-bob-1'],
      lastAt: '2026-04-12T08:00:00.000Z',
    });
    expect(outside.explanation).toContain('outside its window');

    expect(accessRow(report, { via: 'grant', serverId: 'web-2' })).toMatchObject({
      grantIds: ['g-bob-2'],
      matchedRole: true,
    });
  });

  it('buildAccessAuditReport — an unknown key and a password login are never matched to anyone', () => {
    const unknown = accessRow(report, { via: 'unknown-key', serverId: 'web-1' });
    expect(unknown.principalId).toBeUndefined();
    expect(unknown).toMatchObject({
      matchedRole: false,
      remoteUsers: ['root'],
      fingerprints: [K.mallory.fingerprint],
    });
    expect(unknown.explanation).toMatch(/^Unknown key — not matched: an unmanaged key/);

    const password = accessRow(report, { via: 'unattributed', serverId: 'web-1' });
    expect(password).toMatchObject({ matchedRole: false, remoteUsers: ['admin'], loginsSeen: 1 });
  });

  it("buildAccessAuditReport — a disabled caretaker's key login does not match, and untimed log lines are flagged", () => {
    const carol = accessRow(report, { via: 'managed-key', principalId: 'carol' });
    expect(carol).toMatchObject({ disabled: true, matchedRole: false, untimedLogins: 1, loginsSeen: 1 });
    expect(carol.explanation).toContain('who is disabled');
    expect(report.notes.some((n) => n.startsWith('1 login(s) come from log lines without a timestamp'))).toBe(
      true,
    );
  });

  it("buildAccessAuditReport — Fleetward's own actions on servers count as access via role, the system's do not", () => {
    const alice = accessRow(report, { via: 'role', principalId: 'alice', serverId: 'web-1' });
    // run-1, run-2, the rotation step and three commands.
    expect(alice).toMatchObject({
      actions: 6,
      matchedRole: true,
      loginsSeen: 0,
      firstAt: '2026-04-05T10:00:00.000Z',
    });
    expect(alice.lastAt).toBe('2026-04-28T10:00:00.000Z');
    expect(alice.explanation).toContain('by role Operators');
    expect(accessRow(report, { via: 'role', principalId: 'svc-ci', serverId: 'web-2' }).actions).toBe(1);
    expect(report.access.some((r) => r.principalId === 'system')).toBe(false);
  });

  it('buildAccessAuditReport — lists unmatched access first and ignores logins before the period', () => {
    const flags = report.access.map((r) => r.matchedRole);
    expect(flags).toEqual([...flags].sort((a, b) => Number(a) - Number(b)));
    expect(report.access.some((r) => r.firstAt?.startsWith('2026-01'))).toBe(false);
    // Unknown key 1 + password 1 + alice on db-1 1 + grant outside window 1 + carol 1.
    expect(report.totals.unmatchedAccess).toBe(5);
  });
});

describe('buildAccessAuditReport — keys on servers and whether they are needed', () => {
  it('buildAccessAuditReport — classifies every key of the newest inventories', () => {
    expect(report.totals.keysByKind).toEqual({
      'user-ca': 0,
      managed: 5,
      granted: 2,
      'cloud-agent': 1,
      unmanaged: 3,
    });
    expect(
      report.keys.some(
        (k) => k.serverId === 'web-1' && k.login === 'root' && k.fingerprint === K.stale.fingerprint,
      ),
    ).toBe(false);
  });

  it('buildAccessAuditReport — keys of ended grants, disabled caretakers and pre-rotation keys are not needed', () => {
    const ended = keyRow('db-1', 'bob', K.bob.fingerprint);
    expect(ended).toMatchObject({ kind: 'granted', grantId: 'g-bob-1', needed: 'no' });
    expect(ended.owner).toMatchObject({ principalId: 'bob', relation: 'grantee' });
    expect(ended.why).toContain('ended 2026-04-10 13:00 UTC');
    expect(ended.why).toContain('Removal failed: db-1 unreachable');

    const carol = keyRow('db-1', 'backup', K.backup.fingerprint);
    expect(carol).toMatchObject({ kind: 'managed', credentialId: 'cred-backup', needed: 'no' });
    expect(carol.why).toContain('Carol Leaver (carol) is disabled');

    const old = keyRow('web-1', 'deploy', K.deployOld.fingerprint);
    expect(old).toMatchObject({ kind: 'managed', credentialId: 'cred-deploy', needed: 'no' });
    expect(old.why).toContain('before its rotation');
  });

  it('buildAccessAuditReport — managed and granted keys in use are needed; unused or out-of-role ones go to review', () => {
    expect(keyRow('web-1', 'deploy', K.deploy.fingerprint)).toMatchObject({ kind: 'managed', needed: 'yes' });
    expect(keyRow('web-2', 'bob', K.bob.fingerprint)).toMatchObject({ kind: 'granted', needed: 'yes' });
    const ci = keyRow('web-2', 'ci', K.ci.fingerprint);
    expect(ci).toMatchObject({ needed: 'review' });
    expect(ci.why).toContain('no login with it in the log read');
    const db = keyRow('db-1', 'deploy', K.deploy.fingerprint);
    expect(db).toMatchObject({ needed: 'review' });
    expect(db.why).toContain("caretaker's roles allow no action on db-1");
  });

  it('buildAccessAuditReport — unmanaged and cloud-agent keys always need review, and a forged marker is called out', () => {
    const mallory = keyRow('web-1', 'root', K.mallory.fingerprint);
    expect(mallory).toMatchObject({ kind: 'unmanaged', needed: 'review', comment: FORMULA });
    expect(mallory.why).toMatch(/^In use \(1 login\(s\)/);
    const stale = keyRow('web-2', 'deploy', K.stale.fingerprint);
    expect(stale).toMatchObject({ kind: 'unmanaged', needed: 'review' });
    expect(stale.why).toContain('Nobody is responsible for it');
    expect(keyRow('web-2', 'root', K.google.fingerprint)).toMatchObject({
      kind: 'cloud-agent',
      needed: 'review',
    });
    const forged = keyRow('db-1', 'root', K.forged.fingerprint);
    expect(forged).toMatchObject({ kind: 'unmanaged', needed: 'review' });
    expect(forged.grantId).toBeUndefined();
    expect(forged.why).toContain('names grant g-bob-2, but that grant is for key');
    expect(forged.why).toContain('stale or forged');
  });

  it('buildAccessAuditReport — an unmanaged key that a disabled principal used for a request is not needed', () => {
    const leaver = PrincipalSchema.parse({ ...principals[1]!, disabled: true });
    const inv = KeyInventorySchema.parse({
      ...meta('inv-web-2b', '2026-04-30T23:30:00.000Z'),
      serverId: 'web-2',
      scannedAt: '2026-04-30T23:30:00.000Z',
      status: 'succeeded',
      keys: [observed({ login: 'root', pair: K.bob, comment: 'bob@laptop' })],
    });
    const r = buildAccessAuditReport(
      input({
        principals: principals.map((p) => (p.id === 'bob' ? leaver : p)),
        inventories: [...inventories, inv],
      }),
    );
    const row = r.keys.find((k) => k.serverId === 'web-2')!;
    expect(row).toMatchObject({
      kind: 'unmanaged',
      needed: 'no',
      owner: { principalId: 'bob', relation: 'requester' },
    });
    expect(row.why).toContain('who is disabled (known from access request req-1)');
  });

  it('buildAccessAuditReport — orders keys to remove first, then to review, then needed', () => {
    const order = { no: 0, review: 1, yes: 2 };
    const ranks = report.keys.map((k) => order[k.needed]);
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    expect(report.totals.keysNeeded).toEqual({ no: 3, review: 6, yes: 2 });
  });
});

describe('buildAccessAuditReport — last rotation and overdue keys', () => {
  it('buildAccessAuditReport — computes age, policy due date and overdue from the strictest enabled policy', () => {
    const [first, ...rest] = report.rotation;
    expect(first).toMatchObject({
      credentialId: 'cred-deploy',
      caretaker: { principalId: 'alice', name: 'Alice Ops', disabled: false, known: true },
      lastRotatedAt: '2026-01-10T00:00:00.000Z',
      ageDays: 111,
      policyProjectId: 'web',
      policyIntervalHours: 2160,
      dueAt: '2026-04-10T00:00:00.000Z',
      overdue: true,
      lastAttempt: {
        at: '2026-04-15T02:00:02.000Z',
        step: 'rolled-back',
        result: 'failure',
        reason: 'the new key could not log in to web-1',
      },
    });
    expect(first!.why).toContain(
      'Overdue since 2026-04-10 00:00 UTC: project Web tier rotates every 90 days',
    );
    expect(first!.why).toContain('failed at step rolled-back');

    const ci = rest.find((r) => r.credentialId === 'cred-ci')!;
    expect(ci).toMatchObject({ overdue: false, ageDays: 11, dueAt: '2026-07-19T00:00:00.000Z' });
    expect(ci.lastRotatedAt).toBeUndefined();
    expect(ci.why).toContain('never rotated since it was registered');

    // db's policy is disabled, so nothing governs the backup key.
    const backup = rest.find((r) => r.credentialId === 'cred-backup')!;
    expect(backup).toMatchObject({ overdue: false, ageDays: 89, caretaker: { disabled: true } });
    expect(backup.policyIntervalHours).toBeUndefined();
    expect(backup.why).toContain('No enabled rotation policy covers any of its servers');
    expect(report.totals).toMatchObject({ rotationOverdue: 1, rotationWithoutPolicy: 1, credentials: 3 });
  });
});

describe('buildAccessAuditReport — input, period and coverage', () => {
  it('buildAccessAuditReport — reports servers without a successful inventory and says their keys are unknown', () => {
    const failed = KeyInventorySchema.parse({
      ...meta('inv-db-1-failed', '2026-04-30T23:59:00.000Z'),
      serverId: 'db-1',
      scannedAt: '2026-04-30T23:59:00.000Z',
      status: 'failed',
      error: { code: 'TRANSPORT_FAILED', message: 'connection refused' },
    });
    const r = buildAccessAuditReport(
      input({ inventories: [...inventories.filter((i) => i.serverId !== 'web-2'), failed] }),
    );
    expect(r.coverage.map((c) => [c.serverId, c.status])).toEqual([
      ['db-1', 'failed'],
      ['web-2', 'missing'],
      ['web-1', 'succeeded'],
    ]);
    expect(r.coverage[0]!.error).toBe('TRANSPORT_FAILED: connection refused');
    expect(r.keys.every((k) => k.serverId === 'web-1')).toBe(true);
    expect(r.notes).toContain(
      '2 server(s) have no successful key inventory (db-1, web-2): their keys and logins are not in this report.',
    );
    expect(r.totals).toMatchObject({ servers: 3, serversInventoried: 1 });
  });

  it('buildAccessAuditReport — honours until and since, and without since reads the whole log', () => {
    const april = buildAccessAuditReport(input({ until: new Date('2026-04-10T00:00:00.000Z') }));
    // run-1's five records and bob's first request.
    expect(april.period.records).toBe(6);
    expect(april.topScripts.map((s) => [s.script, s.runs])).toEqual([['rotate-logs', 1]]);
    const all = buildAccessAuditReport(input({ since: undefined }));
    expect(all.period.records).toBe(records().length);
    expect(all.period.since).toBeUndefined();
    expect(all.access.some((r) => r.firstAt === '2026-01-15T08:00:00.000Z')).toBe(true);
  });

  it("buildAccessAuditReport — refuses another tenant's records and entities, naming the field", () => {
    const foreign = { ...records()[3]!, tenantId: 'other' };
    const list = records();
    list.splice(5, 0, foreign);
    const err = (() => {
      try {
        buildAccessAuditReport(input({ records: list }));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).paths).toEqual(['records.5.tenantId']);

    expect(() => buildAccessAuditReport(input({ servers: [{ ...servers[0]!, tenantId: 'other' }] }))).toThrow(
      expect.objectContaining({ paths: ['servers.0.tenantId'] }),
    );
  });

  it('buildAccessAuditReport — rejects bad periods and options with typed errors', () => {
    const paths = (over: Partial<AccessAuditInput>) => {
      try {
        buildAccessAuditReport(input(over));
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        return (e as ValidationError).paths;
      }
      throw new Error('did not throw');
    };
    expect(paths({ until: new Date('2026-03-01T00:00:00Z') })).toEqual(['since']);
    expect(paths({ now: new Date('nope') })).toEqual(['now']);
    expect(paths({ unusedAfterDays: 0 })).toEqual(['unusedAfterDays']);
    expect(paths({ grants: undefined as never })).toEqual(['grants']);
  });

  it('buildAccessAuditReport — is deterministic, and the async variant streams the same report', async () => {
    const again = buildAccessAuditReport(input());
    expect(renderAccessAuditJson(again)).toBe(renderAccessAuditJson(report));
    async function* stream() {
      for (const r of records()) yield r;
    }
    const streamed = await buildAccessAuditReportAsync({ ...input(), records: stream() });
    expect(streamed).toEqual(report);
  });

  it('buildAccessAuditReport — a key unused longer than unusedAfterDays is no longer in use', () => {
    const strict = buildAccessAuditReport(input({ unusedAfterDays: 3 }));
    const deploy = strict.keys.find((k) => k.serverId === 'web-1' && k.fingerprint === K.deploy.fingerprint)!;
    expect(deploy.needed).toBe('review');
    expect(deploy.why).toContain('5 days ago (more than 3)');
  });
});

/** A strict RFC 4180 reader: fails on anything but whole-field quoting and CRLF record ends. */
function readCsv(text: string): string[][] {
  const rows: string[][] = [];
  let i = 0;
  while (i < text.length) {
    const row: string[] = [];
    for (;;) {
      let cell = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          const end = text.indexOf('"', i);
          if (end < 0) throw new Error('unterminated quote');
          cell += text.slice(i, end);
          i = end + 1;
          if (text[i] !== '"') break;
          cell += '"';
          i++;
        }
      } else {
        const m = /^[^",\r\n]*/.exec(text.slice(i))!;
        cell = m[0];
        i += cell.length;
      }
      row.push(cell);
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text.startsWith('\r\n', i)) {
        i += 2;
        break;
      }
      throw new Error(`bad character at ${i}: ${JSON.stringify(text[i])}`);
    }
    rows.push(row);
  }
  return rows;
}

describe('renderAccessAuditCsv', () => {
  it('renderAccessAuditCsv — every table is well-formed RFC 4180 with a header and one row per entry', () => {
    const sizes: Record<string, number> = {
      actions: report.topActions.length,
      scripts: report.topScripts.length,
      commands: report.topCommands.length,
      denials: report.denials.length,
      access: report.access.length,
      keys: report.keys.length,
      rotation: report.rotation.length,
      coverage: report.coverage.length,
    };
    for (const table of ACCESS_AUDIT_CSV_TABLES) {
      const rows = readCsv(renderAccessAuditCsv(report, { table }));
      expect(rows.length, table).toBe(sizes[table]! + 1);
      expect(new Set(rows.map((r) => r.length)).size, table).toBe(1);
    }
    const keys = readCsv(renderAccessAuditCsv(report, { table: 'keys' }));
    expect(keys[0]!.slice(0, 4)).toEqual(['serverId', 'serverName', 'login', 'fingerprint']);
  });

  it('renderAccessAuditCsv — hostile comments, commands and reasons are inert text in a spreadsheet', () => {
    for (const table of ACCESS_AUDIT_CSV_TABLES) {
      for (const row of readCsv(renderAccessAuditCsv(report, { table }))) {
        for (const cell of row) expect(cell, `${table}: ${cell}`).not.toMatch(/^[=+\-@\t\r]/);
      }
    }
    const keys = readCsv(renderAccessAuditCsv(report, { table: 'keys' }));
    const comment = keys[0]!.indexOf('comment');
    expect(keys.map((r) => r[comment])).toContain(`'${FORMULA}`);
    const commands = readCsv(renderAccessAuditCsv(report, { table: 'commands' }));
    expect(commands.map((r) => r[0])).toContain(`'${FORMULA}`);
    const denials = readCsv(renderAccessAuditCsv(report, { table: 'denials' }));
    expect(denials[1]![7]).toBe(`no role allows it ${IMG}`);
  });

  it('renderAccessAuditCsv — prefixes a BOM on request and rejects an unknown table', () => {
    expect(renderAccessAuditCsv(report, { table: 'actions', bom: true }).startsWith('\uFEFF"action",')).toBe(
      true,
    );
    expect(() => renderAccessAuditCsv(report, { table: 'secrets' as never })).toThrow(
      expect.objectContaining({ name: 'ValidationError', paths: ['table'] }),
    );
    expect(() => renderAccessAuditCsv({ ...report, keys: undefined } as never, { table: 'keys' })).toThrow(
      expect.objectContaining({ name: 'ValidationError', paths: ['keys'] }),
    );
  });
});

const count = (text: string, needle: string) => text.toLowerCase().split(needle.toLowerCase()).length - 1;
const embedded = (html: string) => {
  const open = '<script type="application/json" id="report-data">';
  const start = html.indexOf(open) + open.length;
  return html.slice(start, html.toLowerCase().indexOf('</script', start));
};

describe('renderAccessAuditHtml', () => {
  const html = renderAccessAuditHtml(report, { brand: { name: `Northwind ${SCRIPT}`, color: '#0b5cad' } });

  it('renderAccessAuditHtml — escapes every hostile string: the only script is the JSON block', () => {
    expect(count(html, '<script')).toBe(1);
    expect(count(html, '</script')).toBe(1);
    expect(count(html, '<img')).toBe(0);
    expect(html).toContain('&lt;script&gt;window.__pwned=&quot;script&quot;&lt;/script&gt;');
    expect(html).toContain(
      'no role allows it &quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=&#39;img&#39;&quot;&gt;',
    );
    expect(html).toContain('=cmd|&#39; /C calc&#39;!A0');
    expect(html).toContain(`content="default-src &#39;none&#39;`);
  });

  it('renderAccessAuditHtml — embeds the same report as renderAccessAuditJson, unbreakable by </script>', () => {
    const block = embedded(html);
    expect(block).not.toMatch(/[<>&]/);
    expect(JSON.parse(block)).toEqual(JSON.parse(renderAccessAuditJson(report)));
  });

  it('renderAccessAuditHtml — shows each answer as a section with the summary numbers', () => {
    for (const id of [
      'summary',
      'access',
      'keys',
      'rotation',
      'actions',
      'scripts',
      'commands',
      'denials',
      'coverage',
    ])
      expect(html).toContain(`<section class="section" id="${id}">`);
    expect(html).toContain('data-metric="rotationOverdue" data-value="1"');
    expect(html).toContain('data-metric="keysToRemove" data-value="3"');
    expect(count(html, 'data-matched="false"')).toBe(report.access.filter((r) => !r.matchedRole).length);
    expect(count(html, 'data-needed="no"')).toBe(3);
    expect(() => renderAccessAuditHtml(report, { brand: { name: 'x', color: 'red;}' } })).toThrow(
      ValidationError,
    );
  });
});

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../../../test-artifacts/', import.meta.url));
describeIfAvailable(
  'renderAccessAuditHtml in Chromium',
  existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing: apt-get install -y chromium`,
  () => {
    it('renderAccessAuditHtml — runs nothing and loads nothing in a real browser, and shows hostile text as text', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'fleetward-access-audit-'));
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      });
      try {
        const file = join(dir, 'access-audit.html');
        await writeFile(file, renderAccessAuditHtml(report, { brand: { name: SCRIPT } }));
        const page = await browser.newPage();
        const requests: string[] = [];
        const url = pathToFileURL(file).href;
        page.on('request', (r) => {
          if (r.url() !== url) requests.push(r.url());
        });
        page.on('dialog', (d) => {
          requests.push(`dialog ${d.message()}`);
          void d.dismiss();
        });
        await page.goto(url, { waitUntil: 'load' });
        expect(await page.evaluate(() => (globalThis as { __pwned?: string }).__pwned)).toBeUndefined();
        expect(requests).toEqual([]);
        expect(await page.locator('script').count()).toBe(1);
        const keysText = await page.locator('#keys').textContent();
        expect(keysText).toContain(FORMULA);
        expect(keysText).toContain(SCRIPT);
        expect(await page.locator('.brand span').textContent()).toBe(SCRIPT);
        const data = JSON.parse((await page.locator('#report-data').textContent()) ?? '');
        expect(data.totals).toEqual(report.totals);
        await mkdir(ARTIFACTS, { recursive: true });
        await page.setViewportSize({ width: 1280, height: 900 });
        await page.screenshot({ path: join(ARTIFACTS, 'access-audit.png'), fullPage: true });
      } finally {
        await browser.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  },
);
