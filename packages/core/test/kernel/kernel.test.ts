import {
  AbortedError,
  AuthorizationError,
  createLocalAdapter,
  createMemoryStore,
  type Store,
  ValidationError,
} from '@fleetward/core';
import { createCallContext, RunLease, Runtime, sleep, startJob, taskId } from '@fleetward/core/kernel';
import { beforeEach, describe, expect, it } from 'vitest';
import { createIamApi } from '../../src/iam/api.js';
import { createInventoryApi } from '../../src/inventory/api.js';

// The kernel on its own: a Runtime over a memory store and the context of one call, without a Fleet.

const tenantId = 't1';

async function seed(store: Store): Promise<void> {
  await store.tenants.create({ tenantId, id: tenantId, name: 'T1' });
  await store.principals.create({
    tenantId,
    id: 'admin',
    kind: 'human',
    name: 'Admin',
    affiliation: 'employee',
  });
  await store.principals.create({
    tenantId,
    id: 'viewer',
    kind: 'human',
    name: 'Viewer',
    affiliation: 'employee',
  });
  await store.roles.create({
    tenantId,
    id: 'all',
    name: 'All',
    rules: [{ effect: 'allow', actions: ['*'] }],
  });
  await store.roles.create({
    tenantId,
    id: 'read',
    name: 'Read',
    rules: [{ effect: 'allow', actions: ['inventory.read'] }],
  });
  await store.roleBindings.create({ tenantId, principalId: 'admin', roleId: 'all' });
  await store.roleBindings.create({ tenantId, principalId: 'viewer', roleId: 'read' });
}

describe('kernel', () => {
  let store: Store;
  let runtime: Runtime;

  beforeEach(async () => {
    store = createMemoryStore();
    runtime = new Runtime({ store, adapters: [createLocalAdapter()] });
    await seed(store);
  });

  it('createCallContext — an actor that is not valid is a ValidationError naming Actor', () => {
    expect(() => createCallContext(runtime, { tenantId: '', principalId: 'admin' })).toThrow(ValidationError);
    expect(() => createCallContext(runtime, { tenantId, principalId: 'admin', extra: 1 } as never)).toThrow(
      /Actor/,
    );
  });

  it('decide — an unknown principal is denied, audited and announced before anything happens', async () => {
    const denials: unknown[] = [];
    runtime.events.on('authz.denied', (d) => denials.push(d));
    const ctx = createCallContext(runtime, { tenantId, principalId: 'ghost' });
    await expect(ctx.decide('inventory.read', [], { type: 'server', id: '*' })).rejects.toThrow(
      AuthorizationError,
    );
    const [record] = await store.audit.list(tenantId, { action: 'inventory.read' });
    expect(record).toMatchObject({ decision: 'deny', result: 'denied', reason: 'unknown principal' });
    expect(denials).toHaveLength(1);
  });

  it('write — commits the change with its audit record; a failing change rolls back and is audited as a failure', async () => {
    const ctx = createCallContext(runtime, { tenantId, principalId: 'admin' });
    await ctx.write('inventory.write', [{ type: 'account' }], { type: 'account', id: 'a1' }, (tx) =>
      tx.accounts.create({ tenantId, id: 'a1', name: 'A1', provider: 'ssh' }),
    );
    await expect(
      ctx.write('inventory.write', [{ type: 'account' }], { type: 'account', id: 'a2' }, async (tx) => {
        await tx.accounts.create({ tenantId, id: 'a2', name: 'A2', provider: 'ssh' });
        throw new Error('boom after the write');
      }),
    ).rejects.toThrow(/boom/);
    expect((await store.accounts.listAll(tenantId)).map((a) => a.id)).toEqual(['a1']);
    const records = await store.audit.list(tenantId, { action: 'inventory.write' });
    expect(records.map((r) => [r.target?.id, r.result])).toEqual([
      ['a1', 'success'],
      ['a2', 'failure'],
    ]);
  });

  it('record — audit record and outbox messages commit with the transaction; the event is emitted only after, never for a rollback', async () => {
    await store.webhookEndpoints.create({
      tenantId,
      id: 'hook',
      url: 'http://127.0.0.1:9/hook',
      secretRef: 'whsec',
      events: ['scan.*'],
    });
    const ctx = createCallContext(runtime, { tenantId, principalId: 'admin' });
    const heard: string[] = [];
    runtime.events.on('scan.completed', (e) => heard.push(e.jobId));
    const occurrence = (jobId: string) => ({
      audit: {
        actor: { principalId: 'admin', kind: 'human' as const },
        action: 'patch.scan',
        target: { type: 'job', id: jobId },
        decision: 'allow' as const,
        result: 'success' as const,
      },
      outbox: { eventType: 'scan.completed', payload: { jobId } },
      event: {
        name: 'scan.completed' as const,
        args: [{ tenantId, jobId, status: 'succeeded', total: 0, succeeded: 0, failed: 0 }] as [
          {
            tenantId: string;
            jobId: string;
            status: string;
            total: number;
            succeeded: number;
            failed: number;
          },
        ],
      },
    });

    const committed = await store.transaction(async (tx) => {
      const written = await ctx.record(tx, occurrence('j1'));
      expect(heard).toEqual([]);
      return written;
    });
    expect(committed.messages).toHaveLength(1);
    committed.emit();
    expect(heard).toEqual(['j1']);

    let emitRolledBack: (() => void) | undefined;
    await expect(
      store.transaction(async (tx) => {
        emitRolledBack = (await ctx.record(tx, occurrence('j2'))).emit;
        throw new Error('the state change failed');
      }),
    ).rejects.toThrow(/state change failed/);
    expect(emitRolledBack).toBeDefined();
    const messages = await store.outbox.listAll(tenantId);
    expect(messages.map((m) => m.payload)).toEqual([{ jobId: 'j1' }]);
    const audits = await store.audit.list(tenantId, { action: 'patch.scan' });
    expect(audits.map((r) => r.target?.id)).toEqual(['j1']);
  });

  it('startJob — the job and one pending task per server, or nothing when the transaction rolls back', async () => {
    const { job, tasks } = await store.transaction((tx) =>
      startJob(tx, {
        tenantId,
        kind: 'scan',
        requestedBy: 'admin',
        serverIds: ['s1', 's2'],
        startedAt: new Date().toISOString(),
      }),
    );
    expect(job.status).toBe('running');
    expect([...tasks.keys()]).toEqual(['s1', 's2']);
    expect(tasks.get('s1')).toMatchObject({ id: taskId(job.id, 's1'), status: 'pending', jobId: job.id });

    await expect(
      store.transaction(async (tx) => {
        await startJob(tx, {
          tenantId,
          jobId: 'doomed',
          kind: 'scan',
          requestedBy: 'admin',
          serverIds: ['s1'],
          startedAt: new Date().toISOString(),
        });
        throw new Error('rolled back');
      }),
    ).rejects.toThrow(/rolled back/);
    expect(await store.jobs.get(tenantId, 'doomed')).toBeUndefined();
    expect(await store.taskResults.get(tenantId, taskId('doomed', 's1'))).toBeUndefined();
  });

  it('sleep — resolves after the delay, rejects with AbortedError on abort (also when already aborted)', async () => {
    await expect(sleep(5)).resolves.toBeUndefined();
    const controller = new AbortController();
    const waiting = sleep(60_000, controller.signal, 'stopped waiting');
    controller.abort();
    await expect(waiting).rejects.toThrow(AbortedError);
    await expect(sleep(10, controller.signal)).rejects.toThrow(AbortedError);
  });

  it('RunLease — one holder at a time; released, it can be taken again', async () => {
    const first = await RunLease.acquire(store, 'run:1', 'a', 10_000);
    expect(first?.held).toBe(true);
    expect(await RunLease.acquire(store, 'run:1', 'b', 10_000)).toBeUndefined();
    await first?.release();
    const second = await RunLease.acquire(store, 'run:1', 'b', 10_000);
    expect(second?.held).toBe(true);
    await second?.release();
  });

  it('as — work started on behalf of another principal is decided with that principal’s rules', async () => {
    const admin = createCallContext(runtime, { tenantId, principalId: 'admin' });
    const viewer = admin.as('viewer');
    expect(viewer.actor).toEqual({ tenantId, principalId: 'viewer' });
    await expect(viewer.authorize('inventory.write', [{ type: 'account' }])).rejects.toThrow(
      AuthorizationError,
    );
    await expect(admin.authorize('inventory.write', [{ type: 'account' }])).resolves.toMatchObject({
      id: 'admin',
    });
  });
});

describe('inventory and iam on a kernel context', () => {
  it('servers.add and servers.list — written by an admin, read back filtered by what the viewer may read', async () => {
    const store = createMemoryStore();
    const runtime = new Runtime({ store, adapters: [createLocalAdapter()] });
    await seed(store);
    const admin = createInventoryApi(createCallContext(runtime, { tenantId, principalId: 'admin' }));
    const viewer = createInventoryApi(createCallContext(runtime, { tenantId, principalId: 'viewer' }));
    await admin.servers.add({ id: 's1', name: 'web-1', accountId: 'local', provider: 'local', labels: {} });
    expect((await viewer.servers.list()).map((s) => s.id)).toEqual(['s1']);
    await expect(
      viewer.servers.add({ id: 's2', name: 'web-2', accountId: 'local', provider: 'local', labels: {} }),
    ).rejects.toThrow(AuthorizationError);
    const denied = (await store.audit.list(tenantId, { action: 'inventory.write' })).filter(
      (r) => r.decision === 'deny',
    );
    expect(denied.map((r) => [r.actor.principalId, r.target?.id])).toEqual([['viewer', 's2']]);
    expect(await store.servers.get(tenantId, 's2')).toBeUndefined();
  });

  it('iam.bindRole — a viewer with iam.write cannot hand itself a wider role (reach guard)', async () => {
    const store = createMemoryStore();
    const runtime = new Runtime({ store, adapters: [createLocalAdapter()] });
    await seed(store);
    await store.roles.create({
      tenantId,
      id: 'iam',
      name: 'IAM',
      rules: [{ effect: 'allow', actions: ['iam.write', 'iam.read'] }],
    });
    await store.roleBindings.create({ tenantId, principalId: 'viewer', roleId: 'iam' });
    const iam = createIamApi(createCallContext(runtime, { tenantId, principalId: 'viewer' }));
    await expect(iam.bindRole('viewer', 'all')).rejects.toThrow(AuthorizationError);
    const bindings = await store.roleBindings.listAll(tenantId, { where: { principalId: 'viewer' } });
    expect(bindings.map((b) => b.roleId).sort()).toEqual(['iam', 'read']);
  });
});
