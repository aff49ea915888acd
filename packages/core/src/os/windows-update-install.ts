import { z } from 'zod';
import type { PinnedPackage } from '../domain/index.js';
import { CommandFailedError, DriftedError, ParseError, ValidationError } from '../errors.js';
import type { ScriptCommand } from '../ports/adapter.js';
import type { CommandOutput, InstalledPackageResult, ParsedInstall } from './driver.js';
import { explainHresult, POWERSHELL_STDIN, parseWindowsJson } from './windows-shared.js';

/** First line of the install script: lets a host emulation (the WinRM fake) recognise it. */
export const WINDOWS_UPDATE_INSTALL_MARKER = '# fleetward:windows-update-install v1';
/** First line of the script that lists installed updates (for verification). */
export const WINDOWS_UPDATE_INSTALLED_MARKER = '# fleetward:windows-update-installed v1';

/** The environment variable that carries the pins to the install script. */
export const WINDOWS_UPDATE_PINS_ENV = 'FLEETWARD_WU_PINS';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A scanned update's name: `KB<n>`, or its UpdateID when it has no KB of its own. */
const UPDATE_NAME = /^(?:KB\d{1,10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
/** A pinned version: `<UpdateID>.<RevisionNumber>`. */
const UPDATE_VERSION = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(\d{1,10})$/i;

/**
 * The script the SYSTEM scheduled task runs (`-File`, so ordinary PowerShell rules). It reads the
 * pins from `<job>.in`, finds each update by identity (`UpdateID` and `RevisionNumber`, values it
 * re-validates as a GUID and an integer before they enter the search criteria), refuses the whole
 * install when one is no longer offered, waits while another installation runs, downloads and
 * installs the rest, and writes one JSON document to `<job>.json` (through a temporary file and a
 * rename, so the waiting session never reads half of it).
 */
const TASK_SCRIPT = `param([Parameter(Mandatory = $true)][string]$Job)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$fw_out = Join-Path $PSScriptRoot ($Job + '.json')
$fw_entries = New-Object System.Collections.ArrayList
$fw_byId = @{}
$fw_reboot = $false
function Write-FwResult($fw_error) {
  $fw_doc = [pscustomobject]@{ results = @($fw_entries); rebootRequired = $fw_reboot; error = $fw_error }
  $fw_tmp = $fw_out + '.tmp'
  [System.IO.File]::WriteAllText($fw_tmp, (ConvertTo-Json -InputObject $fw_doc -Depth 6 -Compress), (New-Object System.Text.UTF8Encoding $false))
  Move-Item -Force -LiteralPath $fw_tmp -Destination $fw_out
}
function Get-FwHex([int]$fw_code) { '0x{0:X8}' -f $fw_code }
function Get-FwState([int]$fw_code, [string]$fw_ok) {
  switch ($fw_code) { 2 { $fw_ok } 3 { $fw_ok + '-with-errors' } 5 { 'aborted' } default { 'failed' } }
}
try {
  $fw_pins = @([System.IO.File]::ReadAllText((Join-Path $PSScriptRoot ($Job + '.in'))).Split(' ', [System.StringSplitOptions]::RemoveEmptyEntries))
  $fw_session = New-Object -ComObject Microsoft.Update.Session
  $fw_session.ClientApplicationID = 'Fleetward'
  $fw_searcher = $fw_session.CreateUpdateSearcher()
  $fw_wanted = New-Object -ComObject Microsoft.Update.UpdateColl
  foreach ($fw_pin in $fw_pins) {
    $fw_eq = $fw_pin.IndexOf('=')
    $fw_version = $fw_pin.Substring($fw_eq + 1)
    $fw_dot = $fw_version.LastIndexOf('.')
    $fw_id = ([guid]::Parse($fw_version.Substring(0, $fw_dot))).ToString()
    $fw_rev = [int]::Parse($fw_version.Substring($fw_dot + 1), [System.Globalization.CultureInfo]::InvariantCulture)
    $fw_entry = [pscustomobject]@{ name = $fw_pin.Substring(0, $fw_eq); id = $fw_id; revision = $fw_rev; state = 'pending'; resultCode = $null; hresult = $null; rebootRequired = $false }
    $null = $fw_entries.Add($fw_entry)
    $fw_byId[$fw_id] = $fw_entry
    $fw_found = @($fw_searcher.Search(("UpdateID='{0}' and RevisionNumber={1}" -f $fw_id, $fw_rev)).Updates)
    if ($fw_found.Count -eq 0) { $fw_entry.state = 'not-offered' }
    elseif ($fw_found[0].IsInstalled) { $fw_entry.state = 'already-installed' }
    else {
      if (-not $fw_found[0].EulaAccepted) { $fw_found[0].AcceptEula() }
      $null = $fw_wanted.Add($fw_found[0])
    }
  }
  if (@($fw_entries | Where-Object { $_.state -eq 'not-offered' }).Count -gt 0) {
    foreach ($fw_entry in $fw_entries) { if ($fw_entry.state -eq 'pending') { $fw_entry.state = 'skipped' } }
    Write-FwResult $null
    exit 0
  }
  if ($fw_wanted.Count -gt 0) {
    $fw_installer = $fw_session.CreateUpdateInstaller()
    $fw_waited = 0
    while ($fw_installer.IsBusy -and $fw_waited -lt 3600) { Start-Sleep -Seconds 10; $fw_waited += 10 }
    $fw_downloader = $fw_session.CreateUpdateDownloader()
    $fw_downloader.Updates = $fw_wanted
    $fw_download = $fw_downloader.Download()
    $fw_ready = New-Object -ComObject Microsoft.Update.UpdateColl
    for ($fw_i = 0; $fw_i -lt $fw_wanted.Count; $fw_i++) {
      $fw_update = $fw_wanted.Item($fw_i)
      $fw_entry = $fw_byId[$fw_update.Identity.UpdateID]
      $fw_r = $fw_download.GetUpdateResult($fw_i)
      if ($fw_r.ResultCode -eq 2 -or $fw_r.ResultCode -eq 3) { $null = $fw_ready.Add($fw_update) }
      else { $fw_entry.state = 'download-failed'; $fw_entry.resultCode = [int]$fw_r.ResultCode; $fw_entry.hresult = Get-FwHex $fw_r.HResult }
    }
    if ($fw_ready.Count -gt 0) {
      $fw_installer.Updates = $fw_ready
      $fw_install = $fw_installer.Install()
      for ($fw_i = 0; $fw_i -lt $fw_ready.Count; $fw_i++) {
        $fw_entry = $fw_byId[$fw_ready.Item($fw_i).Identity.UpdateID]
        $fw_r = $fw_install.GetUpdateResult($fw_i)
        $fw_entry.state = Get-FwState $fw_r.ResultCode 'installed'
        $fw_entry.resultCode = [int]$fw_r.ResultCode
        if ($fw_r.HResult -ne 0) { $fw_entry.hresult = Get-FwHex $fw_r.HResult }
        $fw_entry.rebootRequired = [bool]$fw_r.RebootRequired
      }
      $fw_reboot = [bool]$fw_install.RebootRequired
    }
  }
  Write-FwResult $null
} catch {
  $fw_e = $_.Exception
  while ($fw_e.InnerException) { $fw_e = $fw_e.InnerException }
  Write-FwResult ([pscustomobject]@{ hresult = (Get-FwHex $fw_e.HResult); message = [string]$fw_e.Message })
}
exit 0
`;

/**
 * The script sent over the transport (`-Command -`, so every multi-line block ends with a blank
 * line). Constant text: the pins arrive in the environment variable {@link WINDOWS_UPDATE_PINS_ENV}
 * and are written to a file as data, the task script is a base64 literal of constant text, and the
 * only values in the task's command line are a path under `%ProgramData%` and a job id this script
 * generated. The Update Agent's downloader and installer refuse remote sessions
 * (`0x80070005`), so the work runs as SYSTEM in a scheduled task this script registers, starts,
 * waits for and unregisters; its result document is printed as the command's output.
 */
const INSTALL_SCRIPT = `${WINDOWS_UPDATE_INSTALL_MARKER}
# Installs exactly the pinned updates (FLEETWARD_WU_PINS: "<name>=<UpdateID>.<revision>", space separated).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
$fw_dir = Join-Path $env:ProgramData 'Fleetward\\windows-update'
$null = New-Item -ItemType Directory -Force -Path $fw_dir
$fw_job = [guid]::NewGuid().ToString('N')
$fw_task = 'Fleetward Windows Update ' + $fw_job
$fw_script = Join-Path $fw_dir 'install-v1.ps1'
$fw_in = Join-Path $fw_dir ($fw_job + '.in')
$fw_out = Join-Path $fw_dir ($fw_job + '.json')
[System.IO.File]::WriteAllText($fw_script, [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('${Buffer.from(TASK_SCRIPT, 'utf8').toString('base64')}')), (New-Object System.Text.UTF8Encoding $true))
[System.IO.File]::WriteAllText($fw_in, [string]$env:${WINDOWS_UPDATE_PINS_ENV})
$fw_action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{0}" -Job {1}' -f $fw_script, $fw_job)
$fw_principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
$fw_settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit (New-TimeSpan -Hours 6)
$null = Register-ScheduledTask -TaskName $fw_task -TaskPath '\\Fleetward\\' -Action $fw_action -Principal $fw_principal -Settings $fw_settings -Force
$fw_code = 0
try {
  Start-ScheduledTask -TaskName $fw_task -TaskPath '\\Fleetward\\'
  while (-not (Test-Path -LiteralPath $fw_out)) {
    Start-Sleep -Seconds 5
    $fw_state = (Get-ScheduledTask -TaskName $fw_task -TaskPath '\\Fleetward\\').State
    if ($fw_state -ne 'Running' -and $fw_state -ne 'Queued' -and -not (Test-Path -LiteralPath $fw_out)) {
      $fw_last = (Get-ScheduledTaskInfo -TaskName $fw_task -TaskPath '\\Fleetward\\').LastTaskResult
      [Console]::Error.WriteLine(('fleetward: the install task ended without a result: HRESULT 0x{0:X8}' -f $fw_last))
      $fw_code = 3
      break
    }
  }
  if ($fw_code -eq 0) { [Console]::Out.Write([System.IO.File]::ReadAllText($fw_out)) }
} finally {
  Unregister-ScheduledTask -TaskName $fw_task -TaskPath '\\Fleetward\\' -Confirm:$false -ErrorAction SilentlyContinue
  Remove-Item -Force -ErrorAction SilentlyContinue -LiteralPath $fw_in, $fw_out
}

exit $fw_code
`;

/**
 * Lists the installed updates by identity: the agent's installed software updates, then its
 * history of successful installations (an update installed but waiting for a reboot may only be
 * there), with the KB numbers read from the history entry's title. Read-only.
 */
const INSTALLED_SCRIPT = `${WINDOWS_UPDATE_INSTALLED_MARKER}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
try {
  $fw_searcher = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher()
  $fw_result = $fw_searcher.Search("IsInstalled=1 and Type='Software'")
  $fw_count = $fw_searcher.GetTotalHistoryCount()
  $fw_history = @(if ($fw_count -gt 0) { $fw_searcher.QueryHistory(0, $fw_count) })
} catch {
  $fw_e = $_.Exception
  while ($fw_e.InnerException) { $fw_e = $fw_e.InnerException }
  [Console]::Error.WriteLine(('fleetward: Windows Update search failed: HRESULT 0x{0:X8} {1}' -f $fw_e.HResult, $fw_e.Message))
  exit 2
}

$fw_installed = @(foreach ($u in $fw_result.Updates) {
  [pscustomobject]@{ id = [string]$u.Identity.UpdateID; revision = [int]$u.Identity.RevisionNumber; kb = @(foreach ($k in $u.KBArticleIDs) { [string]$k }) }
})
$fw_installed += @(foreach ($h in $fw_history) {
  if ($h.Operation -eq 1 -and ($h.ResultCode -eq 2 -or $h.ResultCode -eq 3)) {
    [pscustomobject]@{ id = [string]$h.UpdateIdentity.UpdateID; revision = [int]$h.UpdateIdentity.RevisionNumber; kb = @(foreach ($m in [regex]::Matches([string]$h.Title, 'KB(\\d{1,10})')) { $m.Groups[1].Value }) }
  }
})
[Console]::Out.Write((ConvertTo-Json -InputObject ([pscustomobject]@{ installed = $fw_installed }) -Depth 4 -Compress))
exit 0
`;

/**
 * Validates pins for Windows Update: the name a scan gave the update (`KB<n>` or its UpdateID)
 * and the version `<UpdateID>.<RevisionNumber>`.
 * @throws ValidationError naming each bad pin's index and field.
 */
function checkPins(packages: readonly PinnedPackage[]): string {
  const issues: { path: (string | number)[]; message: string }[] = [];
  if (packages.length === 0) issues.push({ path: [], message: 'no update to install' });
  packages.forEach((p, i) => {
    if (!UPDATE_NAME.test(p.name)) {
      issues.push({ path: [i, 'name'], message: 'not a Windows Update name (KB<number> or an UpdateID)' });
    }
    if (!UPDATE_VERSION.test(p.version)) {
      issues.push({ path: [i, 'version'], message: 'not a Windows Update version (<UpdateID>.<revision>)' });
    }
  });
  if (issues.length) throw new ValidationError('packages', issues);
  return packages.map((p) => `${p.name}=${p.version.toLowerCase()}`).join(' ');
}

/**
 * The command that installs exactly `packages` (pinned by UpdateID and revision) through a SYSTEM
 * scheduled task and prints the per-update results; parse with {@link parseWindowsUpdateInstall}.
 * @throws ValidationError when a name or version is not a Windows Update one.
 */
export function windowsUpdateInstallCommand(packages: readonly PinnedPackage[]): ScriptCommand {
  return {
    interpreter: [...POWERSHELL_STDIN],
    script: INSTALL_SCRIPT,
    env: { [WINDOWS_UPDATE_PINS_ENV]: checkPins(packages) },
  };
}

const HRESULT = z.string().regex(/^0x[0-9A-F]{8}$/i);

const InstallDocumentSchema = z.strictObject({
  results: z
    .array(
      z.strictObject({
        name: z.string().regex(UPDATE_NAME),
        id: z.string().regex(GUID),
        revision: z.number().int().min(0),
        state: z.enum([
          'pending',
          'installed',
          'installed-with-errors',
          'already-installed',
          'not-offered',
          'download-failed',
          'failed',
          'aborted',
          'skipped',
        ]),
        resultCode: z.number().int().nullable(),
        hresult: HRESULT.nullable(),
        rebootRequired: z.boolean(),
      }),
    )
    .max(10_000),
  rebootRequired: z.boolean(),
  error: z.strictObject({ hresult: HRESULT, message: z.string().max(4000) }).nullable(),
});

const explained = (code: string | null | undefined) => {
  if (!code) return '';
  const text = explainHresult(code);
  return text ? ` ${code.toUpperCase().replace(/^0X/, '0x')} (${text})` : ` ${code}`;
};

/**
 * Parses the install script's result document.
 * @returns the reboot the agent asks for and each update's outcome.
 * @throws DriftedError when an update is no longer offered at its pinned revision (nothing was
 *   installed then); CommandFailedError when the task could not run, the agent failed, or an
 *   update failed to download or install (details list every update's outcome, HRESULTs
 *   explained); ParseError when the output is not the document.
 */
export function parseWindowsUpdateInstall(output: CommandOutput): ParsedInstall {
  if (output.exitCode !== 0) {
    const code = /\b0x[0-9A-F]{8}\b/i.exec(output.stderr)?.[0];
    throw new CommandFailedError(
      `Windows Update install failed:${explained(code)} ${output.stderr.trim().slice(0, 500) || `exit ${output.exitCode}`}`,
      { details: { exitCode: output.exitCode, ...(code ? { hresult: code } : {}) } },
    );
  }
  const parsed = InstallDocumentSchema.safeParse(parseWindowsJson(output.stdout, 'Windows Update install'));
  if (!parsed.success) {
    throw new ParseError('Windows Update install output is not the expected document', {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const doc = parsed.data;
  const results: InstalledPackageResult[] = doc.results.map((r) => {
    const text = r.hresult ? explainHresult(r.hresult) : undefined;
    return {
      name: r.name,
      version: `${r.id.toLowerCase()}.${r.revision}`,
      // A result the task never reached (it died mid-way) is a failure, not a success.
      state: r.state === 'pending' ? 'failed' : r.state,
      rebootRequired: r.rebootRequired,
      ...(r.hresult ? { code: r.hresult } : {}),
      ...(text ? { explanation: text } : {}),
    };
  });
  const details = { results };
  if (doc.error) {
    throw new CommandFailedError(
      `Windows Update install failed:${explained(doc.error.hresult)} ${doc.error.message.slice(0, 500)}`,
      { details: { ...details, hresult: doc.error.hresult } },
    );
  }
  const gone = results.filter((r) => r.state === 'not-offered');
  if (gone.length) {
    throw new DriftedError(
      `drifted: no longer offered at the approved revision (superseded, revised or withdrawn), nothing installed: ${gone.map((r) => `${r.name} ${r.version}`).join(', ')}`,
      { details },
    );
  }
  const failed = results.filter(
    (r) => !['installed', 'installed-with-errors', 'already-installed'].includes(r.state),
  );
  if (failed.length) {
    throw new CommandFailedError(
      `Windows Update could not install ${failed.map((r) => `${r.name} (${r.state}${explained(r.code)})`).join('; ')}`,
      { details },
    );
  }
  return {
    rebootRequired: doc.rebootRequired || results.some((r) => r.rebootRequired),
    warnings: results
      .filter((r) => r.state === 'installed-with-errors')
      .map((r) => `${r.name} installed with errors${explained(r.code)}`),
    results,
  };
}

/**
 * The command that lists installed updates by identity (read-only); parse with
 * {@link parseWindowsUpdateInstalled}. `names` is not needed by the host: every installed update is
 * listed and the parser keys it by KB and UpdateID.
 */
export function windowsUpdateInstalledCommand(_names: readonly string[]): ScriptCommand {
  return { interpreter: [...POWERSHELL_STDIN], script: INSTALLED_SCRIPT };
}

const InstalledDocumentSchema = z.strictObject({
  installed: z
    .array(
      z.strictObject({
        id: z.string().regex(GUID),
        revision: z.number().int().min(0),
        kb: z.array(z.string().regex(/^\d{1,10}$/)).max(64),
      }),
    )
    .max(100_000),
});

/**
 * Parses the installed-updates list into name → `<UpdateID>.<revision>`, keyed by every KB
 * (`KB<n>`) and by the UpdateID, as a scan names updates. Where one name fits several installed
 * updates (a KB shipped as several updates), the one `pinned` names by UpdateID wins; otherwise,
 * and for the same update at several revisions, the highest revision.
 * @throws CommandFailedError when the search failed; ParseError when the output is not the list.
 */
export function parseWindowsUpdateInstalled(
  output: CommandOutput,
  pinned: readonly PinnedPackage[] = [],
): Map<string, string> {
  if (output.exitCode !== 0) {
    throw new CommandFailedError(
      `listing installed updates failed: ${output.stderr.trim().slice(0, 500) || `exit ${output.exitCode}`}`,
    );
  }
  const parsed = InstalledDocumentSchema.safeParse(
    parseWindowsJson(output.stdout, 'Windows Update installed list'),
  );
  if (!parsed.success) {
    throw new ParseError('Windows Update installed list is not the expected document', {
      details: { excerpt: output.stdout.slice(0, 500) },
    });
  }
  const wantedId = new Map(
    pinned.map((p) => [p.name, UPDATE_VERSION.exec(p.version)?.[1]?.toLowerCase()] as const),
  );
  const chosen = new Map<string, { id: string; revision: number }>();
  const keep = (name: string, id: string, revision: number) => {
    const known = chosen.get(name);
    const wanted = wantedId.get(name);
    const better =
      !known ||
      (known.id === id
        ? known.revision < revision
        : wanted !== undefined
          ? id === wanted
          : known.revision < revision);
    if (better) chosen.set(name, { id, revision });
  };
  for (const u of parsed.data.installed) {
    const id = u.id.toLowerCase();
    keep(id, id, u.revision);
    for (const kb of u.kb) keep(`KB${kb}`, id, u.revision);
  }
  return new Map([...chosen].map(([name, u]) => [name, `${u.id}.${u.revision}`]));
}
