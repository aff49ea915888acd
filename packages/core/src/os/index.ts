/**
 * The OS package-manager drivers and parsers (apt, dnf/yum, zypper, os-release), for adapter
 * authors and tools that scan without a Fleet.
 *
 * @module @fleetward/core/os
 */

export {
  DEFAULT_DRIVERS,
  detectOs,
  isWindowsServer,
  type ScanServerContext,
  scanServer,
} from '../engine/scan.js';
export {
  type AptKeptBack,
  type AptPolicy,
  type AptSimulatedInstall,
  type AptSimulation,
  aptDriver,
  isSecurityOrigin,
  parseAptCachePolicy,
  parseAptSimulation,
  refreshCommand as aptRefreshCommand,
} from './apt.js';
export { dnfDriver, dnfRefreshCommand, yumDriver, yumRefreshCommand } from './dnf.js';
export type { CommandOutput, PackageManagerDriver, ParsedScan, ResolvedTransaction } from './driver.js';
export { OS_RELEASE_COMMAND, parseOsRelease } from './os-release.js';
export {
  parseWindowsOs,
  parseWindowsUpdateScan,
  WINDOWS_CLASSIFICATION_CATEGORIES,
  WINDOWS_OS_MARKER,
  WINDOWS_UPDATE_HRESULTS,
  WINDOWS_UPDATE_SCAN_MARKER,
  type WindowsUpdateEntry,
  WindowsUpdateEntrySchema,
  windowsOsCommand,
  windowsSeverity,
  windowsUpdateDriver,
} from './windows-update.js';
export { zypperDriver, zypperRefreshCommand } from './zypper.js';
