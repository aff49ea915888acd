import { AuthorizationError, CapabilityMissingError, generateAuditSigningKey } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { createAuditApi } from '../../src/audit/api.js';
import { addUnboundPrincipal, kernelFixture } from '../kernel-support.js';

// The audit module on a bare kernel runtime: no Fleet, only a call context.

describe('audit module on a kernel context', () => {
  it('checkpoint — signs the head, records the whole checkpoint in the log, queues its webhook, and verify finds it', async () => {
    const fx = await kernelFixture({ auditSigningKey: generateAuditSigningKey().privateKeyPem });
    await fx.store.webhookEndpoints.create({
      tenantId: fx.tenantId,
      id: 'keeper',
      url: 'https://keeper.example.test/checkpoints',
      events: ['audit.*'],
      secretRef: 'acme/webhooks/keeper',
    });
    const audit = createAuditApi(() => fx.ctx());
    await audit.list();
    const checkpoint = await audit.checkpoint();

    expect(checkpoint).toMatchObject({ tenantId: fx.tenantId, seq: 1 });
    const [, recorded] = await fx.store.audit.list(fx.tenantId);
    expect(recorded).toMatchObject({
      seq: 2,
      target: { type: 'audit', id: 'checkpoint' },
      result: 'success',
      details: { seq: 1, hash: checkpoint.hash, signature: checkpoint.signature, keyId: checkpoint.keyId },
    });
    expect(await fx.store.outbox.listAll(fx.tenantId)).toMatchObject([
      { destinationId: 'keeper', eventType: 'audit.checkpoint', payload: { ...checkpoint } },
    ]);
    const verification = await audit.verify({ requireCheckpoint: true });
    expect(verification).toMatchObject({ ok: true, checkpointsVerified: 1 });
  });

  it('checkpoint — without a signing key it fails with CapabilityMissingError and leaves nothing behind', async () => {
    const fx = await kernelFixture();
    await expect(createAuditApi(() => fx.ctx()).checkpoint()).rejects.toBeInstanceOf(CapabilityMissingError);
    expect(await fx.store.audit.list(fx.tenantId)).toEqual([]);
    expect(await fx.store.outbox.listAll(fx.tenantId)).toEqual([]);
  });

  it('list — a principal without audit.read is denied, and the denial is itself in the log', async () => {
    const fx = await kernelFixture();
    await addUnboundPrincipal(fx, 'mallory');
    await expect(createAuditApi(() => fx.ctx('mallory')).list()).rejects.toBeInstanceOf(AuthorizationError);
    expect(await createAuditApi(() => fx.ctx()).list({ action: 'audit.read' })).toMatchObject([
      { actor: { principalId: 'mallory' }, decision: 'deny', result: 'denied' },
    ]);
  });
});
