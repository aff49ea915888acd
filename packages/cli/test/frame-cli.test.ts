import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli, VERSION } from '@fleetward/cli';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

let home: string;
let work: string;

/** Runs the CLI as a user whose HOME (and so the XDG folders) is a fresh folder. */
async function run(args: string[], env: NodeJS.ProcessEnv = {}, isTTY = false) {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(args, {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env: { HOME: home, ...env },
    isTTY,
    cwd: work,
  });
  return { code, ...out };
}

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'fleetward-home-'));
  work = mkdtempSync(join(tmpdir(), 'fleetward-cwd-'));
});
afterEach(() => {
  rmSync(home, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe('fleetward — the frame every command shares', () => {
  it('--version — prints the package version and exits 0', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout.trim()).toBe(VERSION);
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('--help — documents the configuration precedence and the global options', async () => {
    const r = await run(['--help']);
    expect(r.stdout).toContain('Configuration (highest first)');
    expect(r.stdout).toContain('--output <format>');
    const sub = await run(['servers', 'add', '--help']);
    expect(sub.stdout).toContain('--address <host>');
    expect(sub.stdout).toMatch(/Global Options:[\s\S]*--json/);
  });

  it('read-only commands before init — NOT_FOUND with a hint to run init, and nothing is created', async () => {
    for (const args of [['servers'], ['report'], ['audit', 'list'], ['servers', 'show', 'x']]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(EXIT.failure);
      expect(r.stderr).toContain('fleetward init');
    }
    expect(readdirSync(home)).toEqual([]);
    expect(readdirSync(work)).toEqual([]);
  });

  it('--data-dir to a path that does not exist — refused, no folder created', async () => {
    const deep = join(work, 'a', 'b', 'c');
    const r = await run(['--data-dir', deep, 'servers']);
    expect(r.code).toBe(EXIT.failure);
    expect(existsSync(join(work, 'a'))).toBe(false);
  });

  it('init — creates the store under XDG_DATA_HOME (default ~/.local/share), and again changes nothing', async () => {
    const first = await run(['init']);
    expect(first.code, first.stderr).toBe(EXIT.ok);
    expect(existsSync(join(home, '.local/share/fleetward/fleetward.db'))).toBe(true);
    expect(readdirSync(work)).toEqual([]);
    const again = await run(['init', '--json']);
    expect(again.code).toBe(EXIT.ok);
    expect(JSON.parse(again.stdout)).toMatchObject({
      created: false,
      tenant: 'default',
      admin: 'local-admin',
    });
    const xdg = join(work, 'data');
    expect((await run(['init'], { XDG_DATA_HOME: xdg })).code).toBe(EXIT.ok);
    expect(existsSync(join(xdg, 'fleetward/fleetward.db'))).toBe(true);
  });

  it('configuration — file < env < flag, and config show names each source', async () => {
    const cfgDir = join(home, '.config/fleetward');
    mkdirSync(cfgDir, { recursive: true });
    writeFileSync(join(cfgDir, 'config.json'), JSON.stringify({ store: 'from-file.db', principal: 'alice' }));
    const fromFile = JSON.parse((await run(['config', 'show', '--json'])).stdout);
    expect(fromFile).toMatchObject({ store: join(cfgDir, 'from-file.db'), principal: 'alice' });
    expect(fromFile.sources).toEqual({ store: 'config', tenant: 'default', principal: 'config' });
    const fromEnv = JSON.parse(
      (
        await run(['config', 'show', '--json'], {
          FLEETWARD_STORE: join(work, 'env.db'),
          FLEETWARD_PRINCIPAL: 'bob',
        })
      ).stdout,
    );
    expect(fromEnv).toMatchObject({ store: join(work, 'env.db'), principal: 'bob' });
    expect(fromEnv.sources).toMatchObject({ store: 'env', principal: 'env' });
    const fromFlag = JSON.parse(
      (
        await run(['--store', 'flag.db', '--as', 'carol', 'config', 'show', '--json'], {
          FLEETWARD_STORE: join(work, 'env.db'),
          FLEETWARD_PRINCIPAL: 'bob',
        })
      ).stdout,
    );
    expect(fromFlag).toMatchObject({ store: join(work, 'flag.db'), principal: 'carol' });
    expect(fromFlag.sources).toMatchObject({ store: 'flag', principal: 'flag' });
  });

  it('configuration — a bad file is an error naming the file and the field, as JSON when asked', async () => {
    const file = join(work, 'bad.json');
    writeFileSync(file, JSON.stringify({ ssh: { hostKeyPolicy: 'trust-everyone' } }));
    const r = await run(['--config', file, 'servers']);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('ssh.hostKeyPolicy');
    const j = await run(['--config', file, 'servers', '--json']);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: 'VALIDATION_FAILED' });
    const missing = await run(['--config', join(work, 'nope.json'), 'servers']);
    expect(missing.stderr).toContain('no such file');
  });

  it('a PostgreSQL URL in messages — the password is never printed', async () => {
    const r = await run(['--store', 'postgres://ops:s3cret-pw@127.0.0.1:1/db', 'config', 'show']);
    expect(r.stdout).toContain('postgres://ops:***@127.0.0.1:1/db');
    expect(r.stdout).not.toContain('s3cret-pw');
  });

  describe('after init', () => {
    beforeEach(async () => {
      expect((await run(['init'])).code).toBe(EXIT.ok);
    });

    it('NOT_FOUND — text with a hint naming the list command; JSON error with code on stdout', async () => {
      const r = await run(['servers', 'show', 'nope']);
      expect(r.code).toBe(EXIT.failure);
      expect(r.stderr).toContain('server "nope" not found');
      expect(r.stderr).toContain('fleetward servers list');
      const j = await run(['servers', 'show', 'nope', '--json']);
      expect(j.code).toBe(EXIT.failure);
      expect(JSON.parse(j.stdout)).toEqual({
        error: {
          code: 'NOT_FOUND',
          message: 'server "nope" not found',
          hint: 'List them with: fleetward servers list',
          details: { what: 'server', id: 'nope' },
        },
      });
    });

    it('FORBIDDEN — the hint says who you act as and how to get a role', async () => {
      const r = await run(['--as', 'mallory', 'servers', 'add', 'x', '--address', '10.0.0.1']);
      expect(r.code).toBe(EXIT.failure);
      expect(r.stderr).toMatch(/FORBIDDEN/);
      expect(r.stderr).toContain('You act as "mallory"');
    });

    it('validation — the field in words, never a schema name', async () => {
      const r = await run(['servers', 'add', 'bad id!', '--address', '10.0.0.1']);
      expect(r.code).toBe(EXIT.failure);
      expect(r.stderr).toMatch(/invalid server/);
      expect(r.stderr).toContain('id:');
      expect(r.stderr).not.toMatch(/Schema|Options:/);
    });

    it('usage errors — JSON with code USAGE when asked; text otherwise, exit 2', async () => {
      const j = await run(['servers', 'add', '--json']);
      expect(j.code).toBe(EXIT.usage);
      const body = JSON.parse(j.stdout);
      expect(body.error.code).toBe('USAGE');
      expect(body.error.usage).toContain('fleetward servers add');
      const t = await run(['servers', 'add', 'web-1']);
      expect(t.code).toBe(EXIT.usage);
      expect(t.stderr).toContain("required option '--address <host>'");
      expect(t.stderr).toContain('Usage: fleetward servers add');
    });

    it('-o id and --json — every listing prints ids only, or JSON, in any position', async () => {
      await run(['servers', 'add', 'web-1', '--address', '10.0.0.1', '--user', 'deploy', '-l', 'tier=web']);
      expect((await run(['servers', 'list', '-o', 'id'])).stdout.split('\n').filter(Boolean).sort()).toEqual([
        'localhost',
        'web-1',
      ]);
      const shown = JSON.parse((await run(['--json', 'servers', 'show', 'web-1'])).stdout);
      expect(shown).toMatchObject({
        id: 'web-1',
        address: '10.0.0.1',
        provider: 'ssh',
        labels: { tier: 'web', 'fleetward.dev/ssh-user': 'deploy' },
      });
    });

    it('servers import — CSV rows are all checked before any is stored; a re-import updates', async () => {
      const bad = join(work, 'bad.csv');
      writeFileSync(
        bad,
        'id,address,user,labels\nweb-1,10.0.0.1,deploy,tier=web\nweb-2,not an address!,deploy,\n',
      );
      const r = await run(['servers', 'import', bad]);
      expect(r.code).toBe(EXIT.failure);
      expect(r.stderr).toContain('line 3');
      expect((await run(['servers', 'list', '-o', 'id'])).stdout.trim()).toBe('localhost');

      const good = join(work, 'servers.csv');
      writeFileSync(
        good,
        'id,address,port,user,labels\nweb-1,10.0.0.1,22,deploy,tier=web;env=prod\nweb-2,10.0.0.2,2222,deploy,tier=web\n',
      );
      const first = JSON.parse((await run(['servers', 'import', good, '--json'])).stdout);
      expect(first).toMatchObject({ added: ['web-1', 'web-2'], updated: [], unchanged: [] });
      writeFileSync(
        good,
        'id,address,port,user,labels\nweb-1,10.0.0.1,22,deploy,tier=web;env=prod\nweb-2,10.0.0.3,2222,deploy,tier=web\n',
      );
      const second = JSON.parse((await run(['servers', 'import', good, '--json'])).stdout);
      expect(second).toMatchObject({ added: [], updated: ['web-2'], unchanged: ['web-1'] });
      expect(JSON.parse((await run(['servers', 'show', 'web-2', '--json'])).stdout).address).toBe('10.0.0.3');
    });

    it('servers label and remove — labels change, removal reports what was not there', async () => {
      await run(['servers', 'add', 'web-1', '--address', '10.0.0.1']);
      const l = JSON.parse(
        (await run(['servers', 'label', 'web-1', 'tier=web', 'env=prod', '--json'])).stdout,
      );
      expect(l.labels).toEqual({ tier: 'web', env: 'prod' });
      const l2 = JSON.parse((await run(['servers', 'label', 'web-1', '--remove', 'env', '--json'])).stdout);
      expect(l2.labels).toEqual({ tier: 'web' });
      const rm = await run(['servers', 'remove', 'web-1', 'ghost']);
      expect(rm.code).toBe(EXIT.failure);
      expect(rm.stdout).toContain('Removed web-1');
      expect(rm.stdout).toContain('Not found: ghost');
    });

    it('hostile server fields — rejected as invalid, never stored, whatever the string', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(
            '$(touch pwned)',
            '`id`',
            'a;rm -rf /',
            '--address',
            '-oProxyCommand=sh',
            'a\nb',
            "a'b",
          ),
          async (hostile) => {
            const r = await run(['servers', 'add', 'h1', '--address', hostile]);
            expect(r.code).not.toBe(EXIT.ok);
            const listed = (await run(['servers', 'list', '-o', 'id'])).stdout;
            expect(listed).not.toContain('h1');
          },
        ),
        { numRuns: 7 },
      );
      expect(existsSync(join(work, 'pwned'))).toBe(false);
    });

    it('scan of an unreachable SSH server — says it failed and does not suggest the report', async () => {
      await run(['servers', 'add', 'gone', '--address', '127.0.0.1', '--port', '1', '--user', 'nobody']);
      writeFileSync(join(home, 'key'), 'not a key');
      const r = await run(['scan', '--server', 'gone'], { SSH_AUTH_SOCK: join(work, 'no-agent') });
      expect(r.code).toBe(EXIT.failure);
      expect(r.stdout).toContain('0 of 1 servers scanned');
      expect(r.stdout).toContain('failed gone');
      expect(r.stdout).not.toContain('fleetward report');
    });

    it('--log-level — operator records as JSON lines on stderr (job start and end, the failing server); off by default', async () => {
      await run(['servers', 'add', 'gone', '--address', '127.0.0.1', '--port', '1', '--user', 'nobody']);
      const quiet = await run(['scan', '--server', 'gone'], { SSH_AUTH_SOCK: join(work, 'no-agent') });
      expect(quiet.stderr).toBe('');
      const r = await run(['--log-level', 'info', 'scan', '--server', 'gone'], {
        SSH_AUTH_SOCK: join(work, 'no-agent'),
      });
      const records = r.stderr
        .split('\n')
        .filter(Boolean)
        .map(
          (line) => JSON.parse(line) as { level: string; msg?: string; serverId?: string; tenantId?: string },
        );
      expect(records.some((x) => x.level === 'warn' && x.serverId === 'gone')).toBe(true);
      expect(records.some((x) => x.level === 'info' && x.tenantId === 'default')).toBe(true);
      expect(records.every((x) => ['error', 'warn', 'info'].includes(x.level))).toBe(true);
      const env = await run(['scan', '--server', 'gone'], {
        SSH_AUTH_SOCK: join(work, 'no-agent'),
        FLEETWARD_LOG_LEVEL: 'debug',
      });
      expect(env.stderr).toContain('"level":"warn"');
    });

    it('accounts and projects — add, list, show, remove', async () => {
      expect((await run(['accounts', 'add', 'dc1', '--region', 'fra,ams'])).code).toBe(EXIT.ok);
      expect(JSON.parse((await run(['accounts', 'show', 'dc1', '--json'])).stdout)).toMatchObject({
        id: 'dc1',
        regions: ['fra', 'ams'],
      });
      await run(['servers', 'add', 'web-1', '--address', '10.0.0.1', '--account', 'dc1', '-l', 'tier=web']);
      const p = JSON.parse((await run(['projects', 'add', 'web', '-l', 'tier=web', '--json'])).stdout);
      expect(p.servers).toEqual(['web-1']);
      expect((await run(['projects', 'list', '-o', 'id'])).stdout.trim()).toBe('web');
      const refused = await run(['accounts', 'remove', 'dc1']);
      expect(refused.code).toBe(EXIT.failure);
      expect(refused.stderr).toMatch(/CONFLICT/);
      expect((await run(['projects', 'remove', 'web'])).code).toBe(EXIT.ok);
      expect((await run(['projects', 'show', 'web'])).code).toBe(EXIT.failure);
    });
  });

  it('config show — reads, creates nothing', async () => {
    await run(['config', 'show']);
    expect(readdirSync(home)).toEqual([]);
    expect(readdirSync(work)).toEqual([]);
  });
});
