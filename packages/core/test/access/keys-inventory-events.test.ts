import { createFleet, createLocalAdapter, createMemoryStore } from '@fleetward/core';
import { expect, it } from 'vitest';

it('keys.inventory — announces every server as it is read, with the status and key count it recorded', async () => {
  const fleet = createFleet({ store: createMemoryStore(), adapters: [createLocalAdapter()] });
  await fleet.bootstrapTenant({
    tenant: { id: 't', name: 'T' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const alice = fleet.as({ tenantId: 't', principalId: 'alice' });
  for (const id of ['a', 'b', 'c'])
    await alice.servers.add({ id, name: id, accountId: 'local', provider: 'local' });
  const seen: { serverId: string; status: string; keys: number }[] = [];
  fleet.events.on('keys.inventory.server.completed', (e) => {
    expect(e.tenantId).toBe('t');
    seen.push({ serverId: e.serverId, status: e.status, keys: e.keys });
  });
  const inventories = await alice.keys.inventory({ serverIds: ['a', 'b', 'c'] }, { concurrency: 2 });
  expect(seen.sort((x, y) => x.serverId.localeCompare(y.serverId))).toEqual(
    inventories.map((i) => ({ serverId: i.serverId, status: i.status, keys: i.keys.length })),
  );
  await fleet.close();
});
