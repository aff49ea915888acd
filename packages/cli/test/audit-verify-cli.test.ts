import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import {
  type AuditCheckpoint,
  createFleet,
  createLocalAdapter,
  generateAuditSigningKey,
  verifyAuditCheckpoint,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;
const dbFile = () => join(dir, 'fleetward.db');

const run = (args: string[]) => runCliIn(dir, args);

/** What someone with the database file does: triggers dropped, SQL run by hand. */
const tamper = (fn: (db: Database.Database) => void) => {
  const db = new Database(dbFile());
  try {
    db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;');
    fn(db);
  } finally {
    db.close();
  }
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-audit-verify-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward audit verify and list on a tampered store', () => {
  it('audit verify — --require-checkpoint without --file and without any checkpoint fails, not OK', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const result = await run(['audit', 'verify', '--require-checkpoint']);
    expect(result.code).toBe(EXIT.failure);
    expect(result.stdout).toMatch(/^NOT ANCHORED: 1 problem/);
    expect(result.stdout).toContain('missing-checkpoint: no checkpoint could be verified');
  });

  it('audit verify — checks the checkpoints the store recorded and those given in files', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    // An embedder with a signing key takes a checkpoint on the same store.
    const key = generateAuditSigningKey();
    const fleet = createFleet({
      store: createSqliteStore({ path: dbFile() }),
      adapters: [createLocalAdapter()],
      auditSigningKey: key.privateKeyPem,
    });
    const cp = await fleet.as({ tenantId: 'default', principalId: 'local-admin' }).audit.checkpoint();
    await fleet.close();
    writeFileSync(join(dir, 'pub.pem'), key.publicKeyPem);
    writeFileSync(join(dir, 'cp.json'), JSON.stringify(cp));

    const stored = await run([
      'audit',
      'verify',
      '--require-checkpoint',
      '--public-key',
      join(dir, 'pub.pem'),
    ]);
    expect(stored.code).toBe(EXIT.ok);
    expect(stored.stdout).toMatch(/^OK: .*1 checkpoint\(s\) verified/);

    const json = await run([
      'audit',
      'verify',
      '--json',
      '--public-key',
      join(dir, 'pub.pem'),
      '--checkpoint',
      join(dir, 'cp.json'),
    ]);
    // The file holds the checkpoint the log records too: it counts once.
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, checkpointsVerified: 1, anchoredSeq: cp.seq });

    // A checkpoint file altered to claim more records than were signed is refused, not trusted.
    const forged = { ...cp, seq: cp.seq + 100 };
    writeFileSync(join(dir, 'forged.json'), JSON.stringify(forged));
    const bad = await run([
      'audit',
      'verify',
      '--public-key',
      join(dir, 'pub.pem'),
      '--checkpoint',
      join(dir, 'forged.json'),
    ]);
    expect(bad.code).toBe(EXIT.failure);
    expect(bad.stdout).toContain('bad-signature');
  });

  it('audit checkpoint — signs the head with the key file given; verify trusts it by its public key, live and in an export', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const key = generateAuditSigningKey();
    const keyFile = join(dir, 'audit-signing.pem');
    const pubFile = join(dir, 'audit.pub.pem');
    writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
    writeFileSync(pubFile, key.publicKeyPem);
    const cpFile = join(dir, 'checkpoint-1.json');

    const signed = await run(['audit', 'checkpoint', '--signing-key', keyFile, '--out', cpFile, '--json']);
    expect(signed.code, signed.stderr).toBe(EXIT.ok);
    const cp = JSON.parse(signed.stdout) as AuditCheckpoint;
    expect(cp).toMatchObject({ tenantId: 'default', keyId: key.keyId });
    expect(verifyAuditCheckpoint(cp, key.publicKeyPem)).toBe(true);
    expect(JSON.parse(readFileSync(cpFile, 'utf8'))).toEqual(cp);
    // The log records it: the checkpoint call is an audit.read record of its own.
    const records = JSON.parse((await run(['audit', 'list', '--action', 'audit.read', '--json'])).stdout) as {
      target?: { id: string };
      details: { seq?: number };
    }[];
    expect(records.find((r) => r.target?.id === 'checkpoint')?.details.seq).toBe(cp.seq);

    const live = await run(['audit', 'verify', '--public-key', pubFile, '--require-checkpoint', '--json']);
    expect(live.code).toBe(EXIT.ok);
    expect(JSON.parse(live.stdout)).toMatchObject({ ok: true, checkpointsVerified: 1, anchoredSeq: cp.seq });

    // An export without the checkpoint is not anchored; with it, offline verification anchors it.
    const bare = join(dir, 'bare.jsonl');
    expect((await run(['audit', 'export', '--out', bare])).code).toBe(EXIT.ok);
    const unanchored = await run([
      'audit',
      'verify',
      '--file',
      bare,
      '--public-key',
      pubFile,
      '--require-checkpoint',
    ]);
    expect(unanchored.code).toBe(EXIT.failure);
    expect(unanchored.stdout).toMatch(/^NOT ANCHORED/);
    const withCp = join(dir, 'audit.jsonl');
    const exported = await run(['audit', 'export', '--checkpoint', cpFile, '--out', withCp]);
    expect(exported.code).toBe(EXIT.ok);
    expect(exported.stdout).toMatch(/^Wrote \d+ records to /);
    expect(readFileSync(withCp, 'utf8').split('\n')[1]).toContain('"checkpoint"');
    const offline = await run([
      'audit',
      'verify',
      '--file',
      withCp,
      '--public-key',
      pubFile,
      '--require-checkpoint',
    ]);
    expect(offline.code, offline.stdout).toBe(EXIT.ok);
    expect(offline.stdout).toMatch(/^OK: .*1 checkpoint\(s\) verified/);
  });

  it('audit checkpoint — a key that is not Ed25519 is refused in words, naming the file, and nothing is signed', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(dir, 'rsa.pem');
    writeFileSync(keyFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const refused = await run(['audit', 'checkpoint', '--signing-key', keyFile]);
    expect(refused.code).toBe(EXIT.failure);
    expect(refused.stderr).toContain(
      `invalid signing key ${keyFile}: is not an Ed25519 private key in PEM (it is rsa)`,
    );
    expect(refused.stderr).toContain('openssl genpkey -algorithm ed25519');
    const records = JSON.parse((await run(['audit', 'list', '--action', 'audit.read', '--json'])).stdout) as {
      target?: { id: string };
    }[];
    expect(records.some((r) => r.target?.id === 'checkpoint')).toBe(false);
    const missing = await run(['audit', 'checkpoint']);
    expect(missing.code).toBe(EXIT.usage);
    expect(missing.stderr).toContain('--signing-key');
  });

  it('audit list --actor — a row whose actor_id and action columns were edited is still listed under its real actor; verify names it', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const before = JSON.parse((await run(['audit', 'list', '--actor', 'local-admin', '--json'])).stdout) as {
      seq: number;
    }[];
    expect(before.length).toBeGreaterThan(0);
    tamper((db) =>
      db
        .prepare("UPDATE audit_log SET actor_id = 'ghost', action = 'noise' WHERE actor_id = 'local-admin'")
        .run(),
    );
    const after = JSON.parse((await run(['audit', 'list', '--actor', 'local-admin', '--json'])).stdout) as {
      seq: number;
    }[];
    expect(after.map((r) => r.seq).slice(0, before.length)).toEqual(before.map((r) => r.seq));
    expect(JSON.parse((await run(['audit', 'list', '--actor', 'ghost', '--json'])).stdout)).toEqual([]);
    const verified = await run(['audit', 'verify']);
    expect(verified.code).toBe(EXIT.failure);
    expect(verified.stdout).toMatch(/column-mismatch: record \d+ \(id [^)]+\): column actor_id is "ghost"/);
  });

  it('audit verify — runs on a log with a forged head row and names the duplicate', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    tamper((db) => {
      const head = db.prepare('SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1').get() as Record<
        string,
        string | number
      >;
      db.prepare(
        'INSERT INTO audit_log (tenant_id, seq, id, at, action, actor_id, hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ).run(
        head['tenant_id'],
        Number(head['seq']) + 1,
        'forged',
        head['at'],
        head['action'],
        head['actor_id'],
        head['hash'],
        head['record'],
      );
    });
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const verified = await run(['audit', 'verify']);
    expect(verified.code).toBe(EXIT.failure);
    expect(verified.stdout).toContain('TAMPERED');
    expect(verified.stdout).toMatch(/duplicate: record \d+ \(id [^)]+\) appears more than once/);
    expect(verified.stdout).toMatch(/column-mismatch: record \d+ \(id forged\): column seq/);
  });
});
