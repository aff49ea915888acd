import { createMemoryStore, verifyAuditChain } from '@fleetward/core';
import { describe, expect, it } from 'vitest';

async function chain(n: number) {
  const store = createMemoryStore();
  for (let i = 0; i < n; i++) {
    await store.audit.append({
      tenantId: 't',
      actor: { principalId: 'u', kind: 'human' },
      action: 'patch.scan',
      decision: 'allow',
      result: 'success',
      details: { i },
    });
  }
  return store.audit.list('t');
}

describe('verifyAuditChain', () => {
  it('verifyAuditChain — accepts an untouched chain', async () => {
    expect(verifyAuditChain(await chain(4))).toMatchObject({ ok: true, checked: 4, problems: [] });
  });

  it('verifyAuditChain — finds an edited record by its hash', async () => {
    const records = await chain(4);
    records[1] = { ...records[1]!, result: 'failure' };
    expect(verifyAuditChain(records).problems).toEqual([
      expect.objectContaining({ seq: 2, problem: 'hash-mismatch' }),
    ]);
  });

  it('verifyAuditChain — finds a removed record as a gap and a broken link', async () => {
    const records = await chain(4);
    records.splice(2, 1);
    const problems = verifyAuditChain(records).problems.map((p) => p.problem);
    expect(problems).toEqual(['gap', 'broken-link']);
  });

  it('verifyAuditChain — finds a record rewritten with a recomputed hash by the next link', async () => {
    const { auditRecordHash } = await import('@fleetward/core');
    const records = await chain(3);
    const forged = { ...records[1]!, details: { i: 99 } };
    records[1] = { ...forged, hash: auditRecordHash(forged) };
    expect(verifyAuditChain(records).problems).toEqual([
      expect.objectContaining({ seq: 3, problem: 'broken-link' }),
    ]);
  });

  it('verifyAuditChain — continues from a known-good record', async () => {
    const records = await chain(5);
    const from = { seq: records[2]!.seq, hash: records[2]!.hash };
    expect(verifyAuditChain(records.slice(3), from)).toMatchObject({ ok: true, checked: 2 });
  });
});
