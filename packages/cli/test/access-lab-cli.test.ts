import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { generateEd25519KeyPair } from '@fleetward/core';
import { describeWithLab, type Lab, type LabHost, type LabSlowProxy, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

// The access and key commands against a real sshd: a grant that reaches one server and not the
// other says so per server and exits 1, the key inventory sees the grant's line, revocation takes
// it off again, and a key handed to Fleetward is rotated without locking anyone out.

let lab: Lab | undefined;
let host: LabHost;
let proxy: LabSlowProxy;
let dir: string;
let config: string;

/** The CLI on the test's store, logging in to the lab as root with pinned host keys. */
const run = (...args: string[]) => runCliIn(join(dir, 'data'), ['--config', config, ...args]);
async function json(...args: string[]) {
  const r = await run(...args, '--json');
  expect(r.code, r.stderr || r.stdout).toBe(EXIT.ok);
  return JSON.parse(r.stdout);
}
const authorizedKeys = (login: string) => host.readFile(`/home/${login}/.ssh/authorized_keys`);

afterAll(async () => {
  await lab?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describeWithLab('fleetward access and keys on a lab host', () => {
  beforeAll(async () => {
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
    host = lab.host('deb1');
    // A second way to the same sshd, which the test closes: a server that is gone at approval.
    proxy = await host.slow({ delayMs: 0 });
    dir = mkdtempSync(join(tmpdir(), 'fleetward-access-lab-cli-'));
    const fingerprints = [
      host.hostKeys.ed25519.fingerprint,
      ...(host.hostKeys.rsa ? [host.hostKeys.rsa.fingerprint] : []),
    ];
    config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        ssh: {
          user: 'root',
          identityFile: host.users.root.privateKeyPath,
          hostKeyPolicy: 'pinned',
          pinnedHostKeys: {
            [host.address]: fingerprints,
            [`[${proxy.address}]:${proxy.port}`]: fingerprints,
          },
          connectTimeoutSeconds: 5,
        },
      }),
    );
    expect((await run('principals', 'add', 'bob', '--name', 'Bob', '--role', 'tenant-admin')).code).toBe(
      EXIT.ok,
    );
    expect((await run('servers', 'add', 'deb1', '--address', host.address)).code).toBe(EXIT.ok);
    const viaProxy = await run(
      'servers',
      'add',
      'deb1-proxy',
      '--address',
      proxy.address,
      '--port',
      String(proxy.port),
    );
    expect(viaProxy.code, viaProxy.stderr).toBe(EXIT.ok);
  }, 180_000);

  it('access approve — installed on one server, FAILED with the reason on the one gone since the request, exit 1; inventory and revoke follow the line', async () => {
    const user = generateEd25519KeyPair('carol@laptop');
    const pub = join(dir, 'carol.pub');
    writeFileSync(pub, `${user.publicKey}\n`);
    const requested = await run(
      ...['access', 'request', '-s', 'deb1,deb1-proxy', '--login', 'labuser', '--public-key-file', pub],
      ...['--minutes', '30', '--reason', 'renew the TLS certificate', '--ticket', 'CHG-4711', '-o', 'id'],
    );
    expect(requested.code, requested.stderr).toBe(EXIT.ok);
    const requestId = requested.stdout.trim();
    await proxy.close();

    const approved = await run('--as', 'bob', 'access', 'approve', requestId);
    expect(approved.code, approved.stdout + approved.stderr).toBe(EXIT.failure);
    expect(approved.stdout).toContain('ssh as labuser with key');
    expect(approved.stdout).toMatch(/\n {2}deb1 {8}installed \(sshd refuses it after \d{14}Z?\)\n/);
    expect(approved.stdout).toMatch(/\n {2}deb1-proxy {2}FAILED: .+ \(TRANSPORT_FAILED\)\n/);
    expect(approved.stdout).toContain('NOT in effect on 1 of 2 server(s)');

    const request = await json('access', 'show', requestId);
    expect(request.status).toBe('install-failed');
    const grantId = request.grantId as string;
    expect(await json('grants', 'show', grantId)).toMatchObject({ installation: 'partial' });
    const line = (await authorizedKeys('labuser')).split('\n').find((l) => l.includes(user.keyBase64));
    expect(line).toMatch(/^expiry-time="\d{14}Z?",.*fleetward:grant=/);

    const inventory = await json('keys', 'inventory', '-s', 'deb1');
    expect(inventory).toEqual([
      expect.objectContaining({
        serverId: 'deb1',
        status: 'succeeded',
        keys: expect.arrayContaining([
          expect.objectContaining({ login: 'labuser', fingerprint: user.fingerprint, grantId }),
        ]),
      }),
    ]);
    const table = await run('keys', 'inventory', '-s', 'deb1');
    expect(table.stdout).toMatch(
      new RegExp(`deb1 +labuser +${user.fingerprint.replace(/[+/]/g, '\\$&')} +grant ${grantId}`),
    );
    const both = await run('keys', 'inventory', '-s', 'deb1,deb1-proxy');
    expect(both.code).toBe(EXIT.partial);
    expect(both.stdout).toMatch(/Read the keys of 1 of 2 server\(s\)\.\n {2}FAILED deb1-proxy: /);

    const revoked = await run('grants', 'revoke', grantId, '--reason', 'certificate renewed');
    expect(revoked.stdout).toMatch(/\n {2}deb1 {8}removed\n/);
    // The closed server never got the line, but nobody can check that: removal failed there.
    expect(revoked.code).toBe(EXIT.failure);
    expect(revoked.stdout).toMatch(/\n {2}deb1-proxy {2}REMOVAL FAILED: .+ \(TRANSPORT_FAILED\)\n/);
    expect(await authorizedKeys('labuser')).not.toContain(user.keyBase64);
  });

  it('credentials add, keys rotate — a key Fleetward holds is rotated on the server: the new line in, the old one out', async () => {
    const first = generateEd25519KeyPair('ops bootstrap');
    await host.sh(`printf '%s\\n' '${first.publicKey}' >> /home/labops/.ssh/authorized_keys`);
    writeFileSync(join(dir, 'ops.pub'), `${first.publicKey}\n`);
    writeFileSync(join(dir, 'ops'), first.privateKey, { mode: 0o600 });
    const added = await run(
      ...['credentials', 'add', '--id', 'ops-key', '--login', 'labops', '-s', 'deb1'],
      ...['--public-key-file', join(dir, 'ops.pub'), '--private-key-file', join(dir, 'ops')],
    );
    expect(added.code, added.stderr).toBe(EXIT.ok);

    const rotated = await run('keys', 'rotate', 'ops-key', '--verify-sudo');
    expect(rotated.code, rotated.stdout + rotated.stderr).toBe(EXIT.ok);
    expect(rotated.stdout).toMatch(
      new RegExp(`^Rotation of ops-key succeeded: ${first.fingerprint.replace(/[+/]/g, '\\$&')} -> SHA256:`),
    );
    expect(rotated.stdout).toContain('  deb1: retired');

    const credential = await json('credentials', 'show', 'ops-key');
    expect(credential).toMatchObject({ previousFingerprint: first.fingerprint, status: 'active' });
    expect(credential.rotatedAt).toEqual(expect.any(String));
    const keys = await authorizedKeys('labops');
    expect(keys).toContain(credential.publicKey.split(' ')[1]);
    expect(keys).not.toContain(first.keyBase64);
    expect((await run('credentials')).stdout).toMatch(
      new RegExp(`ops-key +labops +local-admin +deb1 +active +${credential.rotatedAt}`),
    );
  });
});
