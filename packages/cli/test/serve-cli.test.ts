import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT, runCli } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
let dir: string;
let child: ChildProcess | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-serve-'));
});
afterEach(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]) => runCliIn(dir, args);

/** Starts `fleetward serve` as its own process (from the sources) on the initialised store and resolves its URL. */
async function serve(): Promise<{ url: string; exited: Promise<{ code: number | null; stderr: string }> }> {
  expect((await cli(['servers'])).code).toBe(EXIT.ok);
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', 'packages/cli/src/bin.ts', '--data-dir', dir, 'serve', '--port', '0'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child = proc;
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    proc.on('exit', (code) => resolve({ code, stderr })),
  );
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      stdout += d;
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1];
      if (url) resolve({ url, exited });
    });
    void exited.then(({ code }) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
}

describe('fleetward serve', () => {
  it('serve — serves the API on loopback for tokens minted by `token create`, and stops cleanly on SIGTERM', async () => {
    const { url, exited } = await serve();
    expect((await fetch(`${url}/v1/servers`)).status).toBe(401);

    const created = await cli(['token', 'create', '--name', 'ci', '--expires-in', '30']);
    expect(created.code, created.stderr).toBe(EXIT.ok);
    const token = created.stdout.trim();
    expect(token).toMatch(/^fwt_default_[a-f0-9]{24}_[A-Za-z0-9_-]{43}$/);

    const servers = await fetch(`${url}/v1/servers`, { headers: { authorization: `Bearer ${token}` } });
    expect(servers.status).toBe(200);
    const page = (await servers.json()) as { items: { id: string }[] };
    expect(page.items.map((s) => s.id)).toEqual(['localhost']);
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { openapi: string };
    expect(doc.openapi).toBe('3.1.0');

    const listed = await cli(['token', 'list', '--json']);
    const [apiToken] = JSON.parse(listed.stdout) as { id: string; name: string; lastUsedAt?: string }[];
    expect(apiToken).toMatchObject({ name: 'ci' });
    expect(apiToken!.lastUsedAt).toBeDefined();
    expect(listed.stdout).not.toContain(token.slice(-43));

    expect((await cli(['token', 'revoke', apiToken!.id])).code).toBe(EXIT.ok);
    expect((await fetch(`${url}/v1/servers`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(
      401,
    );
    expect((await cli(['token', 'revoke', 'no-such-token'])).code).toBe(EXIT.failure);

    child!.kill('SIGTERM');
    const { code, stderr } = await exited;
    expect(code).toBe(0);
    expect(stderr).toContain('stopping; background patch and script runs record where they stopped');
  }, 60_000);

  it('serve — a bad port and the retired -p and -H short flags are usage errors', async () => {
    for (const args of [
      ['serve', '--port', '70000'],
      ['serve', '--port', ''],
      ['serve', '-p', '0'],
      ['serve', '-H', '127.0.0.1'],
    ]) {
      expect((await cli(args)).code, args.join(' ')).toBe(EXIT.usage);
    }
  });

  it('serve — before init, NOT_FOUND with a hint to run init, and no store is created', async () => {
    const out = { stderr: '' };
    const code = await runCli(['--data-dir', join(dir, 'fresh'), 'serve', '--port', '0'], {
      stdout: () => {},
      stderr: (t) => {
        out.stderr += t;
      },
      env: {},
      isTTY: false,
    });
    expect(code).toBe(EXIT.failure);
    expect(out.stderr).toContain('fleetward init');
  });
});

describe('fleetward token', () => {
  it('token create -o json — the token once with its record; -o id the token id; list never shows it', async () => {
    const created = await cli(['token', 'create', '-n', 'ci', '-o', 'json']);
    expect(created.code, created.stderr).toBe(EXIT.ok);
    const issued = JSON.parse(created.stdout) as {
      token: string;
      apiToken: { id: string; name: string; principalId: string };
    };
    expect(issued.apiToken).toMatchObject({ name: 'ci', principalId: 'local-admin' });
    expect(issued.token).toContain(issued.apiToken.id);
    expect(issued.apiToken).not.toHaveProperty('tokenHash');

    const asId = await cli(['token', 'create', '-o', 'id']);
    expect(asId.stdout).toMatch(/^[0-9a-f]{24}\n$/);
    expect(asId.stderr).toContain(`Token ${asId.stdout.trim()} acts as local-admin`);

    const listed = await cli(['token']);
    expect(listed.stdout).toMatch(new RegExp(`^${issued.apiToken.id} +ci +local-admin `, 'm'));
    expect(listed.stdout).not.toContain(issued.token.slice(-43));
    const revoked = await cli(['token', 'revoke', issued.apiToken.id, '--json']);
    expect(JSON.parse(revoked.stdout)).toEqual({ id: issued.apiToken.id, revoked: true });
    const missing = await cli(['token', 'revoke', 'nope']);
    expect(missing.code).toBe(EXIT.failure);
    expect(missing.stderr).toContain('hint: List them with: fleetward token list');
  });

  it('token create --as — a token for a principal the tenant does not have is NOT_FOUND', async () => {
    const r = await cli(['--as', 'ghost', 'token', 'create']);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('"ghost" not found');
    expect(r.stdout).toBe('');
  });
});
