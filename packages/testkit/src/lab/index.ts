/**
 * `@fleetward/testkit/lab`: real servers on one machine for Fleetward's tests. See docs/lab.md.
 *
 * @module @fleetward/testkit/lab
 */
export {
  LAB_APT_SECURITY_SUITE,
  LAB_APT_UPDATES_SUITE,
  LAB_DEFAULT_ADVISORIES,
  LAB_DEFAULT_APT_SUITES,
  LAB_DEFAULT_CONTENT,
  LAB_DEFAULT_DEB_INSTALLED,
  LAB_DEFAULT_DISK_SIZE_MB,
  LAB_DEFAULT_RPM_INSTALLED,
  LAB_DEFAULT_RPM_REPOSITORY,
  LAB_DEFAULT_USERS,
} from './defaults.js';
export {
  LabCommandError,
  LabError,
  LabHostDownError,
  LabOptionsError,
  LabUnavailableError,
} from './errors.js';
export { sshFingerprint } from './keys.js';
export { startLab } from './lab.js';
export { labPrerequisites } from './prerequisites.js';
export type {
  AdvisorySeverity,
  AdvisorySpec,
  AdvisoryType,
  AptSuiteSpec,
  LabPackageSpec,
  RpmRepositorySpec,
} from './repos/types.js';
export {
  cleanupLabs,
  cleanupLabsSync,
  findLeftovers,
  isClean,
  LAB_RUN_DIR,
  type LabCleanupReport,
  type LabLeftovers,
} from './state.js';
export {
  LAB_FLAVOURS,
  type Lab,
  type LabAptContent,
  type LabAptPublish,
  type LabContent,
  type LabCredentials,
  type LabEndpoint,
  type LabExecOptions,
  type LabExecResult,
  type LabFlavour,
  type LabHeldFault,
  type LabHost,
  type LabHostKey,
  type LabHostKeys,
  type LabHostSpec,
  type LabHostState,
  type LabHostUsers,
  type LabOptions,
  type LabPublishInput,
  type LabRpmContent,
  type LabSlowProxy,
  type LabSudoMode,
  type LabUserSpec,
} from './types.js';
export { describeWithLab, labSkipReason } from './vitest.js';
