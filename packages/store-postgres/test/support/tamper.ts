import type { AuditTamper } from '@fleetward/testkit';
import pg from 'pg';
import { POSTGRES_URL } from './postgres.js';

const COLUMN = {
  tenantId: 'tenant_id',
  seq: 'seq',
  id: 'id',
  at: 'at',
  action: 'action',
  actorId: 'actor_id',
  hash: 'hash',
};

/**
 * What someone with database access does: a connection of their own, the append-only triggers
 * dropped, rows edited or inserted by hand.
 */
export function tamperPostgresAudit(schema: () => string): AuditTamper {
  const withDb = async (fn: (db: pg.Client, table: string) => Promise<void>) => {
    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();
    const table = `"${schema()}".audit_log`;
    try {
      await db.query(`DROP TRIGGER IF EXISTS audit_log_no_update ON ${table}`);
      await db.query(`DROP TRIGGER IF EXISTS audit_log_no_delete ON ${table}`);
      await fn(db, table);
    } finally {
      await db.end();
    }
  };
  return {
    setColumn: (tenantId, seq, column, value) =>
      withDb(async (db, table) => {
        const { rowCount } = await db.query(
          `UPDATE ${table} SET ${COLUMN[column]} = $1 WHERE tenant_id = $2 AND seq = $3`,
          [value, tenantId, seq],
        );
        if (rowCount !== 1) throw new Error(`no audit row ${tenantId}/${seq} to edit`);
      }),
    insertRow: (c, record) =>
      withDb(async (db, table) => {
        await db.query(
          `INSERT INTO ${table} (tenant_id, seq, id, at, action, actor_id, hash, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)`,
          [c.tenantId, c.seq, c.id, c.at, c.action, c.actorId, c.hash, record],
        );
      }),
  };
}
