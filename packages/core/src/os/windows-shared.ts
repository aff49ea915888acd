import { ParseError } from '../errors.js';

/**
 * PowerShell reading a script from stdin: no profile, never a prompt. `-Command -` runs stdin
 * statement by statement as it is read, and a multi-line block only runs once a blank line
 * follows it (PowerShell issue #3223): every block of a script sent this way ends with a blank line.
 */
export const POWERSHELL_STDIN = ['powershell.exe', '-NoProfile', '-NonInteractive', '-Command', '-'] as const;

/** Parses one JSON document a Windows script printed (a UTF-8 BOM and surrounding space allowed). */
export function parseWindowsJson(stdout: string, what: string): unknown {
  const text = stdout.replace(/^\uFEFF/, '').trim();
  try {
    return JSON.parse(text);
  } catch {
    throw new ParseError(`${what} output is not JSON`, { details: { excerpt: text.slice(0, 500) } });
  }
}

/** Common Windows Update HRESULTs, explained. */
export const WINDOWS_UPDATE_HRESULTS: Readonly<Record<string, string>> = Object.freeze({
  '0x8024402C':
    'WU_E_PT_WINHTTP_NAME_NOT_RESOLVED: the update server cannot be reached (no connection, proxy or DNS)',
  '0x80072EE2': 'WININET_E_TIMEOUT: the connection to the update server timed out',
  '0x80240032': 'WU_E_INVALID_CRITERIA: the search criteria are not valid',
  '0x80070005':
    'E_ACCESSDENIED: access denied (the account is not an administrator, or the call is not allowed remotely)',
  '0x8024001E': 'WU_E_SERVICE_STOP: the Windows Update service is not available (stopped or shutting down)',
  '0x80240438':
    'WU_E_PT_ENDPOINT_UNREACHABLE: there is no route or network connectivity to the update endpoint',
  '0x8024002E': 'WU_E_WU_DISABLED: access to the update service is disabled by policy',
  '0x80244022': 'WU_E_PT_HTTP_STATUS_SERVICE_UNAVAIL: the update server answered HTTP 503',
  '0x8024401C': 'WU_E_PT_HTTP_STATUS_REQUEST_TIMEOUT: the update server timed out (HTTP 408)',
  '0x80240022': 'WU_E_ALL_UPDATES_FAILED: the operation failed for all the updates',
  '0x80240016':
    'WU_E_INSTALL_NOT_ALLOWED: another installation was in progress or the system was pending a mandatory restart',
  '0x80240017': 'WU_E_NOT_APPLICABLE: the update is not applicable to this host',
  '0x8024000B': 'WU_E_CALL_CANCELLED: the operation was cancelled',
  '0x80246007': 'WU_E_DM_NOTDOWNLOADED: the update has not been downloaded',
  '0x8024200D': 'WU_E_UH_NEEDANOTHERDOWNLOAD: the update must be downloaded again before it can install',
  '0x80242016':
    'WU_E_UH_POSTREBOOTUNEXPECTEDSTATE: the update is in an unexpected state after its post-reboot operation',
  '0x80070643': 'ERROR_INSTALL_FAILURE: fatal error during installation',
  '0x80070070': 'ERROR_DISK_FULL: there is not enough space on the disk',
  '0x800F0922':
    'CBS_E_INSTALLERS_FAILED: the servicing stack could not apply the update (often a System Reserved partition that is too small)',
  '0x800F081F': 'CBS_E_SOURCE_MISSING: the source files of the package could not be found',
});

/** The explanation of an HRESULT (`0x8024…`, any case) when it is a known one. */
export function explainHresult(code: string): string | undefined {
  return WINDOWS_UPDATE_HRESULTS[`0x${code.slice(2).toUpperCase()}`];
}
