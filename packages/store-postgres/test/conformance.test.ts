import { createPostgresStore } from '@fleetward/store-postgres';
import { describeStoreConformance } from '@fleetward/testkit';
import pg from 'pg';
import { describeWithPostgres, dropSchema, freshSchema, POSTGRES_URL } from './support/postgres.js';
import { tamperPostgresAudit } from './support/tamper.js';

let schema: string | undefined;
let pool: pg.Pool | undefined;

describeWithPostgres('PostgresStore', () => {
  // The store makes and ends its own pool; reopen is a new store (and pool) on the same schema.
  describeStoreConformance('PostgresStore (connectionString)', {
    create: ({ clock }) => {
      schema = freshSchema();
      return createPostgresStore({ connectionString: POSTGRES_URL, schema, clock });
    },
    reopen: ({ clock }) => createPostgresStore({ connectionString: POSTGRES_URL, schema: schema!, clock }),
    cleanup: async () => {
      if (schema) await dropSchema(schema);
      schema = undefined;
    },
    auditTamper: tamperPostgresAudit(() => schema!),
  });

  // The caller's pool, shared and left open by the store.
  describeStoreConformance('PostgresStore (caller pool)', {
    create: ({ clock }) => {
      schema = freshSchema();
      pool = new pg.Pool({ connectionString: POSTGRES_URL });
      return createPostgresStore({ pool, schema, clock });
    },
    reopen: ({ clock }) => createPostgresStore({ pool: pool!, schema: schema!, clock }),
    cleanup: async () => {
      if (schema) await dropSchema(schema);
      await pool?.end();
      schema = undefined;
      pool = undefined;
    },
    auditTamper: tamperPostgresAudit(() => schema!),
  });
});
