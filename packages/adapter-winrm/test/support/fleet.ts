import { createWinRmAdapter } from '@fleetward/adapter-winrm';
import { type Adapter, createFleet, createMemoryStore, type Fleet, type FleetSession } from '@fleetward/core';
import type { WinRmFake } from '@fleetward/testkit/winrm';

/** The emulated hosts' administrator. */
export const USER = { username: 'Administrator', password: 'S3cret!pass' };
/** The tenant of the WinRM Fleet tests. */
export const T = 'win';

/** A Fleet over a memory store with `adapters`, a tenant, and two administrators (requester and approver). */
export async function windowsFleet(
  adapters: Adapter[],
): Promise<{ fleet: Fleet; alice: FleetSession; bob: FleetSession }> {
  const fleet = createFleet({ store: createMemoryStore(), adapters });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Windows' },
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
  return {
    fleet,
    alice: fleet.as({ tenantId: T, principalId: 'alice' }),
    bob: fleet.as({ tenantId: T, principalId: 'bob' }),
  };
}

/** The WinRM adapter (named `name`) for a fake, logging in as {@link USER}. */
export const adapterFor = (fake: WinRmFake, name?: string) =>
  createWinRmAdapter({ credentials: USER, ca: fake.ca, ...(name ? { name } : {}) });

/** Adds a server the fake answers for: reached over WinRM (so Windows), or through `adapter` with a stored Windows OS. */
export async function addWindowsServer(
  session: FleetSession,
  id: string,
  fake: WinRmFake,
  adapter?: string,
): Promise<void> {
  await session.servers.add({
    id,
    name: 'localhost',
    accountId: 'dc',
    address: '127.0.0.1',
    port: fake.port,
    ...(adapter
      ? { provider: 'local', adapter, os: { family: 'windows', id: 'windows' } }
      : { provider: 'winrm' }),
  });
}
