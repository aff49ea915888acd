import {
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  ValidationError,
} from '@fleetward/core';
import { beforeEach, describe, expect, it } from 'vitest';

const input = {
  tenant: { id: 'acme', name: 'Acme' },
  admin: { id: 'alice', name: 'Alice', kind: 'human' as const, affiliation: 'employee' as const },
};

describe('ensureTenant', () => {
  let fleet: Fleet;
  beforeEach(() => {
    fleet = createFleet({ store: createMemoryStore(), adapters: [createLocalAdapter()] });
  });

  it('ensureTenant — creates the tenant once; a second run changes nothing and says so', async () => {
    expect(await fleet.ensureTenant(input)).toEqual({ tenantId: 'acme', adminId: 'alice', created: true });
    const audited = (await fleet.store.audit.list('acme')).length;
    expect(await fleet.ensureTenant(input)).toEqual({ tenantId: 'acme', adminId: 'alice', created: false });
    expect((await fleet.store.audit.list('acme')).length).toBe(audited);
    const alice = fleet.as({ tenantId: 'acme', principalId: 'alice' });
    expect((await alice.iam.listPrincipals()).map((p) => p.id)).toEqual(['alice']);
  });

  it('ensureTenant — two callers at once: one creates, the other finds it', async () => {
    const outcomes = await Promise.all([fleet.ensureTenant(input), fleet.ensureTenant(input)]);
    expect(outcomes.map((o) => o.created).sort()).toEqual([false, true]);
  });

  it('ensureTenant — an existing tenant with another name or without this admin is a ConflictError, and nothing is written', async () => {
    await fleet.ensureTenant(input);
    const before = (await fleet.store.audit.list('acme')).length;
    await expect(fleet.ensureTenant({ ...input, tenant: { id: 'acme', name: 'Other' } })).rejects.toThrow(
      ConflictError,
    );
    await expect(
      fleet.ensureTenant({ ...input, admin: { ...input.admin, id: 'mallory', name: 'Mallory' } }),
    ).rejects.toThrow(/mallory is not its tenant admin/);
    expect(await fleet.store.principals.get('acme', 'mallory')).toBeUndefined();
    expect((await fleet.store.audit.list('acme')).length).toBe(before);
  });

  it('ensureTenant — input that is not an object, or whose fields do not fit, is a ValidationError', async () => {
    for (const bad of [null, [], 'acme', { tenant: { id: '../x', name: 'X' }, admin: input.admin }]) {
      await expect(fleet.ensureTenant(bad as never)).rejects.toThrow(ValidationError);
    }
  });
});
