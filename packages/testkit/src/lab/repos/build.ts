/**
 * Builders for the lab's package repositories: real `.deb`/`.rpm` files and real apt and RPM
 * (dnf/yum/zypper) repositories on disk, from the specs in `./types.ts`. Every tool runs via
 * argv (execFile), never a shell, and nothing touches the host's package state.
 *
 * Needs `dpkg-deb` for apt, and `rpmbuild`, `createrepo_c`, `modifyrepo_c` for RPM
 * (Debian packages `dpkg`, `rpm`, `createrepo-c`).
 */
export { type AptRepositoryOptions, buildAptRepository, buildDeb } from './apt.js';
export { formatArgv, type RunToolOptions, runTool, ToolError, type ToolResult } from './exec.js';
export { buildRpm, buildRpmRepository, type RpmRepositoryOptions } from './rpm.js';
export {
  ADVISORY_ID,
  APT_SUITE,
  DEB_ARCH,
  debFileName,
  LAB_MAINTAINER,
  LAB_PACKAGE_NAME,
  LAB_RELEASE,
  LAB_SOURCE_DATE_EPOCH,
  LAB_VERSION,
  packageFileName,
  packageVersion,
  type ResolvedPackage,
  RPM_ARCH,
  resolveDebPackage,
  resolveRpmPackage,
  rpmFileName,
  validateLabPackageSpec,
} from './spec.js';
export type {
  AdvisorySeverity,
  AdvisorySpec,
  AdvisoryType,
  AptSuiteSpec,
  LabPackageSpec,
  RpmRepositorySpec,
} from './types.js';
export { renderUpdateinfo, xmlEscape } from './updateinfo.js';
