import type pg from 'pg';

/**
 * The worker queue's own tables, in a schema of their own (pg-boss keeps its job tables in the
 * schema `<schema>_boss`):
 *
 * - `rollouts`: one row per run handed over, with its rollout's counters (current wave, servers
 *   in flight, counted failures) and whether it is active, ending or ended. Every change to a
 *   rollout happens under a lock on its row, so the counters are global over all workers.
 * - `rollout_servers`: every server of a rollout: `pending` (not started), `queued` (a job is on
 *   the queue), `running` (a worker took it: `worker_id`), `done` (its `outcome` is counted).
 * - `limits`: caps on servers in flight over all runs: a tenant's (`account_id` empty), one
 *   account's, and defaults (`*`) for every tenant or account without a cap of its own.
 * - `workers`: the workers alive, by their last heartbeat; a worker silent for longer than the
 *   takeover time is dead and its running servers are queued again.
 *
 * Each migration runs once, in order, under an advisory lock, so workers starting together do not
 * race. `{schema}` is replaced by the quoted schema name.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE {schema}.rollouts (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    tenant_id text NOT NULL,
    run_id text NOT NULL,
    job_id text NOT NULL,
    generation integer NOT NULL DEFAULT 1,
    wave integer NOT NULL DEFAULT 0,
    wave_count integer NOT NULL,
    max_concurrency integer NOT NULL CHECK (max_concurrency > 0),
    max_failures integer NOT NULL CHECK (max_failures >= 0),
    on_budget_spent text NOT NULL CHECK (on_budget_spent IN ('stop', 'pause')),
    failures integer NOT NULL DEFAULT 0,
    in_flight integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
    status text NOT NULL CHECK (status IN ('active', 'ending', 'ended')),
    stop_reason text,
    cancelled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, tenant_id, run_id)
  );
  CREATE TABLE {schema}.rollout_servers (
    rollout_id bigint NOT NULL REFERENCES {schema}.rollouts (id) ON DELETE CASCADE,
    server_id text NOT NULL,
    wave integer NOT NULL,
    position integer NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'queued', 'running', 'done')),
    outcome text CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'not-started')),
    counts boolean NOT NULL DEFAULT false,
    worker_id text,
    PRIMARY KEY (rollout_id, server_id)
  );
  CREATE INDEX rollout_servers_pending ON {schema}.rollout_servers (rollout_id, wave, position)
    WHERE state = 'pending';
  CREATE INDEX rollout_servers_running ON {schema}.rollout_servers (worker_id) WHERE state = 'running';
  CREATE TABLE {schema}.workers (
    id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
  );
  `,
  // Patch runs: a server left alone on purpose (drifted, refused, blocked at planning) is skipped.
  `
  ALTER TABLE {schema}.rollout_servers DROP CONSTRAINT rollout_servers_outcome_check;
  ALTER TABLE {schema}.rollout_servers ADD CONSTRAINT rollout_servers_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'skipped', 'cancelled', 'not-started'));
  `,
  // Limits over all runs: a tenant's servers in flight, and one account's; the last wave announced.
  `
  ALTER TABLE {schema}.rollout_servers ADD COLUMN account_id text;
  ALTER TABLE {schema}.rollouts ADD COLUMN blocked boolean NOT NULL DEFAULT false;
  ALTER TABLE {schema}.rollouts ADD COLUMN wave_announced integer NOT NULL DEFAULT -1;
  CREATE INDEX rollout_servers_in_flight ON {schema}.rollout_servers (rollout_id)
    WHERE state IN ('queued', 'running');
  CREATE INDEX rollouts_blocked ON {schema}.rollouts (tenant_id, id) WHERE blocked AND status = 'active';
  CREATE TABLE {schema}.limits (
    tenant_id text NOT NULL,
    account_id text NOT NULL,
    max_in_flight integer NOT NULL CHECK (max_in_flight > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, account_id)
  );
  `,
];

/** Lock key of the migrations (any constant: it only has to be the same in every worker). */
const MIGRATION_LOCK = 0x666c_7477;

/** `name` as a quoted SQL identifier; it was checked to be a plain lower-case name. */
export function quoteIdent(name: string): string {
  return `"${name}"`;
}

/** Creates the schema and applies the migrations not applied yet. */
export async function migrate(pool: pg.Pool, schema: string): Promise<void> {
  const client = await pool.connect();
  const q = quoteIdent(schema);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${q}.migrations`);
    const applied = new Set(rows.map((r) => r.version));
    for (const [index, sql] of MIGRATIONS.entries()) {
      const version = index + 1;
      if (applied.has(version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(sql.replaceAll('{schema}', q));
        await client.query(`INSERT INTO ${q}.migrations (version) VALUES ($1)`, [version]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}
