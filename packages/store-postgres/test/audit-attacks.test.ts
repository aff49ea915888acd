import {
  AuditIntegrityError,
  auditColumnsOf,
  createFleet,
  createLocalAdapter,
  type Fleet,
  generateAuditSigningKey,
} from '@fleetward/core';
import { createPostgresStore } from '@fleetward/store-postgres';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeWithPostgres, dropSchema, freshSchema, POSTGRES_URL } from './support/postgres.js';
import { tamperPostgresAudit } from './support/tamper.js';

// The attacks of issue 11 on a real PostgreSQL database, through the SDK as an embedder uses it.
const T = 'acme';
const key = generateAuditSigningKey();

describeWithPostgres('audit log attacked underneath the store (PostgreSQL)', () => {
  let schema: string;
  let fleet: Fleet;
  const tamper = tamperPostgresAudit(() => schema);
  const alice = () => fleet.as({ tenantId: T, principalId: 'alice' });

  beforeEach(async () => {
    schema = freshSchema();
    fleet = createFleet({
      store: await createPostgresStore({ connectionString: POSTGRES_URL, schema }),
      adapters: [createLocalAdapter()],
      auditSigningKey: key.privateKeyPem,
    });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
  });
  afterEach(async () => {
    await fleet.close();
    await dropSchema(schema);
  });

  it('audit.list — editing actor_id, action and at of a principal’s rows no longer hides them, and verify names every row', async () => {
    await alice().servers.add({ id: 'web-1', name: 'web-1', accountId: 'local', provider: 'local' });
    await alice().servers.list();
    const before = await alice().audit.list({ actorId: 'alice' });
    expect(before.length).toBeGreaterThan(1);
    for (const r of before) {
      await tamper.setColumn(T, r.seq, 'actorId', 'ghost');
      await tamper.setColumn(T, r.seq, 'action', 'noise.read');
      await tamper.setColumn(T, r.seq, 'at', '2001-01-01T00:00:00.000Z');
    }
    const after = await alice().audit.list({ actorId: 'alice' });
    expect(after.map((r) => r.seq).slice(0, before.length)).toEqual(before.map((r) => r.seq));
    expect(await alice().audit.list({ actorId: 'ghost' })).toEqual([]);
    expect(await alice().audit.list({ until: new Date('2002-01-01T00:00:00.000Z') })).toEqual([]);

    const result = await alice().verifyAuditLog();
    expect(result.ok).toBe(false);
    for (const r of before) {
      for (const column of ['actorId', 'action', 'at']) {
        expect(result.problems).toContainEqual(
          expect.objectContaining({ problem: 'column-mismatch', seq: r.seq, id: r.id, column }),
        );
      }
    }
  });

  it('audit.list — an `at` column edited below the millisecond is still named by verify', async () => {
    const [first] = await alice().audit.list({ limit: 1 });
    await tamper.setColumn(T, first!.seq, 'at', first!.at.replace('Z', '001Z'));
    const result = await alice().verifyAuditLog();
    expect(result.problems).toEqual([
      expect.objectContaining({ problem: 'column-mismatch', seq: first!.seq, column: 'at' }),
    ]);
  });

  it('audited calls — keep working after a forged head row; verify runs and names the duplicate', async () => {
    await alice().servers.list();
    const head = (await fleet.store.audit.head(T))!;
    await tamper.insertRow(
      { ...auditColumnsOf(head), seq: head.seq + 1, id: 'forged' },
      JSON.stringify(head),
    );

    await expect(alice().audit.checkpoint()).rejects.toBeInstanceOf(AuditIntegrityError);
    expect(await alice().servers.list()).toEqual([]);
    const result = await alice().verifyAuditLog();
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ problem: 'duplicate', seq: head.seq }),
        expect.objectContaining({
          problem: 'column-mismatch',
          column: 'seq',
          seq: head.seq + 1,
          id: 'forged',
        }),
      ]),
    );
  });

  it('verify — the checkpoints the log records anchor it; requireCheckpoint fails without one', async () => {
    expect((await alice().verifyAuditLog({ requireCheckpoint: true })).problems).toEqual([
      expect.objectContaining({ problem: 'missing-checkpoint' }),
    ]);
    const cp = await alice().audit.checkpoint();
    expect(await alice().verifyAuditLog({ requireCheckpoint: true })).toMatchObject({
      ok: true,
      checkpointsVerified: 1,
      anchoredSeq: cp.seq,
    });
  });
});
