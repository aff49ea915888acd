/**
 * The public contract of `@fleetward/testkit/winrm`: a WS-Management server on loopback that
 * emulates a Windows host's WinRS shell service (`POST /wsman`, SOAP 1.2) closely enough for real
 * clients (pywinrm, Fleetward's own WinRM adapter). HTTPS with a certificate from a CA the fake
 * generates, Basic and NTLMv2 authentication checked for real, the shell and command lifecycle,
 * SOAP faults and injectable failures. What a command does is up to the test (`run`,
 * `powershell`); nothing is executed on this machine unless `processes` is set.
 */

/** An account of the emulated host. */
export interface WinRmFakeUser {
  /** Login name, matched case-insensitively as Windows does. */
  username: string;
  password: string;
  /**
   * Domain (or computer name) of the account. When set, an NTLM client must name this domain or
   * none; when unset any domain the client names is accepted (local accounts).
   */
  domain?: string;
}

/** An authentication scheme the fake can offer. `ntlm` answers both `NTLM` and `Negotiate` headers. */
export type WinRmFakeAuthScheme = 'basic' | 'ntlm';

/** What the emulated host gets for one command. */
export interface WinRmFakeCommand {
  /** The shell the command runs in. */
  shellId: string;
  /** The `CommandId` the fake gave it. */
  commandId: string;
  /** `rsp:Command`, XML-unescaped, as sent (may hold the whole command line, as pywinrm's `run_ps` does). */
  command: string;
  /** The `rsp:Arguments` elements in order. */
  arguments: string[];
  /** The shell's environment (`rsp:Environment/rsp:Variable`). */
  env: Record<string, string>;
  /** The shell's `rsp:WorkingDirectory`, if the client set one. */
  workingDirectory: string | undefined;
  /** The shell's code page (`WINRS_CODEPAGE`), 437 unless the client asked for another. */
  codepage: number;
  /** The user the request was authenticated as. */
  username: string;
  /** Everything the client sent on `stdin` with `Send` up to `End="true"`; undefined when it sent nothing. */
  stdin: Buffer | undefined;
  /** Aborted when the client sends `Signal` terminate or ctrl_c, or deletes the shell. */
  signal: AbortSignal;
}

/** The result of an emulated command. Strings are sent as UTF-8. */
export interface WinRmFakeCommandResult {
  stdout?: Buffer | string;
  stderr?: Buffer | string;
  /** @default 0 */
  exitCode?: number;
}

/**
 * The emulated host: runs one command. Returning undefined hands the command to the cmd.exe
 * built-ins; a thrown error becomes stderr and exit code 1.
 */
export type WinRmFakeRunner = (
  command: WinRmFakeCommand,
) => Promise<WinRmFakeCommandResult | undefined> | WinRmFakeCommandResult | undefined;

/** The PowerShell hook: gets the script decoded from `-EncodedCommand` (UTF-16LE base64). */
export type WinRmFakePowerShell = (
  script: string,
  command: WinRmFakeCommand,
) => Promise<WinRmFakeCommandResult> | WinRmFakeCommandResult;

/** Options of `startWinRmFake`. */
export interface WinRmFakeOptions {
  /** Accounts that can log on. */
  users: WinRmFakeUser[];
  /** Schemes offered and accepted; a request with another scheme gets 401. @default ['basic', 'ntlm'] */
  auth?: WinRmFakeAuthScheme[];
  /** Serve plain http instead of https (no certificate; NTLM sealing is not emulated, see README). @default false */
  http?: boolean;
  /**
   * Runs commands that are not `powershell -EncodedCommand` (or all commands when `powershell` is
   * unset); what it returns undefined for goes to the built-ins. @default built-ins: `cmd /c echo <text>`, `cmd /c exit <n>`; anything else is
   * "not recognized" on stderr with exit code 1, as cmd.exe says it
   */
  run?: WinRmFakeRunner;
  /** Gets decoded `powershell[.exe] ... -EncodedCommand <b64>` scripts. @default none: handed to `run` */
  powershell?: WinRmFakePowerShell;
  /**
   * How many `Receive` calls of each command answer the WSManFault `2150858793` (the operation
   * time-out real clients retry) before output is returned. @default 0
   */
  receiveTimeoutsPerCommand?: number;
  /** NetBIOS computer name of the host, in the NTLM challenge's target info. @default 'WINFAKE' */
  computerName?: string;
  /**
   * The process backend: a command that is Fleetward's WinRM runner (`powershell.exe
   * -EncodedCommand` of the runner, or of the bootstrap that reads the runner from the first stdin
   * line) runs as a real child process on this machine, without a shell: argv from `$fw_argv`,
   * `$fw_env` (over the shell's environment and this machine's `PATH`), stdin from the stdin line
   * (closed at once when `$fw_has_stdin` is `'0'`). Output streams to `Receive` as the process
   * writes it; Signal `terminate` and shell Delete kill its process group (SIGKILL), `ctrl_c`
   * sends SIGINT; a death by signal is reported as exit code 128 + the signal number (WinRM
   * carries no signal). An emulated Windows host whose commands run on a POSIX host: it proves the
   * WS-Man transport end to end, not cmd.exe or PowerShell semantics. Every other command still
   * goes to `powershell`, `run` and the built-ins. @default false
   */
  processes?: boolean;
  /**
   * A modelled Windows Update state: Fleetward's Windows Update scan script and Windows OS script
   * get what they would print on such a host (unless `powershell` is set, which then sees every
   * script). Read on every command, so a test can change it between scans. @default none
   */
  windowsUpdate?: WinRmFakeWindowsUpdate;
}

/** An update the emulated host's Windows Update Agent offers (a not-installed, not-hidden software update). */
export interface WinRmFakeUpdate {
  /** `Identity.UpdateID`, a GUID. */
  id: string;
  /** `Identity.RevisionNumber`. @default 200 */
  revision?: number;
  title: string;
  /** `KBArticleIDs`, digits only. @default [] */
  kb?: string[];
  /** The name of the category of type `UpdateClassification` (`Security Updates`, ...), or null. */
  classification: string | null;
  /** Every category name. @default [classification] */
  categories?: string[];
  /** `MsrcSeverity`. @default null */
  severity?: 'Critical' | 'Important' | 'Moderate' | 'Low' | null;
  /** `MaxDownloadSize` in bytes. @default 0 */
  size?: number;
  /** `InstallationBehavior.RebootBehavior`: 0 never, 1 always, 2 can request. @default 0 */
  rebootBehavior?: 0 | 1 | 2;
  /** `LastDeploymentChangeTime`. @default null */
  released?: Date | string | null;
  /**
   * The UpdateID of an update that supersedes this one. While that update is offered or
   * installed, this one is neither found by the scan nor installable (Windows Update stops
   * offering a superseded update).
   */
  supersededBy?: string;
  /**
   * Installing this update fails: in `download` or `install` (default), with this HRESULT
   * (`0x80070643`), as `IUpdateDownloadResult`/`IUpdateInstallationResult` report it
   * (`ResultCode` 4 Failed).
   */
  failure?: { phase?: 'download' | 'install'; hresult: string };
}

/** An update installed on the emulated host. */
export interface WinRmFakeInstalledUpdate {
  id: string;
  revision: number;
  kb: string[];
  title: string;
  /** Installed, but completes only at the next restart (its `rebootBehavior` was not 0). */
  pendingReboot?: boolean;
}

/** The Windows Update state of the emulated host. */
export interface WinRmFakeWindowsUpdate {
  /** What the searcher returns for `IsInstalled=0 and Type='Software' and IsHidden=0`. */
  offered: WinRmFakeUpdate[];
  /** A reboot is pending (the `WindowsUpdate\Auto Update\RebootRequired` key exists). @default false */
  rebootPending?: boolean;
  /** The reboot keys found, overriding `rebootPending` (`ComponentBasedServicing`, `WindowsUpdate`, `PendingFileRenameOperations`). */
  rebootReasons?: string[];
  /** The search fails with this HRESULT (e.g. `0x8024402C`), as the COM call throws it. */
  searchError?: { hresult: string; message?: string };
  /** `Win32_OperatingSystem`. @default Windows Server 2022 Datacenter, 10.0.20348, 64-bit */
  os?: { caption?: string; version?: string; build?: string; arch?: string };
  /**
   * Installed updates (what `IsInstalled=1` and the installation history list). The install
   * script moves offered updates here. @default []
   */
  installed?: WinRmFakeInstalledUpdate[];
  /** `Win32_OperatingSystem.LastBootUpTime`; a restart sets it to the time of the restart. @default 2026-01-01T00:00:00Z */
  lastBootTime?: Date | string;
  /**
   * How long a requested restart takes: until then every Windows script fails as if the host did
   * not answer, and the boot time is the old one. @default 0
   */
  restartMs?: number;
  /** Restarts the host went through (`shutdown.exe /r` from Fleetward's restart script). Counted by the fake. */
  restarts?: number;
  /** Every install the host was asked for: the pins (`name=UpdateID.revision`) of each, in order. Recorded by the fake. */
  installRequests?: string[][];
  /** The logged-on account is not an administrator (the preflight reports it). @default false */
  notAdministrator?: boolean;
  /** Free MiB on the system drive (the preflight reports it). @default 40960 */
  freeMiB?: number;
}

/** One HTTP request the fake answered, for assertions. */
export interface WinRmFakeRequest {
  /** The WS-Man action's last segment (`Create`, `Command`, `Receive`, `Send`, `Signal`, `Delete`), or undefined before the body was read (authentication legs). */
  action: string | undefined;
  /** HTTP status the fake answered. */
  status: number;
  /** The scheme of the request's `Authorization` header (`Basic`, `NTLM`, `Negotiate`), or `connection` when an earlier NTLM handshake on the same connection authenticated it, or undefined. */
  authScheme: string | undefined;
  /** The authenticated user, if any. */
  username: string | undefined;
  /** The connection's number (one per TCP connection), to assert connection reuse. */
  connection: number;
  /** The WSManFault code of a fault reply, if any. */
  faultCode?: string;
}

/** A shell the fake holds open. */
export interface WinRmFakeShell {
  shellId: string;
  username: string;
  env: Record<string, string>;
  workingDirectory: string | undefined;
  codepage: number;
  /** Commands started in it, oldest first. */
  commands: {
    commandId: string;
    command: string;
    arguments: string[];
    state: 'running' | 'done';
    signals: string[];
    /** The child process (and process group) id, for a command run by the `processes` backend once it started. */
    pid?: number;
  }[];
}

/** Failures to inject. Counted in requests, not time, unless said otherwise. */
export interface WinRmFakeFaults {
  /** The next request's connection is destroyed without an answer. */
  dropNextConnection(): void;
  /** The next `count` authenticated requests answer HTTP 500 with a SOAP `InternalError` fault. */
  serverError(count: number): void;
  /** Every `Receive` waits `ms` before answering, until called with 0. */
  slowReceive(ms: number): void;
  /** The next `count` `Receive` calls answer the `2150858793` operation time-out fault. */
  receiveTimeouts(count: number): void;
  /** Log-ons as this user fail with 401 from now on, as for an expired password. */
  expirePassword(username: string): void;
}

/** A running fake. */
export interface WinRmFake {
  /** `https://127.0.0.1:<port>/wsman` (or `http://…` with `http: true`). */
  endpoint: string;
  port: number;
  /** The test CA's certificate (PEM) that signed the server certificate; empty with `http: true`. */
  ca: string;
  /** SHA-256 fingerprint of the server certificate, colon-separated upper-case hex (as `X509Certificate.fingerprint256`); empty with `http: true`. */
  certificateFingerprint: string;
  /** Every answered request, oldest first. */
  requests: WinRmFakeRequest[];
  /** Open shells by id. */
  shells(): WinRmFakeShell[];
  faults: WinRmFakeFaults;
  /** Stops the server and drops its connections. */
  close(): Promise<void>;
}
