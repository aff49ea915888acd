/**
 * The OS package-manager drivers and parsers (apt, dnf/yum, zypper, Windows Update, os-release),
 * the Windows host commands (preflight, boot time, restart) and the PowerShell runner transports
 * share, for adapter authors and tools that scan without a Fleet.
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
export type {
  CommandOutput,
  InstalledPackageResult,
  PackageManagerDriver,
  ParsedInstall,
  ParsedScan,
  ResolvedTransaction,
} from './driver.js';
export { OS_RELEASE_COMMAND, parseOsRelease } from './os-release.js';
export {
  buildPowerShellInvocation,
  buildPowerShellRunnerScript,
  encodePowerShell,
  POWERSHELL_MAX_COMMAND_LINE,
  type PowerShellInvocation,
} from './powershell-invocation.js';
export {
  buildPowerShellRunner,
  type PowerShellRunnerOptions,
  type PowerShellStdinSource,
} from './powershell-runner.js';
export {
  parseWindowsBootTime,
  parseWindowsPreflight,
  WINDOWS_BOOT_MARKER,
  WINDOWS_PREFLIGHT_MARKER,
  WINDOWS_REBOOT_MARKER,
  type WindowsPreflight,
  WindowsPreflightSchema,
  windowsBootTimeCommand,
  windowsPreflightCommand,
  windowsRebootCommand,
} from './windows-host.js';
export { explainHresult, WINDOWS_UPDATE_HRESULTS } from './windows-shared.js';
export {
  parseWindowsOs,
  parseWindowsUpdateScan,
  WINDOWS_CLASSIFICATION_CATEGORIES,
  WINDOWS_OS_MARKER,
  WINDOWS_UPDATE_SCAN_MARKER,
  type WindowsUpdateEntry,
  WindowsUpdateEntrySchema,
  windowsOsCommand,
  windowsSeverity,
  windowsUpdateDriver,
} from './windows-update.js';
export {
  parseWindowsUpdateInstall,
  parseWindowsUpdateInstalled,
  WINDOWS_UPDATE_INSTALL_MARKER,
  WINDOWS_UPDATE_INSTALLED_MARKER,
  WINDOWS_UPDATE_PINS_ENV,
  windowsUpdateInstallCommand,
  windowsUpdateInstalledCommand,
} from './windows-update-install.js';
export { zypperDriver, zypperRefreshCommand } from './zypper.js';
