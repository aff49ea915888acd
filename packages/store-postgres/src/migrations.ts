import { ComplianceStateBackfill, type ScanResult, type Server } from '@fleetward/core';
import type pg from 'pg';

/**
 * Versioned schema migrations. Applied in order, all pending ones in one transaction under an
 * advisory lock (so concurrent processes never race), recorded in `schema_migrations`. Each
 * migration runs with `search_path` set to the store's schema, so its SQL names no schema.
 * A migration is never edited after release: add a new one instead.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Fills what `sql` created from the data already stored, in the same transaction. */
  backfill?: (client: Pick<pg.PoolClient, 'query'>) => Promise<void>;
}

const BACKFILL_PAGE = 5_000;

/** Builds every server's compliance state from the stored servers and scan results. */
async function backfillComplianceStates(client: Pick<pg.PoolClient, 'query'>): Promise<void> {
  const fold = new ComplianceStateBackfill();
  for (const kind of ['servers', 'scanResults'] as const) {
    let after: [string, string] = ['', ''];
    for (;;) {
      const { rows } = await client.query<{ tenant_id: string; id: string; data: unknown }>(
        `SELECT tenant_id, id, data FROM entities WHERE kind = $1 AND (tenant_id, id) > ($2, $3)
         ORDER BY tenant_id, id LIMIT ${BACKFILL_PAGE}`,
        [kind, after[0], after[1]],
      );
      for (const row of rows) {
        if (kind === 'servers') fold.addServer(row.tenant_id, row.data as Server);
        else fold.addScan(row.tenant_id, row.data as ScanResult);
      }
      if (rows.length < BACKFILL_PAGE) break;
      const last = rows[rows.length - 1]!;
      after = [last.tenant_id, last.id];
    }
  }
  const batch: unknown[][] = [];
  const flush = async () => {
    if (!batch.length) return;
    const rows = batch.splice(0);
    await client.query(
      `INSERT INTO compliance_states (tenant_id, server_id, has_server, data)
       SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::jsonb[])`,
      [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
    );
  };
  for (const [tenantId, state] of fold.states()) {
    batch.push([tenantId, state.serverId, state.server !== undefined, JSON.stringify(state)]);
    if (batch.length === BACKFILL_PAGE) await flush();
  }
  await flush();
}

/**
 * The audit record's own fields as SQL expressions. Queries filter on these (the hashed JSON),
 * not on the columns kept beside it; the expression indexes of migration 3 make that fast. `at`
 * compares as ISO-8601 text, so byte order (`C`) whatever the database's collation.
 */
export const RECORD_ACTION = "(record->>'action')";
export const RECORD_ACTOR = "(record->'actor'->>'principalId')";
export const RECORD_AT = `((record->>'at') COLLATE "C")`;

/**
 * One expression index per indexed field, partial on the kind, like the SQLite store's. The list
 * query inlines the kind and the field (`data->>'field'`) so that PostgreSQL can prove the index.
 */
const fieldIndexes = (indexed: Record<string, string[]>) =>
  Object.entries(indexed)
    .flatMap(([kind, fields]) =>
      fields.map(
        (field) =>
          `CREATE INDEX "entities_${kind}_${field}" ON entities (tenant_id, (data->>'${field}'), id) WHERE kind = '${kind}';`,
      ),
    )
    .join('\n');

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'entities, audit log, leases',
    sql: `
CREATE TABLE entities (
  kind TEXT COLLATE "C" NOT NULL,
  tenant_id TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  version INTEGER NOT NULL CHECK (version > 0),
  data JSONB NOT NULL CHECK (jsonb_typeof(data) = 'object'),
  PRIMARY KEY (kind, tenant_id, id)
);
${fieldIndexes({
  accounts: ['provider'],
  servers: ['accountId', 'provider', 'region', 'name'],
  projects: ['name'],
  principals: ['kind', 'affiliation'],
  roles: ['name'],
  roleBindings: ['principalId', 'roleId'],
  patchPolicies: ['projectId'],
  patchPlans: ['projectId', 'policyId', 'status'],
  scripts: ['name', 'contentHash'],
  jobs: ['kind', 'status'],
  taskResults: ['jobId', 'serverId', 'status'],
  scanResults: ['serverId', 'jobId', 'status'],
  credentials: ['caretakerId', 'fingerprint', 'login'],
  accessRequests: ['requesterId', 'status'],
  accessGrants: ['requestId', 'principalId', 'status'],
  complianceStandards: ['projectId'],
  scanSchedules: ['projectId', 'enabled'],
  webhookEndpoints: ['disabled'],
  outbox: ['status', 'channel', 'destinationId'],
  integrations: ['kind'],
  changeRequests: ['projectId', 'pendingSetHash', 'status'],
})}

CREATE TABLE audit_log (
  tenant_id TEXT COLLATE "C" NOT NULL,
  seq BIGINT NOT NULL CHECK (seq > 0),
  id TEXT NOT NULL UNIQUE,
  at TIMESTAMPTZ NOT NULL,
  action TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  record JSONB NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_action ON audit_log (tenant_id, action, seq);
CREATE INDEX audit_log_actor ON audit_log (tenant_id, actor_id, seq);
CREATE INDEX audit_log_at ON audit_log (tenant_id, at, seq);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  token BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE SEQUENCE lease_tokens AS BIGINT;
`,
  },
  {
    version: 2,
    name: 'access management, scripts, runbooks, API tokens',
    sql: fieldIndexes({
      keyRotationPolicies: ['projectId'],
      keyInventories: ['serverId'],
      scriptApprovals: ['scriptName', 'contentHash'],
      scriptRuns: ['scriptName', 'contentHash', 'status', 'jobId'],
      apiTokens: ['tokenHash', 'principalId'],
      runbooks: ['name', 'contentHash'],
      runbookRuns: ['runbookName', 'contentHash', 'status', 'startedBy'],
    }),
  },
  {
    version: 3,
    name: 'audit queries read the hashed record, not the columns beside it',
    sql: `
DROP INDEX audit_log_action;
DROP INDEX audit_log_actor;
DROP INDEX audit_log_at;
CREATE INDEX audit_log_record_action ON audit_log (tenant_id, ${RECORD_ACTION}, seq);
CREATE INDEX audit_log_record_actor ON audit_log (tenant_id, ${RECORD_ACTOR}, seq);
CREATE INDEX audit_log_record_at ON audit_log (tenant_id, ${RECORD_AT}, seq);
`,
  },
  {
    version: 4,
    name: 'per-server compliance state, kept with every server and scan write',
    sql: `
CREATE TABLE compliance_states (
  tenant_id TEXT COLLATE "C" NOT NULL,
  server_id TEXT COLLATE "C" NOT NULL,
  has_server BOOLEAN NOT NULL,
  data JSONB NOT NULL CHECK (jsonb_typeof(data) = 'object'),
  PRIMARY KEY (tenant_id, server_id)
);
`,
    backfill: backfillComplianceStates,
  },
  {
    version: 5,
    name: 'change feed of the compliance states: the transaction that last wrote each one',
    sql: `
CREATE TABLE compliance_changes (
  tenant_id TEXT COLLATE "C" NOT NULL,
  server_id TEXT COLLATE "C" NOT NULL,
  xid xid8 NOT NULL,
  PRIMARY KEY (tenant_id, server_id)
);
CREATE INDEX compliance_changes_xid ON compliance_changes (tenant_id, xid);
`,
  },
];
