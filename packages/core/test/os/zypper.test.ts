import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PendingPatch } from '../../src/domain/index.js';
import { PendingPatchSchema } from '../../src/domain/index.js';
import { CommandFailedError, ParseError } from '../../src/errors.js';
import type { CommandOutput, ParsedScan } from '../../src/os/driver.js';
import {
  parsePatchInfo,
  parseZypperXml,
  patchCategory,
  zypperDriver,
  zypperRefreshCommand,
} from '../../src/os/zypper.js';
import type { ScriptCommand } from '../../src/ports/adapter.js';
import { Lab } from '../fixtures/dnf/lab.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/zypper/${name}`, import.meta.url), 'utf8');
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

function scriptOf(): ScriptCommand {
  const cmd = zypperDriver.scanCommand();
  if (!('script' in cmd)) throw new Error('zypper scan command is not a script');
  return cmd;
}

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

const lab = (
  name: string,
  installedVersion: string,
  candidateVersion: string,
  category: PendingPatch['category'],
  severity: PendingPatch['severity'],
  advisories: string[] = [],
  arch = 'noarch',
  repo = 'lab',
) => patch({ name, arch, installedVersion, candidateVersion, category, severity, advisories, repo });

/** The lab notes' packages; zypper's patches are named after the updateinfo ids. */
const LAB_EXPECTED: PendingPatch[] = [
  lab('labdemo', '1.0-1', '1.1-1', 'security', 'critical', ['LAB-2026:0001']),
  lab('labextra', '0.9-1', '1.0-1', 'enhancement', 'low', ['LAB-2026:0003']),
  lab('labplain', '1.0-1', '1.1-1', 'unknown', 'unspecified'),
  lab('labtool', '2.0-1', '2.1-1', 'bugfix', 'moderate', ['LAB-2026:0002']),
];

/** zypper lists no update for labarch, installed in two architectures: only its patch tells. */
const EDGE_EXPECTED: PendingPatch[] = [
  lab('labepoch', '2.0-1', '1:1.0-1', 'security', 'low', ['LAB-2026:0014']),
  lab('labepoch3', '3:1.0-1', '3:1.1-1', 'bugfix', 'important', ['LAB-2026:0015']),
  lab('labmulti', '1.0-1', '1.2-1', 'security', 'important', [
    'LAB-2026:0011',
    'LAB-2026:0012',
    'LAB-2026:0013',
  ]),
  lab('labnosev', '1.0-1', '1.1-1', 'security', 'unspecified', ['LAB-2026:0017']),
  lab('labthird', '1.0-1', '1.1-1', 'unknown', 'unspecified', [], 'noarch', 'third'),
];
const EDGE_WARNING =
  'zypper patch LAB-2026:0016 (security, status needed) applies, but no package update zypper lists ships it ' +
  '(a locked package, or one installed in several architectures)';

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

describe('zypperDriver.scanCommand', () => {
  it('scanCommand — is a constant sh script run without sudo in the C locale', () => {
    const cmd = scriptOf();
    expect(cmd.interpreter).toEqual(['sh', '-s']);
    expect(cmd.sudo).toBe(false);
    expect(cmd.env).toEqual({ LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' });
    expect(scriptOf().script).toBe(cmd.script);
    expect(cmd.script).not.toContain('${');
    expect(cmd.script).not.toMatch(/\beval\b/);
  });

  it('scanCommand — is valid POSIX sh', () => {
    const r = spawnSync('sh', ['-n'], { input: scriptOf().script, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('scanCommand — every zypper run is non-interactive, never refreshes, and only lists', () => {
    const runs = scriptOf()
      .script.split('\n')
      .filter((l) => /\bzypper /.test(l) && !l.trimStart().startsWith('#'));
    expect(runs).toHaveLength(4);
    for (const r of runs) expect(r).toContain('zypper --non-interactive --no-refresh ');
    expect(runs.map((r) => r.replace(/^.*--no-refresh (?:--xmlout )?/, '').replace(/\).*$/, ''))).toEqual([
      'list-updates',
      'list-patches',
      'info -t patch "$@"',
      'needs-rebooting',
    ]);
  });

  it('refreshCommand — is argv zypper refresh as root', () => {
    expect(zypperRefreshCommand()).toEqual({
      argv: ['zypper', '--non-interactive', 'refresh'],
      sudo: true,
      env: { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' },
    });
  });

  it('scanCommand — patch names reach zypper only as separate safe words (stubbed zypper records argv)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetward-zypper-stub-'));
    try {
      const evil = [
        'SUSE-SLE-Module-Basesystem-15-SP6-2024-3100',
        'x;touch pwned',
        '$(touch pwned)',
        '* ../',
        'LAB-2026:0001',
      ];
      const lp = `<?xml version='1.0'?>\n<stream>\n<update-status version="0.6">\n<update-list>\n${evil
        .map((n) => `<update kind="patch" name="${n.replace(/&/g, '&amp;')}" status="needed"/>`)
        .join('')}</update-list>\n</update-status>\n</stream>`;
      writeFileSync(join(dir, 'lp.xml'), lp);
      writeFileSync(
        join(dir, 'zypper'),
        `#!/bin/sh
for a in "$@"; do printf '%s\\n' "$a"; done >> '${dir}/argv'
echo ---- >> '${dir}/argv'
case "$*" in
  *list-patches*) cat '${dir}/lp.xml' ;;
  *) echo "<?xml version='1.0'?><stream/>" ;;
esac
`,
      );
      writeFileSync(join(dir, 'rpm'), '#!/bin/sh\nexit 0\n');
      chmodSync(join(dir, 'zypper'), 0o755);
      chmodSync(join(dir, 'rpm'), 0o755);
      const cmd = scriptOf();
      await new Promise<void>((resolve, reject) => {
        const child = spawn('sh', ['-s'], {
          cwd: dir,
          env: { ...cmd.env, PATH: `${dir}:/usr/bin:/bin` },
          stdio: ['pipe', 'ignore', 'ignore'],
        });
        child.on('error', reject);
        child.on('close', () => resolve());
        child.stdin.end(cmd.script);
      });
      const calls = readFileSync(join(dir, 'argv'), 'utf8').split('----\n');
      const info = calls
        .find((c) => c.includes('\ninfo\n'))!
        .trim()
        .split('\n');
      expect(info).toEqual([
        '--non-interactive',
        '--no-refresh',
        '--xmlout',
        'info',
        '-t',
        'patch',
        'SUSE-SLE-Module-Basesystem-15-SP6-2024-3100',
        'LAB-2026:0001',
      ]);
      expect(spawnSync('ls', [dir], { encoding: 'utf8' }).stdout).not.toContain('pwned');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('zypperDriver.supports', () => {
  it('supports — zypper hosts only', () => {
    const os = (packageManager?: 'apt' | 'dnf' | 'zypper') => ({
      family: 'suse' as const,
      id: 'sles',
      versionId: '15.6',
      prettyName: '',
      ...(packageManager ? { packageManager } : {}),
    });
    expect(zypperDriver.manager).toBe('zypper');
    expect(zypperDriver.supports(os('zypper'))).toBe(true);
    expect(zypperDriver.supports(os('dnf'))).toBe(false);
    expect(zypperDriver.supports(os('apt'))).toBe(false);
    expect(zypperDriver.supports(os())).toBe(false);
  });
});

describe('zypperDriver.parseScan on real zypper 1.14.42 captures', () => {
  it('parseScan — lab: security/critical, bugfix/moderate, enhancement/low, unknown without a patch', () => {
    const result = zypperDriver.parseScan(captured('lab'));
    expect(result).toEqual({
      patches: LAB_EXPECTED,
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
    expectValid(result);
    expect(fixture('lab.out')).toContain('category="security" severity="critical"');
    // list-patches names no package: the mapping comes from info -t patch's Conflicts.
    expect(fixture('lab.out')).toContain('Conflicts   : labdemo &lt; 1.1-1');
  });

  it('parseScan — edge: epochs and several patches on one package; a patch for a two-arch package is a warning', () => {
    const result = zypperDriver.parseScan(captured('edge'));
    expect(result.patches).toEqual(EDGE_EXPECTED);
    expect(result.warnings).toEqual([EDGE_WARNING]);
    expect(fixture('edge.out')).toContain('    labarch.i686 &lt; 1.1-1');
    expectValid(result);
  });

  it('parseScan — none: no updates', () => {
    expect(zypperDriver.parseScan(captured('none'))).toEqual({
      patches: [],
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
  });

  it('parseScan — needs-rebooting exit 102 flags a reboot', () => {
    expect(fixture('reboot-needed.out')).toContain('@@fleetward:needs-rebooting-exit 102');
    const result = zypperDriver.parseScan(captured('reboot-needed'));
    expect(result.rebootRequired).toBe(true);
    expect(result.patches).toEqual(LAB_EXPECTED);
  });

  it('parseScan — lock held (exit 7) as root: retryable CommandFailedError naming the holder', () => {
    const error = thrown(() => zypperDriver.parseScan(captured('locked')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(true);
    expect((error as Error).message).toMatch(
      /lock is held \(exit 7\): System management is locked by the application with pid \d+ \(sleep\)/,
    );
  });

  it('parseScan — the same lock does not stop a normal user: the scan runs without sudo', () => {
    expect(zypperDriver.parseScan(captured('locked-nonroot')).patches).toEqual(LAB_EXPECTED);
  });

  it('parseScan — no repositories (a warning with exit 0 in list-updates): CommandFailedError', () => {
    const error = thrown(() => zypperDriver.parseScan(captured('norepos')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(false);
    expect((error as Error).message).toContain('no repositories are defined');
  });

  it('parseScan — repositories skipped (exit 106): the rest is reported, with a warning per problem', () => {
    expect(fixture('skipped-repo.out')).toContain('@@fleetward:list-updates-exit 106');
    const result = zypperDriver.parseScan(captured('skipped-repo'));
    expect(result.patches).toEqual([]);
    expect(result.warnings).toContain(
      "zypper: Skipping repository 'Fleetward lab lab' because of the above error.",
    );
  });

  it('parseScan — refuses truncated output', () => {
    expect(() => zypperDriver.parseScan(captured('lab', { truncated: true }))).toThrow(/truncated/);
  });
});

describe('zypperDriver.parseScan on crafted output', () => {
  it('parseScan — SLES: category mapping, names with dots, noarch twins, srcpackage conflicts, several patches', () => {
    const result = zypperDriver.parseScan(crafted('crafted-sles'));
    const R = 'SLE-Module-Basesystem15-SP6-Updates';
    const P = 'SUSE-SLE-Module-Basesystem-15-SP6-2024-';
    const sles = (
      name: string,
      installedVersion: string,
      candidateVersion: string,
      category: PendingPatch['category'],
      severity: PendingPatch['severity'],
      advisories: string[],
      repo = R,
    ) =>
      patch({
        name,
        arch: 'x86_64',
        installedVersion,
        candidateVersion,
        category,
        severity,
        advisories,
        repo,
      });
    expect(result.patches).toEqual([
      sles('glibc', '2.38-150600.14.5.1', '2.38-150600.14.8.2', 'unknown', 'unspecified', [], 'devel_tools'),
      sles(
        'glibc-32bit',
        '2.38-150600.14.5.1',
        '2.38-150600.14.8.2',
        'unknown',
        'unspecified',
        [],
        'devel_tools',
      ),
      sles('kernel-default', '6.4.0-150600.23.25.1', '6.4.0-150600.23.30.1', 'security', 'critical', [
        `${P}3001`,
        `${P}3600`,
      ]),
      sles('libopenssl3', '3.1.4-150600.5.7.1', '3.1.4-150600.5.10.1', 'security', 'important', [`${P}3100`]),
      sles('openssl-3', '3.1.4-150600.5.7.1', '3.1.4-150600.5.10.1', 'security', 'important', [`${P}3100`]),
      sles('ruby3.4', '3.4.1-1.1', '3.4.2-1.1', 'security', 'low', [`${P}3500`]),
      sles('salt', '3006.0-150500.4.35.2', '3006.0-150500.4.41.1', 'enhancement', 'unspecified', [
        `${P}3400`,
      ]),
      sles('yast2', '4.6.5-150600.3.3.1', '4.6.7-150600.3.6.1', 'enhancement', 'low', [`${P}3300`]),
      sles('zypper', '1.14.73-150600.10.3.1', '1.14.76-150600.10.6.1', 'bugfix', 'moderate', [`${P}3200`]),
    ]);
    expect(result.warnings).toEqual([]);
    expectValid(result);
  });

  it('parseScan — two arches of one package, both listed, both covered by one patch', () => {
    const result = zypperDriver.parseScan(crafted('crafted-multiarch'));
    expect(result.patches).toEqual([
      lab('labarch', '1.0-1', '1.1-1', 'security', 'important', ['LAB-2026:0016'], 'i686'),
      lab('labarch', '1.0-1', '1.1-1', 'security', 'important', ['LAB-2026:0016'], 'x86_64'),
    ]);
    expect(result.warnings).toEqual([]);
  });

  it('parseScan — zypper without needs-rebooting: the flag file, else a kernel installed after boot', () => {
    expect(zypperDriver.parseScan(crafted('crafted-old-zypper'))).toEqual({
      patches: [],
      rebootRequired: true,
      rebootPackages: ['kernel-default'],
      warnings: [],
    });
    expect(zypperDriver.parseScan(crafted('crafted-old-zypper-flag')).rebootRequired).toBe(true);
  });

  it('parseScan — info exit 104 (a patch not found): the rest is mapped, the missing patch is a warning', () => {
    const result = zypperDriver.parseScan(crafted('crafted-info-not-found'));
    expect(result.patches).toEqual([
      lab('labdemo', '1.0-1', '1.1-1', 'security', 'critical', ['LAB-2026:0001']),
      lab('labtool', '2.0-1', '2.1-1', 'unknown', 'unspecified'),
    ]);
    expect(result.warnings).toEqual([
      "zypper: patch 'LAB-2026:0002' not found.",
      'zypper patch LAB-2026:0002 (bugfix, status needed) applies, but zypper gave no package information for it',
    ]);
  });

  it('parseScan — exit 103 (zypper updated itself): retryable, says re-run', () => {
    const error = thrown(() => zypperDriver.parseScan(crafted('crafted-exit-103')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(true);
    expect((error as Error).message).toContain('re-run the scan');
  });

  it('parseScan — exit 4 (libzypp error): retryable CommandFailedError with the message', () => {
    const error = thrown(() => zypperDriver.parseScan(crafted('crafted-exit-4')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(true);
    expect((error as Error).message).toContain(
      "Problem retrieving files from 'SLE-Module-Basesystem15-SP6-Updates'.",
    );
  });

  it('parseScan — exit 6 (no repositories): CommandFailedError, not retryable', () => {
    const error = thrown(() => zypperDriver.parseScan(crafted('crafted-exit-6')));
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).retryable).toBe(false);
  });

  it('parseScan — garbage and XML cut short are ParseErrors, never an empty list', () => {
    expect(() => zypperDriver.parseScan(crafted('crafted-garbage'))).toThrow(ParseError);
    expect(() => zypperDriver.parseScan(crafted('crafted-cut-xml'))).toThrow(
      /not well-formed zypper XML: Unclosed root tag/,
    );
    const labOut = captured('lab');
    expect(() =>
      zypperDriver.parseScan({
        ...labOut,
        stdout: labOut.stdout.replace(/<update-status version="0.6">[\s\S]*?<\/update-status>/, ''),
      }),
    ).toThrow(/has no <update-list>/);
  });

  it('parseScan — a script that did not start is a CommandFailedError', () => {
    expect(() =>
      zypperDriver.parseScan({ exitCode: 126, stdout: '', stderr: 'sh: permission denied' }),
    ).toThrow(CommandFailedError);
  });
});

describe('zypper output parsers', () => {
  it('patchCategory — security, recommended→bugfix, optional/feature→enhancement, others→other', () => {
    expect(
      ['security', 'recommended', 'bugfix', 'optional', 'feature', 'enhancement', 'document', 'yast', ''].map(
        patchCategory,
      ),
    ).toEqual([
      'security',
      'bugfix',
      'bugfix',
      'enhancement',
      'enhancement',
      'enhancement',
      'other',
      'other',
      'other',
    ]);
  });

  it('parseZypperXml — decodes entities and reads several documents in one section', () => {
    const roots = parseZypperXml(
      '<?xml version=\'1.0\'?>\n<stream><message type="info">a &lt; b &amp; &apos;c&apos;</message></stream>\n' +
        '<?xml version=\'1.0\'?>\n<stream><message type="info">second</message></stream>\n',
      'test',
    );
    expect(roots.map((r) => r.children[0]!.text)).toEqual(["a < b & 'c'", 'second']);
    expect(() => parseZypperXml('not xml', 'test')).toThrow(ParseError);
  });

  it('parsePatchInfo — inline and listed conflicts; description lines never count', () => {
    const info = parsePatchInfo([
      {
        type: 'info',
        text: 'Name        : P-1\nDescription : \n    Conflicts   : fake < 9-9\nConflicts   : [2]\n    foo.x86_64 < 1:2.0-1\n    python3.11 < 3.11.9-1\n',
      },
      { type: 'info', text: 'Name        : P-2\nConflicts   : bar < 1.0-1\n' },
      { type: 'warning', text: "patch 'P-3' not found." },
    ]);
    expect(info).toEqual(
      new Map([
        [
          'P-1',
          [
            { name: 'foo', arch: 'x86_64', edition: { epoch: 1, version: '2.0', release: '1' } },
            { name: 'python3.11', arch: null, edition: { epoch: 0, version: '3.11.9', release: '1' } },
          ],
        ],
        ['P-2', [{ name: 'bar', arch: null, edition: { epoch: 0, version: '1.0', release: '1' } }]],
      ]),
    );
  });
});

describeIfAvailable(
  'zypper scan script against the real zypper (lab repositories)',
  unavailableWithout({
    commands: ['rpmbuild', 'createrepo_c', 'modifyrepo_c', 'zypper', 'setpriv'],
    root: true,
  }),
  () => {
    let rpmLab: Lab;
    beforeAll(() => {
      rpmLab = new Lab();
      for (const s of ['lab', 'edge', 'none'] as const) {
        rpmLab.build(s);
        // What the host's admin or timer does; the scan itself runs with --no-refresh.
        rpmLab.tool(s, ['zypper', '--non-interactive', 'refresh']);
      }
      rpmLab.build('broken');
      rpmLab.build('norepos');
    }, 300_000);
    afterAll(() => rpmLab?.dispose());

    const scan = async (scenario: Parameters<Lab['scan']>[0], options?: Parameters<Lab['scan']>[2]) =>
      zypperDriver.parseScan(await rpmLab.scan(scenario, zypperDriver.scanCommand(), options));

    it('scan — lab: exactly the four lab packages', async () => {
      expect(await scan('lab')).toEqual({
        patches: LAB_EXPECTED,
        rebootRequired: false,
        rebootPackages: [],
        warnings: [],
      });
    }, 120_000);

    it('scan — edge', async () => {
      const result = await scan('edge');
      expect(result.patches).toEqual(EDGE_EXPECTED);
      expect(result.warnings).toEqual([EDGE_WARNING]);
    }, 120_000);

    it('scan — none', async () => {
      expect((await scan('none')).patches).toEqual([]);
    }, 120_000);

    it('scan — /run/reboot-needed in the root: needs-rebooting says 102', async () => {
      const flag = join(rpmLab.dir, 'lab', 'root', 'run', 'reboot-needed');
      writeFileSync(flag, '');
      try {
        expect((await scan('lab')).rebootRequired).toBe(true);
      } finally {
        rmSync(flag);
      }
    }, 120_000);

    it('scan — lock held: root fails retryably (exit 7), a normal user still scans', async () => {
      const holder = spawn('sleep', ['300'], { stdio: 'ignore' });
      const pidFile = join(rpmLab.dir, 'lab', 'root', 'run', 'zypp.pid');
      try {
        writeFileSync(pidFile, `${holder.pid}\n`);
        const asRoot = scan('lab');
        await expect(asRoot).rejects.toThrow(CommandFailedError);
        await expect(asRoot).rejects.toMatchObject({ retryable: true });
        expect((await scan('lab', { asNobody: true })).patches).toEqual(LAB_EXPECTED);
      } finally {
        holder.kill();
        writeFileSync(pidFile, '');
      }
    }, 120_000);

    it('scan — a repository that cannot be read is skipped (106) with a warning', async () => {
      const result = await scan('broken');
      expect(result.patches).toEqual([]);
      expect(result.warnings).toContain(
        "zypper: Skipping repository 'Fleetward lab lab' because of the above error.",
      );
    }, 120_000);

    it('scan — no repositories: CommandFailedError', async () => {
      await expect(scan('norepos')).rejects.toThrow(/no repositories are defined/);
    }, 120_000);
  },
);
