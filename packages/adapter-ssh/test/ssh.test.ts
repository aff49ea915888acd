import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createSshAdapter, type LearnedHostKey, type SshAdapterOptions } from '@fleetward/adapter-ssh';
import {
  AbortedError,
  type Adapter,
  type Command,
  type ExecOptions,
  type ExecResult,
  type FleetwardError,
  HostKeyMismatchError,
  type Server,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  describeLab,
  disposeSshd,
  freePort,
  generateKey,
  type KeyPair,
  labUnavailableReason,
  namespaceUnavailableReason,
  type Sshd,
  startSshd,
} from './support/sshd.js';

const run = promisify(execFile);
const LONG = 120_000;

let keysDir = '';
let rootKey: KeyPair;
const adapters: Adapter[] = [];

async function rejection(promise: Promise<unknown>): Promise<FleetwardError> {
  try {
    await promise;
  } catch (error) {
    return error as FleetwardError;
  }
  throw new Error('expected the call to reject');
}

function pinsFor(sshd: Sshd): Record<string, string[]> {
  return { [`[${sshd.host}]:${sshd.port}`]: sshd.hostKeys.map((k) => k.fingerprint) };
}

function adapter(options: Partial<SshAdapterOptions> & Pick<SshAdapterOptions, 'hostKeyPolicy'>): Adapter {
  const made = createSshAdapter({
    credentials: { username: 'root', privateKey: rootKey.privateKey },
    killGraceMs: 500,
    ...options,
  } as SshAdapterOptions);
  adapters.push(made);
  return made;
}

function exec(on: Adapter, server: Server, command: Command, options?: ExecOptions): Promise<ExecResult> {
  if (!on.exec) throw new Error('no exec');
  return on.exec.exec(server, command, options);
}

/** The client port sshd saw for this command: one port per TCP connection. */
async function clientPort(on: Adapter, server: Server): Promise<string> {
  const result = await exec(on, server, { argv: ['sh', '-c', 'printf %s "$SSH_CONNECTION"'] });
  const port = result.stdout.text.split(' ')[1];
  expect(port).toMatch(/^\d+$/);
  return port ?? '';
}

function killQuietly(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** A TCP server that accepts connections and never says a word. */
async function silentServer(): Promise<{ port: number; connected: Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let onConnection = () => {};
  const connected = new Promise<void>((resolve) => {
    onConnection = resolve;
  });
  const server: NetServer = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    onConnection();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    connected,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describeLab('SSH adapter', labUnavailableReason(), () => {
  let sshd: Sshd;
  let server: Server;
  let marker: string;

  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), 'fleetward-keys-'));
    rootKey = await generateKey(keysDir, 'id_ed25519', 'ed25519');
    sshd = await startSshd({ hostKeyTypes: ['ed25519', 'rsa'] });
    await sshd.authorize('root', rootKey.publicKey);
    server = sshd.server();
  });

  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close?.()));
    if (marker) await rm(marker, { force: true });
  });

  afterAll(async () => {
    await disposeSshd(sshd);
    if (keysDir) await rm(keysDir, { recursive: true, force: true });
  });

  const markerCommand = (): Command => {
    marker = join(keysDir, `ran-${Math.random().toString(36).slice(2)}`);
    return { argv: ['touch', marker] };
  };

  describe('pinned host keys', () => {
    it('exec — runs when the host key fingerprint is pinned', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
      const result = await exec(ssh, server, markerCommand());
      expect(result.exitCode).toBe(0);
      expect(existsSync(marker)).toBe(true);
    });

    it('exec — a pinned fingerprint that does not match rejects with HostKeyMismatchError and runs nothing', async () => {
      const other = await generateKey(keysDir, 'other_host_key', 'ed25519');
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: { [`[${sshd.host}]:${sshd.port}`]: [other.fingerprint] },
      });
      const error = await rejection(exec(ssh, server, markerCommand()));
      expect(error).toBeInstanceOf(HostKeyMismatchError);
      expect(error.code).toBe('HOST_KEY_MISMATCH');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(`127.0.0.1:${sshd.port}`);
      expect(error.message).toContain('Nothing was run');
      // The fingerprint ssh-keygen printed for the key sshd presents.
      expect(sshd.hostKeys.map((k) => k.fingerprint)).toContain(error.details.fingerprint);
      expect(error.details.expected).toEqual([other.fingerprint]);
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — a host with no pin rejects with HostKeyMismatchError under the pinned policy', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: { 'elsewhere.example': [] } });
      const error = await rejection(exec(ssh, server, markerCommand()));
      expect(error).toBeInstanceOf(HostKeyMismatchError);
      expect(error.message).toMatch(/no fingerprint is pinned/);
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — pinnedHostKeysFor supplies pins per server', async () => {
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeysFor: async (s) => (s.id === server.id ? sshd.hostKeys.map((k) => k.fingerprint) : []),
      });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
    });
  });

  describe('known_hosts', () => {
    let file: string;
    beforeAll(() => {
      file = join(keysDir, 'known_hosts');
    });

    const lineFor = (hostName: string, publicKey: string) =>
      `${hostName} ${publicKey.split(' ').slice(0, 2).join(' ')}`;

    it('exec — runs when known_hosts lists the key for [host]:port', async () => {
      await writeFile(
        file,
        `# comment\n${lineFor(`[127.0.0.1]:${sshd.port}`, sshd.hostKeys[0]!.publicKey)}\n`,
      );
      const ssh = adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file });
      expect((await exec(ssh, server, markerCommand())).exitCode).toBe(0);
      expect(existsSync(marker)).toBe(true);
    });

    it('exec — runs with an entry hashed by ssh-keygen -H', async () => {
      await writeFile(file, `${lineFor(`[127.0.0.1]:${sshd.port}`, sshd.hostKeys[0]!.publicKey)}\n`);
      await run('ssh-keygen', ['-H', '-f', file]);
      expect(await readFile(file, 'utf8')).toMatch(/^\|1\|/);
      const ssh = adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
    });

    it('exec — negotiates the key type known_hosts has, as OpenSSH does', async () => {
      const rsa = sshd.hostKeys.find((k) => k.type === 'rsa');
      await writeFile(file, `${lineFor(`[127.0.0.1]:${sshd.port}`, rsa!.publicKey)}\n`);
      const ssh = adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
    });

    it('exec — a different key for the host (plain or hashed) rejects with HostKeyMismatchError and runs nothing', async () => {
      const other = await generateKey(keysDir, 'other_known_key', 'ed25519');
      await writeFile(file, `${lineFor(`[127.0.0.1]:${sshd.port}`, other.publicKey)}\n`);
      const plain = await rejection(
        exec(adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file }), server, markerCommand()),
      );
      expect(plain).toBeInstanceOf(HostKeyMismatchError);
      expect(plain.message).toContain(other.fingerprint);
      expect(existsSync(marker)).toBe(false);

      await run('ssh-keygen', ['-H', '-f', file]);
      const hashed = await rejection(
        exec(adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file }), server, markerCommand()),
      );
      expect(hashed).toBeInstanceOf(HostKeyMismatchError);
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — a host missing from known_hosts, or only listed on another port, is not trusted', async () => {
      await writeFile(file, `${lineFor('127.0.0.1', sshd.hostKeys[0]!.publicKey)}\n`);
      const error = await rejection(
        exec(adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file }), server, markerCommand()),
      );
      expect(error).toBeInstanceOf(HostKeyMismatchError);
      expect(error.message).toContain(`[127.0.0.1]:${sshd.port} is not in ${file}`);
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — a key marked @revoked is refused even when also listed', async () => {
      const line = lineFor(`[127.0.0.1]:${sshd.port}`, sshd.hostKeys[0]!.publicKey);
      await writeFile(file, `@revoked ${line}\n${line}\n`);
      const error = await rejection(
        exec(adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: file }), server, markerCommand()),
      );
      expect(error).toBeInstanceOf(HostKeyMismatchError);
      expect(error.message).toContain('@revoked');
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — an unreadable known_hosts file is a TransportError, not an empty list', async () => {
      const error = await rejection(
        exec(
          adapter({ hostKeyPolicy: 'known-hosts', knownHostsFile: join(keysDir, 'missing') }),
          server,
          markerCommand(),
        ),
      );
      expect(error).toBeInstanceOf(TransportError);
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('ENOENT');
    });
  });

  describe('keys and logins', () => {
    it('exec — logs in with an RSA key', async () => {
      const rsa = await generateKey(keysDir, 'id_rsa', 'rsa');
      await sshd.authorize('root', rsa.publicKey);
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: pinsFor(sshd),
        credentials: { username: 'root', privateKey: rsa.privateKey },
      });
      expect((await exec(ssh, server, { argv: ['id', '-un'] })).stdout.text).toBe('root\n');
      expect(sshd.log()).toContain(`Accepted publickey for root from 127.0.0.1`);
    });

    it('exec — logs in with a passphrase-protected key', async () => {
      const protectedKey = await generateKey(keysDir, 'id_protected', 'ed25519', 'open sesame 42');
      await sshd.authorize('root', protectedKey.publicKey);
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: pinsFor(sshd),
        credentials: { username: 'root', privateKey: protectedKey.privateKey, passphrase: 'open sesame 42' },
      });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
    });

    it('exec — a wrong or missing passphrase is a clear ValidationError that never shows the passphrase', async () => {
      const protectedKey = await generateKey(keysDir, 'id_protected_rsa', 'rsa', 'the right one');
      const wrong = 'Wr0ng-Passphrase-Sentinel';
      const error = await rejection(
        exec(
          adapter({
            hostKeyPolicy: 'pinned',
            pinnedHostKeys: pinsFor(sshd),
            credentials: { username: 'root', privateKey: protectedKey.privateKey, passphrase: wrong },
          }),
          server,
          markerCommand(),
        ),
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['passphrase']);
      expect(error.message).toMatch(/does not decrypt privateKey/);
      const everything = `${error.message} ${JSON.stringify(error.toJSON())} ${String(error.stack)}`;
      expect(everything).not.toContain(wrong);
      expect(everything).not.toContain('PRIVATE KEY');
      expect(existsSync(marker)).toBe(false);

      const missing = await rejection(
        exec(
          adapter({
            hostKeyPolicy: 'pinned',
            pinnedHostKeys: pinsFor(sshd),
            credentials: { username: 'root', privateKey: protectedKey.privateKey },
          }),
          server,
          { argv: ['true'] },
        ),
      );
      expect(missing).toBeInstanceOf(ValidationError);
      expect(missing.message).toMatch(/encrypted and no passphrase was given/);
    });

    it('exec — a key the server does not accept is a TransportError listing the methods tried', async () => {
      const stranger = await generateKey(keysDir, 'id_stranger', 'ed25519');
      const error = await rejection(
        exec(
          adapter({
            hostKeyPolicy: 'pinned',
            pinnedHostKeys: pinsFor(sshd),
            credentials: { username: 'root', privateKey: stranger.privateKey, password: 'pw-Sentinel-77' },
          }),
          server,
          markerCommand(),
        ),
      );
      expect(error).toBeInstanceOf(TransportError);
      expect(error.retryable).toBe(false);
      expect(error.fault).toBe('caller');
      expect(error.message).toContain('SSH login as root on');
      expect(error.message).toContain(`127.0.0.1:${sshd.port}`);
      expect(error.message).toContain('publickey (ssh-ed25519 key)');
      // The server does not offer password logins, so the password was never sent.
      expect(error.details.tried).toEqual(['publickey (ssh-ed25519 key)']);
      expect(JSON.stringify(error.toJSON())).not.toContain('pw-Sentinel-77');
      expect(existsSync(marker)).toBe(false);
    });

    it('exec — logs in through ssh-agent', async () => {
      const socket = join(keysDir, 'agent.sock');
      const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
      try {
        await vi.waitFor(() => expect(existsSync(socket)).toBe(true), { timeout: 5000 });
        await run('ssh-add', [rootKey.path], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
        const ssh = adapter({
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: pinsFor(sshd),
          credentials: { username: 'root', agent: socket },
        });
        expect((await exec(ssh, server, { argv: ['id', '-un'] })).stdout.text).toBe('root\n');
      } finally {
        agent.kill('SIGTERM');
        await rm(socket, { force: true });
      }
    });

    it('exec — credentialsFor gives per-server logins, and a changed credential dials a new connection', async () => {
      const second = await generateKey(keysDir, 'id_second', 'ed25519');
      await sshd.authorize('root', second.publicKey);
      let current = rootKey;
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: pinsFor(sshd),
        credentials: undefined,
        credentialsFor: async () => ({ username: 'root', privateKey: current.privateKey }),
      });
      const before = await clientPort(ssh, server);
      expect(await clientPort(ssh, server)).toBe(before);
      current = second;
      // A rotated key must be proven by a real login, not by a connection made with the old one.
      expect(await clientPort(ssh, server)).not.toBe(before);
      expect(sshd.log()).toContain(`ED25519 ${second.fingerprint}`);
    });

    it('exec — with sudo for a root login runs the command directly, env and hostile values intact', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
      const pwned = join(keysDir, 'pwned-sudo');
      const value = `x'; touch ${pwned}; '$(touch ${pwned})\`touch ${pwned}\`\n-n`;
      const result = await exec(ssh, server, {
        interpreter: ['sh', '-s'],
        script: 'printf "%s" "$VALUE"\nprintf "|%s" "$(ps -o comm= -p $PPID)" >&2\n',
        env: { VALUE: value },
        sudo: true,
      });
      expect(result.stdout.text).toBe(value);
      // The command's parent is sshd itself: no sudo in between.
      expect(result.stderr.text).toBe('|sshd');
      expect(existsSync(pwned)).toBe(false);
    });
  });

  describe('login probe', () => {
    const probe = (on: Adapter, privateKey: string | Buffer, options?: { sudo?: boolean }) => {
      if (!on.login) throw new Error('no login capability');
      return on.login.probe(server, { username: 'root', privateKey: privateKey.toString() }, options);
    };

    it('login.probe — an authorized key logs in over a connection of its own, never a pooled one', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
      const pooled = await clientPort(ssh, server);
      const before = sshd.log().split('Accepted publickey').length;
      expect(await probe(ssh, rootKey.privateKey)).toEqual({ ok: true });
      // One more login than before: the probe dialled, it did not borrow the pooled connection.
      expect(sshd.log().split('Accepted publickey').length).toBe(before + 1);
      expect(await clientPort(ssh, server)).toBe(pooled);
    });

    it('login.probe — a key the server does not know is refused, reported, not thrown', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
      const stranger = await generateKey(keysDir, `stranger-${Date.now()}`, 'ed25519');
      const result = await probe(ssh, stranger.privateKey);
      expect(result).toMatchObject({ ok: false, refused: true });
      // The pooled exec path is unaffected.
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
    });

    it('login.probe — a changed host key is a HostKeyMismatchError before any login is tried', async () => {
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: {
          [`[${sshd.host}]:${sshd.port}`]: ['SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
        },
      });
      await expect(probe(ssh, rootKey.privateKey)).rejects.toBeInstanceOf(HostKeyMismatchError);
    });

    it('login.probe — an unreachable host is not proof of anything: refused is false', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd), connectTimeoutMs: 2000 });
      const port = await freePort();
      const result = await ssh.login!.probe(
        { ...server, port },
        { username: 'root', privateKey: rootKey.privateKey.toString() },
      );
      expect(result).toMatchObject({ ok: false, refused: false });
    });
  });

  describe('connection pool', () => {
    it('exec — reuses one connection for many sequential commands', async () => {
      const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
      const ports = new Set<string>();
      for (let i = 0; i < 12; i++) ports.add(await clientPort(ssh, server));
      expect(ports.size).toBe(1);
    });

    it('exec — spreads concurrent commands over at most maxConnectionsPerHost connections', async () => {
      const ssh = adapter({
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: pinsFor(sshd),
        maxChannelsPerConnection: 4,
        maxConnectionsPerHost: 2,
      });
      const results = await Promise.all(
        Array.from({ length: 16 }, () =>
          exec(ssh, server, { argv: ['sh', '-c', 'sleep 0.3; printf %s "$SSH_CONNECTION"'] }),
        ),
      );
      const ports = new Set(results.map((r) => r.stdout.text.split(' ')[1]));
      expect(results.every((r) => r.exitCode === 0)).toBe(true);
      expect(ports.size).toBeGreaterThanOrEqual(1);
      expect(ports.size).toBeLessThanOrEqual(2);
    });

    it(
      'exec — after sshd restarts, the next command transparently gets a fresh connection',
      async () => {
        const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
        const before = await clientPort(ssh, server);
        await sshd.restart();
        const after = await clientPort(ssh, server);
        expect(after).not.toBe(before);
        expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
      },
      LONG,
    );

    it(
      'exec — a connection killed mid-command rejects with TransportError, is not re-run, and the next command reconnects',
      async () => {
        const ssh = adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pinsFor(sshd) });
        const counter = join(keysDir, 'runs');
        await rm(counter, { force: true });
        let started!: () => void;
        const running = new Promise<void>((resolve) => {
          started = resolve;
        });
        const call = exec(
          ssh,
          server,
          {
            interpreter: ['sh', '-s'],
            script: 'echo run >> "$COUNTER"\nsleep 60 &\necho ready\nwait\n',
            env: { COUNTER: counter },
          },
          {
            timeoutMs: LONG,
            onOutput: (stream, chunk) =>
              stream === 'stdout' && chunk.toString().includes('ready') && started(),
          },
        );
        await running;
        const below = await sshd.descendantPids();
        const sessions = await sshd.sessionPids();
        killQuietly(sessions);
        const error = await rejection(call);
        killQuietly(below);
        expect(error).toBeInstanceOf(TransportError);
        expect(error.message).toContain('was lost while the command ran');
        expect(error.message).toContain(`127.0.0.1:${sshd.port}`);
        expect(error.details.commandMayHaveRun).toBe(true);
        expect(error.details.stdout).toMatchObject({ text: 'ready\n' });
        expect(await readFile(counter, 'utf8')).toBe('run\n');
        expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
        expect(await readFile(counter, 'utf8')).toBe('run\n');
      },
      LONG,
    );

    it(
      'exec — a server that stops answering is dropped by keepalive with a TransportError',
      async () => {
        const ssh = adapter({
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: pinsFor(sshd),
          keepaliveIntervalMs: 500,
          keepaliveCountMax: 2,
        });
        let started!: () => void;
        const running = new Promise<void>((resolve) => {
          started = resolve;
        });
        const call = exec(
          ssh,
          server,
          { interpreter: ['sh', '-s'], script: 'sleep 60 &\necho ready\nwait\n' },
          {
            timeoutMs: LONG,
            onOutput: (stream, chunk) =>
              stream === 'stdout' && chunk.toString().includes('ready') && started(),
          },
        );
        await running;
        const below = await sshd.descendantPids();
        const sessions = await sshd.sessionPids();
        // Stopped, the session processes keep the TCP connection open but answer nothing.
        for (const pid of sessions) process.kill(pid, 'SIGSTOP');
        try {
          const error = await rejection(call);
          expect(error).toBeInstanceOf(TransportError);
          expect(error.message).toMatch(/Keepalive timeout/i);
        } finally {
          killQuietly(below);
        }
      },
      LONG,
    );

    it(
      'exec — a command whose channel never opened is run once on a fresh connection',
      async () => {
        const ssh = adapter({
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: pinsFor(sshd),
          keepaliveIntervalMs: 500,
          keepaliveCountMax: 2,
        });
        const before = await clientPort(ssh, server);
        const frozen = await sshd.sessionPids();
        // The pooled connection still looks open, but nothing answers the channel request.
        for (const pid of frozen) process.kill(pid, 'SIGSTOP');
        const counter = join(keysDir, 'runs-retry');
        await rm(counter, { force: true });
        try {
          const result = await exec(ssh, server, {
            interpreter: ['sh', '-s'],
            script: 'echo run >> "$COUNTER"\nprintf %s "$SSH_CONNECTION"\n',
            env: { COUNTER: counter },
          });
          expect(result.exitCode).toBe(0);
          expect(result.stdout.text.split(' ')[1]).not.toBe(before);
          expect(await readFile(counter, 'utf8')).toBe('run\n');
        } finally {
          killQuietly(frozen);
        }
      },
      LONG,
    );

    it('close — ends every connection; later calls reject with TransportError', async () => {
      const ssh = createSshAdapter({
        credentials: { username: 'root', privateKey: rootKey.privateKey },
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: pinsFor(sshd),
      });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
      await ssh.close?.();
      const error = await rejection(exec(ssh, server, { argv: ['true'] }));
      expect(error).toBeInstanceOf(TransportError);
      expect(error.message).toMatch(/closed/);
    });
  });

  describe('unreachable hosts', () => {
    it('exec — a port nobody listens on fails fast with a TransportError naming host, port and ECONNREFUSED', async () => {
      const port = await freePort();
      const ssh = adapter({ hostKeyPolicy: 'tofu' });
      const down = sshd.server({ id: 'srv-down', name: 'db-down', port });
      const error = await rejection(exec(ssh, down, { argv: ['true'] }));
      expect(error).toBeInstanceOf(TransportError);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`db-down (127.0.0.1:${port})`);
      expect(error.message).toContain('ECONNREFUSED');
      expect(error.details).toMatchObject({
        serverId: 'srv-down',
        errno: 'ECONNREFUSED',
        phase: 'TCP connect',
      });
    });

    it('exec — a server that never speaks SSH fails with a TransportError after connectTimeoutMs', async () => {
      const silent = await silentServer();
      try {
        const ssh = adapter({ hostKeyPolicy: 'tofu', connectTimeoutMs: 1_000 });
        const error = await rejection(
          exec(ssh, sshd.server({ id: 'srv-silent', port: silent.port }), { argv: ['true'] }),
        );
        expect(error).toBeInstanceOf(TransportError);
        expect(error.message).toContain('timed out after 1000 ms during SSH handshake');
        expect(error.message).toContain(`127.0.0.1:${silent.port}`);
      } finally {
        await silent.close();
      }
    });

    it('exec — the deadline bounds a call that cannot connect: TimeoutError, nothing ran', async () => {
      const silent = await silentServer();
      try {
        const ssh = adapter({ hostKeyPolicy: 'tofu', connectTimeoutMs: 60_000, deadlineMs: 1_000 });
        const error = await rejection(
          exec(ssh, sshd.server({ id: 'srv-silent', port: silent.port }), { argv: ['true'] }),
        );
        expect(error).toBeInstanceOf(TimeoutError);
        expect(error.details.commandMayHaveRun).toBe(false);
      } finally {
        await silent.close();
      }
    });

    it('exec — an abort while connecting rejects with AbortedError at once', async () => {
      const silent = await silentServer();
      try {
        const ssh = adapter({ hostKeyPolicy: 'tofu', connectTimeoutMs: 60_000 });
        const controller = new AbortController();
        const call = exec(
          ssh,
          sshd.server({ id: 'srv-silent', port: silent.port }),
          { argv: ['true'] },
          {
            signal: controller.signal,
          },
        );
        // Abort once the TCP connection is up and the adapter waits for a banner that never comes.
        await silent.connected;
        controller.abort();
        const error = await rejection(call);
        expect(error).toBeInstanceOf(AbortedError);
        expect(error.details.commandMayHaveRun).toBe(false);
      } finally {
        await silent.close();
      }
    });
  });
});

describeLab('SSH adapter: trust on first use', labUnavailableReason(), () => {
  let sshd: Sshd;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleetward-tofu-'));
    rootKey = await generateKey(dir, 'id_ed25519', 'ed25519');
    sshd = await startSshd();
    await sshd.authorize('root', rootKey.publicKey);
  });
  afterAll(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close?.()));
    await disposeSshd(sshd);
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'exec — tofu records a new host key, then rejects a changed one with HostKeyMismatchError',
    async () => {
      const file = join(dir, 'known_hosts');
      const learned: LearnedHostKey[] = [];
      const options = {
        hostKeyPolicy: 'tofu' as const,
        knownHostsFile: file,
        onHostKeyLearned: (key: LearnedHostKey) => {
          learned.push(key);
        },
      };
      const ssh = adapter(options);
      const server = sshd.server();
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
      expect(learned).toHaveLength(1);
      expect(learned[0]).toMatchObject({
        hostName: `[127.0.0.1]:${sshd.port}`,
        keyType: 'ssh-ed25519',
        fingerprint: sshd.hostKeys[0]!.fingerprint,
      });
      // OpenSSH's own tools find the recorded key.
      const found = await run('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', file]);
      expect(found.stdout).toContain(sshd.hostKeys[0]!.publicKey.split(' ')[1]);

      await sshd.restart({ newHostKeys: true });
      const marker = join(dir, 'must-not-exist');
      // The same adapter (which remembers) and a new one (which reads the file) both refuse.
      for (const client of [ssh, adapter(options)]) {
        const error = await rejection(exec(client, server, { argv: ['touch', marker] }));
        expect(error).toBeInstanceOf(HostKeyMismatchError);
        expect(error.details.fingerprint).toBe(sshd.hostKeys[0]!.fingerprint);
      }
      expect(existsSync(marker)).toBe(false);
      expect(learned).toHaveLength(1);
    },
    LONG,
  );

  it(
    'exec — tofu without a file still enforces the learned key for the adapter lifetime',
    async () => {
      const ssh = adapter({ hostKeyPolicy: 'tofu' });
      const server = sshd.server({ id: 'srv-memory' });
      expect((await exec(ssh, server, { argv: ['true'] })).exitCode).toBe(0);
      await sshd.restart({ newHostKeys: true });
      const error = await rejection(exec(ssh, server, { argv: ['true'] }));
      expect(error).toBeInstanceOf(HostKeyMismatchError);
    },
    LONG,
  );
});

describeLab('SSH adapter: jump host', namespaceUnavailableReason(), () => {
  let jump: Sshd;
  let target: Sshd;
  let dir: string;
  let targetServer: Server;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleetward-jump-'));
    rootKey = await generateKey(dir, 'id_ed25519', 'ed25519');
    // The target listens on 127.0.0.2 under a name only the bastion can resolve, so a command that
    // reaches it provably went through the bastion.
    target = await startSshd({ listenAddress: '127.0.0.2' });
    jump = await startSshd({ hosts: ['127.0.0.2 fleetward-target.test'] });
    await target.authorize('root', rootKey.publicKey);
    await jump.authorize('root', rootKey.publicKey);
    targetServer = target.server({
      id: 'srv-behind',
      name: 'behind-bastion',
      address: 'fleetward-target.test',
    });
  });
  afterAll(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close?.()));
    await disposeSshd(jump);
    await disposeSshd(target);
    await rm(dir, { recursive: true, force: true });
  });

  const pins = () => ({
    [`[127.0.0.1]:${jump.port}`]: jump.hostKeys.map((k) => k.fingerprint),
    [`[fleetward-target.test]:${target.port}`]: target.hostKeys.map((k) => k.fingerprint),
  });

  it('exec — without the bastion the target name cannot even be resolved', async () => {
    const error = await rejection(
      exec(adapter({ hostKeyPolicy: 'pinned', pinnedHostKeys: pins() }), targetServer, { argv: ['true'] }),
    );
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });

  it('exec — runs on the target through the bastion, verifying both host keys, over one bastion connection', async () => {
    const ssh = adapter({
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: pins(),
      jumpHost: { host: '127.0.0.1', port: jump.port },
    });
    const result = await exec(ssh, targetServer, { argv: ['sh', '-c', 'printf %s "$SSH_CONNECTION"'] });
    expect(result.exitCode).toBe(0);
    // sshd on the target saw the bastion's tunnel arrive on 127.0.0.2.
    expect(result.stdout.text.split(' ')[2]).toBe('127.0.0.2');
    const concurrent = await Promise.all(
      Array.from({ length: 12 }, (_, i) => exec(ssh, targetServer, { argv: ['printf', '%s', String(i)] })),
    );
    expect(concurrent.map((r) => r.stdout.text)).toEqual(Array.from({ length: 12 }, (_, i) => String(i)));
    const bastionLogins = jump.log().match(/Accepted publickey for root/g) ?? [];
    expect(bastionLogins).toHaveLength(1);
  });

  it('exec — a bastion whose host key does not match rejects with HostKeyMismatchError naming it; nothing ran', async () => {
    const other = await generateKey(dir, 'other', 'ed25519');
    const marker = join(dir, 'must-not-exist');
    const ssh = adapter({
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { ...pins(), [`[127.0.0.1]:${jump.port}`]: [other.fingerprint] },
      jumpHost: { host: '127.0.0.1', port: jump.port },
    });
    const error = await rejection(exec(ssh, targetServer, { argv: ['touch', marker] }));
    expect(error).toBeInstanceOf(HostKeyMismatchError);
    expect(error.message).toContain(`bastion 127.0.0.1:${jump.port}`);
    expect(existsSync(marker)).toBe(false);
  });

  it('exec — a target the bastion cannot reach is a TransportError naming both', async () => {
    const ssh = adapter({
      hostKeyPolicy: 'tofu',
      jumpHostFor: async () => ({ host: '127.0.0.1', port: jump.port }),
    });
    const error = await rejection(
      exec(
        ssh,
        target.server({ id: 'srv-nowhere', name: 'nowhere', address: 'fleetward-target.test', port: 1 }),
        {
          argv: ['true'],
        },
      ),
    );
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toContain(
      `Bastion 127.0.0.1:${jump.port} could not reach nowhere (fleetward-target.test:1)`,
    );
  });
});

describeLab('SSH adapter: login probe with a password', namespaceUnavailableReason(), () => {
  // Exists only inside this sshd's private mount namespace; root may not log in with a password.
  const OPS = { name: 'fleetward-probe', uid: 64211, password: 'Probe-Pass-Sentinel-3' };
  let sshd: Sshd;
  let dir: string;
  let server: Server;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleetward-probe-'));
    rootKey = await generateKey(dir, 'id_ed25519', 'ed25519');
    sshd = await startSshd({ users: [OPS], passwordAuthentication: true });
    await sshd.authorize(OPS.name, rootKey.publicKey);
    server = sshd.server({ id: 'srv-probe', name: 'probe-lab' });
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close?.()));
  });
  afterAll(async () => {
    await disposeSshd(sshd);
    await rm(dir, { recursive: true, force: true });
  });

  const ssh = () =>
    adapter({
      credentials: { username: OPS.name, privateKey: rootKey.privateKey },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: pinsFor(sshd),
    });
  const accepted = (method: string) => sshd.log().split(`Accepted ${method} for ${OPS.name}`).length - 1;

  it('login.probe — a password logs in by password authentication, over a connection of its own', async () => {
    const on = ssh();
    expect((await exec(on, server, { argv: ['true'] })).exitCode).toBe(0);
    const keys = accepted('publickey');
    const passwords = accepted('password');
    expect(await on.login?.probe(server, { username: OPS.name, password: OPS.password })).toEqual({
      ok: true,
    });
    // A new login, by password: not the pooled key connection, and no key offered first.
    expect(accepted('password')).toBe(passwords + 1);
    expect(accepted('publickey')).toBe(keys);
  });

  it('login.probe — a wrong password is refused, reported without the password, not thrown', async () => {
    const wrong = 'Wrong-Probe-Sentinel-7';
    const result = await ssh().login?.probe(server, { username: OPS.name, password: wrong });
    expect(result).toMatchObject({ ok: false, refused: true });
    expect(JSON.stringify(result)).not.toContain(wrong);
  });

  it('login.probe — a password probe still checks the host key first', async () => {
    const on = adapter({
      credentials: { username: OPS.name, privateKey: rootKey.privateKey },
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: {
        [`[${sshd.host}]:${sshd.port}`]: ['SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
      },
    });
    const passwords = accepted('password');
    await expect(
      on.login?.probe(server, { username: OPS.name, password: OPS.password }),
    ).rejects.toBeInstanceOf(HostKeyMismatchError);
    expect(accepted('password')).toBe(passwords);
  });

  it('login.probe — a key and a password at once is a ValidationError, nothing is tried', async () => {
    const both = { username: OPS.name, password: OPS.password, privateKey: rootKey.privateKey.toString() };
    const before = sshd.log().length;
    await expect(ssh().login?.probe(server, both)).rejects.toBeInstanceOf(ValidationError);
    expect(sshd.log().length).toBe(before);
  });
});
