import { ComplianceStateBackfill, type ScanResult, type Server } from '@fleetward/core';

/**
 * Versioned schema migrations. Applied in order, each in its own transaction, recorded in
 * `schema_migrations`. A migration is never edited after release: add a new one instead.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Fills what `sql` created from the data already stored, in the same transaction. */
  backfill?: (db: MigrationDatabase) => void;
}

/**
 * What a backfill uses of the database: a better-sqlite3 `Database` has it. Declared here so that
 * the package's types do not need better-sqlite3's.
 */
export interface MigrationDatabase {
  prepare(sql: string): {
    iterate(...params: unknown[]): Iterable<unknown>;
    run(...params: unknown[]): unknown;
  };
}

/** Builds every server's compliance state from the stored servers and scan results. */
function backfillComplianceStates(db: MigrationDatabase): void {
  const fold = new ComplianceStateBackfill();
  const rows = db
    .prepare("SELECT kind, tenant_id, data FROM entities WHERE kind IN ('servers', 'scanResults')")
    .iterate() as Iterable<{ kind: string; tenant_id: string; data: string }>;
  for (const row of rows) {
    const data = JSON.parse(row.data);
    if (row.kind === 'servers') fold.addServer(row.tenant_id, data as Server);
    else fold.addScan(row.tenant_id, data as ScanResult);
  }
  const insert = db.prepare(
    'INSERT INTO compliance_states (tenant_id, server_id, has_server, data) VALUES (?, ?, ?, ?)',
  );
  for (const [tenantId, state] of fold.states()) {
    insert.run(tenantId, state.serverId, state.server ? 1 : 0, JSON.stringify(state));
  }
}

/**
 * The audit record's own fields as SQL expressions. Queries filter on these (the hashed JSON),
 * not on the columns kept beside it; the expression indexes of migration 5 make that fast. A
 * query must spell them exactly like the index for SQLite to use it.
 */
export const RECORD_ACTION = "json_extract(record, '$.action')";
export const RECORD_ACTOR = "json_extract(record, '$.actor.principalId')";
export const RECORD_AT = "json_extract(record, '$.at')";

const indexed: Record<string, string[]> = {
  accounts: ['provider'],
  servers: ['accountId', 'provider', 'region', 'name'],
  projects: ['name'],
  principals: ['kind', 'affiliation'],
  roles: ['name'],
  roleBindings: ['principalId', 'roleId'],
  patchPolicies: ['projectId'],
  scripts: ['name', 'contentHash'],
  jobs: ['kind', 'status'],
  taskResults: ['jobId', 'serverId', 'status'],
  scanResults: ['serverId', 'jobId', 'status'],
  credentials: ['caretakerId', 'fingerprint', 'login'],
  accessRequests: ['requesterId', 'status'],
  accessGrants: ['requestId', 'principalId', 'status'],
};

const fieldIndexes = Object.entries(indexed)
  .flatMap(([kind, fields]) =>
    fields.map(
      (field) =>
        `CREATE INDEX entities_${kind}_${field} ON entities (tenant_id, json_extract(data, '$.${field}'), id) WHERE kind = '${kind}';`,
    ),
  )
  .join('\n');

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'entities, audit log, leases',
    sql: `
CREATE TABLE entities (
  kind TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version > 0),
  data TEXT NOT NULL CHECK (json_valid(data)),
  PRIMARY KEY (kind, tenant_id, id)
) WITHOUT ROWID;
${fieldIndexes}

CREATE TABLE audit_log (
  tenant_id TEXT NOT NULL,
  seq INTEGER NOT NULL CHECK (seq > 0),
  id TEXT NOT NULL UNIQUE,
  at TEXT NOT NULL,
  action TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  record TEXT NOT NULL CHECK (json_valid(record)),
  PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
CREATE INDEX audit_log_action ON audit_log (tenant_id, action, seq);
CREATE INDEX audit_log_actor ON audit_log (tenant_id, actor_id, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  token INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT INTO lease_tokens (id, last) VALUES (1, 0);
`,
  },
  {
    version: 2,
    name: 'patch plans',
    sql: ['projectId', 'policyId', 'status']
      .map(
        (field) =>
          `CREATE INDEX entities_patchPlans_${field} ON entities (tenant_id, json_extract(data, '$.${field}'), id) WHERE kind = 'patchPlans';`,
      )
      .join('\n'),
  },
  {
    version: 3,
    name: 'compliance, schedules, notifications',
    sql: Object.entries({
      complianceStandards: ['projectId'],
      scanSchedules: ['projectId', 'enabled'],
      webhookEndpoints: ['disabled'],
      outbox: ['status', 'channel', 'destinationId'],
      integrations: ['kind'],
      changeRequests: ['projectId', 'pendingSetHash', 'status'],
    })
      .flatMap(([kind, fields]) =>
        fields.map(
          (field) =>
            `CREATE INDEX entities_${kind}_${field} ON entities (tenant_id, json_extract(data, '$.${field}'), id) WHERE kind = '${kind}';`,
        ),
      )
      .join('\n'),
  },
  {
    version: 4,
    name: 'access management, scripts, runbooks, API tokens',
    sql: Object.entries({
      keyRotationPolicies: ['projectId'],
      keyInventories: ['serverId'],
      scriptApprovals: ['scriptName', 'contentHash'],
      scriptRuns: ['scriptName', 'contentHash', 'status', 'jobId'],
      apiTokens: ['tokenHash', 'principalId'],
      runbooks: ['name', 'contentHash'],
      runbookRuns: ['runbookName', 'contentHash', 'status', 'startedBy'],
    })
      .flatMap(([kind, fields]) =>
        fields.map(
          (field) =>
            `CREATE INDEX entities_${kind}_${field} ON entities (tenant_id, json_extract(data, '$.${field}'), id) WHERE kind = '${kind}';`,
        ),
      )
      .join('\n'),
  },
  {
    version: 5,
    name: 'audit queries read the hashed record, not the columns beside it',
    sql: `
DROP INDEX audit_log_action;
DROP INDEX audit_log_actor;
CREATE INDEX audit_log_record_action ON audit_log (tenant_id, ${RECORD_ACTION}, seq);
CREATE INDEX audit_log_record_actor ON audit_log (tenant_id, ${RECORD_ACTOR}, seq);
CREATE INDEX audit_log_record_at ON audit_log (tenant_id, ${RECORD_AT}, seq);
`,
  },
  {
    version: 6,
    name: 'per-server compliance state, kept with every server and scan write',
    sql: `
CREATE TABLE compliance_states (
  tenant_id TEXT NOT NULL,
  server_id TEXT NOT NULL,
  has_server INTEGER NOT NULL CHECK (has_server IN (0, 1)),
  data TEXT NOT NULL CHECK (json_valid(data)),
  PRIMARY KEY (tenant_id, server_id)
) WITHOUT ROWID;
`,
    backfill: backfillComplianceStates,
  },
  {
    version: 7,
    name: "change feed of the compliance states: a per-tenant position of each one's last write",
    sql: `
CREATE TABLE compliance_changes (
  tenant_id TEXT NOT NULL,
  server_id TEXT NOT NULL,
  revision INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, server_id)
) WITHOUT ROWID;
CREATE INDEX compliance_changes_revision ON compliance_changes (tenant_id, revision);
`,
  },
];
