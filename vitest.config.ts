import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

// Tests run against sources, never against a build: every workspace import resolves to src/.
export default defineConfig({
  resolve: {
    alias: {
      '@fleetward/core': src('core'),
      '@fleetward/store-sqlite': src('store-sqlite'),
      '@fleetward/store-postgres': src('store-postgres'),
      '@fleetward/adapter-ssh': src('adapter-ssh'),
      '@fleetward/http': src('http'),
      // Before '@fleetward/testkit': aliases match by prefix, in order.
      '@fleetward/testkit/lab': fileURLToPath(
        new URL('./packages/testkit/src/lab/index.ts', import.meta.url),
      ),
      '@fleetward/testkit': src('testkit'),
      '@fleetward/cli': src('cli'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'e2e/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
