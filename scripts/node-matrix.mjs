#!/usr/bin/env node
/**
 * Runs the unit suites on the newer Node.js majors, 22 and 24 (Node 20, the floor, runs everything
 * through `npm test`). Usage, from anywhere: `node scripts/node-matrix.mjs`.
 *
 * For each version in RUNTIMES:
 * 1. the official binary comes from the npm registry: `npm install --no-save --prefix <cache>
 *    node@<version>` installs `node-<platform>-<arch>`, with its `include/node` headers;
 * 2. where the SQLite store can run, better-sqlite3 (the version the repo has installed) is built
 *    from source against those headers, into the cache (prebuilt binaries cannot be downloaded
 *    here). The repo's node_modules keeps the addon built for Node 20: a resolve hook
 *    (`module.registerHooks`, passed in NODE_OPTIONS to vitest's workers and to the tsx processes
 *    the tests start) loads the cached build in its place, so Node 20 runs alongside are unaffected;
 * 3. vitest runs the unit selection with that binary, without FLEETWARD_REQUIRE_LAB: a suite
 *    that needs a program this machine lacks skips loudly instead of failing.
 *
 * Node 24 runs while Node 22's addon builds (one core: the build is one large C file), then Node 22
 * runs; two vitest workers each. The cache is `.cache/node-<version>/` (ignored by git and biome),
 * or FLEETWARD_NODE_MATRIX_CACHE/node-<version>/; a complete one is reused. Exits non-zero when a
 * step fails or vitest reports any failure or error.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Where runtimes and addons are kept: `.cache/` (ignored), or FLEETWARD_NODE_MATRIX_CACHE. */
const CACHE = process.env.FLEETWARD_NODE_MATRIX_CACHE || join(ROOT, '.cache');
/** vitest workers per run: the machines have two cores. */
const WORKERS = 2;

/**
 * The exact runtimes (the newest 22.x and 24.x when pinned), and whether the SQLite store runs on
 * them. It does not on 24: better-sqlite3 12 subclasses the raw `node::ObjectWrap`, whose inline
 * code in Node 24's headers (checked in 24.21.0) adds and removes an environment cleanup hook;
 * when V8 collects a Statement outside any Node environment, the removal fails
 * `Assertion failed: (env) != nullptr` in `node::RemoveEnvironmentCleanupHook` and aborts the
 * process (vitest: "Worker exited unexpectedly", at random). better-sqlite3 13 (Node-API) fixes it
 * but needs Node 22 or newer.
 */
const RUNTIMES = [
  { version: '22.23.3', sqlite: true },
  { version: '24.21.0', sqlite: false },
];

/** The unit suites: every workspace's tests, less what is excluded below. */
const SELECTION = ['packages/'];

/**
 * Left out everywhere, and why: a lab, a server, a browser, or real package operations on this
 * machine. Files that merely contain such a suite next to pure ones stay in (their system suites
 * skip where the program is missing, and run where it is present).
 */
const EXCLUDED = [
  ['e2e/**', 'end-to-end: lab hosts and packed tarballs (outside SELECTION anyway)'],
  ['packages/testkit/test/lab/**', 'the lab itself: root, network namespaces, overlayfs, sshd'],
  ['packages/adapter-ssh/test/lab-scan.test.ts', 'the lab'],
  ['packages/adapter-ssh/test/access-checks-lab.test.ts', 'the lab'],
  ['packages/cli/test/access-lab-cli.test.ts', 'the lab'],
  ['packages/testkit/test/aws/lab-runner.test.ts', 'the lab'],
  ['packages/adapter-aws/test/instance-connect-lab.test.ts', 'the lab'],
  ['packages/adapter-aws/test/ephemeral-grant-lab.test.ts', 'the lab'],
  ['e2e/aws-lab.test.ts', 'the lab (AWS fleet over the SSM fake on lab hosts)'],
  [
    'packages/adapter-aws/test/example.test.ts',
    "this machine's apt, through a child process on the main Node",
  ],
  ['packages/adapter-ssh/test/ssh.test.ts', 'a real sshd started for the test'],
  ['packages/adapter-ssh/test/conformance.test.ts', 'a real sshd started for the test'],
  ['packages/adapter-ssh/test/non-root.test.ts', 'a real sshd and a non-root account (root)'],
  ['packages/core/test/access/real-sshd.test.ts', 'a real sshd started for the test'],
  ['packages/core/test/report/browser.test.ts', 'Chromium'],
  ['packages/store-postgres/**', 'a PostgreSQL server on 127.0.0.1:5432'],
  ['packages/worker/**', 'a PostgreSQL server on 127.0.0.1:5432 (and worker processes)'],
  ['packages/cli/test/worker-cli.test.ts', 'a PostgreSQL server and worker processes'],
  // Suites of real apt-get runs on this machine, seconds each, with at most a trivial pure test.
  ['packages/core/test/patch/execute-gates.test.ts', 'real apt-get runs on this machine'],
  ['packages/core/test/patch/plan.test.ts', 'real apt-get runs on this machine'],
  ['packages/core/test/fleet/history.test.ts', 'real apt-get runs on this machine'],
  ['packages/cli/test/patch-cli.test.ts', 'real apt-get runs on this machine'],
];

/**
 * Left out where the SQLite store cannot run: the files that open one (directly, through the CLI,
 * or through the HTTP test harness). A new such file fails there with "Module did not
 * self-register": add it here.
 */
const SQLITE_TESTS = [
  'packages/store-sqlite/**',
  'packages/cli/**',
  ...['access', 'api', 'audit', 'isolation', 'keys', 'openapi', 'reserved-keys', 'runbooks']
    .concat(['scan-hangup', 'scripts', 'walk-routes'])
    .map((name) => `packages/http/test/${name}.test.ts`),
  ...['audit/export', 'compliance/api', 'notify/sqlite-dispatch', 'schedule/scheduler']
    .concat(['sop/resume', 'sop/runbook', 'compliance/state-summary.property', 'compliance/view.property'])
    .concat(['kernel/audit-commit'])
    .map((name) => `packages/core/test/${name}.test.ts`),
];

/**
 * Runs a command (argument array, no shell), its output to the terminal or appended to `log`;
 * resolves with its exit code.
 */
function run(command, args, { env = process.env, log } = {}) {
  const fd = log ? openSync(log, 'a') : undefined;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env,
      stdio: fd === undefined ? 'inherit' : ['ignore', fd, fd],
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  }).finally(() => fd !== undefined && closeSync(fd));
}

/** A package.json's version, or undefined when it is absent. */
function installedVersion(packageJson) {
  return existsSync(packageJson) ? JSON.parse(readFileSync(packageJson, 'utf8')).version : undefined;
}

/**
 * `npm install --no-save` into `dir`, which gets a package.json first: it anchors npm to that
 * folder (never the repo's workspaces) and allows the one install script the folder needs. On
 * failure the log is shown and this throws.
 */
async function npmInstall(dir, args, { allowScripts, env, log, what }) {
  mkdirSync(dir, { recursive: true });
  const manifest = { private: true, allowScripts: { [allowScripts]: true } };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const npmArgs = ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, ...args];
  const code = await run('npm', npmArgs, { env, log });
  if (code !== 0) {
    process.stderr.write(readFileSync(log, 'utf8'));
    throw new Error(`${what} failed (npm exited ${code}); log: ${log}`);
  }
}

/** Where the repo's better-sqlite3 is (as the store resolves it), its version, and its addon. */
const SQLITE_DIR = dirname(
  createRequire(join(ROOT, 'packages/store-sqlite/package.json')).resolve('better-sqlite3/package.json'),
);
const SQLITE_VERSION = installedVersion(join(SQLITE_DIR, 'package.json'));
const ADDON = join('build', 'Release', 'better_sqlite3.node');

/**
 * Installs one runtime unless cached; returns its binary and headers folder. The `node` package
 * installs the platform binary behind npm's back (a nested install in its preinstall script), so
 * nothing else is ever installed into its folder: a later install there would redo it.
 */
async function installRuntime(version) {
  const dir = join(CACHE, `node-${version}`);
  const runtimeDir = join(dir, 'runtime');
  const nodePackage = join(runtimeDir, 'node_modules', 'node');
  const platformPackage = join(nodePackage, 'node_modules', `node-${process.platform}-${process.arch}`);
  if (
    installedVersion(join(platformPackage, 'package.json')) !== version ||
    !existsSync(join(platformPackage, 'include', 'node', 'common.gypi'))
  ) {
    const log = join(dir, 'runtime.log');
    rmSync(log, { force: true });
    rmSync(runtimeDir, { recursive: true, force: true });
    await npmInstall(runtimeDir, [`node@${version}`], {
      allowScripts: 'node',
      log,
      what: `installing Node.js ${version}`,
    });
  }
  if (!existsSync(join(platformPackage, 'include', 'node', 'common.gypi'))) {
    throw new Error(`Node.js ${version}: no binary and headers in ${platformPackage}`);
  }
  return { dir, node: join(platformPackage, 'bin', 'node'), headers: platformPackage };
}

/** Builds better-sqlite3 for one runtime unless cached; returns the addon's path. */
async function buildSqlite(version, { dir, node, headers }) {
  const addonsDir = join(dir, 'addons');
  const packageDir = join(addonsDir, 'node_modules', 'better-sqlite3');
  const addon = join(packageDir, ADDON);
  if (installedVersion(join(packageDir, 'package.json')) === SQLITE_VERSION && existsSync(addon)) {
    return addon;
  }
  const log = join(dir, 'addons.log');
  rmSync(log, { force: true });
  const started = Date.now();
  await npmInstall(addonsDir, [`better-sqlite3@${SQLITE_VERSION}`, `--nodedir=${headers}`], {
    allowScripts: 'better-sqlite3',
    // The install script's node-gyp runs on this runtime; prebuild-install builds from source
    // instead of trying a download.
    env: {
      ...process.env,
      PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}`,
      npm_config_build_from_source: 'true',
    },
    log,
    what: `building better-sqlite3 ${SQLITE_VERSION} for Node.js ${version}`,
  });
  console.log(`better-sqlite3 ${SQLITE_VERSION} built for Node.js ${version} in ${seconds(started)}`);
  return addon;
}

/**
 * NODE_OPTIONS for a hook that makes `require()` of the repo's better-sqlite3 addon load `addon`.
 * The hook is a data: module, so it needs no file; on a runtime without `registerHooks` (Node 20,
 * should a test start one) it does nothing.
 */
function addonRedirect(addon) {
  const from = join(SQLITE_DIR, ADDON);
  const source = [
    "import * as module from 'node:module';",
    `const from = new Set(${JSON.stringify([from, pathToFileURL(from).href])});`,
    `const to = ${JSON.stringify(pathToFileURL(addon).href)};`,
    'module.registerHooks?.({',
    '  resolve: (specifier, context, next) =>',
    '    from.has(specifier) ? { url: to, shortCircuit: true } : next(specifier, context),',
    '});',
  ].join('\n');
  return `--import=data:text/javascript,${encodeURIComponent(source)}`;
}

/** Runs the unit selection on one runtime; returns vitest's exit code and counts. */
async function runSuites({ version }, { dir, node }, addon) {
  const report = join(dir, 'report.json');
  rmSync(report, { force: true });
  const env = { ...process.env };
  delete env.FLEETWARD_REQUIRE_LAB;
  // `node` run by a test is this runtime too.
  env.PATH = `${dirname(node)}${delimiter}${env.PATH ?? ''}`;
  if (addon) env.NODE_OPTIONS = [env.NODE_OPTIONS, addonRedirect(addon)].filter(Boolean).join(' ');
  const excluded = [...EXCLUDED.map(([glob]) => glob), ...(addon ? [] : SQLITE_TESTS)];

  console.log(`\n--- Node.js ${version}: unit suites ---`);
  const started = Date.now();
  const code = await run(
    node,
    [
      join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      ...SELECTION,
      ...excluded.map((glob) => `--exclude=${glob}`),
      `--maxWorkers=${WORKERS}`,
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
    ],
    { env },
  );
  const outcome = { version, code, duration: seconds(started), files: 0, passed: 0, failed: 0, skipped: 0 };
  if (!existsSync(report)) return outcome;
  const results = JSON.parse(readFileSync(report, 'utf8'));
  return {
    ...outcome,
    files: results.testResults.length,
    passed: results.numPassedTests,
    failed: results.numFailedTests,
    skipped: results.numPendingTests + results.numTodoTests,
  };
}

function seconds(since) {
  return `${Math.round((Date.now() - since) / 1000)} s`;
}

const started = Date.now();
console.log('left out of the unit suites:');
for (const [glob, reason] of EXCLUDED) console.log(`  ${glob}: ${reason}`);
console.log('also left out where the SQLite store cannot run (Node 24, see RUNTIMES):');
console.log(`  ${SQLITE_TESTS.join(' ')}`);

const installed = await Promise.all(RUNTIMES.map(({ version }) => installRuntime(version)));
console.log(`runtimes ready in ${seconds(started)}`);

// Runtimes without SQLite run while the addons for the others build.
const building = Promise.all(
  RUNTIMES.map((runtime, i) => (runtime.sqlite ? buildSqlite(runtime.version, installed[i]) : undefined)),
);
building.catch(() => {}); // awaited below: a failed build must not end the run mid-suite
const outcomes = [];
for (const [i, runtime] of RUNTIMES.entries()) {
  if (!runtime.sqlite) outcomes.push(await runSuites(runtime, installed[i]));
}
const addons = await building;
for (const [i, runtime] of RUNTIMES.entries()) {
  if (runtime.sqlite) outcomes.push(await runSuites(runtime, installed[i], addons[i]));
}

console.log('\nNode.js matrix, unit suites:');
for (const o of outcomes.sort((a, b) => a.version.localeCompare(b.version))) {
  const errors = o.code !== 0 && o.failed === 0 ? ` (vitest exited ${o.code}: errors above)` : '';
  console.log(
    `  Node.js ${o.version} (${o.files} files): ${o.passed} passed, ${o.failed} failed, ` +
      `${o.skipped} skipped in ${o.duration}${errors}`,
  );
}
console.log(`  total ${seconds(started)}`);
process.exitCode = outcomes.every((o) => o.code === 0) ? 0 : 1;
