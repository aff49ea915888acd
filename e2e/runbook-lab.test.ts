import {
  AuthorizationError,
  createDispatcher,
  createFleet,
  createMemoryStore,
  type Fleet,
  MemorySecretStore,
  verifyAuditChain,
} from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Receiver } from '../packages/core/test/notify/receiver.js';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

const HOSTS = ['rb1', 'rb2'];

let lab: Lab | undefined;
let fleet: Fleet | undefined;
let receiver: Receiver | undefined;

describeWithLab('runbooks on lab hosts over SSH', () => {
  beforeAll(async () => {
    lab = await startLab({ hosts: HOSTS.map((name) => ({ name, flavour: 'debian' as const })) });
  }, 300_000);
  afterAll(async () => {
    await receiver?.close();
    await fleet?.close();
    await lab?.stop();
  }, 120_000);

  it('start — script, verified reboot, scan, approval by a second principal, webhook delivered by the dispatcher', async () => {
    const access = labAccess(lab!);
    const store = createMemoryStore();
    fleet = labFleet(access, store);
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });

    // Webhook endpoints keep their signing secret in a SecretStore: a Fleet over the same store
    // with one (and no adapter) adds the endpoint, and the dispatcher signs with the same secrets.
    const secrets = new MemorySecretStore();
    const notify = createFleet({ store, adapters: [], secrets }).as({
      tenantId: TENANT,
      principalId: 'alice',
    });
    let secret = '';
    receiver = await Receiver.start({ secrets: () => [secret] });
    const added = await notify.notify.webhooks.add({ url: receiver.url, events: ['runbook.webhook'] });
    secret = added.secret;

    await alice.scripts.add({
      name: 'stamp',
      interpreter: 'sh',
      body: 'printf "%s" "$FLEETWARD_RUN_ID" > /var/tmp/fleetward-runbook-stamp\n',
    });
    await alice.runbooks.define({
      name: 'patch-night',
      description: 'stamp, reboot, rescan, ask, tell',
      steps: [
        { id: 'stamp', kind: 'script', script: 'stamp' },
        { id: 'reboot', kind: 'reboot', timeoutMs: 120_000, pollIntervalMs: 500 },
        { id: 'rescan', kind: 'scan' },
        { id: 'gate', kind: 'approval', instructions: 'check the hosts came back healthy' },
        { id: 'tell', kind: 'webhook', endpointId: added.endpoint.id, message: 'patch night is over' },
      ],
    });

    const before = Object.fromEntries(
      await Promise.all(HOSTS.map(async (h) => [h, await lab!.host(h).bootId()] as const)),
    );
    const paused = await alice.runbooks.start({ runbook: 'patch-night', targets: { projectId: 'lab' } });
    expect(paused.status).toBe('awaiting-approval');
    expect(paused.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['stamp', 'succeeded'],
      ['reboot', 'succeeded'],
      ['rescan', 'succeeded'],
      ['gate', 'running'],
      ['tell', 'pending'],
    ]);
    for (const host of HOSTS) {
      // Back channel: the script ran before the reboot (its file survived it), and the kernel
      // really booted again, with the boot id the SDK recorded.
      expect(await lab!.host(host).readFile('/var/tmp/fleetward-runbook-stamp'), host).toBe(
        paused.steps[0]!.scriptRunId,
      );
      const now = await lab!.host(host).bootId();
      expect(now, host).not.toBe(before[host]);
      expect(paused.steps[1]!.servers![host]).toMatchObject({
        status: 'succeeded',
        bootIdBefore: before[host],
        bootIdAfter: now,
      });
    }
    const scanJob = await store.jobs.require(TENANT, paused.steps[2]!.jobId!);
    expect(scanJob).toMatchObject({ kind: 'scan', status: 'succeeded' });
    expect(await store.outbox.listAll(TENANT)).toEqual([]);

    expect(await alice.runbooks.approveStep(paused.id).catch((e: unknown) => e)).toBeInstanceOf(
      AuthorizationError,
    );
    const done = await bob.runbooks.approveStep(paused.id, { stepId: 'gate', comment: 'both hosts are up' });
    expect(done.status).toBe('succeeded');

    const dispatcher = createDispatcher({ store, secrets });
    expect(await dispatcher.runOnce()).toMatchObject({ delivered: 1, parked: 0, retried: 0 });
    expect(receiver.received).toHaveLength(1);
    const delivered = receiver.received[0]!;
    expect(delivered.verified).toBe(true);
    const body = JSON.parse(delivered.body) as { type: string; data: Record<string, unknown> };
    expect(body.type).toBe('runbook.webhook');
    expect(body.data).toMatchObject({
      runId: done.id,
      runbook: { name: 'patch-night', revision: 1, contentHash: done.contentHash },
      step: { id: 'tell' },
      message: 'patch night is over',
      startedBy: 'alice',
      serverIds: HOSTS,
    });
    expect((body.data['steps'] as { status: string }[]).map((s) => s.status)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
      'succeeded',
      'running',
    ]);

    const audit = await store.audit.list(TENANT, { limit: 10_000 });
    expect(verifyAuditChain(audit).ok).toBe(true);
    const steps = audit
      .filter((r) => r.action === 'runbook.step' && r.result !== 'started')
      .map((r) => [r.details['stepId'], r.result, r.actor.principalId]);
    expect(steps).toEqual([
      ['stamp', 'success', 'alice'],
      ['reboot', 'success', 'alice'],
      ['rescan', 'success', 'alice'],
      ['gate', 'success', 'bob'],
      ['tell', 'success', 'alice'],
    ]);
    expect(
      audit.filter((r) => r.action === 'runbook.approve').map((r) => [r.actor.principalId, r.result]),
    ).toEqual([
      ['alice', 'denied'],
      ['bob', 'success'],
    ]);
    expect(audit.filter((r) => r.action === 'runbook.run').map((r) => r.result)).toEqual([
      'started',
      'started',
      'success',
    ]);
    const perServer = audit.filter((r) => r.action === 'script.run' && r.target?.type === 'server');
    expect(perServer.map((r) => r.target!.id).sort()).toEqual(HOSTS);
  }, 300_000);
});
