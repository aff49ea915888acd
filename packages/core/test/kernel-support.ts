import { createLocalAdapter, createMemoryStore, type Store } from '@fleetward/core';
import { type CallContext, createCallContext, Runtime, type RuntimeOptions } from '@fleetward/core/kernel';
import { ManualClock } from '@fleetward/testkit';

/** The tenant every kernel fixture sets up. */
export const KERNEL_TENANT = 'acme';
/** Its first principal, bound to a role that allows every action on everything of the tenant. */
export const KERNEL_ADMIN = 'admin';

/** A kernel runtime over a memory store with one bootstrapped tenant, and contexts to call it with. */
export interface KernelFixture {
  runtime: Runtime;
  store: Store;
  /** The fixture's clock (`clock.advance(ms)` moves it). */
  clock: ManualClock;
  tenantId: string;
  /** A call context of `principalId` in the tenant (the principal need not exist). */
  ctx(principalId?: string): CallContext;
}

/**
 * Builds a {@link Runtime} (memory store, local adapter, manual clock) without a Fleet and writes
 * a tenant straight through the store: the tenant, {@link KERNEL_ADMIN} and an allow-everything
 * role bound to it. Options override the runtime's (e.g. `adapters`, `secrets`, `auditSigningKey`).
 */
export async function kernelFixture(
  options: Partial<Omit<RuntimeOptions, 'clock'>> = {},
): Promise<KernelFixture> {
  const clock = new ManualClock('2026-05-01T00:00:00.000Z');
  const store = options.store ?? createMemoryStore({ clock });
  const runtime = new Runtime({ store, adapters: [createLocalAdapter()], clock, ...options });
  const tenantId = KERNEL_TENANT;
  await store.transaction(async (tx) => {
    await tx.tenants.create({ tenantId, id: tenantId, name: 'Acme' });
    await tx.principals.create({
      tenantId,
      id: KERNEL_ADMIN,
      name: 'Admin',
      kind: 'human',
      affiliation: 'employee',
    });
    await tx.roles.create({
      tenantId,
      id: 'everything',
      name: 'Everything',
      rules: [{ effect: 'allow', actions: ['*'] }],
    });
    await tx.roleBindings.create({ tenantId, principalId: KERNEL_ADMIN, roleId: 'everything' });
  });
  return {
    runtime,
    store,
    clock,
    tenantId,
    ctx: (principalId = KERNEL_ADMIN) => createCallContext(runtime, { tenantId, principalId }),
  };
}

/** Adds a principal with no role binding: every decision on it denies. */
export async function addUnboundPrincipal(fixture: KernelFixture, id: string): Promise<void> {
  await fixture.store.principals.create({
    tenantId: fixture.tenantId,
    id,
    name: id,
    kind: 'human',
    affiliation: 'employee',
  });
}
