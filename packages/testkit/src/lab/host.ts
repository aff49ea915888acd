/**
 * One lab host: its network namespace and veth, its disk (tmpfs + overlay, mounted in the
 * lab keeper's mount namespace so it outlives reboots and vanishes with the keeper), its boots
 * (unshare + the init script), the back channel and the faults.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { appendFile, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabCommandError, LabError, LabHostDownError } from './errors.js';
import { generateSshKey, sshFingerprint, stripComment } from './keys.js';
import { startDelayProxy } from './proxy.js';
import {
  FILL_DISK_SCRIPT,
  firstBootScript,
  HOST_LIB,
  HOST_PATH,
  HOST_STATE,
  INIT_EXIT_POWEROFF,
  INIT_EXIT_REBOOT,
  PACKAGE_LOCKS,
  REFRESH_COMMANDS,
} from './scripts.js';
import {
  binary,
  collectChild,
  commandError,
  killGroup,
  run,
  runOk,
  runSync,
  shq,
  systemEnv,
} from './system.js';
import type {
  LabCredentials,
  LabExecOptions,
  LabExecResult,
  LabFlavour,
  LabHeldFault,
  LabHost,
  LabHostKeys,
  LabHostSpec,
  LabHostState,
  LabHostUsers,
  LabSlowProxy,
  LabSudoMode,
} from './types.js';

/** What a host needs from its lab. */
export interface HostContext {
  labId: string;
  bridge: string;
  gateway: string;
  initScriptPath: string;
  bootTimeoutMs: number;
  /** fd of the keeper's mount namespace. */
  keeperMountFd(): number;
  /** Proxies are the lab's to close on stop. */
  registerProxy(proxy: LabSlowProxy): void;
}

/** A login user after validation, with everything generated for it. */
export interface NormalizedUser {
  login: string;
  sudo: LabSudoMode;
  /** undefined = no password; true = generate one. */
  password: string | true | undefined;
  shell: string;
  groups: string[];
}

/** A file of the host's disk, installed before its first boot. */
export interface SeedFile {
  /** Absolute path inside the host. */
  dest: string;
  mode: number;
  content?: string | Uint8Array;
  /** Copy this file of the machine instead of `content`. */
  source?: string;
}

const NAMESPACES = ['mnt', 'uts', 'ipc', 'net', 'pid'] as const;
const MAX_CONSOLE = 256 * 1024;
/** Output kept per back-channel command; the rest is read and dropped. */
const MAX_EXEC_OUTPUT = 64 * 1024 * 1024;
/** Closes the namespace fds (3–7) nsenter got, then runs the command as root or a user. */
const EXEC_WRAPPER = `exec 3<&- 4<&- 5<&- 6<&- 7<&-
u=$1; d=$2; shift 2
if [ -n "$u" ]; then
  h=$(getent passwd "$u" | cut -d: -f6)
  [ -n "$h" ] || { echo "fleetward-lab exec: no user $u" >&2; exit 126; }
  g=$(id -g "$u")
  cd -- "\${d:-$h}" || exit 126
  exec setpriv --reuid="$u" --regid="$g" --init-groups -- env -i HOME="$h" USER="$u" LOGNAME="$u" "$@"
fi
cd -- "\${d:-/root}" || exit 126
exec env -i HOME=/root USER=root LOGNAME=root "$@"
`;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class LabHostImpl implements LabHost {
  readonly name: string;
  readonly flavour: LabFlavour;
  readonly port = 22;
  readonly netns: string;
  readonly veth: string;
  readonly dir: string;
  readonly diskSizeMb: number;
  hostKeys!: LabHostKeys;
  users!: LabHostUsers;
  knownHosts = '';

  private currentState: LabHostState = 'off';
  private boots = 0;
  private proc: ChildProcess | undefined;
  private nsFds: number[] | undefined;
  private bootIdNow: string | undefined;
  private failure: Error | undefined;
  private stopping = false;
  /** The test cut the cable (cutNetwork); independent of power. */
  private cut = false;
  private consoleText = '';
  private consoleWrites: Promise<void> = Promise.resolve();
  private readonly running = new Set<ChildProcess>();
  private readonly watchers = new Set<() => void>();

  constructor(
    spec: Required<LabHostSpec>,
    readonly index: number,
    readonly address: string,
    names: { netns: string; veth: string; dir: string },
    private readonly ctx: HostContext,
  ) {
    this.name = spec.name;
    this.flavour = spec.flavour;
    this.diskSizeMb = spec.diskSizeMb;
    this.netns = names.netns;
    this.veth = names.veth;
    this.dir = names.dir;
  }

  get state(): LabHostState {
    return this.currentState;
  }

  get bootCount(): number {
    return this.boots;
  }

  get rootPath(): string {
    return join(this.dir, 'root');
  }

  async createNetwork(): Promise<void> {
    const ip = binary('ip');
    await runOk(ip, ['netns', 'add', this.netns]);
    await runOk(ip, ['link', 'add', this.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.netns]);
    // IPv6 would add link-local chatter and a second address family nobody asked for.
    await disableIpv6(`/proc/sys/net/ipv6/conf/${this.veth}/disable_ipv6`);
    await runOk(binary('nsenter'), [
      `--net=/run/netns/${this.netns}`,
      '--',
      '/bin/sh',
      '-c',
      'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do [ -e "$f" ] && echo 1 > "$f"; done; true',
    ]);
    await runOk(ip, ['link', 'set', 'dev', this.veth, 'master', this.ctx.bridge, 'up']);
    await runOk(ip, ['-n', this.netns, 'addr', 'add', `${this.address}/24`, 'dev', 'eth0']);
    await runOk(ip, ['-n', this.netns, 'link', 'set', 'dev', 'eth0', 'up']);
    await runOk(ip, ['-n', this.netns, 'link', 'set', 'dev', 'lo', 'up']);
  }

  /**
   * The gateway is the machine itself: without these rules a host could reach whatever the
   * machine serves on all addresses. Hosts may open connections to the repository port only;
   * replies from their own servers (source ports below the ephemeral range, e.g. sshd's 22)
   * still flow back to the machine's clients.
   */
  async restrictGatewayTraffic(repositoryPort: number): Promise<void> {
    const to = ['to', this.ctx.gateway];
    const rules = [
      ['pref', '100', ...to, 'ipproto', 'tcp', 'dport', String(repositoryPort), 'lookup', 'main'],
      ['pref', '101', ...to, 'ipproto', 'tcp', 'sport', '1-32767', 'lookup', 'main'],
      ['pref', '102', ...to, 'prohibit'],
    ];
    for (const rule of rules) await runOk(binary('ip'), ['-n', this.netns, 'rule', 'add', ...rule]);
  }

  /** Host keys, root's key and every user's key and password. */
  async createCredentials(users: readonly NormalizedUser[]): Promise<void> {
    const keys = join(this.dir, 'keys');
    await mkdir(keys, { recursive: true, mode: 0o700 });
    const [ed25519, rsa, root, ...userKeys] = await Promise.all([
      generateSshKey('ed25519', join(keys, 'ssh_host_ed25519_key'), `root@${this.name}`),
      generateSshKey('rsa', join(keys, 'ssh_host_rsa_key'), `root@${this.name}`),
      generateSshKey('ed25519', join(keys, 'root'), `root@fleetward-lab`),
      ...users.map((u) => generateSshKey('ed25519', join(keys, u.login), `${u.login}@fleetward-lab`)),
    ]);
    if (!ed25519 || !rsa || !root) throw new LabError('key generation failed');
    const hostKey = (line: string) => ({
      type: line.split(' ')[0] ?? '',
      publicKey: stripComment(line),
      fingerprint: sshFingerprint(line),
    });
    this.hostKeys = { ed25519: hostKey(ed25519.publicKeyLine), rsa: hostKey(rsa.publicKeyLine) };
    this.knownHosts = [ed25519, rsa]
      .map((k) => `${this.address} ${stripComment(k.publicKeyLine)}\n`)
      .join('');
    const credentials: Record<string, LabCredentials> = {
      root: {
        login: 'root',
        privateKey: root.privateKey,
        publicKey: root.publicKeyLine,
        privateKeyPath: root.privateKeyPath,
        sudo: 'none',
      },
    };
    users.forEach((u, i) => {
      const key = userKeys[i];
      if (!key) throw new LabError(`key generation failed for ${u.login}`);
      const password = u.password === true ? randomBytes(12).toString('base64url') : u.password;
      credentials[u.login] = {
        login: u.login,
        privateKey: key.privateKey,
        publicKey: key.publicKeyLine,
        privateKeyPath: key.privateKeyPath,
        sudo: u.sudo,
        ...(password === undefined ? {} : { password }),
      };
    });
    this.users = credentials as LabHostUsers;
  }

  /** Host key files to seed, from what createCredentials generated. */
  hostKeyFiles(): SeedFile[] {
    const keys = join(this.dir, 'keys');
    return ['ed25519', 'rsa'].flatMap((type) => [
      { dest: `/etc/ssh/ssh_host_${type}_key`, mode: 0o600, source: join(keys, `ssh_host_${type}_key`) },
      {
        dest: `/etc/ssh/ssh_host_${type}_key.pub`,
        mode: 0o644,
        source: join(keys, `ssh_host_${type}_key.pub`),
      },
    ]);
  }

  /**
   * Makes the host's disk (tmpfs + overlay over `/`) in the keeper's mount namespace, then
   * removes and installs files on it: what a host is before it first boots.
   */
  async provision(files: readonly SeedFile[], removals: readonly string[]): Promise<void> {
    const seed = join(this.dir, 'seed');
    await mkdir(seed, { recursive: true, mode: 0o700 });
    const installs: string[] = [];
    for (const [i, file] of files.entries()) {
      if (!/^\/[A-Za-z0-9._+/-]+$/.test(file.dest) || file.dest.includes('..')) {
        throw new LabError(`bad seed path ${file.dest}`);
      }
      const src = join(seed, String(i));
      if (file.source !== undefined) await copyFile(file.source, src);
      else await writeFile(src, file.content ?? '', { mode: 0o600 });
      installs.push(
        `rm -rf -- "$R"${shq(file.dest)}`,
        `install -D -m ${file.mode.toString(8).padStart(4, '0')} ${shq(src)} "$R"${shq(file.dest)}`,
      );
    }
    const label = `fwlab-${this.ctx.labId}-${this.name}`;
    const opaque = ['tmp', 'var/tmp', 'root', 'home', 'mnt', 'media'];
    const script = [
      'set -eu',
      `D=${shq(join(this.dir, 'disk'))}`,
      `R=${shq(this.rootPath)}`,
      'mkdir -p "$D" "$R"',
      `mount -t tmpfs -o size=${this.diskSizeMb}m,mode=0755 ${label}-disk "$D"`,
      'mkdir -m 0755 "$D/upper" "$D/work"',
      // Opaque dirs hide the machine's /tmp, /root, /home...: a host starts with clean ones,
      // and never sees the lab's own files or the test runner's.
      'cd "$D/upper"',
      `mkdir -p ${opaque.join(' ')}`,
      'chmod 1777 tmp var/tmp',
      'chmod 0700 root',
      `/usr/bin/python3 -c 'import os, sys\nfor p in sys.argv[1:]: os.setxattr(p, "trusted.overlay.opaque", b"y")' ${opaque.join(' ')}`,
      'cd /',
      `mount -t overlay ${label} -o "lowerdir=/,upperdir=$D/upper,workdir=$D/work" "$R"`,
      // Removal patterns are the lab's own constants; their globs must stay unquoted.
      ...removals.map((pattern) => `rm -rf -- "$R"${pattern}`),
      'install -d -m 0700 "$R/root/.ssh"',
      `install -d -m 0700 "$R${HOST_STATE}/seed"`,
      ...installs,
    ].join('\n');
    const scriptPath = join(seed, 'provision.sh');
    await writeFile(scriptPath, `${script}\n`, { mode: 0o700 });
    const result = await run(binary('nsenter'), ['--mount=/proc/self/fd/3', '--', '/bin/sh', scriptPath], {
      fds: [this.ctx.keeperMountFd()],
      env: systemEnv(this.ctx.labId),
    });
    if (result.exitCode !== 0) throw commandError([`provision ${this.name}`], result);
  }

  /** Writes a file on the host's disk from outside, whether the host runs or not. */
  async writeDiskFile(dest: string, content: string): Promise<void> {
    const result = await run(
      binary('nsenter'),
      [
        '--mount=/proc/self/fd/3',
        '--',
        '/bin/sh',
        '-c',
        'cat > "$1"',
        'fwlab-write',
        join(this.rootPath, dest),
      ],
      { fds: [this.ctx.keeperMountFd()], input: content, env: systemEnv(this.ctx.labId) },
    );
    if (result.exitCode !== 0) throw commandError([`write ${dest} on ${this.name}`], result);
  }

  /** Accounts, the old packages and repository metadata, once, inside the running host. */
  async firstBoot(users: readonly NormalizedUser[]): Promise<void> {
    const script = firstBootScript(
      this.flavour,
      users.map((u) => ({
        login: u.login,
        shell: u.shell,
        groups: u.groups,
        hasPassword: this.users[u.login]?.password !== undefined,
        hasSudoers: u.sudo !== 'none',
      })),
    );
    const result = await this.exec(['/bin/sh', '-c', script]);
    if (result.exitCode !== 0) throw commandError([`first boot of ${this.name}`], result);
  }

  /** Seed files with each user's public key, password and sudo rule, for the first boot. */
  userSeedFiles(users: readonly NormalizedUser[]): SeedFile[] {
    const seed = `${HOST_STATE}/seed`;
    return users.flatMap((u) => {
      const creds = this.users[u.login];
      if (!creds) return [];
      const files: SeedFile[] = [
        { dest: `${seed}/${u.login}.pub`, mode: 0o600, content: `${creds.publicKey}\n` },
      ];
      if (creds.password !== undefined) {
        files.push({
          dest: `${seed}/${u.login}.chpasswd`,
          mode: 0o600,
          content: `${u.login}:${creds.password}\n`,
        });
      }
      if (u.sudo !== 'none') {
        const rule = u.sudo === 'nopasswd' ? 'NOPASSWD:ALL' : 'ALL';
        files.push({
          dest: `${seed}/${u.login}.sudoers`,
          mode: 0o440,
          content: `Defaults:${u.login} lecture=never\n${u.login} ALL=(ALL:ALL) ${rule}\n`,
        });
      }
      return files;
    });
  }

  /** Boots the host and resolves once init reports sshd started. */
  boot(): Promise<void> {
    this.setState('booting');
    this.boots += 1;
    this.appendConsole(`--- boot ${this.boots} at ${new Date().toISOString()} ---\n`);
    const child = spawn(
      binary('setpriv'),
      [
        // The host dies with the test process even when it is SIGKILLed: setpriv sets the
        // parent-death signal, exec keeps it, and unshare --kill-child passes it to init.
        '--pdeathsig',
        'KILL',
        '--',
        binary('nsenter'),
        `--net=/run/netns/${this.netns}`,
        '--mount=/proc/self/fd/3',
        '--',
        binary('unshare'),
        '--pid',
        '--fork',
        '--kill-child',
        '--mount',
        '--uts',
        '--ipc',
        '--propagation',
        'private',
        '--',
        '/bin/sh',
        this.ctx.initScriptPath,
        this.rootPath,
        this.name,
      ],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', this.ctx.keeperMountFd()],
        env: systemEnv(this.ctx.labId),
      },
    );
    this.proc = child;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      let buffered = '';
      const fail = (error: Error) => {
        if (ready) return;
        ready = true;
        clearTimeout(timer);
        this.failure = error;
        killGroup(child);
        if (this.proc === child) this.proc = undefined;
        this.setState(this.stopping ? 'stopped' : 'failed');
        reject(error);
      };
      const timer = setTimeout(
        () => fail(this.bootError(`did not boot within ${this.ctx.bootTimeoutMs} ms`)),
        this.ctx.bootTimeoutMs,
      );
      child.stdout?.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        this.appendConsole(text);
        if (ready) return;
        buffered += text;
        const match = /^FWLAB-READY (\S+)$/m.exec(buffered);
        if (!match) return;
        try {
          this.attach(child, match[1] ?? '');
        } catch (error) {
          fail(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        ready = true;
        clearTimeout(timer);
        this.setState('running');
        resolve();
      });
      child.stderr?.on('data', (chunk: Buffer) => this.appendConsole(chunk.toString('utf8')));
      child.on('error', (error) => fail(error));
      child.on('exit', (code, signal) => {
        this.appendConsole(`--- init ended: ${signal ?? `exit ${code}`} ---\n`);
        if (!ready) {
          fail(this.bootError(`init ended during boot (${signal ?? `exit ${code}`})`));
          return;
        }
        this.onInitExit(child, code, signal);
      });
    });
  }

  /** Holds the namespaces of the new init by fd, so a reused pid can never redirect the back channel. */
  private attach(child: ChildProcess, bootId: string): void {
    const unsharePid = child.pid;
    if (unsharePid === undefined) throw new LabError('unshare has no pid');
    const children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8')
      .trim()
      .split(/\s+/);
    const initPid = Number(children[0]);
    if (!Number.isInteger(initPid) || initPid <= 0) throw this.bootError('cannot find the host init process');
    const fds = NAMESPACES.map((ns) => openSync(`/proc/${initPid}/ns/${ns}`, 'r'));
    try {
      const status = readFileSync(`/proc/${initPid}/status`, 'utf8');
      const ppid = /^PPid:\s+(\d+)$/m.exec(status)?.[1];
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      const pidFd = fds[NAMESPACES.indexOf('pid')];
      const ownPidNs = statSync('/proc/self/ns/pid').ino;
      if (ppid !== String(unsharePid) || nspid.at(-1) !== '1' || pidFd === undefined) {
        throw this.bootError('host init is not PID 1 of a new PID namespace');
      }
      if (fstatSync(pidFd).ino === ownPidNs) throw this.bootError('host shares the PID namespace of the lab');
    } catch (error) {
      for (const fd of fds) closeSync(fd);
      throw error;
    }
    this.nsFds = fds;
    this.bootIdNow = bootId;
    this.failure = undefined;
  }

  private onInitExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.proc) return;
    this.proc = undefined;
    this.detach();
    if (this.stopping) {
      this.setState('stopped');
      return;
    }
    // reboot(2) in a PID namespace kills its init with SIGHUP (restart) or SIGINT (power off).
    if (code === INIT_EXIT_REBOOT || signal === 'SIGHUP') {
      this.boot().catch(() => {
        // boot() recorded the failure and set the state; waiters see it.
      });
      return;
    }
    if (code !== INIT_EXIT_POWEROFF && signal !== 'SIGINT') {
      this.failure = new LabError(`host ${this.name} died: init ended with ${signal ?? `exit ${code}`}`);
    }
    this.setState('off');
  }

  private detach(): void {
    for (const fd of this.nsFds ?? []) {
      try {
        closeSync(fd);
      } catch {
        // Already closed.
      }
    }
    this.nsFds = undefined;
    this.bootIdNow = undefined;
  }

  private bootError(what: string): LabError {
    const tail = this.consoleText.split('\n').slice(-25).join('\n');
    return new LabError(`lab host ${this.name} ${what}; console:\n${tail}`);
  }

  private appendConsole(text: string): void {
    this.consoleText += text;
    if (this.consoleText.length > MAX_CONSOLE) this.consoleText = this.consoleText.slice(-MAX_CONSOLE / 2);
    if (this.stopping) return;
    // Chained, so the file keeps the order and shutdown can wait for the last write before
    // the state dir goes.
    this.consoleWrites = this.consoleWrites
      .then(() => appendFile(join(this.dir, 'console.log'), text))
      .catch(() => {});
  }

  private setState(state: LabHostState): void {
    const wasUp = linkUp(this.currentState);
    this.currentState = state;
    // A powered-off machine does not answer at all: with its veth up, the host's network
    // namespace would refuse connections instead, which no real dead server does. Synchronous,
    // so whoever sees the new state also sees the network that goes with it.
    if (wasUp !== linkUp(state) && state !== 'stopped') {
      try {
        this.applyLink();
      } catch (error) {
        this.appendConsole(`fleetward-lab: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
    for (const watcher of [...this.watchers]) watcher();
  }

  private applyLink(): void {
    const up = !this.cut && linkUp(this.currentState);
    const argv = ['link', 'set', 'dev', this.veth, up ? 'up' : 'down'];
    const result = runSync(binary('ip'), argv);
    if (result.exitCode !== 0) throw commandError(['ip', ...argv], result);
  }

  /** Resolves when `check` returns true; `check` may throw to reject. */
  private waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (error?: unknown) => {
        clearTimeout(timer);
        this.watchers.delete(watcher);
        if (error === undefined) resolve();
        else reject(error);
      };
      const watcher = () => {
        try {
          if (check()) done();
        } catch (error) {
          done(error);
        }
      };
      const timer = setTimeout(
        () => done(new LabError(`lab host ${this.name}: ${what} timed out`)),
        timeoutMs,
      );
      this.watchers.add(watcher);
      watcher();
    });
  }

  consoleLog(): string {
    return this.consoleText;
  }

  private requireRunning(): number[] {
    if (this.currentState !== 'running' || this.nsFds === undefined) {
      throw new LabHostDownError(this.name, this.currentState);
    }
    return this.nsFds;
  }

  /** Starts a command in the host and returns the process (for long-running helpers). */
  private spawnInHost(argv: readonly string[], opts: LabExecOptions): ChildProcess {
    const fds = this.requireRunning();
    if (argv.length === 0) throw new LabError('exec needs a command');
    if (argv[0]?.includes('=')) throw new LabError(`exec: a command name may not contain "=": ${argv[0]}`);
    const env = { PATH: HOST_PATH, LANG: 'C.UTF-8', TERM: 'dumb', ...opts.env };
    for (const name of Object.keys(env)) {
      if (!ENV_NAME.test(name))
        throw new LabError(`exec: bad environment variable name ${JSON.stringify(name)}`);
    }
    const nsenterArgs = [
      '--mount=/proc/self/fd/3',
      '--uts=/proc/self/fd/4',
      '--ipc=/proc/self/fd/5',
      '--net=/proc/self/fd/6',
      '--pid=/proc/self/fd/7',
      '--',
      '/bin/sh',
      '-c',
      EXEC_WRAPPER,
      'fleetward-lab-exec',
      opts.user ?? '',
      opts.cwd ?? '',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ...argv,
    ];
    const child = spawn(binary('nsenter'), nsenterArgs, {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe', ...fds],
      env: systemEnv(this.ctx.labId),
    });
    this.running.add(child);
    child.on('exit', () => this.running.delete(child));
    child.on('error', () => this.running.delete(child));
    child.stdin?.on('error', () => {});
    return child;
  }

  async exec(argv: string[], opts: LabExecOptions = {}): Promise<LabExecResult> {
    const child = this.spawnInHost(argv, opts);
    return collectChild(child, {
      maxOutput: MAX_EXEC_OUTPUT,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  sh(script: string, opts: LabExecOptions = {}): Promise<LabExecResult> {
    return this.exec(['/bin/sh', '-c', script], opts);
  }

  private async execOk(argv: string[], opts: LabExecOptions = {}): Promise<LabExecResult> {
    const result = await this.exec(argv, opts);
    if (result.exitCode !== 0) throw commandError([`${this.name}:`, ...argv], result);
    return result;
  }

  async readFile(path: string): Promise<string> {
    return (await this.execOk(['cat', '--', path])).stdout;
  }

  async writeFile(
    path: string,
    content: string | Uint8Array,
    opts: { mode?: string; owner?: string } = {},
  ): Promise<void> {
    await this.execOk(
      [
        '/bin/sh',
        '-c',
        'set -e; mkdir -p -- "$(dirname -- "$1")"; cat > "$1"; [ -z "$2" ] || chmod -- "$2" "$1"; [ -z "$3" ] || chown -- "$3" "$1"',
        'fleetward-lab-write',
        path,
        opts.mode ?? '',
        opts.owner ?? '',
      ],
      { input: content },
    );
  }

  async bootId(): Promise<string> {
    return (await this.readFile('/proc/sys/kernel/random/boot_id')).trim();
  }

  async reboot(opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const previous = this.bootIdNow;
    await this.execOk(['reboot']);
    if (opts.wait === false) return;
    await this.waitForBoot({
      ...(previous ? { previousBootId: previous } : {}),
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
  }

  async poweroff(opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.execOk(['poweroff']);
    if (opts.wait === false) return;
    await this.waitFor(
      () => this.currentState === 'off' || this.currentState === 'stopped',
      opts.timeoutMs ?? 30_000,
      'poweroff',
    );
  }

  async start(): Promise<void> {
    if (this.stopping) throw new LabHostDownError(this.name, 'stopped');
    if (this.currentState === 'running') return;
    if (this.currentState === 'booting') return this.waitForBoot();
    await this.boot();
  }

  waitForBoot(opts: { previousBootId?: string; timeoutMs?: number } = {}): Promise<void> {
    return this.waitFor(
      () => {
        const state = this.currentState;
        if (state === 'running')
          return opts.previousBootId === undefined || this.bootIdNow !== opts.previousBootId;
        if (state === 'failed') throw this.failure ?? new LabHostDownError(this.name, state);
        if (state === 'off' || state === 'stopped') throw new LabHostDownError(this.name, state);
        return false;
      },
      opts.timeoutMs ?? 60_000,
      'waiting for a boot',
    );
  }

  async refreshPackageLists(): Promise<void> {
    await this.execOk(REFRESH_COMMANDS[this.flavour]);
  }

  async cutNetwork(): Promise<void> {
    this.cut = true;
    this.applyLink();
  }

  async restoreNetwork(): Promise<void> {
    this.cut = false;
    this.applyLink();
  }

  async slow(opts: { delayMs: number }): Promise<LabSlowProxy> {
    if (!Number.isFinite(opts.delayMs) || opts.delayMs < 0) throw new LabError('slow: delayMs must be ≥ 0');
    const proxy = await startDelayProxy({
      listenAddress: this.ctx.gateway,
      targetAddress: this.address,
      targetPort: this.port,
      delayMs: opts.delayMs,
    });
    this.ctx.registerProxy(proxy);
    return proxy;
  }

  async killSshd(): Promise<void> {
    await this.execOk([
      '/bin/sh',
      '-c',
      `pid=$(cat /run/sshd.pid 2>/dev/null) || exit 0
[ "$(cat /proc/$pid/comm 2>/dev/null)" = sshd ] || exit 0
kill "$pid"
for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.05; done
kill -9 "$pid"`,
    ]);
  }

  async startSshd(): Promise<void> {
    await this.execOk([
      '/bin/sh',
      '-c',
      `pid=$(cat /run/sshd.pid 2>/dev/null) && [ "$(cat /proc/$pid/comm 2>/dev/null)" = sshd ] && exit 0
exec ${HOST_LIB}/start-sshd`,
    ]);
  }

  holdPackageLock(): Promise<LabHeldFault> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.spawnInHost([`${HOST_LIB}/hold-locks`, ...PACKAGE_LOCKS[this.flavour]], {});
      } catch (error) {
        reject(error);
        return;
      }
      let out = '';
      let err = '';
      let locked = false;
      const exited = new Promise<void>((done) => child.on('close', () => done()));
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (locked || !out.includes('LOCKED')) return;
        locked = true;
        let released: Promise<void> | undefined;
        resolve({
          release: () => {
            released ??= (async () => {
              child.stdin?.end();
              const timer = setTimeout(() => killGroup(child), 5000);
              await exited;
              clearTimeout(timer);
            })();
            return released;
          },
        });
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        err += chunk.toString('utf8');
      });
      child.on('error', reject);
      child.on('close', (code) => {
        if (!locked) {
          reject(
            new LabCommandError(
              `holdPackageLock on ${this.name} failed: ${err.trim()}`,
              ['hold-locks'],
              code ?? 1,
              out,
              err,
            ),
          );
        }
      });
    });
  }

  async fillDisk(): Promise<LabHeldFault> {
    await this.execOk(['/bin/sh', '-c', FILL_DISK_SCRIPT]);
    let released: Promise<void> | undefined;
    return {
      release: () => {
        released ??= this.execOk(['rm', '-f', `${HOST_STATE}/disk-filler`]).then(() => undefined);
        return released;
      },
    };
  }

  /** Ends the host for good (lab stop): kills init and every back-channel command. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    const children = [...this.running, ...(this.proc ? [this.proc] : [])];
    const exits = children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        }),
    );
    for (const child of children) killGroup(child);
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000))]);
    this.proc = undefined;
    this.detach();
    this.setState('stopped');
    await this.consoleWrites;
  }

  /** For exit handlers: SIGKILL everything, no waiting. */
  killSync(): void {
    this.stopping = true;
    for (const child of [...this.running, ...(this.proc ? [this.proc] : [])]) killGroup(child);
    this.detach();
  }
}

function linkUp(state: LabHostState): boolean {
  return state === 'booting' || state === 'running';
}

async function disableIpv6(path: string): Promise<void> {
  if (existsSync(path)) await writeFile(path, '1\n');
}
