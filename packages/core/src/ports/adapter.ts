import type { Account, AgentFacts, OsFacts, OutputSummary, PendingPatch, Server } from '../domain/index.js';
import type { Logger } from './logger.js';
import type { SecretStore } from './secret-store.js';

/**
 * A command to run on a server. It is data, never a shell string: values reach the server as
 * separate argv elements or environment variables, so no value can become shell syntax.
 */
export type Command = ArgvCommand | ScriptCommand;

export interface CommandCommon {
  /** Environment variables for the command. Names must match `^[A-Za-z_][A-Za-z0-9_]*$`. */
  env?: Record<string, string>;
  /** Run as root through `sudo -n` when the login is not root. @default false */
  sudo?: boolean;
}

/** Run `argv[0]` with the rest as its arguments, with no shell in between. */
export interface ArgvCommand extends CommandCommon {
  argv: readonly string[];
  /** Bytes fed to the command's standard input; then it is closed. */
  stdin?: string;
}

/**
 * Feed `script` on standard input to an explicit interpreter, e.g. `['sh', '-s']` or
 * `['bash', '-s', '--', 'arg1']`. The script text is constant: parameters go in `env`.
 */
export interface ScriptCommand extends CommandCommon {
  interpreter: readonly string[];
  script: string;
}

export interface ExecOptions {
  /** Kill the command after this long. @default 300_000 */
  timeoutMs?: number;
  /** Keep at most this many bytes of each stream; the rest is counted and hashed. @default 1_048_576 */
  maxOutputBytes?: number;
  /** Cancels the command: it is killed and the call rejects with `AbortedError`. */
  signal?: AbortSignal;
  /** Called with output as it arrives, before caps apply. */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

export interface ExecResult {
  /** Exit code, or `null` when the command was ended by a signal. */
  exitCode: number | null;
  /** The signal that ended the command (`SIGKILL`), or `null`. */
  signal: string | null;
  stdout: OutputSummary;
  stderr: OutputSummary;
  durationMs: number;
}

/** Runs commands on servers. */
export interface ExecCapability {
  /**
   * Runs `command` on `server` and resolves when it has ended, whatever its exit code.
   * @throws TimeoutError when `timeoutMs` passed (the command was killed).
   * @throws AbortedError when `signal` fired (the command was killed).
   * @throws TransportError when the server could not be reached or the channel broke.
   * @throws HostKeyMismatchError when the server's host key is not the pinned one; nothing ran.
   */
  exec(server: Server, command: Command, options?: ExecOptions): Promise<ExecResult>;
}

/**
 * A server found by discovery, before it is stored. Core validates every field: an entry it cannot
 * store (no usable `providerId`, a malformed region) is reported as rejected, never thrown.
 */
export interface DiscoveredServer {
  /**
   * The provider's own id of the instance (`i-0abc…`, a VM resource id), unique in the account.
   * Core matches stored servers by (account, providerId) and derives new servers' ids from it.
   */
  providerId: string;
  /** Display name (e.g. the `Name` tag); control characters are replaced, 200 characters kept. */
  name: string;
  /**
   * The region the instance runs in. Needed for region failures to protect it: a server without
   * a region is only marked gone when no region of the account failed.
   */
  region?: string;
  /** The address Fleetward should reach it at (private or public, the adapter's choice). Dropped when malformed. */
  address?: string;
  /** OS facts where the provider knows them. Dropped when they do not fit `OsFactsSchema`. */
  os?: OsFacts;
  /** The provider's management agent (SSM agent), when the provider has one. Dropped when it does not fit `AgentFactsSchema`. */
  agent?: AgentFacts;
  /**
   * The provider's tags exactly as the provider holds them (any strings). Core maps them to
   * labels under `tag.<provider>/<key>`, sanitized to the label rules; a tag that cannot be made
   * a label is dropped and counted (see docs/discovery.md). Adapters must not sanitize them.
   */
  labels: Record<string, string>;
}

/** A region that could not be listed, and why. */
export interface DiscoveryRegionFailure {
  region: string;
  /** What failed: an `Error` (a `FleetwardError` keeps its code). Core redacts its message. */
  error: unknown;
}

/**
 * What {@link DiscoverCapability.discover} resolves when part of the account could not be
 * listed. Servers of a failed region that were stored before are neither changed nor marked gone:
 * they were not seen, which proves nothing.
 */
export interface DiscoveryResult {
  /** The servers of every region that was listed completely. */
  servers: DiscoveredServer[];
  /** Regions that failed while the others were listed. @default [] */
  failures?: DiscoveryRegionFailure[];
}

/** Lists the servers of an account from the provider's inventory. */
export interface DiscoverCapability {
  /**
   * Lists every server of `account` in every region it covers (`account.regions`, or all the
   * provider's regions when empty), following pagination to the end. A region that fails is
   * reported in `failures` and the others are still returned; resolving a plain array means
   * every region was listed. A region that was only partly listed must be reported as failed,
   * never returned partly: a server missing from the answer is marked gone.
   * @throws AbortedError when `signal` fired.
   * @throws FleetwardError (e.g. `TransportError`, `AuthorizationError`) when the account as a
   * whole could not be listed (credentials refused, endpoint unreachable); that account alone
   * fails, with this error's code and message.
   */
  discover(
    account: Account,
    options?: { signal?: AbortSignal },
  ): Promise<DiscoveredServer[] | DiscoveryResult>;
}

export interface NativeScanResult {
  patches: PendingPatch[];
  rebootRequired: boolean;
  os?: OsFacts;
}

/** Provider-native patch assessment (SSM, Azure assessPatches, OS Config). */
export interface ScanCapability {
  scan(server: Server, options?: { signal?: AbortSignal }): Promise<NativeScanResult>;
}

export interface InstallRequest {
  /** Exact versions to install: `name` and `version` as the plan pinned them. */
  packages: readonly { name: string; version: string }[];
  reboot: 'never' | 'if-required' | 'always';
}

export interface InstallResult {
  installed: { name: string; version: string }[];
  failed: { name: string; reason: string }[];
  rebootRequired: boolean;
  rebooted: boolean;
}

/** Provider-native patch installation. */
export interface InstallCapability {
  install(
    server: Server,
    request: InstallRequest,
    options?: { signal?: AbortSignal },
  ): Promise<InstallResult>;
}

export interface AuthorizedKey {
  login: string;
  /** OpenSSH public key line (type, base64, comment). */
  publicKey: string;
  /** `authorized_keys` options, e.g. `expiry-time="20261231000000Z"`. */
  options?: string[];
}

/** Installs, lists and removes authorized keys through the provider's own mechanism. */
export interface KeysCapability {
  list(server: Server, login: string): Promise<AuthorizedKey[]>;
  install(server: Server, key: AuthorizedKey): Promise<void>;
  remove(server: Server, login: string, publicKey: string): Promise<boolean>;
}

/** What {@link LoginCapability.probe} found. */
export type LoginProbe =
  | { ok: true }
  /**
   * `refused`: the server answered and refused this login (or its sudo): the credential does not
   * work there. Otherwise the probe could not tell (unreachable, timeout): never treat that as
   * proof either way.
   */
  | { ok: false; refused: boolean; message: string };

/** A key login for {@link LoginCapability.probe}: what SSH logs in with, and key rotation proves. */
export interface KeyLoginCredentials {
  username: string;
  /** An OpenSSH or PEM private key, unencrypted. Secret: never logged or kept. */
  privateKey: string;
}

/** A password login for {@link LoginCapability.probe}: what WinRM logs in with (SSH takes it too). */
export interface PasswordLoginCredentials {
  /** The login; on WinRM `DOMAIN\\user` names a domain account. */
  username: string;
  /** Secret: never logged or kept. */
  password: string;
}

/**
 * The credential a probe proves. Which ones an adapter takes:
 * - SSH (`@fleetward/adapter-ssh`): both, a key by `publickey` and a password by `password`
 *   authentication (the server must allow it).
 * - WinRM (`@fleetward/adapter-winrm`): passwords only, by the adapter's configured scheme (NTLM or
 *   Basic); a key answers `{ ok: false, refused: false }`, saying so.
 *
 * An adapter that cannot use the kind it is given answers `{ ok: false, refused: false }` with a
 * message naming what it takes: that credential was not tried, so nothing is proven either way.
 */
export type LoginCredentials = KeyLoginCredentials | PasswordLoginCredentials;

/** Options of {@link LoginCapability.probe}. */
export interface LoginProbeOptions {
  /**
   * Also prove the login may run commands as root without a password (`sudo -n true`). Only for
   * adapters with sudo (SSH); others document that it has no meaning there and ignore it.
   * @default false
   */
  sudo?: boolean;
  /** Bound on the probe's command (and, where the adapter says so, the whole probe). @default adapter-specific */
  timeoutMs?: number;
}

/**
 * Proves that a credential logs in, over a connection of its own. Key rotation relies on it: a new
 * key is trusted only after it has logged in, and an old key is retired only once it is refused.
 */
export interface LoginCapability {
  /**
   * Opens a NEW connection to `server` (never a pooled or cached one) with exactly `credentials`,
   * verifies the host key (or certificate) as `exec` does, runs the smallest command the target
   * has (`true`, and `sudo -n true` when `sudo`; `cmd /c exit 0` on Windows), closes it.
   * Never throws for a refused login: that is `{ ok: false, refused: true }`.
   * @throws HostKeyMismatchError when the host key is not the expected one; nothing was tried.
   * @throws ValidationError when `credentials` cannot be used as given (an unreadable or encrypted
   *   private key, an empty password, a key and a password at once); nothing was tried.
   */
  probe(server: Server, credentials: LoginCredentials, options?: LoginProbeOptions): Promise<LoginProbe>;
}

/** What {@link EphemeralKeyCapability.offer} is asked to do. */
export interface EphemeralKeyOffer {
  /** The POSIX login the key is accepted for; core has validated it as a login name. */
  login: string;
  /** An OpenSSH public key line (`type base64 [comment]`); core has validated it. Public material. */
  publicKey: string;
  /** Cancels the offer: the call rejects with `AbortedError` (the key may still have been accepted). */
  signal?: AbortSignal;
}

/**
 * Makes a server accept a public key for a short time without installing anything that stays:
 * EC2 Instance Connect's `SendSSHPublicKey` (the key is served to sshd for 60 seconds), or any
 * mechanism with the same promise. Just-in-time grants of mode `ephemeral-key` use it: the grantee
 * asks Fleetward (`access.connect`) for each login, and nothing is left to remove when the grant
 * ends. Checked when such a request is made: every server of it must have this capability.
 */
export interface EphemeralKeyCapability {
  /**
   * Makes `server` accept `publicKey` for `login` from now until the returned `expiresAt`, and
   * nothing longer. Must not write `authorized_keys`, create users or leave any other trace that
   * outlives `expiresAt`; must never pass `login` or `publicKey` through a shell. Resolves only
   * once the provider has accepted the key (a login may start at once).
   * @returns `expiresAt`: an ISO 8601 UTC instant until which the key is accepted, so a login
   *   started before it is let in. An adapter that cannot know the end exactly gives the earliest
   *   it may be (EC2 Instance Connect: 60 s counted from before the push).
   * @throws ValidationError when the server cannot take keys this way (not an instance of the
   *   provider, no region) or the login is not one the provider accepts; nothing was sent.
   * @throws NotFoundError when the provider does not know the server.
   * @throws AuthorizationError when the provider refused the adapter's credentials or rights.
   * @throws TransportError when the provider could not be reached or refused for another reason
   *   (an instance that is not running, throttling once retries are spent); `retryable` says
   *   whether trying again may help.
   * @throws AbortedError when `signal` fired.
   */
  offer(server: Server, offer: EphemeralKeyOffer): Promise<{ expiresAt: string }>;
}

/** Backups before or after patching: a disk snapshot or an image. */
export interface SnapshotCapability {
  snapshot(server: Server, options: { label: string; signal?: AbortSignal }): Promise<{ snapshotId: string }>;
}

/**
 * What a Fleet gives the adapters registered with it (see {@link Adapter.attach}): its secret
 * store, a read of the accounts servers belong to, and its logger.
 */
export interface AdapterContext {
  /**
   * The Fleet's secret store, or `undefined` when the Fleet has none. Values read through it are
   * known to the Fleet's logger, which redacts them wherever they would appear.
   */
  readonly secrets: SecretStore | undefined;
  /** The account `accountId` of tenant `tenantId` (a server's `tenantId` and `accountId`), or `undefined`. */
  account(tenantId: string, accountId: string): Promise<Account | undefined>;
  /** The Fleet's logger, behind its redaction. */
  readonly logger: Logger;
}

/**
 * How Fleetward reaches one kind of target. Every capability is optional and independent: the core
 * uses a native capability when there is one and otherwise falls back to `exec` plus the OS
 * driver. An adapter with none of them is refused at registration.
 */
export interface Adapter {
  /** Registration name; servers choose their adapter by this name (or by provider). */
  readonly name: string;
  readonly discover?: DiscoverCapability;
  readonly exec?: ExecCapability;
  readonly scan?: ScanCapability;
  readonly install?: InstallCapability;
  readonly keys?: KeysCapability;
  readonly snapshot?: SnapshotCapability;
  readonly login?: LoginCapability;
  readonly ephemeralKeys?: EphemeralKeyCapability;
  /**
   * Called once by `createFleet` with what the Fleet offers its adapters, before any capability is
   * used; e.g. an adapter that reads an account's credentials by its `credentialsRef`. An adapter
   * belongs to one Fleet at a time: it may throw when it is attached again before `close`.
   */
  attach?(context: AdapterContext): void;
  /** Releases connections and timers. Called once, by `fleet.close()`. */
  close?(): Promise<void>;
}

export const CAPABILITIES = [
  'discover',
  'exec',
  'scan',
  'install',
  'keys',
  'snapshot',
  'login',
  'ephemeralKeys',
] as const;
export type CapabilityName = (typeof CAPABILITIES)[number];
