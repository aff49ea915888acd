#!/usr/bin/env node
/**
 * The consumer test, run in CI after the build: packs every published package, installs the
 * tarballs into an empty project in a temporary folder, without the network, then
 *   1. runs the README's embedding snippet (read from README.md, so it cannot drift) with Node,
 *      twice in the same folder (setup code runs on every start: the second run finds what the
 *      first one made), and loads every package with `require()` from a CommonJS module,
 *   2. type-checks it, `scripts/consumer/subpaths.ts` and a type import of every entry point of
 *      every package with `tsc` under `"module": "nodenext"`, and checks that every import in
 *      the packages' declaration files resolves to types for users,
 *   3. checks that `import { createFleet } from '@fleetward/core'` loads no nodemailer, no sax and
 *      no Jira or ServiceNow code, by recording every module Node resolves.
 *
 * Usage: node scripts/consumer-check.mjs [--keep]   (after `npm run build`; --keep leaves the
 * temporary project in place and prints where)
 *        node scripts/consumer-check.mjs --install-into <dir>   only packs and installs the packages
 *        into the empty folder <dir> (its node_modules/.bin then holds the installed `fleetward`), as
 *        the CLI walkthrough test needs
 *
 * Offline install: `npm ci` stores tarballs in the npm cache but not the registry metadata that
 * `npm install <tarball>` needs to resolve version ranges, so a plain `npm install --offline`
 * fails on a fresh CI machine. Instead the project gets a lockfile cut from the repository's own
 * package-lock.json (the same versions, the same layout), and `npm ci --offline` then only needs
 * the tarballs, which are checked to be in the cache first.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packPackages, publishedPackages, repoRoot, run, seconds, unbuiltPackages } from './lib/packages.mjs';

const consumerDir = join(repoRoot, 'scripts', 'consumer');
const started = performance.now();

/** What a scan-only user must never load, and how to recognise it among the resolved modules. */
const FORBIDDEN = [
  { what: 'nodemailer', matches: (module) => module.packageName === 'nodemailer' },
  { what: 'sax', matches: (module) => module.packageName === 'sax' },
  {
    what: 'Jira or ServiceNow code',
    // By package, by file name, and by the REST paths their clients call (code bundled into a
    // chunk of another package keeps those strings).
    matches: (module) =>
      module.packageName === '@fleetward/integrations' ||
      /jira|servicenow/i.test(module.path) ||
      /\/rest\/api\/3\/|\/api\/now\/table\//.test(module.source ?? ''),
  },
];

/** The first ```ts block under "## Embedding" in README.md. */
function embeddingSnippet() {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const match = /^## Embedding\s*\n+```ts\n([\s\S]*?)\n```/m.exec(readme);
  if (!match) throw new Error('README.md has no ```ts block right under "## Embedding"');
  return `${match[1]}\n`;
}

/** The parent folder of a lockfile location: `a/node_modules/b` → `a`, `node_modules/b` → ``. */
function parentLocation(location) {
  const index = location.lastIndexOf('/node_modules/');
  return index === -1 ? '' : location.slice(0, index);
}

/** Where Node finds `name` from the package at `location`, as a location in `lockPackages`. */
function resolveLocation(lockPackages, location, name) {
  for (let base = location; ; base = parentLocation(base)) {
    const candidate = base === '' ? `node_modules/${name}` : `${base}/node_modules/${name}`;
    const entry = lockPackages[candidate];
    if (entry) return entry.link ? entry.resolved : candidate;
    if (base === '') return undefined;
  }
}

/** The dependencies npm installs for a lockfile entry: regular, optional and non-optional peers. */
function installedDependencies(entry) {
  const optionalPeers = new Set(
    Object.entries(entry.peerDependenciesMeta ?? {})
      .filter(([, meta]) => meta.optional)
      .map(([name]) => name),
  );
  return [
    ...Object.keys(entry.dependencies ?? {}).map((name) => ({ name, optional: false })),
    ...Object.keys(entry.optionalDependencies ?? {}).map((name) => ({ name, optional: true })),
    ...Object.keys(entry.peerDependencies ?? {}).map((name) => ({ name, optional: optionalPeers.has(name) })),
  ];
}

/**
 * The consumer's package.json and package-lock.json: the published packages as tarballs, plus
 * `extraDependencies` (names installed at the repository root), and everything they need, at the
 * versions and places the repository's lockfile has. A workspace's own nested `node_modules` moves
 * under the installed package, so every `require`/`import` resolves to the same version as here.
 */
function consumerManifests(packages, tarballs, extraDependencies) {
  const rootLock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8'));
  const lockPackages = rootLock.packages;
  const byDir = new Map(packages.map((pkg) => [pkg.relativeDir, pkg]));
  const toConsumer = (location) => {
    const workspaceDir = location.split('/node_modules/')[0];
    const pkg = byDir.get(workspaceDir);
    return pkg ? `node_modules/${pkg.name}${location.slice(workspaceDir.length)}` : location;
  };

  const rootDependencies = {};
  for (const pkg of packages)
    rootDependencies[pkg.name] = `file:../tarballs/${tarballs.get(pkg.name).filename}`;
  for (const name of extraDependencies) rootDependencies[name] = lockPackages[`node_modules/${name}`].version;

  const entries = new Map(); // repository location → consumer lockfile entry
  const unresolved = [];
  const queue = [
    ...packages.map((pkg) => pkg.relativeDir),
    ...extraDependencies.map((n) => `node_modules/${n}`),
  ];
  while (queue.length > 0) {
    const location = queue.shift();
    if (entries.has(location)) continue;
    const entry = lockPackages[location];
    const pkg = byDir.get(location);
    if (location.startsWith('packages/') && !location.includes('/node_modules/') && !pkg) {
      unresolved.push(`${location} is a private workspace but a published package depends on it`);
      continue;
    }
    entries.set(location, pkg ? workspaceEntry(pkg, tarballs.get(pkg.name)) : registryEntry(entry));
    for (const dependency of installedDependencies(pkg ? pkg.manifest : entry)) {
      const found = resolveLocation(lockPackages, location, dependency.name);
      if (found) queue.push(found);
      else if (!dependency.optional) unresolved.push(`${dependency.name} (needed by ${location})`);
    }
  }
  if (unresolved.length > 0) {
    throw new Error(`Not in package-lock.json, run \`npm install\`:\n  ${unresolved.join('\n  ')}`);
  }

  const lockfile = {
    name: 'fleetward-consumer',
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name: 'fleetward-consumer', dependencies: rootDependencies } },
  };
  const origins = new Map();
  for (const location of [...entries.keys()].sort()) {
    lockfile.packages[toConsumer(location)] = entries.get(location);
    origins.set(toConsumer(location), location);
  }
  const manifest = {
    name: 'fleetward-consumer',
    private: true,
    type: 'module',
    dependencies: rootDependencies,
  };
  return { manifest, lockfile, origins };
}

/** A published package's lockfile entry: its tarball and what its package.json declares. */
function workspaceEntry(pkg, tarball) {
  const { version, license, engines, bin, dependencies, optionalDependencies } = pkg.manifest;
  const { peerDependencies, peerDependenciesMeta } = pkg.manifest;
  return Object.fromEntries(
    Object.entries({
      version,
      resolved: `file:../tarballs/${tarball.filename}`,
      integrity: tarball.integrity,
      license,
      dependencies,
      optionalDependencies,
      peerDependencies,
      peerDependenciesMeta,
      bin,
      engines,
    }).filter(([, value]) => value !== undefined),
  );
}

/** A registry package's entry, without the repository's dev/peer flags (all are runtime here). */
function registryEntry(entry) {
  const { dev, devOptional, peer, ...rest } = entry;
  return devOptional ? { ...rest, optional: true } : rest;
}

/**
 * The entries whose tarball is not in the npm cache (content is stored under its sha512).
 * Optional ones are left out: npm skips those it cannot install (most are other platforms'
 * binaries, which `npm ci` never downloaded).
 */
async function missingFromCache(lockfile) {
  const cache = (await run('npm', ['config', 'get', 'cache'])).stdout.trim();
  const missing = [];
  for (const [location, entry] of Object.entries(lockfile.packages)) {
    if (location === '' || entry.optional || entry.resolved?.startsWith('file:')) continue;
    const sha512 = entry.integrity?.split(/\s+/).find((hash) => hash.startsWith('sha512-'));
    const hex = sha512 ? Buffer.from(sha512.slice('sha512-'.length), 'base64').toString('hex') : '';
    const contentPath = join(
      cache,
      '_cacache',
      'content-v2',
      'sha512',
      hex.slice(0, 2),
      hex.slice(2, 4),
      hex.slice(4),
    );
    if (!sha512 || !existsSync(contentPath))
      missing.push(`${location.split('node_modules/').pop()}@${entry.version}`);
  }
  return missing;
}

/** Every `*.node` file under `dir`, relative to it, not looking into nested node_modules. */
function nativeAddons(dir, prefix = '') {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((item) => {
    // obj.target holds the linker's intermediate copies; build/Release has the loaded ones.
    if (item.isDirectory() && item.name !== 'node_modules' && item.name !== 'obj.target')
      return nativeAddons(join(dir, item.name), join(prefix, item.name));
    return item.isFile() && item.name.endsWith('.node') ? [join(prefix, item.name)] : [];
  });
}

/**
 * Install scripts are skipped (better-sqlite3's would download a prebuilt binary or compile for
 * minutes); the native addons the repository's install built for the very same versions are
 * copied instead.
 */
function copyNativeAddons(projectDir, lockfile, origins) {
  const copied = [];
  for (const [location, entry] of Object.entries(lockfile.packages)) {
    if (!entry.hasInstallScript) continue;
    for (const addon of nativeAddons(join(repoRoot, origins.get(location)))) {
      const target = join(projectDir, location, addon);
      if (existsSync(target)) continue;
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(join(repoRoot, origins.get(location), addon), target);
      copied.push(join(location, addon));
    }
  }
  return copied;
}

/** The package a resolved module URL belongs to, read from its last `node_modules` segment. */
function describeModule(url) {
  if (!url.startsWith('file:')) return { url, path: url, packageName: undefined, source: undefined };
  const path = fileURLToPath(url);
  const after = path.split('/node_modules/').slice(1).pop();
  const parts = after?.split('/') ?? [];
  const packageName =
    after === undefined ? undefined : parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  const source = packageName?.startsWith('@fleetward/') ? readFileSync(path, 'utf8') : undefined;
  return { url, path, packageName, source };
}

/**
 * A type-only import of every entry point of every published package (from their `exports`), so
 * that tsc checks each declaration file a user's compiler can reach, new packages included.
 */
function entrypointImports(packages) {
  const specifiers = packages.flatMap((pkg) =>
    Object.keys(pkg.manifest.exports ?? { '.': null })
      .filter((subpath) => subpath !== './package.json')
      .map((subpath) => pkg.name + subpath.slice(1)),
  );
  return specifiers
    .map((specifier, index) => `import type * as entry${index} from '${specifier}';\n`)
    .join('');
}

/** Runs `import { createFleet } from '@fleetward/core'` and returns what it resolved. */
async function modulesLoadedByCreateFleet(projectDir) {
  const probe = join(projectDir, 'probe.mjs');
  writeFileSync(
    probe,
    "import { createFleet } from '@fleetward/core';\nif (typeof createFleet !== 'function') throw new Error('no createFleet');\n",
  );
  const logPath = join(projectDir, 'resolutions.log');
  writeFileSync(logPath, '');
  const result = await run(
    process.execPath,
    ['--import', join(consumerDir, 'record-resolutions.mjs'), probe],
    { cwd: projectDir, env: { ...process.env, FLEETWARD_RESOLUTION_LOG: logPath } },
  );
  if (result.code !== 0) throw new Error(`importing createFleet failed:\n${result.stderr}`);
  const urls = [...new Set(readFileSync(logPath, 'utf8').split('\n').filter(Boolean))];
  return urls.map(describeModule);
}

/**
 * Runs one check and prints its verdict and duration; on failure prints why and returns false.
 *
 * @param {string} title
 * @param {() => Promise<string | undefined>} action resolves with a detail line, throws on failure
 * @returns {Promise<boolean>}
 */
async function step(title, action) {
  const stepStarted = performance.now();
  try {
    const detail = await action();
    console.log(`ok   ${title} (${seconds(performance.now() - stepStarted)})${detail ? `: ${detail}` : ''}`);
    return true;
  } catch (error) {
    console.log(`FAIL ${title} (${seconds(performance.now() - stepStarted)})`);
    console.log(String(error.message).replace(/^/gm, '     | '));
    return false;
  }
}

/** Packs the packages and writes the project's package.json and lockfile; returns its origins. */
async function writeProject(packages, tarballDir, projectDir) {
  const tarballs = await packPackages(packages, tarballDir);
  // @types/node: what a TypeScript user of a Node library installs beside it.
  const consumer = consumerManifests(packages, tarballs, ['@types/node']);
  writeFileSync(join(projectDir, 'package.json'), `${JSON.stringify(consumer.manifest, null, 2)}\n`);
  writeFileSync(join(projectDir, 'package-lock.json'), `${JSON.stringify(consumer.lockfile, null, 2)}\n`);
  return consumer;
}

/** `npm ci --offline` in the project, after checking that the cache holds every tarball. */
async function installOffline(projectDir, consumer) {
  const missing = await missingFromCache(consumer.lockfile);
  if (missing.length > 0) {
    throw new Error(
      `Not in the npm cache (run \`npm ci\` first; this test never downloads):\n  ${missing.join('\n  ')}`,
    );
  }
  const install = await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: projectDir,
  });
  if (install.code !== 0) {
    const notCached = [
      ...install.stderr.matchAll(/request to (\S+) failed: cache mode is 'only-if-cached'/g),
    ];
    const names = notCached.map((match) => match[1]).join(', ');
    throw new Error(
      `npm ci --offline failed${names ? `; not in the npm cache: ${names}` : ''}:\n${install.stderr}`,
    );
  }
  const copied = copyNativeAddons(projectDir, consumer.lockfile, consumer.origins);
  const count = Object.keys(consumer.lockfile.packages).length - 1;
  return `${count} packages; native addons from the repository install: ${copied.join(', ') || 'none'}`;
}

/** Runs the README snippet as `embed.mjs` in the project, twice: it must be safe to run again. */
async function runSnippet(projectDir, snippet) {
  writeFileSync(join(projectDir, 'embed.mjs'), snippet);
  const printed = [];
  for (const attempt of ['first', 'second']) {
    const result = await run(process.execPath, ['embed.mjs'], { cwd: projectDir, timeout: 120_000 });
    if (result.code !== 0)
      throw new Error(
        `embed.mjs failed on its ${attempt} run (exit ${result.code}):\n${result.stdout}${result.stderr}`,
      );
    printed.push(JSON.stringify(result.stdout.trim()));
  }
  return `printed ${printed.join(', then ')}`;
}

/** Loads every entry point of every package with `require()` from a CommonJS module. */
async function requireFromCommonJs(projectDir, packages) {
  const specifiers = packages.flatMap((pkg) =>
    Object.keys(pkg.manifest.exports ?? { '.': null })
      .filter((key) => key !== './package.json')
      .map((key) => (key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`)),
  );
  const body = `const specifiers = ${JSON.stringify(specifiers)};
for (const specifier of specifiers) {
  const loaded = require(specifier);
  if (Object.keys(loaded).length === 0) throw new Error(specifier + ' exports nothing to require()');
}
console.log(specifiers.length);
`;
  writeFileSync(join(projectDir, 'require-all.cjs'), body);
  const result = await run(process.execPath, ['require-all.cjs'], { cwd: projectDir, timeout: 120_000 });
  if (result.code !== 0)
    throw new Error(
      `require() from CommonJS failed (exit ${result.code}):\n${result.stdout}${result.stderr}`,
    );
  return `${result.stdout.trim()} entry points`;
}

/** Type-checks the snippet, `subpaths.ts` and every entry point the way a user's tsc would. */
async function typeCheck(projectDir, snippet, packages) {
  writeFileSync(join(projectDir, 'embed.ts'), snippet);
  copyFileSync(join(consumerDir, 'subpaths.ts'), join(projectDir, 'subpaths.ts'));
  writeFileSync(join(projectDir, 'entrypoints.ts'), entrypointImports(packages));
  const tsconfig = {
    compilerOptions: {
      module: 'nodenext',
      moduleResolution: 'nodenext',
      target: 'es2022',
      strict: true,
      noEmit: true,
      // Checking every library's declarations would triple the time; what we need from ours, that
      // each of their imports has types for users, `untypedDeclarationImports` checks directly.
      skipLibCheck: true,
      types: ['node'],
    },
    files: ['embed.ts', 'subpaths.ts', 'entrypoints.ts'],
  };
  writeFileSync(join(projectDir, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json', '--pretty', 'false'], {
    cwd: projectDir,
  });
  const untyped = await untypedDeclarationImports(projectDir, packages);
  const errors = [
    result.code === 0 ? '' : `tsc found errors:\n${result.stdout}${result.stderr}`,
    untyped.length === 0
      ? ''
      : `declarations import modules without types for users (make their types a dependency):\n  ${untyped.join('\n  ')}`,
  ].filter(Boolean);
  if (errors.length > 0) throw new Error(errors.join('\n'));
  return undefined;
}

/**
 * The bare imports in the installed packages' `.d.ts` files that do not resolve to declarations
 * from where they are (TypeScript's nodenext resolution): with `skipLibCheck` such a type would
 * silently become `any` for users, e.g. when its `@types/…` package is only a devDependency.
 */
async function untypedDeclarationImports(projectDir, packages) {
  const { default: ts } = await import(join(repoRoot, 'node_modules', 'typescript', 'lib', 'typescript.js'));
  const options = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };
  const problems = [];
  for (const pkg of packages) {
    const installed = join(projectDir, 'node_modules', pkg.name);
    for (const file of declarationFiles(installed)) {
      // Comments hold examples (`import pino from 'pino'` in a TSDoc block), not imports.
      const text = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      const specifiers = new Set(
        [...text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'".][^'"]*)['"]/g)].map((m) => m[1]),
      );
      for (const specifier of specifiers) {
        if (specifier.startsWith('node:')) continue;
        const { resolvedModule } = ts.resolveModuleName(specifier, file, options, ts.sys);
        if (!resolvedModule?.extension.startsWith('.d.')) {
          problems.push(`${relative(projectDir, file)} imports '${specifier}'`);
        }
      }
    }
  }
  return problems;
}

/** Every `.d.ts`/`.d.mts`/`.d.cts` under `dir`, not looking into nested node_modules. */
function declarationFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((item) => {
    const path = join(dir, item.name);
    if (item.isDirectory()) return item.name === 'node_modules' ? [] : declarationFiles(path);
    return /\.d\.[cm]?ts$/.test(item.name) ? [path] : [];
  });
}

/** Fails when `import { createFleet } from '@fleetward/core'` loads anything in FORBIDDEN. */
async function checkCreateFleetImports(projectDir) {
  const modules = await modulesLoadedByCreateFleet(projectDir);
  const loaded = [...new Set(modules.map((module) => module.packageName).filter(Boolean))].sort().join(', ');
  const offences = FORBIDDEN.flatMap(({ what, matches }) =>
    modules.filter(matches).map((module) => `${what}: ${relative(projectDir, module.path)}`),
  );
  if (offences.length > 0) {
    throw new Error(
      `it loads what a scan-only user does not need:\n  ${offences.join('\n  ')}\npackages loaded: ${loaded}`,
    );
  }
  return `${modules.length} modules, packages ${loaded}`;
}

async function main() {
  const keep = process.argv.includes('--keep');
  const installInto = process.argv.includes('--install-into')
    ? process.argv[process.argv.indexOf('--install-into') + 1]
    : undefined;
  const packages = publishedPackages();
  const unbuilt = unbuiltPackages(packages);
  if (unbuilt.length > 0) {
    console.error(`Not built (run \`npm run build\` first):\n  ${unbuilt.join('\n  ')}`);
    return 1;
  }
  const workDir = mkdtempSync(join(tmpdir(), 'fleetward-consumer-'));
  const tarballDir = join(workDir, 'tarballs');
  const projectDir = installInto ?? join(workDir, 'project');
  mkdirSync(tarballDir);
  mkdirSync(projectDir, { recursive: true });
  try {
    let consumer;
    const prepared =
      (await step(`packed ${packages.length} packages`, async () => {
        consumer = await writeProject(packages, tarballDir, projectDir);
        return packages.map((pkg) => pkg.name).join(', ');
      })) && (await step('installed them offline', () => installOffline(projectDir, consumer)));
    if (!prepared) return finish(false);
    if (installInto) return finish(true);
    const snippet = embeddingSnippet();
    const results = [
      await step("README's embedding snippet runs with Node, twice", () => runSnippet(projectDir, snippet)),
      await step('every entry point loads with require() from CommonJS', () =>
        requireFromCommonJs(projectDir, packages),
      ),
      await step('tsc (module nodenext) accepts it and every entry point', () =>
        typeCheck(projectDir, snippet, packages),
      ),
      await step(
        "import { createFleet } from '@fleetward/core' loads no nodemailer, sax, Jira, ServiceNow",
        () => checkCreateFleetImports(projectDir),
      ),
    ];
    return finish(results.every(Boolean));
  } finally {
    if (keep) console.log(`kept ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }
}

/** Prints the verdict; returns the exit code. */
function finish(ok) {
  const elapsed = seconds(performance.now() - started);
  if (ok) console.log(`\nConsumer check ok (${elapsed})`);
  else console.error(`\nConsumer check FAILED (${elapsed}): see the FAIL lines above`);
  return ok ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`\n${error.message}`);
  process.exitCode = 1;
}
