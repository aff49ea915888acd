import { randomBytes } from 'node:crypto';
import { describeIfAvailable } from '@fleetward/testkit';
import pg from 'pg';

/** The test server: the local PostgreSQL unless `FLEETWARD_TEST_POSTGRES_URL` names another. */
export const POSTGRES_URL =
  process.env['FLEETWARD_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema name per test, so runs (and parallel test files) never collide. */
export const freshSchema = () => `fw_test_${randomBytes(6).toString('hex')}`;

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

async function unreachable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `PostgreSQL at ${POSTGRES_URL.replace(/\/\/[^@/]*@/, '//')} is unreachable: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    await client.end().catch(() => {});
  }
}

const reason = await unreachable();

/**
 * `describe` for tests that need the PostgreSQL server. Where it is unreachable the suite is
 * skipped loudly (reason in the name and on stderr); with `FLEETWARD_REQUIRE_LAB=1` (CI) it fails.
 */
export function describeWithPostgres(name: string, fn: () => void): void {
  describeIfAvailable(name, reason, fn);
}
