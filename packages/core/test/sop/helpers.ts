import {
  type Adapter,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  MemorySecretStore,
  type SecretStore,
  type Store,
} from '@fleetward/core';

export const T = 'acme';

export interface SopFixture {
  fleet: Fleet;
  /** Tenant admin; adds scripts. */
  alice: FleetSession;
  /** Tenant admin too; approves what alice adds. */
  bob: FleetSession;
}

/**
 * A Fleet over the local transport with `servers` local servers (`s01`, `s02`, …), each labelled
 * `env=prod`, and two tenant admins. Every server runs on this machine: scripts tell them apart by
 * `FLEETWARD_SERVER_ID`.
 */
export async function sopFleet(
  options: { servers?: number; store?: Store; secrets?: SecretStore | null; adapters?: Adapter[] } = {},
): Promise<SopFixture> {
  const secrets = options.secrets === null ? undefined : (options.secrets ?? new MemorySecretStore());
  const fleet = createFleet({
    store: options.store ?? createMemoryStore(),
    adapters: options.adapters ?? [createLocalAdapter()],
    ...(secrets ? { secrets } : {}),
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.principals.create({
    tenantId: T,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  for (let i = 1; i <= (options.servers ?? 3); i++) {
    const id = `s${String(i).padStart(2, '0')}`;
    await alice.servers.add({ id, name: id, accountId: 'local', provider: 'local', labels: { env: 'prod' } });
  }
  return { fleet, alice, bob: fleet.as({ tenantId: T, principalId: 'bob' }) };
}

/** Ids `s01`…`sNN`. */
export const serverIds = (n: number) =>
  Array.from({ length: n }, (_, i) => `s${String(i + 1).padStart(2, '0')}`);
