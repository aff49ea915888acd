import { createSshAdapter } from '@fleetward/adapter-ssh';
import type { Server } from '@fleetward/core';
import { describeTransportConformance } from '@fleetward/testkit';
import { describeWithLab, startLab } from '@fleetward/testkit/lab';

// The transport conformance suite against a lab host: a non-root login with passwordless sudo,
// over the lab's network, to a host whose keys the lab reports.
describeWithLab('SSH transport conformance on a lab host', () => {
  describeTransportConformance('ssh to a rhel lab host as labops (sudo)', {
    async create() {
      const lab = await startLab({ hosts: [{ name: 'conf1', flavour: 'rhel' }] });
      const host = lab.host('conf1');
      const user = host.users['labops']!;
      const adapter = createSshAdapter({
        credentials: { username: 'labops', privateKey: user.privateKey },
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: {
          [host.address]: [
            host.hostKeys.ed25519.fingerprint,
            ...(host.hostKeys.rsa ? [host.hostKeys.rsa.fingerprint] : []),
          ],
        },
        killGraceMs: 500,
      });
      const now = new Date().toISOString();
      const server: Server = {
        tenantId: 'lab',
        id: 'conf1',
        version: 1,
        createdAt: now,
        updatedAt: now,
        accountId: 'lab',
        provider: 'ssh',
        name: 'conf1',
        address: host.address,
        labels: {},
      };
      return {
        adapter,
        server,
        async cleanup() {
          await adapter.close?.();
          await lab.stop();
        },
      };
    },
  });
});
