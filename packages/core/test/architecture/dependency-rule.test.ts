import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cruise,
  type ICruiseOptions,
  type IForbiddenRuleType,
  type IRegularForbiddenRuleType,
  type IViolation,
} from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import { beforeAll, describe, expect, it } from 'vitest';

// The rule file of issue 12 (.dependency-cruiser.cjs), run by dependency-cruiser itself: against
// small trees that break one rule each, then against the real packages.

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const ruleFile = join(repoRoot, '.dependency-cruiser.cjs');
const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

let rules: ICruiseOptions;

beforeAll(async () => {
  rules = await extractDepcruiseOptions(ruleFile);
});

/** What a violation says, in a form that reads well in a failed assertion. */
interface Finding {
  rule: string;
  from: string;
  to: string;
}

function findings(violations: IViolation[]): Finding[] {
  return violations
    .map((violation) => ({ rule: violation.rule.name, from: violation.from, to: violation.to }))
    .sort((a, b) => `${a.rule} ${a.from} ${a.to}`.localeCompare(`${b.rule} ${b.from} ${b.to}`));
}

/**
 * Cruises `packages/` of one fixture tree with the real rules. The fixtures import by relative
 * path only, so the repository's tsconfig (whose paths point at the real packages) is left out.
 */
async function cruiseFixture(name: string, override: ICruiseOptions = {}): Promise<Finding[]> {
  const { tsConfig: _repositoryOnly, ...options } = structuredClone(rules);
  const result = await cruise(['packages'], { ...options, baseDir: join(fixtures, name), ...override });
  if (typeof result.output === 'string') throw new Error('dependency-cruiser returned a formatted report');
  return findings(result.output.summary.violations);
}

/** The `layer-<name>` rules, lowest layer first: the rule file generates one per layer but the top. */
const isLayerRule = (rule: IForbiddenRuleType): rule is IRegularForbiddenRuleType =>
  /^layer-(?!unassigned$)/.test(rule.name ?? '');

const asArray = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

describe('the dependency rule (.dependency-cruiser.cjs)', () => {
  it('options — keeps type-only imports in the graph', async () => {
    expect(rules.tsPreCompilationDeps).toBe(true);
    // Without the option TypeScript's own erasure hides the cycle below: the option is what counts.
    expect(await cruiseFixture('type-only-cycle', { tsPreCompilationDeps: false })).toEqual([]);
  });

  it('no-circular — finds a cycle made only of `import type`', async () => {
    expect(await cruiseFixture('type-only-cycle')).toEqual([
      {
        rule: 'no-circular',
        from: 'packages/core/src/domain/account.ts',
        to: 'packages/core/src/domain/server.ts',
      },
    ]);
  });

  it('layers — refuses a kernel file that imports a module', async () => {
    expect(await cruiseFixture('kernel-imports-module')).toEqual([
      {
        rule: 'layer-kernel',
        from: 'packages/core/src/kernel/context.ts',
        to: 'packages/core/src/patch/plan.ts',
      },
    ]);
  });

  it('layers — refuses a module that imports the facade, even for a type', async () => {
    expect(await cruiseFixture('module-imports-facade')).toEqual([
      {
        rule: 'layer-modules',
        from: 'packages/core/src/patch/plan.ts',
        to: 'packages/core/src/fleet/fleet.ts',
      },
    ]);
  });

  it('layers — refuses a file in a folder that no layer names', async () => {
    expect(await cruiseFixture('unassigned-folder')).toEqual([
      {
        rule: 'layer-unassigned',
        from: 'packages/core/src/discovery/discover.ts',
        to: 'packages/core/src/domain/server.ts',
      },
    ]);
  });

  it('modules — accept an import on the allow-list (patch → inventory/scan)', async () => {
    expect(await cruiseFixture('allowed-module-import')).toEqual([]);
  });

  it('modules — refuse an import that is not on the allow-list (access → sop)', async () => {
    expect(await cruiseFixture('unlisted-module-import')).toEqual([
      { rule: 'module-access', from: 'packages/core/src/access/api.ts', to: 'packages/core/src/sop/run.ts' },
    ]);
  });

  it('packages — refuse a relative import of a file inside another package', async () => {
    expect(await cruiseFixture('deep-import-across-packages')).toEqual([
      {
        rule: 'packages-by-name',
        from: 'packages/http/src/api.ts',
        to: 'packages/core/src/kernel/context.ts',
      },
      {
        rule: 'packages-through-entry-points',
        from: 'packages/http/src/api.ts',
        to: 'packages/core/src/kernel/context.ts',
      },
    ]);
  });

  it('layers — place every file of packages/core/src in exactly one layer', () => {
    const rulesInOrder = (rules.ruleSet?.forbidden ?? []).filter(isLayerRule);
    const top = rulesInOrder.at(-1);
    const layers = [
      ...rulesInOrder.map((rule) => ({ name: rule.name, paths: asArray(rule.from.path) })),
      { name: 'top', paths: asArray(top?.to.path) },
    ];
    const src = join(repoRoot, 'packages/core/src');
    const files = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => relative(repoRoot, join(src, file)).split('\\').join('/'));
    const misplaced = files
      .map((file) => ({
        file,
        layers: layers
          .filter((layer) => layer.paths.some((path) => new RegExp(path).test(file)))
          .map((l) => l.name),
      }))
      .filter((entry) => entry.layers.length !== 1);
    expect(files.length).toBeGreaterThan(50);
    expect(misplaced).toEqual([]);
  });

  it('the repository — core and every package keep the rule', { timeout: 120_000 }, async () => {
    const tsConfigFile = join(repoRoot, 'tsconfig.json');
    const packages = readdirSync(join(repoRoot, 'packages'))
      .map((name) => `packages/${name}/src`)
      .filter((dir) => existsSync(join(repoRoot, dir)));
    const result = await cruise(
      packages,
      { ...rules, baseDir: repoRoot, tsConfig: { fileName: tsConfigFile } },
      undefined,
      { tsConfig: extractTSConfig(tsConfigFile) },
    );
    if (typeof result.output === 'string') throw new Error('dependency-cruiser returned a formatted report');
    expect(result.output.summary.totalCruised).toBeGreaterThan(100);
    expect(findings(result.output.summary.violations)).toEqual([]);
  });
});
