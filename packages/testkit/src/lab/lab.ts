/**
 * startLab and the running lab: the bridge, the keeper of the hosts' disks, the repository
 * server, publishing, and teardown that also happens when the test process exits or is
 * signalled.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { aptRepository, packageFiles, rpmRepository } from './content.js';
import { LAB_DEFAULT_CONTENT, LAB_DEFAULT_DISK_SIZE_MB, LAB_DEFAULT_USERS } from './defaults.js';
import { LabError, LabOptionsError, LabUnavailableError } from './errors.js';
import { LabHostImpl, type NormalizedUser, type SeedFile } from './host.js';
import { labPrerequisites } from './prerequisites.js';
import { LabRepoServer } from './repo-server.js';
import type { LabPackageSpec } from './repos/types.js';
import {
  aptSources,
  DNF_CONF,
  dnfRepo,
  HOLD_LOCKS_SCRIPT,
  HOST_LIB,
  HOST_STATE,
  INIT_SCRIPT,
  OS_RELEASE,
  POWER_SCRIPT,
  RHEL_RELEASE,
  RPM_MACROS,
  START_SSHD_SCRIPT,
  sshdConfig,
  ZYPP_CONF,
  zypperRepo,
} from './scripts.js';
import {
  bridgeName,
  claimSubnet,
  cleanupLabsSync,
  createLabDir,
  findLeftovers,
  isClean,
  labDir,
  netnsName,
  removeLeftovers,
  vethName,
} from './state.js';
import { binary, killGroup, runOk, systemEnv } from './system.js';
import {
  LAB_FLAVOURS,
  type Lab,
  type LabContent,
  type LabFlavour,
  type LabHost,
  type LabHostSpec,
  type LabOptions,
  type LabPublishInput,
  type LabSlowProxy,
  type LabUserSpec,
} from './types.js';

const HOST_NAME = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;
const LOGIN = /^[a-z][a-z0-9_-]{0,31}$/;
const GROUP = /^[a-z_][a-z0-9_-]{0,31}$/;
const MAX_HOSTS = 200;
const FIRST_HOST_OCTET = 10;

interface NormalizedOptions {
  hosts: Required<LabHostSpec>[];
  users: NormalizedUser[];
  content: LabContent;
  bootTimeoutMs: number;
}

/**
 * Starts a lab: one network namespace, veth, overlay root, PID 1 and sshd per host, all in
 * parallel, plus the lab's apt and RPM repositories served on the lab's gateway. Resolves
 * when every host runs, has its users and old packages, and has read the repositories (so
 * each has real pending patches). Leftovers of dead labs are removed first.
 *
 * The lab is torn down by `lab.stop()`, and also (synchronously, as far as possible) when the
 * process exits or gets SIGINT/SIGTERM/SIGHUP; hosts die with the process even on SIGKILL,
 * and the next `startLab` or `fleetward-lab cleanup` removes what remains.
 *
 * @throws LabUnavailableError when the machine cannot run a lab (see `labPrerequisites`).
 * @throws LabOptionsError for invalid options, naming the field.
 * @throws LabError when a host does not boot (with its console output) or a command fails.
 */
export async function startLab(options: LabOptions): Promise<Lab> {
  const started = performance.now();
  const opts = normalizeOptions(options);
  const missing = labPrerequisites({ flavours: [...new Set(opts.hosts.map((h) => h.flavour))] });
  if (missing.length > 0) throw new LabUnavailableError(missing);
  cleanupLabsSync();
  const lab = new LabImpl(opts);
  try {
    await lab.start();
  } catch (error) {
    await lab.stop().catch(() => {});
    throw error;
  }
  lab.startupMs = Math.round(performance.now() - started);
  return lab;
}

function normalizeOptions(options: LabOptions): NormalizedOptions {
  if (typeof options !== 'object' || options === null)
    throw new LabOptionsError('options', 'must be an object');
  if (!Array.isArray(options.hosts) || options.hosts.length === 0) {
    throw new LabOptionsError('hosts', 'must be a non-empty array');
  }
  if (options.hosts.length > MAX_HOSTS) throw new LabOptionsError('hosts', `at most ${MAX_HOSTS} hosts`);
  const names = new Set<string>();
  const hosts = options.hosts.map((h, i): Required<LabHostSpec> => {
    const where = `hosts[${i}]`;
    if (typeof h?.name !== 'string' || !HOST_NAME.test(h.name)) {
      throw new LabOptionsError(
        `${where}.name`,
        'lowercase letters, digits and "-", 1–32 characters, starting with a letter',
      );
    }
    if (names.has(h.name)) throw new LabOptionsError(`${where}.name`, `duplicate host name ${h.name}`);
    names.add(h.name);
    if (!LAB_FLAVOURS.includes(h.flavour)) {
      throw new LabOptionsError(`${where}.flavour`, `must be one of ${LAB_FLAVOURS.join(', ')}`);
    }
    const diskSizeMb = h.diskSizeMb ?? LAB_DEFAULT_DISK_SIZE_MB;
    if (!Number.isInteger(diskSizeMb) || diskSizeMb < 64 || diskSizeMb > 65536) {
      throw new LabOptionsError(`${where}.diskSizeMb`, 'an integer from 64 to 65536');
    }
    return { name: h.name, flavour: h.flavour, diskSizeMb };
  });
  const users = (options.users ?? LAB_DEFAULT_USERS).map((u, i) => normalizeUser(u, `users[${i}]`));
  const logins = new Set<string>();
  for (const [i, u] of users.entries()) {
    if (logins.has(u.login)) throw new LabOptionsError(`users[${i}].login`, `duplicate login ${u.login}`);
    logins.add(u.login);
  }
  const packages = options.packages ?? {};
  const content: LabContent = structuredClone({
    apt: { ...LAB_DEFAULT_CONTENT.apt, ...packages.apt },
    rpm: { ...LAB_DEFAULT_CONTENT.rpm, ...packages.rpm },
  });
  if (!Array.isArray(content.apt.suites))
    throw new LabOptionsError('packages.apt.suites', 'must be an array');
  if (!Array.isArray(content.apt.installed))
    throw new LabOptionsError('packages.apt.installed', 'must be an array');
  if (!Array.isArray(content.rpm.installed))
    throw new LabOptionsError('packages.rpm.installed', 'must be an array');
  for (const [i, s] of content.apt.suites.entries()) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(s?.suite ?? '')) {
      throw new LabOptionsError(`packages.apt.suites[${i}].suite`, 'letters, digits, ".", "_", "+", "-"');
    }
  }
  const bootTimeoutMs = options.bootTimeoutMs ?? 30_000;
  if (!Number.isFinite(bootTimeoutMs) || bootTimeoutMs <= 0) {
    throw new LabOptionsError('bootTimeoutMs', 'must be a positive number');
  }
  return { hosts, users, content, bootTimeoutMs };
}

function normalizeUser(u: LabUserSpec, where: string): NormalizedUser {
  if (typeof u?.login !== 'string' || !LOGIN.test(u.login) || u.login === 'root') {
    throw new LabOptionsError(
      `${where}.login`,
      'lowercase letters, digits, "_" and "-", starting with a letter; not root',
    );
  }
  const sudo = u.sudo ?? 'none';
  if (!['nopasswd', 'password', 'none'].includes(sudo)) {
    throw new LabOptionsError(`${where}.sudo`, 'one of nopasswd, password, none');
  }
  let password: string | true | undefined;
  if (typeof u.password === 'string') {
    if (u.password.length === 0 || /[\n\r\0]/.test(u.password)) {
      throw new LabOptionsError(`${where}.password`, 'a non-empty single line');
    }
    password = u.password;
  } else if (u.password === true) {
    password = true;
  } else if (u.password !== undefined && u.password !== false) {
    throw new LabOptionsError(`${where}.password`, 'a string or a boolean');
  }
  if (sudo === 'password' && password === undefined) {
    throw new LabOptionsError(`${where}.password`, 'required when sudo is "password"');
  }
  const shell = u.shell ?? '/bin/bash';
  if (!/^\/[A-Za-z0-9._/-]+$/.test(shell)) throw new LabOptionsError(`${where}.shell`, 'an absolute path');
  const groups = u.groups ?? [];
  for (const [i, g] of groups.entries()) {
    if (!GROUP.test(g)) throw new LabOptionsError(`${where}.groups[${i}]`, 'a group name');
  }
  return { login: u.login, sudo, password, shell, groups: [...groups] };
}

/** Labs of this process that are not stopped yet, for the exit and signal handlers. */
const liveLabs = new Set<LabImpl>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;

function teardownAllSync(): void {
  for (const lab of [...liveLabs]) lab.teardownSync();
}

function onSignal(signal: NodeJS.Signals): void {
  teardownAllSync();
  uninstallHandlers();
  // Re-raise so the process ends as the signal intended, unless someone else handles it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', teardownAllSync);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', teardownAllSync);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

/**
 * Holds the hosts' disks: a process in a private mount namespace where each host's tmpfs and
 * overlay are mounted. Hosts boot from copies of this namespace, so a disk survives reboots;
 * when the keeper dies (stop, or with the test process), every disk goes with it and the
 * machine's own mount table never held any of them.
 */
class Keeper {
  private constructor(
    private readonly proc: ChildProcess,
    readonly mountFd: number,
  ) {}

  static start(labId: string): Promise<Keeper> {
    const script = [
      // Named network namespaces are nsfs mounts; a copy here would keep them alive after
      // `ip netns del`, long after their lab is gone.
      `awk '$3 == "nsfs" { print $2 }' /proc/self/mounts | while read -r m; do umount -l "$m" 2>/dev/null || true; done`,
      'echo FWLAB-KEEPER-READY',
      'exec sleep infinity',
    ].join('\n');
    const proc = spawn(
      binary('setpriv'),
      [
        '--pdeathsig',
        'KILL',
        '--',
        binary('unshare'),
        '--mount',
        '--propagation',
        'private',
        '--',
        '/bin/sh',
        '-c',
        script,
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: systemEnv(labId) },
    );
    return new Promise((resolve, reject) => {
      let output = '';
      let settled = false;
      const timer = setTimeout(() => {
        killGroup(proc);
        reject(new LabError(`the lab keeper did not start: ${output}`));
      }, 10_000);
      proc.stderr?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
      });
      proc.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new LabError(`the lab keeper ended (${code}): ${output}`));
      });
      proc.stdout?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
        if (settled || !output.includes('FWLAB-KEEPER-READY') || proc.pid === undefined) return;
        settled = true;
        clearTimeout(timer);
        try {
          const fd = openSync(`/proc/${proc.pid}/ns/mnt`, 'r');
          if (fstatSync(fd).ino === statSync('/proc/self/ns/mnt').ino) {
            closeSync(fd);
            throw new LabError('the lab keeper shares the mount namespace of the test process');
          }
          resolve(new Keeper(proc, fd));
        } catch (error) {
          killGroup(proc);
          reject(error);
        }
      });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) resolve();
      else this.proc.once('exit', () => resolve());
    });
    killGroup(this.proc);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.closeFd();
  }

  killSync(): void {
    killGroup(this.proc);
    this.closeFd();
  }

  private fdClosed = false;
  private closeFd(): void {
    if (this.fdClosed) return;
    this.fdClosed = true;
    closeSync(this.mountFd);
  }
}

interface BuiltContent {
  aptDir?: string;
  rpmDir?: string;
  debs: string[];
  rpms: string[];
}

class LabImpl implements Lab {
  readonly id: string;
  readonly hosts: LabHostImpl[] = [];
  gateway = '';
  subnet = '';
  startupMs = 0;
  private content: LabContent;
  private readonly opts: NormalizedOptions;
  private readonly dir: string;
  private keeper: Keeper | undefined;
  private server: LabRepoServer | undefined;
  private readonly proxies = new Set<LabSlowProxy>();
  private stopPromise: Promise<void> | undefined;
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(opts: NormalizedOptions) {
    this.opts = opts;
    this.content = deepFreeze(structuredClone(opts.content));
    const owner = createLabDir();
    this.id = owner.id;
    this.dir = labDir(this.id);
    liveLabs.add(this);
    installHandlers();
  }

  get published(): LabContent {
    return this.content;
  }

  get repositories(): { apt: string; rpm: string } {
    return { apt: this.server?.url('apt') ?? '', rpm: this.server?.url('rpm') ?? '' };
  }

  get repositoryRequests(): readonly { method: string; path: string; status: number }[] {
    return this.server?.requests ?? [];
  }

  get knownHostsPath(): string {
    return join(this.dir, 'known_hosts');
  }

  host(name: string): LabHost {
    const host = this.hosts.find((h) => h.name === name);
    if (!host) throw new LabError(`no lab host named ${name}`);
    return host;
  }

  async start(): Promise<void> {
    const ip = binary('ip');
    const n = claimSubnet(this.id);
    this.gateway = `10.250.${n}.1`;
    this.subnet = `10.250.${n}.0/24`;
    const flavours = new Set(this.opts.hosts.map((h) => h.flavour));
    const built = this.build(this.content, flavours);
    // An unhandled rejection here would outlive the try/catch of startLab.
    built.catch(() => {});

    const bridge = bridgeName(this.id);
    await runOk(ip, ['link', 'add', bridge, 'type', 'bridge']);
    await writeFile(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, '1\n').catch(() => {});
    await runOk(ip, ['addr', 'add', `${this.gateway}/24`, 'dev', bridge]);
    await runOk(ip, ['link', 'set', 'dev', bridge, 'up']);
    this.keeper = await Keeper.start(this.id);
    const initScriptPath = join(this.dir, 'init.sh');
    await writeFile(initScriptPath, INIT_SCRIPT, { mode: 0o755 });

    const keeper = this.keeper;
    this.opts.hosts.forEach((spec, index) => {
      const host = new LabHostImpl(
        spec,
        index,
        `10.250.${n}.${FIRST_HOST_OCTET + index}`,
        {
          netns: netnsName(this.id, spec.name),
          veth: vethName(this.id, index),
          dir: join(this.dir, 'hosts', spec.name),
        },
        {
          labId: this.id,
          bridge,
          gateway: this.gateway,
          initScriptPath,
          bootTimeoutMs: this.opts.bootTimeoutMs,
          keeperMountFd: () => keeper.mountFd,
          registerProxy: (proxy) => this.proxies.add(proxy),
        },
      );
      this.hosts.push(host);
    });
    await Promise.all(
      this.hosts.map(async (host) => {
        await mkdir(host.dir, { recursive: true, mode: 0o700 });
        await Promise.all([host.createNetwork(), host.createCredentials(this.opts.users)]);
      }),
    );

    this.server = new LabRepoServer(this.gateway);
    const port = await this.server.listen();
    await Promise.all(this.hosts.map((host) => host.restrictGatewayTraffic(port)));
    const content = await built;
    if (content.aptDir) this.server.setRoot('apt', content.aptDir);
    if (content.rpmDir) this.server.setRoot('rpm', content.rpmDir);

    await Promise.all(
      this.hosts.map(async (host) => {
        await host.provision(this.seedFiles(host, content), removals(host.flavour));
        await host.boot();
        await host.firstBoot(this.opts.users);
      }),
    );
    await writeFile(this.knownHostsPath, this.hosts.map((h) => h.knownHosts).join(''), { mode: 0o644 });
  }

  private async build(content: LabContent, flavours: Set<LabFlavour>): Promise<BuiltContent> {
    const apt = flavours.has('debian');
    const rpm = flavours.has('rhel') || flavours.has('suse');
    const [aptDir, rpmDir, debs, rpms] = await Promise.all([
      apt ? aptRepository(content.apt.suites) : undefined,
      rpm ? rpmRepository(content.rpm.repository) : undefined,
      apt ? packageFiles('deb', content.apt.installed) : [],
      rpm ? packageFiles('rpm', content.rpm.installed) : [],
    ]);
    return {
      ...(aptDir === undefined ? {} : { aptDir }),
      ...(rpmDir === undefined ? {} : { rpmDir }),
      debs,
      rpms,
    };
  }

  private seedFiles(host: LabHostImpl, content: BuiltContent): SeedFile[] {
    const hostsFile = [
      '127.0.0.1 localhost',
      '::1 localhost ip6-localhost ip6-loopback',
      `${this.gateway} fwlab-gateway`,
      ...this.hosts.map((h) => `${h.address} ${h.name}`),
    ].join('\n');
    const files: SeedFile[] = [
      { dest: '/etc/hostname', mode: 0o644, content: `${host.name}\n` },
      { dest: '/etc/hosts', mode: 0o644, content: `${hostsFile}\n` },
      // No DNS: hosts only know the lab (see /etc/hosts); a lookup fails at once.
      {
        dest: '/etc/resolv.conf',
        mode: 0o644,
        content: '# Fleetward lab host: no DNS.\noptions timeout:1 attempts:1\n',
      },
      { dest: '/etc/machine-id', mode: 0o444, content: `${randomBytes(16).toString('hex')}\n` },
      { dest: '/etc/ssh/sshd_config', mode: 0o644, content: sshdConfig(host.address) },
      ...host.hostKeyFiles(),
      { dest: '/root/.ssh/authorized_keys', mode: 0o600, content: `${host.users.root.publicKey}\n` },
      { dest: `${HOST_LIB}/start-sshd`, mode: 0o755, content: START_SSHD_SCRIPT },
      { dest: `${HOST_LIB}/hold-locks`, mode: 0o755, content: HOLD_LOCKS_SCRIPT },
      ...[
        '/usr/sbin/reboot',
        '/usr/sbin/poweroff',
        '/usr/sbin/halt',
        '/usr/sbin/shutdown',
        '/usr/bin/systemctl',
      ].map((dest) => ({ dest, mode: 0o755, content: POWER_SCRIPT })),
      ...host.userSeedFiles(this.opts.users),
      ...(host.flavour === 'debian' ? content.debs : content.rpms).map((source) => ({
        dest: `${HOST_STATE}/seed/pkgs/${basename(source)}`,
        mode: 0o644,
        source,
      })),
    ];
    const rpmUrl = this.repositories.rpm;
    switch (host.flavour) {
      case 'debian':
        files.push({
          dest: '/etc/apt/sources.list',
          mode: 0o644,
          content: aptSources(
            this.repositories.apt,
            this.content.apt.suites.map((s) => s.suite),
          ),
        });
        break;
      case 'rhel':
        files.push(
          { dest: '/etc/os-release', mode: 0o644, content: OS_RELEASE.rhel },
          { dest: '/usr/lib/os-release', mode: 0o644, content: OS_RELEASE.rhel },
          { dest: '/etc/redhat-release', mode: 0o644, content: RHEL_RELEASE },
          { dest: '/etc/rocky-release', mode: 0o644, content: RHEL_RELEASE },
          { dest: '/etc/system-release', mode: 0o644, content: RHEL_RELEASE },
          { dest: '/etc/dnf/vars/releasever', mode: 0o644, content: '9\n' },
          { dest: '/etc/dnf/dnf.conf', mode: 0o644, content: DNF_CONF },
          { dest: '/etc/yum.repos.d/fleetward-lab.repo', mode: 0o644, content: dnfRepo(rpmUrl) },
          { dest: '/etc/rpm/macros', mode: 0o644, content: RPM_MACROS },
        );
        break;
      case 'suse':
        files.push(
          { dest: '/etc/os-release', mode: 0o644, content: OS_RELEASE.suse },
          { dest: '/usr/lib/os-release', mode: 0o644, content: OS_RELEASE.suse },
          { dest: '/etc/zypp/repos.d/fleetward-lab.repo', mode: 0o644, content: zypperRepo(rpmUrl) },
          { dest: '/etc/zypp/zypp.conf', mode: 0o644, content: ZYPP_CONF },
          { dest: '/etc/rpm/macros', mode: 0o644, content: RPM_MACROS },
        );
        break;
    }
    return files;
  }

  publish(input: LabPublishInput): Promise<LabContent> {
    const next = this.publishing.then(() => this.doPublish(input));
    this.publishing = next.catch(() => {});
    return next;
  }

  private async doPublish(input: LabPublishInput): Promise<LabContent> {
    if (this.stopPromise) throw new LabError('the lab is stopped');
    const next = mergeContent(this.content, input);
    const flavours = new Set(this.hosts.map((h) => h.flavour));
    const built = await this.build(
      { ...next, apt: { ...next.apt, installed: [] }, rpm: { ...next.rpm, installed: [] } },
      flavours,
    );
    if (built.aptDir) this.server?.setRoot('apt', built.aptDir);
    if (built.rpmDir) this.server?.setRoot('rpm', built.rpmDir);
    const before = this.content.apt.suites.map((s) => s.suite).join(' ');
    const after = next.apt.suites.map((s) => s.suite);
    this.content = deepFreeze(next);
    if (before !== after.join(' ')) {
      const sources = aptSources(this.repositories.apt, after);
      await Promise.all(
        this.hosts
          .filter((h) => h.flavour === 'debian')
          .map((h) => h.writeDiskFile('/etc/apt/sources.list', sources)),
      );
    }
    if (input.refresh) await this.refreshPackageLists();
    return this.content;
  }

  async refreshPackageLists(): Promise<void> {
    await Promise.all(this.hosts.filter((h) => h.state === 'running').map((h) => h.refreshPackageLists()));
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    await Promise.all([...this.proxies].map((p) => p.close()));
    await this.server?.close().catch(() => {});
    await Promise.all(this.hosts.map((h) => h.shutdown()));
    await this.keeper?.stop();
    const mine = (id: string) => id === this.id;
    removeLeftovers(findLeftovers(mine));
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallHandlers();
    const left = findLeftovers(mine);
    if (!isClean(left)) throw new LabError(`lab ${this.id} could not remove: ${JSON.stringify(left)}`);
  }

  /** Exit-handler teardown: no awaiting, kill first, then remove what the kernel still has. */
  teardownSync(): void {
    for (const host of this.hosts) host.killSync();
    this.keeper?.killSync();
    removeLeftovers(findLeftovers((id) => id === this.id));
    liveLabs.delete(this);
  }
}

/** Files a flavour must not have from the machine's own root. Globs stay unquoted. */
function removals(flavour: LabFlavour): string[] {
  const common = ['/etc/ssh/ssh_host_*', '/etc/ssh/sshd_config.d/*'];
  const aptFrontends = ['/usr/bin/apt', '/usr/bin/apt-get', '/usr/bin/apt-cache', '/usr/bin/apt-mark'];
  switch (flavour) {
    case 'debian':
      // Other families' front ends go, so an SDK probing for dnf or zypper finds none.
      return [
        ...common,
        '/etc/apt/sources.list.d/*',
        '/var/lib/apt/lists/*_*',
        '/usr/bin/dnf',
        '/usr/bin/dnf-3',
        '/usr/bin/yum',
        '/usr/bin/zypper',
      ];
    case 'rhel':
      return [
        ...common,
        '/etc/debian_version',
        '/etc/yum.repos.d/*',
        '/var/cache/dnf',
        '/var/lib/dnf',
        ...aptFrontends,
        '/usr/bin/zypper',
      ];
    case 'suse':
      return [
        ...common,
        '/etc/debian_version',
        '/etc/zypp/repos.d/*',
        '/var/cache/zypp',
        '/var/lib/zypp',
        ...aptFrontends,
        '/usr/bin/dnf',
        '/usr/bin/dnf-3',
        '/usr/bin/yum',
      ];
  }
}

function samePackage(a: LabPackageSpec, b: LabPackageSpec): boolean {
  return (
    a.name === b.name &&
    a.version === b.version &&
    (a.release ?? '1') === (b.release ?? '1') &&
    (a.arch ?? '') === (b.arch ?? '')
  );
}

function addPackages(into: LabPackageSpec[], packages: readonly LabPackageSpec[]): void {
  for (const p of packages) if (!into.some((q) => samePackage(p, q))) into.push(structuredClone(p));
}

/** The content after a publish: additions merged in, nothing removed. */
export function mergeContent(current: LabContent, input: LabPublishInput): LabContent {
  const next = structuredClone(current) as LabContent;
  for (const [i, add] of (input.apt ?? []).entries()) {
    const where = `apt[${i}]`;
    if (!Array.isArray(add?.packages)) throw new LabOptionsError(`${where}.packages`, 'must be an array');
    let suite = next.apt.suites.find((s) => s.suite === add.suite);
    if (!suite) {
      if (typeof add.origin !== 'string' || typeof add.label !== 'string') {
        throw new LabOptionsError(where, `new suite ${add.suite} needs an origin and a label`);
      }
      suite = { suite: add.suite, origin: add.origin, label: add.label, packages: [] };
      next.apt.suites.push(suite);
    }
    if (add.origin !== undefined) suite.origin = add.origin;
    if (add.label !== undefined) suite.label = add.label;
    if (add.version !== undefined) suite.version = add.version;
    addPackages(suite.packages, add.packages);
  }
  if (input.rpm) {
    addPackages(next.rpm.repository.packages, input.rpm.packages ?? []);
    for (const advisory of input.rpm.advisories ?? []) {
      const advisories = next.rpm.repository.advisories;
      const known = advisories.findIndex((a) => a.id === advisory.id);
      if (known >= 0) advisories[known] = structuredClone(advisory);
      else advisories.push(structuredClone(advisory));
    }
  }
  return next;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
