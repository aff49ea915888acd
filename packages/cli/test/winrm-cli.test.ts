import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { openFileSecretStore } from '@fleetward/secret-store-file';
import { startWinRmFake, type WinRmFake, type WinRmFakeWindowsUpdate } from '@fleetward/testkit/winrm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CliResult, runCliIn, runCliWith } from './support/run.js';

// A Windows server emulated by the WinRM fake with a modelled Windows Update state, reached by the
// CLI with a login it reads from its own secret store, by reference.
const USER = { username: 'Administrator', password: 'S3cret!pass-never-shown' };
const LABEL = 'fleetward.dev/winrm-credentials';

const model = (): WinRmFakeWindowsUpdate => ({
  offered: [
    {
      id: '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d',
      revision: 1,
      title: '2026-11 Cumulative Update for Microsoft server operating system version 21H2 (KB5046616)',
      kb: ['5046616'],
      classification: 'Security Updates',
      severity: 'Critical',
    },
    {
      id: '0f6c2f71-3c1d-4b8e-8a55-7f3e2d1c0b9a',
      title: 'Windows Malicious Software Removal Tool x64 - v5.130 (KB890830)',
      kb: ['890830'],
      classification: 'Update Rollups',
    },
  ],
  rebootPending: true,
});

let fake: WinRmFake;
let dir: string;
let env: NodeJS.ProcessEnv;

/** Writes the configuration file with this `winrm` section (the CA beside it as `ca.pem`). */
function configure(winrm: Record<string, unknown>): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ winrm }));
}

beforeEach(async () => {
  fake = await startWinRmFake({ users: [USER], windowsUpdate: model() });
  dir = mkdtempSync(join(tmpdir(), 'fleetward-winrm-cli-'));
  writeFileSync(join(dir, 'ca.pem'), fake.ca);
  configure({ caFile: 'ca.pem' });
  env = { HOME: dir, FLEETWARD_CONFIG: join(dir, 'config.json') };
});
afterEach(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
  runCliIn(join(dir, 'data'), args, { ...env, ...extraEnv });

/** The CLI with `stdin` as its standard input (the store initialised by an earlier `cli`). */
async function cliWithStdin(args: string[], stdin: string): Promise<CliResult> {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(['--data-dir', join(dir, 'data'), ...args], {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env,
    isTTY: false,
    readStdin: async () => stdin,
  });
  return { code, ...out };
}

/** The CLI's secret store, opened directly (the back channel). */
async function secretStore() {
  return openFileSecretStore({
    directory: join(dir, 'data', 'secrets'),
    key: readFileSync(join(dir, 'data', 'secrets.key')),
  });
}

const setCredentials = (name: string, password = USER.password) =>
  cli(['winrm', 'credentials', 'set', name, '--username', USER.username, '--password-env', 'WIN_PW'], {
    WIN_PW: password,
  });

const addServer = (id: string, labels: string[] = []) =>
  cli([
    'servers',
    'add',
    id,
    '--provider',
    'winrm',
    '--address',
    '127.0.0.1',
    '--port',
    String(fake.port),
    ...labels.flatMap((l) => ['-l', l]),
  ]);

interface ScanJson {
  results: {
    serverId: string;
    status: string;
    error?: { code: string; message: string; details?: unknown };
  }[];
}

describe('fleetward and a Windows server over WinRM', () => {
  it('scan, report --json — a winrm server with its login stored by reference shows the modelled KBs', async () => {
    const stored = await setCredentials('admin');
    expect(stored.code, stored.stderr).toBe(EXIT.ok);
    expect(stored.stdout).toContain('Stored the WinRM login of Administrator as default/winrm/admin.');
    expect(JSON.parse((await (await secretStore()).get('default/winrm/admin'))!)).toEqual(USER);

    const added = await addServer('win-1', [`${LABEL}=admin`]);
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(added.stdout).toContain(`winrm 127.0.0.1:${fake.port}`);

    const scan = await cli(['scan', '-s', 'win-1']);
    expect(scan.code, scan.stdout + scan.stderr).toBe(EXIT.ok);
    expect(scan.stdout).toContain('1 of 1 servers scanned');

    const report = await cli(['report', '--json']);
    const parsed = JSON.parse(report.stdout) as {
      servers: { id: string; status: string; os: string | null; pending: number; rebootRequired: boolean }[];
      patches: { serverId: string; name: string; category: string; severity: string }[];
    };
    expect(parsed.servers.find((s) => s.id === 'win-1')).toMatchObject({
      status: 'succeeded',
      pending: 2,
      rebootRequired: true,
    });
    expect(
      parsed.patches
        .filter((p) => p.serverId === 'win-1')
        .map((p) => `${p.name} ${p.category}/${p.severity}`)
        .sort(),
    ).toEqual(['KB5046616 security/critical', 'KB890830 bugfix/unspecified']);
    // NTLM carried the stored login: the fake saw the account, and no output ever shows the password.
    expect(fake.requests.some((r) => JSON.stringify(r).includes(USER.username))).toBe(true);
    for (const r of [stored, added, scan, report]) expect(r.stdout + r.stderr).not.toContain(USER.password);
  });

  it('scan — a wrong password fails that server with the authentication error; the other is scanned', async () => {
    await setCredentials('good');
    const wrong = await cliWithStdin(
      ['winrm', 'credentials', 'set', 'wrong', '--username', USER.username, '--password-stdin'],
      'not-the-password\n',
    );
    expect(wrong.code, wrong.stderr).toBe(EXIT.ok);
    expect(JSON.parse((await (await secretStore()).get('default/winrm/wrong'))!)).toMatchObject({
      password: 'not-the-password',
    });
    await addServer('win-good', [`${LABEL}=good`]);
    await addServer('win-bad', [`${LABEL}=wrong`]);

    const scan = await cli(['scan', '-s', 'win-good,win-bad', '--json']);
    expect(scan.code).toBe(EXIT.partial);
    const results = (JSON.parse(scan.stdout) as ScanJson).results;
    expect(results.find((r) => r.serverId === 'win-good')?.status).toBe('succeeded');
    const bad = results.find((r) => r.serverId === 'win-bad');
    expect(bad?.status).toBe('failed');
    expect(bad?.error?.code).toBe('TRANSPORT_FAILED');
    expect(bad?.error?.message).toMatch(/^WinRM login as Administrator on 127\.0\.0\.1:\d+ refused/);
    expect(scan.stdout).not.toContain('not-the-password');
  });

  it('scan — a malformed secret fails the server with a ValidationError naming the ref, never the value', async () => {
    await addServer('win-1', [`${LABEL}=broken`]);
    await addServer('win-2', [`${LABEL}=not-json`]);
    await addServer('win-3', [`${LABEL}=missing`]);
    const store = await secretStore();
    await store.set(
      'default/winrm/broken',
      JSON.stringify({ username: 'Administrator', pass: 'hunter2-leaked' }),
    );
    await store.set('default/winrm/not-json', 'username=Administrator password=hunter2-leaked');

    const scan = await cli(['scan', '-s', 'win-1,win-2,win-3', '--json']);
    expect(scan.code).toBe(EXIT.failure);
    const byId = Object.fromEntries(
      (JSON.parse(scan.stdout) as ScanJson).results.map((r) => [r.serverId, r]),
    );
    expect(byId['win-1']?.error).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(byId['win-1']?.error?.message).toContain('"default/winrm/broken"');
    expect(byId['win-1']?.error?.message).toMatch(/password/);
    expect(byId['win-2']?.error).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(byId['win-2']?.error?.message).toContain('"default/winrm/not-json": (root): is not JSON');
    expect(byId['win-3']?.error).toMatchObject({ code: 'NOT_FOUND' });
    expect(byId['win-3']?.error?.message).toContain('default/winrm/missing');
    expect(scan.stdout + scan.stderr).not.toContain('hunter2-leaked');
    // The fake was never asked to log in with a login that could not be read.
    expect(fake.requests).toHaveLength(0);
  });

  it('winrm.credentialsRef and pinnedCertificates — the default login; a pinned certificate by server id or address, no CA', async () => {
    await setCredentials('fallback');
    await addServer('win-1');
    await addServer('win-2');
    const pinFor = (fingerprint: string) =>
      configure({
        credentialsRef: 'default/winrm/fallback',
        pinnedCertificates: { 'win-1': fingerprint, '127.0.0.1': fingerprint },
      });

    pinFor(fake.certificateFingerprint.replace(/:/g, '').toLowerCase());
    const pinned = await cli(['scan', '-s', 'win-1,win-2']);
    expect(pinned.code, pinned.stdout + pinned.stderr).toBe(EXIT.ok);

    pinFor('AB'.repeat(32));
    const mismatch = await cli(['scan', '-s', 'win-1', '--json']);
    expect(mismatch.code).toBe(EXIT.failure);
    expect((JSON.parse(mismatch.stdout) as ScanJson).results[0]?.error?.code).toBe('HOST_KEY_MISMATCH');

    configure({ credentialsRef: 'default/winrm/fallback' });
    const untrusted = await cli(['scan', '-s', 'win-1', '--json']);
    expect((JSON.parse(untrusted.stdout) as ScanJson).results[0]?.error?.message).toMatch(
      /certificate of 127\.0\.0\.1:\d+ is not trusted/,
    );
  });

  it('winrm.caFile — an unreadable CA fails WinRM servers naming the key, and nothing else', async () => {
    await setCredentials('admin');
    await addServer('win-1', [`${LABEL}=admin`]);
    configure({ caFile: 'missing-ca.pem' });
    const scan = await cli(['scan', '-s', 'win-1', '--json']);
    expect(scan.code).toBe(EXIT.failure);
    const error = (JSON.parse(scan.stdout) as ScanJson).results[0]?.error;
    expect(error?.code).toBe('VALIDATION_FAILED');
    expect(error?.message).toContain('winrm.caFile');
    expect(error?.message).toContain(join(dir, 'missing-ca.pem'));
    expect((await cli(['servers', 'list'])).code).toBe(EXIT.ok);
  });

  it('winrm credentials set — the password never comes from the command line; a source must be chosen', async () => {
    await cli(['servers', 'list']);
    const onArgv = await cli(['winrm', 'credentials', 'set', 'r', '--username', 'a', '--password', 'x']);
    expect(onArgv.code).toBe(EXIT.usage);
    const none = await cli(['winrm', 'credentials', 'set', 'r', '--username', 'a']);
    expect(none.code).toBe(EXIT.usage);
    expect(none.stderr).toContain('--password-env <NAME> or --password-stdin');
    const unset = await cli([
      'winrm',
      'credentials',
      'set',
      'r',
      '--username',
      'a',
      '--password-env',
      'NOPE',
    ]);
    expect(unset.code).toBe(EXIT.usage);
    expect(unset.stderr).toContain('"NOPE" is not set');
    const badName = await cli([
      'winrm',
      'credentials',
      'set',
      'a/b',
      '--username',
      'a',
      '--password-env',
      'HOME',
    ]);
    expect(badName.code).toBe(EXIT.usage);
    expect(await (await secretStore()).list()).toEqual([]);
  });

  it('config — a bad winrm section is refused naming the field', async () => {
    configure({ https: false, caFile: 'ca.pem', pinnedCertificates: { 'win-1': 'not-a-fingerprint' } });
    const shown = await runCliWith(['config', 'show'], env);
    expect(shown.code).toBe(EXIT.failure);
    expect(shown.stderr).toContain('winrm.caFile: has no effect with https: false');
    expect(shown.stderr).toContain('winrm.pinnedCertificates.win-1: must be a SHA-256 fingerprint');
  });
});
