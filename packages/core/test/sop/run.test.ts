import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Adapter,
  AuthorizationError,
  ConflictError,
  createLocalAdapter,
  ENTITY_KINDS,
  HostKeyMismatchError,
  MemorySecretStore,
  scriptEvents,
  TransportError,
  ValidationError,
  verifyAuditChain,
} from '@fleetward/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SopFixture, serverIds, sopFleet, T } from './helpers.js';

let fx: SopFixture | undefined;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-run-'));
});
afterEach(async () => {
  await fx?.fleet.close();
  fx = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Writes what it was given into `$DIR/<server id>`, and fails where `$DIR/broken-<server id>` exists. */
const RECORDER = {
  name: 'recorder',
  interpreter: 'sh' as const,
  body: [
    'printf "%s" "$X" > "$DIR/$FLEETWARD_SERVER_ID"',
    'if [ -e "$DIR/broken-$FLEETWARD_SERVER_ID" ]; then echo "broken here" >&2; exit 3; fi',
    'echo "ok $FLEETWARD_SERVER_NAME $FLEETWARD_SCRIPT_REVISION"',
    '',
  ].join('\n'),
  parameters: [
    { name: 'X', type: 'string' as const, default: '' },
    { name: 'DIR', type: 'string' as const, required: true },
  ],
};

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('runScript', () => {
  it('runScript — a parameter with shell syntax reaches the script as its literal value and runs nothing', async () => {
    fx = await sopFleet({ servers: 3 });
    await fx.alice.scripts.add(RECORDER);
    const pwned = join(dir, 'pwned');
    const value = `x'; touch ${pwned}; '`;
    const results = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { X: value, DIR: dir },
      targets: { serverIds: serverIds(3) },
    });
    expect(results.run.status).toBe('succeeded');
    for (const id of serverIds(3)) expect(readFileSync(join(dir, id), 'utf8')).toBe(value);
    expect(existsSync(pwned)).toBe(false);
    expect(results.servers.map((s) => [s.serverId, s.state, s.exitCode, s.stdout?.text])).toEqual([
      ['s01', 'succeeded', 0, 'ok s01 1\n'],
      ['s02', 'succeeded', 0, 'ok s02 1\n'],
      ['s03', 'succeeded', 0, 'ok s03 1\n'],
    ]);
    const audit = await fx.fleet.store.audit.list(T, { action: 'script.run' });
    expect(verifyAuditChain(await fx.fleet.store.audit.list(T)).ok).toBe(true);
    const perServer = audit.filter((r) => r.target?.type === 'server');
    expect(perServer).toHaveLength(3);
    expect(perServer.find((r) => r.target?.id === 's01')!.details).toMatchObject({
      script: 'recorder',
      revision: 1,
      contentHash: results.run.contentHash,
      exitCode: 0,
      stdout: { bytes: 9, sha256: createHash('sha256').update('ok s01 1\n').digest('hex'), truncated: false },
    });
    const runRecords = audit.filter((r) => r.target?.type === 'script-run');
    expect(runRecords.map((r) => r.result)).toEqual(['success', 'started', 'success']);
    expect(runRecords[1]!.details['params']).toEqual({ X: value, DIR: dir });
  });

  it('runScript — a script whose commands read stdin does not swallow the rest of its own text', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.alice.scripts.add({
      name: 'reader',
      interpreter: 'bash',
      body: 'cat >/dev/null\nread -r line || true\necho "still here"\n',
    });
    const results = await fx.alice.scripts.runScript({ script: 'reader', targets: { serverIds: ['s01'] } });
    expect(results.servers[0]).toMatchObject({ state: 'succeeded', stdout: { text: 'still here\n' } });
  });

  it('runScript — python scripts run with their parameters in the environment', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.alice.scripts.add({
      name: 'py',
      interpreter: 'python',
      body: 'import os, sys\nprint(os.environ["GREETING"] * 2)\nsys.exit(int(os.environ["CODE"]))\n',
      parameters: [
        { name: 'GREETING', type: 'string' },
        { name: 'CODE', type: 'integer', default: 0 },
      ],
    });
    const results = await fx.alice.scripts.runScript({
      script: 'py',
      params: { GREETING: 'ab', CODE: 4 },
      targets: { serverIds: ['s01'] },
      rollout: { errorBudget: { count: 1 } },
    });
    expect(results.servers[0]).toMatchObject({ state: 'failed', exitCode: 4, stdout: { text: 'abab\n' } });
    expect(results.servers[0]!.error).toEqual({ code: 'COMMAND_FAILED', message: 'the script exited 4' });
  });

  it('runScript — honest output: bytes and sha256 of everything written, truncated, and the full output on disk', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.alice.scripts.add({
      name: 'chatty',
      interpreter: 'sh',
      body: 'i=0; while [ $i -lt 5000 ]; do echo "line $i of the output"; i=$((i+1)); done\necho oops >&2\n',
    });
    const outputDir = join(dir, 'out');
    const results = await fx.alice.scripts.runScript({
      script: 'chatty',
      targets: { serverIds: ['s01'] },
      maxOutputBytes: 1000,
      outputDir,
    });
    const server = results.servers[0]!;
    const full = readFileSync(server.fullOutput!.stdout);
    expect(server.fullOutput!.stdout).toBe(join(outputDir, results.run.id, 's01.stdout'));
    expect(server.stdout).toMatchObject({ bytes: full.length, truncated: true });
    expect(server.stdout!.sha256).toBe(createHash('sha256').update(full).digest('hex'));
    expect(server.stdout!.text.length).toBeLessThanOrEqual(1000);
    expect(full.toString().startsWith(server.stdout!.text)).toBe(true);
    expect(server.stderr).toMatchObject({ text: 'oops\n', truncated: false });
    expect(readFileSync(server.fullOutput!.stderr, 'utf8')).toBe('oops\n');
    expect(statSync(server.fullOutput!.stdout).mode & 0o777).toBe(0o600);
  });

  it('runScript — a script past its timeout is killed and its server failed as timed out', async () => {
    fx = await sopFleet({ servers: 2, adapters: [createLocalAdapter({ killGraceMs: 100 })] });
    await fx.alice.scripts.add({
      name: 'slow',
      interpreter: 'sh',
      body: 'echo started\nsleep 30\necho never\n',
    });
    const started = Date.now();
    const results = await fx.alice.scripts.runScript({
      script: 'slow',
      targets: { serverIds: ['s01', 's02'] },
      timeoutMs: 500,
      rollout: { maxConcurrency: 1 },
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(results.servers[0]).toMatchObject({
      state: 'failed',
      timedOut: true,
      unreachable: false,
      countsAgainstBudget: true,
      error: { code: 'TIMEOUT' },
      stdout: { text: 'started\n' },
    });
    expect(results.servers[1]!.state).toBe('not-started');
    expect(results.run.status).toBe('stopped');
  });

  it('runScript — 10 servers, error budget 2, 3 broken: stops at the third failure, says why, lists the untouched as not started', async () => {
    fx = await sopFleet({ servers: 10 });
    await fx.alice.scripts.add(RECORDER);
    for (const id of ['s02', 's04', 's06']) writeFileSync(join(dir, `broken-${id}`), '');
    const plan = await fx.alice.scripts.planRun({
      script: 'recorder',
      params: { DIR: dir },
      targets: { serverIds: serverIds(10) },
      rollout: { errorBudget: { count: 2 }, maxConcurrency: 1 },
    });
    expect(plan.status).toBe('awaiting-start');
    expect(plan.waves).toEqual([{ name: 'all', serverIds: serverIds(10) }]);
    expect(plan.stopCondition).toMatchObject({ maxFailures: 2 });
    expect(plan.stopCondition.description).toContain('once more than 2 of 10 servers have failed');
    expect(await fx.fleet.store.jobs.list(T)).toEqual([]);

    const results = await fx.bob.scripts.startRun(plan.id);
    expect(results.run.status).toBe('stopped');
    expect(results.run.reason).toBe(
      'error budget spent (3 failed servers counted, at most 2 allowed); 4 server(s) not started',
    );
    const notStarted = results.servers.filter((s) => s.state === 'not-started');
    expect(notStarted.map((s) => s.serverId)).toEqual(['s07', 's08', 's09', 's10']);
    expect(notStarted[0]!.error).toEqual({
      code: 'NOT_STARTED',
      message: `not started: ${results.run.reason}`,
    });
    for (const id of ['s07', 's08', 's09', 's10']) expect(existsSync(join(dir, id))).toBe(false);
    expect(results.counts).toMatchObject({ succeeded: 3, failed: 3, 'not-started': 4 });
    expect(results.servers[1]).toMatchObject({ exitCode: 3, stderr: { text: 'broken here\n' } });
    expect(results.job).toMatchObject({
      kind: 'script',
      status: 'stopped',
      summary: { total: 10, succeeded: 3, failed: 3 },
    });
    const final = (await fx.fleet.store.audit.list(T, { action: 'script.run' })).at(-1)!;
    expect(final).toMatchObject({ result: 'failure', reason: results.run.reason });
    expect(final.details).toMatchObject({
      failed: ['s02', 's04', 's06'],
      notStarted: ['s07', 's08', 's09', 's10'],
    });
    expect(await errorOf(fx.bob.scripts.resumeRun(plan.id))).toBeInstanceOf(ConflictError);
  });

  it('runScript — pause on a spent budget; resume without acknowledging stays paused, with acknowledging runs the rest', async () => {
    fx = await sopFleet({ servers: 4 });
    await fx.alice.scripts.add(RECORDER);
    writeFileSync(join(dir, 'broken-s01'), '');
    const paused = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { DIR: dir },
      targets: { serverIds: serverIds(4) },
      rollout: { maxConcurrency: 1, onBudgetSpent: 'pause' },
    });
    expect(paused.run.status).toBe('paused');
    expect(paused.job?.status).toBe('pending');
    expect(paused.counts).toMatchObject({ failed: 1, pending: 3 });
    expect(paused.run.stopCondition.description).toContain('the run pauses');
    expect((await fx.alice.scripts.resumeRun(paused.run.id)).run.status).toBe('paused');
    const resumed = await fx.alice.scripts.resumeRun(paused.run.id, { acknowledgeFailures: true });
    expect(resumed.run.status).toBe('partial');
    expect(resumed.servers.map((s) => [s.serverId, s.state, s.attempt])).toEqual([
      ['s01', 'failed', 1],
      ['s02', 'succeeded', 1],
      ['s03', 'succeeded', 1],
      ['s04', 'succeeded', 1],
    ]);
  });

  it('runScript — secret parameters reach the script but never the store, the audit log or the kept output', async () => {
    const secrets = new MemorySecretStore();
    fx = await sopFleet({ servers: 2, secrets });
    await fx.alice.scripts.add({
      name: 'deploy',
      interpreter: 'sh',
      body: 'echo "token is $TOKEN"\nprintf "%s" "$TOKEN" > "$DIR/$FLEETWARD_SERVER_ID"\n',
      parameters: [
        { name: 'TOKEN', type: 'string', secret: true, required: true },
        { name: 'DIR', type: 'string', required: true },
      ],
    });
    const token = 'tok-3f9a1c-very-secret';
    const plan = await fx.alice.scripts.planRun({
      script: 'deploy',
      params: { TOKEN: token, DIR: dir },
      targets: { serverIds: ['s01', 's02'] },
    });
    expect(plan.params).toEqual({ DIR: dir });
    expect(plan.secretParams).toEqual(['TOKEN']);
    expect(await secrets.get(plan.secretsRef!)).toContain(token);
    const results = await fx.bob.scripts.startRun(plan.id);
    expect(results.run.status).toBe('succeeded');
    expect(readFileSync(join(dir, 's01'), 'utf8')).toBe(token);
    expect(results.servers[0]).toMatchObject({
      outputRedacted: true,
      stdout: { text: 'token is [REDACTED]\n' },
    });
    expect(results.servers[0]!.stdout!.sha256).toBe(
      createHash('sha256').update(`token is ${token}\n`).digest('hex'),
    );
    expect(await secrets.list()).toEqual([]);

    let everything = JSON.stringify(await fx.fleet.store.audit.list(T, { limit: 10_000 }));
    for (const kind of ENTITY_KINDS) everything += JSON.stringify(await fx.fleet.store[kind].listAll(T));
    expect(everything).not.toContain(token);
    const started = (await fx.fleet.store.audit.list(T, { action: 'script.run' })).find(
      (r) => r.result === 'started',
    );
    expect(started!.details['params']).toEqual({ DIR: dir, TOKEN: '[REDACTED]' });
  });

  it('startRun — without a SecretStore the secret values must be passed again, and are checked', async () => {
    fx = await sopFleet({ servers: 1, secrets: null });
    await fx.alice.scripts.add({
      name: 'pin',
      interpreter: 'sh',
      body: 'test "$PIN" = 1234\n',
      parameters: [{ name: 'PIN', type: 'string', secret: true, pattern: '\\d{4}' }],
    });
    const plan = await fx.alice.scripts.planRun({
      script: 'pin',
      params: { PIN: '1234' },
      targets: { serverIds: ['s01'] },
    });
    expect(plan.secretsRef).toBeUndefined();
    const missing = await errorOf(fx.alice.scripts.startRun(plan.id));
    expect((missing as ValidationError).paths).toEqual(['secrets.PIN']);
    const wrong = await errorOf(fx.alice.scripts.startRun(plan.id, { secrets: { PIN: 'abcd' } }));
    expect((wrong as ValidationError).paths).toEqual(['PIN']);
    expect((await fx.alice.scripts.startRun(plan.id, { secrets: { PIN: '1234' } })).run.status).toBe(
      'succeeded',
    );
    // runScript keeps them in memory for the call.
    const direct = await fx.alice.scripts.runScript({
      script: 'pin',
      params: { PIN: '1234' },
      targets: { serverIds: ['s01'] },
    });
    expect(direct.run.status).toBe('succeeded');
  });

  it('planRun — servers of an OS family the script is not for are refused before anything is stored', async () => {
    fx = await sopFleet({ servers: 2 });
    await fx.alice.servers.update(
      's02',
      { os: { family: 'rhel', id: 'rocky', versionId: '9' } },
      { expectedVersion: 1 },
    );
    await fx.alice.scripts.add({
      name: 'apt-clean',
      interpreter: 'sh',
      body: 'apt-get clean\n',
      osFamilies: ['debian'],
    });
    const error = await errorOf(
      fx.alice.scripts.planRun({ script: 'apt-clean', targets: { serverIds: ['s01', 's02'] } }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain('s02 runs rhel');
    expect(await fx.fleet.store.scriptRuns.list(T)).toEqual([]);
  });

  it('runScript — waves: a canary wave first, and its failure leaves the next wave untouched', async () => {
    fx = await sopFleet({ servers: 4 });
    await fx.alice.servers.update('s03', { labels: { env: 'prod', canary: 'yes' } }, { expectedVersion: 1 });
    await fx.alice.scripts.add(RECORDER);
    writeFileSync(join(dir, 'broken-s03'), '');
    const results = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { DIR: dir },
      targets: { selector: { labels: { env: 'prod' } } },
      rollout: { waves: [{ name: 'canary', selector: { labels: { canary: 'yes' } } }] },
    });
    expect(results.run.waves).toEqual([
      { name: 'canary', serverIds: ['s03'] },
      { name: 'remaining', serverIds: ['s01', 's02', 's04'] },
    ]);
    expect(results.servers.map((s) => `${s.serverId}:${s.wave}:${s.state}`)).toEqual([
      's01:remaining:not-started',
      's02:remaining:not-started',
      's03:canary:failed',
      's04:remaining:not-started',
    ]);
  });

  it('runScript — unreachable servers fail without spending the budget when unreachableCountsAsError is off', async () => {
    const down: Adapter = {
      name: 'down',
      exec: {
        exec: async (server) => {
          throw new TransportError(`connect ECONNREFUSED to ${server.name}`, {
            details: { commandMayHaveRun: false },
          });
        },
      },
    };
    fx = await sopFleet({ servers: 3, adapters: [createLocalAdapter(), down] });
    await fx.alice.servers.update('s01', { adapter: 'down' }, { expectedVersion: 1 });
    await fx.alice.scripts.add(RECORDER);
    const results = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { DIR: dir },
      targets: { serverIds: serverIds(3) },
      rollout: { maxConcurrency: 1, unreachableCountsAsError: false },
    });
    expect(results.servers[0]).toMatchObject({
      state: 'failed',
      unreachable: true,
      countsAgainstBudget: false,
      error: { code: 'TRANSPORT_FAILED' },
    });
    expect(results.servers.slice(1).map((s) => s.state)).toEqual(['succeeded', 'succeeded']);
    expect(results.run.status).toBe('partial');
  });

  it('runScript — a changed host key stops the run whatever the budget', async () => {
    const spoofed: Adapter = {
      name: 'spoofed',
      exec: {
        exec: async (server) => {
          throw new HostKeyMismatchError(`host key of ${server.name} is not the pinned one; nothing was run`);
        },
      },
    };
    fx = await sopFleet({ servers: 3, adapters: [createLocalAdapter(), spoofed] });
    await fx.alice.servers.update('s01', { adapter: 'spoofed' }, { expectedVersion: 1 });
    await fx.alice.scripts.add(RECORDER);
    const results = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { DIR: dir },
      targets: { serverIds: serverIds(3) },
      rollout: { maxConcurrency: 1, errorBudget: { percent: 100 } },
    });
    expect(results.run.status).toBe('stopped');
    expect(results.run.reason).toBe('the host key of s01 changed; 2 server(s) not started');
  });
});

describe('cancelRun', () => {
  it('cancelRun — from another session: the running script is killed, the rest cancelled, the run ends cancelled', async () => {
    fx = await sopFleet({ servers: 3, adapters: [createLocalAdapter({ killGraceMs: 100 })] });
    await fx.alice.scripts.add({ name: 'slow', interpreter: 'sh', body: 'sleep 30\n' });
    const plan = await fx.alice.scripts.planRun({
      script: 'slow',
      targets: { serverIds: serverIds(3) },
      rollout: { maxConcurrency: 1 },
    });
    const { bob } = fx;
    scriptEvents(fx.fleet).once('script.server.started', () => {
      void bob.scripts.cancelRun(plan.id, { reason: 'wrong change window' });
    });
    const results = await fx.alice.scripts.startRun(plan.id, { cancelPollMs: 50 });
    expect(results.run.status).toBe('cancelled');
    expect(results.servers.map((s) => s.state)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(results.servers[0]).toMatchObject({ attempt: 1, error: { code: 'ABORTED' } });
    expect(results.servers[1]).toMatchObject({ attempt: 0, error: { code: 'NOT_STARTED' } });
    expect(results.run.cancelRequested).toBe(true);
  });

  it('cancelRun — a paused run is ended at once: its waiting servers are cancelled', async () => {
    fx = await sopFleet({ servers: 3 });
    await fx.alice.scripts.add(RECORDER);
    writeFileSync(join(dir, 'broken-s01'), '');
    const paused = await fx.alice.scripts.runScript({
      script: 'recorder',
      params: { DIR: dir },
      targets: { serverIds: serverIds(3) },
      rollout: { maxConcurrency: 1, onBudgetSpent: 'pause' },
    });
    expect(paused.run.status).toBe('paused');
    expect((await fx.bob.scripts.cancelRun(paused.run.id)).status).toBe('cancelled');
    const results = await fx.alice.scripts.getRun(paused.run.id);
    expect(results.servers.map((s) => s.state)).toEqual(['failed', 'cancelled', 'cancelled']);
    expect(results.job).toMatchObject({ status: 'cancelled' });
  });

  it('cancelRun — a run not started yet is cancelled at once and can never start', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.alice.scripts.add({ name: 'noop', interpreter: 'sh', body: 'true\n' });
    const plan = await fx.alice.scripts.planRun({ script: 'noop', targets: { serverIds: ['s01'] } });
    expect((await fx.bob.scripts.cancelRun(plan.id)).status).toBe('cancelled');
    expect(await errorOf(fx.alice.scripts.startRun(plan.id))).toBeInstanceOf(ConflictError);
    expect(await errorOf(fx.alice.scripts.cancelRun(plan.id))).toBeInstanceOf(ConflictError);
  });

  it('startRun — a caller without script.run on the run cannot start or cancel it', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.alice.scripts.add({ name: 'noop', interpreter: 'sh', body: 'true\n' });
    const plan = await fx.alice.scripts.planRun({ script: 'noop', targets: { serverIds: ['s01'] } });
    await fx.fleet.store.principals.create({
      tenantId: T,
      id: 'eve',
      name: 'Eve',
      kind: 'human',
      affiliation: 'contractor',
    });
    const eve = fx.fleet.as({ tenantId: T, principalId: 'eve' });
    expect(await errorOf(eve.scripts.startRun(plan.id))).toBeInstanceOf(AuthorizationError);
    expect(await errorOf(eve.scripts.cancelRun(plan.id))).toBeInstanceOf(AuthorizationError);
    expect(await errorOf(eve.scripts.getRun(plan.id))).toBeInstanceOf(AuthorizationError);
  });
});

describe('script run events', () => {
  it('runScript — script.run.completed is in the outbox, written with the run’s end', async () => {
    fx = await sopFleet({ servers: 1 });
    await fx.fleet.store.webhookEndpoints.create({
      tenantId: T,
      url: 'http://127.0.0.1:9/hooks',
      secretRef: 'hooks/main',
      events: ['script.*'],
    });
    await fx.alice.scripts.add({ name: 'noop', interpreter: 'sh', body: 'true\n' });
    const seen: string[] = [];
    scriptEvents(fx.fleet).on('script.server.completed', (e) => seen.push(`${e.serverId}:${e.status}`));
    const results = await fx.alice.scripts.runScript({ script: 'noop', targets: { serverIds: ['s01'] } });
    expect(seen).toEqual(['s01:succeeded']);
    const messages = await fx.fleet.store.outbox.listAll(T);
    expect(messages.map((m) => m.eventType)).toEqual(['script.run.completed']);
    expect(messages[0]!.payload).toMatchObject({
      runId: results.run.id,
      contentHash: results.run.contentHash,
      status: 'succeeded',
      succeeded: 1,
    });
    expect((await fx.alice.scripts.listRuns({ script: 'noop' })).map((r) => r.id)).toEqual([results.run.id]);
    expect((await fx.alice.scripts.getRun(results.run.id)).servers[0]!.state).toBe('succeeded');
  });
});

describe('run output files and links', () => {
  it('startRun — output files are never written through a link at the run folder or at a file; the error names the path', async () => {
    fx = await sopFleet({ servers: 1 });
    const f = fx;
    const outside = join(dir, 'outside');
    const outputDir = join(dir, 'out');
    await f.alice.scripts.add({ name: 'say', interpreter: 'sh', body: 'echo secret output\n' });
    // Every layout, not a sample: each is one run.
    for (const where of ['run folder', 'stdout', 'stderr'] as const) {
      for (const layout of ['link-to-file', 'link-to-dir', 'dangling-link', 'file', 'dir'] as const) {
        rmSync(outside, { recursive: true, force: true });
        mkdirSync(join(outside, 'etc'), { recursive: true });
        writeFileSync(join(outside, 'passwd'), 'root:x:0:0\n');
        const plan = await f.alice.scripts.planRun({ script: 'say', targets: { serverIds: ['s01'] } });
        const runDir = join(outputDir, plan.id);
        mkdirSync(where === 'run folder' ? outputDir : runDir, { recursive: true });
        const path = where === 'run folder' ? runDir : join(runDir, `s01.${where}`);
        if (layout === 'link-to-file') symlinkSync(join(outside, 'passwd'), path);
        if (layout === 'link-to-dir') symlinkSync(join(outside, 'etc'), path);
        if (layout === 'dangling-link') symlinkSync(join(outside, 'gone'), path);
        if (layout === 'file') writeFileSync(path, 'mine\n');
        if (layout === 'dir') mkdirSync(path);
        const results = await f.alice.scripts.startRun(plan.id, { outputDir });
        const server = results.servers[0]!;
        const label = `${layout} at ${where}`;
        expect(readFileSync(join(outside, 'passwd'), 'utf8'), label).toBe('root:x:0:0\n');
        expect(readdirSync(join(outside, 'etc')), label).toEqual([]);
        expect(existsSync(join(outside, 'gone')), label).toBe(false);
        if (where === 'run folder' ? layout === 'dir' : layout === 'file') {
          // A real run folder is used; an earlier output file of the same name is replaced whole.
          expect(server.state, label).toBe('succeeded');
          expect(readFileSync(join(runDir, 's01.stdout'), 'utf8'), label).toBe('secret output\n');
          expect(readFileSync(join(runDir, 's01.stderr'), 'utf8'), label).toBe('');
          continue;
        }
        expect(server.state, label).toBe('failed');
        expect(server.fullOutput, label).toBeUndefined();
        expect(server.error?.code, label).toBe('VALIDATION_FAILED');
        expect(server.error?.message, label).toContain(path);
      }
    }
  });
});
