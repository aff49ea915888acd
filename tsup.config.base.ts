import { defineConfig, type Options } from 'tsup';

/** Shared build: ESM only (see README "Module format"), declarations, Node 20 target. */
export function packageConfig(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    ...overrides,
  });
}
