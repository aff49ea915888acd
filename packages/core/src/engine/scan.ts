import type { OsFacts, ScanResultInput, Server } from '../domain/index.js';
import { CapabilityMissingError, CommandFailedError, ParseError, toFleetwardError } from '../errors.js';
import { aptDriver } from '../os/apt.js';
import { dnfDriver, yumDriver } from '../os/dnf.js';
import type { PackageManagerDriver } from '../os/driver.js';
import { parseOsRelease } from '../os/os-release.js';
import { parseWindowsOs, windowsOsCommand, windowsUpdateDriver } from '../os/windows-update.js';
import { zypperDriver } from '../os/zypper.js';
import type { Adapter, Command, ExecCapability } from '../ports/adapter.js';
import { runCommand } from './exec.js';

/** The drivers core knows, tried in order against a host's OS facts. */
export const DEFAULT_DRIVERS: readonly PackageManagerDriver[] = [
  aptDriver,
  dnfDriver,
  yumDriver,
  zypperDriver,
  windowsUpdateDriver,
];

export interface ScanServerContext {
  adapter: Adapter;
  drivers: readonly PackageManagerDriver[];
  signal?: AbortSignal;
  /** @default 600_000 */
  timeoutMs?: number;
}

function run(exec: ExecCapability, server: Server, command: Command, ctx: ScanServerContext) {
  return runCommand({ name: 'scan', exec }, server, command, ctx);
}

/**
 * Whether a server is scanned as Windows: its stored OS family says so (discovery of Windows
 * instances sets it, users can), or it is reached over WinRM, which only Windows hosts serve.
 * Such a server must never be sent `cat /etc/os-release`.
 */
export function isWindowsServer(server: Server): boolean {
  return server.os?.family === 'windows' || server.provider === 'winrm';
}

/**
 * Reads the OS facts over `exec`: on a Windows server ({@link isWindowsServer}) PowerShell reads
 * `Win32_OperatingSystem`; elsewhere `/etc/os-release`, then `uname -r -m` for kernel and architecture.
 */
export async function detectOs(
  exec: ExecCapability,
  server: Server,
  ctx: ScanServerContext,
): Promise<OsFacts> {
  if (isWindowsServer(server)) {
    return parseWindowsOs(await run(exec, server, windowsOsCommand(), ctx));
  }
  const release = await run(exec, server, { argv: ['cat', '/etc/os-release'] }, ctx);
  if (release.exitCode !== 0) {
    throw new CommandFailedError(
      `cannot read /etc/os-release on ${server.name}: ${release.stderr.trim() || `exit ${release.exitCode}`}`,
    );
  }
  const facts = parseOsRelease(release.stdout);
  const uname = await run(exec, server, { argv: ['uname', '-r', '-m'] }, ctx);
  const [kernel, arch] = uname.stdout.trim().split(/\s+/);
  return { ...facts, ...(kernel ? { kernel } : {}), ...(arch ? { arch } : {}) };
}

/**
 * Scans one server: the adapter's native scan when it has one, else `exec` with the OS driver.
 * Resolves the fields of a ScanResult; failures throw a FleetwardError.
 */
export async function scanServer(
  server: Server,
  ctx: ScanServerContext,
): Promise<Omit<ScanResultInput, 'tenantId' | 'serverId' | 'scannedAt' | 'status'>> {
  if (ctx.adapter.scan) {
    const native = await ctx.adapter.scan.scan(server, ctx.signal ? { signal: ctx.signal } : {});
    return {
      packageManager: 'native',
      patches: native.patches,
      rebootRequired: native.rebootRequired,
      ...(native.os ? { os: native.os } : {}),
    };
  }
  const exec = ctx.adapter.exec;
  if (!exec) {
    throw new CapabilityMissingError(
      `adapter ${ctx.adapter.name} can neither scan nor exec, so ${server.name} cannot be scanned`,
    );
  }
  const os = await detectOs(exec, server, ctx);
  const driver = ctx.drivers.find((d) => d.supports(os));
  if (!driver) {
    throw new CapabilityMissingError(
      `no package manager driver for ${os.prettyName || os.id} (family ${os.family}) on ${server.name}`,
    );
  }
  const output = await run(exec, server, driver.scanCommand(), ctx);
  try {
    const parsed = driver.parseScan(output);
    return {
      os: { ...os, packageManager: driver.manager },
      packageManager: driver.manager,
      patches: parsed.patches,
      rebootRequired: parsed.rebootRequired,
      rebootPackages: parsed.rebootPackages,
      warnings: parsed.warnings,
    };
  } catch (error) {
    if (error instanceof ParseError || error instanceof CommandFailedError) throw error;
    throw toFleetwardError(error, `parsing ${driver.manager} output from ${server.name}`);
  }
}
