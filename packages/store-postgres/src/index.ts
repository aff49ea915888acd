export { MIGRATIONS, type Migration } from './migrations.js';
export {
  createPostgresStore,
  type PostgresStoreOptions,
  PostgresStoreOptionsSchema,
} from './postgres-store.js';
