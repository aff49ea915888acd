import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Tests run against sources through vitest, which forgives what Node's own ESM loader does not
// (named imports from CommonJS packages, missing files in `exports`). This imports every built
// package in a plain Node process, as users will.
const root = fileURLToPath(new URL('..', import.meta.url));
const entries = [
  '@fleetward/core',
  '@fleetward/store-sqlite',
  '@fleetward/adapter-ssh',
  '@fleetward/testkit',
  '@fleetward/testkit/lab',
  '@fleetward/cli',
];
const built = existsSync(join(root, 'packages/cli/dist/index.js'));
if (!built && process.env['CI']) throw new Error('the packages are not built: CI builds before it tests');

describe.skipIf(!built)('built packages', () => {
  for (const entry of entries) {
    it(`import('${entry}') — loads in plain Node.js and exports something`, () => {
      const r = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const m = await import('${entry}'); console.log(Object.keys(m).length);`,
        ],
        {
          cwd: root,
          encoding: 'utf8',
        },
      );
      expect(r.stderr).toBe('');
      expect(Number(r.stdout.trim())).toBeGreaterThan(0);
    });
  }
});
