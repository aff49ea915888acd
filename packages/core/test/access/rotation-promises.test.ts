import {
  type Adapter,
  CapabilityMissingError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  generateEd25519KeyPair,
  MemorySecretStore,
  secretRefs,
} from '@fleetward/core';
import { afterEach, describe, expect, it } from 'vitest';

// Promises of key rotation that hold before any server is asked anything. The server side
// (expiry stamp, rollback after a later server fails) is proven on the lab.

const T = 'acme';
let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

/** The real local transport, counting the commands it is given; it has no `login` capability. */
function counting(): { adapter: Adapter; calls: string[] } {
  const inner = createLocalAdapter();
  const calls: string[] = [];
  return {
    calls,
    adapter: {
      name: 'local',
      exec: {
        exec(server, command, options) {
          calls.push(server.id);
          return inner.exec!.exec(server, command, options);
        },
      },
    },
  };
}

describe('keys.rotate', () => {
  it('rotate — an adapter without the login capability is refused with a typed error, and nothing changes', async () => {
    const { adapter, calls } = counting();
    const secrets = new MemorySecretStore();
    fleet = createFleet({ store: createMemoryStore(), adapters: [adapter], secrets });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    for (const id of ['s01', 's02', 's03']) {
      await alice.servers.add({ id, name: id, accountId: 'local', provider: 'local' });
    }
    const pair = generateEd25519KeyPair('managed');
    const credential = await alice.keys.register({
      login: 'fwnosuchlogin',
      publicKey: pair.publicKey,
      privateKey: pair.privateKey,
      caretakerId: 'alice',
      serverIds: ['s01', 's02', 's03'],
    });
    const before = await fleet.store.credentials.require(T, credential.id);

    const error = await alice.keys.rotate(credential.id).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CapabilityMissingError);
    expect((error as CapabilityMissingError).message).toContain('login');
    expect((error as CapabilityMissingError).message).toContain('s01');

    expect(calls).toEqual([]);
    expect(await fleet.store.credentials.require(T, credential.id)).toEqual(before);
    expect(await fleet.store.jobs.listAll(T, { where: { kind: 'key-rotation' } })).toEqual([]);
    const refs = secretRefs(before);
    expect(await secrets.get(refs.current)).toBe(pair.privateKey);
    expect(await secrets.get(refs.next)).toBeUndefined();
  });
});
