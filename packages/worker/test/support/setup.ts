import { randomBytes } from 'node:crypto';
import { type Adapter, createFleet, type Fleet, type FleetSession, type Store } from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import {
  createSimulatedFleet,
  type SimulatedFleet,
  type SimulatedFleetOptions,
} from '@fleetward/testkit/sim';
import { createRolloutQueue, type PostgresRolloutQueue } from '@fleetward/worker';
import pg from 'pg';
import { POSTGRES_URL } from '../../../store-postgres/test/support/postgres.js';

export { describeWithPostgres, POSTGRES_URL } from '../../../store-postgres/test/support/postgres.js';

export const TENANT = 'acme';
/** The tenant of `deploy`'s second fleet, when it has one. */
export const OTHER_TENANT = 'beta';
export const SCRIPT = { name: 'uptime', interpreter: 'sh' as const, body: 'uptime\n' };

/** One deployment of a test: a PostgreSQL store and queue in fresh schemas, and a simulated fleet in it. */
export interface Deployment {
  storeSchema: string;
  queueSchema: string;
  sim: SimulatedFleet;
  /** The second tenant's fleet (adapter `sim-beta`), when `deploy` was given one. */
  other?: { sim: SimulatedFleet; admin: FleetSession };
  /** The process that starts runs: a Fleet submitting to the queue. */
  fleet: Fleet;
  queue: PostgresRolloutQueue;
  admin: FleetSession;
  /**
   * Another process's view: a store, a queue and a Fleet of its own over the same database; `wrap`
   * may wrap the simulated adapters (to watch the calls, say).
   */
  open(
    wrap?: (adapter: Adapter) => Adapter,
  ): Promise<{ store: Store; queue: PostgresRolloutQueue; fleet: Fleet }>;
  close(): Promise<void>;
}

const fresh = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/**
 * Creates the schemas, the tenant with its admin, the servers (one transaction) and the script;
 * with `second`, also tenant `beta` with a simulated fleet of its own.
 */
export async function deploy(
  options: SimulatedFleetOptions,
  second?: Omit<SimulatedFleetOptions, 'adapterName' | 'idPrefix'>,
): Promise<Deployment> {
  const storeSchema = fresh('fw_wstore');
  const queueSchema = fresh('fw_wqueue');
  const sim = createSimulatedFleet(options);
  const otherSim = second
    ? createSimulatedFleet({ ...second, adapterName: 'sim-beta', idPrefix: 'beta-' })
    : undefined;
  const opened: Array<{ close(): Promise<void> }> = [];
  const open = async (wrap: (adapter: Adapter) => Adapter = (a) => a) => {
    const store = await createPostgresStore({ connectionString: POSTGRES_URL, schema: storeSchema });
    const queue = await createRolloutQueue({
      connectionString: POSTGRES_URL,
      schema: queueSchema,
      retryDelaySeconds: 0,
    });
    const adapters = (otherSim ? [sim.adapter, otherSim.adapter] : [sim.adapter]).map(wrap);
    const fleet = createFleet({ store, adapters, rollouts: queue });
    opened.push(queue, fleet);
    return { store, queue, fleet };
  };
  const { fleet, queue } = await open();
  const tenant = async (id: string, simulated: SimulatedFleet) => {
    await fleet.bootstrapTenant({
      tenant: { id, name: id },
      admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
    });
    await fleet.store.transaction(async (tx) => {
      for (const server of simulated.servers) await tx.servers.create({ tenantId: id, ...server });
    });
    const admin = fleet.as({ tenantId: id, principalId: 'admin' });
    await admin.scripts.add(SCRIPT);
    return admin;
  };
  const admin = await tenant(TENANT, sim);
  const other = otherSim ? { sim: otherSim, admin: await tenant(OTHER_TENANT, otherSim) } : undefined;
  return {
    storeSchema,
    queueSchema,
    sim,
    ...(other ? { other } : {}),
    fleet,
    queue,
    admin,
    open,
    async close() {
      for (const o of opened.reverse()) await o.close().catch(() => undefined);
      await dropSchemas(storeSchema, queueSchema);
    },
  };
}

/** Drops a deployment's store schema, queue schema and pg-boss schema. */
export async function dropSchemas(storeSchema: string, queueSchema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    for (const schema of [storeSchema, queueSchema, `${queueSchema}_boss`]) {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  } finally {
    await client.end();
  }
}
