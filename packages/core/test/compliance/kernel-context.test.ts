import { AuthorizationError } from '@fleetward/core';
import { beforeEach, describe, expect, it } from 'vitest';
import { createComplianceApi } from '../../src/compliance/api.js';
import { addUnboundPrincipal, type KernelFixture, kernelFixture } from '../kernel-support.js';

// The compliance module on a bare kernel runtime: no Fleet, only a call context.

const DAY = 86_400_000;
let fx: KernelFixture;

beforeEach(async () => {
  fx = await kernelFixture();
  const tenantId = fx.tenantId;
  const now = fx.clock.now().getTime();
  for (const [id, scannedDaysAgo] of [
    ['web-1', 1],
    ['web-2', 30],
  ] as const) {
    await fx.store.servers.create({
      tenantId,
      id,
      name: id,
      accountId: 'acct-1',
      provider: 'aws',
      labels: {},
    });
    await fx.store.scanResults.create({
      tenantId,
      serverId: id,
      scannedAt: new Date(now - scannedDaysAgo * DAY).toISOString(),
      status: 'succeeded',
    });
  }
  await fx.store.servers.create({
    tenantId,
    id: 'web-3',
    name: 'web-3',
    accountId: 'acct-1',
    provider: 'aws',
    labels: {},
  });
  await addUnboundPrincipal(fx, 'ivan');
});

describe('compliance module on a kernel context', () => {
  it('standards.add, then summary — written and audited, and each server evaluated against it', async () => {
    const compliance = createComplianceApi(() => fx.ctx());
    const standard = await compliance.standards.add({
      id: 'weekly',
      name: 'Scanned weekly',
      rule: { kind: 'scanned-within', days: 7 },
    });
    expect(standard).toMatchObject({ id: 'weekly', enabled: true });
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.policy' })).toMatchObject([
      { result: 'success', details: { standardId: 'weekly', rule: 'scanned-within', projectId: null } },
    ]);

    const summary = await compliance.summary();
    expect(summary.generatedAt).toBe(fx.clock.now().toISOString());
    expect(summary.overall).toMatchObject({ total: 3, compliant: 1, nonCompliant: 1, unknown: 1 });
    expect(await fx.store.audit.list(fx.tenantId, { action: 'patch.read' })).toMatchObject([
      { target: { type: 'compliance-summary', id: '*' }, decision: 'allow', result: 'success' },
    ]);
  });

  it('evaluate — a principal without patch.read is denied, audited, and reads nothing', async () => {
    await expect(createComplianceApi(() => fx.ctx('ivan')).evaluate()).rejects.toBeInstanceOf(
      AuthorizationError,
    );
    expect(await fx.store.audit.list(fx.tenantId)).toMatchObject([
      { actor: { principalId: 'ivan' }, action: 'patch.read', decision: 'deny', result: 'denied' },
    ]);
  });
});
