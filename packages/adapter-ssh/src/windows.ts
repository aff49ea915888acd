import { type Command, FleetwardError, validateCommand } from '@fleetward/core';
import { buildPowerShellInvocation } from '@fleetward/core/os';

/**
 * What the arguments of the exec request of a Windows server hold: flags and base64, nothing any
 * shell acts on (cmd.exe, PowerShell or a POSIX shell as OpenSSH's `DefaultShell`).
 */
const PLAIN_WORD = /^[A-Za-z0-9+/=-]+$/;

/** How one command runs on a Windows server over OpenSSH. */
export interface WindowsExec {
  /** The exec request's command string: `powershell.exe` and the invocation's arguments. */
  line: string;
  /** Bytes for the channel's stdin (base64 lines), or undefined when the command reads nothing. */
  stdin: Buffer | undefined;
}

/**
 * The exec request of `command` for a Windows server (OpenSSH for Windows): the PowerShell
 * invocation WinRM uses too (`buildPowerShellInvocation` of `@fleetward/core/os`), its arguments
 * joined by spaces, and its stdin. `sudo` has no meaning there: the command runs as the login.
 *
 * @throws ValidationError when the command is invalid.
 */
export function buildWindowsExec(command: Command): WindowsExec {
  validateCommand(command);
  const invocation = buildPowerShellInvocation(command);
  // Joining without quotes is only sound while every word is plain: fail loudly if that changes.
  const unsafe = invocation.arguments.find((word) => !PLAIN_WORD.test(word));
  if (unsafe !== undefined) {
    throw new FleetwardError('INTERNAL', 'The PowerShell command line holds a word that would need quoting', {
      fault: 'internal',
      details: { word: unsafe.slice(0, 64) },
    });
  }
  return { line: [invocation.program, ...invocation.arguments].join(' '), stdin: invocation.stdin };
}
