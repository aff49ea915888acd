import type { Command } from '../ports/adapter.js';

/**
 * Where a PowerShell runner reads the command's standard input from.
 *
 * - `'literal'`: base64 in a fourth single-quoted assignment, `$fw_stdin = '…'`, inside the script
 *   (for transports with no stdin of their own, such as `AWS-RunPowerShellScript`).
 * - `'stdin-line'`: base64 on the first line of the process's own standard input, which the
 *   transport sends next to the script (WinRM's WS-Man `Send`). The script then has no
 *   `$fw_stdin` line and its length does not grow with the input.
 */
export type PowerShellStdinSource = 'literal' | 'stdin-line';

/** Options of {@link buildPowerShellRunner}. */
export interface PowerShellRunnerOptions {
  /** Where the command's standard input (or script) comes from on the host. */
  stdin: PowerShellStdinSource;
}

const DECODE_LINE =
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }';

const PIPE_STDIN: Record<PowerShellStdinSource, string> = {
  literal: 'fw_dec $fw_stdin',
  'stdin-line': 'fw_dec ([Console]::In.ReadLine())',
};

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * The constant lines of the runner; only the source of stdin differs between transports. The
 * Windows fakes of `@fleetward/testkit` read the assignments before them, so their format is fixed.
 */
function constantLines(stdin: PowerShellStdinSource): string[] {
  return [
    "$ErrorActionPreference = 'Stop'",
    // Text piped to a native program is encoded with $OutputEncoding: ASCII by default in 5.1.
    '$OutputEncoding = New-Object System.Text.UTF8Encoding $false',
    DECODE_LINE,
    "$fw_args = @(foreach ($fw_a in $fw_argv.Split(' ')) { if ($fw_a) { fw_dec ($fw_a.Substring(1)) } })",
    "foreach ($fw_e in $fw_env.Split(' ')) { if ($fw_e) { $fw_i = $fw_e.IndexOf('='); [System.Environment]::SetEnvironmentVariable($fw_e.Substring(0, $fw_i), (fw_dec ($fw_e.Substring($fw_i + 1))), 'Process') } }",
    '$fw_exe = $fw_args[0]',
    '$fw_rest = @(if ($fw_args.Count -gt 1) { $fw_args[1..($fw_args.Count - 1)] })',
    'Remove-Variable fw_argv, fw_env, fw_a, fw_e, fw_i -ErrorAction SilentlyContinue',
    '$global:LASTEXITCODE = $null',
    'try {',
    `  if ($fw_has_stdin -eq '1') { ${PIPE_STDIN[stdin]} | & $fw_exe @fw_rest } else { & $fw_exe @fw_rest }`,
    '  $fw_ok = $?',
    '} catch [System.Management.Automation.CommandNotFoundException] {',
    '  [Console]::Error.WriteLine($_.Exception.Message); exit 127',
    '} catch {',
    '  [Console]::Error.WriteLine($_.Exception.Message); exit 1',
    '}',
    // A native program sets $LASTEXITCODE; a cmdlet or script only reports success in $?.
    'if ($null -ne $LASTEXITCODE) { exit $LASTEXITCODE }',
    'if ($fw_ok) { exit 0 }',
    'exit 1',
  ];
}

/**
 * The lines of a PowerShell script that runs `command` on a Windows host with its argv, env and
 * standard input, the same for every transport that speaks PowerShell (join them with the line
 * ending the transport wants).
 *
 * The script starts with single-quoted literal assignments, `$fw_argv`, `$fw_env`,
 * `$fw_has_stdin` (`'0'` or `'1'`) and, with `stdin: 'literal'`, `$fw_stdin`; every other line is
 * constant. Safety: the text inside the literals holds only base64 characters, `_`, `=`, spaces and
 * env names matching `ENV_NAME_PATTERN` — no quote of any kind (PowerShell also ends a literal on
 * the typographic quotes ‘ ’ ‚ ‛), so nothing in a value can end a literal or be read as code.
 * Each argument and env value is decoded from UTF-8 base64 by the constant lines; the program runs
 * with `& $exe @args`, the call operator, which never parses its arguments as code. A script
 * command runs its interpreter with the script on standard input.
 *
 * Exit code: a native program's exit code is the command's; a program that cannot be found exits
 * 127; a cmdlet or script exits 0 on success, else 1.
 *
 * Caveats of Windows PowerShell 5.1: it passes arguments to native programs by re-quoting them
 * into one command line, so an argument that is empty or holds a double quote may not arrive
 * intact (PowerShell 7.3+ passes them exactly); piped stdin gets a trailing newline; an env value
 * that is empty removes the variable.
 *
 * @param command - The command; its env names must match `ENV_NAME_PATTERN` (core validates
 *   commands before they reach an adapter).
 * @param options - Where the runner reads standard input from.
 * @returns The script's lines, without line endings.
 */
export function buildPowerShellRunner(command: Command, options: PowerShellRunnerOptions): string[] {
  const argv = 'interpreter' in command ? command.interpreter : command.argv;
  const stdin = 'interpreter' in command ? command.script : command.stdin;
  const env = Object.entries(command.env ?? {}).map(([name, value]) => `${name}=${b64(value)}`);
  return [
    `$fw_argv = '${argv.map((a) => `_${b64(a)}`).join(' ')}'`,
    `$fw_env = '${env.join(' ')}'`,
    `$fw_has_stdin = '${stdin === undefined ? '0' : '1'}'`,
    ...(options.stdin === 'literal' ? [`$fw_stdin = '${stdin === undefined ? '' : b64(stdin)}'`] : []),
    ...constantLines(options.stdin),
  ];
}
