import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import {
  createAccessSweeper,
  createFleet,
  type Fleet,
  generateAuditSigningKey,
  generateEd25519KeyPair,
  managedCredentials,
  verifyAuditExport,
} from '@fleetward/core';
import { type FileSecretStore, openFileSecretStore } from '@fleetward/secret-store-file';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock } from '@fleetward/testkit';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TENANT } from './support/fleet.js';
import { sshLogin } from './support/ssh-client.js';

// Issue #6's checks on the lab: lockout-proof rotation of the key Fleetward itself logs in with
// (a faulty new key rolls back and the old one keeps working; a normal rotation leaves only the
// new key working), the key inventory, and a stored audit record edited by one byte being named.

let lab: Lab | undefined;
let fleet: Fleet | undefined;
let secrets: FileSecretStore;
let dbPath: string;
let keyDir: string;
const signing = generateAuditSigningKey();
// Starts at the real time (sshd compares expiry-time with it); moved forward to make keys overdue.
const clock = new ManualClock(new Date());
afterAll(async () => {
  await fleet?.close().catch(() => {});
  await lab?.stop();
}, 120_000);

const CREDENTIAL = 'labops-key';

async function keyFile(name: string, privateKey: string): Promise<string> {
  const path = join(keyDir, name);
  await writeFile(path, privateKey, { mode: 0o600 });
  return path;
}

describeWithLab('key rotation, key inventory and audit on lab hosts', () => {
  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'suse1', flavour: 'suse' },
      ],
    });
    const dir = await mkdtemp(join(tmpdir(), 'fleetward-keys-'));
    keyDir = await mkdtemp(join(tmpdir(), 'fleetward-keyfiles-'));
    dbPath = join(dir, 'fleet.db');
    secrets = await openFileSecretStore({
      directory: join(dir, 'secrets'),
      key: { passphrase: 'lab passphrase for tests' },
    });

    // Fleetward logs in as labops (sudo without password) with the key it manages, read from the
    // SecretStore for every command: after a rotation it uses the new key from the next command on.
    const pins = Object.fromEntries(
      lab.hosts.map((h) => [
        h.address,
        [h.hostKeys.ed25519.fingerprint, ...(h.hostKeys.rsa ? [h.hostKeys.rsa.fingerprint] : [])],
      ]),
    );
    const ssh = createSshAdapter({
      credentialsFor: (server) => managedCredentials(fleet!, { login: 'labops' })(server),
      hostKeyPolicy: 'pinned',
      pinnedHostKeys: pins,
      connectTimeoutMs: 5000,
    });
    fleet = createFleet({
      store: createSqliteStore({ path: dbPath }),
      adapters: [ssh],
      secrets,
      clock,
      auditSigningKey: signing.privateKeyPem,
    });
    await fleet.bootstrapTenant({
      tenant: { id: TENANT, name: 'Lab' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
    for (const h of lab.hosts) {
      await alice.servers.add({
        id: h.name,
        name: h.name,
        accountId: 'lab',
        provider: 'ssh',
        address: h.address,
      });
    }
    await alice.projects.add({ id: 'lab', name: 'Lab', selector: { all: true } });

    // The first key is put on the hosts by the administrator (through the lab's back channel), then
    // handed to Fleetward with its one caretaker.
    const first = generateEd25519KeyPair('fleetward bootstrap');
    for (const h of lab.hosts) {
      await h.sh(`printf '%s\\n' '${first.publicKey}' >> /home/labops/.ssh/authorized_keys`);
    }
    await alice.keys.register({
      id: CREDENTIAL,
      login: 'labops',
      publicKey: first.publicKey,
      privateKey: first.privateKey,
      caretakerId: 'alice',
      serverIds: lab.hosts.map((h) => h.name),
    });
  }, 180_000);

  const login = async (host: string, privateKey: string) =>
    sshLogin({
      address: lab!.host(host).address,
      login: 'labops',
      privateKeyPath: await keyFile(`k-${Math.random().toString(36).slice(2)}`, privateKey),
      knownHostsPath: lab!.knownHostsPath,
    });

  it('rotate — a new key that cannot log in (faulty key source) is rolled back; the old key still works', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    const before = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    const oldPrivate = (await secrets.get(before.secretRef!))!;
    // The injected fault: a key source that hands out a public key that does not match its private key.
    const report = await alice.keys.rotate(CREDENTIAL, {
      generateKeyPair: (comment) => {
        const a = generateEd25519KeyPair(comment);
        const b = generateEd25519KeyPair(comment);
        return { ...a, privateKey: b.privateKey };
      },
    });
    expect(report.status).toBe('rolled-back');
    expect(report.reason).toMatch(/verification failed on deb1: the new key did not log in/);
    // It stopped at the first server: suse1 was never touched.
    expect(report.servers).toEqual([
      expect.objectContaining({ serverId: 'deb1', step: 'rolled-back' }),
      expect.objectContaining({ serverId: 'suse1', step: 'not-started' }),
    ]);
    for (const h of ['deb1', 'suse1']) {
      expect(await login(h, oldPrivate)).toBe(0);
      const file = await lab!.host(h).readFile('/home/labops/.ssh/authorized_keys');
      expect(file).toContain(before.publicKey.split(' ')[1]);
      expect(file).not.toContain('fleetward:credential=');
    }
    const after = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect(after).toMatchObject({ fingerprint: before.fingerprint, status: 'active' });
    expect(await secrets.get(after.secretRef!)).toBe(oldPrivate);
    expect(await secrets.list(`${after.secretRef}.`)).toEqual([]);
    const steps = (await fleet!.store.audit.list(TENANT, { action: 'keys.rotate' })).map(
      (r) => r.details.step,
    );
    expect(steps).toEqual(expect.arrayContaining(['added', 'verify-failed', 'rolled-back']));
  });

  it('rotate — a normal rotation leaves only the new key working, and Fleetward logs in with it', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    const before = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    const oldPrivate = (await secrets.get(before.secretRef!))!;
    const report = await alice.keys.rotate(CREDENTIAL, { verifySudo: true });
    expect(report.status).toBe('succeeded');
    expect(report.servers.map((s) => s.step)).toEqual(['retired', 'retired']);
    const after = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect(after).toMatchObject({
      status: 'active',
      previousFingerprint: before.fingerprint,
      caretakerId: 'alice',
    });
    expect(after.fingerprint).toBe(report.newFingerprint);
    const newPrivate = (await secrets.get(after.secretRef!))!;
    expect(newPrivate).not.toBe(oldPrivate);
    expect(newPrivate).not.toContain(after.publicKey);
    expect(await secrets.list(`${after.secretRef}.`)).toEqual([]);
    for (const h of ['deb1', 'suse1']) {
      expect(await login(h, newPrivate)).toBe(0);
      expect(await login(h, oldPrivate)).toBe(255);
      const lines = (await lab!.host(h).readFile('/home/labops/.ssh/authorized_keys'))
        .split('\n')
        .filter(Boolean);
      expect(lines.filter((l) => l.includes(after.publicKey.split(' ')[1]!))).toHaveLength(1);
      expect(lines.some((l) => l.includes(before.publicKey.split(' ')[1]!))).toBe(false);
      // The lab's own labops key (unmanaged) is still there, untouched.
      expect(lines).toContain(lab!.host(h).users.labops!.publicKey.trim());
    }
    // Fleetward's own next command logs in with the new key.
    const scan = await alice.scan({ serverIds: ['deb1'] });
    expect(scan.results[0]!.status).toBe('succeeded');
    const events = await fleet!.store.audit.list(TENANT, { action: 'keys.rotate' });
    // The trail names the credential (an identifier, never redacted like a secret would be).
    expect(events.filter((r) => r.details.step).every((r) => r.details.credentialId === CREDENTIAL)).toBe(
      true,
    );
    const last = events
      .filter((r) => r.details.newFingerprint === after.fingerprint)
      .map((r) => r.details.step);
    expect(last).toEqual([
      'started',
      'added',
      'verified',
      'added',
      'verified',
      'switched',
      'retired',
      'retired',
      'completed',
    ]);
  });

  it('rotate — a rotation that died just before the switch is resumed by the next rotate, with the same new key', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    const before = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    const ref = before.secretRef!;
    const oldPrivate = (await secrets.get(ref))!;
    // The process "dies" when it is about to switch the SecretStore to the new key.
    const set = secrets.set;
    secrets.set = async (name: string, value: string) => {
      if (name === ref) throw new Error('process killed before the switch');
      return set.call(secrets, name, value);
    };
    try {
      await expect(alice.keys.rotate(CREDENTIAL)).rejects.toThrow('process killed before the switch');
    } finally {
      secrets.set = set;
    }
    const stuck = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect(stuck).toMatchObject({ status: 'rotating', fingerprint: before.fingerprint });
    const pending = (await secrets.get(`${ref}.next`))!;
    // Nobody is locked out in between: both keys log in.
    for (const h of ['deb1', 'suse1']) {
      expect(await login(h, oldPrivate)).toBe(0);
      expect(await login(h, pending)).toBe(0);
    }

    const report = await alice.keys.rotate(CREDENTIAL);
    expect(report.status).toBe('succeeded');
    expect(await secrets.get(ref)).toBe(pending);
    const after = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect(after).toMatchObject({ status: 'active', previousFingerprint: before.fingerprint });
    for (const h of ['deb1', 'suse1']) {
      expect(await login(h, pending)).toBe(0);
      expect(await login(h, oldPrivate)).toBe(255);
      const marked = (await lab!.host(h).readFile('/home/labops/.ssh/authorized_keys'))
        .split('\n')
        .filter((l) => l.includes(`fleetward:credential=${CREDENTIAL}`));
      expect(marked).toHaveLength(1);
    }
    const steps = (await fleet!.store.audit.list(TENANT, { action: 'keys.rotate' }))
      .filter((r) => r.details.newFingerprint === after.fingerprint)
      .map((r) => r.details.step);
    expect(steps).toContain('resumed');
    expect(steps.filter((s) => s === 'added')).toHaveLength(2);
  });

  it('rotation policy — the sweeper rotates a key once it is overdue under its project policy, not before', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    await alice.keys.policies.set({ projectId: 'lab', intervalHours: 24, graceMinutes: 2 });
    const sweeper = createAccessSweeper({ fleet: fleet! });
    const before = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect((await sweeper.tick()).tenants[0]!.rotations).toEqual([]);
    expect(await alice.keys.due()).toEqual([]);

    clock.advance(25 * 3_600_000);
    expect((await alice.keys.due()).map((d) => d.credential.id)).toEqual([CREDENTIAL]);
    const tick = await sweeper.tick();
    expect(tick.tenants[0]!.rotations.map((r) => r.status)).toEqual(['succeeded']);
    const after = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    expect(after.previousFingerprint).toBe(before.fingerprint);
    expect(after.rotatedAt).toBe(clock.now().toISOString());
    expect(await alice.keys.due()).toEqual([]);
    expect((await sweeper.tick()).tenants[0]!.rotations).toEqual([]);
    const newPrivate = (await secrets.get(after.secretRef!))!;
    for (const h of ['deb1', 'suse1']) expect(await login(h, newPrivate)).toBe(0);
  });

  it('inventory — tells managed from unmanaged keys by fingerprint, with their use from the sshd log', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    const credential = await fleet!.store.credentials.require(TENANT, CREDENTIAL);
    const inventories = await alice.keys.inventory({ serverIds: ['deb1', 'suse1'] });
    expect(inventories.map((i) => i.status)).toEqual(['succeeded', 'succeeded']);
    const deb1 = inventories[0]!;
    expect(deb1.sshdVersion).toMatch(/^OpenSSH_\d+\.\d+/);
    expect(deb1.logSource).toBe('/var/log/fleetward-lab/sshd.log');
    const managed = deb1.keys.find((k) => k.fingerprint === credential.fingerprint);
    expect(managed).toMatchObject({ login: 'labops', credentialId: CREDENTIAL });
    expect(managed!.logins).toBeGreaterThan(0);
    const unmanaged = deb1.keys.filter((k) => !k.credentialId && !k.grantId);
    expect(unmanaged.map((k) => k.login).sort()).toEqual(['labadmin', 'labops', 'labuser', 'root']);

    // The post-action audit: Fleetward's key is managed, in use, with its caretaker's role behind it;
    // the lab's own keys are unmanaged and need a review; the key's rotation is on time.
    const report = await alice.audit.accessReport();
    const key = report.keys.find((k) => k.serverId === 'deb1' && k.fingerprint === credential.fingerprint);
    expect(key).toMatchObject({ kind: 'managed', needed: 'yes', credentialId: CREDENTIAL, login: 'labops' });
    for (const k of report.keys.filter((k) => k.kind === 'unmanaged')) expect(k.needed).not.toBe('yes');
    const access = report.access.find((a) => a.serverId === 'deb1' && a.via === 'managed-key');
    expect(access).toMatchObject({ principalId: 'alice', matchedRole: true, credentialId: CREDENTIAL });
    expect(report.rotation).toEqual([
      expect.objectContaining({ credentialId: CREDENTIAL, overdue: false, policyIntervalHours: 24 }),
    ]);
    expect(report.topActions.map((a) => a.action)).toContain('keys.rotate');
  });

  it('audit — a checkpointed export verifies offline; a stored record edited by one byte is named', async () => {
    const alice = fleet!.as({ tenantId: TENANT, principalId: 'alice' });
    expect((await alice.verifyAuditLog()).ok).toBe(true);
    const checkpoint = await alice.audit.checkpoint();
    let text = '';
    for await (const line of await alice.audit.export({ checkpoints: [checkpoint] })) text += line;
    const offline = await verifyAuditExport(text, {
      publicKeys: [signing.publicKeyPem],
      requireCheckpoint: true,
    });
    expect(offline).toMatchObject({ ok: true, checkpointsVerified: 1 });
    const lines = text.trimEnd().split('\n');
    const truncated = await verifyAuditExport(`${lines.slice(0, -1).join('\n')}\n`, {
      publicKeys: [signing.publicKeyPem],
    });
    expect(truncated.ok).toBe(false);

    // An attacker with the database file: lifts the append-only trigger and edits one byte.
    const target = (await fleet!.store.audit.list(TENANT, { action: 'keys.rotate' }))[3]!;
    const db = new Database(dbPath);
    db.exec('DROP TRIGGER audit_log_no_update');
    const row = db
      .prepare('SELECT record FROM audit_log WHERE tenant_id = ? AND seq = ?')
      .get(TENANT, target.seq) as { record: string };
    const edited = row.record.replace('"labops"', '"labopz"');
    expect(edited).not.toBe(row.record);
    db.prepare('UPDATE audit_log SET record = ? WHERE tenant_id = ? AND seq = ?').run(
      edited,
      TENANT,
      target.seq,
    );
    db.close();

    const result = await alice.verifyAuditLog({ checkpoints: [checkpoint] });
    expect(result.ok).toBe(false);
    expect(result.problems[0]).toMatchObject({ seq: target.seq, id: target.id, problem: 'hash-mismatch' });
    expect(result.problems[0]!.message).toContain(`record ${target.seq}`);
  });
});
