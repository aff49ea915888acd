import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyAuditChain } from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, expect, it, vi } from 'vitest';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

const root = fileURLToPath(new URL('..', import.meta.url));
let lab: Lab | undefined;
let dir: string | undefined;
afterAll(async () => {
  await lab?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describeWithLab('a patch run survives its orchestrator', () => {
  it('executePlan — SIGKILL of the orchestrator mid-run, then a new process: every server patched exactly once, audit verifies', async () => {
    lab = await startLab({ hosts: ['r1', 'r2', 'r3'].map((name) => ({ name, flavour: 'debian' as const })) });
    dir = mkdtempSync(join(tmpdir(), 'fleetward-resume-'));
    const db = join(dir, 'fleet.db');
    const accessFile = join(dir, 'access.json');
    const access = labAccess(lab);
    writeFileSync(accessFile, JSON.stringify(access), { mode: 0o600 });

    let fleet = labFleet(access, createSqliteStore({ path: db }));
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'lab',
      rollout: {
        waves: [],
        maxConcurrency: 1,
        errorBudget: { count: 0 },
        unreachableCountsAsError: true,
        onBudgetSpent: 'stop',
      },
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.approvePlan(plan.id, { hash: plan.hash });
    await fleet.close();

    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'e2e/support/run-plan.ts'), db, accessFile, plan.id],
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
    const killedAfter = await new Promise<string>((resolve, reject) => {
      let buffer = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) {
          const event = JSON.parse(line) as { serverId?: string; step?: string };
          if (event.step === 'done') {
            child.kill('SIGKILL');
            resolve(event.serverId!);
          }
        }
      });
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`orchestrator exited on its own (${code}): ${stderr}`));
      });
    });
    await new Promise((r) => child.once('close', r));
    expect(killedAfter).toBe('r1');

    // The dead process's lease expires (real time); a new process takes the run over from the store.
    fleet = labFleet(access, createSqliteStore({ path: db }));
    try {
      const store = fleet.store;
      await vi.waitFor(
        async () => expect(await store.leases.get(`patch-run:${TENANT}:${plan.id}`)).toBeUndefined(),
        { timeout: 15_000, interval: 50 },
      );
      const job = await fleet.as({ tenantId: TENANT, principalId: 'bob' }).patch.executePlan(plan.id);
      expect(job.status).toBe('succeeded');
      const tasks = await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } });
      expect(tasks.map((t) => [t.serverId, t.status]).sort()).toEqual([
        ['r1', 'succeeded'],
        ['r2', 'succeeded'],
        ['r3', 'succeeded'],
      ]);
      for (const name of ['r1', 'r2', 'r3']) {
        const log = await lab.host(name).readFile('/var/log/dpkg.log');
        const upgrades = log.split('\n').filter((l) => / upgrade labdemo:all 1\.0-1 1\.1-1$/.test(l));
        expect(upgrades, `${name} dpkg.log`).toHaveLength(1);
      }
      const audit = await fleet.store.audit.list(TENANT, { limit: 10_000 });
      expect(verifyAuditChain(audit).ok).toBe(true);
      const execute = audit.filter((r) => r.action === 'patch.execute');
      expect(execute.map((r) => r.result)).toEqual(['started', 'started', 'success']);
      expect(execute[1]!.details).toMatchObject({ resumed: true });
    } finally {
      await fleet.close();
    }
  }, 300_000);
});
