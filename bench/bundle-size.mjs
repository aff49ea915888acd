#!/usr/bin/env node
/**
 * What a scan-only user ships: bundles `import { createFleet, createLocalAdapter,
 * createMemoryStore } from '@fleetward/core'` plus a call with esbuild (minified, platform node,
 * ESM, everything bundled except Node's built-in modules) and prints the bytes each package
 * contributes (from esbuild's metafile) and the total, then the sizes of core's `dist/` files.
 *
 * Usage: node bench/bundle-size.mjs [--core <folder of a built @fleetward/core>]
 *   (default packages/core; run `npm run build` first). Pass another checkout's core to compare.
 *
 * The core folder is linked into a temporary project as node_modules/@fleetward/core, so esbuild
 * resolves it like an installed package (its `exports` and `sideEffects` apply); core's own
 * dependencies resolve from where the folder really is.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const ENTRY = `import { createFleet, createLocalAdapter, createMemoryStore } from '@fleetward/core';

const fleet = createFleet({ store: createMemoryStore(), adapters: [createLocalAdapter()] });
await fleet.close();
`;

/** The package an input path belongs to: the name after its last `node_modules/`. */
function packageOf(inputPath) {
  const index = inputPath.lastIndexOf('node_modules/');
  if (index === -1) return inputPath === 'entry.mjs' ? '(entry)' : '@fleetward/core';
  const [first, second] = inputPath.slice(index + 'node_modules/'.length).split('/');
  return first.startsWith('@') ? `${first}/${second}` : first;
}

/** Bundles the entry against the core folder; returns total bytes and bytes per package. */
async function bundle(coreDir) {
  const workDir = mkdtempSync(join(tmpdir(), 'fleetward-bundle-'));
  try {
    mkdirSync(join(workDir, 'node_modules', '@fleetward'), { recursive: true });
    symlinkSync(coreDir, join(workDir, 'node_modules', '@fleetward', 'core'), 'dir');
    writeFileSync(join(workDir, 'entry.mjs'), ENTRY);
    const result = await build({
      absWorkingDir: workDir,
      entryPoints: ['entry.mjs'],
      bundle: true,
      minify: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      write: false,
      outfile: 'out.mjs',
      metafile: true,
      logLevel: 'warning',
    });
    const [output] = Object.values(result.metafile.outputs).filter((o) => o.entryPoint);
    const byPackage = new Map();
    for (const [inputPath, { bytesInOutput }] of Object.entries(output.inputs)) {
      const name = packageOf(inputPath);
      byPackage.set(name, (byPackage.get(name) ?? 0) + bytesInOutput);
    }
    return { total: output.bytes, byPackage };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

/** Every file under `dir` with its size, paths relative to `dir`. */
function filesOf(dir, prefix = '') {
  return readdirSync(dir, { withFileTypes: true }).flatMap((item) =>
    item.isDirectory()
      ? filesOf(join(dir, item.name), join(prefix, item.name))
      : [{ name: join(prefix, item.name), bytes: statSync(join(dir, item.name)).size }],
  );
}

const kib = (bytes) => `${(bytes / 1024).toFixed(1).padStart(8)} KiB`;
const row = (label, bytes) => `  ${label.padEnd(34)} ${String(bytes).padStart(9)} B ${kib(bytes)}`;

const { values } = parseArgs({ options: { core: { type: 'string', default: 'packages/core' } } });
const coreDir = resolve(values.core);
const { total, byPackage } = await bundle(coreDir);

console.log(`Scan-only bundle of ${coreDir} (esbuild, minified, platform node, ESM)`);
for (const [name, bytes] of [...byPackage].sort((a, b) => b[1] - a[1])) console.log(row(name, bytes));
console.log(row('total (output file)', total));

const files = filesOf(join(coreDir, 'dist'));
console.log(`\n${coreDir}/dist`);
for (const file of files.filter((f) => f.name.endsWith('.js')).sort((a, b) => b.bytes - a.bytes)) {
  console.log(row(file.name, file.bytes));
}
for (const [label, suffix] of [
  ['all .js', '.js'],
  ['all .d.ts', '.d.ts'],
  ['all .map', '.map'],
]) {
  console.log(
    row(
      label,
      files.filter((f) => f.name.endsWith(suffix)).reduce((sum, f) => sum + f.bytes, 0),
    ),
  );
}
