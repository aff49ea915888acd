/**
 * Real `.deb` packages and an unsigned apt repository (pool + dists) built from lab specs.
 * Indexes are written by hand rather than with apt-ftparchive so the lab needs only dpkg-deb,
 * which every Debian machine has.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createLimiter, runTool, writeFileAtomic } from './exec.js';
import {
  APT_SUITE,
  buildKey,
  checkOneLine,
  debFileName,
  LAB_MAINTAINER,
  LAB_SOURCE_DATE_EPOCH,
  labFileContent,
  type ResolvedPackage,
  resolveDebPackage,
} from './spec.js';
import type { AptSuiteSpec, LabPackageSpec } from './types.js';

/** Options for {@link buildAptRepository}. */
export interface AptRepositoryOptions {
  /** `Date:` of the Release files. apt rejects dates in the future. @default now */
  date?: Date;
  /** Parallel dpkg-deb runs. @default 4 */
  concurrency?: number;
}

function controlFile(p: ResolvedPackage): string {
  const lines = [
    `Package: ${p.name}`,
    `Version: ${p.version}-${p.release}`,
    `Architecture: ${p.arch}`,
    `Maintainer: ${LAB_MAINTAINER}`,
    'Installed-Size: 1',
  ];
  if (p.depends.length > 0) lines.push(`Depends: ${p.depends.join(', ')}`);
  if (p.replaces.length > 0) {
    lines.push(`Conflicts: ${p.replaces.join(', ')}`, `Replaces: ${p.replaces.join(', ')}`);
  }
  lines.push(
    'Section: misc',
    'Priority: optional',
    `Description: ${p.summary}`,
    ` Fleetward lab test package; installs /usr/share/fleetward-lab/${p.name}.`,
  );
  return `${lines.join('\n')}\n`;
}

async function buildResolvedDeb(p: ResolvedPackage, outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const target = join(outDir, `${p.name}_${p.version}-${p.release}_${p.arch}.deb`);
  // Staged inside outDir so the final rename never crosses file systems.
  const stage = await mkdtemp(join(outDir, '.fleetward-deb-'));
  try {
    const root = join(stage, 'root');
    const dataDir = join(root, 'usr', 'share', 'fleetward-lab');
    await mkdir(join(root, 'DEBIAN'), { recursive: true });
    await mkdir(dataDir, { recursive: true });
    // dpkg-deb rejects a DEBIAN dir with odd permissions, and the caller's umask is unknown.
    for (const dir of [root, join(root, 'DEBIAN'), join(root, 'usr'), join(root, 'usr', 'share'), dataDir]) {
      await chmod(dir, 0o755);
    }
    await writeFile(join(root, 'DEBIAN', 'control'), controlFile(p), { mode: 0o644 });
    await writeFile(join(dataDir, p.name), labFileContent(p), { mode: 0o644 });
    const built = join(stage, 'out.deb');
    await runTool('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '--build', root, built], {
      env: { SOURCE_DATE_EPOCH: LAB_SOURCE_DATE_EPOCH },
    });
    await rename(built, target);
    return target;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * Builds a real `.deb` for `spec` into `outDir` with `dpkg-deb --build` and returns its path
 * (`outDir/<name>_<version>-<release>_<arch>.deb`). The package holds one file,
 * `/usr/share/fleetward-lab/<name>`, whose content is `<version>-<release>\n`. `arch`
 * defaults to `all`; RPM names (`noarch`, `x86_64`) are translated.
 *
 * @throws Error naming the field when `spec` breaks the Debian/lab grammar.
 */
export async function buildDeb(spec: LabPackageSpec, outDir: string): Promise<string> {
  return buildResolvedDeb(resolveDebPackage(spec), outDir);
}

/** Debian's pool layout: `pool/main/l/labdemo/`, `pool/main/libf/libfoo/`. */
function poolDir(name: string): string {
  const prefix = name.startsWith('lib') && name.length > 3 ? name.slice(0, 4) : name.slice(0, 1);
  return `pool/main/${prefix}/${name}`;
}

interface PoolEntry {
  pkg: ResolvedPackage;
  key: string;
  /** Path relative to the repository root, as `Filename:` wants it. */
  filename: string;
  stanza?: string;
}

function digest(algorithm: string, data: Uint8Array): string {
  return createHash(algorithm).update(data).digest('hex');
}

/** `Fri, 27 Nov 2026 02:10:18 UTC`, the form Debian's Release files use. */
function releaseDate(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new Error('buildAptRepository: options.date is not a valid date');
  return date.toUTCString().replace(/GMT$/, 'UTC');
}

async function packageStanza(repoDir: string, entry: PoolEntry): Promise<string> {
  const path = join(repoDir, entry.filename);
  // The control paragraph is read back from the built .deb so the index can never disagree with it.
  const { stdout } = await runTool('dpkg-deb', ['-f', path]);
  const bytes = await readFile(path);
  return [
    stdout.trimEnd(),
    `Filename: ${entry.filename}`,
    `Size: ${bytes.length}`,
    `MD5sum: ${digest('md5', bytes)}`,
    `SHA256: ${digest('sha256', bytes)}`,
  ].join('\n');
}

function compareEntries(a: PoolEntry, b: PoolEntry): number {
  return a.pkg.name.localeCompare(b.pkg.name) || a.filename.localeCompare(b.filename);
}

/**
 * Builds (or rebuilds) an unsigned apt repository in `dir`, usable as
 * `deb [trusted=yes] file:DIR SUITE main` or `deb [trusted=yes] http://HOST:PORT/ SUITE main`.
 *
 * Layout: `pool/main/<x>/<name>/*.deb`, and per suite `dists/<suite>/Release` (Origin, Label,
 * Suite, Codename, optional Version, Date, `Architectures: amd64 all` plus any other package
 * architecture, `Components: main`, MD5Sum and SHA256) with
 * `dists/<suite>/main/binary-<arch>/Packages` and `Packages.gz` for every listed architecture.
 * `Architecture: all` packages go to `binary-all` only, which apt ≥ 1.1 reads because the
 * Release file lists `all`.
 *
 * Calling it again on the same `dir` is the "publish at run time" path: the suites passed
 * get fresh indexes listing exactly their packages now, suites not passed are left as they
 * were, and the pool keeps older files (they are just no longer indexed). Files are replaced
 * by rename, the Release file last. Not safe to run twice concurrently on one `dir`.
 *
 * @throws Error naming the field for a bad suite or package spec, or when two specs for the
 *   same package file differ (e.g. different `depends`).
 */
export async function buildAptRepository(
  dir: string,
  suites: AptSuiteSpec[],
  options: AptRepositoryOptions = {},
): Promise<void> {
  const date = releaseDate(options.date ?? new Date());
  const seenSuites = new Set<string>();
  const pool = new Map<string, PoolEntry>();
  const plan = suites.map((suite) => {
    const where = `apt suite ${JSON.stringify(suite?.suite)}`;
    if (typeof suite?.suite !== 'string' || !APT_SUITE.test(suite.suite)) {
      throw new Error(`${where}: invalid suite: use letters, digits, ".", "_", "+", "-" (one path segment)`);
    }
    if (seenSuites.has(suite.suite)) throw new Error(`${where}: listed twice`);
    seenSuites.add(suite.suite);
    const fields = {
      origin: checkOneLine(where, 'origin', suite.origin),
      label: checkOneLine(where, 'label', suite.label),
      version: suite.version === undefined ? undefined : checkOneLine(where, 'version', suite.version),
    };
    if (!Array.isArray(suite.packages)) throw new Error(`${where}: packages must be an array`);
    const entries = suite.packages.map((spec) => {
      const pkg = resolveDebPackage(spec);
      const file = debFileName(spec);
      const key = buildKey(pkg);
      const known = pool.get(file);
      if (known && known.key !== key) {
        throw new Error(
          `${where}: two different specs build ${file}; give one of them another version or release`,
        );
      }
      const entry = known ?? { pkg, key, filename: `${poolDir(pkg.name)}/${file}` };
      pool.set(file, entry);
      return entry;
    });
    return { suite: suite.suite, ...fields, entries: [...new Set(entries)].sort(compareEntries) };
  });

  const limit = createLimiter(Math.max(1, options.concurrency ?? 4));
  await Promise.all(
    [...pool.values()].map((entry) =>
      limit(async () => {
        await buildResolvedDeb(entry.pkg, join(dir, poolDir(entry.pkg.name)));
        entry.stanza = await packageStanza(dir, entry);
      }),
    ),
  );

  for (const suite of plan) {
    const arches = [...new Set(['amd64', 'all', ...suite.entries.map((e) => e.pkg.arch)])];
    const suiteDir = join(dir, 'dists', suite.suite);
    const indexed: Array<{ path: string; data: Uint8Array }> = [];
    for (const arch of arches) {
      const stanzas = suite.entries.filter((e) => e.pkg.arch === arch).map((e) => `${e.stanza}\n`);
      const packages = Buffer.from(stanzas.join('\n'), 'utf8');
      const rel = `main/binary-${arch}`;
      await mkdir(join(suiteDir, rel), { recursive: true });
      const gz = gzipSync(packages, { level: 9 });
      await writeFileAtomic(join(suiteDir, rel, 'Packages'), packages);
      await writeFileAtomic(join(suiteDir, rel, 'Packages.gz'), gz);
      indexed.push({ path: `${rel}/Packages`, data: packages }, { path: `${rel}/Packages.gz`, data: gz });
    }
    const width = Math.max(...indexed.map((f) => String(f.data.length).length));
    const sums = (algorithm: string) =>
      indexed.map((f) => ` ${digest(algorithm, f.data)} ${String(f.data.length).padStart(width)} ${f.path}`);
    const release = [
      `Origin: ${suite.origin}`,
      `Label: ${suite.label}`,
      `Suite: ${suite.suite}`,
      ...(suite.version === undefined ? [] : [`Version: ${suite.version}`]),
      `Codename: ${suite.suite}`,
      `Date: ${date}`,
      `Architectures: ${arches.join(' ')}`,
      'Components: main',
      `Description: Fleetward lab suite ${suite.suite}`,
      'MD5Sum:',
      ...sums('md5'),
      'SHA256:',
      ...sums('sha256'),
    ];
    await writeFileAtomic(join(suiteDir, 'Release'), `${release.join('\n')}\n`);
  }
}
