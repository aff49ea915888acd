export { MIGRATIONS, type Migration } from './migrations.js';
export { createSqliteStore, type SqliteStoreOptions, SqliteStoreOptionsSchema } from './sqlite-store.js';
