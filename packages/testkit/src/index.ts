export { ManualClock } from './clock.js';
export { SAMPLE_CHANGES, sampleInput } from './fixtures.js';
export {
  describeStoreConformance,
  STORE_CONFORMANCE_GROUPS,
  type StoreConformanceContext,
  type StoreConformanceGroup,
  type StoreConformanceOptions,
} from './store-conformance.js';
