#!/usr/bin/env node
/**
 * Package hygiene, run in CI after the build: packs every published workspace package and
 * checks the tarball (exactly what npm would publish) with publint and "Are the types wrong?"
 * (attw), plus the package.json conventions this repository keeps. Prints one line per package
 * and, when something is wrong, what and where; exits 1 then.
 *
 * Usage: node scripts/check-packages.mjs   (after `npm run build`)
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import {
  binPath,
  mapLimited,
  packPackages,
  publishedPackages,
  run,
  seconds,
  unbuiltPackages,
} from './lib/packages.mjs';

const started = performance.now();

/**
 * The attw profile. Every package is ESM only (`"type": "module"`, `exports` with `import`
 * conditions only, see tsup.config.base.ts), so two resolution modes cannot succeed and are not
 * meant to: `node10` (no `exports` support at all) and CommonJS `require` under `node16` (which
 * resolves to ESM). `esm-only` ignores exactly those two and still checks `node16` from ESM and
 * `bundler`, the modes our users compile with; `--ignore-rules cjs-resolves-to-esm` alone would
 * still fail on `node10`.
 */
const ATTW_ARGS = ['--profile', 'esm-only', '--format', 'ascii', '--no-emoji', '--no-color'];

/**
 * Conventions publint does not enforce but every published package here follows.
 *
 * @param {Record<string, any>} manifest
 * @param {string} dir the package's folder (npm always packs its README and LICENSE)
 * @returns {string[]} what is wrong
 */
function conventionProblems(manifest, dir) {
  const problems = [];
  for (const file of ['README.md', 'LICENSE']) {
    if (!existsSync(join(dir, file))) problems.push(`${file} is missing: every tarball carries one`);
  }
  for (const [name, range] of Object.entries({ ...manifest.peerDependencies, ...manifest.dependencies })) {
    if (name.startsWith('@fleetward/') && /^\d/.test(String(range))) {
      problems.push(`${name} "${range}" is exact: a compatible release of it would not install (use ^)`);
    }
  }
  for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
    if (typeof target === 'object' && target !== null && target.import && target.default !== target.import) {
      problems.push(
        `exports["${subpath}"] needs "default" = "import": Node >= 20.19 require()s the ES module`,
      );
    }
  }
  if (manifest.type !== 'module') problems.push('"type" must be "module" (the packages are ESM only)');
  if (manifest.sideEffects === undefined) {
    problems.push('"sideEffects" must be declared: false, or the list of files that act on import');
  }
  if (typeof manifest.engines?.node !== 'string') problems.push('"engines.node" must be declared');
  if (typeof manifest.license !== 'string') problems.push('"license" must be declared');
  if (manifest.exports?.['./package.json'] !== './package.json') {
    problems.push('"exports" must expose "./package.json" (tools read it)');
  }
  if (manifest.publishConfig?.access !== 'public') {
    problems.push('"publishConfig.access" must be "public" (scoped packages are private by default)');
  }
  return problems;
}

/**
 * @param {import('./lib/packages.mjs').WorkspacePackage} pkg
 * @param {import('./lib/packages.mjs').Tarball} tarball
 */
async function checkPackage(pkg, tarball, attwBin) {
  const tarballBytes = readFileSync(tarball.path);
  const [lint, attw] = await Promise.all([
    // The tarball rather than the folder: publint then sees exactly the published files (a file
    // left out by "files" shows as missing) and does not pack a second time.
    publint({
      pack: {
        tarball: tarballBytes.buffer.slice(
          tarballBytes.byteOffset,
          tarballBytes.byteOffset + tarballBytes.byteLength,
        ),
      },
      level: 'suggestion',
      strict: true,
    }),
    run(process.execPath, [attwBin, tarball.path, ...ATTW_ARGS]),
  ]);
  const lintLines = lint.messages.map(
    (message) => `${message.type}: ${formatMessage(message, lint.pkg, { color: false }) ?? message.code}`,
  );
  return {
    pkg,
    // Suggestions are shown but do not fail: publint makes them where a choice is legitimate.
    publintFailed: lint.messages.some((message) => message.type !== 'suggestion'),
    lintLines,
    attwFailed: attw.code !== 0,
    attwOutput: (attw.stdout + attw.stderr).trim(),
    conventions: conventionProblems(pkg.manifest, pkg.dir),
  };
}

async function main() {
  const packages = publishedPackages();
  const unbuilt = unbuiltPackages(packages);
  if (unbuilt.length > 0) {
    console.error(`Not built (run \`npm run build\` first):\n  ${unbuilt.join('\n  ')}`);
    return 1;
  }
  const workDir = mkdtempSync(join(tmpdir(), 'fleetward-check-packages-'));
  try {
    const tarballs = await packPackages(packages, workDir);
    const attwBin = binPath('@arethetypeswrong/cli', 'attw');
    const results = await mapLimited(packages, availableParallelism(), (pkg) =>
      checkPackage(pkg, tarballs.get(pkg.name), attwBin),
    );
    let failures = 0;
    for (const result of results) {
      const failed = result.publintFailed || result.attwFailed || result.conventions.length > 0;
      if (failed) failures++;
      const verdicts = [
        `publint ${result.publintFailed ? 'FAILED' : 'ok'}`,
        `attw ${result.attwFailed ? 'FAILED' : 'ok'}`,
        `package.json ${result.conventions.length > 0 ? 'FAILED' : 'ok'}`,
      ];
      console.log(`${failed ? 'FAIL' : 'ok  '} ${result.pkg.name.padEnd(30)} ${verdicts.join(', ')}`);
      for (const line of result.lintLines) console.log(`       publint ${line}`);
      for (const problem of result.conventions) console.log(`       package.json: ${problem}`);
      if (result.attwFailed) console.log(result.attwOutput.replace(/^/gm, '       attw | '));
    }
    const summary = `${packages.length} packages, ${failures} failing, ${seconds(performance.now() - started)}`;
    if (failures > 0) {
      console.error(`\nPackage hygiene FAILED: ${summary}. Fix the package.json fields named above.`);
      return 1;
    }
    console.log(`\nPackage hygiene ok: ${summary}`);
    return 0;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`\n${error.message}`);
  process.exitCode = 1;
}
