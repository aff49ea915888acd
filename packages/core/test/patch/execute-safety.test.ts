import {
  type AuditRecord,
  type Fleet,
  HostKeyMismatchError,
  type PatchPolicyInput,
  verifyAuditChain,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import picomatch from 'picomatch';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeHost, fakeFleet, TENANT, testPolicy } from './support/fake-host.js';

// Safety rules 2, 3 and 6 of DESIGN on the executor, over a package manager simulated in memory
// (support/fake-host.ts): what real apt, dnf and zypper answer is pinned on the lab (e2e/).

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

type PolicyOptions = Partial<Omit<PatchPolicyInput, 'tenantId' | 'id' | 'projectId' | 'name'>>;

async function setup(ids: string[], policy: PolicyOptions = {}, extra: Parameters<typeof fakeFleet>[1] = {}) {
  const made = await fakeFleet(ids, extra);
  fleet = made.fleet;
  const alice = made.fleet.as({ tenantId: TENANT, principalId: 'alice' });
  const bob = made.fleet.as({ tenantId: TENANT, principalId: 'bob' });
  await alice.patch.policies.add(testPolicy(policy));
  const approved = async () => {
    const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    return plan;
  };
  const tasks = async (jobId: string) =>
    Object.fromEntries(
      (await made.fleet.store.taskResults.listAll(TENANT, { where: { jobId } })).map((t) => [t.serverId, t]),
    );
  return { ...made, alice, bob, approved, tasks };
}

const clearLogs = (hosts: Record<string, FakeHost>) => {
  for (const h of Object.values(hosts)) h.log.length = 0;
};

const audit = async (f: Fleet) => f.store.audit.list(TENANT, { limit: 10_000 });

describe('executePlan — host keys (rule 6)', () => {
  it('executePlan — a changed host key stops the run: no further server is touched, the job and the audit name the server', async () => {
    let spoofed = false;
    const { fleet, hosts, bob, approved, tasks } = await setup(
      ['s1', 's2', 's3'],
      {},
      {
        before: (server) => {
          if (spoofed && server.id === 's2')
            throw new HostKeyMismatchError(`host key of ${server.name} is not the pinned one`);
        },
      },
    );
    const plan = await approved();
    clearLogs(hosts);
    spoofed = true;
    const job = await bob.patch.executePlan(plan.id);
    expect(job.status).toBe('stopped');
    expect(job.reason).toContain('host key of s2 changed');
    const t = await tasks(job.id);
    expect(t['s1']).toMatchObject({ status: 'succeeded' });
    expect(t['s2']).toMatchObject({ status: 'failed', error: { code: 'HOST_KEY_MISMATCH' } });
    expect(t['s3']).toMatchObject({ status: 'skipped', error: { code: 'NOT_STARTED' } });
    expect(t['s3']!.error!.message).toContain('host key of s2 changed');
    expect(hosts['s3']!.log).toEqual([]);
    expect(hosts['s3']!.installed.get('demo')).toBe('1.0');
    const records = await audit(fleet);
    expect(verifyAuditChain(records).ok).toBe(true);
    expect(records.filter((r) => r.action === 'patch.execute').at(-1)).toMatchObject({
      result: 'failure',
      reason: expect.stringContaining('host key of s2 changed'),
    });
    expect(
      records.find((r) => r.action === 'patch.step' && r.target?.id === 's2' && r.result === 'failure'),
    ).toMatchObject({ details: { code: 'HOST_KEY_MISMATCH', step: 'preflight' } });
    expect((await fleet.store.patchPlans.require(TENANT, plan.id)).status).toBe('stopped');
  });

  it('executePlan — at whatever step and server a host key changes, whatever the budget, no later server is started', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 5 }),
        fc.constantFrom('stop' as const, 'pause' as const),
        fc.integer({ min: 1, max: 2 }),
        async (victim, atCall, budget, onBudgetSpent, maxConcurrency) => {
          const ids = ['s0', 's1', 's2', 's3'];
          let spoofed = false;
          let calls = 0;
          let struck = false;
          const started: string[] = [];
          const { fleet, hosts, bob, approved, tasks } = await setup(
            ids,
            {
              reboot: 'never',
              healthChecks: [{ type: 'command', argv: ['true'] }],
              rollout: {
                waves: [],
                maxConcurrency,
                errorBudget: { count: budget },
                unreachableCountsAsError: true,
                onBudgetSpent,
              },
            },
            {
              before: (server) => {
                if (!spoofed) return;
                if (!started.includes(server.id)) started.push(server.id);
                if (server.id === ids[victim] && calls++ >= atCall) {
                  struck = true;
                  throw new HostKeyMismatchError(`host key of ${server.name} changed`);
                }
              },
            },
          );
          try {
            const plan = await approved();
            clearLogs(hosts);
            spoofed = true;
            const job = await bob.patch.executePlan(plan.id);
            const t = await tasks(job.id);
            if (!struck) {
              // The victim finished before its call count came up: nothing to stop.
              expect(job.status).toBe('succeeded');
              return;
            }
            expect(job.status).toBe('stopped');
            expect(job.reason).toContain(`host key of ${ids[victim]} changed`);
            // Servers are started in plan order: none after the victim's in-flight companions.
            const last = Math.min(ids.length - 1, victim + maxConcurrency - 1);
            for (const id of ids.slice(last + 1)) {
              expect(started, id).not.toContain(id);
              expect(t[id]!.status, id).toBe('skipped');
            }
          } finally {
            await fleet.close();
          }
        },
      ),
      { numRuns: 40 },
    );
    fleet = undefined;
  });
});

describe('executePlan — exclusions and removals in the resolved transaction (rule 2)', () => {
  it('planPatchRun — an excluded package pulled in as a dependency blocks the server until its secondary approval', async () => {
    const { hosts, alice, bob, tasks } = await setup(['s1'], { exclusions: ['libex*'] });
    hosts['s1']!.repo.set('demo', { version: '1.1', category: 'security', depends: ['libexcluded'] });
    hosts['s1']!.repo.set('libexcluded', { version: '0.1' });
    const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
    const s = plan.servers[0]!;
    expect(s.resolved).toEqual([]);
    expect(s.blocked).toMatch(/excluded packages .*libexcluded 0\.1 \(excluded by libex\*, a dependency/);
    expect(s.heldBack).toContainEqual({
      name: 'libexcluded',
      version: '0.1',
      reason: 'excluded by libex*; the transaction pulls it in as a dependency',
      needsSecondaryApproval: true,
    });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const blockedJob = await bob.patch.executePlan(plan.id);
    expect((await tasks(blockedJob.id))['s1']).toMatchObject({ status: 'skipped' });
    expect(hosts['s1']!.installed.has('libexcluded')).toBe(false);
    expect(hosts['s1']!.log.filter((l) => l === 'fakepm install')).toEqual([]);

    const next = await bob.patch.approveExclusions((await alice.patch.planPatchRun({ policyId: 'pol' })).id, [
      'libexcluded',
    ]);
    expect(next.servers[0]!.blocked).toBeUndefined();
    expect(next.servers[0]!.resolved.map((p) => p.name)).toEqual(['demo', 'libexcluded', 'tool']);
    await bob.patch.approvePlan(next.id, { hash: next.hash });
    expect((await bob.patch.executePlan(next.id)).status).toBe('succeeded');
    expect(hosts['s1']!.installed.get('libexcluded')).toBe('0.1');
  });

  it('executePlan — an exclusion added after approval refuses the transaction that would bring it in, naming the package', async () => {
    const { fleet, hosts, alice, bob, approved, tasks } = await setup(['s1']);
    hosts['s1']!.repo.set('demo', { version: '1.1', category: 'security', depends: ['libexcluded'] });
    hosts['s1']!.repo.set('libexcluded', { version: '0.1' });
    const plan = await approved();
    const policy = await fleet.store.patchPolicies.require(TENANT, 'pol');
    await alice.patch.policies.update('pol', { exclusions: ['libex*'] }, { expectedVersion: policy.version });
    clearLogs(hosts);
    const job = await bob.patch.executePlan(plan.id);
    const task = (await tasks(job.id))['s1']!;
    expect(task).toMatchObject({
      status: 'skipped',
      step: 'drift-check',
      error: { code: 'TRANSACTION_REFUSED' },
    });
    expect(task.error!.message).toContain(
      'libexcluded 0.1 (excluded by libex*, a dependency of the selected updates)',
    );
    expect(hosts['s1']!.log).not.toContain('fakepm install');
    expect([...hosts['s1']!.installed]).toEqual([
      ['demo', '1.0'],
      ['tool', '2.0'],
    ]);
  });

  it('executePlan — whatever the dependencies and exclusions, nothing excluded is installed without its secondary approval', async () => {
    const names = ['aa', 'ab', 'ba', 'bb', 'ca'];
    const pkg = fc.record({
      installed: fc.boolean(),
      depends: fc.subarray(names),
      category: fc.constantFrom('security' as const, 'other' as const),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(pkg, pkg, pkg, pkg, pkg),
        fc.subarray(['aa', 'b*', 'c?', '*b', 'zz']),
        async (packages, exclusions) => {
          const { fleet, hosts, bob, approved } = await setup(['s1'], { exclusions });
          try {
            const host = hosts['s1']!;
            host.installed.clear();
            host.repo.clear();
            packages.forEach((p, i) => {
              const name = names[i]!;
              if (p.installed) host.installed.set(name, '1');
              host.repo.set(name, {
                version: '2',
                category: p.category,
                depends: p.depends.filter((d) => d !== name),
              });
            });
            const before = new Map(host.installed);
            const plan = await approved();
            await bob.patch.executePlan(plan.id);
            const excluded = picomatch(exclusions.length ? exclusions : ['\0'], { dot: true });
            const changed = [...host.installed].filter(([n, v]) => before.get(n) !== v).map(([n]) => n);
            expect(changed.filter((n) => excluded(n))).toEqual([]);
          } finally {
            await fleet.close();
          }
        },
      ),
      { numRuns: 40 },
    );
    fleet = undefined;
  });

  it('planPatchRun — a transaction that would remove a package blocks the server', async () => {
    const { hosts, alice } = await setup(['s1']);
    hosts['s1']!.repo.set('demo', { version: '1.1', category: 'security', replaces: ['tool'] });
    const plan = await alice.patch.planPatchRun({ policyId: 'pol' });
    expect(plan.servers[0]).toMatchObject({
      resolved: [],
      blocked: 'the transaction would remove packages: tool',
    });
  });

  it('executePlan — a transaction that would remove a package by the time of the install is refused, naming it', async () => {
    const { hosts, bob, approved, tasks } = await setup(['s1']);
    const plan = await approved();
    hosts['s1']!.repo.set('demo', { version: '1.1', category: 'security', replaces: ['tool'] });
    clearLogs(hosts);
    const job = await bob.patch.executePlan(plan.id);
    const task = (await tasks(job.id))['s1']!;
    expect(task).toMatchObject({ status: 'skipped', error: { code: 'TRANSACTION_REFUSED' } });
    expect(task.error!.message).toContain('would remove packages: tool');
    expect(hosts['s1']!.log).not.toContain('fakepm install');
    expect(hosts['s1']!.installed.get('tool')).toBe('2.0');
  });
});

describe('executePlan — every step is an audit record', () => {
  it('executePlan — the audit records of a run list every step of every server, with run id and result, and the chain verifies', async () => {
    const { fleet, hosts, bob, approved, tasks } = await setup(['s1', 's2', 's3'], {
      reboot: 'never',
      healthChecks: [{ type: 'command', argv: ['true'] }],
    });
    hosts['s3']!.freeRootKiB = 1024;
    const plan = await approved();
    const job = await bob.patch.executePlan(plan.id);
    expect((await tasks(job.id))['s3']!.status).toBe('failed');
    const records = await audit(fleet);
    expect(verifyAuditChain(records).ok).toBe(true);
    const steps = (server: string) =>
      records
        .filter((r: AuditRecord) => r.action === 'patch.step' && r.target?.id === server)
        .map((r) => `${r.details['step']}:${r.result}`);
    const ok = ['preflight', 'drift-check', 'install', 'reboot', 'health', 'verify'].map(
      (s) => `${s}:success`,
    );
    expect(steps('s1')).toEqual(ok);
    expect(steps('s2')).toEqual(ok);
    expect(steps('s3')).toEqual(['preflight:failure']);
    for (const r of records.filter((r) => r.action === 'patch.step')) {
      expect(r.details).toMatchObject({
        jobId: job.id,
        planId: plan.id,
        planHash: plan.hash,
        serverId: r.target!.id,
      });
      expect(r.actor.principalId).toBe('bob');
    }
    expect(
      records.find((r) => r.action === 'patch.step' && r.details['step'] === 'install')!.details,
    ).toMatchObject({
      packages: ['demo=1.1', 'tool=2.1'],
    });
  });
});

describe('executePlan — the maintenance window', () => {
  // Sundays 02:00-04:00 Europe/Berlin, i.e. 00:00-02:00 UTC in June.
  const window = { cron: '0 2 * * 0', durationMinutes: 120, timeZone: 'Europe/Berlin' };
  const OPEN = '2026-06-07T00:00:00.000Z';

  it('executePlan — a server starts only while expectedServerMs still fits in the window', async () => {
    const clock = new ManualClock(OPEN);
    const { hosts, bob, approved, tasks } = await setup(
      ['s1', 's2'],
      { window, reboot: 'never' },
      {
        clock,
        before: (server, what) => {
          // Installing s1 takes 90 of the window's 120 minutes.
          if (server.id === 's1' && what === 'fakepm install') clock.advance(90 * 60_000);
        },
      },
    );
    const plan = await approved();
    clearLogs(hosts);
    const job = await bob.patch.executePlan(plan.id, { expectedServerMs: 40 * 60_000 });
    const t = await tasks(job.id);
    expect(t['s1']!.status).toBe('succeeded');
    expect(t['s2']).toMatchObject({
      status: 'skipped',
      error: { code: 'NOT_STARTED', message: expect.stringContaining('maintenance window closes') },
    });
    expect(hosts['s2']!.log).toEqual([]);
    expect(job).toMatchObject({
      status: 'stopped',
      reason: expect.stringContaining('maintenance window closes'),
    });
  });

  it('executePlan — with 25 minutes expected, the second server still fits after the first took 90 and runs', async () => {
    const clock = new ManualClock(OPEN);
    const { bob, approved } = await setup(
      ['s1', 's2'],
      { window, reboot: 'never' },
      {
        clock,
        before: (server, what) => {
          if (server.id === 's1' && what === 'fakepm install') clock.advance(90 * 60_000);
        },
      },
    );
    const plan = await approved();
    expect((await bob.patch.executePlan(plan.id, { expectedServerMs: 25 * 60_000 })).status).toBe(
      'succeeded',
    );
  });

  it('executePlan — waitForWindow waits for the opening on the Fleet clock and starts inside it', async () => {
    const clock = new ManualClock('2026-06-06T12:00:00.000Z');
    const { fleet, hosts, bob, approved, tasks } = await setup(
      ['s1'],
      { window, reboot: 'never' },
      { clock },
    );
    const plan = await approved();
    clearLogs(hosts);
    const waiting = new Promise<string | null>((resolve) =>
      fleet.events.on('patch.run.waiting', (e) => resolve(e.nextWindow)),
    );
    const running = bob.patch.executePlan(plan.id, { waitForWindow: true, pollIntervalMs: 5 });
    expect(await waiting).toBe(OPEN);
    expect(hosts['s1']!.log).toEqual([]);
    clock.set(OPEN);
    const job = await running;
    expect(job.status).toBe('succeeded');
    const task = (await tasks(job.id))['s1']!;
    expect(Date.parse(task.startedAt!)).toBeGreaterThanOrEqual(Date.parse(OPEN));
    expect(hosts['s1']!.installed.get('demo')).toBe('1.1');
  });

  it('executePlan — stopped while waiting for the window: only the waiting ends; no server started, the plan stays approved and runs in its window', async () => {
    const clock = new ManualClock('2026-06-06T12:00:00.000Z');
    const { fleet, hosts, bob, approved, tasks } = await setup(['s1'], { window }, { clock });
    const plan = await approved();
    clearLogs(hosts);
    const abort = new AbortController();
    fleet.events.on('patch.run.waiting', () => abort.abort());
    const job = await bob.patch.executePlan(plan.id, { waitForWindow: true, signal: abort.signal });
    expect(job.status).toBe('pending');
    expect(job.reason).toContain('the caller stopped waiting');
    expect((await tasks(job.id))['s1']!.status).toBe('pending');
    expect(hosts['s1']!.log).toEqual([]);
    expect((await bob.patch.getPlan(plan.id)).status).not.toBe('cancelled');
    clock.set(OPEN);
    const resumed = await bob.patch.executePlan(plan.id);
    expect(resumed.id).toBe(job.id);
    expect(resumed.status).toBe('succeeded');
    expect(hosts['s1']!.installed.get('demo')).toBe('1.1');
  });
});

describe('executePlan — cancellation', () => {
  it('executePlan — cancelling lets the servers in flight finish every step and starts no new one', async () => {
    const abort = new AbortController();
    const reached = new Set<string>();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const { hosts, bob, approved, tasks } = await setup(
      ['s1', 's2', 's3'],
      {
        reboot: 'never',
        rollout: {
          waves: [],
          maxConcurrency: 2,
          errorBudget: { count: 0 },
          unreachableCountsAsError: true,
          onBudgetSpent: 'stop',
        },
      },
      {
        before: async (server, what) => {
          if (what !== 'fakepm install') return;
          reached.add(server.id);
          if (reached.size === 2) {
            abort.abort();
            release();
          }
          await gate;
        },
      },
    );
    const plan = await approved();
    clearLogs(hosts);
    const job = await bob.patch.executePlan(plan.id, { signal: abort.signal });
    expect(job.status).toBe('cancelled');
    const t = await tasks(job.id);
    for (const id of ['s1', 's2']) {
      expect(t[id], id).toMatchObject({ status: 'succeeded', step: 'done' });
      expect(hosts[id]!.installed.get('demo'), id).toBe('1.1');
    }
    expect(t['s3']).toMatchObject({ status: 'cancelled', error: { code: 'NOT_STARTED' } });
    expect(hosts['s3']!.log).toEqual([]);
  });
});

describe('executePlan — preflight', () => {
  it('executePlan — too little free space on / refuses the server before anything is installed', async () => {
    const { hosts, bob, approved, tasks } = await setup(['s1']);
    hosts['s1']!.freeRootKiB = 150 * 1024;
    const plan = await approved();
    const job = await bob.patch.executePlan(plan.id, { minFreeRootMiB: 200 });
    expect((await tasks(job.id))['s1']).toMatchObject({
      status: 'failed',
      step: 'preflight',
      error: { code: 'COMMAND_FAILED', message: expect.stringContaining('only 150 MiB free on /, need 200') },
    });
    expect(hosts['s1']!.log).not.toContain('fakepm install');
  });

  it('executePlan — a login without sudo is refused first, before the lock and repository checks that need it', async () => {
    const { hosts, bob, approved, tasks } = await setup(['s1']);
    hosts['s1']!.sudo = false;
    const plan = await approved();
    clearLogs(hosts);
    const job = await bob.patch.executePlan(plan.id);
    expect((await tasks(job.id))['s1']).toMatchObject({
      status: 'failed',
      step: 'preflight',
      error: {
        code: 'COMMAND_FAILED',
        message: expect.stringContaining('cannot run as root: sudo: a password is required'),
      },
    });
    expect(hosts['s1']!.log).toEqual(['true']);
  });
});
