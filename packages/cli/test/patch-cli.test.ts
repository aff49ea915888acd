import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { createFleet, createLocalAdapter, type Fleet, type PatchPlan } from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { createColors } from 'picocolors';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { planSummary } from '../src/patch-commands.js';
import { type CliResult, runCliIn } from './support/run.js';

let dir: string;
const run = (...args: string[]) => runCliIn(dir, args);

/**
 * Runs the CLI as at a terminal (progress lines on), on the initialised store. `onStderr` sees the
 * standard error written so far after every write.
 */
async function runAtTerminal(
  args: string[],
  onStderr: (text: string) => void = () => {},
): Promise<CliResult> {
  await runCliIn(dir, ['servers']);
  const out = { stdout: '', stderr: '' };
  const code = await runCli(['--data-dir', dir, ...args], {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
      onStderr(out.stderr);
    },
    env: { NO_COLOR: '1' },
    isTTY: true,
  });
  return { code, ...out };
}

/** Works on the CLI's store directly, as an embedder (or an attacker with the file) would. */
async function withFleet<T>(fn: (fleet: Fleet) => Promise<T>): Promise<T> {
  const fleet = createFleet({
    store: createSqliteStore({ path: join(dir, 'fleetward.db') }),
    adapters: [createLocalAdapter()],
  });
  try {
    return await fn(fleet);
  } finally {
    await fleet.close();
  }
}

const admin = (fleet: Fleet) => fleet.as({ tenantId: 'default', principalId: 'local-admin' });

/** A second administrator, so that someone other than the requester can approve. */
const addBob = () =>
  withFleet(async (fleet) => {
    await admin(fleet).iam.addPrincipal({ id: 'bob', name: 'Bob', kind: 'human', affiliation: 'employee' });
    await admin(fleet).iam.bindRole('bob', 'tenant-admin');
  });

const runLease = (planId: string) =>
  withFleet((fleet) => fleet.store.leases.get(`patch-run:default:${planId}`));

/** The next 1 January, 00:00 UTC: when the test policy's window opens. */
function nextNewYear(): string {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear() + 1, 0, 1)).toISOString();
}

/**
 * A project `web` over `web-1`, a server nobody can log in to (so nothing is ever installed), and
 * a policy `sec` whose window opens on 1 January only.
 */
async function unreachableFleet(): Promise<void> {
  expect((await run('servers', 'add', 'web-1', '--address', '127.0.0.1', '--port', '1')).code).toBe(EXIT.ok);
  expect((await run('projects', 'add', 'web', '--server', 'web-1')).code).toBe(EXIT.ok);
  const policy = await run(
    'policies',
    'add',
    'sec',
    '--project',
    'web',
    '--window-cron',
    '0 0 1 1 *',
    '--window-minutes',
    '5',
  );
  expect(policy.code, policy.stderr).toBe(EXIT.ok);
  await addBob();
}

async function approvedPlan(): Promise<PatchPlan> {
  const planned = await run('plan', '--policy', 'sec', '--json');
  expect(planned.code, planned.stderr).toBe(EXIT.partial);
  const plan = JSON.parse(planned.stdout) as PatchPlan;
  const approved = await run('--as', 'bob', 'approve', plan.id, '--hash', plan.hash);
  expect(approved.code, approved.stderr).toBe(EXIT.ok);
  return plan;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-patch-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward plan, approve, patch', () => {
  it('plan/approve/patch — a plan someone else approves, -o id, and no install outside the window', async () => {
    await unreachableFleet();
    const asId = await run('plan', '--policy', 'sec', '-o', 'id');
    expect(asId.code).toBe(EXIT.partial);
    expect(asId.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(asId.stderr).toContain('cannot be patched by this plan and will be skipped: web-1');

    const human = await run('plan', '--policy', 'sec');
    const id = /^Plan (\S+) \(awaiting-approval\) of policy sec, project web$/m.exec(human.stdout)?.[1];
    const hash = /^Hash ([0-9a-f]{64})$/m.exec(human.stdout)?.[1];
    expect(human.stdout).toMatch(/^web-1 +all +0 +0 +0 +- +blocked$/m);
    expect(human.stdout).toMatch(/^ {2}web-1: no successful scan: /m);
    expect(human.stdout.trimEnd().split('\n').at(-1)).toBe(`  fleetward approve ${id} --hash ${hash}`);
    expect(human.stdout).toContain('someone other than local-admin');

    const noHash = await run('approve', id!);
    expect(noHash.code).toBe(EXIT.usage);
    expect(noHash.stderr).toContain('--hash is required');
    const badHash = await run('approve', id!, '--hash', hash!.slice(1));
    expect(badHash.code).toBe(EXIT.usage);
    expect(badHash.stderr).toContain('64 hexadecimal characters');
    const own = await run('approve', id!, '--hash', hash!);
    expect(own.code).toBe(EXIT.failure);
    expect(own.stderr).toContain('cannot approve');
    const approved = await run('--as', 'bob', 'approve', id!, '--hash', hash!);
    expect(approved.code, approved.stderr).toBe(EXIT.ok);
    expect(approved.stdout).toContain(`Plan ${id} is approved`);
    expect(approved.stdout.trimEnd().endsWith(`fleetward patch ${id} --wait-for-window`)).toBe(true);

    const waiting = await run('--as', 'bob', 'patch', id!, '--json');
    expect(waiting.code, waiting.stderr).toBe(EXIT.ok);
    expect(JSON.parse(waiting.stdout)).toMatchObject({
      status: 'pending',
      reason: `waiting for the maintenance window opening ${nextNewYear()}`,
    });
    const told = await run('--as', 'bob', 'patch', id!);
    expect(told.stdout).toContain(`Wait for it with: fleetward patch ${id} --wait-for-window`);
    // The waiting run holds on to its policy.
    const inUse = await run('policies', 'remove', 'sec');
    expect(inUse.code).toBe(EXIT.failure);
    expect(inUse.stderr).toContain(`in use by executing plan ${id}`);
    expect((await run('policies', 'show', 'sec')).code).toBe(EXIT.ok);
  });

  it('plan — an unknown policy is NOT_FOUND naming it; --project is a usage error', async () => {
    const r = await run('plan', '--policy', 'nope');
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('patch policy "nope" not found');
    expect(r.stderr).toContain('hint:');
    expect((await run('plan', '--policy', 'sec', '--project', 'web')).code).toBe(EXIT.usage);
  });

  it('patch --wait-for-window — shows when the window opens, holds the run lease while waiting; SIGTERM stops waiting, releases it and leaves the plan approved', async () => {
    await unreachableFleet();
    const plan = await approvedPlan();
    let sawWaiting: () => void = () => {};
    const waitingShown = new Promise<void>((resolve) => {
      sawWaiting = resolve;
    });
    const running = runAtTerminal(['--as', 'bob', 'patch', plan.id, '--wait-for-window'], (stderr) => {
      if (stderr.includes('Waiting for the maintenance window')) sawWaiting();
    });
    await waitingShown;
    expect(await runLease(plan.id)).toBeDefined();
    process.emit('SIGTERM');
    const r = await running;

    expect(r.stderr).toContain(`Waiting for the maintenance window: opens ${nextNewYear()}`);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stdout).toMatch(/^Not started: waiting for the maintenance window .*the caller stopped waiting/);
    expect(await runLease(plan.id)).toBeUndefined();
    // Nothing was started and the approval stands: the next run waits (or runs) again.
    const again = await run('--as', 'bob', 'patch', plan.id);
    expect(again.code, again.stderr).toBe(EXIT.ok);
    expect(again.stderr).not.toContain('being executed by another process');
    expect(again.stdout).toContain(
      `Not started: waiting for the maintenance window opening ${nextNewYear()}`,
    );
  });

  it('patch --wait-for-window — says when the window opened, then a line per server', async () => {
    await unreachableFleet();
    const planned = await runAtTerminal(['plan', '--policy', 'sec']);
    expect(planned.stderr).toMatch(/\[1\/1\] failed web-1: /);
    const id = /^Plan (\S+) /m.exec(planned.stdout)![1]!;
    const hash = /^Hash (\S+)$/m.exec(planned.stdout)![1]!;
    expect((await run('--as', 'bob', 'approve', id, '--hash', hash)).code).toBe(EXIT.ok);
    // The window moves to a few seconds from now: execution reads the policy as it is then.
    const opens = new Date(Math.ceil(Date.now() / 1000) * 1000 + 5000).toISOString();
    await withFleet(async (fleet) => {
      const policies = admin(fleet).patch.policies;
      const policy = await policies.get('sec');
      await policies.update(
        'sec',
        { window: { dates: [opens], durationMinutes: 60, timeZone: 'UTC' } },
        { expectedVersion: policy.version },
      );
    });

    const r = await runAtTerminal(['--as', 'bob', 'patch', id, '--wait-for-window']);
    const lines = r.stderr.split('\n');
    const at = (pattern: RegExp) => lines.findIndex((l) => pattern.test(l));
    expect(at(new RegExp(`^Waiting for the maintenance window: opens ${opens}`))).toBeGreaterThan(-1);
    expect(at(new RegExp(`^The maintenance window opened at ${opens}: patching\\.$`))).toBeGreaterThan(
      at(/^Waiting for the maintenance window/),
    );
    expect(at(/^Wave all: web-1$/)).toBeGreaterThan(at(/^The maintenance window opened/));
    expect(at(/^ {2}skipped web-1: blocked at planning: no successful scan/)).toBeGreaterThan(
      at(/^Wave all/),
    );
    expect(r.code).toBe(EXIT.partial);
    expect(r.stdout).toMatch(/^Run \S+ partial: 0 of 1 server\(s\) patched, 0 failed/);
    expect(await runLease(id)).toBeUndefined();
  });
});

describe('the plan as a reviewer reads it', () => {
  it('planSummary — lists each package held back for a secondary approval with its reason, not the others', () => {
    const plan = {
      id: 'p1',
      status: 'awaiting-approval',
      policyId: 'db-security',
      projectId: 'db',
      hash: 'a'.repeat(64),
      stopCondition: { maxFailures: 1 },
      waves: [{ name: 'all', serverIds: ['db-1'] }],
      servers: [
        {
          serverId: 'db-1',
          scanId: 's1',
          selected: [],
          resolved: [],
          heldBack: [
            {
              name: 'labdemo',
              version: '1.1-1',
              reason: 'excluded by labdemo',
              needsSecondaryApproval: true,
            },
            { name: 'labtool', version: '2.1-1', reason: 'category bugfix', needsSecondaryApproval: false },
          ],
        },
      ],
    } as unknown as PatchPlan;
    const text = planSummary(plan, createColors(false));
    expect(text).toMatch(/^db-1 +all +0 +0 +2 +labdemo +ok$/m);
    expect(text).toContain(
      'Held back until a secondary approval:\n  db-1  labdemo=1.1-1: excluded by labdemo',
    );
    expect(text).not.toContain('labtool=2.1-1');
  });
});
