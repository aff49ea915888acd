import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdvisorySpec,
  type AptSuiteSpec,
  buildAptRepository,
  buildDeb,
  buildRpm,
  buildRpmRepository,
  debFileName,
  formatArgv,
  LAB_PACKAGE_NAME,
  type LabPackageSpec,
  packageFileName,
  packageVersion,
  type RpmRepositorySpec,
  renderUpdateinfo,
  rpmFileName,
  runTool,
  type ToolResult,
  validateLabPackageSpec,
} from '../../src/lab/repos/build.js';
import { describeIfAvailable, unavailableWithout } from '../../src/requirements.js';

// Regenerates test/lab/captured/ (outputs for the dnf/zypper parser tests) when set.
const CAPTURE = process.env['FLEETWARD_LAB_CAPTURE'] === '1';
const CAPTURED_DIR = join(import.meta.dirname, 'captured');

/**
 * Tests needing host tools skip loudly when they are missing, unless FLEETWARD_REQUIRE_LAB=1
 * (lab CI), where a missing tool must fail rather than quietly shrink the suite.
 */
function needs(...tools: string[]): string | undefined {
  const reason = unavailableWithout({ commands: tools });
  return reason && `${reason} (install: dpkg-dev apt rpm createrepo-c dnf zypper)`;
}

const temps: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `fleetward-${prefix}-`));
  temps.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Runs a tool accepting any exit code; assertions look at `code`. */
function probe(file: string, args: string[], env?: Record<string, string>): Promise<ToolResult> {
  return runTool(file, args, { env, okCodes: Array.from({ length: 256 }, (_, i) => i) });
}

function ok(result: ToolResult): ToolResult {
  if (result.code !== 0) {
    throw new Error(`${formatArgv(result.argv)} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
  }
  return result;
}

// --- The shared fixture (see the brief in captured/README.md) ---------------------------------

const labdemoOld: LabPackageSpec = { name: 'labdemo', version: '1.0' };
const labdemoNew: LabPackageSpec = { name: 'labdemo', version: '1.1', depends: ['labnew'] };
const labtoolOld: LabPackageSpec = { name: 'labtool', version: '2.0' };
const labtoolNew: LabPackageSpec = { name: 'labtool', version: '2.1' };
const labextraOld: LabPackageSpec = { name: 'labextra', version: '0.9' };
const labextraNew: LabPackageSpec = { name: 'labextra', version: '1.0' };
const labplainOld: LabPackageSpec = { name: 'labplain', version: '1.0' };
const labplainNew: LabPackageSpec = { name: 'labplain', version: '1.1' };
const labnew: LabPackageSpec = { name: 'labnew', version: '1.0' };

const INSTALLED = [labdemoOld, labtoolOld, labextraOld, labplainOld];

const ADVISORIES: AdvisorySpec[] = [
  {
    id: 'LAB-2026:0001',
    type: 'security',
    severity: 'Critical',
    title: 'Critical: labdemo security update',
    issued: '2026-01-15',
    cves: ['CVE-2026-0001'],
    packages: [labdemoNew],
  },
  {
    id: 'LAB-2026:0002',
    type: 'bugfix',
    severity: 'Moderate',
    title: 'labtool bug fix update',
    issued: '2026-01-16',
    packages: [labtoolNew],
  },
  {
    id: 'LAB-2026:0003',
    type: 'enhancement',
    severity: 'Low',
    title: 'labextra enhancement update',
    issued: '2026-01-17',
    packages: [labextraNew],
  },
];

const RPM_FIXTURE: RpmRepositorySpec = {
  packages: [labdemoNew, labtoolNew, labextraNew, labplainNew, labnew],
  advisories: ADVISORIES,
};

// --- Pure functions -----------------------------------------------------------------------------

describe('lab repository specs', () => {
  it('validateLabPackageSpec — accepts the fixture and names the bad field otherwise', () => {
    for (const spec of [...INSTALLED, ...RPM_FIXTURE.packages]) validateLabPackageSpec(spec);
    expect(() => validateLabPackageSpec({ name: 'Lab Demo', version: '1.0' })).toThrow(
      /invalid name "Lab Demo"/,
    );
    expect(() => validateLabPackageSpec({ name: 'labdemo', version: '1.0-1' })).toThrow(
      /invalid version "1\.0-1"/,
    );
    expect(() => validateLabPackageSpec({ name: 'labdemo', version: 'v1' })).toThrow(/invalid version/);
    expect(() => validateLabPackageSpec({ name: 'labdemo', version: '1:1.0' })).toThrow(/invalid version/);
    expect(() => validateLabPackageSpec({ name: 'labdemo', version: '1.0', release: 'a-b' })).toThrow(
      /invalid release/,
    );
    expect(() => validateLabPackageSpec({ name: 'labdemo', version: '1.0', arch: 'x_y' })).toThrow(
      /invalid arch/,
    );
    expect(() =>
      validateLabPackageSpec({ name: 'labdemo', version: '1.0', summary: 'one\nDepends: evil' }),
    ).toThrow(/invalid summary/);
    expect(() =>
      validateLabPackageSpec({ name: 'labdemo', version: '1.0', depends: ['ok', 'x; rm'] }),
    ).toThrow(/invalid depends\[1\]/);
  });

  it('LAB_PACKAGE_NAME — Debian policy names only', () => {
    expect(['labdemo', 'lib2.0+x', 'a-b'].every((n) => LAB_PACKAGE_NAME.test(n))).toBe(true);
    expect(['a', '-x', 'Lab', 'a_b', 'a b', ''].some((n) => LAB_PACKAGE_NAME.test(n))).toBe(false);
  });

  it('packageFileName — names files as dpkg-deb and rpmbuild do, translating arch names', () => {
    expect(debFileName(labdemoNew)).toBe('labdemo_1.1-1_all.deb');
    expect(rpmFileName(labdemoNew)).toBe('labdemo-1.1-1.noarch.rpm');
    expect(packageFileName({ ...labdemoNew, arch: 'amd64', release: '2' }, 'rpm')).toBe(
      'labdemo-1.1-2.x86_64.rpm',
    );
    expect(packageFileName({ ...labdemoNew, arch: 'x86_64' }, 'deb')).toBe('labdemo_1.1-1_amd64.deb');
    expect(packageVersion(labdemoNew)).toBe('1.1-1');
  });

  it('renderUpdateinfo — real-repo shape, escaped text, severity only when given', () => {
    const xml = renderUpdateinfo([
      { ...ADVISORIES[0]!, title: 'a <b> & "c" \'d\'', description: 'x</description><evil/>' },
      ADVISORIES[1]!,
      { ...ADVISORIES[2]!, severity: undefined, issued: '2026-01-17T08:30:00Z', updated: '2026-01-18' },
    ]);
    expect(xml).toContain('<update from="lab@fleetward" status="final" type="security" version="2.0">');
    expect(xml).toContain('<title>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;</title>');
    expect(xml).toContain('<description>x&lt;/description&gt;&lt;evil/&gt;</description>');
    expect(xml).toContain('<issued date="2026-01-15 00:00:00"/>');
    expect(xml).toContain('<issued date="2026-01-17 08:30:00"/>');
    expect(xml).toContain('<updated date="2026-01-18 00:00:00"/>');
    expect(xml).toContain(
      '<reference href="https://www.cve.org/CVERecord?id=CVE-2026-0001" id="CVE-2026-0001"',
    );
    expect(xml).toContain(
      '<package name="labdemo" version="1.1" release="1" epoch="0" arch="noarch" src="labdemo-1.1-1.src.rpm">',
    );
    expect(xml).toContain('<filename>labdemo-1.1-1.noarch.rpm</filename>');
    expect(xml.match(/<severity>/g)).toHaveLength(2);
    expect(() => renderUpdateinfo([{ ...ADVISORIES[0]!, issued: '15/01/2026' }])).toThrow(/invalid issued/);
    expect(() => renderUpdateinfo([{ ...ADVISORIES[0]!, id: 'LAB 1' }])).toThrow(/invalid id/);
    expect(() =>
      renderUpdateinfo([{ ...ADVISORIES[0]!, severity: 'critical' as unknown as AdvisorySpec['severity'] }]),
    ).toThrow(/invalid severity/);
  });
});

// --- apt ----------------------------------------------------------------------------------------

function dpkgStatus(installed: LabPackageSpec[]): string {
  return installed
    .map((p) =>
      [
        `Package: ${p.name}`,
        'Status: install ok installed',
        'Priority: optional',
        'Section: misc',
        'Installed-Size: 1',
        'Maintainer: Fleetward Lab <lab@fleetward.invalid>',
        `Architecture: ${p.arch ?? 'all'}`,
        `Version: ${packageVersion(p)}`,
        `Description: ${p.name}`,
        '',
      ].join('\n'),
    )
    .join('\n');
}

/**
 * An apt client confined to `root`. Everything goes through APT_CONFIG, because apt reads
 * /etc/apt/apt.conf.d before it parses `-o` options: only APT_CONFIG keeps the host's
 * configuration (and its post-update hooks) out.
 */
async function aptClient(repo: string, suites: string[], installed: LabPackageSpec[]) {
  const root = await tempDir('apt-root');
  for (const sub of ['etc/apt.conf.d', 'etc/preferences.d', 'etc/sources.list.d', 'etc/trusted.gpg.d']) {
    await mkdir(join(root, sub), { recursive: true });
  }
  for (const sub of ['lists/partial', 'cache/archives/partial', 'log', 'download']) {
    await mkdir(join(root, sub), { recursive: true });
  }
  await writeFile(join(root, 'status'), dpkgStatus(installed));
  await writeFile(
    join(root, 'etc', 'sources.list'),
    suites.map((s) => `deb [trusted=yes] file:${repo} ${s} main\n`).join(''),
  );
  const conf = [
    `Dir "${root}/";`,
    `Dir::State "${root}/";`,
    `Dir::State::lists "${root}/lists/";`,
    `Dir::State::status "${root}/status";`,
    `Dir::State::extended_states "${root}/extended_states";`,
    `Dir::Cache "${root}/cache/";`,
    `Dir::Cache::archives "${root}/cache/archives/";`,
    `Dir::Etc "${root}/etc/";`,
    `Dir::Etc::main "${root}/etc/apt.conf";`,
    `Dir::Etc::parts "${root}/etc/apt.conf.d/";`,
    `Dir::Etc::sourcelist "${root}/etc/sources.list";`,
    `Dir::Etc::sourceparts "${root}/etc/sources.list.d/";`,
    `Dir::Etc::preferences "${root}/etc/preferences";`,
    `Dir::Etc::preferencesparts "${root}/etc/preferences.d/";`,
    `Dir::Etc::trusted "${root}/etc/trusted.gpg";`,
    `Dir::Etc::trustedparts "${root}/etc/trusted.gpg.d/";`,
    `Dir::Log "${root}/log/";`,
    'Dir::Bin::methods "/usr/lib/apt/methods/";',
    'Dir::Bin::dpkg "/usr/bin/dpkg";',
    'APT::Architecture "amd64";',
    'APT::Architectures { "amd64"; };',
    // The temp dirs belong to root; the _apt sandbox user could not read them.
    'APT::Sandbox::User "root";',
    'Debug::NoLocking "true";',
    'Acquire::Languages "none";',
  ];
  const aptConfig = join(root, 'apt.conf');
  await writeFile(aptConfig, `${conf.join('\n')}\n`);
  const env = { APT_CONFIG: aptConfig };
  return {
    root,
    apt: (args: string[], cwd?: string) =>
      runTool('apt-get', args, { env, cwd, okCodes: Array.from({ length: 256 }, (_, i) => i) }),
  };
}

function instLines(output: string): string[] {
  return output.split('\n').filter((l) => l.startsWith('Inst '));
}

const APT_SUITES: AptSuiteSpec[] = [
  { suite: 'lab', origin: 'Debian', label: 'Debian', version: '12', packages: INSTALLED },
  {
    suite: 'lab-updates',
    origin: 'Debian',
    label: 'Debian',
    version: '12',
    packages: [labtoolNew, labplainNew],
  },
  {
    suite: 'lab-security',
    origin: 'Debian',
    label: 'Debian-Security',
    version: '12',
    packages: [labdemoNew, labnew, labtoolNew],
  },
];

const aptTools = needs('dpkg-deb', 'apt-get');
describeIfAvailable('apt repository', aptTools, () => {
  let repo = '';
  let buildMs = 0;
  beforeAll(async () => {
    repo = await tempDir('apt-repo');
    const started = performance.now();
    await buildAptRepository(repo, APT_SUITES);
    buildMs = performance.now() - started;
    console.info(`buildAptRepository: ${APT_SUITES.length} suites, 8 packages in ${buildMs.toFixed(0)} ms`);
  });

  it(`buildDeb — a real .deb with control fields and the version file`, async () => {
    const out = await tempDir('deb');
    const path = await buildDeb({ ...labdemoNew, summary: 'Demo 100% lab' }, out);
    expect(path).toBe(join(out, 'labdemo_1.1-1_all.deb'));
    const control = ok(await probe('dpkg-deb', ['-f', path])).stdout;
    expect(control).toContain('Package: labdemo\n');
    expect(control).toContain('Version: 1.1-1\n');
    expect(control).toContain('Architecture: all\n');
    expect(control).toContain('Maintainer: Fleetward Lab <lab@fleetward.invalid>\n');
    expect(control).toContain('Depends: labnew\n');
    expect(control).toContain('Description: Demo 100% lab\n');
    const listing = ok(await probe('dpkg-deb', ['-c', path])).stdout;
    expect(listing).toMatch(/root\/root .* \.\/usr\/share\/fleetward-lab\/labdemo$/m);
    const extracted = await tempDir('deb-x');
    ok(await probe('dpkg-deb', ['-x', path, extracted]));
    expect(await readFile(join(extracted, 'usr/share/fleetward-lab/labdemo'), 'utf8')).toBe('1.1-1\n');
    // Rebuilding an unchanged spec must not change the bytes a client may already have indexed.
    const again = await buildDeb({ ...labdemoNew, summary: 'Demo 100% lab' }, await tempDir('deb2'));
    expect(await readFile(again)).toEqual(await readFile(path));
    await expect(buildDeb({ name: 'labdemo', version: '1.1-1' }, out)).rejects.toThrow(/invalid version/);
  });

  it(`buildAptRepository — Release fields flow into apt's Inst lines`, async () => {
    const release = await readFile(join(repo, 'dists/lab-security/Release'), 'utf8');
    expect(release).toMatch(/^Origin: Debian\nLabel: Debian-Security\nSuite: lab-security\nVersion: 12\n/);
    expect(release).toMatch(/^Codename: lab-security$/m);
    expect(release).toMatch(/^Architectures: amd64 all$/m);
    expect(release).toMatch(/^Components: main$/m);
    expect(release).toMatch(/^Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} UTC$/m);
    expect(release).toMatch(/^ [0-9a-f]{64} +\d+ main\/binary-all\/Packages\.gz$/m);

    const client = await aptClient(repo, ['lab', 'lab-updates', 'lab-security'], INSTALLED);
    const update = ok(await client.apt(['update']));
    expect(update.stdout + update.stderr).not.toMatch(/^(W|E):/m);
    const sim = ok(await client.apt(['-s', '-V', 'dist-upgrade']));
    const inst = instLines(sim.stdout);
    expect(inst).toContain('Inst labdemo [1.0-1] (1.1-1 Debian-Security:12/lab-security [all])');
    expect(inst).toContain('Inst labnew (1.0-1 Debian-Security:12/lab-security [all])');
    expect(inst).toContain('Inst labplain [1.0-1] (1.1-1 Debian:12/lab-updates [all])');
    expect(inst).toHaveLength(4);
  });

  it(`buildAptRepository — a package in two suites shows both origins`, async () => {
    const client = await aptClient(repo, ['lab', 'lab-updates', 'lab-security'], INSTALLED);
    ok(await client.apt(['update']));
    const inst = instLines(ok(await client.apt(['-s', 'dist-upgrade'])).stdout);
    expect(inst).toContain(
      'Inst labtool [2.0-1] (2.1-1 Debian:12/lab-updates, Debian-Security:12/lab-security [all])',
    );
  });

  it(`buildAptRepository — Filename, Size and hashes are right: apt-get download verifies them`, async () => {
    const client = await aptClient(repo, ['lab-security'], []);
    ok(await client.apt(['update']));
    const download = join(client.root, 'download');
    ok(await client.apt(['download', 'labdemo=1.1-1'], download));
    const fetched = await readFile(join(download, 'labdemo_1.1-1_all.deb'));
    expect(fetched).toEqual(await readFile(join(repo, 'pool/main/l/labdemo/labdemo_1.1-1_all.deb')));
  });

  it(`buildAptRepository — republishing with more packages rewrites the indexes`, async () => {
    const own = await tempDir('apt-repo-republish');
    await buildAptRepository(own, APT_SUITES);
    const client = await aptClient(own, ['lab', 'lab-updates', 'lab-security'], INSTALLED);
    ok(await client.apt(['update']));
    const labplain12: LabPackageSpec = { name: 'labplain', version: '1.2' };
    const security = APT_SUITES[2]!;
    await buildAptRepository(own, [{ ...security, packages: [...security.packages, labplain12] }]);
    ok(await client.apt(['update']));
    const inst = instLines(ok(await client.apt(['-s', 'dist-upgrade'])).stdout);
    expect(inst).toContain('Inst labplain [1.0-1] (1.2-1 Debian-Security:12/lab-security [all])');
    // Suites not passed to the second call keep their indexes.
    expect(inst).toContain(
      'Inst labtool [2.0-1] (2.1-1 Debian:12/lab-updates, Debian-Security:12/lab-security [all])',
    );
    await expect(
      buildAptRepository(own, [{ ...security, packages: [labnew, { ...labnew, depends: ['labdemo'] }] }]),
    ).rejects.toThrow(/two different specs build labnew_1\.0-1_all\.deb/);
    await expect(buildAptRepository(own, [{ ...security, suite: '../x' }])).rejects.toThrow(/invalid suite/);
    await expect(buildAptRepository(own, [{ ...security, label: 'a\nb' }])).rejects.toThrow(/invalid label/);
  });
});

// --- RPM: dnf and zypper --------------------------------------------------------------------------

interface Capture {
  file: string;
  result: ToolResult;
  /** Temp paths to replace by placeholders, so captures do not change with every run. */
  paths: Record<string, string>;
}
const captures: Capture[] = [];

/** Rpm roots seeded like LAB-NOTES says: `rpm --initdb`, then `rpm -i --nodeps` the old builds. */
async function rpmRoot(prefix: string, installed: LabPackageSpec[]): Promise<string> {
  const root = await tempDir(prefix);
  const old = await tempDir(`${prefix}-old`);
  const rpms = await Promise.all(installed.map((p) => buildRpm(p, old)));
  ok(await probe('rpm', ['--root', root, '--initdb']));
  ok(await probe('rpm', ['--root', root, '-i', '--nodeps', ...rpms]));
  return root;
}

/**
 * dnf confined to `root`. --releasever is needed because nothing in the root provides
 * system-release; --config and reposdir keep the host's dnf.conf and repos out. cachedir is
 * deliberately not set: dnf already keeps it under the installroot, and a --setopt=cachedir
 * path gets the installroot prefixed a second time for some files.
 */
async function dnfClient(root: string, repo: string) {
  await mkdir(join(root, 'etc/yum.repos.d'), { recursive: true });
  await mkdir(join(root, 'etc/dnf'), { recursive: true });
  await writeFile(join(root, 'etc/dnf/dnf.conf'), '[main]\ngpgcheck=0\ninstallonly_limit=3\nbest=False\n');
  await writeFile(
    join(root, 'etc/yum.repos.d/lab.repo'),
    `[lab]\nname=Fleetward lab\nbaseurl=file://${repo}\nenabled=1\ngpgcheck=0\n`,
  );
  const base = [
    `--installroot=${root}`,
    `--config=${join(root, 'etc/dnf/dnf.conf')}`,
    `--setopt=reposdir=${join(root, 'etc/yum.repos.d')}`,
    '--releasever=9',
    '--color=never',
  ];
  return (args: string[]) => probe('dnf', [...base, ...args]);
}

/**
 * zypper confined to `root`. ZYPP_LOCKFILE_ROOT moves the zypp.pid lock from the host's /run
 * into the root (parallel runs would otherwise block each other), ZYPP_LOGFILE keeps the
 * host's /var/log/zypper.log untouched, and ZYPPTMPDIR (not TMPDIR) its scratch dirs out of the
 * host's /var/tmp.
 */
async function zypperClient(root: string) {
  await mkdir(join(root, 'tmp'), { recursive: true });
  const env = {
    ZYPP_LOCKFILE_ROOT: root,
    ZYPP_LOGFILE: join(root, 'zypper.log'),
    ZYPPTMPDIR: join(root, 'tmp'),
  };
  return (args: string[]) =>
    probe('zypper', ['--root', root, '--non-interactive', '--no-color', ...args], env);
}

function normalise(text: string, paths: Record<string, string>): string {
  let out = text;
  for (const [placeholder, path] of Object.entries(paths)) out = out.replaceAll(path, placeholder);
  return out;
}

const rpmTools = needs('rpmbuild', 'createrepo_c', 'modifyrepo_c', 'rpm');
const dnfTools = needs('rpmbuild', 'createrepo_c', 'modifyrepo_c', 'rpm', 'dnf');
const zypperTools = needs('rpmbuild', 'createrepo_c', 'modifyrepo_c', 'rpm', 'zypper');

describeIfAvailable('rpm repository', rpmTools, () => {
  let repo = '';
  beforeAll(async () => {
    repo = await tempDir('rpm-repo');
    const started = performance.now();
    await buildRpmRepository(repo, RPM_FIXTURE);
    const ms = performance.now() - started;
    console.info(
      `buildRpmRepository: ${RPM_FIXTURE.packages.length} rpms + 3 advisories in ${ms.toFixed(0)} ms`,
    );
  });

  it(`buildRpm — a noarch rpm with Requires and the version file`, async () => {
    const out = await tempDir('rpm');
    const path = await buildRpm({ ...labdemoNew, summary: 'Demo 100% %{lab}' }, out);
    expect(path).toBe(join(out, 'labdemo-1.1-1.noarch.rpm'));
    const info = ok(
      await probe('rpm', [
        '-qp',
        '--qf',
        '%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{SUMMARY}|%{SOURCERPM}\n',
        path,
      ]),
    );
    expect(info.stdout).toBe('labdemo|1.1|1|noarch|Demo 100% %{lab}|labdemo-1.1-1.src.rpm\n');
    expect(ok(await probe('rpm', ['-qpR', path])).stdout).toMatch(/^labnew$/m);
    expect(ok(await probe('rpm', ['-qpl', path])).stdout.trim()).toBe('/usr/share/fleetward-lab/labdemo');
    const x86 = await buildRpm({ name: 'labarch', version: '1.0', arch: 'amd64' }, out);
    expect(x86).toBe(join(out, 'labarch-1.0-1.x86_64.rpm'));
  });

  it(`buildRpm — builds in parallel without collisions`, async () => {
    const out = await tempDir('rpm-par');
    const specs = Array.from({ length: 8 }, (_, i) => ({ name: `labpar${i}`, version: `1.${i}` }));
    const started = performance.now();
    const paths = await Promise.all(specs.map((s) => buildRpm(s, out)));
    console.info(`buildRpm: 8 rpms in parallel in ${(performance.now() - started).toFixed(0)} ms`);
    expect(paths.map((p) => p.slice(out.length + 1))).toEqual(specs.map(rpmFileName));
    // One spec into two repositories at once: same NEVRA, separate build roots, same bytes.
    const [a, b] = await Promise.all([
      buildRpm(labdemoNew, await tempDir('rpm-twin-a')),
      buildRpm(labdemoNew, await tempDir('rpm-twin-b')),
    ]);
    expect(await readFile(a)).toEqual(await readFile(b));
  });

  it(`buildRpmRepository — repodata has primary and updateinfo`, async () => {
    const repomd = await readFile(join(repo, 'repodata/repomd.xml'), 'utf8');
    expect(repomd).toContain('<data type="primary">');
    expect(repomd).toContain('<data type="updateinfo">');
    await expect(
      buildRpmRepository(await tempDir('rpm-bad'), {
        packages: [labtoolNew],
        advisories: [{ ...ADVISORIES[0]! }],
      }),
    ).rejects.toThrow(/package labdemo-1\.1-1\.noarch\.rpm is not in spec\.packages/);
  });

  describeIfAvailable('dnf', dnfTools, () => {
    let dnf: Awaited<ReturnType<typeof dnfClient>>;
    let paths: Record<string, string> = {};
    const capture = async (file: string, args: string[]) => {
      const result = await dnf(args);
      captures.push({ file, result, paths });
      return result;
    };
    beforeAll(async () => {
      const root = await rpmRoot('dnf-root', INSTALLED);
      dnf = await dnfClient(root, repo);
      paths = { '<ROOT>': root, '<REPO>': repo };
      // Metadata is fetched here so the captures show the steady state, not the download line.
      ok(await dnf(['-q', 'makecache']));
    });

    it(`buildRpmRepository — dnf updateinfo list --security shows the Critical advisory`, async () => {
      const r = ok(await capture('dnf-updateinfo-list-security', ['updateinfo', 'list', '--security']));
      expect(r.stdout).toMatch(/^LAB-2026:0001 Critical\/Sec\. labdemo-1\.1-1\.noarch$/m);
      expect(r.stdout).not.toMatch(/LAB-2026:000[23]/);
    });

    it(`buildRpmRepository — dnf sees the bugfix and enhancement advisories`, async () => {
      const list = ok(await capture('dnf-updateinfo-list-all', ['updateinfo', 'list', '--all']));
      expect(list.stdout).toMatch(/LAB-2026:0002 bugfix +labtool-2\.1-1\.noarch/);
      expect(list.stdout).toMatch(/LAB-2026:0003 enhancement +labextra-1\.0-1\.noarch/);
      expect(list.stdout).not.toMatch(/labplain|labnew/);
      const info = ok(await capture('dnf-updateinfo-info', ['updateinfo', 'info', '--all']));
      expect(info.stdout).toMatch(/Update ID: LAB-2026:0002\n\s+Type: bugfix\n[\s\S]*?Severity: Moderate/);
      expect(info.stdout).toMatch(/Update ID: LAB-2026:0001\n\s+Type: security\n[\s\S]*?CVEs: CVE-2026-0001/);
    });

    it(`buildRpmRepository — dnf check-update exits 100 listing the four upgrades`, async () => {
      const r = await capture('dnf-check-update', ['check-update']);
      expect(r.code).toBe(100);
      const upgrades: Array<[string, string]> = [
        ['labdemo', '1.1-1'],
        ['labtool', '2.1-1'],
        ['labextra', '1.0-1'],
        ['labplain', '1.1-1'],
      ];
      for (const [name, version] of upgrades) {
        expect(r.stdout).toMatch(
          new RegExp(`^${name}\\.noarch +${version.replaceAll('.', '\\.')} +lab *$`, 'm'),
        );
      }
      expect(r.stdout).not.toMatch(/^labnew/m);
      // Captured for parsers: after a fresh download a progress line replaces the
      // "Last metadata expiration check" line (neither is guaranteed, so not asserted).
      const fresh = await capture('dnf-check-update-refresh', ['check-update', '--refresh']);
      expect(fresh.code).toBe(100);
      expect(fresh.stdout).toMatch(/^labdemo\.noarch +1\.1-1 +lab *$/m);
    });

    it(`buildRpmRepository — dnf repoquery --upgrades and a dry-run upgrade pulling labnew`, async () => {
      const qf = '"%{NAME}" "%{EPOCH}" "%{VERSION}" "%{RELEASE}" "%{REPONAME}"';
      const rq = ok(await capture('dnf-repoquery-upgrades', ['repoquery', '--upgrades', '--qf', qf, '-q']));
      expect(rq.stdout.trim().split('\n').sort()).toEqual([
        '"labdemo" "0" "1.1" "1" "lab"',
        '"labextra" "0" "1.0" "1" "lab"',
        '"labplain" "0" "1.1" "1" "lab"',
        '"labtool" "0" "2.1" "1" "lab"',
      ]);
      const dry = await capture('dnf-upgrade-assumeno', ['upgrade', '--assumeno']);
      expect(dry.code).toBe(1);
      expect(dry.stdout).toMatch(/Installing dependencies:\n labnew +noarch +1\.0-1 +lab/);
    });
  });

  describeIfAvailable('zypper', zypperTools, () => {
    let zypper: Awaited<ReturnType<typeof zypperClient>>;
    let paths: Record<string, string> = {};
    const capture = async (file: string, args: string[]) => {
      const result = await zypper(args);
      captures.push({ file, result, paths });
      return result;
    };
    beforeAll(async () => {
      const root = await rpmRoot('zypper-root', INSTALLED);
      zypper = await zypperClient(root);
      paths = { '<ROOT>': root, '<REPO>': repo };
      ok(await zypper(['addrepo', '-G', `file://${repo}`, 'lab']));
      ok(await zypper(['refresh']));
    });

    it(`buildRpmRepository — zypper list-patches reports category and severity`, async () => {
      const xml = ok(await capture('zypper-xml-list-patches', ['--xmlout', 'list-patches'])).stdout;
      expect(xml).toMatch(
        /<update kind="patch" name="LAB-2026:0001" [^>]*category="security" severity="critical"/,
      );
      expect(xml).toMatch(
        /<update kind="patch" name="LAB-2026:0002" [^>]*category="bugfix" severity="moderate"/,
      );
      expect(xml).toMatch(
        /<update kind="patch" name="LAB-2026:0003" [^>]*category="enhancement" severity="low"/,
      );
      expect(xml).toContain('<issue type="cve" id="CVE-2026-0001">');
      const plain = ok(await capture('zypper-list-patches', ['list-patches'])).stdout;
      expect(plain).toMatch(/^lab +\| LAB-2026:0001 \| security +\| critical +\|.*\| needed +\|/m);
    });

    it(`buildRpmRepository — zypper list-updates lists the package upgrades`, async () => {
      const xml = ok(await capture('zypper-xml-list-updates', ['--xmlout', 'list-updates'])).stdout;
      expect(xml).toMatch(
        /<update kind="package" name="labdemo" edition="1\.1-1" arch="noarch" edition-old="1\.0-1"/,
      );
      expect(xml).toMatch(/name="labplain" edition="1\.1-1"/);
      expect(xml).not.toMatch(/name="labnew"/);
      const plain = ok(await capture('zypper-list-updates', ['list-updates'])).stdout;
      expect(plain).toMatch(/\| labdemo +\| 1\.0-1 +\| 1\.1-1 +\| noarch/);
    });
  });

  describeIfAvailable('republishing', dnfTools ?? zypperTools, () => {
    it(`buildRpmRepository — a rebuild publishes a new advisory to dnf and zypper`, async () => {
      const own = await tempDir('rpm-repo-republish');
      await buildRpmRepository(own, RPM_FIXTURE);
      const root = await rpmRoot('republish-root', INSTALLED);
      const dnf = await dnfClient(root, own);
      const zypper = await zypperClient(root);
      ok(await zypper(['addrepo', '-G', `file://${own}`, 'lab']));
      ok(await zypper(['refresh']));
      ok(await dnf(['-q', 'makecache']));

      const labplain12: LabPackageSpec = { name: 'labplain', version: '1.2' };
      const noSeverity: AdvisorySpec = {
        id: 'LAB-2026:0004',
        type: 'bugfix',
        title: 'labplain bug fix update',
        issued: '2026-02-01',
        rebootSuggested: true,
        packages: [labplain12],
      };
      await buildRpmRepository(own, {
        packages: [...RPM_FIXTURE.packages, labplain12],
        advisories: [...ADVISORIES, noSeverity],
      });
      const repodata = await readdir(join(own, 'repodata'));
      expect(repodata.filter((f) => f.includes('updateinfo'))).toHaveLength(1);

      const list = ok(await dnf(['-q', '--refresh', 'updateinfo', 'list', '--all']));
      expect(list.stdout).toMatch(/LAB-2026:0004 bugfix +labplain-1\.2-1\.noarch/);
      expect(list.stdout).toMatch(/LAB-2026:0001 Critical\/Sec\. labdemo-1\.1-1\.noarch/);
      const info = ok(await dnf(['-q', 'updateinfo', 'info', 'LAB-2026:0004']));
      expect(info.stdout).toContain('Update ID: LAB-2026:0004');
      expect(info.stdout).not.toContain('Severity');

      ok(await zypper(['refresh']));
      const xml = ok(await zypper(['--xmlout', 'list-patches'])).stdout;
      expect(xml).toMatch(/name="LAB-2026:0004" [^>]*category="bugfix" severity=""[^>]*restart="true"/);
      expect(ok(await zypper(['--xmlout', 'list-updates'])).stdout).toMatch(
        /name="labplain" edition="1\.2-1"/,
      );
    });
  });
});

afterAll(async () => {
  if (!CAPTURE || captures.length === 0) return;
  await mkdir(CAPTURED_DIR, { recursive: true });
  const rows: string[] = [];
  for (const { file, result, paths } of captures) {
    const files = [`${file}.stdout.txt`];
    await writeFile(join(CAPTURED_DIR, files[0]!), normalise(result.stdout, paths));
    if (result.stderr !== '') {
      files.push(`${file}.stderr.txt`);
      await writeFile(join(CAPTURED_DIR, files[1]!), normalise(result.stderr, paths));
    }
    const argv = result.argv.map((a) => normalise(a, paths));
    const env =
      argv[0] === 'zypper'
        ? 'ZYPP_LOCKFILE_ROOT=<ROOT> ZYPP_LOGFILE=<ROOT>/zypper.log ZYPPTMPDIR=<ROOT>/tmp '
        : '';
    rows.push(
      `| ${files.map((f) => `\`${f}\``).join('<br>')} | \`${env}${formatArgv(argv)}\` | ${result.code} |`,
    );
  }
  const readme = await readFile(join(CAPTURED_DIR, 'README.md'), 'utf8').catch(() => '');
  const marker = '<!-- captures -->';
  const head = readme.includes(marker) ? readme.slice(0, readme.indexOf(marker)) : `${readme}\n`;
  const table = ['| Files | Command | Exit code |', '|---|---|---|', ...rows].join('\n');
  await writeFile(join(CAPTURED_DIR, 'README.md'), `${head}${marker}\n${table}\n`);
});
