/**
 * Type-checked by `scripts/consumer-check.mjs` in an empty project that installed the packed
 * tarballs (`"module": "nodenext"`): every public entry point of `@fleetward/core` and of the
 * store packages resolves with its types the way a user's compiler sees them. Never run.
 */
import { createFleet, createLocalAdapter, createMemoryStore, type Fleet } from '@fleetward/core';
import { type AuditChainVerification, verifyAuditChain } from '@fleetward/core/audit';
import type { AuditRecord, OsFacts } from '@fleetward/core/domain';
import { type Actor, type CallContext, createCallContext, Runtime, sleep } from '@fleetward/core/kernel';
import { DEFAULT_DRIVERS, type PackageManagerDriver, parseOsRelease } from '@fleetward/core/os';
import {
  type Clock,
  MemorySecretStore,
  type SecretStore,
  type Store,
  systemClock,
} from '@fleetward/core/ports';
import {
  type FileSecretStore,
  type FileSecretStoreOptions,
  openFileSecretStore,
} from '@fleetward/secret-store-file';
import { createPostgresStore, type PostgresStoreOptions } from '@fleetward/store-postgres';
import { createSqliteStore } from '@fleetward/store-sqlite';

/** An offline tool: verifies one tenant's audit chain straight from a store. */
export async function verifyTenantLog(store: Store, tenantId: string): Promise<AuditChainVerification> {
  const records: AuditRecord[] = await store.audit.list(tenantId);
  return verifyAuditChain(records);
}

/** A fleet on either store, with secrets in an encrypted folder. */
export async function openFleet(
  backend: { sqlitePath: string } | PostgresStoreOptions,
  secretsOptions: FileSecretStoreOptions,
): Promise<Fleet> {
  const store: Store =
    'sqlitePath' in backend
      ? createSqliteStore({ path: backend.sqlitePath })
      : await createPostgresStore(backend);
  const secrets: FileSecretStore = await openFileSecretStore(secretsOptions);
  return createFleet({ store, secrets, adapters: [createLocalAdapter()] });
}

/** A module author's view: a runtime and a call context without the facade. */
export async function callContextFor(actor: Actor): Promise<CallContext> {
  const clock: Clock = systemClock;
  const secrets: SecretStore = new MemorySecretStore();
  const drivers: readonly PackageManagerDriver[] = DEFAULT_DRIVERS;
  const runtime = new Runtime({ store: createMemoryStore(), adapters: [], clock, secrets, drivers });
  await sleep(0);
  return createCallContext(runtime, actor);
}

/** An OS driver author's view: parse `/etc/os-release`. */
export function osFacts(osRelease: string): OsFacts {
  return parseOsRelease(osRelease);
}
