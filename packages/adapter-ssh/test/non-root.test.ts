import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSshAdapter, type SshAdapterOptions } from '@fleetward/adapter-ssh';
import {
  type Adapter,
  type Command,
  CommandFailedError,
  type ExecOptions,
  type ExecResult,
  type FleetwardError,
  type Server,
  TimeoutError,
  TransportError,
} from '@fleetward/core';
import { describeTransportConformance } from '@fleetward/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  describeLab,
  disposeSshd,
  generateKey,
  type KeyPair,
  namespaceUnavailableReason,
  type Sshd,
  startSshd,
} from './support/sshd.js';

// These logins exist only inside the test sshd's private mount namespace (bind-mounted copies of
// /etc/passwd, /etc/shadow, /etc/group and a sudoers): this machine's own files never change.
const OPS = { name: 'fleetward-ops', uid: 64201, password: 'Lab-Pass-Sentinel-1', sudo: 'nopasswd' as const };
const DEV = { name: 'fleetward-dev', uid: 64202, sudo: 'password' as const };

function sudoUnavailableReason(): string | undefined {
  return (
    namespaceUnavailableReason() ??
    (existsSync('/usr/bin/sudo') ? undefined : 'needs sudo (apt-get install sudo)')
  );
}

async function rejection(promise: Promise<unknown>): Promise<FleetwardError> {
  try {
    await promise;
  } catch (error) {
    return error as FleetwardError;
  }
  throw new Error('expected the call to reject');
}

/** Alive means running: a zombie (exited, not yet reaped) is gone. The lab host is this machine. */
async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let sshd: Sshd | undefined;
let dir = '';
let opsKey: KeyPair;
let devKey: KeyPair;

async function lab(): Promise<Sshd> {
  if (sshd) return sshd;
  dir = await mkdtemp(join(tmpdir(), 'fleetward-nonroot-'));
  opsKey = await generateKey(dir, 'id_ops', 'ed25519');
  devKey = await generateKey(dir, 'id_dev', 'ed25519');
  sshd = await startSshd({ users: [OPS, DEV], passwordAuthentication: true });
  await sshd.authorize(OPS.name, opsKey.publicKey);
  await sshd.authorize(DEV.name, devKey.publicKey);
  return sshd;
}

describeLab('SSH adapter: non-root logins', sudoUnavailableReason(), () => {
  const adapters: Adapter[] = [];
  let server: Server;

  const adapter = (credentials: SshAdapterOptions['credentials'], extra: Partial<SshAdapterOptions> = {}) => {
    const lab_ = sshd as Sshd;
    const made = createSshAdapter({
      credentials,
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: { [`[${lab_.host}]:${lab_.port}`]: lab_.hostKeys.map((k) => k.fingerprint) },
      killGraceMs: 500,
      ...extra,
    });
    adapters.push(made);
    return made;
  };
  const exec = (on: Adapter, command: Command, options?: ExecOptions): Promise<ExecResult> => {
    if (!on.exec) throw new Error('no exec');
    return on.exec.exec(server, command, options);
  };

  beforeAll(async () => {
    server = (await lab()).server({ id: 'srv-nonroot', name: 'nonroot-lab' });
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close?.()));
  });

  it('exec — logs in with a password', async () => {
    const ssh = adapter({ username: OPS.name, password: OPS.password });
    const result = await exec(ssh, { argv: ['id', '-un'] });
    expect(result.stdout.text).toBe(`${OPS.name}\n`);
    expect(sshd?.log()).toContain(`Accepted password for ${OPS.name}`);
  });

  it('exec — a wrong password is a TransportError naming the method, never the password', async () => {
    const wrong = 'Wrong-Password-Sentinel-9';
    const error = await rejection(exec(adapter({ username: OPS.name, password: wrong }), { argv: ['true'] }));
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toContain(`SSH login as ${OPS.name}`);
    expect(error.message).toContain('tried password');
    expect(`${error.message} ${JSON.stringify(error.toJSON())} ${String(error.stack)}`).not.toContain(wrong);
  });

  it('exec — without sudo runs as the login', async () => {
    const result = await exec(adapter({ username: OPS.name, privateKey: opsKey.privateKey }), {
      argv: ['id', '-u'],
    });
    expect(result.stdout.text).toBe(`${OPS.uid}\n`);
  });

  it('exec — with sudo runs as root through sudo -n, hostile env values intact', async () => {
    const pwned = join(dir, 'pwned-sudo');
    const value = `x'; touch ${pwned}; '$(touch ${pwned})\`touch ${pwned}\`\n-n --`;
    const result = await exec(adapter({ username: OPS.name, privateKey: opsKey.privateKey }), {
      interpreter: ['sh', '-s'],
      script: 'id -u\nprintf "%s" "$VALUE"\n',
      env: { VALUE: value },
      sudo: true,
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.text).toBe(`0\n${value}`);
    expect(existsSync(pwned)).toBe(false);
  });

  it('exec — sudo that wants a password rejects with CommandFailedError saying so; nothing ran', async () => {
    const marker = join(dir, 'must-not-exist');
    const error = await rejection(
      exec(adapter({ username: DEV.name, privateKey: devKey.privateKey }), {
        argv: ['touch', marker],
        sudo: true,
      }),
    );
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error.code).toBe('COMMAND_FAILED');
    expect(error.message).toContain('requires a password');
    expect(error.message).toContain(DEV.name);
    expect(error.details).toMatchObject({ reason: 'sudo-password-required', exitCode: 1 });
    expect(existsSync(marker)).toBe(false);
  });

  it('exec — on timeout kills a command running as root under sudo', async () => {
    const pidFile = join(dir, 'sudo.pid');
    const error = await rejection(
      exec(
        adapter({ username: OPS.name, privateKey: opsKey.privateKey }),
        {
          interpreter: ['sh', '-s'],
          script: 'sleep 300 &\necho $! > "$PID_FILE"\necho $$ >> "$PID_FILE"\nid -u\nwait\n',
          env: { PID_FILE: pidFile },
          sudo: true,
        },
        { timeoutMs: 3_000 },
      ),
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.details).toMatchObject({ stdout: { text: '0\n' } });
    const pids = (await readFile(pidFile, 'utf8')).trim().split('\n').map(Number);
    try {
      for (const pid of pids) {
        await vi.waitFor(async () => expect(await isAlive(pid), `pid ${pid} survived`).toBe(false), {
          timeout: 10_000,
        });
      }
    } finally {
      for (const pid of pids) if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 60_000);

  describe('conformance as a non-root login', () => {
    describeTransportConformance('ssh (non-root login, ed25519 key)', {
      async create() {
        const lab_ = await lab();
        return {
          adapter: createSshAdapter({
            credentials: { username: OPS.name, privateKey: opsKey.privateKey },
            hostKeyPolicy: 'pinned',
            pinnedHostKeys: { [`[${lab_.host}]:${lab_.port}`]: lab_.hostKeys.map((k) => k.fingerprint) },
            killGraceMs: 500,
          }),
          server: lab_.server({ id: 'srv-nonroot-conformance' }),
        };
      },
    });
  });

  afterAll(async () => {
    await disposeSshd(sshd);
    sshd = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });
});
