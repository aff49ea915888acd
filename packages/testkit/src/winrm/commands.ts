import type { WinRmFakeCommand, WinRmFakeCommandResult, WinRmFakeOptions } from './types.js';

/**
 * Splits a Windows command line into words the way most programs' argv parsing does for simple
 * input: whitespace separates, double quotes group. Enough to find the program and its flags.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/"([^"]*)"|(\S+)/g)) words.push(match[1] ?? match[2] ?? '');
  return words;
}

/**
 * The script of `powershell[.exe] … -EncodedCommand <base64 of UTF-16LE>` (any unambiguous prefix
 * of the flag, `-` or `/`, as PowerShell accepts), or undefined when the command line is not one.
 */
export function decodePowerShellCommand(commandLine: string): string | undefined {
  const words = splitCommandLine(commandLine);
  const program = (words[0] ?? '')
    .split(/[\\/]/)
    .pop()
    ?.toLowerCase()
    .replace(/\.exe$/, '');
  if (program !== 'powershell' && program !== 'pwsh') return undefined;
  for (let i = 1; i < words.length - 1; i++) {
    const flag = (words[i] as string).toLowerCase();
    if (!/^[-/]/.test(flag)) continue;
    const name = flag.slice(1);
    if (name === 'e' || name === 'ec' || (name.length >= 2 && 'encodedcommand'.startsWith(name))) {
      return Buffer.from(words[i + 1] as string, 'base64').toString('utf16le');
    }
  }
  return undefined;
}

/** Runs one command as the fake's host: the PowerShell hook, then `run`, then the cmd.exe built-ins. */
export async function runCommand(
  command: WinRmFakeCommand,
  options: WinRmFakeOptions,
): Promise<WinRmFakeCommandResult> {
  const commandLine = [command.command, ...command.arguments].join(' ');
  try {
    const script = options.powershell ? decodePowerShellCommand(commandLine) : undefined;
    if (script !== undefined && options.powershell) return await options.powershell(script, command);
    return (await options.run?.(command)) ?? builtinCmd(commandLine);
  } catch (error) {
    return { stderr: `${error instanceof Error ? error.message : String(error)}\r\n`, exitCode: 1 };
  }
}

/**
 * A tiny cmd.exe: `[cmd /c] echo <text> [1>&2]`, `exit [/b] <n>`, joined with `&`. Anything else
 * gets cmd.exe's "is not recognized" message and exit code 1.
 */
export function builtinCmd(commandLine: string): WinRmFakeCommandResult {
  let line = commandLine.trim();
  const shell = line.match(/^cmd(?:\.exe)?\s+\/[ckCK]\s+/i);
  if (shell) line = line.slice(shell[0].length);
  let stdout = '';
  let stderr = '';
  let exitCode = 0;
  for (const part of line.split(/\s&&?\s/)) {
    const segment = part.trim();
    const exit = segment.match(/^exit(?:\s+\/b)?(?:\s+(-?\d+))?$/i);
    if (exit) return { stdout, stderr, exitCode: Number(exit[1] ?? exitCode) };
    const echo = segment.match(/^echo(?:\s+|\.)([\s\S]*?)(\s*1?>&2)?$/i);
    if (echo) {
      if (echo[2]) stderr += `${echo[1]}\r\n`;
      else stdout += `${echo[1]}\r\n`;
      exitCode = 0;
      continue;
    }
    const name = splitCommandLine(segment)[0] ?? segment;
    stderr += `'${name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n`;
    exitCode = 1;
  }
  return { stdout, stderr, exitCode };
}
