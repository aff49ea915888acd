import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  AuthorizationError,
  CapabilityMissingError,
  TENANT_ADMIN_ROLE_ID,
  ValidationError,
} from '@fleetward/core';
import { sampleInput } from '@fleetward/testkit';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateTargets } from '../../src/inventory/targets.js';
import { createWalkFixture, outcomeOf, T, type WalkFixture } from './walk-table.js';

// Rule 1 on the paths that refuse after the allow decision or find nothing to do, and rule 8 on
// the forms of input that used to reach code as raw values.

let f: WalkFixture;
beforeEach(async () => {
  f = await createWalkFixture();
});
afterEach(() => f.close());

async function recordsSince(seq: number) {
  return (await f.fleet.store.audit.list(T, { limit: 1000 })).filter((r) => r.seq > seq);
}
const head = async () => (await f.fleet.store.audit.head(T))?.seq ?? 0;

describe('keys.rotateDue', () => {
  it('keys.rotateDue — a due key the adapter cannot rotate leaves a failure record for the key and for the call', async () => {
    // The fixture's policy rotates every 720 hours; its adapter has no `login` capability.
    f.clock.advance(721 * 3_600_000);
    const seq = await head();
    const outcome = await outcomeOf(f.admin.keys.rotateDue());
    expect(outcome.ok ? 'rotated' : outcome.error).toBeInstanceOf(CapabilityMissingError);
    const records = await recordsSince(seq);
    for (const id of [f.ids.credentialId, 'due']) {
      expect(records).toContainEqual(
        expect.objectContaining({
          action: 'keys.rotate',
          target: { type: 'credential', id },
          decision: 'allow',
          result: 'failure',
          details: expect.objectContaining({ code: 'CAPABILITY_MISSING' }),
        }),
      );
    }
  });

  it('keys.rotateDue — a principal whose role does not reach a due key’s servers is refused before anything is rotated', async () => {
    await f.admin.projects.add({ id: 'db', name: 'db', selector: { labels: { tier: 'db' } } });
    await f.admin.iam.addPrincipal({ id: 'scoped', name: 'Scoped', kind: 'human', affiliation: 'employee' });
    await f.admin.iam.bindRole('scoped', TENANT_ADMIN_ROLE_ID, { projectIds: ['db'] });
    f.clock.advance(721 * 3_600_000);
    const seq = await head();
    const scoped = f.fleet.as({ tenantId: T, principalId: 'scoped' });
    const outcome = await outcomeOf(scoped.keys.rotateDue());
    expect(outcome.ok ? 'rotated' : outcome.error).toBeInstanceOf(AuthorizationError);
    const records = await recordsSince(seq);
    expect(records).toEqual([
      expect.objectContaining({ action: 'keys.rotate', decision: 'deny', result: 'denied' }),
    ]);
    expect(await f.fleet.store.jobs.listAll(T, { where: { kind: 'key-rotation' } })).toEqual([]);
  });
});

describe('access.cancel', () => {
  it('access.cancel — a tenant admin cancelling someone else’s request is refused with a deny record, and the request stays pending', async () => {
    const seq = await head();
    const approver = f.fleet.as({ tenantId: T, principalId: 'approver' });
    const outcome = await outcomeOf(approver.access.cancel(f.ids.requestId));
    expect(outcome.ok ? 'cancelled' : outcome.error).toBeInstanceOf(AuthorizationError);
    expect(await recordsSince(seq)).toEqual([
      expect.objectContaining({
        action: 'access.request',
        target: { type: 'access-request', id: f.ids.requestId },
        decision: 'deny',
        result: 'denied',
        actor: expect.objectContaining({ principalId: 'approver' }),
      }),
    ]);
    expect((await f.fleet.store.accessRequests.require(T, f.ids.requestId)).status).toBe('pending');
  });
});

describe('patch.approveExclusions', () => {
  async function planWithExclusion() {
    const sample = sampleInput('patchPlans', T);
    return f.fleet.store.patchPlans.create({
      ...sample,
      id: 'plan-excl',
      policyId: f.ids.policyId,
      projectId: f.ids.projectId,
      requestedBy: 'admin',
      servers: [
        {
          ...sample.servers[0]!,
          serverId: f.ids.serverId,
          heldBack: [{ name: 'openssl', version: '3.1', reason: 'excluded', needsSecondaryApproval: true }],
        },
      ],
      waves: [{ name: 'all', serverIds: [f.ids.serverId] }],
    });
  }

  it('patch.approveExclusions — the plan’s requester giving its secondary approval is a deny record', async () => {
    const plan = await planWithExclusion();
    const seq = await head();
    const outcome = await outcomeOf(f.admin.patch.approveExclusions(plan.id, ['openssl']));
    expect(outcome.ok ? 'approved' : outcome.error).toBeInstanceOf(AuthorizationError);
    expect(await recordsSince(seq)).toContainEqual(
      expect.objectContaining({ action: 'patch.approve', decision: 'deny', result: 'denied' }),
    );
  });

  it('patch.approveExclusions — a package the plan does not exclude is named by its index, in a failure record', async () => {
    const plan = await planWithExclusion();
    const seq = await head();
    const approver = f.fleet.as({ tenantId: T, principalId: 'approver' });
    const outcome = await outcomeOf(approver.patch.approveExclusions(plan.id, ['openssl', 'curl']));
    expect(outcome.ok ? 'approved' : outcome.error).toBeInstanceOf(ValidationError);
    expect((outcome as { error: ValidationError }).error.paths).toEqual(['1']);
    expect(await recordsSince(seq)).toContainEqual(
      expect.objectContaining({
        action: 'patch.approve',
        decision: 'allow',
        result: 'failure',
        details: { code: 'VALIDATION_FAILED' },
      }),
    );
    expect((await f.fleet.store.patchPlans.require(T, plan.id)).exclusionApprovals).toEqual([]);
  });
});

describe('scripts.exportRepository', () => {
  it('scripts.exportRepository — a relative folder is refused with a ValidationError naming dir, and nothing is written', async () => {
    const relative = `fleetward-relative-export-${process.pid}`;
    try {
      const outcome = await outcomeOf(f.admin.scripts.exportRepository(relative));
      expect(outcome.ok ? 'exported' : outcome.error).toBeInstanceOf(ValidationError);
      expect((outcome as { error: ValidationError }).error.subject).toBe('dir');
      expect(existsSync(resolve(relative))).toBe(false);
    } finally {
      await rm(resolve(relative), { recursive: true, force: true });
    }
  });
});

describe('validateTargets', () => {
  const KEYS = ['serverIds', 'selector', 'projectId'] as const;

  it('validateTargets — a bad value under the one key given is named by that key, never by the root', () => {
    fc.assert(
      fc.property(fc.constantFrom(...KEYS), fc.anything(), (key, value) => {
        let error: unknown;
        try {
          validateTargets({ [key]: value });
          return; // a valid value of that form
        } catch (thrown) {
          error = thrown;
        }
        expect(error).toBeInstanceOf(ValidationError);
        const paths = (error as ValidationError).paths;
        expect(paths.length).toBeGreaterThan(0);
        for (const path of paths) expect(path.split('.')[0]).toBe(key);
      }),
      { numRuns: 300 },
    );
  });

  it('validateTargets — none or several of the three forms is refused naming all three', () => {
    fc.assert(
      fc.property(
        fc.subarray([...KEYS]).filter((keys) => keys.length !== 1),
        fc.anything(),
        (keys, value) => {
          const input = Object.fromEntries(keys.map((k) => [k, value]));
          let error: unknown;
          try {
            validateTargets(input);
          } catch (thrown) {
            error = thrown;
          }
          expect(error).toBeInstanceOf(ValidationError);
          for (const key of KEYS) expect((error as ValidationError).message).toContain(key);
        },
      ),
    );
  });
});
