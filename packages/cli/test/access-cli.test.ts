import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { createFleet, createLocalAdapter, generateEd25519KeyPair } from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';
import { runOnTerminal } from './support/terminal.js';

let dir: string;

const run = (args: string[]) => runCliIn(dir, args);
const json = async (args: string[]) => {
  const r = await run([...args, '--json']);
  expect(r.code, r.stderr || r.stdout).toBe(EXIT.ok);
  return JSON.parse(r.stdout);
};

/** A TCP port on loopback that nothing listens on (it was bound and closed again). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-access-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const addBob = async () =>
  expect((await run(['principals', 'add', 'bob', '--name', 'Bob', '--role', 'tenant-admin'])).code).toBe(
    EXIT.ok,
  );

const ACTIONS_REQUEST = [
  'access',
  'request',
  '-s',
  'localhost',
  '--actions',
  'patch.scan',
  '--minutes',
  '30',
  '--reason',
  'check pending patches for the audit',
  '--ticket',
  'INC-77',
];

describe('fleetward audit', () => {
  it('audit verify — the store verifies; an export verifies offline; one edited byte fails and names the record', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const verified = await run(['audit', 'verify']);
    expect(verified.code).toBe(EXIT.ok);
    expect(verified.stdout).toMatch(/^OK: \d+ records verified/);

    const file = join(dir, 'audit.jsonl');
    const exported = await json(['audit', 'export', '--out', file]);
    expect(exported).toEqual({ path: file, bytes: readFileSync(file).length, format: 'jsonl' });
    expect((await run(['audit', 'verify', '--file', file])).stdout).toMatch(/^OK/);

    const lines = readFileSync(file, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"success"', '"failure"');
    writeFileSync(file, lines.join('\n'));
    const tampered = await run(['audit', 'verify', '--file', file]);
    expect(tampered.code).toBe(EXIT.failure);
    expect(tampered.stdout).toContain('TAMPERED');
    expect(tampered.stdout).toMatch(/hash-mismatch: record 2 \(id [^)]+\)/);
    const asJson = await run(['audit', 'verify', '--file', file, '-o', 'json']);
    expect(asJson.code).toBe(EXIT.failure);
    expect(JSON.parse(asJson.stdout)).toMatchObject({
      ok: false,
      problems: [expect.objectContaining({ problem: 'hash-mismatch' })],
    });
  });

  it('audit list — -o id prints the ids of the records the table shows', async () => {
    await addBob();
    const records = (await json(['audit', 'list', '--action', 'iam.write'])) as {
      id: string;
      action: string;
    }[];
    expect(records.length).toBeGreaterThan(0);
    const ids = await run(['audit', 'list', '--action', 'iam.write', '-o', 'id']);
    expect(ids.stdout.trim().split('\n')).toEqual(records.map((r) => r.id));
    const table = await run(['audit', 'list', '--action', 'iam.write']);
    expect(table.stdout).toMatch(/^SEQ +AT +ACTOR +ACTION/);
    expect(table.stdout).toContain('local-admin');
  });
});

describe('fleetward access, grants', () => {
  it('access request/approve/list — actions-only access, approved by someone else, listed with its history', async () => {
    await addBob();
    const requested = await run([...ACTIONS_REQUEST, '-o', 'id']);
    expect(requested.code, requested.stderr).toBe(EXIT.ok);
    const id = requested.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const own = await run(['access', 'approve', id]);
    expect(own.code).toBe(EXIT.failure);
    expect(own.stderr).toContain('approval is by others only');

    const approved = await run(['--as', 'bob', 'access', 'approve', id, '--comment', 'ok']);
    expect(approved.code, approved.stderr).toBe(EXIT.ok);
    expect(approved.stdout).toMatch(
      new RegExp(
        `^Granted request ${id}\\.\\nGrant \\S+ to local-admin: patch\\.scan on 1 server\\(s\\), no shell`,
      ),
    );

    const listed = await json(['access', 'list']);
    expect(listed).toEqual([
      expect.objectContaining({
        id,
        status: 'approved',
        ticket: 'INC-77',
        approvals: [expect.objectContaining({ principalId: 'bob' })],
      }),
    ]);
    expect(await json(['access', 'list', '--status', 'pending'])).toEqual([]);
    const report = await run(['audit', 'report', '--format', 'json']);
    expect(report.code).toBe(EXIT.ok);
    expect(JSON.parse(report.stdout).topActions).toEqual(
      expect.arrayContaining([expect.objectContaining({ action: 'access.approve', count: 2, denied: 1 })]),
    );
    const audit = await json(['audit', 'list', '--action', 'access.approve']);
    expect(audit.map((r: { decision: string }) => r.decision)).toEqual(['deny', 'allow']);
  });

  it('access request — the human text names the request and the next step; bad flag mixes are usage errors', async () => {
    const requested = await run(ACTIONS_REQUEST);
    expect(requested.code, requested.stderr).toBe(EXIT.ok);
    const id = /^Requested access (\S+):/.exec(requested.stdout)![1]!;
    expect(requested.stdout).toContain(`fleetward --as <someone else> access approve ${id}`);
    expect(requested.stdout).toContain('actions patch.scan on localhost for 30 minutes');

    const shown = await run(['access', 'show', id]);
    expect(shown.stdout).toContain(`Request ${id} by local-admin: pending`);
    expect(shown.stdout).toContain('check pending patches for the audit (ticket INC-77)');

    const old = await run([
      ...ACTIONS_REQUEST.slice(0, 2),
      '--servers',
      'localhost',
      ...ACTIONS_REQUEST.slice(4),
    ]);
    expect(old.code).toBe(EXIT.usage);
    expect(old.stderr).toContain("unknown option '--servers'");

    const base = [
      'access',
      'request',
      '-s',
      'localhost',
      '--minutes',
      '5',
      '--reason',
      'a good reason here',
      '--ticket',
      'T-1',
    ];
    const noKey = await run([...base, '--login', 'deploy']);
    expect(noKey.code).toBe(EXIT.usage);
    expect(noKey.stderr).toContain('--public-key-file');
    const mixed = await run([...base, '--actions', 'patch.scan', '--login', 'deploy']);
    expect(mixed.code).toBe(EXIT.usage);
    expect(mixed.stderr).toContain('--actions is access without a shell');
    const noServers = await run([
      'access',
      'request',
      '--actions',
      'patch.scan',
      '--minutes',
      '5',
      '--reason',
      'a good reason',
      '--ticket',
      'T',
    ]);
    expect(noServers.code).toBe(EXIT.usage);
    expect(noServers.stderr).toContain('choose the servers');

    const cancelled = await json(['access', 'cancel', id]);
    expect(cancelled).toMatchObject({ id, status: 'cancelled' });
  });

  it('grants list/show/revoke — the grant of an approval, listed, shown and revoked; -o id prints it', async () => {
    await addBob();
    const id = (await run([...ACTIONS_REQUEST, '-o', 'id'])).stdout.trim();
    const grantId = (await run(['--as', 'bob', 'access', 'approve', id, '-o', 'id'])).stdout.trim();
    expect(grantId).toMatch(/^[0-9a-f-]{36}$/);

    const grants = await json(['grants']);
    expect(grants).toEqual([
      expect.objectContaining({ id: grantId, requestId: id, status: 'active', mode: 'actions' }),
    ]);
    expect((await run(['grant', 'list', '--mine', '-o', 'id'])).stdout.trim()).toBe(grantId);
    expect((await run(['--as', 'bob', 'grants', 'list', '--mine', '-o', 'id'])).stdout).toBe('');

    const shown = await run(['grants', 'show', grantId]);
    expect(shown.code).toBe(EXIT.ok);
    expect(shown.stdout).toContain(`Grant ${grantId} to local-admin: patch.scan on 1 server(s), no shell`);
    expect(shown.stdout).toContain('approved by bob');

    const revoked = await run(['grants', 'revoke', grantId, '--reason', 'the audit is done']);
    expect(revoked.code, revoked.stderr).toBe(EXIT.ok);
    expect(revoked.stdout).toContain(`Revoked grant ${grantId} of local-admin.`);
    expect(await json(['grants', 'list', '--status', 'revoked'])).toEqual([
      expect.objectContaining({ id: grantId, revokedBy: 'local-admin' }),
    ]);
    expect(await json(['access', 'list', '--status', 'revoked'])).toEqual([expect.objectContaining({ id })]);
    const again = await run(['grants', 'revoke', grantId]);
    expect(again.code).toBe(EXIT.failure);
    expect(again.stderr).toContain(`grant ${grantId} is revoked`);
  });

  it('grants show, access approve — an unknown id is NOT_FOUND with a hint naming the list command', async () => {
    const grant = await run(['grants', 'show', 'nope']);
    expect(grant.code).toBe(EXIT.failure);
    expect(grant.stderr).toContain('fleetward grants list');
    const request = await run(['access', 'approve', 'nope', '--json']);
    expect(request.code).toBe(EXIT.failure);
    expect(JSON.parse(request.stdout)).toMatchObject({
      error: { code: 'NOT_FOUND', hint: 'List them with: fleetward access list' },
    });
  });

  it('access approve — a grant whose key could not be installed says FAILED with the reason per server and exits 1', async () => {
    await addBob();
    const user = generateEd25519KeyPair('carol@laptop');
    const port = await closedPort();
    // The request is made through the SDK without the login check, as a fleet configured with
    // `access: { checkServers: false }` would; the server is gone by the time it is approved.
    const fleet = createFleet({
      store: createSqliteStore({ path: join(dir, 'fleetward.db') }),
      adapters: [createLocalAdapter()],
      access: { checkServers: false },
    });
    let requestId: string;
    try {
      const admin = fleet.as({ tenantId: 'default', principalId: 'local-admin' });
      await admin.servers.add({
        id: 'web-9',
        name: 'web-9',
        accountId: 'dc',
        provider: 'ssh',
        address: '127.0.0.1',
        port,
        labels: {},
      });
      requestId = (
        await admin.access.request({
          servers: { serverIds: ['web-9'] },
          login: 'deploy',
          publicKey: user.publicKey,
          durationMinutes: 30,
          reason: 'renew the TLS certificate',
          ticket: 'CHG-1',
        })
      ).id;
    } finally {
      await fleet.close();
    }
    const identity = generateEd25519KeyPair('fleetward');
    writeFileSync(join(dir, 'id_ed25519'), identity.privateKey, { mode: 0o600 });
    writeFileSync(join(dir, 'known_hosts'), '');
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        ssh: {
          user: 'root',
          identityFile: 'id_ed25519',
          knownHostsFile: 'known_hosts',
          connectTimeoutSeconds: 5,
        },
      }),
    );

    const approved = await run(['--config', config, '--as', 'bob', 'access', 'approve', requestId]);
    expect(approved.code, approved.stderr).toBe(EXIT.failure);
    expect(approved.stdout).toMatch(/NOT in effect on 1 of 1 server\(s\)/);
    expect(approved.stdout).toMatch(/\n {2}web-9 {2}FAILED: .*ECONNREFUSED.* \(TRANSPORT_FAILED\)\n/);
    expect(approved.stdout).toContain('Installing the grant failed on 1 of 1 server(s)');

    const request = await json(['access', 'show', requestId]);
    expect(request.status).toBe('install-failed');
    const grant = await json(['grants', 'show', request.grantId]);
    expect(grant).toMatchObject({
      installation: 'failed',
      targets: [{ serverId: 'web-9', state: 'failed' }],
    });
    expect(grant.targets[0].error.message.length).toBeGreaterThan(0);
    const shown = await run(['grants', 'show', request.grantId]);
    expect(shown.stdout).toContain(`web-9  FAILED: ${grant.targets[0].error.message}`);
    expect((await run(['grants'])).stdout).toMatch(/FAILED \(failed\)/);

    // The sweep tries an unreachable server again, and says it failed again.
    const swept = await run(['--config', config, 'access', 'sweep']);
    expect(swept.code).toBe(EXIT.failure);
    expect(swept.stdout).toContain(`FAILED grant ${request.grantId} on web-9:`);
  });
});

describe('fleetward credentials and keys', () => {
  it('credentials add/list/show/caretaker — a managed key with its caretaker; the id is what keys rotate needs', async () => {
    await addBob();
    const key = generateEd25519KeyPair('deploy@ci');
    writeFileSync(join(dir, 'deploy.pub'), `${key.publicKey}\n`);
    writeFileSync(join(dir, 'deploy'), key.privateKey, { mode: 0o600 });
    const added = await run([
      'credentials',
      'add',
      '--login',
      'deploy',
      '--public-key-file',
      join(dir, 'deploy.pub'),
      '--private-key-file',
      join(dir, 'deploy'),
      '-s',
      'localhost',
      '--id',
      'ci-deploy',
    ]);
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(added.stdout).toBe(
      'Registered ci-deploy: deploy on localhost, caretaker local-admin.\nRotate it with: fleetward keys rotate ci-deploy\n',
    );
    expect(added.stdout).not.toContain('PRIVATE');

    const listed = await json(['credentials']);
    expect(listed).toEqual([
      expect.objectContaining({
        id: 'ci-deploy',
        login: 'deploy',
        caretakerId: 'local-admin',
        serverIds: ['localhost'],
        fingerprint: key.fingerprint,
      }),
    ]);
    expect(JSON.stringify(listed)).not.toContain('PRIVATE KEY');
    const table = await run(['credential', 'list']);
    expect(table.stdout).toMatch(
      /ci-deploy +deploy +local-admin +localhost +active +never \(registered [^)]+\) +yes/,
    );
    expect((await run(['credentials', 'list', '-o', 'id'])).stdout).toBe('ci-deploy\n');

    const handed = await run(['credentials', 'caretaker', 'ci-deploy', 'bob']);
    expect(handed.stdout).toBe('ci-deploy is now in the care of bob.\n');
    expect(await json(['credentials', 'show', 'ci-deploy'])).toMatchObject({ caretakerId: 'bob' });

    const twice = await run([
      'credentials',
      'add',
      '--login',
      'deploy',
      '--public-key-file',
      join(dir, 'deploy.pub'),
      '-s',
      'localhost',
    ]);
    expect(twice.code).toBe(EXIT.failure);
    expect(twice.stderr).toContain('already managed as credential ci-deploy');
  });

  it('keys rotate, credentials show — an unknown credential is NOT_FOUND with the hint to list them', async () => {
    for (const args of [
      ['keys', 'rotate', 'nope'],
      ['credentials', 'show', 'nope'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(EXIT.failure);
      expect(r.stderr).toContain('credential "nope" not found');
      expect(r.stderr).toContain('fleetward credentials list');
    }
  });

  it('keys inventory — at a terminal, a progress line per server as it is read, before the table', async () => {
    await run(['servers', 'list']);
    const r = await runOnTerminal(dir, ['keys', 'inventory', '-s', 'localhost']);
    expect(r.stderr).toMatch(/^\[1\] (ok {5}localhost: \d+ key\(s\)|failed localhost: .+)$/m);
    const piped = await run(['keys', 'inventory', '-s', 'localhost']);
    expect(piped.stderr).not.toMatch(/^\[1\]/m);
  });

  it('keys inventory — choosing no server is a usage error naming the options', async () => {
    const r = await run(['keys', 'inventory']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('--server <ids>, --project <id>, --label <key=value> or --all');
  });
});
