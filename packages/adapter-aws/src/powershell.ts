import type { Command } from '@fleetward/core';

/**
 * The constant part of every `AWS-RunPowerShellScript` script. The values come before it as
 * single-quoted literal assignments whose text holds only base64 characters, `_`, `=`, spaces and
 * env names matching `ENV_NAME_PATTERN`: no quote of any kind (PowerShell also ends a literal on
 * the typographic quotes ‘ ’ ‚ ‛), so nothing PowerShell could read as code. Each value is decoded
 * from UTF-8 base64 into an argument or a process environment variable; the program runs with
 * `& $exe @args`, the call operator, which never parses its arguments as code.
 */
const RUNNER_LINES = [
  "$ErrorActionPreference = 'Stop'",
  // Text piped to a native program is encoded with $OutputEncoding: ASCII by default in 5.1.
  '$OutputEncoding = New-Object System.Text.UTF8Encoding $false',
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }',
  "$fw_args = @(foreach ($fw_a in $fw_argv.Split(' ')) { if ($fw_a) { fw_dec ($fw_a.Substring(1)) } })",
  "foreach ($fw_e in $fw_env.Split(' ')) { if ($fw_e) { $fw_i = $fw_e.IndexOf('='); [System.Environment]::SetEnvironmentVariable($fw_e.Substring(0, $fw_i), (fw_dec ($fw_e.Substring($fw_i + 1))), 'Process') } }",
  '$fw_exe = $fw_args[0]',
  '$fw_rest = @(if ($fw_args.Count -gt 1) { $fw_args[1..($fw_args.Count - 1)] })',
  'Remove-Variable fw_argv, fw_env, fw_a, fw_e, fw_i -ErrorAction SilentlyContinue',
  '$global:LASTEXITCODE = $null',
  'try {',
  "  if ($fw_has_stdin -eq '1') { fw_dec $fw_stdin | & $fw_exe @fw_rest } else { & $fw_exe @fw_rest }",
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
] as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * The `commands` lines of `AWS-RunPowerShellScript` that run `command` on a Windows instance with
 * its argv, env and stdin: four single-quoted assignments of base64 text, then constant lines
 * (see `RUNNER_LINES`). The exit code of a native program is the command's exit code; a program
 * that cannot be found exits 127. A script command runs its interpreter with the script on
 * standard input. `sudo` adds nothing: the SSM agent runs commands as `SYSTEM`.
 *
 * Caveats of Windows PowerShell 5.1, which the agent uses: it passes arguments to native programs
 * by re-quoting them into one command line, so an argument that is empty or holds a double quote
 * may not arrive intact (PowerShell 7.3+ passes them exactly); stdin gets a trailing newline;
 * an env value that is empty removes the variable.
 */
export function buildRunPowerShellScript(command: Command): string[] {
  const argv = 'interpreter' in command ? command.interpreter : command.argv;
  const stdin = 'interpreter' in command ? command.script : command.stdin;
  const env = Object.entries(command.env ?? {}).map(([name, value]) => `${name}=${b64(value)}`);
  return [
    `$fw_argv = '${argv.map((a) => `_${b64(a)}`).join(' ')}'`,
    `$fw_env = '${env.join(' ')}'`,
    `$fw_has_stdin = '${stdin === undefined ? '0' : '1'}'`,
    `$fw_stdin = '${stdin === undefined ? '' : b64(stdin)}'`,
    ...RUNNER_LINES,
  ];
}
