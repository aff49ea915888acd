import { builtinCmd } from './commands.js';
import type {
  WinRmFakeCommand,
  WinRmFakeCommandResult,
  WinRmFakeOptions,
  WinRmFakeWindowsUpdate,
} from './types.js';

/** First lines of the scripts Fleetward's Windows Update driver sends (see `@fleetward/core`'s `os/windows-update`). */
const SCAN_MARKER = '# fleetward:windows-update-scan v1';
const OS_MARKER = '# fleetward:windows-os v1';

const DEFAULT_OS = {
  caption: 'Microsoft Windows Server 2022 Datacenter',
  version: '10.0.20348',
  build: '20348',
  arch: '64-bit',
};

/**
 * The script a command hands to PowerShell: the `-EncodedCommand` script itself when it starts
 * with a marker, else the first stdin line that decodes (base64, UTF-8) to a marked script, as
 * Fleetward's WinRM runner sends a script command's text to `powershell.exe -Command -`.
 */
function markedScript(script: string, command: WinRmFakeCommand): string | undefined {
  const marked = (s: string) => s.startsWith(SCAN_MARKER) || s.startsWith(OS_MARKER);
  if (marked(script)) return script;
  for (const line of (command.stdin?.toString('latin1') ?? '').split(/\r?\n/)) {
    if (!/^[A-Za-z0-9+/]+=*$/.test(line)) continue;
    const decoded = Buffer.from(line, 'base64').toString('utf8');
    if (marked(decoded)) return decoded;
  }
  return undefined;
}

/**
 * `ConvertTo-Json -Compress` as Windows PowerShell 5.1 prints it: its serializer escapes `<`, `>`,
 * `&` and `'` as `\uXXXX`; nulls stay `null`.
 */
function convertToJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&']/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `DateTime.ToUniversalTime().ToString('o')`: seven fractional digits and `Z`. */
function roundTripDate(value: Date | string): string {
  return new Date(value).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
}

/**
 * What Fleetward's Windows Update scan or OS script prints on a host with `model`'s state, or
 * undefined when `script` (with `command`'s stdin) is neither. Usable from a `powershell` hook
 * that also answers other scripts.
 */
export function answerWindowsUpdate(
  model: WinRmFakeWindowsUpdate,
  script: string,
  command: WinRmFakeCommand,
): WinRmFakeCommandResult | undefined {
  const marked = markedScript(script, command);
  if (marked === undefined) return undefined;
  if (marked.startsWith(OS_MARKER)) return { stdout: convertToJson({ ...DEFAULT_OS, ...model.os }) };
  if (model.searchError) {
    return {
      stderr: `fleetward: Windows Update search failed: HRESULT ${model.searchError.hresult} ${model.searchError.message ?? 'Exception from HRESULT'}\r\n`,
      exitCode: 2,
    };
  }
  const updates = model.offered.map((u) => ({
    id: u.id,
    revision: u.revision ?? 200,
    title: u.title,
    kb: u.kb ?? [],
    severity: u.severity ?? null,
    categories: u.categories ?? (u.classification ? [u.classification] : []),
    classification: u.classification,
    size: u.size ?? 0,
    rebootBehavior: u.rebootBehavior ?? 0,
    released: u.released ? roundTripDate(u.released) : null,
  }));
  const reasons = model.rebootReasons ?? (model.rebootPending ? ['WindowsUpdate'] : []);
  return {
    stdout: convertToJson({ updates, rebootPending: reasons.length > 0, rebootReasons: reasons }),
    exitCode: 0,
  };
}

/**
 * `options` with the Windows Update model wired in: without a `powershell` hook of the test's,
 * marked scripts get the model's answer and every other command goes to `run`, then the cmd.exe
 * built-ins, as before. A test's own `powershell` hook overrides the model (it can call
 * {@link answerWindowsUpdate} itself).
 */
export function withWindowsUpdate(options: WinRmFakeOptions): WinRmFakeOptions {
  const model = options.windowsUpdate;
  if (!model || options.powershell) return options;
  return {
    ...options,
    powershell: async (script, command) =>
      answerWindowsUpdate(model, script, command) ??
      (await options.run?.(command)) ??
      builtinCmd([command.command, ...command.arguments].join(' ')),
  };
}
