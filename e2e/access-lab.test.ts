import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthorizationError,
  type Clock,
  type Fleet,
  MemorySecretStore,
  ValidationError,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
// The sweep as a function of the runtime, the way `createAccessSweeper` runs it (internal wiring).
import { sweepAccess } from '../packages/core/src/access/api.js';
import { type LabAccess, labAccess, labFleet, seed, TENANT } from './support/fleet.js';
import { sshLogin, userKeyPair } from './support/ssh-client.js';

// Issue #6's checks on the lab: role-based denials that name their rule, and a just-in-time grant
// that sshd itself stops honouring at its end, with the orchestrator stopped; the next sweep
// removes the line and verifies it is gone.

let lab: Lab | undefined;
let access: LabAccess;
let dbPath: string;
const fleets: Fleet[] = [];
afterAll(async () => {
  for (const f of fleets) await f.close().catch(() => {});
  await lab?.stop();
}, 120_000);

/**
 * The fleet's clock runs `lagMs` behind the real one. Grants are timed by the fleet's clock, but
 * sshd checks `expiry-time` against the host's real clock: a 2-minute grant made with a 110 s lag
 * ends 10 s from now, which keeps the test short without faking what sshd sees.
 */
const lagging = (lagMs: number): Clock => ({ now: () => new Date(Date.now() - lagMs) });

/** Holds the tenant's user CA across the fleets the tests open and close. */
const secrets = new MemorySecretStore();

function openFleet(clock?: Clock): Fleet {
  const fleet = labFleet(access, createSqliteStore({ path: dbPath }), clock, secrets);
  fleets.push(fleet);
  return fleet;
}

describeWithLab('access management on lab hosts', () => {
  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
      ],
    });
    access = labAccess(lab);
    dbPath = join(await mkdtemp(join(tmpdir(), 'fleetward-access-')), 'fleet.db');
    const fleet = openFleet();
    await seed(fleet, access);
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.servers.update(
      'deb1',
      { labels: { flavour: 'debian', env: 'staging' } },
      { expectedVersion: 1 },
    );
    await alice.servers.update('rhel1', { labels: { flavour: 'rhel', env: 'prod' } }, { expectedVersion: 1 });
    await fleet.store.principals.create({
      tenantId: TENANT,
      id: 'carol',
      name: 'Carol (contractor)',
      kind: 'human',
      affiliation: 'contractor',
    });
    await fleet.store.roles.create({
      tenantId: TENANT,
      id: 'contractor',
      name: 'contractor',
      rules: [
        {
          effect: 'allow',
          actions: ['patch.plan', 'patch.read', 'patch.scan'],
          servers: { labels: { env: 'staging' } },
        },
        { effect: 'allow', actions: ['access.request', 'inventory.read'], servers: { all: true } },
      ],
    });
    await fleet.store.roleBindings.create({ tenantId: TENANT, principalId: 'carol', roleId: 'contractor' });
    await alice.patch.policies.add({ id: 'staging', name: 'Staging', projectId: 'lab' });
    await fleet.close();
  }, 180_000);

  it('authorize — a contractor allowed patch.plan on env=staging cannot plan on env=prod, and the denial names the rule', async () => {
    const fleet = openFleet();
    const carol = fleet.as({ tenantId: TENANT, principalId: 'carol' });
    const plan = await carol.patch.planPatchRun({ policyId: 'staging', targets: { serverIds: ['deb1'] } });
    expect(plan.servers.map((s) => s.serverId)).toEqual(['deb1']);

    const denied = await carol.patch
      .planPatchRun({ policyId: 'staging', targets: { serverIds: ['rhel1'] } })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(AuthorizationError);
    expect((denied as Error).message).toContain(
      'role contractor rule 0 allows it only on servers matching env=staging',
    );
    const records = await fleet.as({ tenantId: TENANT, principalId: 'alice' }).auditLog({ actorId: 'carol' });
    const record = records.at(-1);
    expect(record).toMatchObject({ action: 'patch.plan', decision: 'deny', actor: { principalId: 'carol' } });
    expect(record!.reason).toContain('role contractor rule 0');
  });

  it('jit — a 2-minute grant logs in; after its end sshd refuses it with the orchestrator stopped; the next sweep removes the line', async () => {
    const user = await userKeyPair('carol@laptop');
    const login = (address: string) =>
      sshLogin({
        address,
        login: 'labuser',
        privateKeyPath: user.privateKeyPath,
        knownHostsPath: lab!.knownHostsPath,
      });
    const deb1 = lab!.host('deb1');
    const rhel1 = lab!.host('rhel1');
    expect(await login(deb1.address)).toBe(255);

    const fleet = openFleet(lagging(110_000));
    const carol = fleet.as({ tenantId: TENANT, principalId: 'carol' });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    await expect(
      carol.access.request({
        servers: { serverIds: ['deb1', 'rhel1'] },
        login: 'labuser',
        publicKey: user.publicKey,
        durationMinutes: 2,
        reason: 'too short',
        ticket: 'INC-1001',
      }),
    ).rejects.toBeInstanceOf(ValidationError);
    const request = await carol.access.request({
      servers: { serverIds: ['deb1', 'rhel1'] },
      login: 'labuser',
      publicKey: user.publicKey,
      durationMinutes: 2,
      reason: 'investigate the failing nightly export on both hosts',
      ticket: 'INC-1001',
    });
    expect(request.status).toBe('pending');
    await expect(carol.access.approve(request.id)).rejects.toBeInstanceOf(AuthorizationError);
    // Nothing is on the servers before approval.
    expect(await login(deb1.address)).toBe(255);

    const { request: approved, grant } = await alice.access.approve(request.id, {
      comment: 'ok for INC-1001',
    });
    expect(approved.status).toBe('approved');
    expect(grant!.targets.map((t) => t.state)).toEqual(['installed', 'installed']);
    // OpenSSH 9.2 on the lab: UTC with Z, at the grant's end to the second.
    const expiry = grant!.notAfter.replace(/[-:T]/g, '').slice(0, 14);
    expect(grant!.targets[0]!.expiryTime).toBe(`${expiry}Z`);

    const home = (await deb1.exec(['getent', 'passwd', 'labuser'])).stdout.split(':')[5]!;
    const keysPath = `${home}/.ssh/authorized_keys`;
    const line = (await deb1.readFile(keysPath))
      .split('\n')
      .find((l) => l.includes(`fleetward:grant=${grant!.id}`));
    expect(line).toMatch(new RegExp(`^expiry-time="${expiry}Z",restrict,pty ssh-ed25519 `));
    // The lab user's own key is untouched.
    expect((await deb1.readFile(keysPath)).split('\n').filter(Boolean).length).toBe(2);

    expect(await login(deb1.address)).toBe(0);
    expect(await login(rhel1.address)).toBe(0);

    // The orchestrator goes away before the grant ends.
    await fleet.close();
    const wait = Date.parse(grant!.notAfter) + 2_000 - Date.now();
    expect(wait).toBeLessThan(15_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    expect(await login(deb1.address)).toBe(255);
    expect(await login(rhel1.address)).toBe(255);
    // sshd refused it by itself: the line is still there, and sshd says why.
    expect(await deb1.readFile(keysPath)).toContain(`fleetward:grant=${grant!.id}`);
    expect(await deb1.readFile('/var/log/fleetward-lab/sshd.log')).toMatch(
      /Refused by key options\r?\nFailed publickey for labuser/,
    );

    // The orchestrator is back (on the real clock): its sweep removes the lines and checks they are gone.
    const back = openFleet();
    const swept = await sweepAccess(back, TENANT);
    expect(swept.expiredGrants).toEqual([grant!.id]);
    expect(swept.removed).toBe(2);
    expect(swept.failures).toEqual([]);
    for (const host of [deb1, rhel1]) {
      expect(await host.readFile(keysPath)).not.toContain('fleetward:grant=');
      expect((await host.exec(['stat', '-c', '%a %U', keysPath])).stdout.trim()).toBe('600 labuser');
    }
    const ended = await back.store.accessGrants.require(TENANT, grant!.id);
    expect(ended).toMatchObject({ status: 'expired', cleanedUp: true });
    expect(ended.targets.map((t) => t.state)).toEqual(['removed', 'removed']);
    // History stays: the request is kept, ended, with its approval.
    const history = await back.as({ tenantId: TENANT, principalId: 'alice' }).access.listRequests();
    expect(history.find((r) => r.id === request.id)).toMatchObject({
      status: 'ended',
      approvals: [expect.objectContaining({ principalId: 'alice', comment: 'ok for INC-1001' })],
    });
    const actions = (await back.store.audit.list(TENANT, {})).map((r) => r.action);
    for (const a of [
      'access.request',
      'access.approve',
      'access.grant.install',
      'access.expire',
      'access.grant.remove',
    ]) {
      expect(actions).toContain(a);
    }
  }, 240_000);

  it('jit — a 2-minute certificate grant logs in with the certificate only; after its end sshd refuses it with the orchestrator stopped', async () => {
    const user = await userKeyPair('carol@laptop');
    // Away from the key, so ssh never picks it up as <key>-cert.pub by itself.
    const certPath = join(await mkdtemp(join(tmpdir(), 'fleetward-cert-')), 'grant-cert.pub');
    const deb1 = lab!.host('deb1');
    const bare = () =>
      sshLogin({
        address: deb1.address,
        login: 'labuser',
        privateKeyPath: user.privateKeyPath,
        knownHostsPath: lab!.knownHostsPath,
      });
    const withCert = () =>
      sshLogin({
        address: deb1.address,
        login: 'labuser',
        privateKeyPath: user.privateKeyPath,
        knownHostsPath: lab!.knownHostsPath,
        certificatePath: certPath,
      });
    expect(await bare()).toBe(255);

    const fleet = openFleet(lagging(110_000));
    const carol = fleet.as({ tenantId: TENANT, principalId: 'carol' });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const request = await carol.access.request({
      mode: 'ssh-cert',
      servers: { serverIds: ['deb1'] },
      login: 'labuser',
      publicKey: user.publicKey,
      durationMinutes: 2,
      reason: 'inspect the export spool with a short-lived certificate',
      ticket: 'INC-1002',
    });
    const { grant: approved } = await alice.access.approve(request.id);
    expect(approved!.targets.map((t) => t.state)).toEqual(['installed']);
    const grant = await carol.access.getGrant(approved!.id);
    expect(grant.certificate).toMatch(/^ssh-ed25519-cert-v01@openssh\.com /);
    await writeFile(certPath, `${grant.certificate}\n`);

    const home = (await deb1.exec(['getent', 'passwd', 'labuser'])).stdout.split(':')[5]!;
    const keysPath = `${home}/.ssh/authorized_keys`;
    const caLines = (await deb1.readFile(keysPath))
      .split('\n')
      .filter((l) => l.includes('fleetward:user-ca'));
    expect(caLines).toHaveLength(1);
    expect(caLines[0]).toMatch(/^cert-authority,principals="labuser" ssh-ed25519 \S+ fleetward:user-ca$/);
    // The user's key itself is nowhere in the file: only the certificate lets it in.
    expect(await deb1.readFile(keysPath)).not.toContain(user.publicKey.split(' ')[1]!);

    expect(await withCert()).toBe(0);
    expect(await bare()).toBe(255);
    expect(await deb1.readFile('/var/log/fleetward-lab/sshd.log')).toContain(
      `ID fleetward:${TENANT}:${request.id}:INC-1002`,
    );
    // The inventory and the access audit know the CA line as Fleetward's, needed while the grant lasts.
    const [inventory] = await alice.keys.inventory({ serverIds: ['deb1'] });
    expect(inventory!.keys.filter((k) => k.fleetwardUserCa).map((k) => k.login)).toEqual(['labuser']);
    const report = await alice.audit.accessReport();
    expect(report.keys.filter((k) => k.kind === 'user-ca')).toEqual([
      expect.objectContaining({ serverId: 'deb1', login: 'labuser', needed: 'yes' }),
    ]);

    await fleet.close();
    const wait = Date.parse(grant.notAfter) + 2_000 - Date.now();
    expect(wait).toBeLessThan(15_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    expect(await withCert()).toBe(255);
    expect(await bare()).toBe(255);
    // sshd refused the expired certificate by itself: the CA line is still there.
    expect(await deb1.readFile(keysPath)).toContain('fleetward:user-ca');
    expect(await deb1.readFile('/var/log/fleetward-lab/sshd.log')).toMatch(/Certificate invalid: expired/);

    const back = openFleet();
    const swept = await sweepAccess(back, TENANT);
    expect(swept.expiredGrants).toEqual([grant.id]);
    expect(swept.failures).toEqual([]);
    expect(await deb1.readFile(keysPath)).not.toContain('fleetward:user-ca');
    expect((await deb1.exec(['stat', '-c', '%a %U', keysPath])).stdout.trim()).toBe('600 labuser');
    expect(await back.store.accessGrants.require(TENANT, grant.id)).toMatchObject({
      status: 'expired',
      cleanedUp: true,
    });
  }, 240_000);

  it('revoke — a certificate grant lets go of the CA line only when no other live certificate grant of the login needs it', async () => {
    const deb1 = lab!.host('deb1');
    const home = (await deb1.exec(['getent', 'passwd', 'labuser'])).stdout.split(':')[5]!;
    const keysPath = `${home}/.ssh/authorized_keys`;
    const fleet = openFleet();
    const carol = fleet.as({ tenantId: TENANT, principalId: 'carol' });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    const grants = [];
    for (const name of ['first', 'second']) {
      const user = await userKeyPair(`carol-${name}`);
      const request = await carol.access.request({
        mode: 'ssh-cert',
        servers: { serverIds: ['deb1'] },
        login: 'labuser',
        publicKey: user.publicKey,
        durationMinutes: 10,
        reason: `overlapping certificate grant, the ${name}`,
        ticket: 'INC-1003',
      });
      const { grant } = await alice.access.approve(request.id);
      const certificatePath = join(await mkdtemp(join(tmpdir(), 'fleetward-cert-')), 'grant-cert.pub');
      await writeFile(certificatePath, `${grant!.certificate}\n`);
      grants.push({
        id: grant!.id,
        login: () =>
          sshLogin({
            address: deb1.address,
            login: 'labuser',
            privateKeyPath: user.privateKeyPath,
            knownHostsPath: lab!.knownHostsPath,
            certificatePath,
          }),
      });
    }
    const [first, second] = grants as [(typeof grants)[0], (typeof grants)[0]];
    // Installed once for the login, however many grants use it.
    expect((await deb1.readFile(keysPath)).match(/fleetward:user-ca/g)).toHaveLength(1);
    expect(await second.login()).toBe(0);

    const revoked = await alice.access.revoke(first.id, { reason: 'done' });
    expect(revoked.targets.map((t) => t.state)).toEqual(['removed']);
    expect(await deb1.readFile(keysPath)).toContain('fleetward:user-ca');
    expect(await second.login()).toBe(0);
    // The documented limit: while the CA line stays, the revoked grant's certificate still works
    // until it expires; revoking one certificate would need RevokedKeys in sshd_config.
    expect(await first.login()).toBe(0);
    const removal = (await fleet.store.audit.list(TENANT, { action: 'access.grant.remove' })).at(-1);
    expect(removal!.details).toMatchObject({ grantId: first.id, caLine: 'kept', neededBy: [second.id] });

    await alice.access.revoke(second.id, { reason: 'done' });
    expect(await deb1.readFile(keysPath)).not.toContain('fleetward:user-ca');
    expect(await second.login()).toBe(255);
    expect(await first.login()).toBe(255);
    await fleet.close();
  }, 120_000);
});
