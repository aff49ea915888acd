import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT, runCli } from '@fleetward/cli';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../..', import.meta.url));
let dir: string;

function io(env: NodeJS.ProcessEnv = {}, isTTY = false) {
  const out = { stdout: '', stderr: '' };
  return {
    out,
    io: {
      stdout: (t: string) => {
        out.stdout += t;
      },
      stderr: (t: string) => {
        out.stderr += t;
      },
      env,
      isTTY,
    },
  };
}

const runRaw = async (args: string[], env: NodeJS.ProcessEnv = {}, isTTY = false) => {
  const { out, io: cliIo } = io(env, isTTY);
  const code = await runCli(args, cliIo);
  return { code, ...out };
};
const run = (args: string[], env: NodeJS.ProcessEnv = {}, isTTY = false) =>
  runRaw(['--data-dir', dir, ...args], env, isTTY);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-'));
  expect((await run(['init'])).code).toBe(EXIT.ok);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const withoutApt = unavailableWithout({ commands: ['apt-get'] });

describe('fleetward', () => {
  it('--help — lists the commands and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/scan \[options\][\s\S]*servers[\s\S]*report/);
  });

  it('scan --help — every command has help', async () => {
    for (const cmd of ['scan', 'servers', 'report']) {
      const r = await run([cmd, '--help']);
      expect(r.code).toBe(EXIT.ok);
      expect(r.stdout).toContain(`Usage: fleetward ${cmd}`);
    }
  });

  it('unknown command — exits 2 with a short usage, not the whole help', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/unknown command/);
    expect(r.stderr).toContain('Usage: fleetward');
    expect(r.stderr).not.toContain('Commands:');
    expect(r.stderr.split('\n').length).toBeLessThan(6);
  });

  it('scan --concurrency 0 — a usage error, exit 2', async () => {
    expect((await run(['scan', '--concurrency', '0'])).code).toBe(EXIT.usage);
  });

  it('scan --server nope — a missing server fails with exit 1 and names it', async () => {
    const r = await run(['scan', '--server', 'nope']);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('server "nope" not found');
  });

  it('servers — a fresh data folder holds this machine as "localhost", never scanned', async () => {
    const r = await run(['servers', '--json']);
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(r.stdout)).toMatchObject([{ id: 'localhost', status: 'never-scanned' }]);
  });

  it('report — NO_COLOR and a non-terminal both give plain text without escape codes', async () => {
    const tty = await run(['report'], { NO_COLOR: '1' }, true);
    expect(tty.stdout).not.toContain('\u001b[');
    const colored = await run(['report'], {}, true);
    expect(colored.stdout).toContain('\u001b[');
  });

  itIfAvailable(
    'scan then report --json — lists exactly what apt list --upgradable lists, with versions',
    withoutApt,
    async () => {
      const scan = await run(['scan'], { NO_COLOR: '1' }, true);
      expect(scan.code, scan.stderr).toBe(EXIT.ok);
      expect(scan.stderr).toMatch(/\[1\/1\] ok +localhost: \d+ pending/);
      const report = await run(['report', '--json']);
      expect(report.code).toBe(EXIT.ok);
      const parsed = JSON.parse(report.stdout) as {
        servers: { id: string; status: string; pending: number }[];
        patches: {
          name: string;
          candidateVersion: string;
          installedVersion: string | null;
          isNew: boolean;
        }[];
      };
      const upgradable = execFileSync('apt', ['list', '--upgradable'], {
        env: { ...process.env, LC_ALL: 'C' },
        stdio: ['ignore', 'pipe', 'ignore'],
      })
        .toString()
        .split('\n')
        .filter((l) => l.includes('[upgradable from:'))
        .map((l) => {
          const [nameSuite, version, , , , from] = l.split(' ');
          return `${nameSuite!.split('/')[0]} ${from!.replace(']', '')} ${version}`;
        })
        .sort();
      const listed = parsed.patches
        .filter((p) => !p.isNew)
        .map((p) => `${p.name} ${p.installedVersion} ${p.candidateVersion}`)
        .sort();
      expect(listed).toEqual(upgradable);
      expect(parsed.servers).toMatchObject([
        { id: 'localhost', status: 'succeeded', pending: parsed.patches.length },
      ]);
    },
  );

  const bin = join(root, 'packages/cli/dist/bin.js');
  itIfAvailable(
    'bin — the built command runs as a separate process with the documented exit codes',
    existsSync(bin) ? undefined : 'packages/cli/dist/bin.js is missing (npm run build)',
    () => {
      const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
      expect(help.status).toBe(0);
      const bad = spawnSync(process.execPath, [bin, '--data-dir', dir, 'scan', '--server', 'missing'], {
        encoding: 'utf8',
      });
      expect(bad.status).toBe(EXIT.failure);
    },
  );
});
