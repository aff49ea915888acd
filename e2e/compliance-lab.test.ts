import { createMemoryStore, type Fleet, renderHtml, renderJson } from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, expect, it } from 'vitest';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

const DAY = 86_400_000;
let lab: Lab | undefined;
let fleet: Fleet | undefined;
afterAll(async () => {
  await fleet?.close();
  await lab?.stop();
}, 120_000);

// Issue #5's check on the lab: a security patch pending for 8 days breaks the 7-day standard, with
// the patch and its age named; patching the host makes it compliant again.
describeWithLab('compliance on a lab host', () => {
  it('evaluate — 8 days after a security patch was first seen the host is non-compliant; after patching it is compliant', async () => {
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
    const clock = new ManualClock(new Date());
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore({ clock }), clock);
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
    await alice.compliance.standards.add({
      id: 'sec7',
      name: 'Security within 7 days',
      rule: { kind: 'max-pending-age', categories: ['security'], maxAgeDays: 7 },
    });

    await alice.scan({ serverIds: ['deb1'] });
    clock.advance(8 * DAY);
    await alice.scan({ serverIds: ['deb1'] });
    const [before] = await alice.compliance.evaluate({ serverIds: ['deb1'] });
    expect(before!.status).toBe('non-compliant');
    const offending = before!.results[0]!.reasons.flatMap((r) => r.patches ?? []);
    expect(offending).toEqual([
      expect.objectContaining({
        name: 'labdemo',
        candidateVersion: '1.1-1',
        category: 'security',
        ageDays: 8,
      }),
    ]);

    const report = await alice.reports.compliance({ kind: 'project', id: 'lab' });
    expect(report.totals).toEqual({ servers: 1, compliant: 0, nonCompliant: 1, unknown: 0 });
    expect(
      JSON.parse(renderJson(report)).patches.find((p: { name: string }) => p.name === 'labdemo').ageDays,
    ).toBe(8);
    expect(renderHtml(report)).toContain('labdemo');

    await alice.patch.policies.add({ id: 'sec', name: 'Security', projectId: 'lab' });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    expect((await bob.patch.executePlan(plan.id)).status).toBe('succeeded');
    clock.advance(DAY);
    await alice.scan({ serverIds: ['deb1'] });
    const [after] = await alice.compliance.evaluate({ serverIds: ['deb1'] });
    expect(after!.status).toBe('compliant');
    expect(after!.lastUpdatedAt).toBeDefined();
  }, 240_000);
});
