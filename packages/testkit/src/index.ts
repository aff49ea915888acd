export { ManualClock } from './clock.js';
export { SAMPLE_CHANGES, sampleInput } from './fixtures.js';
export { describeIfAvailable, prerequisitesRequired } from './requirements.js';
export {
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
