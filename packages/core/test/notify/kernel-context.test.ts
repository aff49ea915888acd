import { CapabilityMissingError, ConflictError, MemorySecretStore } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { enqueueEvent } from '../../src/kernel/outbox.js';
import { createNotifyApi } from '../../src/notify/api.js';
import { kernelFixture } from '../kernel-support.js';

// The notify module on a bare kernel runtime: no Fleet, only a call context.

describe('notify module on a kernel context', () => {
  it('webhooks.add — the secret goes to the SecretStore only; the endpoint is written and audited without it', async () => {
    const secrets = new MemorySecretStore();
    const fx = await kernelFixture({ secrets });
    const notify = createNotifyApi(() => fx.ctx());
    const { endpoint, secret } = await notify.webhooks.add({
      url: 'https://hooks.example.test/in',
      events: ['scan.completed'],
    });
    expect(secret).toMatch(/^whsec_/);
    expect(await secrets.get(endpoint.secretRef)).toContain(secret);
    expect(await fx.store.webhookEndpoints.get(fx.tenantId, endpoint.id)).toMatchObject({
      url: 'https://hooks.example.test/in',
      events: ['scan.completed'],
    });
    const records = await fx.store.audit.list(fx.tenantId, { action: 'patch.policy' });
    expect(records).toMatchObject([
      {
        target: { type: 'webhook-endpoint', id: endpoint.id },
        result: 'success',
        details: { endpointId: endpoint.id, host: 'hooks.example.test' },
      },
    ]);
    expect(JSON.stringify(records)).not.toContain(secret);
  });

  it('webhooks.add — without a SecretStore it fails with CapabilityMissingError and writes nothing', async () => {
    const fx = await kernelFixture();
    await expect(
      createNotifyApi(() => fx.ctx()).webhooks.add({ url: 'https://hooks.example.test/in', events: ['*'] }),
    ).rejects.toBeInstanceOf(CapabilityMissingError);
    expect(await fx.store.webhookEndpoints.listAll(fx.tenantId)).toEqual([]);
  });

  it('outbox.replay — a message that is not parked is refused with ConflictError, audited as a failure', async () => {
    const fx = await kernelFixture({ secrets: new MemorySecretStore() });
    const notify = createNotifyApi(() => fx.ctx());
    await notify.webhooks.add({ url: 'https://hooks.example.test/in', events: ['scan.completed'] });
    const [message] = await fx.store.transaction((tx) =>
      enqueueEvent(tx, {
        tenantId: fx.tenantId,
        eventType: 'scan.completed',
        payload: {},
        now: fx.clock.now(),
      }),
    );
    await expect(notify.outbox.replay(message!.id)).rejects.toBeInstanceOf(ConflictError);
    expect(await fx.store.audit.list(fx.tenantId, { afterSeq: 1 })).toMatchObject([
      { target: { type: 'outbox-message', id: message!.id }, decision: 'allow', result: 'failure' },
    ]);
    expect((await fx.store.outbox.require(fx.tenantId, message!.id)).status).toBe('pending');
  });
});
