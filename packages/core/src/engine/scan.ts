import type { OsFacts, ScanResultInput, Server } from '../domain/index.js';
import { CapabilityMissingError, CommandFailedError, ParseError, toFleetwardError } from '../errors.js';
import { aptDriver } from '../os/apt.js';
import { dnfDriver, yumDriver } from '../os/dnf.js';
import type { CommandOutput, PackageManagerDriver } from '../os/driver.js';
import {
  OS_FACTS_COMMAND,
  OS_FACTS_SCRIPT,
  type OsFactsOutput,
  parseOsRelease,
  splitOsFacts,
} from '../os/os-release.js';
import { parseWindowsOs, windowsOsCommand, windowsUpdateDriver } from '../os/windows-update.js';
import { zypperDriver } from '../os/zypper.js';
import type { Adapter, Command, ExecCapability, ScriptCommand } from '../ports/adapter.js';
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
 * `Win32_OperatingSystem`; elsewhere one shell prints `/etc/os-release` and `uname -r -m` (kernel
 * and architecture) in one round trip.
 * @throws CommandFailedError when `/etc/os-release` cannot be read.
 */
export async function detectOs(
  exec: ExecCapability,
  server: Server,
  ctx: ScanServerContext,
): Promise<OsFacts> {
  if (isWindowsServer(server)) {
    return parseWindowsOs(await run(exec, server, windowsOsCommand(), ctx));
  }
  return osFactsOf(splitOsFacts(await run(exec, server, OS_FACTS_COMMAND, ctx)), server);
}

function osFactsOf(split: OsFactsOutput, server: Server): OsFacts {
  if (split.osRelease === null) {
    throw new CommandFailedError(`cannot read /etc/os-release on ${server.name}: ${split.failure}`);
  }
  const facts = parseOsRelease(split.osRelease);
  return {
    ...facts,
    ...(split.kernel ? { kernel: split.kernel } : {}),
    ...(split.arch ? { arch: split.arch } : {}),
  };
}

/**
 * The driver the server's stored OS facts name, when its scan is a POSIX shell script that can
 * follow {@link OS_FACTS_SCRIPT} in the same shell.
 */
function expectedScript(
  server: Server,
  drivers: readonly PackageManagerDriver[],
): { driver: PackageManagerDriver; command: ScriptCommand } | undefined {
  const stored = server.os;
  if (!stored?.packageManager) return undefined;
  const driver = drivers.find((d) => d.supports(stored));
  if (!driver || driver.manager !== stored.packageManager) return undefined;
  const command = driver.scanCommand();
  if (!('script' in command) || command.interpreter.join(' ') !== 'sh -s') return undefined;
  return { driver, command };
}

/**
 * OS facts and the scan output of the driver that serves them. When the stored OS names the
 * package manager, detection and scan run as one script, in one round trip; if the host turns out
 * to need another driver now (it was reinstalled), that driver's scan runs after it.
 */
async function detectAndScan(
  exec: ExecCapability,
  server: Server,
  ctx: ScanServerContext,
): Promise<{ os: OsFacts; driver: PackageManagerDriver; output: CommandOutput }> {
  const expected = isWindowsServer(server) ? undefined : expectedScript(server, ctx.drivers);
  let os: OsFacts;
  let early: CommandOutput | undefined;
  if (expected) {
    const { command } = expected;
    const both = await run(exec, server, { ...command, script: `${OS_FACTS_SCRIPT}${command.script}` }, ctx);
    const split = splitOsFacts(both);
    os = osFactsOf(split, server);
    early = split.rest;
  } else {
    os = await detectOs(exec, server, ctx);
  }
  const driver = ctx.drivers.find((d) => d.supports(os));
  if (!driver) {
    throw new CapabilityMissingError(
      `no package manager driver for ${os.prettyName || os.id} (family ${os.family}) on ${server.name}`,
    );
  }
  const output =
    early && driver === expected?.driver ? early : await run(exec, server, driver.scanCommand(), ctx);
  return { os, driver, output };
}

/**
 * Scans one server: the adapter's native scan when it has one, else `exec` with the OS driver.
 * A server whose stored OS facts name its package manager is detected and scanned in one round
 * trip; otherwise detection (one round trip) comes first.
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
  const { os, driver, output } = await detectAndScan(exec, server, ctx);
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
