import { type Adapter, type AdapterContext, CapabilityMissingError } from '@fleetward/core';

/** The capabilities {@link lazyAdapter} can stand in for. */
export type LazyCapability = 'exec' | 'discover' | 'snapshot' | 'ephemeralKeys' | 'login';

/**
 * An adapter named `name` with `capabilities` that creates the real one (`load`) on the first
 * call of any of them, attaches it to the Fleet this one was attached to, and closes it with it.
 * @throws CapabilityMissingError from a capability the loaded adapter turns out not to have.
 */
export function lazyAdapter(
  name: string,
  capabilities: readonly LazyCapability[],
  load: () => Promise<Adapter>,
): Adapter {
  let loaded: Promise<Adapter> | undefined;
  let context: AdapterContext | undefined;
  const real = () => {
    loaded ??= load().then((adapter) => {
      if (context) adapter.attach?.(context);
      return adapter;
    });
    return loaded;
  };
  const need = async <C extends (typeof capabilities)[number]>(capability: C) => {
    const found = (await real())[capability];
    if (!found) throw new CapabilityMissingError(`adapter ${name} has no ${capability} capability`);
    return found as NonNullable<Adapter[C]>;
  };
  const has = (c: (typeof capabilities)[number]) => capabilities.includes(c);
  return {
    name,
    ...(has('exec') ? { exec: { exec: async (...a) => (await need('exec')).exec(...a) } } : {}),
    ...(has('discover')
      ? { discover: { discover: async (...a) => (await need('discover')).discover(...a) } }
      : {}),
    ...(has('snapshot')
      ? { snapshot: { snapshot: async (...a) => (await need('snapshot')).snapshot(...a) } }
      : {}),
    ...(has('ephemeralKeys')
      ? { ephemeralKeys: { offer: async (...a) => (await need('ephemeralKeys')).offer(...a) } }
      : {}),
    ...(has('login') ? { login: { probe: async (...a) => (await need('login')).probe(...a) } } : {}),
    attach(c) {
      context = c;
    },
    async close() {
      // A load that failed (e.g. an unreadable file) has nothing to close; its error was reported.
      const adapter = await loaded?.catch(() => undefined);
      await adapter?.close?.();
    },
  };
}
