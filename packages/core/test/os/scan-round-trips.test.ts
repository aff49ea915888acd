import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { itIfAvailable } from '@fleetward/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import type { OsFacts, Server } from '../../src/domain/index.js';
import { DEFAULT_DRIVERS, detectOs, scanServer } from '../../src/engine/scan.js';
import { CommandFailedError, ParseError } from '../../src/errors.js';
import { aptDriver } from '../../src/os/apt.js';
import { OS_FACTS_COMMAND, parseOsRelease, splitOsFacts } from '../../src/os/os-release.js';
import type { Adapter, Command, ExecResult } from '../../src/ports/adapter.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/apt/${name}`, import.meta.url), 'utf8');

/** The body of one `@@fleetward:` section of a scan fixture. */
function section(text: string, name: string): string {
  const lines = text.split('\n');
  const start = lines.indexOf(`@@fleetward:${name}`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('@@fleetward:'));
  return `${lines.slice(start + 1, end).join('\n')}\n`;
}

const summary = (text: string) => ({
  text,
  bytes: Buffer.byteLength(text),
  sha256: '0'.repeat(64),
  truncated: false,
});

/**
 * An adapter that runs each command on this machine (the host is this machine, whose
 * /etc/os-release is real), with stand-in apt tools first on PATH, and records every command.
 */
function localAdapter(path: string, commands: Command[]): Adapter {
  return {
    name: 'here',
    exec: {
      exec(_server, command) {
        commands.push(command);
        const [file, ...args] = 'script' in command ? command.interpreter : command.argv;
        return new Promise<ExecResult>((resolve, reject) => {
          const child = spawn(file!, args, { env: { ...process.env, ...command.env, PATH: path } });
          let stdout = '';
          let stderr = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => {
            stdout += d;
          });
          child.stderr.setEncoding('utf8').on('data', (d: string) => {
            stderr += d;
          });
          child.on('error', reject);
          child.on('close', (exitCode) =>
            resolve({
              exitCode,
              signal: null,
              stdout: summary(stdout),
              stderr: summary(stderr),
              durationMs: 0,
            }),
          );
          child.stdin.end('script' in command ? command.script : '');
        });
      },
    },
  };
}

const hostOs = spawnSync('cat', ['/etc/os-release'], { encoding: 'utf8' });
const thisHost: OsFacts | undefined = hostOs.status === 0 ? parseOsRelease(hostOs.stdout) : undefined;
const onDebian = thisHost?.packageManager === 'apt';

function server(os?: OsFacts): Server {
  return {
    tenantId: 't',
    id: 'here',
    name: 'here',
    accountId: 'dc',
    provider: 'ssh',
    labels: {},
    version: 1,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...(os ? { os } : {}),
  } as Server;
}

describe('scanServer round trips', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-round-trips-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const sim = section(fixture('debian12-scan.out'), 'apt-get-simulate');
  writeFileSync(join(dir, 'sim.txt'), sim);
  writeFileSync(join(dir, 'apt-get'), `#!/bin/sh\ncat "${dir}/sim.txt"\n`);
  chmodSync(join(dir, 'apt-get'), 0o755);
  const PATH = `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`;

  itIfAvailable(
    'scanServer — a server whose stored OS names apt is detected and scanned in one command',
    onDebian ? undefined : 'needs a Debian host (its /etc/os-release names apt)',
    async () => {
      const commands: Command[] = [];
      const ctx = { adapter: localAdapter(PATH, commands), drivers: DEFAULT_DRIVERS };
      const result = await scanServer(server({ ...thisHost!, packageManager: 'apt' }), ctx);
      expect(commands).toHaveLength(1);
      expect(result.packageManager).toBe('apt');
      expect(result.os).toMatchObject({ id: thisHost!.id, family: 'debian', packageManager: 'apt' });
      expect(result.os?.kernel).toBe(spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim());
      expect(result.patches).toHaveLength(124);

      const first: Command[] = [];
      const fresh = await scanServer(server(), {
        adapter: localAdapter(PATH, first),
        drivers: DEFAULT_DRIVERS,
      });
      expect(first).toHaveLength(2);
      expect(fresh).toEqual(result);
    },
  );

  itIfAvailable(
    'scanServer — a host reinstalled with another package manager is scanned with the right driver',
    onDebian ? undefined : 'needs a Debian host (its /etc/os-release names apt)',
    async () => {
      const commands: Command[] = [];
      const stale: OsFacts = {
        family: 'rhel',
        id: 'rocky',
        versionId: '9.4',
        prettyName: 'Rocky',
        packageManager: 'dnf',
      };
      const result = await scanServer(server(stale), {
        adapter: localAdapter(PATH, commands),
        drivers: DEFAULT_DRIVERS,
      });
      expect(commands).toHaveLength(2);
      expect(result.packageManager).toBe('apt');
      expect(result.os).toMatchObject({ family: 'debian', packageManager: 'apt' });
      expect(result.patches).toHaveLength(124);
      expect(commands[1]).toEqual(aptDriver.scanCommand());
    },
  );

  itIfAvailable(
    'detectOs — reads os-release and uname in one command',
    thisHost ? undefined : 'needs /etc/os-release',
    async () => {
      const commands: Command[] = [];
      const os = await detectOs(localAdapter(PATH, commands).exec!, server(), {
        adapter: localAdapter(PATH, []),
        drivers: DEFAULT_DRIVERS,
      });
      expect(commands).toEqual([OS_FACTS_COMMAND]);
      const [kernel, arch] = spawnSync('uname', ['-r', '-m'], { encoding: 'utf8' })
        .stdout.trim()
        .split(/\s+/);
      expect(os).toEqual({ ...thisHost, kernel, arch });
    },
  );
});

describe('splitOsFacts', () => {
  const out = (stdout: string, stderr = '') => ({ exitCode: 0, stdout, stderr });

  it('splitOsFacts — separates os-release, uname and the scan output that follows', () => {
    const split = splitOsFacts(
      out(
        [
          'Welcome to the host',
          '@@fleetward:os-release',
          '|ID=debian',
          '|VERSION_ID="12"',
          '@@fleetward:os-release-exit 0',
          '@@fleetward:uname',
          '6.1.0-18-amd64 x86_64',
          '@@fleetward:os-end',
          '@@fleetward:apt-scan 1',
          '',
        ].join('\n'),
      ),
    );
    expect(split.osRelease).toBe('ID=debian\nVERSION_ID="12"');
    expect(split.kernel).toBe('6.1.0-18-amd64');
    expect(split.arch).toBe('x86_64');
    expect(split.rest.stdout).toBe('@@fleetward:apt-scan 1\n');
  });

  it('splitOsFacts — a marker written inside os-release stays part of the file', () => {
    const split = splitOsFacts(
      out(
        [
          '@@fleetward:os-release',
          '|ID=debian',
          '|@@fleetward:os-end',
          '|@@fleetward:apt-scan 1',
          '@@fleetward:os-release-exit 0',
          '@@fleetward:uname',
          '@@fleetward:os-end',
          'real',
        ].join('\n'),
      ),
    );
    expect(split.osRelease).toBe('ID=debian\n@@fleetward:os-end\n@@fleetward:apt-scan 1');
    expect(split.kernel).toBeUndefined();
    expect(split.rest.stdout).toBe('real');
  });

  it('splitOsFacts — an unreadable os-release gives no facts and the shell message', () => {
    const split = splitOsFacts(
      out(
        '@@fleetward:os-release\n|\n@@fleetward:os-release-exit 1\n@@fleetward:uname\nx y\n@@fleetward:os-end\n',
        'cat: /etc/os-release: No such file or directory\n@@fleetward:list-updates\nzypper said\n',
      ),
    );
    expect(split.osRelease).toBeNull();
    expect(split.failure).toBe('cat: /etc/os-release: No such file or directory');
  });

  it('splitOsFacts — throws ParseError when the markers are missing', () => {
    expect(() => splitOsFacts(out('ID=debian\n'))).toThrow(ParseError);
    expect(() => splitOsFacts(out('@@fleetward:os-release\n|ID=debian\n@@fleetward:os-end\n'))).toThrow(
      ParseError,
    );
  });

  it('detectOs — a host without /etc/os-release fails with CommandFailedError naming the server', async () => {
    const adapter: Adapter = {
      name: 'fake',
      exec: {
        async exec() {
          const stdout =
            '@@fleetward:os-release\n\n@@fleetward:os-release-exit 1\n@@fleetward:uname\nk a\n@@fleetward:os-end\n';
          const stderr = 'cat: /etc/os-release: No such file or directory\n';
          return {
            exitCode: 0,
            signal: null,
            stdout: summary(stdout),
            stderr: summary(stderr),
            durationMs: 0,
          };
        },
      },
    };
    const failed = detectOs(adapter.exec!, server(), { adapter, drivers: DEFAULT_DRIVERS });
    await expect(failed).rejects.toThrow(CommandFailedError);
    await expect(failed).rejects.toThrow(
      /cannot read \/etc\/os-release on here: cat: \/etc\/os-release: No such file/,
    );
  });

  it('OS_FACTS_COMMAND — is valid POSIX sh, without sudo', () => {
    expect('sudo' in OS_FACTS_COMMAND).toBe(false);
    const r = spawnSync('sh', ['-n'], { input: OS_FACTS_COMMAND.script, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });
});
