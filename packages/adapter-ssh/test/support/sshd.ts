import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Server, ServerSchema } from '@fleetward/core';
import { describeIfAvailable } from '@fleetward/testkit';

const run = promisify(execFile);

const SSHD = '/usr/sbin/sshd';
const SSH_KEYGEN = '/usr/bin/ssh-keygen';

/** Why the real-sshd tests cannot run here, or `undefined` when they can. */
export function labUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root to run sshd';
  if (!existsSync(SSHD)) return `needs OpenSSH's sshd at ${SSHD} (apt-get install openssh-server)`;
  if (!existsSync(SSH_KEYGEN)) return `needs ${SSH_KEYGEN} (apt-get install openssh-client)`;
  return undefined;
}

/** Why sshd cannot be given its own users and /etc files (a private mount namespace) here. */
export function namespaceUnavailableReason(): string | undefined {
  const base = labUnavailableReason();
  if (base) return base;
  if (!existsSync('/usr/bin/unshare')) return 'needs unshare (util-linux) for a private mount namespace';
  return undefined;
}

/** `describe` when `reason` is undefined; otherwise skipped loudly, or failing under CI. */
export function describeLab(name: string, reason: string | undefined, body: () => void): void {
  describeIfAvailable(name, reason, body);
}

/** A key pair made by ssh-keygen. */
export interface KeyPair {
  privateKey: Buffer;
  publicKey: string;
  path: string;
  /** `SHA256:...` as ssh-keygen prints it. */
  fingerprint: string;
}

/** Makes a key pair with ssh-keygen, the way an operator would. */
export async function generateKey(
  dir: string,
  name: string,
  type: 'ed25519' | 'rsa' | 'ecdsa',
  passphrase = '',
): Promise<KeyPair> {
  const path = join(dir, name);
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  const args = ['-q', '-t', type, '-N', passphrase, '-C', `fleetward-test-${name}`, '-f', path];
  if (type === 'rsa') args.splice(1, 0, '-b', '3072');
  await run(SSH_KEYGEN, args);
  return {
    privateKey: await readFile(path),
    publicKey: (await readFile(`${path}.pub`, 'utf8')).trim(),
    path,
    fingerprint: await fingerprintOfFile(`${path}.pub`),
  };
}

/** The fingerprint ssh-keygen prints for a public key file: the back channel for host key tests. */
export async function fingerprintOfFile(path: string): Promise<string> {
  const { stdout } = await run(SSH_KEYGEN, ['-l', '-E', 'sha256', '-f', path]);
  const fingerprint = stdout.split(/\s+/)[1];
  if (!fingerprint?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen output: ${stdout}`);
  return fingerprint;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** A login that exists only inside the sshd's private mount namespace. */
export interface LabUser {
  name: string;
  uid: number;
  password?: string;
  /** `nopasswd`: may sudo anything without a password; `password`: sudo asks for one. */
  sudo?: 'nopasswd' | 'password';
}

export interface SshdOptions {
  /** Host key types. @default ['ed25519'] */
  hostKeyTypes?: ('ed25519' | 'rsa' | 'ecdsa')[];
  /** @default '127.0.0.1' */
  listenAddress?: string;
  /** @default a free port */
  port?: number;
  passwordAuthentication?: boolean;
  /**
   * Logins added to a copy of /etc/passwd, /etc/shadow and /etc/group (and a sudoers) that sshd
   * sees through bind mounts in its own mount namespace: this machine's files are never changed.
   */
  users?: LabUser[];
  /** Extra `/etc/hosts` lines, seen by this sshd only (e.g. a name only a bastion can resolve). */
  hosts?: string[];
}

export interface HostKey {
  type: string;
  fingerprint: string;
  publicKey: string;
}

/** A real OpenSSH sshd on loopback, in a temporary directory of its own. */
export interface Sshd {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  hostKeys: HostKey[];
  /** The listener's pid (changes on restart). */
  pid(): number;
  /** Everything sshd logged so far (`-e`, LogLevel VERBOSE). */
  log(): string;
  /** Adds a public key to `login`'s authorized keys. */
  authorize(login: string, publicKey: string): Promise<void>;
  /** Pids of the per-connection sshd processes (not the listener, not the commands). */
  sessionPids(): Promise<number[]>;
  /** Pids of everything below the listener: per-connection sshd processes and commands. */
  descendantPids(): Promise<number[]>;
  /** Kills the listener and everything below it: a host going down. */
  stop(): Promise<void>;
  /** Stops, then starts again on the same port; with `newHostKeys`, as a reinstalled host. */
  restart(options?: { newHostKeys?: boolean }): Promise<void>;
  /** A `Server` entity that points at this sshd. */
  server(overrides?: Partial<Server>): Server;
}

async function children(): Promise<Map<number, number[]>> {
  const tree = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = tree.get(ppid) ?? [];
      list.push(Number(entry));
      tree.set(ppid, list);
    } catch {
      // The process ended while we looked.
    }
  }
  return tree;
}

async function descendantsOf(pid: number): Promise<number[]> {
  const tree = await children();
  const out: number[] = [];
  const walk = (p: number) => {
    for (const child of tree.get(p) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

async function commOf(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    return '';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Starts sshd as root on loopback with a config of its own; resolves once it listens. */
export async function startSshd(options: SshdOptions = {}): Promise<Sshd> {
  const reason = labUnavailableReason();
  if (reason) throw new Error(reason);
  // sshd's privilege separation directory; Debian's package creates it only while its service runs.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = await mkdtemp(join(tmpdir(), 'fleetward-sshd-'));
  try {
    return await startIn(dir, options);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function startIn(dir: string, options: SshdOptions): Promise<Sshd> {
  // Logins other than root read their authorized keys under their own uid.
  await chmod(dir, 0o755);
  const host = options.listenAddress ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  const types = options.hostKeyTypes ?? ['ed25519'];
  const keysDir = join(dir, 'authorized_keys');
  await mkdir(keysDir, { mode: 0o755 });

  const hostKeys: HostKey[] = [];
  const makeHostKeys = async () => {
    hostKeys.length = 0;
    for (const type of types) {
      const key = await generateKey(dir, `ssh_host_${type}_key`, type);
      hostKeys.push({ type, fingerprint: key.fingerprint, publicKey: key.publicKey });
    }
  };
  await makeHostKeys();

  const config = [
    `Port ${port}`,
    `ListenAddress ${host}`,
    ...types.map((type) => `HostKey ${join(dir, `ssh_host_${type}_key`)}`),
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${keysDir}/%u`,
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    `PasswordAuthentication ${options.passwordAuthentication ? 'yes' : 'no'}`,
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'AllowTcpForwarding yes',
    'MaxSessions 10',
    'MaxStartups 100:30:200',
    'LogLevel VERBOSE',
    'PrintMotd no',
    '',
  ].join('\n');
  const configPath = join(dir, 'sshd_config');
  await writeFile(configPath, config);

  let command = SSHD;
  let args = ['-D', '-e', '-f', configPath];
  const mounts: [string, string][] = [];
  // The lab models a clean server: this machine's root may have a chatty ~/.bashrc (bash sources
  // it for commands run by sshd), which only this sshd stops seeing.
  if (existsSync('/root/.bashrc') && namespaceUnavailableReason() === undefined) {
    mounts.push(['/dev/null', '/root/.bashrc']);
  }
  if (options.users?.length || options.hosts?.length) {
    const etc = join(dir, 'etc');
    await mkdir(etc);
    if (options.users?.length) {
      const passwd = await readFile('/etc/passwd', 'utf8');
      const shadow = await readFile('/etc/shadow', 'utf8');
      const group = await readFile('/etc/group', 'utf8');
      const sudoers = ['Defaults !fqdn', 'Defaults !lecture', 'root ALL=(ALL:ALL) ALL'];
      const newPasswd: string[] = [];
      const newShadow: string[] = [];
      const newGroup: string[] = [];
      for (const user of options.users) {
        const home = join(dir, 'home', user.name);
        await mkdir(home, { recursive: true });
        await chown(home, user.uid, user.uid);
        newPasswd.push(`${user.name}:x:${user.uid}:${user.uid}:fleetward test:${home}:/bin/sh`);
        const hash = user.password
          ? (await run('openssl', ['passwd', '-6', '-salt', 'fleetwardlab', user.password])).stdout.trim()
          : '*';
        newShadow.push(`${user.name}:${hash}:19000:0:99999:7:::`);
        newGroup.push(`${user.name}:x:${user.uid}:`);
        if (user.sudo === 'nopasswd') sudoers.push(`${user.name} ALL=(ALL:ALL) NOPASSWD: ALL`);
        if (user.sudo === 'password') sudoers.push(`${user.name} ALL=(ALL:ALL) ALL`);
      }
      const files: [string, string, number][] = [
        ['passwd', `${passwd.trimEnd()}\n${newPasswd.join('\n')}\n`, 0o644],
        ['shadow', `${shadow.trimEnd()}\n${newShadow.join('\n')}\n`, 0o640],
        ['group', `${group.trimEnd()}\n${newGroup.join('\n')}\n`, 0o644],
        ['sudoers', `${sudoers.join('\n')}\n`, 0o440],
      ];
      for (const [name, text, mode] of files) {
        await writeFile(join(etc, name), text, { mode });
        await chmod(join(etc, name), mode);
        mounts.push([join(etc, name), `/etc/${name}`]);
      }
    }
    if (options.hosts?.length) {
      const hosts = await readFile('/etc/hosts', 'utf8');
      await writeFile(join(etc, 'hosts'), `${hosts.trimEnd()}\n${options.hosts.join('\n')}\n`);
      mounts.push([join(etc, 'hosts'), '/etc/hosts']);
    }
  }
  if (mounts.length > 0) {
    // The bind mounts live in a private mount namespace that ends with this sshd.
    const script = [
      'set -e',
      ...mounts.map(([from, to]) => `mount --bind "${from}" "${to}"`),
      `exec ${SSHD} -D -e -f "${configPath}"`,
    ].join('\n');
    command = '/usr/bin/unshare';
    args = ['--mount', '--propagation', 'private', 'sh', '-c', script];
  }

  let child: ChildProcess | undefined;
  let logText = '';
  const launch = async () => {
    const started = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = started;
    started.stderr?.setEncoding('utf8');
    const from = logText.length;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        killQuietly(started.pid ?? -1, 'SIGKILL');
        reject(new Error(`sshd did not start listening within 15 s:\n${logText.slice(from)}`));
      }, 15_000);
      started.stderr?.on('data', (chunk: string) => {
        logText += chunk;
        if (logText.slice(from).includes('Server listening on')) {
          clearTimeout(timer);
          resolve();
        }
      });
      started.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`sshd exited (${code ?? signal}) before listening:\n${logText.slice(from)}`));
      });
    });
  };
  await launch();

  const stop = async () => {
    const current = child;
    if (!current?.pid || current.exitCode !== null || current.signalCode !== null) return;
    const pid = current.pid;
    const below = await descendantsOf(pid);
    const exited = new Promise<void>((resolve) => current.once('exit', () => resolve()));
    killQuietly(pid, 'SIGKILL');
    for (const p of below) killQuietly(p, 'SIGKILL');
    await exited;
  };

  const sshd: Sshd = {
    host,
    port,
    dir,
    hostKeys,
    pid: () => child?.pid ?? -1,
    log: () => logText,
    async authorize(login, publicKey) {
      const file = join(keysDir, login);
      const previous = existsSync(file) ? await readFile(file, 'utf8') : '';
      await writeFile(file, `${previous}${publicKey}\n`, { mode: 0o644 });
    },
    async sessionPids() {
      const below = await descendantsOf(sshd.pid());
      const out: number[] = [];
      for (const pid of below) if ((await commOf(pid)) === 'sshd') out.push(pid);
      return out;
    },
    descendantPids: () => descendantsOf(sshd.pid()),
    stop,
    async restart(restartOptions = {}) {
      await stop();
      if (restartOptions.newHostKeys) await makeHostKeys();
      await launch();
    },
    server(overrides = {}) {
      return ServerSchema.parse({
        tenantId: 't1',
        id: `srv-${port}`,
        version: 1,
        createdAt: '2025-01-01T00:00:00Z',
        updatedAt: '2025-01-01T00:00:00Z',
        accountId: 'acc-1',
        provider: 'ssh',
        name: `lab-${port}`,
        address: host,
        port,
        ...overrides,
      });
    },
  };
  return sshd;
}

/** Stops the sshd and removes its directory. */
export async function disposeSshd(sshd: Sshd | undefined): Promise<void> {
  if (!sshd) return;
  await sshd.stop();
  await rm(sshd.dir, { recursive: true, force: true });
}
