/**
 * `@fleetward/testkit/winrm`: a WS-Management (WinRM) fake on loopback that emulates a Windows
 * host's shell service for tests of WinRM clients: HTTPS with a generated test CA, Basic and NTLMv2
 * checked for real, the WinRS shell and command lifecycle, SOAP faults and injectable failures.
 * See the testkit README, "WinRM fake".
 *
 * @module @fleetward/testkit/winrm
 */
export { builtinCmd, decodePowerShellCommand, splitCommandLine } from './commands.js';
export { startWinRmFake } from './fake.js';
export type { NtlmAuthenticate, NtlmChallenge } from './ntlm.js';
export {
  createNtlmChallenge,
  ntowfv2,
  parseNtlmAuthenticate,
  verifyNtlmV2Response,
} from './ntlm.js';
export { WSMAN_FAULT } from './shell.js';
export type {
  WinRmFake,
  WinRmFakeAuthScheme,
  WinRmFakeCommand,
  WinRmFakeCommandResult,
  WinRmFakeFaults,
  WinRmFakeInstalledUpdate,
  WinRmFakeOptions,
  WinRmFakePowerShell,
  WinRmFakeRequest,
  WinRmFakeRunner,
  WinRmFakeShell,
  WinRmFakeUpdate,
  WinRmFakeUser,
  WinRmFakeWindowsUpdate,
} from './types.js';
export { answerWindowsScript, answerWindowsUpdate } from './windows-update.js';
