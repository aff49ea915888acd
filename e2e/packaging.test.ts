import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeIfAvailable } from '@fleetward/testkit';
import { expect, it } from 'vitest';

// Tests run against sources through vitest, which forgives what Node's own ESM loader does not
// (named imports from CommonJS packages, missing files in `exports`). This imports every built
// package in a plain Node process, as users will.
const root = fileURLToPath(new URL('..', import.meta.url));

interface Entry {
  /** What a user imports, e.g. `@fleetward/testkit/lab`. */
  specifier: string;
  /** The files its `exports` condition names, relative to the repository. */
  files: string[];
}

/**
 * Every entry point of every workspace package, read from the packages' own `exports`, so that
 * a package or subpath added later is loaded too without editing this list.
 */
function workspaceEntries(): Entry[] {
  const workspaces = (
    JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] }
  ).workspaces;
  return workspaces.flatMap((folder) => {
    const manifest = JSON.parse(readFileSync(join(root, folder, 'package.json'), 'utf8')) as {
      name: string;
      exports: Record<string, string | Record<string, string>>;
    };
    return Object.entries(manifest.exports)
      .filter(([subpath]) => subpath !== './package.json')
      .map(([subpath, target]) => ({
        specifier: subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`,
        files: (typeof target === 'string' ? [target] : Object.values(target)).map((f) => join(folder, f)),
      }));
  });
}

const entries = workspaceEntries();
const missing = entries.flatMap((e) => e.files).filter((f) => !existsSync(join(root, f)));

it('workspaceEntries — names every workspace package and the testkit’s lab subpath', () => {
  const workspaces = (
    JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] }
  ).workspaces;
  const names = workspaces.map(
    (folder) =>
      (JSON.parse(readFileSync(join(root, folder, 'package.json'), 'utf8')) as { name: string }).name,
  );
  expect(names.length).toBeGreaterThanOrEqual(7);
  for (const name of names) expect(entries.map((e) => e.specifier)).toContain(name);
  expect(entries.map((e) => e.specifier)).toContain('@fleetward/testkit/lab');
});

describeIfAvailable(
  'built packages',
  missing.length ? `the packages are not built (npm run build): missing ${missing.join(', ')}` : undefined,
  () => {
    for (const entry of entries) {
      it(`import('${entry.specifier}') — loads in plain Node.js and exports something`, () => {
        const r = spawnSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            // The specifier is a JSON string literal in the program, never spliced in as code.
            `const m = await import(${JSON.stringify(entry.specifier)}); console.log(Object.keys(m).length);`,
          ],
          { cwd: root, encoding: 'utf8' },
        );
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(Number(r.stdout.trim())).toBeGreaterThan(0);
      });
    }
  },
);
