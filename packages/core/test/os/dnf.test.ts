import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describeIfAvailable, itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PendingPatch } from '../../src/domain/index.js';
import { PendingPatchSchema } from '../../src/domain/index.js';
import { CommandFailedError, ParseError } from '../../src/errors.js';
import {
  classify,
  dnfDriver,
  dnfRefreshCommand,
  parseCheckUpdate,
  parseNeedsRestarting,
  parseNevra,
  parseUpdateinfoInfo,
  parseUpdateinfoList,
  yumDriver,
  yumRefreshCommand,
} from '../../src/os/dnf.js';
import type { CommandOutput, PackageManagerDriver, ParsedScan } from '../../src/os/driver.js';
import {
  compareEvr,
  formatEvr,
  type InstalledRpm,
  inferKernelReboot,
  parseEvr,
  rpmvercmp,
} from '../../src/os/rpm-reboot.js';
import type { ScriptCommand } from '../../src/ports/adapter.js';
import { Lab } from '../fixtures/dnf/lab.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/dnf/${name}`, import.meta.url), 'utf8');
/** A capture as the transport hands it over: the script's stdout, stderr and exit status. */
const captured = (name: string, extra: Partial<CommandOutput> = {}): CommandOutput => ({
  exitCode: Number(fixture(`${name}.exit`).trim()),
  stdout: fixture(`${name}.out`),
  stderr: fixture(`${name}.err`),
  ...extra,
});
const crafted = (name: string): CommandOutput => ({
  exitCode: 0,
  stdout: fixture(`${name}.out`),
  stderr: fixture(`${name}.err`),
});

function scriptOf(driver: PackageManagerDriver): ScriptCommand {
  const cmd = driver.scanCommand();
  if (!('script' in cmd)) throw new Error('scan command is not a script');
  return cmd;
}

/** A pending patch as the RPM drivers report it: never held, kept back or new. */
const patch = (
  p: Pick<
    PendingPatch,
    'name' | 'arch' | 'installedVersion' | 'candidateVersion' | 'category' | 'severity'
  > & {
    repo: string;
    advisories?: string[];
  },
): PendingPatch => ({
  name: p.name,
  arch: p.arch,
  installedVersion: p.installedVersion,
  candidateVersion: p.candidateVersion,
  origins: [{ origin: p.repo, archive: '' }],
  category: p.category,
  severity: p.severity,
  advisories: p.advisories ?? [],
  held: false,
  keptBack: false,
  isNew: false,
});

/** The lab notes' four packages: one per advisory type and one without an advisory. */
const LAB_EXPECTED: PendingPatch[] = [
  patch({
    name: 'labdemo',
    arch: 'noarch',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'security',
    severity: 'critical',
    advisories: ['LAB-2026:0001'],
    repo: 'lab',
  }),
  patch({
    name: 'labextra',
    arch: 'noarch',
    installedVersion: '0.9-1',
    candidateVersion: '1.0-1',
    category: 'enhancement',
    severity: 'low',
    advisories: ['LAB-2026:0003'],
    repo: 'lab',
  }),
  patch({
    name: 'labplain',
    arch: 'noarch',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'unknown',
    severity: 'unspecified',
    repo: 'lab',
  }),
  patch({
    name: 'labtool',
    arch: 'noarch',
    installedVersion: '2.0-1',
    candidateVersion: '2.1-1',
    category: 'bugfix',
    severity: 'moderate',
    advisories: ['LAB-2026:0002'],
    repo: 'lab',
  }),
];

/** Two arches of one package, epochs, several advisories on one package, no severity, no updateinfo. */
const EDGE_EXPECTED: PendingPatch[] = [
  patch({
    name: 'labarch',
    arch: 'i686',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'security',
    severity: 'important',
    advisories: ['LAB-2026:0016'],
    repo: 'lab',
  }),
  patch({
    name: 'labarch',
    arch: 'x86_64',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'security',
    severity: 'important',
    advisories: ['LAB-2026:0016'],
    repo: 'lab',
  }),
  patch({
    name: 'labepoch',
    arch: 'noarch',
    installedVersion: '2.0-1',
    candidateVersion: '1:1.0-1',
    category: 'security',
    severity: 'low',
    advisories: ['LAB-2026:0014'],
    repo: 'lab',
  }),
  patch({
    name: 'labepoch3',
    arch: 'noarch',
    installedVersion: '3:1.0-1',
    candidateVersion: '3:1.1-1',
    category: 'bugfix',
    severity: 'important',
    advisories: ['LAB-2026:0015'],
    repo: 'lab',
  }),
  patch({
    name: 'labmulti',
    arch: 'noarch',
    installedVersion: '1.0-1',
    candidateVersion: '1.2-1',
    category: 'security',
    severity: 'important',
    advisories: ['LAB-2026:0011', 'LAB-2026:0012', 'LAB-2026:0013'],
    repo: 'lab',
  }),
  patch({
    name: 'labnosev',
    arch: 'noarch',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'security',
    severity: 'unspecified',
    advisories: ['LAB-2026:0017'],
    repo: 'lab',
  }),
  patch({
    name: 'labthird',
    arch: 'noarch',
    installedVersion: '1.0-1',
    candidateVersion: '1.1-1',
    category: 'unknown',
    severity: 'unspecified',
    repo: 'third',
  }),
];

const NOINFO_EXPECTED: PendingPatch[] = LAB_EXPECTED.map((p) => ({
  ...p,
  category: 'unknown',
  severity: 'unspecified',
  advisories: [],
}));

const KERNEL_EXPECTED: PendingPatch[] = ['kernel', 'kernel-core'].map((name) =>
  patch({
    name,
    arch: 'x86_64',
    installedVersion: '5.14.0-1.el9',
    candidateVersion: '5.14.0-2.el9',
    category: 'security',
    severity: 'important',
    advisories: ['LAB-2026:0021'],
    repo: 'lab',
  }),
);

function expectValid(result: ParsedScan): void {
  for (const p of result.patches) expect(PendingPatchSchema.parse(p)).toEqual(p);
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('dnfDriver / yumDriver scanCommand', () => {
  it('scanCommand — is a constant sh script run without sudo in the C locale', () => {
    for (const driver of [dnfDriver, yumDriver]) {
      const cmd = scriptOf(driver);
      expect(cmd.interpreter).toEqual(['sh', '-s']);
      expect(cmd.sudo).toBe(false);
      expect(cmd.env).toEqual({ LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' });
      expect(scriptOf(driver).script).toBe(cmd.script);
      expect(cmd.script).not.toContain('${');
      expect(cmd.script).not.toMatch(/\beval\b/);
    }
    expect(scriptOf(dnfDriver).script).not.toBe(scriptOf(yumDriver).script);
  });

  it('scanCommand — is valid POSIX sh', () => {
    for (const driver of [dnfDriver, yumDriver]) {
      const r = spawnSync('sh', ['-n'], { input: scriptOf(driver).script, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it('scanCommand — every dnf or yum run reads the cache only (-C) and only lists', () => {
    for (const [driver, tool] of [
      [dnfDriver, 'dnf'],
      [yumDriver, 'yum'],
    ] as const) {
      const runs = scriptOf(driver)
        .script.split('\n')
        .filter((l) => !l.trimStart().startsWith('#'))
        .flatMap((l) => [...l.matchAll(/\$\((\w+) ([^)]*)\)/g)].map((m) => [m[1]!, m[2]!] as const))
        .filter(([bin]) => bin === 'dnf' || bin === 'yum');
      expect(runs.map(([, args]) => args.replace(/ .*$/, ''))).toEqual([
        '-C',
        '-C',
        '-C',
        ...(tool === 'dnf' ? ['-C'] : []),
      ]);
      expect(runs.every(([bin]) => bin === tool)).toBe(true);
      expect(
        runs.map(([, args]) =>
          args
            .split(' ')
            .filter((a) => !a.startsWith('-'))
            .join(' '),
        ),
      ).toEqual([
        'check-update',
        'updateinfo list updates',
        'updateinfo info updates',
        ...(tool === 'dnf' ? ['needs-restarting'] : []),
      ]);
      expect(scriptOf(driver).script).not.toMatch(/\b(makecache|upgrade|install|remove|erase|distro-sync)\b/);
    }
    expect(scriptOf(yumDriver).script).toContain('if command -v needs-restarting >/dev/null 2>&1; then');
  });

  it('refresh commands — are argv makecache runs as root', () => {
    expect(dnfRefreshCommand()).toEqual({
      argv: ['dnf', '-q', 'makecache'],
      sudo: true,
      env: { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' },
    });
    expect(yumRefreshCommand()).toEqual({
      argv: ['yum', '-q', 'makecache', 'fast'],
      sudo: true,
      env: { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' },
    });
  });
});

describe('dnfDriver / yumDriver supports', () => {
  it('supports — goes by the package manager of the OS facts', () => {
    const os = (packageManager?: 'apt' | 'dnf' | 'yum' | 'zypper') => ({
      family: 'rhel' as const,
      id: 'rocky',
      versionId: '9',
      prettyName: '',
      ...(packageManager ? { packageManager } : {}),
    });
    expect(dnfDriver.manager).toBe('dnf');
    expect(yumDriver.manager).toBe('yum');
    expect(dnfDriver.supports(os('dnf'))).toBe(true);
    expect(dnfDriver.supports(os('yum'))).toBe(false);
    expect(yumDriver.supports(os('yum'))).toBe(true);
    expect(yumDriver.supports(os('dnf'))).toBe(false);
    for (const d of [dnfDriver, yumDriver]) {
      expect(d.supports(os('apt'))).toBe(false);
      expect(d.supports(os('zypper'))).toBe(false);
      expect(d.supports(os())).toBe(false);
    }
  });
});

describe('RPM versions', () => {
  it('rpmvercmp — orders versions as rpm does (cases checked against rpm.labelCompare)', () => {
    const cases: [string, string, -1 | 0 | 1][] = [
      ['1.0', '1.0', 0],
      ['1.0', '1.1', -1],
      ['1.10', '1.9', 1],
      ['1.0a', '1.0', 1],
      ['1.0~rc1', '1.0', -1],
      ['1.0^', '1.0', 1],
      ['1.0^1', '1.0.1', -1],
      ['2.0.1a', '2.0.1', 1],
      ['5.5p1', '5.5p10', -1],
      ['10xyz', '10.1xyz', -1],
      ['xyz10', 'xyz10.1', -1],
      ['1.0010', '1.9', 1],
      ['1.05', '1.5', 0],
      ['1.0', '1', 1],
      ['1_0', '1.0', 0],
      ['1.0~', '1.0~~', 1],
      ['a', '1', -1],
      ['1.el9_4', '1.el9', 1],
      ['427.13.1.el9_4', '427.18.1.el9_4', -1],
    ];
    for (const [a, b, r] of cases) {
      expect(rpmvercmp(a, b), `${a} vs ${b}`).toBe(r);
      expect(rpmvercmp(b, a), `${b} vs ${a}`).toBe(r === 0 ? 0 : -r);
    }
  });

  it('compareEvr / formatEvr / parseEvr — epoch first, printed only when not 0', () => {
    const e = (t: string) => parseEvr(t)!;
    expect(compareEvr(e('1:1.0-1'), e('2.0-1'))).toBe(1);
    expect(compareEvr(e('0:2.0-1'), e('2.0-1'))).toBe(0);
    expect(compareEvr(e('2.0-1.el9'), e('2.0-1.el9_4'))).toBe(-1);
    expect(formatEvr(e('0:2.0-1'))).toBe('2.0-1');
    expect(formatEvr(e('3:1.1-1'))).toBe('3:1.1-1');
    expect(parseEvr('1.0')).toBeNull();
    expect(parseEvr('1:2:3-4')).toBeNull();
  });

  it('parseNevra — splits name-[epoch:]version-release.arch', () => {
    expect(parseNevra('labepoch-1:1.0-1.noarch')).toEqual({
      name: 'labepoch',
      arch: 'noarch',
      evr: { epoch: 1, version: '1.0', release: '1' },
    });
    expect(parseNevra('kernel-core-5.14.0-427.13.1.el9_4.x86_64')).toEqual({
      name: 'kernel-core',
      arch: 'x86_64',
      evr: { epoch: 0, version: '5.14.0', release: '427.13.1.el9_4' },
    });
    expect(parseNevra('python3-libs-3.9.18-1.el9.x86_64')?.name).toBe('python3-libs');
    expect(parseNevra('notanevra')).toBeNull();
  });
});

describe('dnfDriver.parseScan on real dnf 4.14 captures', () => {
  it('parseScan — lab: security/Critical, bugfix/Moderate, enhancement/Low, and unknown without an advisory', () => {
    const result = dnfDriver.parseScan(captured('lab'));
    expect(result).toEqual({
      patches: LAB_EXPECTED,
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
    expectValid(result);
    // dnf's list hides the severity of non-security advisories; info has it.
    expect(fixture('lab.out')).toContain('LAB-2026:0002 bugfix        labtool-2.1-1.noarch');
    expect(fixture('lab.out')).toMatch(/Update ID: LAB-2026:0002\n[\s\S]*?Severity: Moderate/);
  });

  it('parseScan — edge: two arches, epochs, several advisories on one package, no severity, a repo without updateinfo', () => {
    const result = dnfDriver.parseScan(captured('edge'));
    expect(result.patches).toEqual(EDGE_EXPECTED);
    expect(result.warnings).toEqual([]);
    expectValid(result);
    expect(fixture('edge.out')).toContain('LAB-2026:0014 Low/Sec.       labepoch-1:1.0-1.noarch');
    expect(fixture('edge.out')).toContain('LAB-2026:0017 Unknown/Sec.   labnosev-1.1-1.noarch');
  });

  it('parseScan — noinfo: a host whose repository has no updateinfo reports unknown / unspecified', () => {
    const result = dnfDriver.parseScan(captured('noinfo'));
    expect(result.patches).toEqual(NOINFO_EXPECTED);
    expect(result.warnings).toEqual([]);
  });

  it('parseScan — none: check-update exit 0 is no updates, not a failure', () => {
    expect(fixture('none.out')).toContain('@@fleetward:check-update-exit 0');
    expect(dnfDriver.parseScan(captured('none'))).toEqual({
      patches: [],
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
  });

  it('parseScan — check-update exit 100 means updates were listed', () => {
    expect(fixture('lab.out')).toContain('@@fleetward:check-update-exit 100');
    expect(dnfDriver.parseScan(captured('lab')).patches).toHaveLength(4);
  });

  it('parseScan — kernel without the needs-restarting plugin: a kernel installed after boot means reboot', () => {
    expect(fixture('kernel.err')).toContain('No such command: needs-restarting');
    const result = dnfDriver.parseScan(captured('kernel'));
    expect(result.patches).toEqual(KERNEL_EXPECTED);
    expect(result.rebootRequired).toBe(true);
    expect(result.rebootPackages).toEqual(['kernel', 'kernel-core']);
    expect(result.warnings).toEqual([]);
  });

  it('parseScan — needs-restarting -r answers when present: exit 1 reboot (with its package list), exit 0 none', () => {
    const kernel = dnfDriver.parseScan(captured('kernel-needs-restarting'));
    expect(kernel.rebootRequired).toBe(true);
    expect(kernel.rebootPackages).toEqual(['kernel']);
    const none = dnfDriver.parseScan(captured('none-needs-restarting'));
    expect(fixture('none-needs-restarting.out')).toContain('Reboot should not be necessary.');
    expect(none.rebootRequired).toBe(false);
  });

  it('parseScan — no metadata cache: CommandFailedError that says to refresh', () => {
    const error = thrown(() => dnfDriver.parseScan(captured('no-cache')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).message).toContain("Cache-only enabled but no cache for 'lab'");
    expect((error as CommandFailedError).message).toContain('dnf makecache');
    expect((error as CommandFailedError).retryable).toBe(false);
  });

  it('parseScan — a repository skipped under skip_if_unavailable is a warning, not a silent "no updates"', () => {
    const result = dnfDriver.parseScan(captured('skipped-repo'));
    expect(result.patches).toEqual([]);
    expect(result.warnings).toEqual([
      "dnf: Error: Cache-only enabled but no cache for 'lab'",
      'dnf: Ignoring repositories: lab',
    ]);
  });

  it('parseScan — no enabled repositories: CommandFailedError', () => {
    expect(() => dnfDriver.parseScan(captured('norepos'))).toThrow(/no enabled repositories/);
    expect(() => dnfDriver.parseScan(captured('norepos'))).toThrow(CommandFailedError);
  });

  it("parseScan — the yum script run by dnf's yum CLI (EL8+) gives the same result", () => {
    expect(fixture('yum-via-dnf-lab.out')).toContain('@@fleetward:rpm-scan 1 yum');
    expect(yumDriver.parseScan(captured('yum-via-dnf-lab')).patches).toEqual(LAB_EXPECTED);
  });

  it('parseScan — refuses truncated output', () => {
    expect(() => dnfDriver.parseScan(captured('lab', { truncated: true }))).toThrow(ParseError);
    expect(() => dnfDriver.parseScan(captured('lab', { truncated: true }))).toThrow(/truncated/);
  });
});

describe('yumDriver.parseScan on crafted EL7 and Amazon Linux 2 output', () => {
  it('parseScan — EL7: wrapped rows, epochs in NEVRAs, Obsoleting Packages, yum-utils needs-restarting', () => {
    const result = yumDriver.parseScan(crafted('crafted-yum-el7'));
    const el7 = (
      name: string,
      installedVersion: string,
      candidateVersion: string,
      category: PendingPatch['category'],
      severity: PendingPatch['severity'],
      advisories: string[],
    ) =>
      patch({
        name,
        arch: 'x86_64',
        installedVersion,
        candidateVersion,
        category,
        severity,
        advisories,
        repo: 'updates',
      });
    expect(result.patches).toEqual([
      el7('NetworkManager-libnm', '1:1.18.8-1.el7', '1:1.18.8-2.el7_9', 'bugfix', 'moderate', [
        'RHBA-2021:1234',
      ]),
      el7('glibc', '2.17-105.el7', '2.17-106.el7_2.4', 'security', 'critical', ['RHSA-2016:0176']),
      el7('glibc-common', '2.17-105.el7', '2.17-106.el7_2.4', 'security', 'critical', ['RHSA-2016:0176']),
      el7('grub2', '1:2.02-0.16.el7', '1:2.02-0.29.el7', 'security', 'low', ['RHSA-2015:2401']),
      // Installonly: the newest installed kernel is the one that updates; bugfix + security → security.
      el7('kernel', '3.10.0-1160.114.2.el7', '3.10.0-1160.119.1.el7', 'security', 'important', [
        'RHBA-2024:4300',
        'RHSA-2024:4211',
      ]),
      el7('python-perf', '3.10.0-1160.108.1.el7', '3.10.0-1160.119.1.el7', 'security', 'important', [
        'RHSA-2024:4211',
      ]),
    ]);
    expect(result.rebootRequired).toBe(true);
    expect(result.rebootPackages).toEqual(['kernel']);
    expect(result.warnings).toEqual([]);
    expectValid(result);
  });

  it('parseScan — Amazon Linux 2: lower-case severities, medium is moderate; kernel fallback warns on a stale boot entry', () => {
    const result = yumDriver.parseScan(crafted('crafted-yum-amzn2'));
    expect(result.patches.map((p) => [p.name, p.candidateVersion, p.category, p.severity])).toEqual([
      ['curl', '8.3.0-1.amzn2.0.6', 'security', 'moderate'],
      ['libcurl', '8.3.0-1.amzn2.0.6', 'security', 'moderate'],
      ['openssl-libs', '1:1.0.2k-24.amzn2.0.12', 'security', 'important'],
    ]);
    expect(result.rebootRequired).toBe(false);
    expect(result.warnings).toEqual([
      'the running kernel 4.14.336-257.562.amzn2.x86_64 is not the newest installed kernel ' +
        '4.14.343-259.562.amzn2.x86_64, which was installed before this boot: check the boot loader default',
    ]);
  });
});

describe('dnfDriver.parseScan on crafted dnf output', () => {
  it('parseScan — reads past plugin chatter, warns on stale metadata and on stderr notices', () => {
    const result = dnfDriver.parseScan(crafted('crafted-dnf-stale-subscription'));
    expect(result.patches).toEqual([
      patch({
        name: 'openssl-libs',
        arch: 'x86_64',
        installedVersion: '1:3.0.7-25.el9',
        candidateVersion: '1:3.0.7-27.el9',
        category: 'security',
        severity: 'moderate',
        advisories: ['RHSA-2024:2447'],
        repo: 'rhel-9-for-x86_64-baseos-rpms',
      }),
      patch({
        name: 'python3-requests',
        arch: 'noarch',
        installedVersion: '2.25.1-7.el9',
        candidateVersion: '2.25.1-8.el9',
        category: 'unknown',
        severity: 'unspecified',
        repo: 'rhel-9-for-x86_64-appstream-rpms',
      }),
    ]);
    expect(result.warnings).toEqual([
      'dnf: This system is not registered with an entitlement server. You can use subscription-manager to register.',
      'dnf metadata was last refreshed 12 days ago: updates published since are not listed',
    ]);
  });

  it('parseScan — garbage is a ParseError, never an empty list', () => {
    expect(() => dnfDriver.parseScan(crafted('crafted-garbage'))).toThrow(ParseError);
    expect(() => dnfDriver.parseScan(crafted('crafted-garbage-rows'))).toThrow(
      /Unrecognized check-update row/,
    );
    expect(() => dnfDriver.parseScan(crafted('crafted-cut'))).toThrow(/expected @@fleetward markers/);
  });

  it('parseScan — a script that did not start is a CommandFailedError', () => {
    const error = thrown(() =>
      dnfDriver.parseScan({ exitCode: 127, stdout: '', stderr: 'sh: 1: sh: not found' }),
    );
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as Error).message).toContain('did not start (exit 127)');
  });

  it('parseScan — check-update exit 100 without rows, or exit 0 with rows, is a ParseError', () => {
    const lab = captured('lab');
    expect(() =>
      dnfDriver.parseScan({
        ...lab,
        stdout: lab.stdout.replace('check-update-exit 100', 'check-update-exit 0'),
      }),
    ).toThrow(/exited 0 but listed 4 updates/);
    const none = captured('none');
    expect(() =>
      dnfDriver.parseScan({
        ...none,
        stdout: none.stdout.replace('check-update-exit 0', 'check-update-exit 100'),
      }),
    ).toThrow(/exited 100 but listed 0 updates/);
  });

  it('parseScan — a failed updateinfo leaves the updates, unclassified, with a warning', () => {
    const lab = captured('lab');
    const result = dnfDriver.parseScan({
      ...lab,
      stdout: lab.stdout.replace('updateinfo-list-exit 0', 'updateinfo-list-exit 1'),
      stderr: lab.stderr.replace(
        '@@fleetward:updateinfo-list\n',
        '@@fleetward:updateinfo-list\nNo such command: updateinfo.\n',
      ),
    });
    expect(result.patches).toEqual(NOINFO_EXPECTED);
    expect(result.warnings).toEqual([
      'dnf updateinfo list failed (exit 1: No such command: updateinfo.); updates are reported without advisories',
    ]);
  });

  it('parseScan — rpm -qa failing is a CommandFailedError', () => {
    const lab = captured('lab');
    expect(() =>
      dnfDriver.parseScan({ ...lab, stdout: lab.stdout.replace('installed-exit 0', 'installed-exit 1') }),
    ).toThrow(CommandFailedError);
  });
});

describe('dnf output parsers', () => {
  it('parseCheckUpdate — joins rows yum wraps and stops at Obsoleting Packages', () => {
    const list = parseCheckUpdate(
      [
        '',
        'NetworkManager-libnm.x86_64',
        '                         1:1.18.8-2.el7_9      updates',
        'a-very-long-package-name-that-overflows-its-column.noarch 1.0-1 extras',
        'Obsoleting Packages',
        'grub2-tools.x86_64       1:2.02-0.29.el7       updates',
      ].join('\n'),
    );
    expect(list.updates).toEqual([
      {
        name: 'NetworkManager-libnm',
        arch: 'x86_64',
        evr: { epoch: 1, version: '1.18.8', release: '2.el7_9' },
        repo: 'updates',
      },
      {
        name: 'a-very-long-package-name-that-overflows-its-column',
        arch: 'noarch',
        evr: { epoch: 0, version: '1.0', release: '1' },
        repo: 'extras',
      },
    ]);
    expect(list.metadataAgeSeconds).toBeNull();
    expect(
      parseCheckUpdate('Last metadata expiration check: 1 day, 0:00:10 ago on Mon.').metadataAgeSeconds,
    ).toBe(86_410);
    expect(() => parseCheckUpdate('\nfoo.noarch 1.0 repo')).toThrow(ParseError);
  });

  it('parseUpdateinfoList — reads security labels, type names, and refuses other rows', () => {
    expect(
      parseUpdateinfoList(
        'A-1 Unknown/Sec. a-1-1.noarch\nA-2 newpackage b-1-1.noarch\nA-3 enhancement c-2:1-1.x86_64',
      ).map((a) => [a.id, a.type, a.severity, a.name, formatEvr(a.evr)]),
    ).toEqual([
      ['A-1', 'security', 'Unknown', 'a', '1-1'],
      ['A-2', 'newpackage', null, 'b', '1-1'],
      ['A-3', 'enhancement', null, 'c', '2:1-1'],
    ]);
    expect(() => parseUpdateinfoList('A-1 Sec a-1-1.noarch')).toThrow(ParseError);
    expect(() => parseUpdateinfoList('garbage')).toThrow(ParseError);
  });

  it('parseUpdateinfoInfo — a description line saying "Severity:" is not the severity', () => {
    const info = parseUpdateinfoInfo(fixture('crafted-yum-el7.out'));
    expect(info.get('RHSA-2016:0176')).toEqual({
      id: 'RHSA-2016:0176',
      type: 'security',
      severity: 'Critical',
    });
    expect(info.get('RHBA-2024:4300')).toEqual({ id: 'RHBA-2024:4300', type: 'bugfix', severity: '' });
  });

  it('parseNeedsRestarting — answers only when text and exit code agree', () => {
    expect(parseNeedsRestarting(1, ['Reboot is required to fully utilize these updates.'])).toEqual({
      rebootRequired: true,
      rebootPackages: [],
    });
    expect(parseNeedsRestarting(0, ['Reboot is probably not necessary.'])).toEqual({
      rebootRequired: false,
      rebootPackages: [],
    });
    expect(parseNeedsRestarting(1, [])).toBeNull();
    expect(parseNeedsRestarting(0, ['Reboot is required'])).toBeNull();
    expect(parseNeedsRestarting(127, [])).toBeNull();
  });

  it('classify — highest category first, then the worst severity within it', () => {
    expect(classify([])).toEqual({ category: 'unknown', severity: 'unspecified' });
    expect(
      classify([
        { category: 'bugfix', severity: 'critical' },
        { category: 'security', severity: 'low' },
        { category: 'security', severity: 'important' },
      ]),
    ).toEqual({ category: 'security', severity: 'important' });
    expect(classify([{ category: 'other', severity: 'unspecified' }])).toEqual({
      category: 'other',
      severity: 'unspecified',
    });
  });

  it('inferKernelReboot — no kernels, unknown boot time, running an older kernel', () => {
    const k = (release: string, installTime: number): InstalledRpm => ({
      name: 'kernel-core',
      epoch: 0,
      version: '5.14.0',
      release,
      arch: 'x86_64',
      installTime,
    });
    expect(inferKernelReboot([], 100, null, { compareRunning: true }).rebootRequired).toBe(false);
    expect(inferKernelReboot([k('1.el9', 200)], null, null, { compareRunning: true }).warnings[0]).toMatch(
      /boot time is unknown/,
    );
    expect(inferKernelReboot([k('1.el9', 50), k('2.el9', 150)], 100, null, { compareRunning: true })).toEqual(
      {
        rebootRequired: true,
        rebootPackages: ['kernel-core'],
        warnings: [],
      },
    );
    // Running the newest: nothing to say. Running a kernel no package owns (a container): nothing either.
    expect(
      inferKernelReboot([k('1.el9', 50), k('2.el9', 60)], 100, '5.14.0-2.el9.x86_64', {
        compareRunning: true,
      }),
    ).toEqual({ rebootRequired: false, rebootPackages: [], warnings: [] });
    expect(
      inferKernelReboot([k('1.el9', 50)], 100, '6.1.0-18-amd64', { compareRunning: true }).warnings,
    ).toEqual([]);
  });
});

describeIfAvailable(
  'dnf and yum scan scripts against the real dnf (lab repositories)',
  unavailableWithout({ commands: ['rpmbuild', 'createrepo_c', 'modifyrepo_c', 'dnf'] }),
  () => {
    let lab: Lab;
    beforeAll(() => {
      lab = new Lab();
      for (const s of ['lab', 'edge', 'noinfo', 'none', 'kernel'] as const) {
        lab.build(s);
        // What the host's dnf-makecache timer does; the scan itself never refreshes.
        lab.tool(s, ['dnf', '-q', 'makecache']);
      }
      lab.build('broken');
      lab.build('norepos');
    }, 300_000);
    afterAll(() => lab?.dispose());

    const scan = async (
      driver: PackageManagerDriver,
      scenario: Parameters<Lab['scan']>[0],
      options?: Parameters<Lab['scan']>[2],
    ) => driver.parseScan(await lab.scan(scenario, driver.scanCommand(), options));

    it('scan — lab (dnf): exactly the four lab packages', async () => {
      const result = await scan(dnfDriver, 'lab');
      expect(result.patches).toEqual(LAB_EXPECTED);
      expect(result.warnings).toEqual([]);
    }, 120_000);

    it('scan — lab (yum script through dnf as yum): the same', async () => {
      expect((await scan(yumDriver, 'lab')).patches).toEqual(LAB_EXPECTED);
    }, 120_000);

    it('scan — edge: arches, epochs, several advisories, no severity, no updateinfo', async () => {
      expect((await scan(dnfDriver, 'edge')).patches).toEqual(EDGE_EXPECTED);
    }, 120_000);

    it('scan — noinfo: unknown / unspecified', async () => {
      expect((await scan(dnfDriver, 'noinfo')).patches).toEqual(NOINFO_EXPECTED);
    }, 120_000);

    it('scan — none: no updates (check-update exit 0)', async () => {
      expect(await scan(dnfDriver, 'none')).toEqual({
        patches: [],
        rebootRequired: false,
        rebootPackages: [],
        warnings: [],
      });
    }, 120_000);

    it('scan — kernel: the stand-in kernel installed after boot flags a reboot', async () => {
      const result = await scan(dnfDriver, 'kernel');
      expect(result.patches).toEqual(KERNEL_EXPECTED);
      expect(result.rebootRequired).toBe(true);
      expect(result.rebootPackages).toEqual(['kernel', 'kernel-core']);
    }, 120_000);

    it('scan — broken repository: failure without skip_if_unavailable, a warning with it', async () => {
      await expect(scan(dnfDriver, 'broken')).rejects.toThrow(/Cache-only enabled but no cache/);
      const skipped = await scan(dnfDriver, 'broken', { env: { FW_LAB_SKIP_UNAVAILABLE: 'True' } });
      expect(skipped.patches).toEqual([]);
      expect(skipped.warnings).toContain('dnf: Ignoring repositories: lab');
    }, 120_000);

    it('scan — no repositories: CommandFailedError', async () => {
      await expect(scan(dnfDriver, 'norepos')).rejects.toThrow(CommandFailedError);
    }, 120_000);

    itIfAvailable(
      'scan — as a normal user (no sudo): -C reads the system cache',
      unavailableWithout({ commands: ['setpriv'], root: true }),
      async () => {
        const before = new Set(readdirSync('/var/tmp'));
        try {
          expect((await scan(dnfDriver, 'lab', { asNobody: true })).patches).toEqual(LAB_EXPECTED);
        } finally {
          // dnf keeps a normal user's lock directory in the machine's /var/tmp even under --installroot.
          for (const entry of readdirSync('/var/tmp')) {
            if (!before.has(entry) && entry.startsWith('dnf-nobody-')) {
              rmSync(join('/var/tmp', entry), { recursive: true, force: true });
            }
          }
        }
      },
      120_000,
    );
  },
);
