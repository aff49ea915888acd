/**
 * `@fleetward/testkit/sim`: a simulated fleet for scale tests and benchmarks — thousands of servers
 * behind one adapter with `exec`, `scan` and `install`, configurable latency, failure and
 * unreachability rates, and pending patches drawn from a realistic distribution. Deterministic for
 * a seed. Not a transport to deploy: it reaches no server. See the testkit README, "Simulated fleet".
 *
 * @module @fleetward/testkit/sim
 */
export {
  createSimulatedFleet,
  type SimulatedFleet,
  type SimulatedFleetStats,
  type SimulatedServerInput,
} from './fleet.js';
export type { SimulatedFleetOptions, SimulatedLatency, SimulatedPatches } from './options.js';
