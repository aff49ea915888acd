import { z } from 'zod';
import type { OsFacts, PatchCategory, PendingPatch, Severity } from '../domain/index.js';
import { CommandFailedError, ParseError } from '../errors.js';
import type { ScriptCommand } from '../ports/adapter.js';
import {
  type CommandOutput,
  checkScannedPatches,
  type PackageManagerDriver,
  type ParsedScan,
} from './driver.js';
import {
  POWERSHELL_STDIN,
  parseWindowsJson as parseJson,
  WINDOWS_UPDATE_HRESULTS,
} from './windows-shared.js';
import {
  parseWindowsUpdateInstall,
  parseWindowsUpdateInstalled,
  windowsUpdateInstallCommand,
  windowsUpdateInstalledCommand,
} from './windows-update-install.js';

/** First line of the scan script: lets a host emulation (the WinRM fake) recognise it. */
export const WINDOWS_UPDATE_SCAN_MARKER = '# fleetward:windows-update-scan v1';
/** First line of the Windows OS detection script. */
export const WINDOWS_OS_MARKER = '# fleetward:windows-os v1';

/**
 * The scan script. Constant text: nothing is interpolated into it.
 *
 * `-Command -` runs stdin statement by statement as it is read, and a multi-line block is only
 * run once a blank line follows it (PowerShell issue #3223): every block ends with a blank line.
 * The COM error reaches the catch wrapped in a MethodInvocationException: the innermost
 * exception carries the agent's HRESULT. Setting the console encoding can fail in a session without
 * a console; the default is kept then.
 * The Update Agent's downloader, installer and `ISystemInformation` are not available from a
 * remote (WinRM) session, the searcher is; so pending reboot comes from the registry keys the
 * servicing stack and the agent set, not from `Microsoft.Update.SystemInfo`.
 */
const SCAN_SCRIPT = `${WINDOWS_UPDATE_SCAN_MARKER}
# Read-only: searches the Windows Update Agent; never downloads, installs or changes settings.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
try {
  $fw_result = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher().Search("IsInstalled=0 and Type='Software' and IsHidden=0")
} catch {
  $fw_e = $_.Exception
  while ($fw_e.InnerException) { $fw_e = $fw_e.InnerException }
  [Console]::Error.WriteLine(('fleetward: Windows Update search failed: HRESULT 0x{0:X8} {1}' -f $fw_e.HResult, $fw_e.Message))
  exit 2
}

# @() on every list: ConvertTo-Json prints a one-element array as the bare element and an empty
# pipeline as null, so a host with one update (or one KB) would print an object, not a list.
# Dates are formatted here: Windows PowerShell 5.1 serialises a DateTime as "\\/Date(ms)\\/".
$fw_updates = @(foreach ($u in $fw_result.Updates) {
  [pscustomobject]@{
    id = [string]$u.Identity.UpdateID
    revision = [int]$u.Identity.RevisionNumber
    title = [string]$u.Title
    kb = @(foreach ($k in $u.KBArticleIDs) { [string]$k })
    severity = $(if ($u.MsrcSeverity) { [string]$u.MsrcSeverity } else { $null })
    categories = @(foreach ($c in $u.Categories) { [string]$c.Name })
    classification = $(foreach ($c in $u.Categories) { if ($c.Type -eq 'UpdateClassification') { [string]$c.Name; break } })
    size = [int64]$u.MaxDownloadSize
    rebootBehavior = [int]$u.InstallationBehavior.RebootBehavior
    released = $(if ($u.LastDeploymentChangeTime) { $u.LastDeploymentChangeTime.ToUniversalTime().ToString('o') } else { $null })
  }
})

$fw_reasons = @()
if (Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\RebootPending') { $fw_reasons += 'ComponentBasedServicing' }
if (Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WindowsUpdate\\Auto Update\\RebootRequired') { $fw_reasons += 'WindowsUpdate' }
if (Get-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue) { $fw_reasons += 'PendingFileRenameOperations' }
$fw_doc = [pscustomobject]@{ updates = $fw_updates; rebootPending = ($fw_reasons.Count -gt 0); rebootReasons = $fw_reasons }
[Console]::Out.Write((ConvertTo-Json -InputObject $fw_doc -Depth 5 -Compress))
exit 0
`;

/** Reads `Win32_OperatingSystem` into one JSON object. Constant text. */
const OS_SCRIPT = `${WINDOWS_OS_MARKER}
$ErrorActionPreference = 'Stop'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
$fw_os = Get-CimInstance -ClassName Win32_OperatingSystem
[Console]::Out.Write((ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ caption = [string]$fw_os.Caption; version = [string]$fw_os.Version; build = [string]$fw_os.BuildNumber; arch = [string]$fw_os.OSArchitecture })))
exit 0
`;

/**
 * The command that reads a Windows host's OS facts (`Win32_OperatingSystem` Caption, Version,
 * BuildNumber, OSArchitecture) as one JSON object; parse it with {@link parseWindowsOs}.
 */
export function windowsOsCommand(): ScriptCommand {
  return { interpreter: [...POWERSHELL_STDIN], script: OS_SCRIPT };
}

const WindowsOsSchema = z.strictObject({
  caption: z.string().max(256),
  version: z.string().regex(/^\d+(?:\.\d+){1,3}$/),
  build: z.string().regex(/^\d{1,10}$/),
  arch: z.string().max(64),
});

/**
 * Parses {@link windowsOsCommand}'s output into OS facts: family and id `windows`, `versionId` the
 * NT version (`10.0.20348`), `prettyName` the caption, `kernel` the version, and `arch`
 * `x86_64`, `arm64` or `x86` from `OSArchitecture` (which Windows prints localised, e.g. `64-bit`).
 * @throws CommandFailedError when the command failed; ParseError when the output is not that object.
 */
export function parseWindowsOs(output: CommandOutput): OsFacts {
  if (output.exitCode !== 0) {
    throw new CommandFailedError(
      `cannot read Win32_OperatingSystem: ${output.stderr.trim().slice(0, 500) || `exit ${output.exitCode}`}`,
    );
  }
  const parsed = WindowsOsSchema.safeParse(parseJson(output.stdout, 'Win32_OperatingSystem'));
  if (!parsed.success) {
    throw new ParseError('Win32_OperatingSystem output is not the expected object', {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const { caption, version, arch } = parsed.data;
  const normalizedArch = /arm/i.test(arch)
    ? 'arm64'
    : /64/.test(arch)
      ? 'x86_64'
      : /32/.test(arch)
        ? 'x86'
        : '';
  return {
    family: 'windows',
    id: 'windows',
    versionId: version,
    prettyName: caption.trim(),
    kernel: version,
    ...(normalizedArch ? { arch: normalizedArch } : {}),
  };
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** One update as the scan script prints it (validated strictly: the host's output is untrusted). */
export const WindowsUpdateEntrySchema = z.strictObject({
  id: z.string().regex(GUID),
  revision: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1),
  title: z.string().max(1024),
  kb: z.array(z.string().regex(/^\d{1,10}$/)).max(64),
  severity: z.enum(['Critical', 'Important', 'Moderate', 'Low', '']).nullable(),
  categories: z.array(z.string().max(256)).max(64),
  classification: z.string().max(256).nullable(),
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  rebootBehavior: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  released: z.iso.datetime({ offset: true }).nullable(),
});

const WuScanSchema = z.strictObject({
  updates: z.array(WindowsUpdateEntrySchema).max(10_000),
  rebootPending: z.boolean(),
  rebootReasons: z.array(z.string().max(128)).max(16),
});

/** One update as the scan script prints it. */
export type WindowsUpdateEntry = z.infer<typeof WindowsUpdateEntrySchema>;

/**
 * Fleetward's category for a Windows Update classification (the category of type
 * `UpdateClassification`); unlisted or missing classifications are `unknown`.
 *
 * | Classification | Category | Why |
 * |---|---|---|
 * | Security Updates | security | fixes a vulnerability (has an MSRC severity) |
 * | Critical Updates | bugfix | Microsoft's "critical, non-security" fixes |
 * | Update Rollups, Updates, Service Packs | bugfix | cumulative or single non-security fixes |
 * | Feature Packs, Upgrades, Tools | enhancement | new functionality |
 * | Definition Updates, Drivers | other | signatures and hardware, neither fix nor feature of the OS |
 */
export const WINDOWS_CLASSIFICATION_CATEGORIES: Readonly<Record<string, PatchCategory>> = Object.freeze({
  'Security Updates': 'security',
  'Critical Updates': 'bugfix',
  'Update Rollups': 'bugfix',
  Updates: 'bugfix',
  'Service Packs': 'bugfix',
  'Feature Packs': 'enhancement',
  Upgrades: 'enhancement',
  Tools: 'enhancement',
  'Definition Updates': 'other',
  Drivers: 'other',
});

/** `MsrcSeverity` to Fleetward's severity; none (non-security updates) is `unspecified`. */
export function windowsSeverity(msrc: string | null): Severity {
  switch (msrc) {
    case 'Critical':
      return 'critical';
    case 'Important':
      return 'important';
    case 'Moderate':
      return 'moderate';
    case 'Low':
      return 'low';
    default:
      return 'unspecified';
  }
}

/** Any failure HRESULT, read on a failed run; on a run that exited 0 only a `WU_E_*` one counts. */
const ANY_HRESULT = /\b0x8[0-9A-F]{7}\b/i;
const WU_HRESULT = /\b0x8024[0-9A-F]{4}\b/i;

function failure(output: CommandOutput): CommandFailedError | undefined {
  const hresult = (output.exitCode === 0 ? WU_HRESULT : ANY_HRESULT).exec(output.stderr)?.[0];
  if (output.exitCode === 0 && hresult === undefined) return undefined;
  const key = hresult && `0x${hresult.slice(2).toUpperCase()}`;
  const explained = key ? WINDOWS_UPDATE_HRESULTS[key] : undefined;
  const message = output.stderr.trim().slice(0, 500) || `exit ${output.exitCode}`;
  return new CommandFailedError(
    `Windows Update scan failed${key ? ` with ${key}` : ''}${explained ? ` (${explained})` : ''}: ${message}`,
    { details: { exitCode: output.exitCode, ...(key ? { hresult: key } : {}) } },
  );
}

/** One pending update as a PendingPatch; `name` is chosen by the caller (unique per scan). */
function toPatch(update: WindowsUpdateEntry, name: string): PendingPatch {
  return {
    name,
    arch: '',
    installedVersion: null,
    candidateVersion: `${update.id.toLowerCase()}.${update.revision}`,
    origins: [{ origin: 'Windows Update', archive: update.classification ?? '' }],
    category: WINDOWS_CLASSIFICATION_CATEGORIES[update.classification ?? ''] ?? 'unknown',
    severity: windowsSeverity(update.severity),
    advisories: update.kb.map((kb) => `KB${kb}`),
    held: false,
    keptBack: false,
    isNew: false,
  };
}

/**
 * Parses the scan script's JSON.
 *
 * - `name` is `KB<n>` of the update's first KB article, or its UpdateID when it has none (or when
 *   an earlier update of the same scan already took that KB name, as a KB can ship as several
 *   updates for different products).
 * - `candidateVersion` is `<UpdateID>.<RevisionNumber>`: the exact identity of the update a plan
 *   pins, so a revised or superseding update is a drift, never a silent substitute.
 * - `installedVersion` is null and `arch` empty (Windows Update has neither); `origins` names
 *   `Windows Update` with the classification as archive; `advisories` lists every KB.
 * - `rebootRequired` is the pending-reboot state the registry keys report now.
 * @throws CommandFailedError on a non-zero exit or an HRESULT on stderr; ParseError on anything
 *   that is not the script's document (never an empty list for garbage).
 */
export function parseWindowsUpdateScan(output: CommandOutput): ParsedScan {
  const failed = failure(output);
  if (failed) throw failed;
  if (output.truncated) {
    throw new ParseError('Windows Update scan output was truncated by the transport', {
      details: { excerpt: output.stdout.slice(0, 200) },
    });
  }
  const parsed = WuScanSchema.safeParse(parseJson(output.stdout, 'Windows Update scan'));
  if (!parsed.success) {
    const fields = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.')}: ${i.message}`)
      .join('; ');
    throw new ParseError(`Windows Update scan output is not the expected document (${fields})`, {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const taken = new Set<string>();
  const patches = parsed.data.updates.map((update) => {
    const kb = update.kb[0];
    const name = kb !== undefined && !taken.has(`KB${kb}`) ? `KB${kb}` : update.id.toLowerCase();
    if (taken.has(name)) {
      throw new ParseError(`Windows Update scan lists update ${name} twice`);
    }
    taken.add(name);
    return toPatch(update, name);
  });
  return {
    patches: checkScannedPatches('Windows Update', patches),
    rebootRequired: parsed.data.rebootPending,
    rebootPackages: [],
    warnings: [],
  };
}

/**
 * The Windows Update driver: pending software updates from the Windows Update Agent searcher, run
 * as PowerShell with the script on stdin; installs exactly the pinned updates (UpdateID and
 * revision) through a SYSTEM scheduled task with a result per update; verifies by the installed
 * identities. Serves hosts whose OS family is `windows`. There is nothing to simulate: Windows
 * Update installs each update by identity, with no dependency pulled in and nothing removed.
 */
export const windowsUpdateDriver: PackageManagerDriver = {
  manager: 'windows-update',
  supports: (os) => os.family === 'windows',
  scanCommand: () => ({ interpreter: [...POWERSHELL_STDIN], script: SCAN_SCRIPT }),
  parseScan: parseWindowsUpdateScan,
  installsExactlySelection: true,
  installCommand: windowsUpdateInstallCommand,
  parseInstall: parseWindowsUpdateInstall,
  installedVersionsCommand: windowsUpdateInstalledCommand,
  parseInstalledVersions: parseWindowsUpdateInstalled,
};
