/**
 * `@fleetward/testkit/aws`: a wire-level AWS fake on loopback (SSM, EC2, STS, EC2 Instance
 * Connect) for tests that use the official SDK v3 clients. See the testkit README, "AWS fake".
 *
 * @module @fleetward/testkit/aws
 */
export { SSM_STDERR_LIMIT, SSM_STDOUT_LIMIT, startAwsFake } from './fake.js';
export { LAB_SSM_ORCHESTRATION_DIR, labHostInstanceConnect, labHostRunner } from './lab-runner.js';
export type {
  AwsFake,
  AwsFakeAccountSpec,
  AwsFakeFaults,
  AwsFakeInstance,
  AwsFakeInstanceSpec,
  AwsFakeInstanceState,
  AwsFakeInvocationStatus,
  AwsFakeIssuedCredentials,
  AwsFakeOptions,
  AwsFakePingStatus,
  AwsFakeRequest,
  AwsFakeRoleSpec,
  AwsFakeRunner,
  AwsFakeRunResult,
  AwsFakeSnapshot,
  AwsFakeVolumeSpec,
} from './types.js';
