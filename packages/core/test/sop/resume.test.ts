import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConflictError,
  createFleet,
  createLocalAdapter,
  type Fleet,
  verifyAuditChain,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { serverIds, sopFleet, T } from './helpers.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-resume-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const lines = (path: string) =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];

/**
 * Plans a run over five servers in a SQLite file, starts it in a child process and SIGKILLs that
 * process while s03's script runs (it appends a line to `$DIR/<server id>` and sleeps). Resolves
 * the database path and the run id.
 */
async function crashMidRun(): Promise<{ db: string; runId: string }> {
  const db = join(dir, 'fleet.db');
  const setup = await sopFleet({ servers: 5, store: createSqliteStore({ path: db }) });
  await setup.alice.scripts.add({
    name: 'append',
    interpreter: 'sh',
    body: 'echo "ran $FLEETWARD_RUN_ID" >> "$DIR/$FLEETWARD_SERVER_ID"\nsleep 1\n',
    parameters: [{ name: 'DIR', type: 'string', required: true }],
  });
  const plan = await setup.alice.scripts.planRun({
    script: 'append',
    params: { DIR: dir },
    targets: { serverIds: serverIds(5) },
    rollout: { maxConcurrency: 1, errorBudget: { count: 1 } },
  });
  await setup.fleet.close();

  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'packages/core/test/sop/fixtures/crash-run.ts'), db, T, plan.id],
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
  await new Promise<void>((resolve, reject) => {
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop()!;
      for (const line of parts) {
        const event = JSON.parse(line) as { started?: string };
        if (event.started === 's03') {
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 300);
        }
      }
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`the orchestrator exited on its own (${code}): ${stderr}`));
    });
  });
  await new Promise((r) => child.once('close', r));
  return { db, runId: plan.id };
}

/** Resolves once the dead orchestrator's lease on the run has run out (real time, store clock). */
async function leaseExpired(fleet: Fleet, runId: string): Promise<void> {
  await vi.waitFor(
    async () => expect(await fleet.store.leases.get(`script-run:${T}:${runId}`)).toBeUndefined(),
    { timeout: 15_000, interval: 50 },
  );
}

/** A new Fleet on the same SQLite file, as a new orchestrator process would open it. */
function openAgain(db: string) {
  const fleet = createFleet({ store: createSqliteStore({ path: db }), adapters: [createLocalAdapter()] });
  return { fleet, scripts: fleet.as({ tenantId: T, principalId: 'alice' }).scripts };
}

describe('a script run survives its orchestrator', () => {
  it('resumeRun — SIGKILL of the orchestrator mid-run, then this process resumes: no server runs twice, the audit trail verifies', async () => {
    const { db, runId } = await crashMidRun();
    const { fleet, scripts } = openAgain(db);
    try {
      // While the dead process's lease lasts, nobody else may take the run over.
      expect(await scripts.resumeRun(runId).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
      await leaseExpired(fleet, runId);
      const results = await scripts.resumeRun(runId);
      expect(results.run.status).toBe('partial');
      expect(results.servers.map((s) => [s.serverId, s.state, s.attempt])).toEqual([
        ['s01', 'succeeded', 1],
        ['s02', 'succeeded', 1],
        ['s03', 'failed', 1],
        ['s04', 'succeeded', 1],
        ['s05', 'succeeded', 1],
      ]);
      expect(results.servers[2]!.error).toMatchObject({ code: 'INTERRUPTED' });
      for (const id of ['s01', 's02', 's04', 's05']) expect(lines(join(dir, id)), id).toHaveLength(1);
      // s03 was killed around its start: it ran once or not at all, and never again.
      expect(lines(join(dir, 's03')).length).toBeLessThanOrEqual(1);

      const audit = await fleet.store.audit.list(T, { limit: 10_000 });
      expect(verifyAuditChain(audit).ok).toBe(true);
      const runRecords = audit.filter((r) => r.action === 'script.run' && r.target?.type === 'script-run');
      // The refused resume while the lease lasted is in the log too (rule 1).
      expect(runRecords.map((r) => r.result)).toEqual([
        'success',
        'started',
        'failure',
        'started',
        'failure',
      ]);
      expect(runRecords[2]!.details).toEqual({ code: 'CONFLICT' });
      expect(runRecords[3]!.details).toMatchObject({ resumed: true, interrupted: ['s03'] });
      const perServer = audit.filter((r) => r.action === 'script.run' && r.target?.type === 'server');
      expect(perServer.map((r) => r.target!.id).sort()).toEqual(serverIds(5));
    } finally {
      await fleet.close();
    }
  }, 60_000);

  it('cancelRun — a run whose orchestrator died is ended at once: the interrupted server failed, the rest cancelled', async () => {
    const { db, runId } = await crashMidRun();
    const { fleet, scripts } = openAgain(db);
    try {
      await leaseExpired(fleet, runId);
      const cancelled = await scripts.cancelRun(runId, { reason: 'the change was called off' });
      expect(cancelled.status).toBe('cancelled');
      expect(cancelled.reason).toBe('cancelled by alice: the change was called off');
      const results = await scripts.getRun(runId);
      expect(results.servers.map((s) => [s.serverId, s.state])).toEqual([
        ['s01', 'succeeded'],
        ['s02', 'succeeded'],
        ['s03', 'failed'],
        ['s04', 'cancelled'],
        ['s05', 'cancelled'],
      ]);
      expect(results.job?.status).toBe('cancelled');
      for (const id of ['s04', 's05']) expect(lines(join(dir, id)), id).toEqual([]);
      expect(await scripts.resumeRun(runId).catch((e: unknown) => e)).toBeInstanceOf(ConflictError);
    } finally {
      await fleet.close();
    }
  }, 60_000);
});
