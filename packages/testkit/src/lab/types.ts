/**
 * The lab's public contract: real Linux servers on one machine, for tests that must see what
 * the SDK does to a server. Every lab host is a network namespace with its own address, a
 * copy-on-write root (overlayfs over `/` on a size-limited tmpfs), its own PID 1 and its own
 * OpenSSH `sshd`; package repositories built for the test give each host real pending patches.
 *
 * Tests talk to a host in two ways: over SSH like the SDK does (address, port, host keys and
 * credentials below), and over the **back channel** (`exec`, `readFile`, `writeFile`), which
 * runs inside the host's namespaces via `nsenter` and never touches SSH, so a test can check
 * side effects without trusting the code under test.
 */
import type { AdvisorySpec, AptSuiteSpec, LabPackageSpec, RpmRepositorySpec } from './repos/types.js';

/**
 * Which operating system a host pretends to be. Every flavour runs the machine's own
 * userland (Debian); what differs is what the SDK can observe:
 * - `debian`: Debian's own `/etc/os-release`, apt with the lab's apt repository as only source.
 * - `rhel`: `/etc/os-release` of Rocky Linux 9.4, an rpm database and dnf with the lab's RPM
 *   repository (with `updateinfo.xml`) as only repository.
 * - `suse`: `/etc/os-release` of SLES 15 SP5, an rpm database and zypper with the same RPM
 *   repository.
 */
export type LabFlavour = 'debian' | 'rhel' | 'suse';

/** Every flavour, in a stable order. */
export const LAB_FLAVOURS: readonly LabFlavour[] = Object.freeze(['debian', 'rhel', 'suse'] as const);

/** One host to start. */
export interface LabHostSpec {
  /** Hostname and key of the host in the lab: lowercase letters, digits and `-`, 1–32 chars. */
  name: string;
  flavour: LabFlavour;
  /**
   * Size of the host's writable layer (a tmpfs holding the overlay's upper dir), in MiB.
   * Everything the host writes lands there, so `fillDisk()` fills this, never the real disk.
   * @default 512
   */
  diskSizeMb?: number;
}

/**
 * What `sudo` lets a login user do: `nopasswd` = `ALL=(ALL:ALL) NOPASSWD:ALL`,
 * `password` = `ALL=(ALL:ALL) ALL` (the user's password is asked), `none` = no sudo rule.
 */
export type LabSudoMode = 'nopasswd' | 'password' | 'none';

/** A login user created on every host (root always exists and always gets a key). */
export interface LabUserSpec {
  /** Login name: lowercase letters, digits, `_` and `-`, starting with a letter, ≤ 32 chars. */
  login: string;
  /** @default 'none' */
  sudo?: LabSudoMode;
  /**
   * The user's password: a string, `true` for a generated one, or `false`/absent for none
   * (key login only). Required (string or `true`) when `sudo` is `password`.
   */
  password?: string | boolean;
  /** @default '/bin/bash' */
  shell?: string;
  /** Supplementary groups, which must exist on the host (e.g. `adm`). */
  groups?: string[];
}

/** Content of the lab's apt side: repository suites and what hosts have installed at start. */
export interface LabAptContent {
  /** Suites served at `http://<gateway>:<port>/apt`, each one a line in `sources.list`. */
  suites: AptSuiteSpec[];
  /** Packages installed with `dpkg -i` on every debian host before `apt-get update`. */
  installed: LabPackageSpec[];
}

/** Content of the lab's RPM side, served to rhel (dnf) and suse (zypper) hosts alike. */
export interface LabRpmContent {
  /** The repository at `http://<gateway>:<port>/rpm`, with its advisories. */
  repository: RpmRepositorySpec;
  /** Packages installed with `rpm -i --nodeps` on every rhel and suse host. */
  installed: LabPackageSpec[];
}

/** Everything the lab publishes. Defaults: `LAB_DEFAULT_CONTENT`. */
export interface LabContent {
  apt: LabAptContent;
  rpm: LabRpmContent;
}

/** Options of `startLab`. */
export interface LabOptions {
  /** The hosts, started in parallel. Names must be unique. At most 200. */
  hosts: LabHostSpec[];
  /** Login users created on every host. @default LAB_DEFAULT_USERS */
  users?: LabUserSpec[];
  /**
   * What the repositories serve and hosts have installed at start; each part given replaces
   * the default part (`LAB_DEFAULT_CONTENT`) as a whole.
   */
  packages?: { apt?: Partial<LabAptContent>; rpm?: Partial<LabRpmContent> };
  /** How long one host may take to boot (init up, sshd listening). @default 30_000 */
  bootTimeoutMs?: number;
}

/** A host key as the SDK will see it during the SSH handshake. */
export interface LabHostKey {
  /** `ssh-ed25519` or `ssh-rsa`. */
  type: string;
  /** The public key in authorized_keys/known_hosts form: `<type> <base64>` (no comment). */
  publicKey: string;
  /** OpenSSH SHA-256 fingerprint: `SHA256:<unpadded base64>`. */
  fingerprint: string;
}

/** The host keys `sshd` of a host really serves. */
export interface LabHostKeys {
  ed25519: LabHostKey;
  rsa?: LabHostKey;
}

/** Credentials of one account on a host. Keys are unencrypted OpenSSH ed25519 keys. */
export interface LabCredentials {
  login: string;
  /** OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), unencrypted. */
  privateKey: string;
  /** `ssh-ed25519 <base64> <comment>`, as installed in the account's `authorized_keys`. */
  publicKey: string;
  /** Path of the private key on the machine running the test (mode 0600), for `ssh -i`. */
  privateKeyPath: string;
  /** The account's password, when it has one (root never has). */
  password?: string;
  /** What sudo allows this account; `none` for root, which needs no sudo. */
  sudo: LabSudoMode;
}

/** root plus every `LabUserSpec` login. */
export type LabHostUsers = { root: LabCredentials } & Record<string, LabCredentials>;

/** Options of a back-channel `exec`. */
export interface LabExecOptions {
  /** Written to the command's stdin, which is then closed. Without it stdin is empty. */
  input?: string | Uint8Array;
  /**
   * Extra environment. The command starts from a clean environment (`PATH`, `HOME`, `USER`,
   * `LOGNAME`, `LANG=C.UTF-8`) like a fresh root login, never the test process's environment.
   */
  env?: Record<string, string>;
  /** Working directory inside the host. @default the user's home */
  cwd?: string;
  /** Run as this login instead of root. */
  user?: string;
  /** Kill the command (its whole process group) after this long; it then reports signal SIGKILL. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What a back-channel command did. `exec` resolves whatever the exit status. */
export interface LabExecResult {
  /** Exit status; 128 + signal number when a signal ended it. */
  exitCode: number;
  /** The signal that ended it, if one did. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Life cycle of a host: `booting` → `running`; a reboot from inside goes back to `booting` by
 * itself; `poweroff`/`halt` (or an unexpected end of PID 1) → `off` until `start()`;
 * `failed` when a boot did not finish; `stopped` after `lab.stop()`.
 */
export type LabHostState = 'booting' | 'running' | 'off' | 'failed' | 'stopped';

/** A TCP endpoint in front of a host's sshd. */
export interface LabEndpoint {
  address: string;
  port: number;
}

/** The delaying proxy returned by `host.slow()`. */
export interface LabSlowProxy extends LabEndpoint {
  /** The delay added to every chunk, each way. */
  delayMs: number;
  /** Stops listening and cuts the connections it carries. */
  close(): Promise<void>;
}

/** A fault that lasts until released. */
export interface LabHeldFault {
  release(): Promise<void>;
}

/** One lab host. All methods reject with `LabHostDownError` when the host is not running. */
export interface LabHost {
  readonly name: string;
  readonly flavour: LabFlavour;
  /** The host's address, `10.250.<lab>.<n>`, reachable from the machine running the test. */
  readonly address: string;
  /** sshd's port: always 22. */
  readonly port: number;
  /** The host keys sshd serves (generated for this host, never the machine's own). */
  readonly hostKeys: LabHostKeys;
  /** `known_hosts` lines for this host (`<address> <type> <base64>`, one per host key). */
  readonly knownHosts: string;
  /** Credentials of root and every lab user. */
  readonly users: LabHostUsers;
  /** Current life-cycle state. */
  readonly state: LabHostState;
  /** Boots so far (1 after start, +1 per reboot or start()). */
  readonly bootCount: number;

  /**
   * Back channel: runs `argv` (no shell) as root (or `opts.user`) inside the host's mount,
   * PID, UTS, IPC and network namespaces via `nsenter`, without SSH. Resolves with the exit
   * status whatever it is; rejects only when the command cannot be started. Like `ssh`, it
   * resolves once the command's stdout and stderr are closed: start daemons with their output
   * redirected. Output beyond 64 MiB is dropped.
   */
  exec(argv: string[], opts?: LabExecOptions): Promise<LabExecResult>;
  /** Back channel: `sh -c script` as root. */
  sh(script: string, opts?: LabExecOptions): Promise<LabExecResult>;
  /** Back channel: a file's content as UTF-8. Rejects with `LabCommandError` when it cannot be read. */
  readFile(path: string): Promise<string>;
  /** Back channel: creates or replaces a file (parents created), optionally with a mode (`'600'`) and owner (`'alice'` or `'alice:alice'`). */
  writeFile(
    path: string,
    content: string | Uint8Array,
    opts?: { mode?: string; owner?: string },
  ): Promise<void>;
  /** The host's `/proc/sys/kernel/random/boot_id`: a fresh UUID every boot. */
  bootId(): Promise<string>;

  /**
   * Reboots from inside (`reboot` in the host), like an administrator would, and by default
   * waits until the new boot is up (new boot id, sshd listening again).
   */
  reboot(opts?: { wait?: boolean; timeoutMs?: number }): Promise<void>;
  /** Powers off from inside (`poweroff`); the host stays down until `start()`. */
  poweroff(opts?: { wait?: boolean; timeoutMs?: number }): Promise<void>;
  /** Boots a host that is `off` or `failed`; resolves when it runs. */
  start(): Promise<void>;
  /**
   * Resolves when the host is running a boot other than `previousBootId` (or any boot, without
   * it). Use it after the SDK rebooted the host. Rejects when the host is or goes `off`,
   * `failed` or `stopped`, or after `timeoutMs` (default 60 s).
   */
  waitForBoot(opts?: { previousBootId?: string; timeoutMs?: number }): Promise<void>;
  /** Re-reads repository metadata inside the host (`apt-get update`, `dnf makecache`, `zypper refresh`). */
  refreshPackageLists(): Promise<void>;

  /** Fault: unplugs the host's cable (its veth goes down); the back channel still works. */
  cutNetwork(): Promise<void>;
  /** Plugs the cable back in. */
  restoreNetwork(): Promise<void>;
  /**
   * Fault: a TCP proxy on the lab's gateway address that forwards to this host's sshd with
   * `delayMs` added to every chunk in each direction (emulated latency: the kernel here has
   * no `netem`). Connect to the returned endpoint instead of `address:22`.
   */
  slow(opts: { delayMs: number }): Promise<LabSlowProxy>;
  /** Fault: kills sshd's listener (open sessions survive, like on a real server). */
  killSshd(): Promise<void>;
  /** Starts sshd again (no-op when it listens). */
  startSshd(): Promise<void>;
  /**
   * Fault: holds the package manager's lock like a concurrent run would. debian: fcntl locks
   * on `/var/lib/dpkg/lock-frontend` and `/var/lib/dpkg/lock`; rhel: dnf's
   * `/var/lib/dnf/rpmdb_lock.pid` and rpm's `/var/lib/rpm/.rpm.lock`; suse: `/run/zypp.pid`
   * and rpm's lock. The holder is a `python3` process in the host.
   */
  holdPackageLock(): Promise<LabHeldFault>;
  /**
   * Fault: fills the host's writable layer until writes fail with ENOSPC. Only the host's
   * tmpfs fills; the real disk is never written.
   */
  fillDisk(): Promise<LabHeldFault>;
  /** The host's console (output of its init, all boots), for debugging. */
  consoleLog(): string;
}

/** What `lab.publish` adds to an apt suite (a new suite needs `origin` and `label`). */
export interface LabAptPublish {
  suite: string;
  origin?: string;
  label?: string;
  version?: string;
  packages: LabPackageSpec[];
}

/** Additions for `lab.publish`. Everything is added to what is published; nothing is removed. */
export interface LabPublishInput {
  /** Packages merged into the suites of the same name; unknown suites are created and added to every debian host's `sources.list`. */
  apt?: LabAptPublish[];
  /** Packages added to the RPM repository; an advisory with a known id replaces the old one. */
  rpm?: { packages?: LabPackageSpec[]; advisories?: AdvisorySpec[] };
  /** Also run `refreshPackageLists()` on every running host. @default false */
  refresh?: boolean;
}

/** A running lab. */
export interface Lab {
  /** Six hex digits naming every resource of this lab (netns `fwlab-<id>-<host>`, links `fwb<id>`, `fwv<id>NN`). */
  readonly id: string;
  readonly hosts: readonly LabHost[];
  /** The lab's gateway: the bridge address in the root namespace, where the repositories are served. */
  readonly gateway: string;
  /** The lab's subnet, `10.250.<n>.0/24`. */
  readonly subnet: string;
  /** URLs of the repositories as hosts see them. */
  readonly repositories: { apt: string; rpm: string };
  /** Exactly what the repositories serve now and what hosts had installed at start. */
  readonly published: LabContent;
  /** A `known_hosts` file (mode 0644) with every host's keys, for `ssh -o UserKnownHostsFile=`. */
  readonly knownHostsPath: string;
  /** Wall-clock milliseconds `startLab` took. */
  readonly startupMs: number;
  /** Requests the repository server answered (method, path, status), oldest first. */
  readonly repositoryRequests: readonly { method: string; path: string; status: number }[];
  /** The host of that name; throws `LabError` when there is none. */
  host(name: string): LabHost;
  /** Adds packages and advisories and republishes the repositories (see `LabPublishInput`). */
  publish(input: LabPublishInput): Promise<LabContent>;
  /** `refreshPackageLists()` on every running host, in parallel. */
  refreshPackageLists(): Promise<void>;
  /**
   * Stops every host and removes everything the lab created: processes, namespaces, veths,
   * bridge, mounts, state dir. Idempotent; safe after a failed test.
   */
  stop(): Promise<void>;
}
