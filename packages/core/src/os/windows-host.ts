import { z } from 'zod';
import { CommandFailedError, ParseError } from '../errors.js';
import type { ScriptCommand } from '../ports/adapter.js';
import type { CommandOutput } from './driver.js';
import { POWERSHELL_STDIN, parseWindowsJson } from './windows-shared.js';

/** First line of the script that reads the last boot time. */
export const WINDOWS_BOOT_MARKER = '# fleetward:windows-boot v1';
/** First line of the script that asks for a restart. */
export const WINDOWS_REBOOT_MARKER = '# fleetward:windows-reboot v1';
/** First line of the patch preflight script. */
export const WINDOWS_PREFLIGHT_MARKER = '# fleetward:windows-preflight v1';

const BOOT_SCRIPT = `${WINDOWS_BOOT_MARKER}
$ErrorActionPreference = 'Stop'
[Console]::Out.Write((Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o'))
exit 0
`;

/**
 * Restarts in 5 seconds, so the session that asked ends cleanly first; reason "Operating System:
 * Hot fix (Planned)" in the event log, with a comment naming Fleetward. `shutdown.exe` returns as
 * soon as the restart is scheduled.
 */
const REBOOT_SCRIPT = `${WINDOWS_REBOOT_MARKER}
$ErrorActionPreference = 'Stop'
& shutdown.exe /r /t 5 /d p:2:17 /c 'Fleetward: restart after patching'
exit $LASTEXITCODE
`;

/**
 * Preflight of a patch run on Windows: whether the login is an elevated administrator (the Update
 * Agent and Task Scheduler need it), the free space of the system drive, the Windows Update
 * service's start mode and state, and whether the agent's installer is busy (null when the
 * installer cannot be asked from this session).
 */
const PREFLIGHT_SCRIPT = `${WINDOWS_PREFLIGHT_MARKER}
$ErrorActionPreference = 'Stop'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
$fw_admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
$fw_drive = Get-CimInstance -ClassName Win32_LogicalDisk -Filter ("DeviceID='{0}'" -f $env:SystemDrive)
$fw_service = Get-CimInstance -ClassName Win32_Service -Filter "Name='wuauserv'"
$fw_busy = $null
try { $fw_busy = [bool](New-Object -ComObject Microsoft.Update.Session).CreateUpdateInstaller().IsBusy } catch { }
[Console]::Out.Write((ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ admin = [bool]$fw_admin; drive = [string]$env:SystemDrive; freeMiB = [int64][math]::Floor($fw_drive.FreeSpace / 1MB); serviceStartMode = [string]$fw_service.StartMode; serviceState = [string]$fw_service.State; installerBusy = $fw_busy })))
exit 0
`;

/** The command that prints the last boot time (UTC, ISO 8601): a new value proves a restart. */
export function windowsBootTimeCommand(): ScriptCommand {
  return { interpreter: [...POWERSHELL_STDIN], script: BOOT_SCRIPT };
}

/**
 * Parses {@link windowsBootTimeCommand}'s output.
 * @returns the boot time exactly as printed (it identifies the boot; it is compared, not computed with).
 * @throws CommandFailedError when the command failed or printed something else.
 */
export function parseWindowsBootTime(output: CommandOutput): string {
  const text = output.stdout.replace(/^\uFEFF/, '').trim();
  if (output.exitCode !== 0 || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?Z$/.test(text)) {
    throw new CommandFailedError(
      `cannot read the last boot time: ${output.stderr.trim().slice(0, 300) || (output.exitCode === 0 ? `unexpected output ${JSON.stringify(text.slice(0, 80))}` : `exit ${output.exitCode}`)}`,
    );
  }
  return text;
}

/** The command that schedules a restart in 5 seconds (`shutdown.exe /r`). */
export function windowsRebootCommand(): ScriptCommand {
  return { interpreter: [...POWERSHELL_STDIN], script: REBOOT_SCRIPT };
}

/** The command that reads what a patch run checks first on a Windows host. */
export function windowsPreflightCommand(): ScriptCommand {
  return { interpreter: [...POWERSHELL_STDIN], script: PREFLIGHT_SCRIPT };
}

/** The object {@link windowsPreflightCommand} prints. */
export const WindowsPreflightSchema = z.strictObject({
  admin: z.boolean(),
  drive: z.string().max(8),
  freeMiB: z.number().int().min(0),
  serviceStartMode: z.string().max(32),
  serviceState: z.string().max(32),
  installerBusy: z.boolean().nullable(),
});

/** What {@link windowsPreflightCommand} found. */
export type WindowsPreflight = z.infer<typeof WindowsPreflightSchema>;

/**
 * Parses {@link windowsPreflightCommand}'s output.
 * @throws CommandFailedError when the command failed; ParseError when the output is not the object.
 */
export function parseWindowsPreflight(output: CommandOutput): WindowsPreflight {
  if (output.exitCode !== 0) {
    throw new CommandFailedError(
      `Windows preflight failed: ${output.stderr.trim().slice(0, 500) || `exit ${output.exitCode}`}`,
    );
  }
  const parsed = WindowsPreflightSchema.safeParse(parseWindowsJson(output.stdout, 'Windows preflight'));
  if (!parsed.success) {
    throw new ParseError('Windows preflight output is not the expected object', {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  return parsed.data;
}
