import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  type Clock,
  createFleet,
  type Fleet,
  type SecretStore,
  type Store,
} from '@fleetward/core';
import type { Lab } from '@fleetward/testkit/lab';

/** What a separate process needs to reach a lab: addresses, root keys and pinned host keys. */
export interface LabAccess {
  hosts: { name: string; flavour: string; address: string; privateKey: string; fingerprints: string[] }[];
}

export function labAccess(lab: Lab): LabAccess {
  return {
    hosts: lab.hosts.map((h) => ({
      name: h.name,
      flavour: h.flavour,
      address: h.address,
      privateKey: h.users.root.privateKey,
      fingerprints: [h.hostKeys.ed25519.fingerprint, ...(h.hostKeys.rsa ? [h.hostKeys.rsa.fingerprint] : [])],
    })),
  };
}

/**
 * A Fleet whose SSH adapter logs in to lab hosts as root with pinned host keys; `adapters` are
 * added beside it (a mixed fleet).
 */
export function labFleet(
  access: LabAccess,
  store: Store,
  clock?: Clock,
  secrets?: SecretStore,
  adapters: Adapter[] = [],
): Fleet {
  const ssh = createSshAdapter({
    credentials: { username: 'root', privateKey: access.hosts[0]!.privateKey },
    credentialsFor: async (server) => {
      const host = access.hosts.find((h) => h.address === server.address);
      return host && { username: 'root', privateKey: host.privateKey };
    },
    hostKeyPolicy: 'pinned',
    pinnedHostKeys: Object.fromEntries(access.hosts.map((h) => [h.address, h.fingerprints])),
    connectTimeoutMs: 5000,
  });
  return createFleet({
    store,
    adapters: [ssh, ...adapters],
    ...(clock ? { clock } : {}),
    ...(secrets ? { secrets } : {}),
  });
}

export const TENANT = 'lab';

/** Tenant, two admins (requester and approver), the lab's servers and one project over them. */
export async function seed(fleet: Fleet, access: LabAccess): Promise<void> {
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Lab' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.principals.create({
    tenantId: TENANT,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fleet.store.roleBindings.create({ tenantId: TENANT, principalId: 'bob', roleId: 'tenant-admin' });
  const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
  for (const h of access.hosts) {
    await alice.servers.add({
      id: h.name,
      name: h.name,
      accountId: 'lab',
      provider: 'ssh',
      address: h.address,
      labels: { flavour: h.flavour },
    });
  }
  await alice.projects.add({ id: 'lab', name: 'Lab', selector: { all: true } });
}

/** The installed version of a Debian package on a lab host, read through the lab's back channel. */
export async function dpkgVersion(lab: Lab, host: string, pkg: string): Promise<string> {
  // dpkg-query's own format syntax, not a template string.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: see above
  const format = '${Version}';
  return (await lab.host(host).exec(['dpkg-query', '-W', '-f', format, pkg])).stdout;
}
