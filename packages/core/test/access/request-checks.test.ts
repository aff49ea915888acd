import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AccessGrant,
  type Adapter,
  AuthorizationError,
  type Command,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type ExecResult,
  type Fleet,
  type FleetOptions,
  generateEd25519KeyPair,
  MemorySecretStore,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { sweepAccess } from '../../src/access/api.js';
import { loginLookupCommand } from '../../src/access/grants.js';

// Issue 13: "an access request for a login that does not exist is accepted; approving it fails on
// the server but the request shows `approved`." Requests of mode ssh-key and ssh-cert are checked
// against their servers before they are stored, and a grant that did not take effect everywhere
// reads so on the grant and on its request. The login lookup runs for real on this machine (the
// local transport); `authorized_keys` lives on fake hosts that answer Fleetward's own commands, so
// nothing here edits a real file. The same promises on real sshd hosts: adapter-ssh's
// access-checks-lab.test.ts.

const T = 'acme';
const KEY = generateEd25519KeyPair('carol@laptop').publicKey;
/** A login no machine has. */
const NO_SUCH_LOGIN = `fwnosuch${randomBytes(4).toString('hex')}`;

const summary = (text: string) => ({
  text,
  bytes: Buffer.byteLength(text),
  sha256: createHash('sha256').update(text).digest('hex'),
  truncated: false,
});
const result = (exitCode: number, stdout = '', stderr = ''): ExecResult => ({
  exitCode,
  signal: null,
  stdout: summary(stdout),
  stderr: summary(stderr),
  durationMs: 1,
});
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * Hosts that answer the commands Fleetward sends for grants — `getent passwd`, the sshd version,
 * reading and (compare-and-swap) writing a login's `authorized_keys` — from memory. A host that is
 * `down` refuses connections as the SSH adapter does.
 */
class FakeHosts {
  readonly hosts = new Map<string, { logins: Set<string>; keys: Map<string, string>; down: boolean }>();
  readonly commands: { serverId: string; command: Command }[] = [];

  add(serverId: string, logins: string[]) {
    this.hosts.set(serverId, { logins: new Set(logins), keys: new Map(), down: false });
  }

  host(serverId: string) {
    return this.hosts.get(serverId)!;
  }

  readonly adapter: Adapter = {
    name: 'fake',
    exec: {
      exec: async (server, command) => {
        this.commands.push({ serverId: server.id, command });
        const host = this.host(server.id);
        if (host.down) throw new TransportError(`connect ECONNREFUSED ${server.address}:22`);
        if ('interpreter' in command) return result(0, '', 'OpenSSH_9.6p1 Debian-3, OpenSSL 3.0.11\n');
        const [program, , , name, login = '', expected] = command.argv;
        if (program === 'getent') {
          return host.logins.has(command.argv[3]!)
            ? result(0, `${command.argv[3]}:x:1000:1000::/home:/bin/sh\n`)
            : result(2);
        }
        if (!host.logins.has(login)) return result(67, '', `no such user: ${login}`);
        const current = host.keys.get(login);
        const path = `/home/${login}/.ssh/authorized_keys`;
        if (name === 'fleetward-read-keys') {
          return result(
            0,
            current === undefined ? `${path}\nabsent\n` : `${path}\n${sha(current)}\n${current}`,
          );
        }
        if (name === 'fleetward-write-keys') {
          if ((current === undefined ? 'absent' : sha(current)) !== expected) return result(75);
          const text = 'stdin' in command ? (command.stdin ?? '') : '';
          host.keys.set(login, text);
          return result(0, `${sha(text)}\n`);
        }
        return result(127, '', `unexpected command ${name}`);
      },
    },
  };
}

const fleets: Fleet[] = [];
afterEach(async () => {
  for (const f of fleets.splice(0)) await f.close();
});

interface Setup {
  fleet: Fleet;
  clock: ManualClock;
  hosts: FakeHosts;
  /** Every command the local transport was asked to run, by server. */
  local: { serverId: string; command: Command }[];
}

async function setup(options: Partial<FleetOptions> = {}): Promise<Setup> {
  const clock = new ManualClock('2026-05-01T09:00:00.000Z');
  const hosts = new FakeHosts();
  const inner = createLocalAdapter();
  const local: Setup['local'] = [];
  const recordingLocal: Adapter = {
    ...inner,
    exec: {
      exec(server, command, execOptions) {
        local.push({ serverId: server.id, command });
        return inner.exec!.exec(server, command, execOptions);
      },
    },
  };
  const fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [recordingLocal, hosts.adapter, ...(options.adapters ?? [])],
    clock,
    ...(options.secrets ? { secrets: options.secrets } : {}),
    ...(options.access ? { access: options.access } : {}),
  });
  fleets.push(fleet);
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  for (const id of ['bob', 'carol']) {
    await fleet.store.principals.create({
      tenantId: T,
      id,
      name: id,
      kind: 'human',
      affiliation: 'employee',
    });
  }
  await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  for (const id of ['here-1', 'here-2']) {
    await alice.servers.add({ id, name: id, accountId: 'dc', provider: 'local' });
  }
  for (const id of ['web-1', 'web-2']) {
    hosts.add(id, ['deploy']);
    await alice.servers.add({
      id,
      name: id,
      accountId: 'dc',
      provider: 'ssh',
      adapter: 'fake',
      address: `10.250.0.${id.at(-1)}`,
    });
  }
  return { fleet, clock, hosts, local };
}

const sshRequest = (serverIds: string[], login: string) => ({
  servers: { serverIds },
  login,
  publicKey: KEY,
  durationMinutes: 60,
  reason: 'read the logs of the failing deploy',
  ticket: 'INC-4711',
});

const as = (s: Setup, principalId: string) => s.fleet.as({ tenantId: T, principalId });

async function refusal(s: Setup) {
  const records = await s.fleet.store.audit.list(T, { action: 'access.request' });
  return records.at(-1)!;
}

describe('access.request — checked against its servers', () => {
  it('request — a login missing on the servers is a ValidationError naming every server; audited as refused, nothing stored', async () => {
    const s = await setup();
    s.hosts.host('web-2').logins.delete('deploy');
    const error = await as(s, 'alice')
      .access.request(sshRequest(['here-1', 'here-2', 'web-1', 'web-2'], 'deploy'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    const issues = (error as ValidationError).issues;
    // This machine has no `deploy` either: here-1 and here-2 answered for real.
    expect(issues).toEqual([
      expect.objectContaining({ path: ['login'], message: 'deploy does not exist on here-1; here-2; web-2' }),
    ]);
    expect((error as ValidationError).details['servers']).toEqual(
      ['here-1', 'here-2', 'web-2'].map((serverId) =>
        expect.objectContaining({ serverId, problem: 'no-such-login', code: 'NOT_FOUND' }),
      ),
    );
    expect(await s.fleet.store.accessRequests.listAll(T)).toEqual([]);
    expect(await s.fleet.store.outbox.listAll(T)).toEqual([]);
    const record = await refusal(s);
    expect(record).toMatchObject({
      decision: 'allow',
      result: 'failure',
      actor: { principalId: 'alice' },
      ticket: 'INC-4711',
      details: { code: 'VALIDATION_FAILED', login: 'deploy', checked: 4, refused: 3 },
    });
    expect(record.reason).toContain('deploy does not exist on here-1; here-2; web-2');

    // The same servers, a login they all have: stored, pending.
    s.hosts.host('web-2').logins.add('root');
    s.hosts.host('web-1').logins.add('root');
    const request = await as(s, 'alice').access.request(
      sshRequest(['here-1', 'here-2', 'web-1', 'web-2'], 'root'),
    );
    expect(request.status).toBe('pending');
    expect(await s.fleet.store.accessRequests.listAll(T)).toHaveLength(1);
  });

  it('request — a server that cannot be reached is a TransportError naming it and why; a missing login elsewhere makes it a ValidationError naming both', async () => {
    const s = await setup();
    s.hosts.host('web-2').down = true;
    const error = await as(s, 'alice')
      .access.request(sshRequest(['web-1', 'web-2'], 'deploy'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).retryable).toBe(true);
    expect((error as Error).message).toBe(
      'cannot check 1 of 2 server(s) for login deploy, so the request was not stored: web-2 (TRANSPORT_FAILED): connect ECONNREFUSED 10.250.0.2:22',
    );
    expect(await s.fleet.store.accessRequests.listAll(T)).toEqual([]);
    expect(await refusal(s)).toMatchObject({
      result: 'failure',
      details: {
        code: 'TRANSPORT_FAILED',
        refusedBy: [{ serverId: 'web-2', problem: 'unreachable', code: 'TRANSPORT_FAILED' }],
      },
    });

    s.hosts.host('web-1').logins.delete('deploy');
    const both = await as(s, 'alice')
      .access.request(sshRequest(['web-1', 'web-2'], 'deploy'))
      .catch((e: unknown) => e);
    expect(both).toBeInstanceOf(ValidationError);
    expect((both as ValidationError).issues.map((i) => [i.path, i.message])).toEqual([
      [['login'], 'deploy does not exist on web-1'],
      [['servers'], 'could not be asked: web-2 (TRANSPORT_FAILED): connect ECONNREFUSED 10.250.0.2:22'],
    ]);
    expect(await s.fleet.store.accessRequests.listAll(T)).toEqual([]);
  });

  it('request — a server that does not answer within checkServers.timeoutMs refuses it as TIMEOUT, and the adapter is told to stop', async () => {
    const signals: AbortSignal[] = [];
    // Never answers and ignores its signal: the check must not wait for it.
    const hung: Adapter = {
      name: 'hung',
      exec: {
        exec: (_server, _command, options) => {
          if (options?.signal) signals.push(options.signal);
          return new Promise(() => {});
        },
      },
    };
    const s = await setup({ adapters: [hung], access: { checkServers: { timeoutMs: 200 } } });
    await as(s, 'alice').servers.add({
      id: 'hung-1',
      name: 'hung-1',
      accountId: 'dc',
      provider: 'ssh',
      adapter: 'hung',
    });
    const error = await as(s, 'alice')
      .access.request(sshRequest(['web-1', 'hung-1'], 'deploy'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).details['servers']).toEqual([
      { serverId: 'hung-1', problem: 'unreachable', code: 'TIMEOUT', message: 'no answer within 200 ms' },
    ]);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(true);
    expect(await s.fleet.store.accessRequests.listAll(T)).toEqual([]);
  });

  it('request — servers are asked concurrently, never more than checkServers.concurrency at a time', async () => {
    let running = 0;
    let most = 0;
    const counting: Adapter = {
      name: 'counting',
      exec: {
        async exec() {
          running++;
          most = Math.max(most, running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
          return result(0, 'deploy:x:1000:1000::/home/deploy:/bin/sh\n');
        },
      },
    };
    const s = await setup({ adapters: [counting], access: { checkServers: { concurrency: 3 } } });
    const ids = Array.from({ length: 9 }, (_, i) => `c-${i}`);
    for (const id of ids) {
      await as(s, 'alice').servers.add({
        id,
        name: id,
        accountId: 'dc',
        provider: 'ssh',
        adapter: 'counting',
      });
    }
    const request = await as(s, 'alice').access.request(sshRequest(ids, 'deploy'));
    expect(request.serverIds).toEqual(ids);
    expect(most).toBe(3);
  });

  it('request — the lookup is argv with the login after "--", as root; hostile logins are refused before any server is asked', async () => {
    const s = await setup();
    await as(s, 'alice').access.request(sshRequest(['web-1'], 'deploy'));
    expect(s.hosts.commands).toEqual([
      { serverId: 'web-1', command: { argv: ['getent', 'passwd', '--', 'deploy'], sudo: true } },
    ]);

    const hostile = ['root; touch /tmp/x', '$(id)', '`id`', '-h', '--', 'a b', 'root\nx', "ro'ot", '../etc'];
    for (const login of hostile) {
      const error = await as(s, 'alice')
        .access.request(sshRequest(['here-1', 'web-1'], login))
        .catch((e: unknown) => e);
      expect(error, login).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths, login).toEqual(['login']);
      expect(() => loginLookupCommand(login), login).toThrow(ValidationError);
    }
    expect(s.hosts.commands).toHaveLength(1);
    expect(s.local).toEqual([]);

    // Should one ever get past the schema, in the lookup's place it is one argument: getent gets
    // the text as a name, and no shell ever sees it.
    const marker = join(tmpdir(), `fleetward-pwned-${randomBytes(6).toString('hex')}`);
    const shaped = loginLookupCommand('root') as { argv: string[]; sudo: boolean };
    const local = createLocalAdapter();
    for (const login of [`$(touch ${marker})`, `x; touch ${marker}`, `\`touch ${marker}\``]) {
      const out = await local.exec!.exec({ id: 'l', name: 'l', tenantId: T } as never, {
        ...shaped,
        argv: [...shaped.argv.slice(0, -1), login],
      });
      expect(out.exitCode, login).toBe(2);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it('request — no server is asked for mode actions, with checkServers: false, or for a requester who may not ask', async () => {
    const s = await setup({ access: { checkServers: false } });
    const unchecked = await as(s, 'alice').access.request(sshRequest(['web-1', 'here-1'], NO_SUCH_LOGIN));
    expect(unchecked.status).toBe('pending');
    await as(s, 'alice').access.request({
      servers: { serverIds: ['web-1'] },
      mode: 'actions',
      actions: ['patch.scan'],
      durationMinutes: 30,
      reason: 'scan the web tier for the audit',
      ticket: 'INC-4712',
    });
    const checked = await setup();
    await expect(
      as(checked, 'carol').access.request(sshRequest(['web-1', 'here-1'], 'deploy')),
    ).rejects.toBeInstanceOf(AuthorizationError);
    expect([...s.hosts.commands, ...s.local, ...checked.hosts.commands, ...checked.local]).toEqual([]);
  });
});

/** Requests as alice (checked against live servers), approves as bob. */
async function approved(s: Setup, serverIds: string[], extra: object = {}) {
  const request = await as(s, 'alice').access.request({ ...sshRequest(serverIds, 'deploy'), ...extra });
  return as(s, 'bob').access.approve(request.id);
}

const states = (grant: AccessGrant) => grant.targets.map((t) => [t.serverId, t.state, t.error?.code]);

describe('access.approve — a grant not in effect reads failed', () => {
  it('approve — a server down at approval: grant failed, request install-failed in every list; a sweep that installs it makes both whole again', async () => {
    const s = await setup();
    const request = await as(s, 'alice').access.request(sshRequest(['web-1', 'web-2'], 'deploy'));
    s.hosts.host('web-1').down = true;
    s.hosts.host('web-2').down = true;
    const outcome = await as(s, 'bob').access.approve(request.id);
    expect(outcome.request.status).toBe('install-failed');
    expect(outcome.grant).toMatchObject({ status: 'active', installation: 'failed' });
    expect(states(outcome.grant!)).toEqual([
      ['web-1', 'failed', 'TRANSPORT_FAILED'],
      ['web-2', 'failed', 'TRANSPORT_FAILED'],
    ]);
    const bob = as(s, 'bob');
    expect((await bob.access.listRequests({ status: 'install-failed' })).map((r) => r.id)).toEqual([
      request.id,
    ]);
    expect(await bob.access.listRequests({ status: 'approved' })).toEqual([]);
    expect((await as(s, 'alice').access.getRequest(request.id)).status).toBe('install-failed');
    expect((await bob.access.getGrant(outcome.grant!.id)).installation).toBe('failed');

    // One server back: the sweep installs there; the other still is not.
    s.hosts.host('web-1').down = false;
    const first = await sweepAccess(s.fleet, T);
    expect(first).toMatchObject({ installed: 1, failures: [expect.objectContaining({ serverId: 'web-2' })] });
    const partial = await bob.access.getGrant(outcome.grant!.id);
    expect(partial.installation).toBe('partial');
    expect(states(partial)).toEqual([
      ['web-1', 'installed', undefined],
      ['web-2', 'failed', 'TRANSPORT_FAILED'],
    ]);
    expect((await bob.access.getRequest(request.id)).status).toBe('install-failed');
    expect(s.hosts.host('web-1').keys.get('deploy')).toContain(`fleetward:grant=${outcome.grant!.id}`);

    s.hosts.host('web-2').down = false;
    expect((await sweepAccess(s.fleet, T)).installed).toBe(1);
    expect(await bob.access.getGrant(outcome.grant!.id)).toMatchObject({ installation: 'installed' });
    expect((await bob.access.getRequest(request.id)).status).toBe('approved');

    // At its end the request ends like any other; the grant keeps what its installation was.
    s.clock.advance(61 * 60_000);
    await sweepAccess(s.fleet, T);
    expect((await bob.access.getRequest(request.id)).status).toBe('ended');
    expect(await bob.access.getGrant(outcome.grant!.id)).toMatchObject({
      status: 'expired',
      installation: 'installed',
      cleanedUp: true,
    });
  });

  it('approve — webhooks: access.install-failed when the grant did not take effect, with each server; access.installed once a sweep put it everywhere', async () => {
    const s = await setup({ secrets: new MemorySecretStore() });
    await as(s, 'alice').notify.webhooks.add({
      url: 'https://hooks.example.internal/in',
      events: ['access.*'],
    });
    const request = await as(s, 'alice').access.request(sshRequest(['web-1', 'web-2'], 'deploy'));
    s.hosts.host('web-2').down = true;
    const { grant } = await as(s, 'bob').access.approve(request.id);
    const messages = async () =>
      (await s.fleet.store.outbox.listAll(T)).filter((m) => m.eventType.startsWith('access.install'));
    const failed = await messages();
    expect(failed.map((m) => m.eventType)).toEqual(['access.install-failed']);
    expect(failed[0]!.payload).toMatchObject({
      requestId: request.id,
      grantId: grant!.id,
      installation: 'partial',
      servers: [
        { serverId: 'web-1', state: 'installed' },
        { serverId: 'web-2', state: 'failed', error: { code: 'TRANSPORT_FAILED' } },
      ],
    });
    s.hosts.host('web-2').down = false;
    await sweepAccess(s.fleet, T);
    expect((await messages()).map((m) => m.eventType).sort()).toEqual([
      'access.install-failed',
      'access.installed',
    ]);
    // A sweep with nothing to change announces nothing again.
    await sweepAccess(s.fleet, T);
    expect(await messages()).toHaveLength(2);
  });

  it('approve — a login gone since the request: partial, not retried by the sweep, audited; the request ends install-failed → ended', async () => {
    const s = await setup();
    const request = await as(s, 'alice').access.request(sshRequest(['web-1', 'web-2'], 'deploy'));
    s.hosts.host('web-2').logins.delete('deploy');
    const { request: after, grant } = await as(s, 'bob').access.approve(request.id);
    expect(after.status).toBe('install-failed');
    expect(grant!.installation).toBe('partial');
    expect(states(grant!)).toEqual([
      ['web-1', 'installed', undefined],
      ['web-2', 'failed', 'NOT_FOUND'],
    ]);
    const installs = await s.fleet.store.audit.list(T, { action: 'access.grant.install' });
    // The servers are installed concurrently: their records come in either order.
    expect(installs.map((r) => [r.target?.id, r.result]).sort()).toEqual([
      ['web-1', 'success'],
      ['web-2', 'failure'],
    ]);
    // Not a server that was down: the sweep leaves it failed.
    await sweepAccess(s.fleet, T);
    expect(await s.fleet.store.audit.list(T, { action: 'access.grant.install' })).toHaveLength(2);
    expect((await s.fleet.store.accessGrants.require(T, grant!.id)).installation).toBe('partial');
    expect((await s.fleet.store.accessRequests.require(T, request.id)).status).toBe('install-failed');
    s.clock.advance(61 * 60_000);
    await sweepAccess(s.fleet, T);
    expect((await s.fleet.store.accessRequests.require(T, request.id)).status).toBe('ended');
  });

  it('approve — installed everywhere: installed and approved; a scheduled grant is pending until it starts; an actions grant is installed', async () => {
    const s = await setup();
    const now = await approved(s, ['web-1', 'web-2']);
    expect(now.request.status).toBe('approved');
    expect(now.grant).toMatchObject({ installation: 'installed' });

    const later = await approved(s, ['web-1'], { startAt: '2026-05-01T12:00:00.000Z' });
    expect(later.request.status).toBe('approved');
    expect(later.grant).toMatchObject({ status: 'scheduled', installation: 'pending' });
    s.clock.set('2026-05-01T12:00:30.000Z');
    await sweepAccess(s.fleet, T);
    expect((await s.fleet.store.accessGrants.require(T, later.grant!.id)).installation).toBe('installed');

    const actions = await as(s, 'alice').access.request({
      servers: { serverIds: ['web-1'] },
      mode: 'actions',
      actions: ['patch.scan'],
      durationMinutes: 30,
      reason: 'scan the web tier for the audit',
      ticket: 'INC-4712',
    });
    const decided = await as(s, 'bob').access.approve(actions.id);
    expect(decided.request.status).toBe('approved');
    expect(decided.grant!.installation).toBe('installed');
  });

  it('ssh-cert — a certificate that cannot be signed: targets pending with the error, grant failed, request install-failed; the next sweep signs and installs', async () => {
    const inner = new MemorySecretStore();
    let broken = false;
    const secrets = new Proxy(inner, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (broken) throw new Error('the vault is sealed');
          return value.apply(target, args);
        };
      },
    });
    const s = await setup({ secrets });
    const request = await as(s, 'alice').access.request({
      ...sshRequest(['web-1'], 'deploy'),
      mode: 'ssh-cert',
    });
    broken = true;
    const { request: after, grant } = await as(s, 'bob').access.approve(request.id);
    expect(after.status).toBe('install-failed');
    expect(grant).toMatchObject({ installation: 'failed' });
    expect(grant!.certificate).toBeUndefined();
    expect(grant!.targets).toEqual([
      {
        serverId: 'web-1',
        state: 'pending',
        error: { code: 'INTERNAL', message: expect.stringContaining('the certificate could not be signed') },
      },
    ]);
    expect(s.hosts.host('web-1').keys.get('deploy')).toBeUndefined();

    broken = false;
    expect((await sweepAccess(s.fleet, T)).installed).toBe(1);
    const healed = await s.fleet.store.accessGrants.require(T, grant!.id);
    expect(healed).toMatchObject({
      installation: 'installed',
      certificate: expect.stringMatching(/-cert-v01@openssh\.com /),
    });
    expect(healed.targets[0]!.error).toBeUndefined();
    expect((await s.fleet.store.accessRequests.require(T, request.id)).status).toBe('approved');
    expect(s.hosts.host('web-1').keys.get('deploy')).toContain('cert-authority,principals="deploy"');
  });
});
