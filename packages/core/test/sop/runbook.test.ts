import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AbortedError,
  type Adapter,
  type AuditInput,
  AuthorizationError,
  type Command,
  ConflictError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type ExecResult,
  MemorySecretStore,
  REBOOT_SCRIPT,
  type RunbookStepInput,
  type Store,
  TransportError,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type SopFixture, serverIds, sopFleet, T } from './helpers.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
let fx: SopFixture | undefined;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-runbook-'));
});
afterEach(async () => {
  await fx?.fleet.close();
  fx = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Appends "<STEP> <server id>" to `$DIR/log` and exits with `CODE`. */
const MARK = {
  name: 'mark',
  interpreter: 'sh' as const,
  body: 'printf "%s %s\\n" "$STEP" "$FLEETWARD_SERVER_ID" >> "$DIR/log"\nexit "$CODE"\n',
  parameters: [
    { name: 'DIR', type: 'string' as const, required: true },
    { name: 'STEP', type: 'string' as const, required: true },
    { name: 'CODE', type: 'integer' as const, default: 0 },
  ],
};

/** A script step running MARK with this step's id, failing with `code`. */
const mark = (id: string, extra: Partial<RunbookStepInput> = {}, code = 0): RunbookStepInput =>
  ({
    id,
    kind: 'script',
    script: 'mark',
    params: { DIR: { param: 'DIR' }, STEP: id, CODE: code },
    ...extra,
  }) as RunbookStepInput;

const DIR_PARAM = [{ name: 'DIR', type: 'string' as const, required: true }];

/** The step ids MARK logged, in order. */
const logged = () =>
  existsSync(join(dir, 'log'))
    ? readFileSync(join(dir, 'log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ')[0])
    : [];

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

async function setup(servers = 2, options: Parameters<typeof sopFleet>[0] = {}) {
  fx = await sopFleet({ servers, ...options });
  await fx.alice.scripts.add(MARK);
  return fx;
}

/** Adds carol, who may run scripts but holds no `runbook.approve`. */
async function addCarol(f: SopFixture) {
  await f.fleet.store.principals.create({
    tenantId: T,
    id: 'carol',
    name: 'Carol',
    kind: 'human',
    affiliation: 'employee',
  });
  await f.fleet.store.roles.create({
    tenantId: T,
    id: 'operator',
    name: 'Operator',
    rules: [{ effect: 'allow', actions: ['script.*', 'inventory.read'] }],
  });
  await f.fleet.store.roleBindings.create({ tenantId: T, principalId: 'carol', roleId: 'operator' });
  return f.fleet.as({ tenantId: T, principalId: 'carol' });
}

const result = (out: string, code = 0): ExecResult => ({
  exitCode: code,
  signal: null,
  stdout: {
    text: out,
    bytes: Buffer.byteLength(out),
    sha256: createHash('sha256').update(out).digest('hex'),
    truncated: false,
  },
  stderr: { text: '', bytes: 0, sha256: createHash('sha256').update('').digest('hex'), truncated: false },
  durationMs: 1,
});

interface FakeHost {
  bootId: string;
  down: boolean;
  /** Never comes back after a reboot. */
  dead?: boolean;
  /** Its native scan fails. */
  scanFails?: boolean;
}

/**
 * An adapter that stands in for hosts that reboot: it answers boot-id reads and reboot requests
 * from its own state (a reboot takes the host down for a while and brings it back with a new boot
 * id), scans natively, and runs only script-run commands, through the local transport. Any other
 * command is refused, so nothing here can reboot this machine. Records every command.
 */
function fakeHosts(ids: string[]) {
  const local = createLocalAdapter();
  const hosts = new Map<string, FakeHost>(ids.map((id) => [id, { bootId: randomUUID(), down: false }]));
  const log: string[] = [];
  const adapter: Adapter = {
    name: 'local',
    exec: {
      async exec(server, command: Command, options) {
        const host = hosts.get(server.id)!;
        if ('argv' in command && command.argv.join(' ') === 'cat /proc/sys/kernel/random/boot_id') {
          log.push(`${server.id} boot-id${host.down ? ' (down)' : ''}`);
          if (host.down) throw new TransportError(`connect ECONNREFUSED ${server.id}`);
          return result(`${host.bootId}\n`);
        }
        if ('script' in command && command.script === REBOOT_SCRIPT && command.sudo === true) {
          log.push(`${server.id} reboot`);
          setTimeout(() => {
            host.down = true;
          }, 20);
          setTimeout(() => {
            if (host.dead) return;
            host.bootId = randomUUID();
            host.down = false;
            log.push(`${server.id} back`);
          }, 250);
          return result('');
        }
        if ('script' in command && command.env?.['FLEETWARD_RUN_ID']) {
          log.push(`${server.id} script ${command.env['FLEETWARD_SCRIPT']}`);
          return local.exec!.exec(server, command, options);
        }
        throw new Error(`unexpected command for ${server.id}: ${JSON.stringify(command)}`);
      },
    },
    scan: {
      async scan(server) {
        log.push(`${server.id} scan`);
        if (hosts.get(server.id)!.scanFails) throw new TransportError(`${server.id} is unreachable`);
        return { patches: [], rebootRequired: false };
      },
    },
  };
  return { adapter, hosts, log };
}

/** A store whose transactions fail once, at the audit record that `when` picks. */
function failingAuditOnce(store: Store, when: (input: AuditInput) => boolean): Store {
  let armed = true;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'transaction') {
        return <R>(fn: (tx: Store) => Promise<R>) =>
          target.transaction((tx) =>
            fn(
              new Proxy(tx, {
                get(t, p) {
                  if (p !== 'audit') return Reflect.get(t, p);
                  return {
                    append: async (input: AuditInput) => {
                      if (armed && when(input)) {
                        armed = false;
                        throw new Error('the disk is full');
                      }
                      return t.audit.append(input);
                    },
                    list: t.audit.list.bind(t.audit),
                    head: t.audit.head.bind(t.audit),
                  };
                },
              }) as Store,
            ),
          );
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('define', () => {
  it('define — an unknown step kind, a duplicate id and a backwards goto are refused with their paths', async () => {
    const f = await setup();
    const unknown = await errorOf(
      f.alice.runbooks.define({
        name: 'bad',
        steps: [{ id: 'a', kind: 'teleport' } as unknown as RunbookStepInput],
      }),
    );
    expect(unknown).toBeInstanceOf(ValidationError);
    expect((unknown as ValidationError).paths).toContain('steps.0.kind');

    const duplicate = await errorOf(
      f.alice.runbooks.define({
        name: 'bad',
        steps: [
          { id: 'a', kind: 'wait', durationSeconds: 1 },
          { id: 'a', kind: 'wait', durationSeconds: 2 },
        ],
      }),
    );
    expect((duplicate as ValidationError).issues).toEqual([
      expect.objectContaining({ path: ['steps', 1, 'id'], message: 'duplicate step id a (also step 0)' }),
    ]);

    const backwards = await errorOf(
      f.alice.runbooks.define({
        name: 'bad',
        steps: [
          { id: 'a', kind: 'wait', durationSeconds: 1 },
          { id: 'b', kind: 'wait', durationSeconds: 1, onFailure: { goto: 'a' } },
          { id: 'c', kind: 'wait', durationSeconds: 1, onFailure: { goto: 'c' } },
          { id: 'd', kind: 'wait', durationSeconds: 1, onFailure: { goto: 'nowhere' } },
        ],
      }),
    );
    expect((backwards as ValidationError).paths).toEqual([
      'steps.1.onFailure.goto',
      'steps.2.onFailure.goto',
      'steps.3.onFailure.goto',
    ]);
    expect((backwards as ValidationError).issues[0]!.message).toContain('a runbook never loops');
    expect(await f.fleet.store.runbooks.listAll(T)).toEqual([]);
  });

  it('define — steps naming a missing script, an undeclared parameter or a missing endpoint are refused', async () => {
    const f = await setup();
    const error = await errorOf(
      f.alice.runbooks.define({
        name: 'bad',
        steps: [
          { id: 'a', kind: 'script', script: 'nope' },
          { id: 'b', kind: 'script', script: 'mark', params: { DIR: { param: 'DIR' } } },
          { id: 'c', kind: 'webhook', endpointId: 'no-such-hook' },
        ],
      }),
    );
    expect((error as ValidationError).paths).toEqual(['steps.1.params.DIR']);
    const missing = await errorOf(
      f.alice.runbooks.define({
        name: 'bad',
        steps: [
          { id: 'a', kind: 'script', script: 'nope' },
          { id: 'b', kind: 'script', script: 'mark', version: 7 },
          { id: 'c', kind: 'webhook', endpointId: 'no-such-hook' },
        ],
      }),
    );
    expect((missing as ValidationError).paths).toEqual([
      'steps.0.script',
      'steps.1.version',
      'steps.2.endpointId',
    ]);
  });

  it('define — the same definition twice is one revision; a change is the next revision with a new hash', async () => {
    const f = await setup();
    const steps: RunbookStepInput[] = [{ id: 'pause', kind: 'wait', durationSeconds: 5 }];
    const v1 = await f.alice.runbooks.define({ name: 'settle', steps });
    const again = await f.alice.runbooks.define({
      name: 'settle',
      steps: [{ ...steps[0]!, onFailure: 'stop' }],
    });
    expect(again).toEqual(v1);
    const v2 = await f.alice.runbooks.define({ name: 'settle', description: 'longer', steps });
    expect([v1.revision, v2.revision]).toEqual([1, 2]);
    expect(v2.contentHash).not.toBe(v1.contentHash);
    expect((await f.alice.runbooks.get('settle')).revision).toBe(2);
    expect((await f.alice.runbooks.get('settle', { version: v1.contentHash })).revision).toBe(1);
    expect((await f.alice.runbooks.list()).map((r) => [r.name, r.revision])).toEqual([['settle', 2]]);
  });

  it('define — needs script.write', async () => {
    const f = await setup();
    await f.fleet.store.principals.create({
      tenantId: T,
      id: 'rita',
      name: 'Rita',
      kind: 'human',
      affiliation: 'employee',
    });
    await f.fleet.store.roles.create({
      tenantId: T,
      id: 'runner',
      name: 'Runner',
      rules: [{ effect: 'allow', actions: ['script.run', 'script.read'] }],
    });
    await f.fleet.store.roleBindings.create({ tenantId: T, principalId: 'rita', roleId: 'runner' });
    const rita = f.fleet.as({ tenantId: T, principalId: 'rita' });
    const error = await errorOf(
      rita.runbooks.define({ name: 'x', steps: [{ id: 'a', kind: 'wait', durationSeconds: 1 }] }),
    );
    expect(error).toBeInstanceOf(AuthorizationError);
  });
});

describe('start', () => {
  it('start — runs the steps in order, each on every target, and audits the run and every step', async () => {
    const f = await setup(2);
    await f.alice.runbooks.define({
      name: 'three',
      parameters: DIR_PARAM,
      steps: [mark('first'), mark('second'), mark('third')],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'three',
      targets: { serverIds: serverIds(2) },
      params: { DIR: dir },
      ticket: 'CHG-1',
    });
    expect(run.status).toBe('succeeded');
    expect(logged()).toEqual(['first', 'first', 'second', 'second', 'third', 'third']);
    expect(run.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([
      ['first', 'succeeded', 1],
      ['second', 'succeeded', 1],
      ['third', 'succeeded', 1],
    ]);
    expect(run.steps[0]!.script).toMatchObject({ name: 'mark', revision: 1 });
    expect(run.steps[0]!.params).toEqual({ DIR: dir, STEP: 'first', CODE: 0 });
    const scriptRun = await f.alice.scripts.getRun(run.steps[0]!.scriptRunId!);
    expect(scriptRun.run).toMatchObject({ status: 'succeeded', ticket: 'CHG-1' });

    const audit = await f.fleet.store.audit.list(T);
    expect(verifyAuditChain(audit).ok).toBe(true);
    const trail = audit
      .filter((r) => r.action.startsWith('runbook.'))
      .map((r) => `${r.action} ${r.result} ${(r.details['stepId'] as string | undefined) ?? ''}`.trim());
    expect(trail).toEqual([
      'runbook.run started',
      'runbook.step started first',
      'runbook.step success first',
      'runbook.step started second',
      'runbook.step success second',
      'runbook.step started third',
      'runbook.step success third',
      'runbook.run success',
    ]);
    const started = audit.find((r) => r.action === 'runbook.run')!;
    expect(started).toMatchObject({ ticket: 'CHG-1', actor: { principalId: 'alice' } });
    expect(started.details).toMatchObject({
      contentHash: run.contentHash,
      serverIds: serverIds(2),
      params: { DIR: dir },
    });
  });

  it('start — a failed step with onFailure stop skips the rest and fails the run', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'stops',
      parameters: DIR_PARAM,
      steps: [mark('a', {}, 3), mark('b')],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'stops',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/^step a failed: script run .* ended failed/);
    expect(run.steps.map((s) => [s.stepId, s.status, s.onFailureApplied])).toEqual([
      ['a', 'failed', 'stop'],
      ['b', 'skipped', undefined],
    ]);
    expect(logged()).toEqual(['a']);
  });

  it('start — a failed step with onFailure continue is tolerated: the run goes on and succeeds', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'tolerates',
      parameters: DIR_PARAM,
      steps: [mark('a', { onFailure: 'continue' }, 3), mark('b')],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'tolerates',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    expect(run.status).toBe('succeeded');
    expect(run.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['a', 'failed'],
      ['b', 'succeeded'],
    ]);
    expect(logged()).toEqual(['a', 'b']);
    const end = (await f.fleet.store.audit.list(T, { action: 'runbook.run' })).at(-1)!;
    expect(end).toMatchObject({ result: 'success', details: { tolerated: ['a'], failed: ['a'] } });
  });

  it('start — a failed step with a goto skips to the named step, runs it and what follows, and fails the run', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'jumps',
      parameters: DIR_PARAM,
      steps: [
        mark('a'),
        mark('b', { onFailure: { goto: 'cleanup' } }, 4),
        mark('c'),
        mark('cleanup'),
        mark('notify'),
      ],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'jumps',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    expect(logged()).toEqual(['a', 'b', 'cleanup', 'notify']);
    expect(run.status).toBe('failed');
    expect(run.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['a', 'succeeded'],
      ['b', 'failed'],
      ['c', 'skipped'],
      ['cleanup', 'succeeded'],
      ['notify', 'succeeded'],
    ]);
    const failure = (await f.fleet.store.audit.list(T, { action: 'runbook.step' })).find(
      (r) => r.result === 'failure',
    )!;
    expect(failure.details).toMatchObject({
      stepId: 'b',
      onFailure: 'goto',
      next: 'cleanup',
      code: 'SCRIPT_RUN_FAILED',
    });
  });

  it('start — refused without script.run on every target, before anything is written', async () => {
    const f = await setup(2);
    await f.fleet.store.principals.create({
      tenantId: T,
      id: 'dan',
      name: 'Dan',
      kind: 'human',
      affiliation: 'contractor',
    });
    await f.fleet.store.roles.create({
      tenantId: T,
      id: 's01-only',
      name: 'S01 only',
      rules: [{ effect: 'allow', actions: ['script.run', 'script.read'], servers: { ids: ['s01'] } }],
    });
    await f.fleet.store.roleBindings.create({ tenantId: T, principalId: 'dan', roleId: 's01-only' });
    await f.alice.runbooks.define({ name: 'one', parameters: DIR_PARAM, steps: [mark('a')] });
    const dan = f.fleet.as({ tenantId: T, principalId: 'dan' });
    const error = await errorOf(
      dan.runbooks.start({ runbook: 'one', targets: { serverIds: serverIds(2) }, params: { DIR: dir } }),
    );
    expect(error).toBeInstanceOf(AuthorizationError);
    expect(await f.fleet.store.runbookRuns.listAll(T)).toEqual([]);
    expect(logged()).toEqual([]);
    const denied = (await f.fleet.store.audit.list(T)).filter((r) => r.decision === 'deny');
    expect(denied.map((r) => [r.action, r.actor.principalId])).toEqual([['script.run', 'dan']]);
  });

  it('start — a missing parameter is refused with its path, and a secret script parameter cannot be passed', async () => {
    const f = await setup(1);
    await f.alice.scripts.add({
      name: 'secretive',
      interpreter: 'sh',
      body: 'true\n',
      parameters: [{ name: 'TOKEN', type: 'string', secret: true }],
    });
    await f.alice.runbooks.define({
      name: 'leaky',
      parameters: DIR_PARAM,
      steps: [{ id: 'a', kind: 'script', script: 'secretive', params: { TOKEN: 'hunter2' } }],
    });
    const missing = await errorOf(
      f.alice.runbooks.start({ runbook: 'leaky', targets: { serverIds: ['s01'] } }),
    );
    expect((missing as ValidationError).paths).toEqual(['params.DIR']);
    const secret = await errorOf(
      f.alice.runbooks.start({ runbook: 'leaky', targets: { serverIds: ['s01'] }, params: { DIR: dir } }),
    );
    expect((secret as ValidationError).paths).toEqual(['steps.0.params.TOKEN']);
    expect(await f.fleet.store.runbookRuns.listAll(T)).toEqual([]);
  });
});

describe('approval steps', () => {
  it('approveStep — the run pauses; its starter and a principal without runbook.approve cannot approve; another principal can, and the run continues', async () => {
    const f = await setup(1);
    const carol = await addCarol(f);
    await f.alice.runbooks.define({
      name: 'gated',
      parameters: DIR_PARAM,
      steps: [
        mark('before'),
        { id: 'gate', kind: 'approval', instructions: 'look at the log' },
        mark('after'),
      ],
    });
    const paused = await f.alice.runbooks.start({
      runbook: 'gated',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    expect(paused.status).toBe('awaiting-approval');
    expect(paused.steps.map((s) => s.status)).toEqual(['succeeded', 'running', 'pending']);
    expect(logged()).toEqual(['before']);
    // Resuming a run that awaits approval only pauses it again.
    expect((await f.alice.runbooks.resume(paused.id)).status).toBe('awaiting-approval');

    expect(await errorOf(f.alice.runbooks.approveStep(paused.id))).toBeInstanceOf(AuthorizationError);
    expect(await errorOf(carol.runbooks.approveStep(paused.id))).toBeInstanceOf(AuthorizationError);
    expect(await errorOf(f.bob.runbooks.approveStep(paused.id, { stepId: 'before' }))).toBeInstanceOf(
      ConflictError,
    );
    expect(logged()).toEqual(['before']);
    expect((await f.alice.runbooks.getRun(paused.id)).status).toBe('awaiting-approval');

    const done = await f.bob.runbooks.approveStep(paused.id, { stepId: 'gate', comment: 'log is clean' });
    expect(done.status).toBe('succeeded');
    expect(logged()).toEqual(['before', 'after']);
    expect(done.approvals).toEqual([
      expect.objectContaining({ stepId: 'gate', principalId: 'bob', comment: 'log is clean' }),
    ]);
    expect(done.steps[1]).toMatchObject({ status: 'succeeded', result: { approvedBy: ['bob'] } });

    const audit = await f.fleet.store.audit.list(T);
    expect(verifyAuditChain(audit).ok).toBe(true);
    const approvals = audit.filter((r) => r.action === 'runbook.approve');
    expect(approvals.map((r) => [r.actor.principalId, r.result])).toEqual([
      ['alice', 'denied'],
      ['carol', 'denied'],
      ['bob', 'success'],
    ]);
    // The rest of the run went on with the rights of the one who started it.
    const after = audit.filter((r) => r.action === 'runbook.step' && r.details['stepId'] === 'after');
    expect(after.map((r) => [r.actor.principalId, r.result])).toEqual([
      ['alice', 'started'],
      ['alice', 'success'],
    ]);
  });

  it('approveStep — a step needing two approvals waits for the second; nobody approves twice; continueRun false leaves it for resume', async () => {
    const f = await setup(1);
    await addCarol(f);
    await f.fleet.store.roles.create({
      tenantId: T,
      id: 'approver',
      name: 'Approver',
      rules: [{ effect: 'allow', actions: ['runbook.approve'] }],
    });
    await f.fleet.store.roleBindings.create({ tenantId: T, principalId: 'carol', roleId: 'approver' });
    const carol = f.fleet.as({ tenantId: T, principalId: 'carol' });
    await f.alice.runbooks.define({
      name: 'two-keys',
      parameters: DIR_PARAM,
      steps: [{ id: 'gate', kind: 'approval', approvals: 2 }, mark('after')],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'two-keys',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    const once = await f.bob.runbooks.approveStep(run.id);
    expect(once.status).toBe('awaiting-approval');
    expect(await errorOf(f.bob.runbooks.approveStep(run.id))).toBeInstanceOf(ConflictError);
    const approved = await carol.runbooks.approveStep(run.id, { continueRun: false });
    expect(approved).toMatchObject({ status: 'running', currentStep: 1 });
    expect(logged()).toEqual([]);
    expect((await f.alice.runbooks.resume(run.id)).status).toBe('succeeded');
    expect(logged()).toEqual(['after']);
  });

  it('cancel — a run awaiting approval ends at once: the gate failed as cancelled, the rest skipped', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'gated',
      parameters: DIR_PARAM,
      steps: [{ id: 'gate', kind: 'approval' }, mark('after')],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'gated',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    const cancelled = await f.alice.runbooks.cancel(run.id, { reason: 'change withdrawn' });
    expect(cancelled).toMatchObject({ status: 'cancelled', reason: 'cancelled by alice: change withdrawn' });
    expect(cancelled.steps.map((s) => [s.stepId, s.status, s.error?.code])).toEqual([
      ['gate', 'failed', 'CANCELLED'],
      ['after', 'skipped', undefined],
    ]);
    expect(await errorOf(f.bob.runbooks.approveStep(run.id))).toBeInstanceOf(ConflictError);
    expect(await errorOf(f.alice.runbooks.resume(run.id))).toBeInstanceOf(ConflictError);
    expect(logged()).toEqual([]);
  });
});

describe('webhook steps', () => {
  it('start — a webhook step enqueues exactly one outbox message for its endpoint, with the run context', async () => {
    const f = await setup(1);
    const { endpoint } = await f.alice.notify.webhooks.add({
      url: 'http://127.0.0.1:9/hooks',
      events: ['scan.*'],
    });
    await f.alice.runbooks.define({
      name: 'tells',
      parameters: DIR_PARAM,
      steps: [
        mark('work'),
        { id: 'tell', kind: 'webhook', endpointId: endpoint.id, message: 'work is done' },
      ],
    });
    const run = await f.alice.runbooks.start({
      runbook: 'tells',
      targets: { serverIds: ['s01'] },
      params: { DIR: dir },
    });
    expect(run.status).toBe('succeeded');
    const messages = await f.fleet.store.outbox.listAll(T, { where: { destinationId: endpoint.id } });
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({
      eventType: 'runbook.webhook',
      status: 'pending',
      payload: {
        runId: run.id,
        runbook: { name: 'tells', revision: 1, contentHash: run.contentHash },
        step: { id: 'tell' },
        message: 'work is done',
        startedBy: 'alice',
        serverIds: ['s01'],
        steps: [
          { stepId: 'work', kind: 'script', status: 'succeeded' },
          { stepId: 'tell', kind: 'webhook', status: 'running' },
        ],
      },
    });
    expect(run.steps[1]!.result).toMatchObject({
      outboxId: messages[0]!.id,
      deliveryId: messages[0]!.deliveryId,
    });
  });

  it('resume — when the transaction ending a webhook step fails, no message exists; the resumed step enqueues exactly one', async () => {
    const base = createMemoryStore();
    const store = failingAuditOnce(
      base,
      (a) => a.action === 'runbook.step' && a.result === 'success' && a.details?.['stepId'] === 'tell',
    );
    const f = await setup(1, { store });
    const { endpoint } = await f.alice.notify.webhooks.add({
      url: 'http://127.0.0.1:9/hooks',
      events: ['scan.*'],
    });
    await f.alice.runbooks.define({
      name: 'tells',
      steps: [{ id: 'tell', kind: 'webhook', endpointId: endpoint.id }],
    });
    expect(
      await errorOf(f.alice.runbooks.start({ runbook: 'tells', targets: { serverIds: ['s01'] } })),
    ).toMatchObject({
      message: expect.stringContaining('the disk is full'),
    });
    const [run] = await base.runbookRuns.listAll(T);
    expect(run!.steps[0]!.status).toBe('running');
    expect(await base.outbox.listAll(T)).toEqual([]);
    const resumed = await f.alice.runbooks.resume(run!.id);
    expect(resumed.status).toBe('succeeded');
    expect(resumed.steps[0]!.attempt).toBe(2);
    expect(await base.outbox.listAll(T, { where: { destinationId: endpoint.id } })).toHaveLength(1);
  });

  it('start — a webhook step whose endpoint was disabled fails without enqueueing anything', async () => {
    const f = await setup(1);
    const { endpoint } = await f.alice.notify.webhooks.add({
      url: 'http://127.0.0.1:9/hooks',
      events: ['scan.*'],
    });
    await f.alice.runbooks.define({
      name: 'tells',
      steps: [{ id: 'tell', kind: 'webhook', endpointId: endpoint.id }],
    });
    await f.fleet.store.webhookEndpoints.update(
      T,
      endpoint.id,
      { disabled: true, disabledReason: 'gone' },
      { expectedVersion: endpoint.version },
    );
    const run = await f.alice.runbooks.start({ runbook: 'tells', targets: { serverIds: ['s01'] } });
    expect(run.status).toBe('failed');
    expect(run.steps[0]!.error).toEqual({
      code: 'ENDPOINT_DISABLED',
      message: `webhook endpoint ${endpoint.id} is disabled: gone`,
    });
    expect(await f.fleet.store.outbox.listAll(T)).toEqual([]);
  });
});

describe('reboot and scan steps', () => {
  it('start — a reboot step reboots one server at a time and succeeds once each answers with a new boot id', async () => {
    const hosts = fakeHosts(serverIds(2));
    const f = await setup(2, { adapters: [hosts.adapter] });
    await f.alice.runbooks.define({
      name: 'bounce',
      steps: [{ id: 'reboot', kind: 'reboot', pollIntervalMs: 100, timeoutMs: 5000 }],
    });
    const before = serverIds(2).map((id) => hosts.hosts.get(id)!.bootId);
    const run = await f.alice.runbooks.start({ runbook: 'bounce', targets: { serverIds: serverIds(2) } });
    expect(run.status).toBe('succeeded');
    const servers = run.steps[0]!.servers!;
    serverIds(2).forEach((id, i) => {
      expect(servers[id]).toMatchObject({
        status: 'succeeded',
        bootIdBefore: before[i],
        bootIdAfter: hosts.hosts.get(id)!.bootId,
      });
      expect(servers[id]!.bootIdAfter).not.toBe(before[i]);
    });
    const milestones = hosts.log.filter((l) => /reboot|back/.test(l));
    expect(milestones).toEqual(['s01 reboot', 's01 back', 's02 reboot', 's02 back']);
  });

  it('start — a server that does not come back fails the reboot step after its timeout', async () => {
    const hosts = fakeHosts(['s01']);
    hosts.hosts.get('s01')!.dead = true;
    const f = await setup(1, { adapters: [hosts.adapter] });
    await f.alice.runbooks.define({
      name: 'bounce',
      steps: [{ id: 'reboot', kind: 'reboot', pollIntervalMs: 100, timeoutMs: 1000 }],
    });
    const run = await f.alice.runbooks.start({ runbook: 'bounce', targets: { serverIds: ['s01'] } });
    expect(run.status).toBe('failed');
    expect(run.steps[0]!.servers!['s01']).toMatchObject({ status: 'failed', error: { code: 'TIMEOUT' } });
    expect(run.steps[0]!.error!.message).toContain('did not come back with a new boot id within 1000 ms');
  });

  it('start — a scan step fails when any server could not be scanned, unless failWhen says otherwise', async () => {
    const hosts = fakeHosts(serverIds(2));
    hosts.hosts.get('s02')!.scanFails = true;
    const f = await setup(2, { adapters: [hosts.adapter] });
    await f.alice.runbooks.define({
      name: 'look',
      steps: [
        { id: 'strict', kind: 'scan', onFailure: 'continue' },
        { id: 'lenient', kind: 'scan', failWhen: 'all' },
      ],
    });
    const run = await f.alice.runbooks.start({ runbook: 'look', targets: { serverIds: serverIds(2) } });
    expect(run.status).toBe('succeeded');
    expect(run.steps.map((s) => [s.stepId, s.status, s.error?.code])).toEqual([
      ['strict', 'failed', 'SCAN_FAILED'],
      ['lenient', 'succeeded', undefined],
    ]);
    expect(run.steps[0]!.result).toMatchObject({ total: 2, succeeded: 1, failed: 1, failedServers: ['s02'] });
    const job = await f.fleet.store.jobs.require(T, run.steps[1]!.jobId!);
    expect(job).toMatchObject({ kind: 'scan', status: 'partial' });
  });
});

describe('wait steps', () => {
  it('resume — a wait step measures the Fleet clock from the deadline it stored; returnWhenWaiting hands the run back', async () => {
    const clock = new ManualClock('2026-03-01T00:00:00.000Z');
    fx = await sopFleet({ servers: 1 });
    const fleet = createFleet({
      store: fx.fleet.store,
      adapters: [createLocalAdapter()],
      clock,
      secrets: new MemorySecretStore(),
    });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    await alice.runbooks.define({
      name: 'pause',
      steps: [{ id: 'settle', kind: 'wait', durationSeconds: 600 }],
    });
    const waiting = await alice.runbooks.start(
      { runbook: 'pause', targets: { serverIds: ['s01'] } },
      { returnWhenWaiting: true },
    );
    expect(waiting.status).toBe('waiting');
    expect(waiting.steps[0]!.waitUntil).toBe('2026-03-01T00:10:00.000Z');
    clock.advance(599_000);
    const records = (await fleet.store.audit.list(T)).length;
    expect((await alice.runbooks.resume(waiting.id, { returnWhenWaiting: true })).status).toBe('waiting');
    // Looking at a run that still waits changes nothing, and leaves one record of the call (rule 1).
    const added = (await fleet.store.audit.list(T)).slice(records);
    expect(added).toEqual([
      expect.objectContaining({
        action: 'runbook.run',
        result: 'success',
        details: expect.objectContaining({ resumed: false, paused: 'waiting', step: 'settle' }),
      }),
    ]);
    clock.advance(1000);
    expect((await alice.runbooks.resume(waiting.id, { returnWhenWaiting: true })).status).toBe('succeeded');
  });

  it('cancel — a run waiting in another call is marked; the executing call stops it and ends it cancelled', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'long',
      parameters: DIR_PARAM,
      steps: [{ id: 'settle', kind: 'wait', durationSeconds: 3600 }, mark('after')],
    });
    const waited = new Promise<string>((resolve) =>
      f.fleet.events.once('runbook.step.waiting', (e) => resolve(e.runId)),
    );
    const running = f.alice.runbooks.start(
      { runbook: 'long', targets: { serverIds: ['s01'] }, params: { DIR: dir } },
      { cancelPollMs: 50 },
    );
    const runId = await waited;
    const marked = await f.bob.runbooks.cancel(runId, { reason: 'not tonight' });
    expect(marked).toMatchObject({ status: 'waiting', cancelRequested: true });
    const run = await running;
    expect(run).toMatchObject({ status: 'cancelled', reason: 'cancelled by bob: not tonight' });
    expect(run.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['settle', 'failed'],
      ['after', 'skipped'],
    ]);
    expect(logged()).toEqual([]);
    const audit = await f.fleet.store.audit.list(T);
    expect(audit.filter((r) => r.action === 'runbook.cancel').map((r) => r.actor.principalId)).toEqual([
      'bob',
    ]);
    expect(audit.filter((r) => r.action === 'runbook.run').map((r) => r.result)).toEqual([
      'started',
      'failure',
    ]);
  });

  it('start — a caller whose signal aborts (a shutdown) leaves the run resumable, not cancelled; resume finishes it', async () => {
    const f = await setup(1);
    await f.alice.runbooks.define({
      name: 'nap',
      parameters: DIR_PARAM,
      steps: [{ id: 'settle', kind: 'wait', durationSeconds: 1 }, mark('after')],
    });
    const waited = new Promise<string>((resolve) =>
      f.fleet.events.once('runbook.step.waiting', (e) => resolve(e.runId)),
    );
    const shutdown = new AbortController();
    const running = f.alice.runbooks.start(
      { runbook: 'nap', targets: { serverIds: ['s01'] }, params: { DIR: dir } },
      { signal: shutdown.signal },
    );
    const runId = await waited;
    shutdown.abort();
    await expect(running).rejects.toBeInstanceOf(AbortedError);
    const interrupted = await f.alice.runbooks.getRun(runId);
    expect(interrupted.status).toBe('waiting');
    expect(interrupted.steps.map((s) => s.status)).toEqual(['running', 'pending']);
    expect(logged()).toEqual([]);

    const resumed = await f.alice.runbooks.resume(runId);
    expect(resumed.status).toBe('succeeded');
    expect(resumed.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded']);
    expect(logged()).toEqual(['after']);
  });

  it('resume — after the orchestrator is killed mid-wait, a new process waits only the remainder', async () => {
    const db = join(dir, 'fleet.db');
    const setupFx = await sopFleet({ servers: 1, store: createSqliteStore({ path: db }) });
    await setupFx.alice.scripts.add(MARK);
    await setupFx.alice.runbooks.define({
      name: 'slow',
      parameters: DIR_PARAM,
      steps: [mark('before'), { id: 'settle', kind: 'wait', durationSeconds: 3600 }, mark('after')],
    });
    await setupFx.fleet.close();

    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'packages/core/test/sop/fixtures/crash-runbook.ts'), db, T, 'slow', dir],
      {
        cwd: root,
        env: { ...process.env, TSX_TSCONFIG_PATH: join(root, 'tsconfig.json') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const { runId, until } = await new Promise<{ runId: string; until: string }>((resolve, reject) => {
      let buffer = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const parts = buffer.split('\n');
        buffer = parts.pop()!;
        for (const line of parts) {
          const event = JSON.parse(line) as { waiting?: { runId: string; until: string } };
          if (event.waiting) {
            child.kill('SIGKILL');
            resolve(event.waiting);
          }
        }
      });
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL')
          reject(new Error(`the orchestrator exited on its own (${code}): ${stderr}`));
      });
    });
    await new Promise((r) => child.once('close', r));

    // The new process's clock stands ten minutes before the deadline the dead one stored.
    const clock = new ManualClock(new Date(Date.parse(until) - 600_000));
    const fleet = createFleet({
      store: createSqliteStore({ path: db }),
      adapters: [createLocalAdapter()],
      clock,
    });
    try {
      const alice = fleet.as({ tenantId: T, principalId: 'alice' });
      expect(await errorOf(alice.runbooks.resume(runId))).toBeInstanceOf(ConflictError);
      // The dead process's lease runs out in real time (the store keeps the system clock).
      await vi.waitFor(
        async () => expect(await fleet.store.leases.get(`runbook-run:${T}:${runId}`)).toBeUndefined(),
        { timeout: 15_000, interval: 50 },
      );
      const remaining = new Promise<number>((resolve) =>
        fleet.events.once('runbook.step.waiting', (e) => resolve(e.remainingMs)),
      );
      const resumed = alice.runbooks.resume(runId, { waitPollMs: 10 });
      expect(await remaining).toBe(600_000);
      // One millisecond short of the deadline: after the wait has looked at the clock again
      // several times, it still waits.
      const reads = vi.spyOn(clock, 'now');
      clock.advance(599_999);
      await vi.waitFor(() => expect(reads.mock.calls.length).toBeGreaterThanOrEqual(5));
      expect((await fleet.store.runbookRuns.require(T, runId)).status).toBe('waiting');
      clock.advance(1);
      const run = await resumed;
      expect(run.status).toBe('succeeded');
      expect(run.steps.map((s) => [s.stepId, s.status, s.attempt])).toEqual([
        ['before', 'succeeded', 1],
        ['settle', 'succeeded', 2],
        ['after', 'succeeded', 1],
      ]);
      expect(run.steps[1]!.waitUntil).toBe(until);
      expect(logged()).toEqual(['before', 'after']);
      const audit = await fleet.store.audit.list(T, { limit: 10_000 });
      expect(verifyAuditChain(audit).ok).toBe(true);
      const settle = audit.filter((r) => r.action === 'runbook.step' && r.details['stepId'] === 'settle');
      expect(settle.map((r) => [r.result, r.details['resumed'] ?? null])).toEqual([
        ['started', false],
        ['started', true],
        ['success', null],
      ]);
    } finally {
      await fleet.close();
    }
  }, 60_000);
});
