import type { Command } from '@fleetward/core';
import { buildPowerShellRunner } from '@fleetward/core/os';

/**
 * The `commands` lines of `AWS-RunPowerShellScript` that run `command` on a Windows instance with
 * its argv, env and stdin: core's PowerShell runner (`buildPowerShellRunner` of
 * `@fleetward/core/os`, which explains why no value can become code) with stdin in a fourth
 * base64 literal, `$fw_stdin`, since Run Command gives the script no standard input. The exit code
 * of a native program is the command's exit code; a program that cannot be found exits 127. A
 * script command runs its interpreter with the script on standard input. `sudo` adds nothing: the
 * SSM agent runs commands as `SYSTEM`.
 *
 * Caveats of Windows PowerShell 5.1, which the agent uses: it passes arguments to native programs
 * by re-quoting them into one command line, so an argument that is empty or holds a double quote
 * may not arrive intact (PowerShell 7.3+ passes them exactly); stdin gets a trailing newline;
 * an env value that is empty removes the variable.
 */
export function buildRunPowerShellScript(command: Command): string[] {
  return buildPowerShellRunner(command, { stdin: 'literal' });
}
