/**
 * Real `.rpm` packages via rpmbuild, and RPM repositories (createrepo_c + updateinfo.xml via
 * modifyrepo_c) that dnf and zypper both read.
 */
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLimiter, runTool } from './exec.js';
import {
  buildKey,
  LAB_SOURCE_DATE_EPOCH,
  labFileContent,
  type ResolvedAdvisory,
  type ResolvedPackage,
  resolveAdvisory,
  resolveRpmPackage,
  rpmFileName,
} from './spec.js';
import type { LabPackageSpec, RpmRepositorySpec } from './types.js';
import { renderResolvedUpdateinfo } from './updateinfo.js';

/** Options for {@link buildRpmRepository}. */
export interface RpmRepositoryOptions {
  /**
   * Compression of repodata. `gz` is the one every dnf/yum/zypper reads (zstd needs libzypp
   * and libsolv built with it). @default 'gz'
   */
  compression?: 'gz' | 'xz' | 'zstd';
}

// rpmbuild is mostly process start-up and I/O, so a little more than the core count pays off;
// more than that only thrashes on the 2-core lab machines.
const RPMBUILD_CONCURRENCY = Math.min(4, Math.max(2, availableParallelism()));
const rpmbuildLimit = createLimiter(RPMBUILD_CONCURRENCY);

const SHELL_SAFE_PATH = /^[A-Za-z0-9_./+-]+$/;

interface SharedTopdir {
  dir: Promise<string>;
  users: number;
}
let shared: SharedTopdir | undefined;

async function createTopdir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetward-rpmbuild-'));
  // rpmbuild creates the standard subdirs itself, but parallel runs race on it ("File exists").
  for (const sub of ['SPECS', 'SOURCES', 'BUILD', 'BUILDROOT', 'RPMS', 'SRPMS']) await mkdir(join(dir, sub));
  return dir;
}

/**
 * Runs `fn` with the shared `_topdir`: one temp dir for every build in flight (a batch of
 * parallel builds reuses it), removed as soon as the last of them ends. A process-lifetime
 * dir would leak, because test workers are often ended without an `exit` event. Each build
 * still gets its own work dir inside (spec, source, BUILD, BUILDROOT, RPMS): rpmbuild names
 * the build root after the NEVRA, so two builds of one spec into different repositories
 * would otherwise delete each other's files.
 */
async function withTopdir<T>(fn: (topdir: string) => Promise<T>): Promise<T> {
  if (shared === undefined) {
    shared = { dir: createTopdir(), users: 0 };
  }
  const mine = shared;
  mine.users++;
  try {
    return await fn(await mine.dir);
  } finally {
    mine.users--;
    if (mine.users === 0) {
      if (shared === mine) shared = undefined;
      const dir = await mine.dir.catch(() => undefined);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    }
  }
}

/** `%` starts a macro in a spec file; everything else in a validated summary is literal. */
function specText(text: string): string {
  return text.replaceAll('%', '%%');
}

function specFile(p: ResolvedPackage, source: string): string {
  const lines = [
    `Name: ${p.name}`,
    `Version: ${p.version}`,
    `Release: ${p.release}`,
    `Summary: ${specText(p.summary)}`,
    'License: Apache-2.0',
    'URL: https://fleetward.invalid/lab',
    `BuildArch: ${p.arch}`,
    ...p.depends.map((dep) => `Requires: ${dep}`),
    ...p.replaces.map((other) => `Obsoletes: ${other}`),
    `Source0: ${source}`,
    '',
    '%description',
    'Fleetward lab test package; installs /usr/share/fleetward-lab/%{name}.',
    '',
    // Only macros here: no spec value is ever pasted into the %install shell script.
    '%install',
    'install -D -m 0644 "%{SOURCE0}" "%{buildroot}/usr/share/fleetward-lab/%{name}"',
    '',
    '%files',
    '/usr/share/fleetward-lab/%{name}',
    '',
  ];
  return lines.join('\n');
}

const RPMBUILD_DEFINES = [
  // Uncompressed gzip payload: the files are tiny and compression is most of the build time.
  '_binary_payload w0.gzdio',
  'debug_package %{nil}',
  // Skips brp-strip, brp-compress and friends: nothing to strip, and they fork a dozen times.
  '__os_install_post %{nil}',
  '_build_id_links none',
  '_buildhost fleetward-lab',
  'use_source_date_epoch_as_buildtime 1',
  'clamp_mtime_to_source_epoch 1',
  '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm',
];

async function buildResolvedRpm(p: ResolvedPackage, outDir: string): Promise<string> {
  const file = `${p.name}-${p.version}-${p.release}.${p.arch}.rpm`;
  await mkdir(outDir, { recursive: true });
  // The topdir is taken before queueing, so builds waiting for a slot keep it alive.
  return withTopdir((top) =>
    rpmbuildLimit(async () => {
      const work = await mkdtemp(join(top, `${p.name}-${p.version}-${p.release}.${p.arch}-`));
      try {
        // rpmbuild expands %{buildroot} and %{SOURCE0} into its /bin/sh scripts: a TMPDIR
        // with quotes, `$` or spaces would be shell syntax there.
        if (!SHELL_SAFE_PATH.test(work)) {
          throw new Error(
            `rpmbuild: temp dir ${JSON.stringify(work)} is not a plain path; set TMPDIR to one`,
          );
        }
        await writeFile(join(work, 'lab-file.txt'), labFileContent(p), { mode: 0o644 });
        await writeFile(join(work, 'lab.spec'), specFile(p, 'lab-file.txt'));
        const args = ['-bb', '--quiet', '--nodeps', '--noclean', '--buildroot', join(work, 'BUILDROOT')];
        const dirs = {
          _topdir: top,
          _sourcedir: work,
          _builddir: join(work, 'BUILD'),
          _rpmdir: join(work, 'RPMS'),
        };
        for (const [macro, dir] of Object.entries(dirs)) args.push('--define', `${macro} ${dir}`);
        args.push('--define', `_tmppath ${work}`);
        for (const define of RPMBUILD_DEFINES) args.push('--define', define);
        if (p.arch !== 'noarch') args.push('--target', p.arch);
        args.push(join(work, 'lab.spec'));
        // HOME keeps the invoking user's ~/.rpmmacros out of lab builds.
        await runTool('rpmbuild', args, { env: { HOME: top, SOURCE_DATE_EPOCH: LAB_SOURCE_DATE_EPOCH } });
        const target = join(outDir, file);
        const partial = join(outDir, `.${file}.partial-${process.pid}-${work.slice(-6)}`);
        // Copy then rename: /tmp and outDir may be different file systems, and a reader of
        // outDir must never see half an rpm.
        try {
          await copyFile(join(work, 'RPMS', file), partial);
          await rename(partial, target);
        } finally {
          await rm(partial, { force: true });
        }
        return target;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }),
  );
}

/**
 * Builds a real `.rpm` for `spec` into `outDir` with `rpmbuild -bb` and returns its path
 * (`outDir/<name>-<version>-<release>.<arch>.rpm`). The package holds one file,
 * `/usr/share/fleetward-lab/<name>` (content `<version>-<release>\n`), and `Requires:` each
 * of `depends`. `arch` defaults to `noarch`; Debian names (`all`, `amd64`) are translated.
 * Concurrent builds share one temporary `_topdir` and run at most 2–4 at a time however
 * many are started.
 *
 * @throws Error naming the field when `spec` breaks the lab grammar.
 */
export async function buildRpm(spec: LabPackageSpec, outDir: string): Promise<string> {
  return buildResolvedRpm(resolveRpmPackage(spec), outDir);
}

function checkAdvisories(
  spec: RpmRepositorySpec,
  packages: Map<string, ResolvedPackage>,
): ResolvedAdvisory[] {
  const seen = new Set<string>();
  return (spec.advisories ?? []).map((advisory) => {
    const resolved = resolveAdvisory(advisory);
    if (seen.has(resolved.id)) throw new Error(`advisory ${JSON.stringify(resolved.id)}: listed twice`);
    seen.add(resolved.id);
    for (const p of resolved.packages) {
      const file = `${p.name}-${p.version}-${p.release}.${p.arch}.rpm`;
      // An advisory naming a build the repository lacks is silently ignored by dnf and
      // zypper, which would make a test pass or fail for the wrong reason.
      if (!packages.has(file)) {
        throw new Error(`advisory ${JSON.stringify(resolved.id)}: package ${file} is not in spec.packages`);
      }
    }
    return resolved;
  });
}

/**
 * Builds (or rebuilds) an RPM repository in `dir` that dnf, yum and zypper read as
 * `baseurl=file://DIR` (dnf/yum, `gpgcheck=0`) or `zypper ar -G file://DIR`.
 *
 * The rpms land flat in `dir`; `createrepo_c` indexes exactly `spec.packages` (other rpm
 * files left in `dir` by earlier calls are ignored, via `--pkglist`), and when
 * `spec.advisories` is non-empty an `updateinfo.xml` is added with
 * `modifyrepo_c --mdtype=updateinfo`. With no advisories the repository has no updateinfo at
 * all, like CentOS 7. Calling it again on the same `dir` republishes: `repodata/` is replaced
 * as a whole (createrepo_c `--update` reuses the entries of unchanged rpms). Not safe to run
 * twice concurrently on one `dir`.
 *
 * @throws Error naming the field for a bad package or advisory, when two specs for one rpm
 *   file differ, or when an advisory lists a build that is not in `spec.packages`.
 */
export async function buildRpmRepository(
  dir: string,
  spec: RpmRepositorySpec,
  options: RpmRepositoryOptions = {},
): Promise<void> {
  if (!Array.isArray(spec?.packages)) throw new Error('rpm repository: packages must be an array');
  const packages = new Map<string, ResolvedPackage>();
  const keys = new Map<string, string>();
  for (const pkgSpec of spec.packages) {
    const p = resolveRpmPackage(pkgSpec);
    const file = rpmFileName(pkgSpec);
    const key = buildKey(p);
    if (keys.has(file) && keys.get(file) !== key) {
      throw new Error(
        `rpm repository: two different specs build ${file}; give one another version or release`,
      );
    }
    keys.set(file, key);
    packages.set(file, p);
  }
  const advisories = checkAdvisories(spec, packages);
  const compression = options.compression ?? 'gz';

  await mkdir(dir, { recursive: true });
  await Promise.all([...packages.values()].map((p) => buildResolvedRpm(p, dir)));

  const work = await mkdtemp(join(tmpdir(), 'fleetward-rpmrepo-'));
  try {
    const pkglist = join(work, 'pkglist');
    await writeFile(
      pkglist,
      [...packages.keys()]
        .sort()
        .map((f) => `${f}\n`)
        .join(''),
    );
    const args = ['--quiet', '--no-database', `--general-compress-type=${compression}`, '--pkglist', pkglist];
    // --update trusts size+mtime of unchanged rpms; old updateinfo is dropped (no
    // --keep-all-metadata) and written afresh below.
    args.push('--update', dir);
    await runTool('createrepo_c', args);
    if (advisories.length > 0) {
      const xml = join(work, 'updateinfo.xml');
      await writeFile(xml, renderResolvedUpdateinfo(advisories));
      await runTool('modifyrepo_c', [
        '--mdtype=updateinfo',
        `--compress-type=${compression}`,
        xml,
        join(dir, 'repodata'),
      ]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
