import {
  WINDOWS_BOOT_MARKER,
  WINDOWS_OS_MARKER,
  WINDOWS_PREFLIGHT_MARKER,
  WINDOWS_REBOOT_MARKER,
  WINDOWS_UPDATE_INSTALL_MARKER,
  WINDOWS_UPDATE_INSTALLED_MARKER,
  WINDOWS_UPDATE_PINS_ENV,
  WINDOWS_UPDATE_SCAN_MARKER,
} from '@fleetward/core/os';
import { builtinCmd } from './commands.js';
import type {
  WinRmFakeCommand,
  WinRmFakeCommandResult,
  WinRmFakeInstalledUpdate,
  WinRmFakeOptions,
  WinRmFakeUpdate,
  WinRmFakeWindowsUpdate,
} from './types.js';

const MARKERS = [
  WINDOWS_UPDATE_SCAN_MARKER,
  WINDOWS_OS_MARKER,
  WINDOWS_UPDATE_INSTALL_MARKER,
  WINDOWS_UPDATE_INSTALLED_MARKER,
  WINDOWS_BOOT_MARKER,
  WINDOWS_REBOOT_MARKER,
  WINDOWS_PREFLIGHT_MARKER,
] as const;

const DEFAULT_BOOT = '2026-01-01T00:00:00Z';

const DEFAULT_OS = {
  caption: 'Microsoft Windows Server 2022 Datacenter',
  version: '10.0.20348',
  build: '20348',
  arch: '64-bit',
};

/**
 * The texts a command carries: the script itself, every stdin line that decodes as base64 UTF-8
 * (WinRM: the runner sends a script command's text on stdin), and the runner's `$fw_stdin`
 * literal decoded (SSM's `AWS-RunPowerShellScript`, which has no stdin, carries it there).
 */
function texts(script: string, stdin: Buffer | undefined): string[] {
  const out = [script];
  for (const line of (stdin?.toString('latin1') ?? '').split(/\r?\n/)) {
    if (/^[A-Za-z0-9+/]+=*$/.test(line)) out.push(Buffer.from(line, 'base64').toString('utf8'));
  }
  const literal = /^\$fw_stdin = '([A-Za-z0-9+/=]*)'/m.exec(script)?.[1];
  if (literal) out.push(Buffer.from(literal, 'base64').toString('utf8'));
  return out;
}

/**
 * The script a command hands to PowerShell: the `-EncodedCommand` script itself when it starts
 * with a marker, else the first stdin line that decodes (base64, UTF-8) to a marked script, as
 * Fleetward's WinRM runner sends a script command's text to `powershell.exe -Command -`.
 */
function markedScript(all: string[]): string | undefined {
  return all.find((s) => MARKERS.some((m) => s.startsWith(m)));
}

/**
 * The environment Fleetward's runner sets for the program: its `$fw_env = 'NAME=<base64> …'`
 * line, in the `-EncodedCommand` script or (when the runner travels on stdin) a decoded stdin line.
 */
function runnerEnv(all: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const text of all) {
    const line = /^\$fw_env = '([^']*)'/m.exec(text)?.[1];
    if (line === undefined) continue;
    for (const pair of line.split(' ').filter(Boolean)) {
      const eq = pair.indexOf('=');
      env[pair.slice(0, eq)] = Buffer.from(pair.slice(eq + 1), 'base64').toString('utf8');
    }
    break;
  }
  return env;
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

/** What the model keeps between calls that is not part of its public state. */
const restarting = new WeakMap<WinRmFakeWindowsUpdate, number>();

/** Completes a restart whose time has come: new boot time, pending installs done, no reboot pending. */
function settle(model: WinRmFakeWindowsUpdate): boolean {
  const until = restarting.get(model);
  if (until === undefined) return false;
  if (Date.now() < until) return true;
  restarting.delete(model);
  const previous = new Date(model.lastBootTime ?? DEFAULT_BOOT).getTime();
  model.lastBootTime = new Date(Math.max(Date.now(), previous + 1000));
  for (const u of model.installed ?? []) u.pendingReboot = false;
  model.rebootPending = false;
  model.rebootReasons = undefined;
  return false;
}

/** Offered updates the agent still offers: one superseded by an offered or installed update is not. */
function visible(model: WinRmFakeWindowsUpdate): WinRmFakeUpdate[] {
  const present = new Set(
    [...model.offered.map((u) => u.id), ...(model.installed ?? []).map((u) => u.id)].map((id) =>
      id.toLowerCase(),
    ),
  );
  return model.offered.filter((u) => !u.supersededBy || !present.has(u.supersededBy.toLowerCase()));
}

const revisionOf = (u: WinRmFakeUpdate) => u.revision ?? 200;

/** Runs the install script against the model, as the SYSTEM task would, and prints its document. */
function install(model: WinRmFakeWindowsUpdate, pins: string[]): WinRmFakeCommandResult {
  model.installRequests = [...(model.installRequests ?? []), pins];
  const offered = visible(model);
  model.installed ??= [];
  const installed = model.installed;
  const entries = pins.map((pin) => {
    const eq = pin.indexOf('=');
    const version = pin.slice(eq + 1);
    const dot = version.lastIndexOf('.');
    const id = version.slice(0, dot).toLowerCase();
    const revision = Number(version.slice(dot + 1));
    const update = offered.find((u) => u.id.toLowerCase() === id && revisionOf(u) === revision);
    const done = installed.some((u) => u.id.toLowerCase() === id && u.revision === revision);
    return {
      update,
      doc: {
        name: pin.slice(0, eq),
        id,
        revision,
        state: update ? 'pending' : done ? 'already-installed' : 'not-offered',
        resultCode: null as number | null,
        hresult: null as string | null,
        rebootRequired: false,
      },
    };
  });
  let rebootRequired = false;
  if (entries.some((e) => e.doc.state === 'not-offered')) {
    for (const e of entries) if (e.doc.state === 'pending') e.doc.state = 'skipped';
  } else {
    for (const { update, doc } of entries) {
      if (!update) continue;
      if (update.failure) {
        doc.state = update.failure.phase === 'download' ? 'download-failed' : 'failed';
        doc.resultCode = 4;
        doc.hresult = update.failure.hresult;
        continue;
      }
      const needsRestart = (update.rebootBehavior ?? 0) !== 0;
      model.offered = model.offered.filter((u) => u !== update);
      const record: WinRmFakeInstalledUpdate = {
        id: update.id,
        revision: revisionOf(update),
        kb: update.kb ?? [],
        title: update.title,
        ...(needsRestart ? { pendingReboot: true } : {}),
      };
      installed.push(record);
      doc.state = 'installed';
      doc.resultCode = 2;
      doc.rebootRequired = needsRestart;
      rebootRequired ||= needsRestart;
    }
  }
  if (rebootRequired) {
    model.rebootPending = true;
    if (model.rebootReasons) model.rebootReasons = [...new Set([...model.rebootReasons, 'WindowsUpdate'])];
  }
  return {
    stdout: convertToJson({ results: entries.map((e) => e.doc), rebootRequired, error: null }),
    exitCode: 0,
  };
}

/**
 * What one of Fleetward's Windows scripts (Windows Update scan, install and installed list, OS
 * facts, boot time, restart, patch preflight) prints on a host with `model`'s state, or undefined
 * when `script` (with `command`'s stdin) is none of them. Usable from a `powershell` hook that also
 * answers other scripts. The install changes the model (offered updates move to `installed`); a
 * restart takes `restartMs`, during which every such script fails as an unreachable host would.
 */
export function answerWindowsUpdate(
  model: WinRmFakeWindowsUpdate,
  script: string,
  command: WinRmFakeCommand,
): WinRmFakeCommandResult | undefined {
  return answerWindowsScript(model, script, command.stdin);
}

/**
 * {@link answerWindowsUpdate} for any transport: `text` is what the host was given to run (the
 * `-EncodedCommand` script, or an `AWS-RunPowerShellScript` document's commands joined by
 * newlines) and `stdin` what it read on standard input, if anything.
 */
export function answerWindowsScript(
  model: WinRmFakeWindowsUpdate,
  text: string,
  stdin?: Buffer,
): WinRmFakeCommandResult | undefined {
  const all = texts(text, stdin);
  const marked = markedScript(all);
  if (marked === undefined) return undefined;
  if (settle(model)) {
    return {
      stderr: 'The WinRM client cannot complete the operation: the host is restarting.\r\n',
      exitCode: 1,
    };
  }
  if (marked.startsWith(WINDOWS_OS_MARKER)) return { stdout: convertToJson({ ...DEFAULT_OS, ...model.os }) };
  if (marked.startsWith(WINDOWS_BOOT_MARKER)) {
    return { stdout: roundTripDate(model.lastBootTime ?? DEFAULT_BOOT), exitCode: 0 };
  }
  if (marked.startsWith(WINDOWS_REBOOT_MARKER)) {
    model.restarts = (model.restarts ?? 0) + 1;
    restarting.set(model, Date.now() + (model.restartMs ?? 0));
    return { stdout: '', exitCode: 0 };
  }
  if (marked.startsWith(WINDOWS_PREFLIGHT_MARKER)) {
    return {
      stdout: convertToJson({
        admin: !model.notAdministrator,
        drive: 'C:',
        freeMiB: model.freeMiB ?? 40_960,
        serviceStartMode: 'Manual',
        serviceState: 'Running',
        installerBusy: false,
      }),
      exitCode: 0,
    };
  }
  if (marked.startsWith(WINDOWS_UPDATE_INSTALLED_MARKER)) {
    const installed = (model.installed ?? []).map((u) => ({ id: u.id, revision: u.revision, kb: u.kb }));
    return { stdout: convertToJson({ installed }), exitCode: 0 };
  }
  if (model.searchError) {
    return {
      stderr: `fleetward: Windows Update search failed: HRESULT ${model.searchError.hresult} ${model.searchError.message ?? 'Exception from HRESULT'}\r\n`,
      exitCode: 2,
    };
  }
  if (marked.startsWith(WINDOWS_UPDATE_INSTALL_MARKER)) {
    const pins = (runnerEnv(all)[WINDOWS_UPDATE_PINS_ENV] ?? '').split(' ').filter(Boolean);
    return install(model, pins);
  }
  const updates = visible(model).map((u) => ({
    id: u.id,
    revision: revisionOf(u),
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
