// Scans this machine for pending patches with an in-memory store and prints the security ones.
// Run: npx tsx --tsconfig tsconfig.json examples/scan-this-machine.ts
import { createFleet, createLocalAdapter, createMemoryStore } from '@fleetward/core';

const fleet = createFleet({ store: createMemoryStore(), adapters: [createLocalAdapter()] });
try {
  await fleet.bootstrapTenant({
    tenant: { id: 'example', name: 'Example' },
    admin: { id: 'me', name: 'Me', kind: 'human', affiliation: 'employee' },
  });
  const me = fleet.as({ tenantId: 'example', principalId: 'me' });
  await me.servers.add({ id: 'localhost', name: 'localhost', accountId: 'local', provider: 'local' });
  const { results } = await me.scan({ serverIds: ['localhost'] });
  for (const result of results) {
    if (result.status === 'failed') {
      console.error(`${result.serverId}: ${result.error?.code} ${result.error?.message}`);
      process.exitCode = 1;
      continue;
    }
    const security = result.patches.filter((p) => p.category === 'security');
    console.log(`${result.serverId}: ${result.patches.length} pending, ${security.length} security`);
    for (const p of security)
      console.log(`  ${p.name} ${p.installedVersion ?? '(new)'} -> ${p.candidateVersion}`);
  }
} finally {
  await fleet.close();
}
