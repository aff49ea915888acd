import {
  AuthorizationError,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  verifyAuditChain,
} from '@fleetward/core';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labAccess, labFleet, seed, TENANT } from './support/fleet.js';

const HOSTS = Array.from({ length: 10 }, (_, i) => `sop${String(i + 1).padStart(2, '0')}`);

let lab: Lab | undefined;
let fleet: Fleet | undefined;
let alice: FleetSession;
let bob: FleetSession;

/** Whether a file exists on a lab host, asked through the back channel rather than through the SDK. */
async function exists(host: string, path: string): Promise<boolean> {
  return (await lab!.host(host).exec(['test', '-e', path])).exitCode === 0;
}

describeWithLab('script runs on lab hosts over SSH', () => {
  beforeAll(async () => {
    lab = await startLab({ hosts: HOSTS.map((name) => ({ name, flavour: 'debian' as const })) });
    const access = labAccess(lab);
    fleet = labFleet(access, createMemoryStore());
    await seed(fleet, access);
    alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
  }, 300_000);
  afterAll(async () => {
    await fleet?.close();
    await lab?.stop();
  }, 120_000);

  it("runScript — parameter x'; touch /tmp/pwned; ' on three hosts: the script sees the literal value and no file appears", async () => {
    await alice.scripts.add({
      name: 'echo-param',
      interpreter: 'bash',
      body: 'printf "%s" "$X" > /tmp/fleetward-param\necho "got: $X"\n',
      parameters: [{ name: 'X', type: 'string', required: true }],
    });
    const value = "x'; touch /tmp/pwned; '";
    const targets = HOSTS.slice(0, 3);
    const results = await alice.scripts.runScript({
      script: 'echo-param',
      params: { X: value },
      targets: { serverIds: targets },
    });
    expect(results.run.status).toBe('succeeded');
    for (const s of results.servers)
      expect(s).toMatchObject({ state: 'succeeded', stdout: { text: `got: ${value}\n` } });
    for (const host of targets) {
      expect(await lab!.host(host).readFile('/tmp/fleetward-param'), host).toBe(value);
      expect(await exists(host, '/tmp/pwned'), host).toBe(false);
    }
    const started = (await fleet!.store.audit.list(TENANT, { action: 'script.run' })).find(
      (r) => r.result === 'started',
    );
    expect(started!.details).toMatchObject({ params: { X: value }, contentHash: results.run.contentHash });
  }, 120_000);

  it('approve — editing an approved risky script voids its approval; the run is refused until it is approved again', async () => {
    const host = HOSTS[0]!;
    const v1 = await alice.scripts.add({
      name: 'rotate-logs',
      interpreter: 'sh',
      body: 'echo v1 > /tmp/rotate-logs\n',
      risky: true,
    });
    await bob.scripts.approve('rotate-logs', { hash: v1.contentHash, comment: 'looked at it' });
    expect(
      (await alice.scripts.runScript({ script: 'rotate-logs', targets: { serverIds: [host] } })).run.status,
    ).toBe('succeeded');
    expect(await lab!.host(host).readFile('/tmp/rotate-logs')).toBe('v1\n');

    const v2 = await alice.scripts.add({
      name: 'rotate-logs',
      interpreter: 'sh',
      body: 'echo v2 > /tmp/rotate-logs\n',
      risky: true,
    });
    const refused = await alice.scripts
      .runScript({ script: 'rotate-logs', targets: { serverIds: [host] } })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthorizationError);
    expect((refused as Error).message).toContain('nobody has approved its content hash yet');
    expect(await lab!.host(host).readFile('/tmp/rotate-logs')).toBe('v1\n');

    await bob.scripts.approve('rotate-logs', { hash: v2.contentHash });
    expect(
      (await alice.scripts.runScript({ script: 'rotate-logs', targets: { serverIds: [host] } })).run.status,
    ).toBe('succeeded');
    expect(await lab!.host(host).readFile('/tmp/rotate-logs')).toBe('v2\n');
  }, 120_000);

  it('runScript — 10 targets, error budget 2, 3 broken hosts: the run stops, says why, and lists the untouched servers as not started', async () => {
    const broken = [HOSTS[1]!, HOSTS[3]!, HOSTS[5]!];
    for (const host of broken) await lab!.host(host).writeFile('/etc/fleetward-broken', 'yes\n');
    await alice.scripts.add({
      name: 'health-touch',
      interpreter: 'sh',
      body: [
        'if [ -e /etc/fleetward-broken ]; then echo "this host is broken" >&2; exit 2; fi',
        'date -u +%s > /tmp/health-touch',
        '',
      ].join('\n'),
    });
    const plan = await alice.scripts.planRun({
      script: 'health-touch',
      targets: { serverIds: HOSTS },
      rollout: { maxConcurrency: 1, errorBudget: { count: 2 } },
    });
    expect(plan.stopCondition.description).toContain('once more than 2 of 10 servers have failed');
    const results = await bob.scripts.startRun(plan.id);

    expect(results.run.status).toBe('stopped');
    expect(results.run.reason).toBe(
      'error budget spent (3 failed servers counted, at most 2 allowed); 4 server(s) not started',
    );
    const byState = (state: string) =>
      results.servers.filter((s) => s.state === state).map((s) => s.serverId);
    expect(byState('failed')).toEqual(broken);
    expect(byState('succeeded')).toEqual([HOSTS[0], HOSTS[2], HOSTS[4]]);
    expect(byState('not-started')).toEqual(HOSTS.slice(6));
    for (const s of results.servers.filter((x) => x.state === 'failed')) {
      expect(s).toMatchObject({ exitCode: 2, stderr: { text: 'this host is broken\n' }, unreachable: false });
    }
    for (const host of HOSTS.slice(6)) expect(await exists(host, '/tmp/health-touch'), host).toBe(false);
    for (const host of [HOSTS[0]!, HOSTS[2]!, HOSTS[4]!])
      expect(await exists(host, '/tmp/health-touch'), host).toBe(true);
    expect(verifyAuditChain(await fleet!.store.audit.list(TENANT, { limit: 10_000 })).ok).toBe(true);
  }, 180_000);
});
