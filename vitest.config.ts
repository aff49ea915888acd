import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

// Tests run against sources, never against a build: every workspace import resolves to src/.
export default defineConfig({
  resolve: {
    alias: [
      // Subpaths before their package: an alias matches by prefix, first match wins.
      ...['kernel', 'ports', 'domain', 'os', 'audit'].map((entry) => ({
        find: `@fleetward/core/${entry}`,
        replacement: fileURLToPath(new URL(`./packages/core/src/${entry}/index.ts`, import.meta.url)),
      })),
      { find: '@fleetward/core', replacement: src('core') },
      { find: '@fleetward/secret-store-file', replacement: src('secret-store-file') },
      { find: '@fleetward/integrations', replacement: src('integrations') },
      { find: '@fleetward/store-sqlite', replacement: src('store-sqlite') },
      { find: '@fleetward/store-postgres', replacement: src('store-postgres') },
      { find: '@fleetward/worker', replacement: src('worker') },
      { find: '@fleetward/adapter-ssh', replacement: src('adapter-ssh') },
      { find: '@fleetward/adapter-aws', replacement: src('adapter-aws') },
      { find: '@fleetward/adapter-winrm', replacement: src('adapter-winrm') },
      { find: '@fleetward/http', replacement: src('http') },
      {
        find: '@fleetward/testkit/sim',
        replacement: fileURLToPath(new URL('./packages/testkit/src/sim/index.ts', import.meta.url)),
      },
      {
        find: '@fleetward/testkit/winrm',
        replacement: fileURLToPath(new URL('./packages/testkit/src/winrm/index.ts', import.meta.url)),
      },
      {
        find: '@fleetward/testkit/aws',
        replacement: fileURLToPath(new URL('./packages/testkit/src/aws/index.ts', import.meta.url)),
      },
      {
        find: '@fleetward/testkit/lab',
        replacement: fileURLToPath(new URL('./packages/testkit/src/lab/index.ts', import.meta.url)),
      },
      { find: '@fleetward/testkit', replacement: src('testkit') },
      { find: '@fleetward/cli', replacement: src('cli') },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'e2e/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Vitest's default is one worker fewer than the cores: one on a 2-core CI machine. Lab suites
    // spend most of their time waiting for their hosts (sshd, apt, dnf), so two workers there
    // halve the run (measured on 2 cores: 691 s with one, 381 s with two, same results).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
