/**
 * What the package-hygiene scripts share: finding the published workspace packages, packing
 * them, and running a child process without a shell.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is `scripts/lib/packages.mjs`). */
export const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/**
 * @typedef {object} WorkspacePackage
 * @property {string} name the package name, e.g. `@fleetward/core`
 * @property {string} version the version in its package.json
 * @property {string} dir the absolute path of its folder
 * @property {string} relativeDir its folder relative to the repository root, e.g. `packages/core`
 * @property {Record<string, any>} manifest its parsed package.json
 */

/**
 * Every `packages/<name>/package.json` that is not `"private": true`, sorted by folder name.
 * Found by listing the folder, so a new package is checked without editing any list.
 *
 * @returns {WorkspacePackage[]}
 */
export function publishedPackages() {
  const packagesDir = join(repoRoot, 'packages');
  const found = [];
  for (const entry of readdirSync(packagesDir, { withFileTypes: true })) {
    const manifestPath = join(packagesDir, entry.name, 'package.json');
    if (!entry.isDirectory() || !existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (manifest.private === true) continue;
    found.push({
      name: manifest.name,
      version: manifest.version,
      dir: join(packagesDir, entry.name),
      relativeDir: `packages/${entry.name}`,
      manifest,
    });
  }
  return found.sort((a, b) => a.relativeDir.localeCompare(b.relativeDir));
}

/**
 * The packages whose `files` are missing (not built). Checked before packing, because `npm pack`
 * happily packs a package without its `dist/` and the failures that follow are confusing.
 *
 * @param {WorkspacePackage[]} packages
 * @returns {string[]} one line per unbuilt package
 */
export function unbuiltPackages(packages) {
  return packages
    .filter((pkg) => (pkg.manifest.files ?? []).some((file) => !existsSync(join(pkg.dir, file))))
    .map((pkg) => `${pkg.name}: ${pkg.relativeDir}/${pkg.manifest.files.join(', ')} missing`);
}

/**
 * @typedef {object} RunResult
 * @property {number} code the exit code (1 when the process could not start or was killed)
 * @property {string} stdout
 * @property {string} stderr
 * @property {number} ms how long it ran
 */

/**
 * Runs `file` with `args` (no shell) and resolves with its exit code and output; never rejects
 * for a non-zero exit, so callers can report every failure instead of stopping at the first.
 *
 * @param {string} file
 * @param {string[]} args
 * @param {import('node:child_process').ExecFileOptions} [options]
 * @returns {Promise<RunResult>}
 */
export function run(file, args, options = {}) {
  const started = performance.now();
  return new Promise((resolveRun) => {
    execFile(file, args, { maxBuffer: 64 * 1024 * 1024, ...options }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      const spawnFailure = error && typeof error.code !== 'number' ? `${error.message}\n` : '';
      resolveRun({
        code,
        stdout: String(stdout),
        stderr: spawnFailure + String(stderr),
        ms: performance.now() - started,
      });
    });
  });
}

/**
 * Runs a package's bin script with the current Node, found through its package.json (not
 * `node_modules/.bin`, whose entries are shell shims on some systems).
 *
 * @param {string} packageName e.g. `@arethetypeswrong/cli`
 * @param {string} binName the key in its `bin` field
 * @returns {string} the absolute path of the script
 */
export function binPath(packageName, binName) {
  const packageDir = join(repoRoot, 'node_modules', packageName);
  const { bin } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  const relative = typeof bin === 'string' ? bin : bin?.[binName];
  if (!relative) throw new Error(`${packageName} has no bin named ${binName}`);
  return join(packageDir, relative);
}

/**
 * @typedef {object} Tarball
 * @property {string} path the absolute path of the `.tgz`
 * @property {string} filename
 * @property {string} integrity its `sha512-…` integrity, as npm computes it
 */

/**
 * Packs every package with one `npm pack` (one npm start-up instead of one per package).
 * Lifecycle scripts are skipped: the packages are built beforehand and none has a `prepack`.
 *
 * @param {WorkspacePackage[]} packages
 * @param {string} destination an existing folder
 * @returns {Promise<Map<string, Tarball>>} by package name
 */
export async function packPackages(packages, destination) {
  const args = ['pack', '--json', '--ignore-scripts', '--pack-destination', destination];
  for (const pkg of packages) args.push('--workspace', pkg.relativeDir);
  const result = await run('npm', args, { cwd: repoRoot });
  if (result.code !== 0) throw new Error(`npm pack failed (exit ${result.code}):\n${result.stderr}`);
  const tarballs = new Map();
  for (const packed of JSON.parse(result.stdout)) {
    tarballs.set(packed.name, {
      path: join(destination, packed.filename),
      filename: packed.filename,
      integrity: packed.integrity,
    });
  }
  const missing = packages.filter((pkg) => !tarballs.has(pkg.name)).map((pkg) => pkg.name);
  if (missing.length > 0) {
    throw new Error(
      `npm pack produced no tarball for ${missing.join(', ')}: is its folder listed in the root package.json "workspaces"?`,
    );
  }
  return tarballs;
}

/**
 * Runs `task` over `items` with at most `limit` at once, keeping the input order in the result.
 *
 * @template T, R
 * @param {T[]} items
 * @param {number} limit
 * @param {(item: T) => Promise<R>} task
 * @returns {Promise<R[]>}
 */
export async function mapLimited(items, limit, task) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Formats milliseconds for a CI log line.
 *
 * @param {number} ms
 * @returns {string}
 */
export function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}
