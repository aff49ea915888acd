import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { PendingPatch } from '../../src/domain/index.js';
import { PendingPatchSchema } from '../../src/domain/index.js';
import { CommandFailedError, ParseError } from '../../src/errors.js';
import {
  aptDriver,
  isSecurityOrigin,
  parseAptCachePolicy,
  parseAptSimulation,
  refreshCommand,
} from '../../src/os/apt.js';
import type { CommandOutput } from '../../src/os/driver.js';
import type { ScriptCommand } from '../../src/ports/adapter.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/apt/${name}`, import.meta.url), 'utf8');
const ok = (stdout: string, extra: Partial<CommandOutput> = {}): CommandOutput => ({
  exitCode: 0,
  stdout,
  stderr: '',
  ...extra,
});
const scanFixture = (name: string) => aptDriver.parseScan(ok(fixture(name)));
const byName = (patches: PendingPatch[], name: string): PendingPatch => {
  const p = patches.find((x) => x.name === name);
  if (!p) throw new Error(`no patch named ${name}`);
  return p;
};

/** `apt list --upgradable` lines: `name/suites candidate arch [upgradable from: installed]`. */
function parseAptList(text: string) {
  return text
    .split('\n')
    .filter((l) => l.includes('[upgradable from:'))
    .map((l) => {
      const m = /^([^/\s]+)\/\S+ (\S+) (\S+) \[upgradable from: (\S+)\]$/.exec(l);
      if (!m) throw new Error(`unexpected apt list line: ${l}`);
      return { name: m[1]!, candidateVersion: m[2]!, arch: m[3]!, installedVersion: m[4]! };
    })
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}

function scriptOf(): ScriptCommand {
  const cmd = aptDriver.scanCommand();
  if (!('script' in cmd)) throw new Error('apt scan command is not a script');
  return cmd;
}

/** Runs the scan script with `sh -s`, no shell in between, as a transport would. */
function runScript(env: Record<string, string>): Promise<CommandOutput> {
  const cmd = scriptOf();
  return new Promise((resolve, reject) => {
    const [file, ...args] = cmd.interpreter;
    const child = spawn(file!, args, { env: { ...process.env, ...cmd.env, ...env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, stdout, stderr }));
    child.stdin.end(cmd.script);
  });
}

const sorted = (names: string[]) => [...names].sort();

describe('aptDriver.scanCommand', () => {
  it('scanCommand — is a constant sh script run as root in the C locale, non-interactive', () => {
    const cmd = scriptOf();
    expect(cmd.interpreter).toEqual(['sh', '-s']);
    expect(cmd.sudo).toBe(false);
    expect(cmd.env).toEqual({ LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C', DEBIAN_FRONTEND: 'noninteractive' });
    expect(scriptOf().script).toBe(cmd.script);
    expect(cmd.script).not.toContain('${');
  });

  it('scanCommand — only simulates: every apt-get call has -s, and it never refreshes or installs', () => {
    const { script } = scriptOf();
    const calls = script.split('\n').filter((l) => /\bapt-get\s/.test(l) && !l.trimStart().startsWith('#'));
    expect(calls).toHaveLength(1);
    expect(calls[0]).toContain(
      'apt-get -s -V -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false dist-upgrade',
    );
    expect(script).not.toMatch(/apt-get[^\n]*\b(update|install|remove|purge)\b/);
    expect(script).not.toMatch(/\beval\b/);
  });

  it('scanCommand — is valid POSIX sh', () => {
    const r = spawnSync('sh', ['-n'], { input: scriptOf().script, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('refreshCommand — is argv apt-get -q update as root with the same environment', () => {
    expect(refreshCommand()).toEqual({
      argv: ['apt-get', '-q', 'update'],
      sudo: true,
      env: { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C', DEBIAN_FRONTEND: 'noninteractive' },
    });
  });
});

describe('aptDriver.supports', () => {
  it('supports — serves apt hosts and the debian family, nothing else', () => {
    expect(aptDriver.manager).toBe('apt');
    expect(aptDriver.supports({ family: 'debian', id: 'ubuntu', versionId: '24.04', prettyName: '' })).toBe(
      true,
    );
    expect(
      aptDriver.supports({
        family: 'unknown',
        id: 'x',
        versionId: '',
        prettyName: '',
        packageManager: 'apt',
      }),
    ).toBe(true);
    expect(
      aptDriver.supports({
        family: 'rhel',
        id: 'rocky',
        versionId: '9',
        prettyName: '',
        packageManager: 'dnf',
      }),
    ).toBe(false);
    expect(aptDriver.supports({ family: 'unknown', id: 'arch', versionId: '', prettyName: '' })).toBe(false);
  });
});

describe('aptDriver.parseScan on real Debian 12 output', () => {
  it('parseScan — matches `apt list --upgradable` captured at the same moment (names, versions, arch)', () => {
    const result = scanFixture('debian12-scan.out');
    const expected = parseAptList(fixture('debian12-upgradable.txt'));
    expect(expected).toHaveLength(124);
    expect(
      result.patches.map((p) => ({
        name: p.name,
        candidateVersion: p.candidateVersion,
        arch: p.arch,
        installedVersion: p.installedVersion,
      })),
    ).toEqual(expected);
    expect(result.rebootRequired).toBe(false);
    expect(result.rebootPackages).toEqual([]);
    expect(result.warnings).toEqual([]);
    for (const p of result.patches) expect(PendingPatchSchema.parse(p)).toEqual(p);
  });

  it('parseScan — marks security when any origin is security, even when it is listed second', () => {
    const { patches } = scanFixture('debian12-scan.out');
    expect(byName(patches, 'libgcrypt20')).toEqual({
      name: 'libgcrypt20',
      arch: 'amd64',
      installedVersion: '1.10.1-3',
      candidateVersion: '1.10.1-3+deb12u1',
      origins: [
        { origin: 'Debian', archive: '12.15/oldstable' },
        { origin: 'Debian-Security', archive: '12/oldstable-security' },
      ],
      category: 'security',
      severity: 'unspecified',
      advisories: [],
      held: false,
      keptBack: false,
      isNew: false,
    });
    expect(byName(patches, 'base-files')).toMatchObject({
      origins: [{ origin: 'Debian', archive: '12.15/oldstable' }],
      category: 'other',
    });
    expect(byName(patches, 'ca-certificates')).toMatchObject({ arch: 'all', category: 'security' });
    expect(patches.filter((p) => p.category === 'security')).toHaveLength(69);
    expect(patches.every((p) => !p.keptBack && !p.held && !p.isNew)).toBe(true);
  });

  it('parseScan — ignores the trailing bracket groups apt appends to some Inst lines', () => {
    const { patches } = scanFixture('debian12-scan.out');
    expect(fixture('debian12-scan.out')).toContain(
      'Inst libpam-modules-bin [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian:12.15/oldstable [amd64]) [libpam-modules:amd64 on libpam-modules-bin:amd64] [libpam-modules:amd64 ]',
    );
    expect(byName(patches, 'libpam-modules-bin')).toMatchObject({
      arch: 'amd64',
      installedVersion: '1.5.2-6+deb12u1',
      candidateVersion: '1.5.2-6+deb12u2',
      origins: [{ origin: 'Debian', archive: '12.15/oldstable' }],
    });
  });

  it('parseScan — reports held packages (real capture) as kept back and held, with origins from apt-cache policy', () => {
    const result = scanFixture('debian12-held-scan.out');
    const expected = parseAptList(fixture('debian12-held-upgradable.txt'));
    expect(result.patches.map((p) => [p.name, p.candidateVersion, p.installedVersion])).toEqual(
      expected.map((e) => [e.name, e.candidateVersion, e.installedVersion]),
    );
    const kept = result.patches.filter((p) => p.keptBack);
    expect(kept.map((p) => p.name)).toEqual(['ca-certificates', 'zip']);
    expect(byName(result.patches, 'zip')).toEqual({
      name: 'zip',
      arch: '',
      installedVersion: '3.0-13',
      candidateVersion: '3.0-13+deb12u1',
      origins: [{ origin: 'Debian-Security', archive: '12/oldstable-security' }],
      category: 'security',
      severity: 'unspecified',
      advisories: [],
      held: true,
      keptBack: true,
      isNew: false,
    });
    expect(byName(result.patches, 'ca-certificates')).toMatchObject({
      held: true,
      keptBack: true,
      category: 'security',
      candidateVersion: '20250419~deb12u2',
    });
    expect(result.patches.filter((p) => p.held).map((p) => p.name)).toEqual(['ca-certificates', 'zip']);
    expect(result.warnings).toEqual([]);
  });
});

describe('aptDriver.parseScan on crafted Ubuntu output', () => {
  const result = scanFixture('ubuntu2204-scan.out');

  it('parseScan — classifies the Ubuntu libldap-common line (security origin second) as security', () => {
    expect(byName(result.patches, 'libldap-common')).toMatchObject({
      arch: 'all',
      installedVersion: '2.5.16+dfsg-0ubuntu0.22.04.1',
      candidateVersion: '2.5.16+dfsg-0ubuntu0.22.04.2',
      origins: [
        { origin: 'Ubuntu', archive: '22.04/jammy-updates' },
        { origin: 'Ubuntu', archive: '22.04/jammy-security' },
      ],
      category: 'security',
    });
    expect(byName(result.patches, 'tzdata')).toMatchObject({
      origins: [{ origin: 'Ubuntu', archive: '22.04/jammy-updates' }],
      category: 'other',
    });
  });

  it('parseScan — keeps an origin label with a space whole (Docker CE)', () => {
    expect(byName(result.patches, 'containerd.io')).toMatchObject({
      origins: [{ origin: 'Docker CE', archive: 'jammy' }],
      category: 'other',
    });
  });

  it('parseScan — reports NEW packages with isNew and a null installed version', () => {
    expect(byName(result.patches, 'linux-image-5.15.0-92-generic')).toMatchObject({
      installedVersion: null,
      candidateVersion: '5.15.0-92.102',
      isNew: true,
      category: 'security',
      arch: 'amd64',
    });
    expect(result.patches.filter((p) => p.isNew).map((p) => p.name)).toEqual([
      'linux-image-5.15.0-92-generic',
      'linux-modules-5.15.0-92-generic',
    ]);
  });

  it('parseScan — keeps both multi-arch packages under the names apt prints', () => {
    expect(byName(result.patches, 'libc6')).toMatchObject({ arch: 'amd64', category: 'security' });
    expect(byName(result.patches, 'libc6:i386')).toMatchObject({ arch: 'i386', category: 'security' });
  });

  it('parseScan — takes every source of a kept-back candidate, not only the first (vuls bug)', () => {
    expect(byName(result.patches, 'openssl')).toEqual({
      name: 'openssl',
      arch: '',
      installedVersion: '3.0.2-0ubuntu1.12',
      candidateVersion: '3.0.2-0ubuntu1.14',
      origins: [
        { origin: 'Ubuntu', archive: '22.04/jammy-updates' },
        { origin: 'Ubuntu', archive: '22.04/jammy-security' },
      ],
      category: 'security',
      severity: 'unspecified',
      advisories: [],
      held: true,
      keptBack: true,
      isNew: false,
    });
  });

  it('parseScan — falls back to the source URI and suite when a source has no release line', () => {
    expect(byName(result.patches, 'acme-agent')).toMatchObject({
      origins: [{ origin: 'https://packages.acme.example/apt', archive: 'stable' }],
      category: 'other',
      held: true,
      keptBack: true,
    });
  });

  it('parseScan — reports phased (deferred) updates as kept back but not held', () => {
    expect(byName(result.patches, 'python3-software-properties')).toMatchObject({
      installedVersion: '0.99.22.8',
      candidateVersion: '0.99.22.9',
      origins: [{ origin: 'Ubuntu', archive: '22.04/jammy-updates' }],
      held: false,
      keptBack: true,
      category: 'other',
    });
  });

  it('parseScan — does not report a held package that has no newer candidate', () => {
    expect(result.patches.map((p) => p.name)).not.toContain('nginx');
  });

  it('parseScan — sorts patches by name and validates them against PendingPatchSchema', () => {
    const names = result.patches.map((p) => p.name);
    expect(names).toEqual([
      'acme-agent',
      'containerd.io',
      'libc6',
      'libc6:i386',
      'libldap-common',
      'linux-image-5.15.0-92-generic',
      'linux-image-generic',
      'linux-modules-5.15.0-92-generic',
      'openssl',
      'python3-software-properties',
      'tzdata',
    ]);
    for (const p of result.patches) expect(PendingPatchSchema.parse(p)).toEqual(p);
  });

  it('parseScan — warns once per W: line and for each package the upgrade would remove', () => {
    expect(result.warnings).toEqual([
      'W: Target Packages (main/binary-amd64/Packages) is configured multiple times in /etc/apt/sources.list:1 and /etc/apt/sources.list.d/ubuntu-mirror.list:1',
      'apt would remove libfoo-legacy1 1.2-3 to complete the upgrade',
    ]);
  });

  it('parseScan — reads the reboot flag and de-duplicates reboot-required.pkgs', () => {
    expect(result.rebootRequired).toBe(true);
    expect(result.rebootPackages).toEqual(['linux-image-5.15.0-92-generic', 'linux-base']);
  });
});

describe('aptDriver.parseScan edge cases', () => {
  it('parseScan — returns an empty list when there are no updates', () => {
    expect(scanFixture('no-updates.out')).toEqual({
      patches: [],
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
  });

  it('parseScan — throws a retryable CommandFailedError with the E: text when the dpkg lock is held', () => {
    let error: unknown;
    try {
      scanFixture('lock-held.out');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CommandFailedError);
    const e = error as CommandFailedError;
    expect(e.code).toBe('COMMAND_FAILED');
    expect(e.retryable).toBe(true);
    expect(e.message).toContain('exit 100');
    expect(e.message).toContain('E: Could not get lock /var/lib/dpkg/lock-frontend');
    expect(e.message).toContain('E: Unable to acquire the dpkg frontend lock');
  });

  it('parseScan — throws a non-retryable CommandFailedError when dpkg was interrupted', () => {
    expect(() => scanFixture('dpkg-interrupted.out')).toThrow(CommandFailedError);
    expect(() => scanFixture('dpkg-interrupted.out')).toThrow(/E: dpkg was interrupted/);
    try {
      scanFixture('dpkg-interrupted.out');
    } catch (e) {
      expect((e as CommandFailedError).retryable).toBe(false);
    }
  });

  it('parseScan — throws CommandFailedError when apt-get exits non-zero without E: lines', () => {
    const text = fixture('no-updates.out')
      .replace('Reading package lists...', 'sh: 1: apt-get: not found')
      .replace('@@fleetward:apt-get-simulate-exit 0', '@@fleetward:apt-get-simulate-exit 127');
    expect(() => aptDriver.parseScan(ok(text))).toThrow(CommandFailedError);
    expect(() => aptDriver.parseScan(ok(text))).toThrow(/exit 127.*apt-get: not found/);
  });

  it('parseScan — throws CommandFailedError for an E: line even when apt-get exited 0', () => {
    const text = fixture('no-updates.out').replace(
      'Calculating upgrade...',
      'Calculating upgrade...\nE: The package lists or status file could not be parsed or opened.',
    );
    expect(() => aptDriver.parseScan(ok(text))).toThrow(CommandFailedError);
  });

  it('parseScan — throws CommandFailedError when apt-cache policy or apt-mark fails', () => {
    const policy = fixture('ubuntu2204-scan.out').replace(
      '@@fleetward:apt-cache-policy-exit 0',
      '@@fleetward:apt-cache-policy-exit 123',
    );
    expect(() => aptDriver.parseScan(ok(policy))).toThrow(CommandFailedError);
    const hold = fixture('no-updates.out').replace(
      '@@fleetward:apt-mark-showhold\n',
      '@@fleetward:apt-mark-showhold\nE: Could not open file /var/lib/dpkg/status - open (13: Permission denied)\n',
    );
    expect(() => aptDriver.parseScan(ok(hold))).toThrow(CommandFailedError);
  });

  it('parseScan — throws CommandFailedError when the script never started (sudo refused)', () => {
    const out = { exitCode: 1, stdout: '', stderr: 'sudo: a password is required\n' };
    expect(() => aptDriver.parseScan(out)).toThrow(CommandFailedError);
    expect(() => aptDriver.parseScan(out)).toThrow(/sudo: a password is required/);
  });

  it('parseScan — throws ParseError for garbage, never an empty list', () => {
    expect(() => aptDriver.parseScan(ok(''))).toThrow(ParseError);
    expect(() => aptDriver.parseScan(ok('<html><body>502 Bad Gateway</body></html>\n'))).toThrow(ParseError);
    expect(() =>
      aptDriver.parseScan(ok('0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n')),
    ).toThrow(ParseError);
  });

  it('parseScan — throws ParseError when the markers are all there but the simulation is not apt output', () => {
    const text = fixture('no-updates.out').replace(
      /@@fleetward:apt-get-simulate\n[\s\S]*?@@fleetward:apt-get-simulate-exit/,
      '@@fleetward:apt-get-simulate\nhello world\n@@fleetward:apt-get-simulate-exit',
    );
    expect(() => aptDriver.parseScan(ok(text))).toThrow(ParseError);
  });

  it('parseScan — throws ParseError for markers out of order, repeated, unknown or with a bad exit status', () => {
    const base = fixture('no-updates.out');
    const swapped = base
      .replace('@@fleetward:reboot-required no\n', '')
      .replace(
        '@@fleetward:apt-mark-showhold\n',
        '@@fleetward:reboot-required no\n@@fleetward:apt-mark-showhold\n',
      );
    expect(() => aptDriver.parseScan(ok(swapped))).toThrow(ParseError);
    expect(() =>
      aptDriver.parseScan(ok(base.replace('@@fleetward:end', '@@fleetward:apt-scan 1\n@@fleetward:end'))),
    ).toThrow(ParseError);
    expect(() =>
      aptDriver.parseScan(ok(base.replace('@@fleetward:end', '@@fleetward:surprise\n@@fleetward:end'))),
    ).toThrow(ParseError);
    expect(() =>
      aptDriver.parseScan(
        ok(base.replace('@@fleetward:apt-get-simulate-exit 0', '@@fleetward:apt-get-simulate-exit zero')),
      ),
    ).toThrow(ParseError);
    expect(() =>
      aptDriver.parseScan(
        ok(base.replace('@@fleetward:reboot-required no', '@@fleetward:reboot-required maybe')),
      ),
    ).toThrow(ParseError);
  });

  it('parseScan — throws ParseError for truncated output, even when the visible part looks complete', () => {
    const full = fixture('debian12-scan.out');
    expect(() => aptDriver.parseScan(ok(full, { truncated: true }))).toThrow(ParseError);
    expect(() => aptDriver.parseScan(ok(full.slice(0, full.length / 2), { truncated: true }))).toThrow(
      ParseError,
    );
    expect(() => aptDriver.parseScan(ok(full.slice(0, full.length / 2)))).toThrow(ParseError);
  });

  it('parseScan — throws ParseError when the summary count disagrees with the Inst lines', () => {
    const full = fixture('debian12-scan.out');
    const dropped = full.replace(/^Inst zip .*\n/m, '');
    expect(dropped).not.toBe(full);
    expect(() => aptDriver.parseScan(ok(dropped))).toThrow(ParseError);
    expect(() => aptDriver.parseScan(ok(dropped))).toThrow(/124 upgraded.*123 upgrades/);
  });

  it('parseScan — throws ParseError for an Inst line it cannot read', () => {
    const full = fixture('debian12-scan.out');
    const mangled = full.replace(/^Inst zip .*$/m, 'Inst zip [3.0-13] 3.0-13+deb12u1 Debian-Security');
    expect(() => aptDriver.parseScan(ok(mangled))).toThrow(ParseError);
  });

  it('parseScan — reports a package listed twice once', () => {
    const full = fixture('debian12-scan.out');
    const line = /^Inst zip .*$/m.exec(full)![0];
    const doubled = full.replace(line, `${line}\n${line}`);
    const patches = aptDriver.parseScan(ok(doubled)).patches;
    expect(patches).toHaveLength(124);
    expect(patches.filter((p) => p.name === 'zip')).toHaveLength(1);
  });

  it('parseScan — warns when a kept-back candidate is missing from apt-cache policy', () => {
    const text = fixture('ubuntu2204-scan.out').replace(/^acme-agent:\n(?: {2}.*\n)+/m, '');
    const result = aptDriver.parseScan(ok(text));
    expect(byName(result.patches, 'acme-agent')).toMatchObject({
      origins: [],
      category: 'other',
      keptBack: true,
    });
    expect(result.warnings).toContain(
      'apt-cache policy does not list acme-agent 4.2.0-1; its origins are unknown',
    );
  });
});

describe('parseAptSimulation', () => {
  it('parseAptSimulation — reads the NEW-package and two-origin lines quoted in the reference notes', () => {
    const sim = parseAptSimulation(
      [
        'Inst libldap-common [2.4.45+dfsg-1ubuntu1.2] (2.4.45+dfsg-1ubuntu1.3 Ubuntu:18.04/bionic-updates, Ubuntu:18.04/bionic-security [all])',
        'Inst linux-image-4.9.0-9-amd64 (4.9.168-1+deb9u2 Debian-Security:9/stable [amd64])',
        '1 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.',
      ].join('\n'),
    );
    expect(sim.installs).toEqual([
      {
        name: 'libldap-common',
        arch: 'all',
        installedVersion: '2.4.45+dfsg-1ubuntu1.2',
        candidateVersion: '2.4.45+dfsg-1ubuntu1.3',
        origins: [
          { origin: 'Ubuntu', archive: '18.04/bionic-updates' },
          { origin: 'Ubuntu', archive: '18.04/bionic-security' },
        ],
      },
      {
        name: 'linux-image-4.9.0-9-amd64',
        arch: 'amd64',
        installedVersion: null,
        candidateVersion: '4.9.168-1+deb9u2',
        origins: [{ origin: 'Debian-Security', archive: '9/stable' }],
      },
    ]);
    expect(sim.installs.map((i) => i.origins.some(isSecurityOrigin))).toEqual([true, true]);
  });

  it('parseAptSimulation — accepts reinstalled and downgraded counts in the summary', () => {
    const sim = parseAptSimulation(
      [
        'Inst a [2] (1 Foo:1/stable [amd64])',
        'Inst b [1] (2 Foo:1/stable [amd64])',
        '1 upgraded, 0 newly installed, 1 downgraded, 0 to remove and 0 not upgraded.',
      ].join('\n'),
    );
    expect(sim.summary).toEqual({ upgraded: 1, newlyInstalled: 0, other: 1, toRemove: 0, notUpgraded: 0 });
  });

  it('parseAptSimulation — returns E: lines without a summary instead of throwing', () => {
    const sim = parseAptSimulation('E: dpkg was interrupted, you must manually run ...\n');
    expect(sim.errors).toEqual(['E: dpkg was interrupted, you must manually run ...']);
    expect(sim.summary).toBeNull();
  });

  it('parseAptSimulation — throws ParseError for a kept-back line not in -V form', () => {
    const text = [
      'The following packages have been kept back:',
      '  zip ca-certificates',
      '0 upgraded, 0 newly installed, 0 to remove and 2 not upgraded.',
    ].join('\n');
    expect(() => parseAptSimulation(text)).toThrow(ParseError);
  });

  it('parseAptSimulation — throws ParseError when the Remv lines disagree with the summary', () => {
    expect(() =>
      parseAptSimulation('Remv foo [1]\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n'),
    ).toThrow(ParseError);
  });
});

describe('isSecurityOrigin', () => {
  it.each([
    [{ origin: 'Debian-Security', archive: '12/oldstable-security' }, true],
    [{ origin: 'Debian-Security', archive: '9/stable' }, true],
    [{ origin: 'Ubuntu', archive: '22.04/jammy-security' }, true],
    [{ origin: 'UbuntuESM', archive: '22.04/jammy-infra-security' }, true],
    [{ origin: '', archive: 'bookworm-security' }, true],
    [{ origin: 'Ubuntu', archive: '22.04/jammy-updates' }, false],
    [{ origin: 'Debian', archive: '12.15/oldstable' }, false],
    [{ origin: 'Docker CE', archive: 'jammy' }, false],
    [{ origin: 'Acme', archive: 'security-tools' }, false],
  ])('isSecurityOrigin — %o is %s', (origin, expected) => {
    expect(isSecurityOrigin(origin)).toBe(expected);
  });
});

describe('parseAptCachePolicy', () => {
  it('parseAptCachePolicy — lists every source of each version and skips the dpkg status file', () => {
    const policies = parseAptCachePolicy(
      [
        'openssl:',
        '  Installed: 3.0.2-0ubuntu1.12',
        '  Candidate: 3.0.2-0ubuntu1.14',
        '  Version table:',
        '     3.0.2-0ubuntu1.14 500',
        '        500 http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages',
        '        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages',
        ' *** 3.0.2-0ubuntu1.12 100',
        '        100 /var/lib/dpkg/status',
        'nothere:',
        '  Installed: (none)',
        '  Candidate: (none)',
        '  Version table:',
      ].join('\n'),
    );
    expect(policies.get('nothere')).toEqual({ installed: null, candidate: null, versions: [] });
    const openssl = policies.get('openssl')!;
    expect(openssl.candidate).toBe('3.0.2-0ubuntu1.14');
    expect(openssl.versions.map((v) => [v.version, v.sources.map((s) => s.dist)])).toEqual([
      ['3.0.2-0ubuntu1.14', ['jammy-updates/main', 'jammy-security/main']],
      ['3.0.2-0ubuntu1.12', []],
    ]);
  });
});

describe('the scan script run by sh against stand-in apt tools', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-apt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Splits a scan fixture back into what each apt tool printed. */
  function sectionsOf(text: string): Record<string, string> {
    const out: Record<string, string> = {};
    let name = '';
    for (const line of text.split('\n')) {
      const m = /^@@fleetward:([a-z-]+)/.exec(line);
      if (m) {
        name = m[1]!;
        out[name] = '';
      } else if (name) out[name] += `${line}\n`;
    }
    return out;
  }

  function install(simulation: string, policy: string, sources: string, holds: string) {
    writeFileSync(join(dir, 'sim.txt'), simulation);
    writeFileSync(join(dir, 'policy.txt'), policy);
    writeFileSync(join(dir, 'sources.txt'), sources);
    writeFileSync(join(dir, 'holds.txt'), holds);
    writeFileSync(join(dir, 'log.txt'), '');
    const tool = (body: string) =>
      `#!/bin/sh\nprintf '%s\\n' "$(basename "$0") $*" >> "${dir}/log.txt"\n${body}\n`;
    writeFileSync(join(dir, 'apt-get'), tool(`cat "${dir}/sim.txt"`));
    writeFileSync(
      join(dir, 'apt-cache'),
      tool(
        `for a in "$@"; do printf 'arg:%s\\n' "$a" >> "${dir}/log.txt"; done\nif [ $# -eq 1 ]; then cat "${dir}/sources.txt"; else cat "${dir}/policy.txt"; fi`,
      ),
    );
    writeFileSync(join(dir, 'apt-mark'), tool(`cat "${dir}/holds.txt"`));
    // The script asks dpkg's status file whether anything is held before it runs apt-mark.
    writeFileSync(join(dir, 'grep'), tool(holds.trim() === '' ? 'exit 1' : 'exit 0'));
    for (const t of ['apt-get', 'apt-cache', 'apt-mark', 'grep']) chmodSync(join(dir, t), 0o755);
  }

  const PATH = `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`;

  it('scanCommand — script output parses to the same result as the fixture it replays', async () => {
    const s = sectionsOf(fixture('ubuntu2204-scan.out'));
    install(
      s['apt-get-simulate']!,
      s['apt-cache-policy']!,
      s['apt-cache-policy-sources']!,
      s['apt-mark-showhold']!,
    );
    const out = await runScript({ PATH });
    expect(out.exitCode).toBe(0);
    const log = readFileSync(join(dir, 'log.txt'), 'utf8');
    expect(log).toContain(
      'apt-get -s -V -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false dist-upgrade',
    );
    expect(log).toContain('apt-cache policy acme-agent openssl python3-software-properties\n');
    expect(log).toContain('apt-cache policy\n');
    expect(log).toContain('grep -q ^Status: hold  /var/lib/dpkg/status\n');
    expect(log).toContain('apt-mark showhold');
    const fromScript = aptDriver.parseScan(out);
    const fromFixture = scanFixture('ubuntu2204-scan.out');
    expect(fromScript.patches).toEqual(fromFixture.patches);
    expect(fromScript.warnings).toEqual(fromFixture.warnings);
  });

  it('scanCommand — skips apt-cache entirely when nothing is kept back', async () => {
    const s = sectionsOf(fixture('debian12-scan.out'));
    install(s['apt-get-simulate']!, '', '', '');
    const out = await runScript({ PATH });
    expect(readFileSync(join(dir, 'log.txt'), 'utf8')).not.toContain('apt-cache');
    expect(aptDriver.parseScan(out).patches).toHaveLength(124);
  });

  it('scanCommand — loads apt only once (the simulation) when nothing is kept back or held', async () => {
    const s = sectionsOf(fixture('debian12-scan.out'));
    install(s['apt-get-simulate']!, '', '', '');
    const out = await runScript({ PATH });
    const tools = readFileSync(join(dir, 'log.txt'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split(' ')[0]);
    expect(tools).toEqual(['apt-get', 'grep']);
    const fixtureScan = scanFixture('debian12-scan.out');
    expect(aptDriver.parseScan(out).patches).toEqual(fixtureScan.patches);
    expect(aptDriver.parseScan(out).warnings).toEqual(fixtureScan.warnings);
  });

  it('scanCommand — asks apt-mark for holds when dpkg records one, and marks the held package', async () => {
    const s = sectionsOf(fixture('debian12-held-scan.out'));
    install(
      s['apt-get-simulate']!,
      s['apt-cache-policy']!,
      s['apt-cache-policy-sources']!,
      s['apt-mark-showhold']!,
    );
    const out = await runScript({ PATH });
    expect(readFileSync(join(dir, 'log.txt'), 'utf8')).toContain('apt-mark showhold');
    const fromScript = aptDriver.parseScan(out);
    const fixtureScan = scanFixture('debian12-held-scan.out');
    expect(fromScript.patches).toEqual(fixtureScan.patches);
    expect(fromScript.warnings).toEqual(fixtureScan.warnings);
    expect(fromScript.patches.filter((p) => p.held).length).toBeGreaterThan(0);
  });

  it('scanCommand — passes only well-formed package names to apt-cache, as argv, never through a shell', async () => {
    const marker = join(dir, 'pwned');
    // Built by concatenation so the text stays a literal shell parameter expansion.
    const ifs = '$' + '{IFS}';
    const hostile = [
      'The following packages have been kept back:',
      `   $(touch${ifs}${marker}) (1 => 2)`,
      `   \`touch ${marker}\` (1 => 2)`,
      `   a;touch${ifs}${marker} (1 => 2)`,
      "   it's (1 => 2)",
      '   -o (1 => 2)',
      '   good-name:i386 (1 => 2)',
      '0 upgraded, 0 newly installed, 0 to remove and 6 not upgraded.',
      '',
    ].join('\n');
    install(hostile, '', '', '');
    const out = await runScript({ PATH });
    expect(out.exitCode).toBe(0);
    expect(existsSync(marker)).toBe(false);
    const args = readFileSync(join(dir, 'log.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('arg:') && l !== 'arg:policy');
    expect(args).toEqual(['arg:good-name:i386']);
  });
});

describe('aptDriver on this host', () => {
  itIfAvailable(
    'parseScan — parses a real scan of this host and agrees with apt list --upgradable',
    unavailableWithout({ commands: ['apt-get'] }),
    async () => {
      const out = await runScript({});
      expect(out.exitCode, out.stderr).toBe(0);
      const result = aptDriver.parseScan(out);
      const list = spawnSync('apt', ['list', '--upgradable'], {
        env: { ...process.env, ...scriptOf().env },
        encoding: 'utf8',
      });
      expect(list.status).toBe(0);
      // apt list drops the `:arch` qualifier apt-get prints for foreign-architecture packages.
      const seen = result.patches.map((p) => `${p.name.replace(/:.*$/, '')} ${p.candidateVersion}`);
      const expected = parseAptList(list.stdout).map((e) => `${e.name} ${e.candidateVersion}`);
      expect(sorted(seen)).toEqual(sorted(expected));
      for (const p of result.patches) expect(PendingPatchSchema.parse(p)).toEqual(p);
      expect(sorted(result.patches.map((p) => p.name))).toEqual(result.patches.map((p) => p.name));
    },
  );
});

describe('parseAptSimulation — counts of the summary line', () => {
  const summaryWith = (counts: string[]) =>
    `Reading package lists...\nBuilding dependency tree...\nReading state information...\nCalculating upgrade...\n${counts[0]} upgraded, ${counts[1]} newly installed, ${counts[2]} reinstalled, ${counts[3]} to remove and ${counts[4]} not upgraded.\n`;

  it('parseAptSimulation — a count beyond 2^53 in any place is a ParseError naming it, never a rounded number', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4 }),
        fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + 1n, max: 10n ** 40n }),
        (place, huge) => {
          const counts = ['0', '0', '0', '0', '0'];
          counts[place] = huge.toString();
          expect(() => parseAptSimulation(summaryWith(counts))).toThrow(ParseError);
          expect(() => parseAptSimulation(summaryWith(counts))).toThrow(/impossible count/);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('parseAptSimulation — the largest safe count still parses (found by the fuzz test: 99999999999999999 not upgraded)', () => {
    const sim = parseAptSimulation(summaryWith(['0', '0', '0', '0', String(Number.MAX_SAFE_INTEGER)]));
    expect(sim.summary?.notUpgraded).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => parseAptSimulation(summaryWith(['0', '0', '0', '0', '99999999999999999']))).toThrow(
      ParseError,
    );
  });
});
