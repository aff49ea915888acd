import { join, resolve } from 'node:path';
import { createFleet, createLocalAdapter, type Fleet, type FleetSession } from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';

export const DEFAULT_TENANT = 'default';
export const LOCAL_ADMIN = 'local-admin';
export const LOCAL_SERVER = 'localhost';

export interface CliContext {
  fleet: Fleet;
  session: FleetSession;
  dataDir: string;
}

/**
 * Opens the embedded default: a SQLite store in the data folder, the local adapter, and a
 * `default` tenant whose `local-admin` principal the CLI acts as. First use sets these up,
 * together with a `localhost` server for this machine.
 */
export async function openContext(dataDir: string, principalId: string = LOCAL_ADMIN): Promise<CliContext> {
  const dir = resolve(dataDir);
  const store = createSqliteStore({ path: join(dir, 'fleetward.db') });
  const fleet = createFleet({ store, adapters: [createLocalAdapter()] });
  try {
    if (!(await store.tenants.get(DEFAULT_TENANT, DEFAULT_TENANT))) {
      await fleet.bootstrapTenant({
        tenant: { id: DEFAULT_TENANT, name: 'Default' },
        admin: { id: LOCAL_ADMIN, name: 'Local administrator', kind: 'human', affiliation: 'employee' },
      });
    }
    const admin = fleet.as({ tenantId: DEFAULT_TENANT, principalId: LOCAL_ADMIN });
    if (!(await store.servers.get(DEFAULT_TENANT, LOCAL_SERVER))) {
      await admin.servers.add({
        id: LOCAL_SERVER,
        name: LOCAL_SERVER,
        accountId: 'local',
        provider: 'local',
        labels: { 'fleetward.dev/local': 'true' },
      });
    }
    return { fleet, session: fleet.as({ tenantId: DEFAULT_TENANT, principalId }), dataDir: dir };
  } catch (error) {
    await fleet.close();
    throw error;
  }
}
