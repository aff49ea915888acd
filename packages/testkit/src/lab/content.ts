/**
 * Builds the lab's packages and repositories once and reuses them: every build lands in a
 * content-addressed dir under /run/fleetward-lab/cache keyed by the spec and the builders'
 * source, so a second lab (in this process, another worker or the next run) with the same
 * content starts without running dpkg-deb, rpmbuild or createrepo_c at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAptRepository, buildDeb, buildRpm, buildRpmRepository } from './repos/build.js';
import type { AptSuiteSpec, LabPackageSpec, RpmRepositorySpec } from './repos/types.js';
import { ensureRunDir, LAB_CACHE_DIR } from './state.js';

/** Bump when the layout of cache entries changes. */
const CACHE_FORMAT = 1;
const COMPLETE = '.complete';
/** Entries unused this long are deleted when a lab starts. */
const CACHE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

const inProcess = new Map<string, Promise<string>>();
let fingerprint: string | undefined;
let pruned = false;

/**
 * Hash of the code that builds packages: the builders' sources when running from src/, the
 * bundle when running from dist/. A changed builder never reuses an old build.
 */
function builderFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const hash = createHash('sha256').update(`format ${CACHE_FORMAT}\n`);
  const here = dirname(fileURLToPath(import.meta.url));
  const reposDir = join(here, 'repos');
  const dirs = existsSync(reposDir) ? [reposDir] : [here, dirname(here)];
  for (const dir of dirs) {
    for (const file of readdirSync(dir).sort()) {
      if (!/\.(ts|js|mjs)$/.test(file)) continue;
      hash.update(file).update(readFileSync(join(dir, file)));
    }
  }
  fingerprint = hash.digest('hex').slice(0, 16);
  return fingerprint;
}

function cacheKey(kind: string, spec: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify({ kind, spec, builder: builderFingerprint() }))
    .digest('hex')
    .slice(0, 32);
}

/**
 * The cache entry for (`kind`, `spec`), built by `build(dir)` if needed. Concurrent builders of
 * one key (other processes) race harmlessly: each builds in a private dir and the first rename
 * wins.
 */
function cached(kind: string, spec: unknown, build: (dir: string) => Promise<void>): Promise<string> {
  const key = `${kind}-${cacheKey(kind, spec)}`;
  let entry = inProcess.get(key);
  if (!entry) {
    entry = buildEntry(key, build);
    inProcess.set(key, entry);
    entry.catch(() => inProcess.delete(key));
  }
  return entry;
}

async function buildEntry(key: string, build: (dir: string) => Promise<void>): Promise<string> {
  ensureRunDir();
  pruneOnce();
  const final = join(LAB_CACHE_DIR, key);
  if (existsSync(join(final, COMPLETE))) {
    touch(final);
    return final;
  }
  const staging = join(LAB_CACHE_DIR, `.build-${key}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true, mode: 0o755 });
  try {
    await build(staging);
    await writeFile(join(staging, COMPLETE), `${new Date().toISOString()}\n`);
    try {
      await rename(staging, final);
    } catch {
      // Another builder won the race, or a crashed one left a half-written entry to replace.
      if (!existsSync(join(final, COMPLETE))) {
        await rm(final, { recursive: true, force: true });
        await rename(staging, final);
      }
    }
    return final;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function touch(dir: string): void {
  try {
    const now = new Date();
    utimesSync(dir, now, now);
  } catch {
    // Best effort: only used for pruning.
  }
}

function pruneOnce(): void {
  if (pruned) return;
  pruned = true;
  const limit = Date.now() - CACHE_MAX_AGE_MS;
  for (const entry of readdirSync(LAB_CACHE_DIR)) {
    const path = join(LAB_CACHE_DIR, entry);
    try {
      if (statSync(path).mtimeMs < limit) void rm(path, { recursive: true, force: true });
    } catch {
      // Removed concurrently.
    }
  }
}

/** Directory of a built apt repository serving `suites`. */
export function aptRepository(suites: readonly AptSuiteSpec[]): Promise<string> {
  const spec = structuredClone(suites) as AptSuiteSpec[];
  // A cached Release file keeps the date of its first build; apt accepts old dates (no Valid-Until).
  return cached('apt', spec, (dir) => buildAptRepository(dir, spec));
}

/** Directory of a built RPM repository (with updateinfo when it has advisories). */
export function rpmRepository(repository: RpmRepositorySpec): Promise<string> {
  const spec = structuredClone(repository) as RpmRepositorySpec;
  return cached('rpm', spec, (dir) => buildRpmRepository(dir, spec));
}

/** Paths of built package files (`.deb` or `.rpm`) for `specs`, sorted by name. */
export async function packageFiles(
  family: 'deb' | 'rpm',
  specs: readonly LabPackageSpec[],
): Promise<string[]> {
  const list = structuredClone(specs) as LabPackageSpec[];
  const dir = await cached(`${family}s`, list, async (out) => {
    const builder = family === 'deb' ? buildDeb : buildRpm;
    await Promise.all(list.map((spec) => builder(spec, out)));
  });
  return (await readdir(dir))
    .filter((f) => f.endsWith(`.${family}`))
    .sort()
    .map((f) => join(dir, f));
}
