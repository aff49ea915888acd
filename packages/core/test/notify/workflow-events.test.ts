import { type Adapter, createFleet, createMemoryStore, TransportError } from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const unreachable: Adapter = {
  name: 'ssh',
  exec: {
    async exec(server) {
      throw new TransportError(`connect ECONNREFUSED ${server.name}`);
    },
  },
};

describe('workflow events in the outbox', () => {
  it('scan — writes scan.completed for subscribed endpoints with the job’s completion, without any subscription', async () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [unreachable] });
    try {
      await fleet.bootstrapTenant({
        tenant: { id: 't', name: 'T' },
        admin: { id: 'ops', name: 'Ops', kind: 'human', affiliation: 'employee' },
      });
      await fleet.store.webhookEndpoints.create({
        tenantId: 't',
        id: 'scans',
        url: 'http://127.0.0.1:9/hook',
        secretRef: 'x',
        events: ['scan.*'],
      });
      await fleet.store.webhookEndpoints.create({
        tenantId: 't',
        id: 'patches',
        url: 'http://127.0.0.1:9/hook',
        secretRef: 'y',
        events: ['patch.*'],
      });
      const ops = fleet.as({ tenantId: 't', principalId: 'ops' });
      await ops.servers.add({
        id: 'web-1',
        name: 'web-1',
        accountId: 'dc',
        provider: 'ssh',
        address: '10.250.9.9',
      });
      const { job } = await ops.scan({ serverIds: ['web-1'] });
      const messages = await fleet.store.outbox.listAll('t');
      expect(messages).toHaveLength(1);
      expect(messages[0]).toMatchObject({
        channel: 'webhook',
        destinationId: 'scans',
        eventType: 'scan.completed',
        status: 'pending',
        payload: { jobId: job.id, status: 'failed', total: 1, failed: 1 },
      });
    } finally {
      await fleet.close();
    }
  });
});
