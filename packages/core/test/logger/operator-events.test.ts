import {
  type Adapter,
  createAccessSweeper,
  createDispatcher,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  createScanScheduler,
  type Fleet,
  generateEd25519KeyPair,
  HostKeyMismatchError,
  MemorySecretStore,
  type Store,
  StoreError,
  TransportError,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createScheduleApi } from '../../src/schedule/api.js';
import { kernelFixture } from '../kernel-support.js';
import { fakeAdapter, fakeDriver, fakeHost } from '../patch/support/fake-host.js';
import { type CapturingLogger, capturingLogger } from './capture.js';

// What an operator sees through `createFleet({ logger })`: each workflow is run for real (memory
// store, fake or local adapters) with a logger that keeps its records, and the records are read
// back: job lifecycle with summaries, failing servers, a taken-over run, the outbox, the scheduler
// and the sweeper.

const T = 'acme';
const fleets: Fleet[] = [];
afterEach(async () => {
  for (const fleet of fleets.splice(0)) await fleet.close();
});

async function fleetWith(
  logger: CapturingLogger,
  options: { adapters: Adapter[]; servers: string[]; store?: Store; clock?: ManualClock; drivers?: boolean },
): Promise<Fleet> {
  const fleet = createFleet({
    store: options.store ?? createMemoryStore(options.clock ? { clock: options.clock } : {}),
    adapters: options.adapters,
    secrets: new MemorySecretStore(),
    logger,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.drivers ? { drivers: [fakeDriver] } : {}),
  });
  fleets.push(fleet);
  await fleet.ensureTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  for (const id of options.servers) {
    if (await fleet.store.servers.get(T, id)) continue;
    await alice.servers.add({
      id,
      name: id,
      accountId: 'dc',
      provider: 'ssh',
      adapter: options.adapters[0]!.name,
    });
  }
  return fleet;
}

describe('operator log — job lifecycle and failing servers', () => {
  it('scan — started and finished with its summary; an unreachable server warns, a changed host key is an error', async () => {
    const logger = capturingLogger();
    const hosts = { s1: fakeHost(), s2: fakeHost(), s3: fakeHost() };
    const adapter = fakeAdapter({
      hosts,
      before: (server) => {
        if (server.id === 's2') throw new TransportError('connect ECONNREFUSED 10.0.0.2:22');
        if (server.id === 's3') throw new HostKeyMismatchError('host key of s3 is not the pinned one');
      },
    });
    const fleet = await fleetWith(logger, { adapters: [adapter], servers: ['s1', 's2', 's3'] });
    const { job } = await fleet
      .as({ tenantId: T, principalId: 'alice' })
      .scan({ selector: { all: true } }, { concurrency: 1 });

    const bound = { tenantId: T, jobId: job.id, kind: 'scan' };
    expect(logger.find('scan started')).toEqual([
      { level: 'info', msg: 'scan started', fields: expect.objectContaining({ ...bound, servers: 3 }) },
    ]);
    expect(logger.find('server failed')).toEqual([
      {
        level: 'warn',
        msg: 'server failed',
        fields: expect.objectContaining({ ...bound, serverId: 's2', code: 'TRANSPORT_FAILED' }),
      },
    ]);
    expect(logger.find('server host key changed')).toEqual([
      {
        level: 'error',
        msg: 'server host key changed',
        fields: expect.objectContaining({ ...bound, serverId: 's3', code: 'HOST_KEY_MISMATCH' }),
      },
    ]);
    expect(logger.find('scan finished')).toEqual([
      {
        level: 'warn',
        msg: 'scan finished',
        fields: expect.objectContaining({
          ...bound,
          status: 'partial',
          total: 3,
          succeeded: 1,
          failed: 2,
          durationMs: expect.any(Number),
        }),
      },
    ]);
  });

  it('patch.executePlan — started and finished with its counts; a failing server names its step and code', async () => {
    const logger = capturingLogger();
    const hosts = { s1: fakeHost(), s2: { ...fakeHost(), freeRootKiB: 1024 } };
    const fleet = await fleetWith(logger, {
      adapters: [fakeAdapter({ hosts })],
      servers: ['s1', 's2'],
      drivers: true,
    });
    await fleet.store.principals.create({
      tenantId: T,
      id: 'bob',
      name: 'Bob',
      kind: 'human',
      affiliation: 'employee',
    });
    await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const bob = fleet.as({ tenantId: T, principalId: 'bob' });
    await alice.projects.add({ id: 'p', name: 'P', selector: { all: true } });
    await alice.patch.policies.add({
      id: 'pol',
      name: 'Policy',
      projectId: 'p',
      categories: ['security', 'other'],
      rollout: { waves: [], maxConcurrency: 1, errorBudget: { count: 10 }, onBudgetSpent: 'stop' },
    } as never);
    await alice.scan({ projectId: 'p' });
    const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    logger.records.length = 0;

    const job = await bob.patch.executePlan(plan.id);
    expect(job.status).toBe('partial');
    const bound = { tenantId: T, jobId: job.id, kind: 'patch', planId: plan.id };
    expect(logger.find('patch run started')).toEqual([
      {
        level: 'info',
        msg: 'patch run started',
        fields: expect.objectContaining({ ...bound, servers: 2, resumed: false }),
      },
    ]);
    expect(logger.find('server failed')).toEqual([
      {
        level: 'warn',
        msg: 'server failed',
        fields: expect.objectContaining({
          tenantId: T,
          jobId: job.id,
          serverId: 's2',
          code: 'COMMAND_FAILED',
          step: 'preflight',
          error: expect.stringContaining('MiB free on /'),
        }),
      },
    ]);
    expect(logger.find('patch run finished')).toEqual([
      {
        level: 'warn',
        msg: 'patch run finished',
        fields: expect.objectContaining({ ...bound, status: 'partial', total: 2, succeeded: 1, failed: 1 }),
      },
    ]);
  });

  it('scripts.runScript — started and finished; a failing server gives its exit code, never the output', async () => {
    const logger = capturingLogger();
    const fleet = await fleetWith(logger, { adapters: [createLocalAdapter()], servers: ['s01', 's02'] });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.scripts.add({
      name: 'check',
      interpreter: 'sh',
      body: 'echo "OUTPUT-MARK-$FLEETWARD_SERVER_ID"; echo "ERR-MARK" >&2\n[ "$FLEETWARD_SERVER_ID" = s02 ] && exit 3\nexit 0\n',
    });
    const results = await alice.scripts.runScript({
      script: 'check',
      targets: { serverIds: ['s01', 's02'] },
      rollout: { maxConcurrency: 1, errorBudget: { count: 1 } },
    });
    expect(results.run.status).toBe('partial');
    const jobId = results.job!.id;
    const bound = { tenantId: T, jobId, kind: 'script', runId: results.run.id, script: 'check' };
    expect(logger.find('script run started')).toEqual([
      { level: 'info', msg: 'script run started', fields: expect.objectContaining({ ...bound, servers: 2 }) },
    ]);
    expect(logger.find('server failed')).toEqual([
      {
        level: 'warn',
        msg: 'server failed',
        fields: expect.objectContaining({ jobId, serverId: 's02', code: 'COMMAND_FAILED', exitCode: 3 }),
      },
    ]);
    expect(logger.find('script run finished')).toEqual([
      {
        level: 'warn',
        msg: 'script run finished',
        fields: expect.objectContaining({ ...bound, status: 'partial', succeeded: 1, failed: 1 }),
      },
    ]);
    expect(logger.text()).not.toContain('OUTPUT-MARK');
    expect(logger.text()).not.toContain('ERR-MARK');
  });

  it('keys.rotate — a rotation that cannot add the new key ends in a warning naming the credential', async () => {
    const logger = capturingLogger();
    const broken: Adapter = {
      name: 'broken',
      exec: {
        async exec(server) {
          throw new TransportError(`connection to ${server.name} reset`);
        },
      },
      login: {
        async probe() {
          return { ok: false, refused: false, message: 'unreachable' };
        },
      },
    };
    const fleet = await fleetWith(logger, { adapters: [broken], servers: ['s1'] });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const pair = generateEd25519KeyPair('managed');
    const credential = await alice.keys.register({
      login: 'deploy',
      publicKey: pair.publicKey,
      privateKey: pair.privateKey,
      caretakerId: 'alice',
      serverIds: ['s1'],
    });
    await alice.keys.rotate(credential.id).catch(() => undefined);
    const job = (await fleet.store.jobs.listAll(T, { where: { kind: 'key-rotation' } }))[0]!;
    expect(logger.find('key rotation finished')).toEqual([
      {
        level: 'warn',
        msg: 'key rotation finished',
        fields: expect.objectContaining({
          tenantId: T,
          jobId: job.id,
          kind: 'key-rotation',
          credentialId: credential.id,
          status: 'failed',
        }),
      },
    ]);
    expect(logger.find('key rotation started')).toEqual([
      {
        level: 'info',
        msg: 'key rotation started',
        fields: expect.objectContaining({ jobId: job.id, kind: 'key-rotation', credentialId: credential.id }),
      },
    ]);
    expect(logger.text()).not.toContain(pair.privateKey.split('\n')[1]!);
  });
});

describe('operator log — a run taken over from a dead process', () => {
  const LOST = 'run lease lost: this process starts no further server of the run';

  it('resumeRun — the process that lost the lease warns, and the one that takes the run over says so', async () => {
    const clock = new ManualClock('2026-05-01T00:00:00.000Z');
    const store = createMemoryStore({ clock });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const local = createLocalAdapter();
    // The first process's script on s01 never ends by itself: that process is "hung".
    const hanging: Adapter = {
      name: 'local',
      exec: {
        async exec(server, command, options) {
          if (server.id === 's01') await held;
          return local.exec!.exec(server, command, options);
        },
      },
    };
    const first = capturingLogger();
    const a = await fleetWith(first, { adapters: [hanging], servers: ['s01', 's02'], store, clock });
    const second = capturingLogger();
    const b = await fleetWith(second, { adapters: [local], servers: ['s01', 's02'], store, clock });
    await a
      .as({ tenantId: T, principalId: 'alice' })
      .scripts.add({ name: 'ok', interpreter: 'sh', body: 'true\n' });
    const plan = await a.as({ tenantId: T, principalId: 'alice' }).scripts.planRun({
      script: 'ok',
      targets: { serverIds: ['s01', 's02'] },
      rollout: { maxConcurrency: 1, errorBudget: { count: 1 } },
    });
    const started = new Promise<void>((resolve) => a.events.once('script.server.started', () => resolve()));
    const running = a
      .as({ tenantId: T, principalId: 'alice' })
      .scripts.startRun(plan.id, { holder: 'process-a', leaseTtlMs: 1500 })
      .catch((error: unknown) => error);
    await started;

    clock.advance(60_000);
    await vi.waitFor(() => expect(first.find(LOST)).toHaveLength(1), { timeout: 5000 });
    expect(first.find(LOST)[0]).toMatchObject({
      level: 'warn',
      fields: { tenantId: T, runId: plan.id, lease: `script-run:${T}:${plan.id}`, holder: 'process-a' },
    });

    const results = await b
      .as({ tenantId: T, principalId: 'alice' })
      .scripts.resumeRun(plan.id, { holder: 'process-b' });
    const taken = second.find('run taken over from a process that stopped renewing its lease');
    expect(taken).toEqual([
      {
        level: 'warn',
        msg: 'run taken over from a process that stopped renewing its lease',
        fields: expect.objectContaining({
          tenantId: T,
          runId: plan.id,
          jobId: results.job!.id,
          lease: `script-run:${T}:${plan.id}`,
          holder: 'process-b',
        }),
      },
    ]);
    expect(second.find('script run resumed')).toHaveLength(1);
    release();
    expect(await running).toBeInstanceOf(Error);
  });

  it('resumeRun — resuming a run that paused on its error budget is no takeover', async () => {
    const logger = capturingLogger();
    const fleet = await fleetWith(logger, { adapters: [createLocalAdapter()], servers: ['s01', 's02'] });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.scripts.add({ name: 'fail', interpreter: 'sh', body: 'exit 1\n' });
    const first = await alice.scripts.runScript({
      script: 'fail',
      targets: { serverIds: ['s01', 's02'] },
      rollout: { maxConcurrency: 1, errorBudget: { count: 0 }, onBudgetSpent: 'pause' },
    });
    expect(first.run.status).toBe('paused');
    expect(logger.find('script run paused')).toHaveLength(1);
    await alice.scripts.resumeRun(first.run.id, { acknowledgeFailures: true });
    expect(logger.find('script run resumed')).toHaveLength(1);
    expect(logger.find('run taken over from a process that stopped renewing its lease')).toEqual([]);
  });
});

describe('operator log — workers', () => {
  it('createDispatcher — a failed delivery warns with the attempt, a message given up is an error; neither keeps the payload', async () => {
    const logger = capturingLogger();
    const fleet = await fleetWith(logger, {
      adapters: [fakeAdapter({ hosts: { s1: fakeHost() } })],
      servers: ['s1'],
    });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    const { endpoint, secret } = await alice.notify.webhooks.add({
      url: 'https://hooks.example.test/in',
      events: ['scan.completed'],
    });
    await alice.scan({ selector: { all: true } });
    logger.records.length = 0;
    const dispatcher = createDispatcher({
      store: fleet.store,
      secrets: fleet.secrets!,
      logger,
      maxAttempts: 2,
      backoff: { baseMs: 0, capMs: 0 },
      webhook: {
        fetch: async () => new Response('upstream broke', { status: 502, statusText: 'Bad Gateway' }),
      },
    });
    expect(await dispatcher.runOnce()).toMatchObject({ attempted: 1, retried: 1 });
    expect(await dispatcher.runOnce()).toMatchObject({ attempted: 1, parked: 1 });
    const [message] = await fleet.store.outbox.listAll(T);
    const about = {
      component: 'outbox-dispatcher',
      tenantId: T,
      messageId: message!.id,
      deliveryId: message!.deliveryId,
      channel: 'webhook',
      eventType: 'scan.completed',
      destinationId: endpoint.id,
    };
    expect(logger.records.map((r) => [r.level, r.msg, r.fields])).toEqual([
      [
        'warn',
        'outbox delivery failed; it will be retried',
        { ...about, attempt: 1, error: 'HTTP 502 Bad Gateway', nextAttemptAt: expect.any(String) },
      ],
      [
        'error',
        'outbox message given up: parked until replayed',
        { ...about, attempt: 2, error: 'HTTP 502 Bad Gateway', why: '2 attempts spent' },
      ],
    ]);
    expect(logger.text()).not.toContain('upstream broke');
    expect(logger.text()).not.toContain(secret);
  });

  it('createScanScheduler — a scheduled scan its principal may no longer run is an error naming the schedule', async () => {
    const logger = capturingLogger();
    const fx = await kernelFixture({ logger });
    await fx.store.servers.create({
      tenantId: fx.tenantId,
      id: 'db-1',
      name: 'db-1',
      accountId: 'dc',
      provider: 'local',
      labels: {},
    });
    await fx.store.projects.create({
      tenantId: fx.tenantId,
      id: 'db',
      name: 'DB',
      selector: { ids: ['db-1'] },
    });
    const schedule = await createScheduleApi(() => fx.ctx()).add({
      id: 'hourly',
      projectId: 'db',
      runAs: 'admin',
      intervalMinutes: 60,
    });
    await fx.store.roleBindings.delete(
      fx.tenantId,
      (await fx.store.roleBindings.listAll(fx.tenantId))[0]!.id,
    );
    const failures: unknown[] = [];
    const scheduler = createScanScheduler({
      fleet: fx.runtime,
      holder: 'sched-1',
      onError: (e) => failures.push(e),
    });
    fx.clock.advance(60 * 60_000);
    await scheduler.tick();
    expect(failures).toHaveLength(1);
    expect(logger.find('scheduled scan failed')).toEqual([
      {
        level: 'error',
        msg: 'scheduled scan failed',
        fields: expect.objectContaining({
          component: 'scan-scheduler',
          holder: 'sched-1',
          tenantId: fx.tenantId,
          scheduleId: schedule.id,
          projectId: 'db',
          err: expect.objectContaining({ code: 'FORBIDDEN' }),
        }),
      },
    ]);
  });

  it('createAccessSweeper — a sweep whose store fails is an error naming the tenant; the password in the message is not', async () => {
    const logger = capturingLogger();
    const clock = new ManualClock('2026-05-01T00:00:00.000Z');
    const memory = createMemoryStore({ clock });
    const failing = new Proxy(memory, {
      get(target, property) {
        if (property === 'accessRequests') {
          return {
            listAll: async () => {
              throw new StoreError(
                'connection to postgres://fleet:hunter2-pw@db.internal/fleet refused (password=hunter2-pw)',
              );
            },
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const fx = await kernelFixture({ logger, store: failing });
    const failures: unknown[] = [];
    const sweeper = createAccessSweeper({
      fleet: fx.runtime,
      holder: 'sweep-1',
      onError: (e) => failures.push(e),
    });
    await sweeper.tick();
    expect(failures).toHaveLength(1);
    expect(logger.find('access sweep failed')).toEqual([
      {
        level: 'error',
        msg: 'access sweep failed',
        fields: {
          component: 'access-sweeper',
          holder: 'sweep-1',
          tenantId: fx.tenantId,
          err: { type: 'StoreError', code: 'STORE_FAILED', message: expect.stringContaining('refused') },
        },
      },
    ]);
    expect(logger.text()).not.toContain('hunter2-pw');
  });
});
