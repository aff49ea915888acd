import { AuthorizationError, ConflictError, NotFoundError } from '@fleetward/core';
import { createCallContext } from '@fleetward/core/kernel';
import { beforeEach, describe, expect, it } from 'vitest';
import { createScriptApi } from '../../src/sop/api.js';
import { createRunbookApi } from '../../src/sop/runbook.js';
import { addUnboundPrincipal, KERNEL_ADMIN, type KernelFixture, kernelFixture } from '../kernel-support.js';

// Scripts and runbooks on a kernel context alone: a Runtime over a memory store, no Fleet.

const SCRIPT = { name: 'restart-web', interpreter: 'sh' as const, body: 'echo hi\n', parameters: [] };

let fx: KernelFixture;
const as = (principalId: string) => () =>
  createCallContext(fx.runtime, { tenantId: fx.tenantId, principalId });

async function addAdmin(id: string): Promise<void> {
  await fx.store.principals.create({
    tenantId: fx.tenantId,
    id,
    name: id,
    kind: 'human',
    affiliation: 'employee',
  });
  await fx.store.roleBindings.create({ tenantId: fx.tenantId, principalId: id, roleId: 'everything' });
}

const auditOf = async (action: string) =>
  (await fx.store.audit.list(fx.tenantId)).filter((r) => r.action === action);

beforeEach(async () => {
  fx = await kernelFixture();
  await addAdmin('bob');
});

describe('scripts on a kernel context', () => {
  it('add — versions by content: equal content adds nothing, a change is the next revision', async () => {
    const scripts = createScriptApi(as(KERNEL_ADMIN));
    const first = await scripts.add(SCRIPT);
    expect(await scripts.add(SCRIPT)).toMatchObject({ revision: 1, contentHash: first.contentHash });
    const second = await scripts.add({ ...SCRIPT, body: 'echo changed\n' });
    expect(second).toMatchObject({ id: 'restart-web:2', revision: 2, createdBy: KERNEL_ADMIN });
    expect((await scripts.get('restart-web', { version: first.contentHash })).revision).toBe(1);
    expect((await scripts.versions('restart-web')).map((v) => v.revision)).toEqual([1, 2]);
    await expect(scripts.get('restart-web', { version: 7 })).rejects.toThrow(NotFoundError);
    const [written] = await auditOf('script.write');
    expect(written).toMatchObject({ result: 'success', actor: { principalId: KERNEL_ADMIN } });
  });

  it('add — a revision taken by another writer is a ConflictError, and nothing is added', async () => {
    const scripts = createScriptApi(as(KERNEL_ADMIN));
    await scripts.add(SCRIPT);
    // Another version already holds the id of revision 2 (a writer that committed first).
    await fx.store.scripts.create({
      tenantId: fx.tenantId,
      id: 'restart-web:2',
      name: 'other',
      revision: 1,
      interpreter: 'sh',
      body: 'true\n',
      parameters: [],
      contentHash: 'a'.repeat(64),
      createdBy: KERNEL_ADMIN,
    });
    const added = scripts.add({ ...SCRIPT, body: 'echo changed\n' });
    await expect(added).rejects.toThrow(ConflictError);
    await expect(added).rejects.toThrow(
      'another version of script restart-web was added at the same time as revision 2: read it and try again',
    );
    expect((await scripts.versions('restart-web')).map((v) => v.revision)).toEqual([1]);
  });

  it('approve — the author of a risky version cannot approve it: refused and audited as a denial', async () => {
    const alice = createScriptApi(as(KERNEL_ADMIN));
    const risky = await alice.add({ ...SCRIPT, risky: true });
    await expect(alice.approve('restart-web', { hash: risky.contentHash })).rejects.toThrow(
      AuthorizationError,
    );
    const [denial] = await auditOf('script.approve');
    expect(denial).toMatchObject({ decision: 'deny', result: 'denied', target: { id: 'restart-web' } });
    expect((await alice.approval('restart-web')).satisfied).toBe(false);

    await createScriptApi(as('bob')).approve('restart-web', { hash: risky.contentHash });
    expect(await alice.approval('restart-web')).toMatchObject({ required: true, satisfied: true });
  });

  it('add — a principal without script.write is denied, the denial audited, nothing stored', async () => {
    await addUnboundPrincipal(fx, 'mallory');
    await expect(createScriptApi(as('mallory')).add(SCRIPT)).rejects.toThrow(AuthorizationError);
    const [denial] = await auditOf('script.write');
    expect(denial).toMatchObject({ decision: 'deny', actor: { principalId: 'mallory' } });
    expect(await fx.store.scripts.listAll(fx.tenantId)).toEqual([]);
  });
});

describe('runbooks on a kernel context', () => {
  const RUNBOOK = {
    name: 'gate',
    steps: [{ id: 'ok', kind: 'approval' as const }],
  };

  beforeEach(async () => {
    await fx.store.servers.create({
      tenantId: fx.tenantId,
      id: 's1',
      name: 's1',
      accountId: 'local',
      provider: 'local',
    });
  });

  it('define — versions like scripts; a taken revision is a ConflictError naming the runbook', async () => {
    const runbooks = createRunbookApi(as(KERNEL_ADMIN));
    const first = await runbooks.define(RUNBOOK);
    expect((await runbooks.define(RUNBOOK)).revision).toBe(1);
    await fx.store.runbooks.create({
      tenantId: fx.tenantId,
      id: 'gate:2',
      name: 'elsewhere',
      revision: 1,
      parameters: [],
      steps: [{ id: 'w', kind: 'wait', durationSeconds: 1 }],
      contentHash: 'b'.repeat(64),
      createdBy: KERNEL_ADMIN,
    });
    await expect(runbooks.define({ ...RUNBOOK, description: 'changed' })).rejects.toThrow(
      'another version of runbook gate was added at the same time as revision 2: read it and try again',
    );
    expect(await runbooks.get('gate')).toMatchObject({ revision: 1, contentHash: first.contentHash });
    await expect(runbooks.get('gate', { version: 2 })).rejects.toThrow(NotFoundError);
  });

  it('approveStep — the approval and the step end are audited in order, then announced in order', async () => {
    const started = await createRunbookApi(as(KERNEL_ADMIN)).define(RUNBOOK);
    const run = await createRunbookApi(as(KERNEL_ADMIN)).start({
      runbook: started.name,
      targets: { serverIds: ['s1'] },
    });
    expect(run.status).toBe('awaiting-approval');

    // The starter cannot approve: an audited denial.
    await expect(createRunbookApi(as(KERNEL_ADMIN)).approveStep(run.id)).rejects.toThrow(AuthorizationError);
    expect(await auditOf('runbook.approve')).toMatchObject([{ decision: 'deny', result: 'denied' }]);

    const heard: string[] = [];
    fx.runtime.events.on('runbook.step.approved', (e) => heard.push(`approved:${e.approvals}/${e.required}`));
    fx.runtime.events.on('runbook.step.completed', (e) => heard.push(`completed:${e.stepId}`));
    fx.runtime.events.on('runbook.run.completed', (e) => heard.push(`run:${e.status}`));
    const approved = await createRunbookApi(as('bob')).approveStep(run.id, { continueRun: false });
    expect(approved.status).toBe('running');
    expect(heard).toEqual(['approved:1/1', 'completed:ok']);
    const records = (await fx.store.audit.list(fx.tenantId)).filter((r) => r.actor.principalId === 'bob');
    expect(records.map((r) => `${r.action}:${r.result}`)).toEqual([
      'runbook.approve:success',
      'runbook.step:success',
    ]);

    const done = await createRunbookApi(as(KERNEL_ADMIN)).resume(run.id);
    expect(done.status).toBe('succeeded');
    expect(heard.at(-1)).toBe('run:succeeded');
  });
});
