import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT, runCli } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

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

async function cli(args: string[]) {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(['--data-dir', dir, ...args], {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env: {},
    isTTY: false,
  });
  return { code, ...out };
}

/** Starts `fleetward serve` as its own process (from the sources) and resolves its URL. */
function serve(): Promise<{ url: string; exited: Promise<{ code: number | null; stderr: string }> }> {
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
    expect(stderr).toContain('SIGTERM: stopping');
  }, 60_000);

  it('serve — a bad port is a usage error', async () => {
    expect((await cli(['serve', '--port', '70000'])).code).toBe(EXIT.usage);
  });
});
