import { readFileSync } from 'node:fs';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PinnedPackage } from '../../src/domain/index.js';
import { CommandFailedError, ParseError, ValidationError } from '../../src/errors.js';
import { dnfDriver, parseRpmTransaction, yumDriver } from '../../src/os/dnf.js';
import type { CommandOutput, PackageManagerDriver, ResolvedTransaction } from '../../src/os/driver.js';
import { zypperDriver } from '../../src/os/zypper.js';
import { InstallLab } from '../fixtures/rpm-install/lab.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/rpm-install/${name}`, import.meta.url), 'utf8');
/** A capture as the transport hands it over; `null` in NAME.exit is a command killed by a signal. */
const captured = (name: string, extra: Partial<CommandOutput> = {}): CommandOutput => {
  const exit = fixture(`${name}.exit`).trim();
  return {
    exitCode: exit === 'null' ? null : Number(exit),
    stdout: fixture(`${name}.out`),
    stderr: fixture(`${name}.err`),
    ...extra,
  };
};

const pin = (name: string, version: string, arch = 'noarch'): PinnedPackage => ({ name, version, arch });
const isNew = (name: string, version: string, arch = 'noarch') => ({ name, version, arch, isNew: true });
const upgrade = (name: string, version: string, arch = 'noarch') => ({ name, version, arch, isNew: false });
const LONG = 'labwith-a-name-longer-than-the-name-column-of-the-dnf-table';
const RPM_ENV = { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' };

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw');
}

const byName = (tx: ResolvedTransaction) => ({
  ...tx,
  install: [...tx.install].sort((a, b) => (a.name < b.name ? -1 : 1)),
});

const DNF_OPTIONS = [
  '--setopt=installonly_limit=0',
  '--setopt=clean_requirements_on_remove=False',
  '--setopt=exit_on_lock=True',
  '--setopt=install_weak_deps=False',
  '--setopt=strict=True',
];

describe('dnf, yum and zypper install commands', () => {
  it('simulateInstallCommand — dnf: install-nevra of exact NEVRAs, epoch written, from the cache, as root', () => {
    const cmd = dnfDriver.simulateInstallCommand!([
      pin('labdemo', '1.1-1'),
      pin('labepoch', '1:1.0-1'),
      pin('kernel', '5.14.0-4.el9', 'x86_64'),
    ]);
    expect(cmd).toEqual({
      argv: [
        'dnf',
        '-C',
        '--color=never',
        '--assumeno',
        ...DNF_OPTIONS,
        'install-nevra',
        'labdemo-0:1.1-1.noarch',
        'labepoch-1:1.0-1.noarch',
        'kernel-0:5.14.0-4.el9.x86_64',
      ],
      sudo: true,
      env: RPM_ENV,
    });
  });

  it('simulateInstallCommand — dnf: a pin without an arch falls back to install name-E:V-R', () => {
    const cmd = dnfDriver.simulateInstallCommand!([pin('labdemo', '1.1-1', ''), pin('labnew', '1.0-1')]);
    expect('argv' in cmd && cmd.argv.slice(-3)).toEqual([
      'install',
      'labdemo-0:1.1-1',
      'labnew-0:1.0-1.noarch',
    ]);
  });

  it('simulateInstallCommand — yum without an arch: name-V-R (yum 3 has no arch-less epoch form)', () => {
    const cmd = yumDriver.installCommand!([pin('glibc', '2.17-106.el7_2.4', ''), pin('bash', '4.2-1')]);
    expect('argv' in cmd && cmd.argv.slice(-3)).toEqual([
      'install',
      'glibc-2.17-106.el7_2.4',
      'bash-0:4.2-1.noarch',
    ]);
    const error = thrown(() => yumDriver.installCommand!([pin('grub2', '1:2.02-0.29.el7', '')]));
    expect((error as ValidationError).paths).toEqual(['0.arch']);
  });

  it('installCommand — dnf: -y, the simulation’s options, metadata kept, as root in the C locale', () => {
    expect(dnfDriver.installCommand!([pin('labmulti', '1.1-1')])).toEqual({
      argv: [
        'dnf',
        '-y',
        '--color=never',
        '--setopt=metadata_expire=-1',
        ...DNF_OPTIONS,
        'install-nevra',
        'labmulti-0:1.1-1.noarch',
      ],
      sudo: true,
      env: RPM_ENV,
    });
  });

  it('installCommand — yum: only options yum 3 knows (no install_weak_deps, no strict)', () => {
    const sim = yumDriver.simulateInstallCommand!([pin('glibc', '2.17-106.el7_2.4', 'x86_64')]);
    const inst = yumDriver.installCommand!([pin('glibc', '2.17-106.el7_2.4', 'x86_64')]);
    expect('argv' in sim && sim.argv).toEqual([
      'yum',
      '-C',
      '--color=never',
      '--assumeno',
      ...DNF_OPTIONS.slice(0, 3),
      'install-nevra',
      'glibc-0:2.17-106.el7_2.4.x86_64',
    ]);
    expect(inst).toMatchObject({ sudo: true, env: RPM_ENV });
    expect('argv' in inst && inst.argv.slice(0, 4)).toEqual([
      'yum',
      '-y',
      '--color=never',
      '--setopt=metadata_expire=-1',
    ]);
  });

  it('installCommand — zypper: name.arch=E:V-R by name only, no refresh, no recommends, no forced resolution', () => {
    const pins = [pin('labdemo', '1.1-1'), pin('labepoch', '1:1.0-1'), pin('labplain', '1.1-1', '')];
    const options = [
      '--non-interactive',
      '--no-refresh',
      '--xmlout',
      'install',
      '--no-recommends',
      '--no-force-resolution',
      '--name',
    ];
    const specs = ['labdemo.noarch=0:1.1-1', 'labepoch.noarch=1:1.0-1', 'labplain=0:1.1-1'];
    expect(zypperDriver.installCommand!(pins)).toEqual({
      argv: ['zypper', ...options, ...specs],
      sudo: true,
      env: RPM_ENV,
    });
    expect(zypperDriver.simulateInstallCommand!(pins)).toEqual({
      argv: ['zypper', ...options.slice(0, 4), '--dry-run', ...options.slice(4), ...specs],
      sudo: true,
      env: RPM_ENV,
    });
  });

  it('installedVersionsCommand — rpm -q with a tab format and -- before the names, no sudo', () => {
    for (const driver of [dnfDriver, yumDriver, zypperDriver]) {
      expect(driver.installedVersionsCommand!(['labdemo', 'kernel'])).toEqual({
        argv: [
          'rpm',
          '-q',
          '--qf',
          '%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n',
          '--',
          'labdemo',
          'kernel',
        ],
        env: RPM_ENV,
      });
    }
  });

  it('installCommand — hostile names, versions and arches are a ValidationError naming each, never argv', () => {
    const hostile = [
      pin('x; touch /tmp/pwned', '1.0-1'),
      pin('-oreposdir=/tmp', '1.0-1'),
      pin('$(reboot)', '1.0-1'),
      pin('ok', '$(reboot)-1'),
      pin('ok', '1.0'),
      pin('ok', '1.0-1-2'),
      pin('ok', '1.0-1', 'noarch --setopt=x'),
      pin('@core', '1.0-1'),
      pin('/usr/bin/sh', '1.0-1'),
      pin('glob*', '1.0-1'),
      pin('fine', '2:1.0-1.el9', 'x86_64'),
    ];
    const paths = [
      '0.name',
      '1.name',
      '2.name',
      '3.version',
      '4.version',
      '5.version',
      '6.arch',
      '7.name',
      '8.name',
      '9.name',
    ];
    for (const driver of [dnfDriver, yumDriver, zypperDriver]) {
      for (const method of ['installCommand', 'simulateInstallCommand'] as const) {
        const error = thrown(() => driver[method]!(hostile));
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).paths).toEqual(paths);
      }
      expect(thrown(() => driver.installCommand!([]))).toBeInstanceOf(ValidationError);
      const names = thrown(() => driver.installedVersionsCommand!(['ok', '-oreposdir=/tmp', 'x;y']));
      expect((names as ValidationError).paths).toEqual(['1', '2']);
      expect(thrown(() => driver.installedVersionsCommand!([]))).toBeInstanceOf(ValidationError);
    }
  });
});

describe('dnf and yum transaction parsing (captured and crafted output)', () => {
  it('parseSimulateInstall — dnf: new dependency, upgrades, epoch, obsoletes as removal, a wide table', () => {
    const tx = dnfDriver.parseSimulateInstall!(captured('dnf-simulate'));
    expect(byName(tx)).toEqual({
      install: [
        isNew('kernel', '5.14.0-4.el9', 'x86_64'),
        upgrade('labdemo', '1.1-1'),
        upgrade('labepoch', '1:1.0-1'),
        upgrade('labmulti', '1.1-1'),
        isNew('labnew', '1.0-1'),
        isNew('labrepl', '1.0-1'),
        isNew(LONG, '1.0-1.fc99.fleetward.lab'),
      ],
      remove: ['labold'],
      warnings: [],
    });
  });

  it('parseSimulateInstall — dnf: installonly_limit=0 keeps old kernels; dnf’s default would erase one', () => {
    expect(dnfDriver.parseSimulateInstall!(captured('dnf-simulate-kernel'))).toEqual({
      install: [isNew('kernel', '5.14.0-4.el9', 'x86_64')],
      remove: [],
      warnings: [],
    });
    expect(dnfDriver.parseSimulateInstall!(captured('dnf-simulate-installonly-default')).remove).toEqual([
      'kernel',
    ]);
  });

  it('parseSimulateInstall — dnf: pins already installed is "Nothing to do" (exit 0), an empty transaction', () => {
    expect(dnfDriver.parseSimulateInstall!(captured('dnf-simulate-nothing'))).toEqual({
      install: [],
      remove: [],
      warnings: [],
    });
  });

  it('parseSimulateInstall — yum via dnf: the same table', () => {
    expect(byName(yumDriver.parseSimulateInstall!(captured('yum-simulate')))).toEqual({
      install: [upgrade('labdemo', '1.1-1'), isNew('labnew', '1.0-1')],
      remove: [],
      warnings: [],
    });
  });

  it('parseSimulateInstall — yum 3 (EL7): Updating, for-dependencies sections, a wrapped row, dependent counts', () => {
    expect(byName(yumDriver.parseSimulateInstall!(captured('crafted-yum3-simulate')))).toEqual({
      install: [
        isNew('NetworkManager-libnm-compat-extras-for-legacy-scripts', '1:1.0.6-29.el7_2', 'x86_64'),
        upgrade('glibc', '2.17-106.el7_2.4', 'x86_64'),
        upgrade('glibc-common', '2.17-106.el7_2.4', 'x86_64'),
        upgrade('grub2', '1:2.02-0.29.el7', 'x86_64'),
        isNew('libnewdep', '1.2-3.el7', 'x86_64'),
      ],
      remove: ['NetworkManager-legacy'],
      warnings: [],
    });
  });

  it('parseSimulateInstall — a package not found is a CommandFailedError with dnf’s message, not retryable', () => {
    const error = thrown(() => dnfDriver.parseSimulateInstall!(captured('dnf-simulate-not-found')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(false);
    expect(error.message).toContain('Unable to find a match: labdemo-0:9.9-1.noarch');
  });

  it('parseSimulateInstall — a conflict dnf will not erase for is a failure naming the problem', () => {
    const error = thrown(() => dnfDriver.parseSimulateInstall!(captured('dnf-simulate-conflict')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error.message).toContain('package labconf-1.0-1.noarch conflicts with labplain');
  });

  it('parseSimulateInstall — exit 1 without the abort message, or exit 0 after a table, is never a transaction', () => {
    const sim = captured('dnf-simulate');
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, stderr: '' }))).toBeInstanceOf(
      CommandFailedError,
    );
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, exitCode: 0 }))).toBeInstanceOf(ParseError);
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, truncated: true }))).toBeInstanceOf(
      ParseError,
    );
  });

  it('parseSimulateInstall — a table cut short or with a lost row is a ParseError (summary counts checked)', () => {
    const sim = captured('dnf-simulate');
    const lost = sim.stdout.replace(/^ labmulti .*\n/m, '');
    expect(lost).not.toBe(sim.stdout);
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, stdout: lost })).message).toMatch(
      /summary \(Upgrade 3\) disagrees with the table \(2 rows\)/,
    );
    const cut = sim.stdout.slice(0, sim.stdout.indexOf('Transaction Summary'));
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, stdout: cut }))).toBeInstanceOf(ParseError);
    const garbled = sim.stdout.replace(' labdemo ', ' labdemo rubbish ');
    expect(thrown(() => dnfDriver.parseSimulateInstall!({ ...sim, stdout: garbled }))).toBeInstanceOf(
      ParseError,
    );
  });

  it('parseSimulateInstall — removals, downgrades, skips and module streams are reported, unknown sections refused', () => {
    const table = (body: string, summary: string) =>
      [
        'Dependencies resolved.',
        '='.repeat(60),
        ' Package       Arch     Version        Repository   Size',
        '='.repeat(60),
        body,
        '',
        'Transaction Summary',
        '='.repeat(60),
        summary,
        '',
        'Total size: 1 M',
      ].join('\n');
    const body = [
      'Downgrading:',
      ' foo           x86_64   1.0-1          appstream    1 M',
      'Removing dependent packages:',
      ' bar           x86_64   2.0-1          @System      1 M',
      'Enabling module streams:',
      ' nodejs                 18',
      'Skipping packages with conflicts:',
      "(add '--best --allowerasing' to command line to force their upgrade):",
      ' baz           x86_64   3.0-1          appstream    1 M',
    ].join('\n');
    const tx = dnfDriver.parseSimulateInstall!({
      exitCode: 1,
      stdout: table(body, 'Remove     1 Package\nDowngrade  1 Package\nSkip       1 Package'),
      stderr: 'Operation aborted.\n',
    });
    expect(tx).toEqual({
      install: [upgrade('foo', '1.0-1', 'x86_64')],
      remove: ['bar'],
      warnings: [
        'dnf would downgrade foo to 1.0-1',
        'dnf would skip baz-3.0-1.x86_64 (Skipping packages with conflicts)',
        'dnf would also change: Enabling module streams: nodejs 18',
      ],
    });
    const unknown = table('Teleporting:\n foo x86_64 1.0-1 appstream 1 M', 'Install 1 Package');
    expect(() => parseRpmTransaction(unknown)).toThrow(/Unknown transaction section "Teleporting"/);
  });

  it('parseInstall — dnf: a finished install is success, a new kernel flags the reboot', () => {
    expect(dnfDriver.parseInstall!(captured('dnf-install'))).toEqual({ rebootRequired: false, warnings: [] });
    const kernel = captured('dnf-simulate-kernel');
    expect(
      dnfDriver.parseInstall!({
        ...kernel,
        exitCode: 0,
        stdout: `${kernel.stdout}\nComplete!\n`,
        stderr: '',
      }),
    ).toEqual({ rebootRequired: true, warnings: [] });
  });

  it('parseInstall — dnf: what the install removed or downgraded is a warning, never a failure', () => {
    const removing = captured('dnf-simulate-installonly-default');
    expect(
      dnfDriver.parseInstall!({
        exitCode: 0,
        stdout: `${removing.stdout}\nwarning: /etc/lab.conf created as /etc/lab.conf.rpmnew\nComplete!\n`,
        stderr: '',
      }).warnings,
    ).toEqual(['warning: /etc/lab.conf created as /etc/lab.conf.rpmnew', 'dnf removed kernel']);
  });

  it('parseInstall — lock: dnf’s exit_on_lock (200), dnf waiting until killed and yum 3 are retryable', () => {
    for (const [driver, name, text] of [
      [dnfDriver, 'dnf-install-locked', 'RPMDB already locked by'],
      [dnfDriver, 'crafted-dnf-lock-wait', 'Waiting for process with pid 4242'],
      [yumDriver, 'crafted-yum3-locked', 'another copy is running as pid 3168'],
    ] as const) {
      const error = thrown(() => driver.parseInstall!(captured(name)));
      expect(error, name).toBeInstanceOf(CommandFailedError);
      expect((error as CommandFailedError).retryable, name).toBe(true);
      expect(error.message, name).toContain(text);
    }
    const conflict = thrown(() => dnfDriver.parseInstall!(captured('dnf-simulate-conflict')));
    expect((conflict as CommandFailedError).retryable).toBe(false);
  });

  it('parseInstalledVersions — rpm -q: newest build per name, absent names absent, failures thrown', () => {
    expect(dnfDriver.parseInstalledVersions!(captured('rpm-installed-versions'))).toEqual(
      new Map([
        ['labdemo', '1.1-1'],
        ['labmulti', '1.1-1'],
        ['kernel', '5.14.0-3.el9'],
        ['labepoch', '2.0-1'],
      ]),
    );
    expect(
      zypperDriver.parseInstalledVersions!({
        exitCode: 0,
        stdout: 'labepoch\t1\t1.0\t1\tnoarch\n',
        stderr: '',
      }),
    ).toEqual(new Map([['labepoch', '1:1.0-1']]));
    for (const bad of [
      { exitCode: 1, stdout: '', stderr: 'error: cannot open Packages database in /var/lib/rpm\n' },
      { exitCode: null, stdout: '', stderr: '' },
      { exitCode: 1, stdout: '', stderr: 'rpm: no arguments given for query\n' },
    ]) {
      expect(thrown(() => dnfDriver.parseInstalledVersions!(bad))).toBeInstanceOf(CommandFailedError);
    }
    expect(
      thrown(() => dnfDriver.parseInstalledVersions!({ exitCode: 0, stdout: 'labdemo 1.1-1\n', stderr: '' })),
    ).toBeInstanceOf(ParseError);
  });
});

describe('zypper transaction parsing (captured and crafted output)', () => {
  const summary = (sections: string, exitCode = 0): CommandOutput => ({
    exitCode,
    stdout: `<?xml version='1.0'?>\n<stream>\n<install-summary download-size="1" space-usage-diff="0" packages-to-change="3">\n${sections}</install-summary>\n</stream>\n`,
    stderr: '',
  });

  it('parseSimulateInstall — zypper: new dependency, upgrades, epoch, obsoletes as removal', () => {
    expect(byName(zypperDriver.parseSimulateInstall!(captured('zypper-simulate')))).toEqual({
      install: [
        upgrade('labdemo', '1.1-1'),
        upgrade('labepoch', '1:1.0-1'),
        upgrade('labmulti', '1.1-1'),
        isNew('labnew', '1.0-1'),
        isNew('labrepl', '1.0-1'),
      ],
      remove: ['labold'],
      warnings: [],
    });
    expect(zypperDriver.parseSimulateInstall!(captured('zypper-simulate-nothing'))).toEqual({
      install: [],
      remove: [],
      warnings: [],
    });
  });

  it('parseSimulateInstall — zypper: downgrades, vendor changes and products are warnings', () => {
    const tx = zypperDriver.parseSimulateInstall!(
      summary(
        '<to-downgrade>\n<solvable type="package" name="foo" edition="1.0-1" arch="x86_64" edition-old="1.1-1"/>\n</to-downgrade>\n' +
          '<to-upgrade>\n<solvable type="product" name="SLES" edition="15.6-0" arch="x86_64"/>\n</to-upgrade>\n' +
          '<to-change-vendor>\n<solvable type="package" name="foo" edition="1.0-1" arch="x86_64"/>\n</to-change-vendor>\n',
      ),
    );
    expect(tx).toEqual({
      install: [upgrade('foo', '1.0-1', 'x86_64')],
      remove: [],
      warnings: [
        'zypper would downgrade foo to 1.0-1',
        'zypper would also install product SLES 15.6-0',
        'zypper would change the vendor of package foo 1.0-1',
      ],
    });
    expect(
      thrown(() => zypperDriver.parseSimulateInstall!({ ...summary(''), stdout: '<?xml' })),
    ).toBeInstanceOf(ParseError);
    expect(
      thrown(() =>
        zypperDriver.parseSimulateInstall!({
          exitCode: 0,
          stdout: "<?xml version='1.0'?>\n<stream/>\n",
          stderr: '',
        }),
      ),
    ).toBeInstanceOf(ParseError);
  });

  it('parseSimulateInstall — zypper as a normal user (exit 5, why it runs as root) fails, not retryably', () => {
    // What zypper answers a normal user on a real host; the lab's --root exempts it from the check.
    const error = thrown(() =>
      zypperDriver.parseSimulateInstall!({
        exitCode: 5,
        stdout: `<?xml version='1.0'?>\n<stream>\n<message type="error">Root privileges are required to run this command.</message>\n</stream>\n`,
        stderr: '',
      }),
    );
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(false);
    expect(error.message).toContain('Root privileges are required');
  });

  it('parseSimulateInstall — zypper: not found (104) and a dependency problem (4) fail, not retryably', () => {
    const notFound = thrown(() => zypperDriver.parseSimulateInstall!(captured('zypper-simulate-not-found')));
    expect(notFound).toBeInstanceOf(CommandFailedError);
    expect(notFound.message).toContain("Package 'labdemo.noarch=0:9.9-1' not found.");
    expect((notFound as CommandFailedError).retryable).toBe(false);
    const conflict = thrown(() => zypperDriver.parseSimulateInstall!(captured('zypper-simulate-conflict')));
    expect(conflict.message).toContain('Problem: labconf-1.0-1.noarch conflicts with labplain');
    expect((conflict as CommandFailedError).retryable).toBe(false);
  });

  it('parseInstall — zypper: 0 and 102 (reboot) succeed; lock (7) and self-update (103) fail retryably', () => {
    expect(zypperDriver.parseInstall!(captured('zypper-install'))).toEqual({
      rebootRequired: false,
      warnings: [],
    });
    expect(zypperDriver.parseInstall!({ ...captured('zypper-install'), exitCode: 102 }).rebootRequired).toBe(
      true,
    );
    const locked = thrown(() => zypperDriver.parseInstall!(captured('zypper-install-locked')));
    expect(locked).toBeInstanceOf(CommandFailedError);
    expect((locked as CommandFailedError).retryable).toBe(true);
    expect(locked.message).toContain('System management is locked by the application with pid');
    const restarted = thrown(() => zypperDriver.parseInstall!({ ...summary(''), exitCode: 103 }));
    expect((restarted as CommandFailedError).retryable).toBe(true);
    const commit = thrown(() =>
      zypperDriver.parseInstall!({
        exitCode: 8,
        stdout: `<?xml version='1.0'?>\n<stream>\n<message type="error">Installation of foo-1.0-1.x86_64 failed:</message>\n</stream>\n`,
        stderr: '',
      }),
    );
    expect((commit as CommandFailedError).retryable).toBe(false);
    expect(commit.message).toContain('Installation of foo-1.0-1.x86_64 failed');
  });
});

const DNF_UNAVAILABLE = unavailableWithout({
  commands: ['rpmbuild', 'createrepo_c', 'rpm', 'dnf', 'setpriv'],
  root: true,
});
const ZYPPER_UNAVAILABLE = unavailableWithout({
  commands: ['rpmbuild', 'createrepo_c', 'rpm', 'zypper', 'setpriv'],
  root: true,
});

let lab: InstallLab | undefined;
beforeAll(() => {
  if (DNF_UNAVAILABLE && ZYPPER_UNAVAILABLE) return;
  lab = new InstallLab();
  lab.build({ dnf: !DNF_UNAVAILABLE, zypper: !ZYPPER_UNAVAILABLE });
}, 300_000);
afterAll(() => lab?.dispose());

/** Runs a driver's command against a root of the lab and parses it with the driver's parser. */
function simulate(driver: PackageManagerDriver, root: string, pins: PinnedPackage[], asNobody = false) {
  return driver.parseSimulateInstall!(lab!.exec(root, driver.simulateInstallCommand!(pins), { asNobody }));
}

describeIfAvailable('dnf and yum installs against the real dnf (temporary roots)', DNF_UNAVAILABLE, () => {
  it('simulateInstallCommand — the labdemo update pulls in its new dependency labnew (isNew)', () => {
    expect(byName(simulate(dnfDriver, 'base', [pin('labdemo', '1.1-1')]))).toEqual({
      install: [upgrade('labdemo', '1.1-1'), isNew('labnew', '1.0-1')],
      remove: [],
      warnings: [],
    });
    expect(byName(simulate(yumDriver, 'base', [pin('labdemo', '1.1-1')])).install).toEqual([
      upgrade('labdemo', '1.1-1'),
      isNew('labnew', '1.0-1'),
    ]);
  }, 60_000);

  it('simulateInstallCommand — a package that obsoletes an installed one reports the removal', () => {
    expect(simulate(dnfDriver, 'base', [pin('labrepl', '1.0-1')])).toEqual({
      install: [isNew('labrepl', '1.0-1')],
      remove: ['labold'],
      warnings: [],
    });
  }, 60_000);

  it('simulateInstallCommand — a fourth kernel removes none of the three installed (installonly_limit=0)', () => {
    expect(simulate(dnfDriver, 'base', [pin('kernel', '5.14.0-4.el9', 'x86_64')]).remove).toEqual([]);
  }, 60_000);

  it('simulateInstallCommand — an unavailable pin and a conflict fail with dnf’s message', () => {
    expect(() => simulate(dnfDriver, 'base', [pin('labmulti', '9.9-1')])).toThrow(/Unable to find a match/);
    expect(() => simulate(dnfDriver, 'base', [pin('labconf', '1.0-1')])).toThrow(/conflicts with labplain/);
  }, 60_000);

  it('simulateInstallCommand — needs root: dnf refuses install --assumeno to a normal user, hence sudo', () => {
    expect(dnfDriver.simulateInstallCommand!([pin('labmulti', '1.1-1')]).sudo).toBe(true);
    expect(() => simulate(dnfDriver, 'base', [pin('labmulti', '1.1-1')], true)).toThrow(
      /has to be run with superuser privileges/,
    );
  }, 60_000);

  it('installCommand — installs exactly the pinned older build (labmulti 1.1 while 1.2 is available)', () => {
    const root = lab!.copy('dnf-exact');
    const resolved = [pin('labmulti', '1.1-1'), pin('labdemo', '1.1-1'), pin('labnew', '1.0-1')];
    const result = dnfDriver.parseInstall!(lab!.exec(root, dnfDriver.installCommand!(resolved)));
    expect(result).toEqual({ rebootRequired: false, warnings: [] });
    expect(lab!.installed(root, 'labmulti', 'labdemo', 'labnew')).toEqual([
      'labmulti-1.1-1.noarch',
      'labdemo-1.1-1.noarch',
      'labnew-1.0-1.noarch',
    ]);
    // The verification step reads the same through the driver; the re-simulation finds nothing to do.
    const versions = dnfDriver.parseInstalledVersions!(
      lab!.exec(root, dnfDriver.installedVersionsCommand!(['labmulti', 'labdemo', 'labnew', 'labnope'])),
    );
    expect(versions).toEqual(
      new Map([
        ['labmulti', '1.1-1'],
        ['labdemo', '1.1-1'],
        ['labnew', '1.0-1'],
      ]),
    );
    expect(simulate(dnfDriver, root, resolved)).toEqual({ install: [], remove: [], warnings: [] });
  }, 120_000);

  it('installCommand — an epoch pin and a kernel install exactly, old kernels kept', () => {
    const root = lab!.copy('dnf-epoch');
    const result = dnfDriver.parseInstall!(
      lab!.exec(
        root,
        dnfDriver.installCommand!([pin('labepoch', '1:1.0-1'), pin('kernel', '5.14.0-4.el9', 'x86_64')]),
      ),
    );
    expect(result.rebootRequired).toBe(true);
    expect(lab!.installed(root, 'labepoch', 'kernel')).toEqual([
      'labepoch-1:1.0-1.noarch',
      'kernel-5.14.0-1.el9.x86_64',
      'kernel-5.14.0-2.el9.x86_64',
      'kernel-5.14.0-3.el9.x86_64',
      'kernel-5.14.0-4.el9.x86_64',
    ]);
    expect(
      dnfDriver.parseInstalledVersions!(
        lab!.exec(root, dnfDriver.installedVersionsCommand!(['labepoch', 'kernel'])),
      ),
    ).toEqual(
      new Map([
        ['labepoch', '1:1.0-1'],
        ['kernel', '5.14.0-4.el9'],
      ]),
    );
  }, 120_000);

  it('parseInstall — the rpmdb lock held by another process fails at once, retryably, installing nothing', () => {
    const root = lab!.copy('dnf-locked');
    const release = lab!.holdLock(root, 'dnf');
    try {
      const output = lab!.exec(root, dnfDriver.installCommand!([pin('labmulti', '1.2-1')]));
      const error = thrown(() => dnfDriver.parseInstall!(output));
      expect(error).toBeInstanceOf(CommandFailedError);
      expect((error as CommandFailedError).retryable).toBe(true);
    } finally {
      release();
    }
    expect(lab!.installed(root, 'labmulti')).toEqual(['labmulti-1.0-1.noarch']);
  }, 120_000);
});

describeIfAvailable('zypper installs against the real zypper (temporary roots)', ZYPPER_UNAVAILABLE, () => {
  it('simulateInstallCommand — the labdemo update pulls in labnew (isNew); an obsoleting package removes', () => {
    expect(byName(simulate(zypperDriver, 'base', [pin('labdemo', '1.1-1')]))).toEqual({
      install: [upgrade('labdemo', '1.1-1'), isNew('labnew', '1.0-1')],
      remove: [],
      warnings: [],
    });
    expect(simulate(zypperDriver, 'base', [pin('labrepl', '1.0-1')])).toEqual({
      install: [isNew('labrepl', '1.0-1')],
      remove: ['labold'],
      warnings: [],
    });
  }, 60_000);

  it('simulateInstallCommand — an unavailable pin (104) and a conflict (4) fail', () => {
    expect(() => simulate(zypperDriver, 'base', [pin('labmulti', '9.9-1')])).toThrow(
      /not found \(exit 104\)/,
    );
    expect(() => simulate(zypperDriver, 'base', [pin('labconf', '1.0-1')])).toThrow(
      /conflicts with labplain/,
    );
  }, 60_000);

  it('simulateInstallCommand — a root dry run takes the zypp lock: held, it fails retryably (exit 7)', () => {
    const root = lab!.copy('zypper-sim-locked');
    const release = lab!.holdLock(root, 'zypper');
    try {
      const error = thrown(() => simulate(zypperDriver, root, [pin('labmulti', '1.1-1')]));
      expect(error).toBeInstanceOf(CommandFailedError);
      expect((error as CommandFailedError).retryable).toBe(true);
    } finally {
      release();
    }
  }, 60_000);

  it('installCommand — installs exactly the pinned older build and the epoch pin', () => {
    const root = lab!.copy('zypper-exact');
    const resolved = [
      pin('labmulti', '1.1-1'),
      pin('labdemo', '1.1-1'),
      pin('labnew', '1.0-1'),
      pin('labepoch', '1:1.0-1'),
    ];
    const result = zypperDriver.parseInstall!(lab!.exec(root, zypperDriver.installCommand!(resolved)));
    expect(result).toEqual({ rebootRequired: false, warnings: [] });
    expect(lab!.installed(root, 'labmulti', 'labdemo', 'labnew', 'labepoch')).toEqual([
      'labmulti-1.1-1.noarch',
      'labdemo-1.1-1.noarch',
      'labnew-1.0-1.noarch',
      'labepoch-1:1.0-1.noarch',
    ]);
    const versions = zypperDriver.parseInstalledVersions!(
      lab!.exec(root, zypperDriver.installedVersionsCommand!(resolved.map((p) => p.name))),
    );
    expect(versions).toEqual(new Map(resolved.map((p) => [p.name, p.version])));
    expect(simulate(zypperDriver, root, resolved)).toEqual({ install: [], remove: [], warnings: [] });
  }, 120_000);

  it('parseInstall — the zypp lock held (exit 7) fails retryably, installing nothing', () => {
    const root = lab!.copy('zypper-locked');
    const release = lab!.holdLock(root, 'zypper');
    try {
      const error = thrown(() =>
        zypperDriver.parseInstall!(lab!.exec(root, zypperDriver.installCommand!([pin('labmulti', '1.2-1')]))),
      );
      expect(error).toBeInstanceOf(CommandFailedError);
      expect((error as CommandFailedError).retryable).toBe(true);
    } finally {
      release();
    }
    expect(lab!.installed(root, 'labmulti')).toEqual(['labmulti-1.0-1.noarch']);
  }, 120_000);
});
