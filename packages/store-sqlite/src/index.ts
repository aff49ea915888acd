export { MIGRATIONS, type Migration, type MigrationDatabase } from './migrations.js';
export { createSqliteStore, type SqliteStoreOptions, SqliteStoreOptionsSchema } from './sqlite-store.js';
