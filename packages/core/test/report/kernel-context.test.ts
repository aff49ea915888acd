import { AuthorizationError, NotFoundError } from '@fleetward/core';
import { beforeEach, describe, expect, it } from 'vitest';
import { createReportsApi } from '../../src/report/build.js';
import { addUnboundPrincipal, type KernelFixture, kernelFixture } from '../kernel-support.js';

// The reports module on a bare kernel runtime: no Fleet, only a call context.

let fx: KernelFixture;

beforeEach(async () => {
  fx = await kernelFixture();
  const tenantId = fx.tenantId;
  await fx.store.servers.create({
    tenantId,
    id: 'web-1',
    name: 'web-1',
    accountId: 'acct-1',
    provider: 'aws',
    labels: {},
  });
  await fx.store.scanResults.create({
    tenantId,
    serverId: 'web-1',
    scannedAt: fx.clock.now().toISOString(),
    status: 'succeeded',
    patches: [
      {
        name: 'openssl',
        arch: 'amd64',
        installedVersion: '3.0.1',
        candidateVersion: '3.0.2',
        origins: [],
        category: 'security',
        severity: 'important',
      },
      {
        name: 'tzdata',
        arch: 'all',
        installedVersion: '2025a',
        candidateVersion: '2025b',
        origins: [],
        category: 'other',
        severity: 'unspecified',
      },
    ],
  });
  await addUnboundPrincipal(fx, 'mallory');
});

describe('reports module on a kernel context', () => {
  it('compliance — builds the report from the tenant’s servers and scans, audited as reads', async () => {
    const report = await createReportsApi(() => fx.ctx()).compliance(
      { kind: 'tenant' },
      { securityOnly: true },
    );
    expect(report).toMatchObject({
      title: 'Patch compliance report',
      scope: { kind: 'tenant', id: fx.tenantId, name: 'Acme' },
      totals: { servers: 1 },
      servers: [{ id: 'web-1', pending: 2, security: 1 }],
    });
    expect(report.patches.map((p) => p.name)).toEqual(['openssl']);
    const reads = await fx.store.audit.list(fx.tenantId, { action: 'patch.read' });
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((r) => r.decision === 'allow' && r.actor.principalId === 'admin')).toBe(true);
  });

  it('compliance — a principal without patch.read is denied and audited', async () => {
    await expect(
      createReportsApi(() => fx.ctx('mallory')).compliance({ kind: 'tenant' }),
    ).rejects.toBeInstanceOf(AuthorizationError);
    expect(await fx.store.audit.list(fx.tenantId)).toMatchObject([
      { actor: { principalId: 'mallory' }, action: 'patch.read', decision: 'deny' },
    ]);
  });

  it('emailCompliance — an unknown integration is refused before any report is built, and audited', async () => {
    await expect(
      createReportsApi(() => fx.ctx()).emailCompliance(
        { kind: 'tenant' },
        { integrationId: 'smtp-main', to: ['ops@example.test'] },
      ),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(await fx.store.audit.list(fx.tenantId)).toMatchObject([
      { target: { type: 'report', id: `tenant:${fx.tenantId}` }, decision: 'allow', result: 'failure' },
    ]);
    expect(await fx.store.outbox.listAll(fx.tenantId)).toEqual([]);
  });
});
