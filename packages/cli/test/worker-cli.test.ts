import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT } from '@fleetward/cli';
import { createPostgresStore } from '@fleetward/store-postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  describeWithPostgres,
  dropSchema,
  freshSchema,
  POSTGRES_URL,
} from '../../store-postgres/test/support/postgres.js';
import { runCliIn, runCliWith } from './support/run.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

/** A TCP port that was free a moment ago (a CLI flag cannot say 0 and tell the port back). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface WorkerProcess {
  id: string;
  /** Everything it printed on stdout up to its start line. */
  stdout: string;
  proc: ChildProcess;
  exited: Promise<{ code: number | null; stderr: string }>;
}

/** Starts `fleetward worker` as its own process (from the sources) and resolves once it says it started. */
function startWorker(env: NodeJS.ProcessEnv, args: string[] = []): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'packages/cli/src/bin.ts', 'worker', ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    proc.on('exit', (code) => resolve({ code, stderr })),
  );
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      stdout += d;
      const id = /^Worker (\S+) started: /m.exec(stdout)?.[1];
      if (id) resolve({ id, stdout, proc, exited });
    });
    void exited.then(({ code }) => reject(new Error(`worker exited with ${code}: ${stderr}`)));
  });
}

describe('fleetward worker — SQLite', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetward-worker-sqlite-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('worker — on a SQLite store fails with VALIDATION_FAILED saying workers need PostgreSQL', async () => {
    const r = await runCliIn(join(dir, 'data'), ['worker']);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('fleetward worker needs a PostgreSQL store');
    expect(r.stderr).toContain('VALIDATION_FAILED');
    const json = await runCliIn(join(dir, 'data'), ['worker', '--json']);
    expect(JSON.parse(json.stdout).error).toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining('is SQLite'),
    });
  });

  it('workers.enabled — on a SQLite store every command that opens it fails with the same error', async () => {
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({ store: join(dir, 'data', 'fleetward.db'), workers: { enabled: true } }),
    );
    const r = await runCliWith(['servers'], { FLEETWARD_CONFIG: config });
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('"workers": {"enabled": true} in the configuration needs a PostgreSQL store');
  });

  it('worker — bad --concurrency, --queue-schema and --metrics-port are usage errors', async () => {
    for (const args of [
      ['worker', '--concurrency', '0'],
      ['worker', '--queue-schema', 'Bad-Name'],
      ['worker', '--metrics-port', '70000'],
    ]) {
      expect((await runCliIn(join(dir, 'data'), args)).code, args.join(' ')).toBe(EXIT.usage);
    }
  });
});

describeWithPostgres('fleetward worker — PostgreSQL', () => {
  let dir: string;
  let schema: string;
  let queueSchema: string;
  /** The environment of every command: only the configuration file names the store and the queue. */
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleetward-worker-pg-'));
    schema = freshSchema();
    queueSchema = freshSchema();
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        store: POSTGRES_URL,
        postgresSchema: schema,
        workers: { enabled: true, schema: queueSchema },
      }),
    );
    env = { PATH: process.env['PATH'], HOME: dir, FLEETWARD_CONFIG: config };
    const init = await runCliWith(['init'], env);
    expect(init.code, init.stderr).toBe(EXIT.ok);
    // A second server on this machine (the local adapter), so that the run has two tasks.
    const csv = join(dir, 'servers.csv');
    writeFileSync(csv, 'id,provider,account\nlocal-2,local,local\n');
    const added = await runCliWith(['servers', 'import', csv], env);
    expect(added.code, added.stderr).toBe(EXIT.ok);
  });

  afterAll(async () => {
    for (const s of [schema, queueSchema, `${queueSchema}_boss`]) await dropSchema(s);
    rmSync(dir, { recursive: true, force: true });
  });

  it('queue limit / queue limits — caps set, listed and removed in the queue of the configuration; bad ones are usage errors', async () => {
    const set = await runCliWith(['queue', 'limit', 'local', '--max', '5'], env);
    expect(set.code, set.stderr).toBe(EXIT.ok);
    expect(set.stdout).toContain('At most 5 servers in flight for tenant local');
    const each = await runCliWith(['queue', 'limit', '*', '--account', '*', '--max', '3'], env);
    expect(each.code, each.stderr).toBe(EXIT.ok);
    const listed = await runCliWith(['queue', 'limits', '--json'], env);
    expect(listed.code, listed.stderr).toBe(EXIT.ok);
    expect(JSON.parse(listed.stdout)).toEqual([
      { tenantId: '*', accountId: '*', maxInFlight: 3 },
      { tenantId: 'local', maxInFlight: 5 },
    ]);
    // The caps are in the queue's table, where every process reads them.
    const { createRolloutQueue } = await import('@fleetward/worker');
    const queue = await createRolloutQueue({
      connectionString: POSTGRES_URL,
      schema: queueSchema,
      supervise: false,
    });
    try {
      expect(await queue.limits()).toEqual(JSON.parse(listed.stdout));
    } finally {
      await queue.close();
    }
    for (const bad of [
      ['queue', 'limit', 'local'],
      ['queue', 'limit', 'local', '--max', '0'],
      ['queue', 'limit', 'local', '--max', '2', '--remove'],
    ]) {
      const r = await runCliWith(bad, env);
      expect(r.code, bad.join(' ')).toBe(EXIT.usage);
    }
    for (const args of [
      ['queue', 'limit', 'local', '--remove'],
      ['queue', 'limit', '*', '--account', '*', '--remove'],
    ]) {
      expect((await runCliWith(args, env)).code).toBe(EXIT.ok);
    }
    const none = await runCliWith(['queue', 'limits'], env);
    expect(none.stdout).toContain('No caps');
  });

  it('worker + script run — a run started by the CLI is carried out by the worker processes and succeeds', async () => {
    const workers = await Promise.all([startWorker(env), startWorker(env)]);
    const ids = workers.map((w) => w.id);
    expect(new Set(ids).size).toBe(2);
    expect(workers[0]!.stdout).toContain(`concurrency 16, queue postgres:${queueSchema}`);

    const file = join(dir, 'hello.sh');
    writeFileSync(file, 'echo "hello $WHO"\n');
    const added = await runCliWith(['script', 'add', file, '--name', 'hello', '-p', 'WHO!'], env);
    expect(added.code, added.stderr).toBe(EXIT.ok);
    const ran = await runCliWith(
      ['script', 'run', 'hello', '-s', 'localhost,local-2', '-p', 'WHO=fleet', '--json'],
      env,
    );
    expect(ran.code, ran.stderr).toBe(EXIT.ok);
    const results = JSON.parse(ran.stdout) as {
      run: { status: string; jobId: string };
      servers: { serverId: string; state: string; stdout?: { text: string } }[];
    };
    expect(results.run.status).toBe('succeeded');
    const byServer = results.servers
      .map((s) => [s.serverId, s.state, s.stdout?.text])
      .sort(([a], [b]) => String(a).localeCompare(String(b)));
    expect(byServer).toEqual([
      ['local-2', 'succeeded', 'hello fleet\n'],
      ['localhost', 'succeeded', 'hello fleet\n'],
    ]);

    // Back channel: the store's tasks name the worker that carried each out.
    const store = await createPostgresStore({ connectionString: POSTGRES_URL, schema });
    try {
      const tasks = await store.taskResults.listAll('default', { where: { jobId: results.run.jobId } });
      expect(tasks).toHaveLength(2);
      for (const task of tasks) expect(ids).toContain(task.details?.['workerId']);
    } finally {
      await store.close();
    }

    for (const w of workers) w.proc.kill('SIGTERM');
    for (const w of workers) expect((await w.exited).code).toBe(0);
  }, 90_000);

  it('worker --metrics-port — serves /metrics and /healthz, 404 elsewhere; SIGTERM exits 0', async () => {
    const port = await freePort();
    const worker = await startWorker(env, ['--metrics-port', String(port), '--concurrency', '3']);
    const base = `http://127.0.0.1:${port}`;
    expect(worker.stdout).toContain(`concurrency 3`);
    expect(worker.stdout).toContain(`metrics at ${base}/metrics`);

    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toContain(`fleetward_worker_tasks_in_flight{worker="${worker.id}"} 0`);
    expect(text).toContain('fleetward_worker_queue_depth');

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'running', id: worker.id, inFlight: 0 });

    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404);

    worker.proc.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  }, 60_000);
});
