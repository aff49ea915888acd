import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createWinRmAdapter, type WinRmAdapterOptions } from '@fleetward/adapter-winrm';
import {
  type Adapter,
  type ExecCapability,
  HostKeyMismatchError,
  type LoginCapability,
  type Server,
  ValidationError,
} from '@fleetward/core';
import { startWinRmFake, type WinRmFake, type WinRmFakeOptions } from '@fleetward/testkit/winrm';
import { afterEach, describe, expect, it } from 'vitest';

const ADMIN = { username: 'Administrator', password: 'S3cret!pass' };
const OPS = { username: 'fleetward-ops', password: 'Ops-Pass-Sentinel-5' };

let fake: WinRmFake | undefined;
const adapters: Adapter[] = [];
const listeners: NetServer[] = [];
const sockets = new Set<Socket>();

afterEach(async () => {
  await Promise.all(adapters.splice(0).map((a) => a.close?.()));
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await Promise.all(listeners.splice(0).map((l) => new Promise<void>((resolve) => l.close(() => resolve()))));
  await fake?.close();
  fake = undefined;
});

async function setup(
  options: Partial<WinRmAdapterOptions> = {},
  fakeOptions: Partial<WinRmFakeOptions> = {},
): Promise<{
  adapter: Adapter;
  login: LoginCapability;
  exec: ExecCapability;
  server: Server;
  fake: WinRmFake;
}> {
  const started = await startWinRmFake({ users: [ADMIN, OPS], ...fakeOptions });
  fake = started;
  const adapter = createWinRmAdapter({ credentials: ADMIN, ca: started.ca, ...options });
  adapters.push(adapter);
  if (!adapter.login || !adapter.exec) throw new Error('the WinRM adapter has no login or exec capability');
  const server = { id: 'srv-1', name: 'localhost', address: '127.0.0.1', port: started.port } as Server;
  return { adapter, login: adapter.login, exec: adapter.exec, server, fake: started };
}

const actions = (f: WinRmFake) => f.requests.map((r) => r.action).filter(Boolean);

/** One shell, one command received until done, the shell deleted: how many Receives it took is the host's business. */
function expectOneShellLifecycle(f: WinRmFake): void {
  const sent = actions(f);
  expect(sent.slice(0, 2)).toEqual(['Create', 'Command']);
  expect(sent.at(-1)).toBe('Delete');
  const middle = sent.slice(2, -1);
  expect(middle.length).toBeGreaterThan(0);
  expect(middle.every((a) => a === 'Receive')).toBe(true);
}
const connectionsOf = (f: WinRmFake, from = 0) => new Set(f.requests.slice(from).map((r) => r.connection));

/** A loopback port that accepts TCP connections and never answers. */
async function silentPort(): Promise<number> {
  const listener = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listeners.push(listener);
  const address = listener.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A loopback port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const listener = createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const address = listener.address();
  await new Promise<void>((resolve) => listener.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('createWinRmAdapter login against the WinRM fake', () => {
  it('login.probe — a good password logs in over NTLM: a shell runs cmd.exe /c exit 0 and is deleted', async () => {
    let ran: { command: string; arguments: string[]; username: string } | undefined;
    const { login, server, fake } = await setup(
      {},
      {
        run: (c) => {
          ran = { command: c.command, arguments: c.arguments, username: c.username };
          return undefined;
        },
      },
    );
    expect(await login.probe(server, OPS)).toEqual({ ok: true });
    expect(ran).toEqual({ command: 'cmd.exe', arguments: ['/c', 'exit', '0'], username: OPS.username });
    expectOneShellLifecycle(fake);
    const authenticated = fake.requests.filter((r) => r.action !== undefined);
    expect(authenticated.every((r) => r.username === OPS.username)).toBe(true);
    expect(authenticated[0]?.authScheme).toMatch(/^(NTLM|Negotiate)$/);
    expect(fake.shells()).toEqual([]);
  });

  it('login.probe — Basic carries exactly the given login when the adapter is configured for it', async () => {
    const { login, server, fake } = await setup({ auth: 'basic' });
    expect(await login.probe(server, OPS)).toEqual({ ok: true });
    const authenticated = fake.requests.filter((r) => r.action !== undefined);
    expect(authenticated.length).toBeGreaterThan(0);
    expect(authenticated.every((r) => r.authScheme === 'Basic' && r.username === OPS.username)).toBe(true);
  });

  it('login.probe — a domain login in DOMAIN\\user form is proven with its domain', async () => {
    const { login, server } = await setup({}, { users: [{ ...OPS, domain: 'CORP' }] });
    expect(await login.probe(server, { username: `CORP\\${OPS.username}`, password: OPS.password })).toEqual({
      ok: true,
    });
    expect(
      await login.probe(server, { username: `OTHER\\${OPS.username}`, password: OPS.password }),
    ).toMatchObject({ ok: false, refused: true });
  });

  it('login.probe — a wrong password is refused, reported without the password, not thrown', async () => {
    for (const auth of ['ntlm', 'basic'] as const) {
      const { login, server, fake } = await setup({ auth });
      const wrong = 'Wrong-Probe-Sentinel-8';
      const result = await login.probe(server, { username: OPS.username, password: wrong });
      expect(result).toMatchObject({ ok: false, refused: true });
      expect(JSON.stringify(result)).not.toContain(wrong);
      expect(actions(fake)).toEqual([]);
      await fake.close();
    }
  });

  it('login.probe — an expired password is refused, and the message says it may have expired', async () => {
    const { login, server, fake } = await setup();
    expect(await login.probe(server, OPS)).toEqual({ ok: true });
    fake.faults.expirePassword(OPS.username);
    const result = await login.probe(server, OPS);
    expect(result).toMatchObject({ ok: false, refused: true });
    expect(result.ok ? '' : result.message).toMatch(/expired/);
  });

  it('login.probe — a pin that does not match throws HostKeyMismatchError and sends nothing', async () => {
    const { login, server, fake } = await setup({ ca: undefined, certificateFingerprint: 'AB'.repeat(32) });
    await expect(login.probe(server, OPS)).rejects.toBeInstanceOf(HostKeyMismatchError);
    expect(fake.requests).toEqual([]);
  });

  it('login.probe — certificateFingerprintFor pins per server, as for exec', async () => {
    const { login, server, fake } = await setup({
      ca: undefined,
      certificateFingerprint: 'AB'.repeat(32),
      certificateFingerprintFor: async () => fake?.certificateFingerprint,
    });
    expect(await login.probe(server, OPS)).toEqual({ ok: true });
    expect(fake.requests.length).toBeGreaterThan(0);
  });

  it('login.probe — an untrusted certificate proves nothing: refused is false and nothing is sent', async () => {
    const { login, server, fake } = await setup({ ca: undefined });
    const result = await login.probe(server, OPS);
    expect(result).toMatchObject({ ok: false, refused: false });
    expect(result.ok ? '' : result.message).toMatch(/not trusted/);
    expect(fake.requests).toEqual([]);
  });

  it('login.probe — an unreachable port is not proof of anything: refused is false', async () => {
    const { login, server } = await setup();
    const result = await login.probe({ ...server, port: await closedPort() }, OPS);
    expect(result).toMatchObject({ ok: false, refused: false });
  });

  it('login.probe — a host that never answers times out as not refused', async () => {
    const { login, server } = await setup();
    const result = await login.probe({ ...server, port: await silentPort() }, OPS, { timeoutMs: 300 });
    expect(result).toMatchObject({ ok: false, refused: false });
  });

  it('login.probe — a login that cannot run the command is not counted as proven', async () => {
    const { login, server, fake } = await setup(
      {},
      { run: () => ({ exitCode: 5, stderr: 'Access is denied.\r\n' }) },
    );
    const result = await login.probe(server, OPS);
    expect(result).toMatchObject({ ok: false, refused: false });
    expect(result.ok ? '' : result.message).toContain('exited with 5');
    expect(fake.shells()).toEqual([]);
  });

  it('login.probe — a private key is not tried: WinRM logs in with passwords', async () => {
    const { login, server, fake } = await setup();
    const result = await login.probe(server, { username: OPS.username, privateKey: 'not a key for WinRM' });
    expect(result).toMatchObject({ ok: false, refused: false });
    expect(result.ok ? '' : result.message).toMatch(/WinRM logs in with passwords/);
    expect(fake.requests).toEqual([]);
  });

  it('login.probe — a key and a password at once, or an empty password, is a ValidationError', async () => {
    const { login, server, fake } = await setup();
    const both = { username: OPS.username, password: OPS.password, privateKey: 'key' };
    await expect(login.probe(server, both)).rejects.toBeInstanceOf(ValidationError);
    await expect(login.probe(server, { username: OPS.username, password: '' })).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(fake.requests).toEqual([]);
  });

  it('login.probe — sudo has no meaning on WinRM and changes nothing', async () => {
    const { login, server, fake } = await setup();
    expect(await login.probe(server, OPS, { sudo: true })).toEqual({ ok: true });
    expectOneShellLifecycle(fake);
  });

  it('login.probe — never reuses a pooled connection, even for the login the pool holds', async () => {
    const { exec, login, server, fake } = await setup();
    await exec.exec(server, { argv: ['whoami'] }).catch(() => undefined);
    const pooled = connectionsOf(fake);
    expect(pooled.size).toBe(1);
    const from = fake.requests.length;
    expect(await login.probe(server, ADMIN)).toEqual({ ok: true });
    const probe = fake.requests.slice(from);
    // Its own connection, with its own NTLM handshake: no request rode on the pool's authentication.
    expect([...connectionsOf(fake, from)].some((c) => pooled.has(c))).toBe(false);
    expect(probe.find((r) => r.action === 'Create')?.authScheme).toMatch(/^(NTLM|Negotiate)$/);
  });

  it('login.probe — leaves the pool holding no connection of the probed login', async () => {
    const { exec, login, server, fake } = await setup();
    await exec.exec(server, { argv: ['whoami'] }).catch(() => undefined);
    const pooled = [...connectionsOf(fake)];
    const from = fake.requests.length;
    expect(await login.probe(server, ADMIN)).toEqual({ ok: true });
    const probed = [...connectionsOf(fake, from)];
    const after = fake.requests.length;
    // Two commands at once take every idle connection the pool holds for this login: the pooled
    // one, and the probe's had it been kept; a second connection must be new instead.
    await Promise.all([1, 2].map(() => exec.exec(server, { argv: ['whoami'] }).catch(() => undefined)));
    const used = [...connectionsOf(fake, after)];
    expect(used.filter((c) => probed.includes(c))).toEqual([]);
    expect(used.filter((c) => pooled.includes(c))).toEqual(pooled);
    expect(used.length).toBe(2);
  });
});
