import type { Command } from '../ports/adapter.js';
import { buildPowerShellRunner } from './powershell-runner.js';

/** cmd.exe's command-line limit; the PowerShell command line is kept under it. */
export const POWERSHELL_MAX_COMMAND_LINE = 8191;

/** Flags before `-EncodedCommand`: no profile, no prompts, scripts allowed for this process only. */
const POWERSHELL_FLAGS = ['-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass'] as const;

const DECODE =
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }';

/**
 * Used when the runner itself would make the command line too long (very long argv or env): it
 * reads the runner, base64-encoded, from the first line of stdin and runs it in the same scope.
 */
const BOOTSTRAP_LINES = [DECODE, '. ([scriptblock]::Create((fw_dec ([Console]::In.ReadLine()))))'] as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * The PowerShell runner script of `command`, CRLF-separated: {@link buildPowerShellRunner} (which
 * explains why no value can become code) reading its standard input base64-encoded from the first
 * line of the process's stdin, which the transport sends next to the command line.
 */
export function buildPowerShellRunnerScript(command: Command): string {
  return buildPowerShellRunner(command, { stdin: 'stdin-line' }).join('\r\n');
}

/** `-EncodedCommand`'s argument: base64 of the UTF-16LE script. */
export function encodePowerShell(script: string): string {
  return Buffer.from(script, 'utf16le').toString('base64');
}

/** The command line that runs one command as PowerShell on a Windows host, and what its stdin must carry. */
export interface PowerShellInvocation {
  /** The program to start: `powershell.exe` unless the caller named another. */
  program: string;
  /**
   * Its arguments: flags, then `-EncodedCommand <base64>`. They hold only letters, `-` and base64
   * characters, so no element needs quoting on any command line.
   */
  arguments: string[];
  /** Lines for stdin (base64 text and CRLF), or undefined when the command reads nothing. */
  stdin: Buffer | undefined;
  /** Whether the runner travels on stdin because it did not fit the command line. */
  runnerOnStdin: boolean;
}

/**
 * How `command` runs as PowerShell on a Windows host, for any transport that starts a process
 * and feeds its stdin (WinRM's WinRS shell, OpenSSH for Windows): `-EncodedCommand` of the runner
 * ({@link buildPowerShellRunnerScript}) when the command line stays under
 * {@link POWERSHELL_MAX_COMMAND_LINE} characters, else of a small bootstrap that reads the runner
 * from the first line of stdin. The command's stdin (or script) always travels on stdin, base64 on
 * one line, so its length never counts against the command line.
 *
 * @param command - The command; core validates commands before they reach an adapter.
 * @param powershell - The program that runs the script. @default 'powershell.exe'
 */
export function buildPowerShellInvocation(
  command: Command,
  powershell = 'powershell.exe',
): PowerShellInvocation {
  const input = 'interpreter' in command ? command.script : command.stdin;
  const runner = buildPowerShellRunnerScript(command);
  const lineOf = (script: string) => [...POWERSHELL_FLAGS, '-EncodedCommand', encodePowerShell(script)];
  const direct = lineOf(runner);
  const inputLine = input === undefined ? '' : `${b64(input)}\r\n`;
  if ([powershell, ...direct].join(' ').length <= POWERSHELL_MAX_COMMAND_LINE) {
    return {
      program: powershell,
      arguments: direct,
      stdin: input === undefined ? undefined : Buffer.from(inputLine, 'ascii'),
      runnerOnStdin: false,
    };
  }
  return {
    program: powershell,
    arguments: lineOf(BOOTSTRAP_LINES.join('\r\n')),
    stdin: Buffer.from(`${b64(runner)}\r\n${inputLine}`, 'ascii'),
    runnerOnStdin: true,
  };
}
