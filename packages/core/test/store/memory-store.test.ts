import { createMemoryStore } from '@fleetward/core';
import { describeStoreConformance } from '@fleetward/testkit';

describeStoreConformance('MemoryStore', {
  create: ({ clock }) => createMemoryStore({ clock }),
  skip: { persistence: 'memory is not kept across instances by design' },
});
