import { AuthorizationError, ConflictError, type PatchPlan } from '@fleetward/core';
import { beforeEach, describe, expect, it } from 'vitest';
import { createPatchApi, planHash } from '../../src/patch/plan.js';
import { addUnboundPrincipal, type KernelFixture, kernelFixture } from '../kernel-support.js';

// The patch module on a bare kernel runtime: no Fleet, no session, only a call context.

let fx: KernelFixture;

beforeEach(async () => {
  fx = await kernelFixture();
  const tenantId = fx.tenantId;
  await fx.store.servers.create({
    tenantId,
    id: 'web-1',
    name: 'web-1',
    accountId: 'local',
    provider: 'local',
    labels: {},
  });
  await fx.store.projects.create({ tenantId, id: 'web', name: 'Web', selector: { ids: ['web-1'] } });
  await fx.store.principals.create({
    tenantId,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fx.store.roleBindings.create({ tenantId, principalId: 'bob', roleId: 'everything' });
  await addUnboundPrincipal(fx, 'mallory');
  await createPatchApi(() => fx.ctx()).policies.add({ id: 'sec', name: 'Security', projectId: 'web' });
});

/** An approved plan of `web-1` with nothing left to install: executing it runs no command. */
async function approvedPlan(): Promise<PatchPlan> {
  const body = {
    policyId: 'sec',
    projectId: 'web',
    servers: [{ serverId: 'web-1', scanId: 'scan-1', selected: [], resolved: [], heldBack: [] }],
    waves: [{ name: 'all', serverIds: ['web-1'] }],
    stopCondition: {
      errorBudget: { count: 0 },
      maxFailures: 0,
      unreachableCountsAsError: true,
      onBudgetSpent: 'stop' as const,
    },
  };
  const hash = planHash(body);
  return fx.store.patchPlans.create({
    tenantId: fx.tenantId,
    ...body,
    requestedBy: 'admin',
    status: 'approved',
    hash,
    approvals: [{ principalId: 'bob', at: fx.clock.now().toISOString(), hash }],
  });
}

describe('patch module on a kernel context', () => {
  it('policies.add — writes the policy with its success audit record', async () => {
    const policy = await fx.store.patchPolicies.require(fx.tenantId, 'sec');
    expect(policy).toMatchObject({ projectId: 'web', categories: ['security'] });
    const records = await fx.store.audit.list(fx.tenantId, { action: 'patch.policy' });
    expect(records).toMatchObject([
      { actor: { principalId: 'admin' }, target: { type: 'patch-policy', id: 'sec' }, result: 'success' },
    ]);
  });

  it('executePlan — one audit record, outbox message and event each for the start and the end, events after the commit', async () => {
    await fx.store.webhookEndpoints.create({
      tenantId: fx.tenantId,
      id: 'hook',
      url: 'https://hooks.example.test/fleetward',
      events: ['patch.*'],
      secretRef: 'acme/webhooks/hook',
    });
    const plan = await approvedPlan();
    const seen: { name: string; status?: string; planStatus: Promise<string | undefined> }[] = [];
    // The plan is read when each event fires: it must already show what the event announces.
    fx.runtime.events.on('patch.run.started', () =>
      seen.push({ name: 'started', planStatus: planStatus(plan.id) }),
    );
    fx.runtime.events.on('patch.run.completed', (e) =>
      seen.push({ name: 'completed', status: e.status, planStatus: planStatus(plan.id) }),
    );

    const job = await createPatchApi(() => fx.ctx('bob')).executePlan(plan.id);

    expect(job.status).toBe('succeeded');
    expect(seen.map(({ name, status }) => ({ name, status }))).toEqual([
      { name: 'started', status: undefined },
      { name: 'completed', status: 'succeeded' },
    ]);
    expect(await Promise.all(seen.map((s) => s.planStatus))).toEqual(['executing', 'completed']);
    const records = await fx.store.audit.list(fx.tenantId, { action: 'patch.execute' });
    expect(records).toMatchObject([
      {
        actor: { principalId: 'bob' },
        result: 'started',
        details: { planHash: plan.hash, jobId: job.id, servers: 1 },
      },
      {
        actor: { principalId: 'bob' },
        result: 'success',
        details: { planHash: plan.hash, jobId: job.id, status: 'succeeded', succeeded: 1, failed: 0 },
      },
    ]);
    expect(records[0]!.rule).toBeDefined();
    const messages = await fx.store.outbox.listAll(fx.tenantId);
    expect(messages).toMatchObject([
      {
        channel: 'webhook',
        destinationId: 'hook',
        eventType: 'patch.run.completed',
        status: 'pending',
        payload: { planId: plan.id, planHash: plan.hash, jobId: job.id, status: 'succeeded', succeeded: 1 },
      },
    ]);
  });

  it('executePlan — a principal without patch.execute is denied and audited; nothing starts', async () => {
    const plan = await approvedPlan();
    await expect(createPatchApi(() => fx.ctx('mallory')).executePlan(plan.id)).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.execute' })).toMatchObject([
      { actor: { principalId: 'mallory' }, decision: 'deny', result: 'denied' },
    ]);
    expect(await fx.store.jobs.listAll(fx.tenantId)).toEqual([]);
    expect(await planStatus(plan.id)).toBe('approved');
  });

  it('executePlan — a plan that is not approved is refused with a ConflictError, audited as a failure', async () => {
    const plan = await approvedPlan();
    await fx.store.patchPlans.update(
      fx.tenantId,
      plan.id,
      { status: 'awaiting-approval' },
      { expectedVersion: plan.version },
    );
    await expect(createPatchApi(() => fx.ctx('bob')).executePlan(plan.id)).rejects.toBeInstanceOf(
      ConflictError,
    );
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.execute' })).toMatchObject([
      { actor: { principalId: 'bob' }, decision: 'allow', result: 'failure' },
    ]);
  });
});

async function planStatus(id: string): Promise<string | undefined> {
  return (await fx.store.patchPlans.get(fx.tenantId, id))?.status;
}
