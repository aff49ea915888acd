/**
 * Conformance suites for stores and transports, a manual clock and sample data, for adapter and
 * store authors' tests.
 *
 * @module @fleetward/testkit
 */
export { ManualClock } from './clock.js';
export { SAMPLE_CHANGES, sampleInput } from './fixtures.js';
export {
  describeIfAvailable,
  itIfAvailable,
  prerequisitesRequired,
  unavailableWithout,
} from './requirements.js';
export {
  type AuditTamper,
  describeStoreConformance,
  STORE_CONFORMANCE_GROUPS,
  type StoreConformanceContext,
  type StoreConformanceGroup,
  type StoreConformanceOptions,
} from './store-conformance.js';
export {
  describeTransportConformance,
  TRANSPORT_CONFORMANCE_GROUPS,
  type TransportConformanceContext,
  type TransportConformanceGroup,
  type TransportConformanceOptions,
  type TransportConformanceSetup,
} from './transport-conformance.js';
