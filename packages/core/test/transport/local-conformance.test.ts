import { describeTransportConformance } from '@fleetward/testkit';
import { ServerSchema } from '../../src/domain/index.js';
import { createLocalAdapter } from '../../src/transport/local.js';

// The reference transport: it must pass the whole suite, with nothing skipped.
describeTransportConformance('local', {
  create: async () => ({
    adapter: createLocalAdapter({ killGraceMs: 500 }),
    server: ServerSchema.parse({
      tenantId: 't1',
      id: 'srv-local',
      version: 1,
      createdAt: '2025-01-01T00:00:00Z',
      updatedAt: '2025-01-01T00:00:00Z',
      accountId: 'acc-1',
      provider: 'local',
      name: 'this-machine',
    }),
  }),
});
