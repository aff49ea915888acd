import type { AuditTamper } from '@fleetward/testkit';
import Database from 'better-sqlite3';

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
 * What someone with the database file does: a connection of their own, the append-only triggers
 * dropped, rows edited or inserted by hand.
 */
export function tamperSqliteAudit(path: () => string): AuditTamper {
  const withDb = (fn: (db: Database.Database) => void) => {
    const db = new Database(path());
    try {
      db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;');
      fn(db);
    } finally {
      db.close();
    }
  };
  return {
    async setColumn(tenantId, seq, column, value) {
      withDb((db) => {
        const changed = db
          .prepare(`UPDATE audit_log SET ${COLUMN[column]} = ? WHERE tenant_id = ? AND seq = ?`)
          .run(value, tenantId, seq).changes;
        if (changed !== 1) throw new Error(`no audit row ${tenantId}/${seq} to edit`);
      });
    },
    async insertRow(c, record) {
      withDb((db) => {
        db.prepare(
          'INSERT INTO audit_log (tenant_id, seq, id, at, action, actor_id, hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        ).run(c.tenantId, c.seq, c.id, c.at, c.action, c.actorId, c.hash, record);
      });
    },
  };
}
