import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cruise,
  type ICruiseOptions,
  type IForbiddenRuleType,
  type IRegularForbiddenRuleType,
} from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

// `npm run depgraph`: draws the layer diagram of docs/architecture.md from dependency-cruiser's
// own graph of packages/core/src, collapsed to one node per folder, grouped by the layers of
// .dependency-cruiser.cjs. `--check` only says whether the committed diagram is current.

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const docFile = join(repoRoot, 'docs/architecture.md');
const BEGIN = '<!-- depgraph:begin (npm run depgraph) -->';
const END = '<!-- depgraph:end -->';
const CORE = 'packages/core/src/';

/**
 * One node per folder, except the files that sit in another layer than their folder: the
 * entry points, the action vocabulary, and the module files of `audit/` and `report/`.
 */
const COLLAPSE = `^${CORE}((kernel|os|audit)/index\\.ts|authz/actions\\.ts|audit/api\\.ts|report/build\\.ts|[^/]+/|[^/]+\\.ts)`;

interface Layer {
  name: string;
  paths: RegExp[];
}

const isLayerRule = (rule: IForbiddenRuleType): rule is IRegularForbiddenRuleType =>
  /^layer-(?!unassigned$)/.test(rule.name ?? '');

const asArray = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** The layers, lowest first, as the rule file defines them: each `layer-*` rule's `from`, then the top. */
function layersOf(options: ICruiseOptions): Layer[] {
  const rules = (options.ruleSet?.forbidden ?? []).filter(isLayerRule);
  const layers = rules.map((rule) => ({
    name: (rule.name ?? '').replace(/^layer-/, ''),
    paths: asArray(rule.from.path).map((path) => new RegExp(path)),
  }));
  const top = rules.at(-1);
  return [...layers, { name: 'entries', paths: asArray(top?.to.path).map((path) => new RegExp(path)) }];
}

const label = (node: string): string => node.slice(CORE.length) || node;
const id = (name: string): string => name.replace(/[^A-Za-z0-9]/g, '_');

/** `edges` without those a longer path already implies, so that the stack reads from top to bottom. */
function transitiveReduction(edges: Map<string, Set<string>>): Map<string, Set<string>> {
  const reaches = (from: string, to: string, skipDirect: boolean): boolean => {
    const seen = new Set<string>();
    const stack = [...(edges.get(from) ?? [])].filter((next) => !(skipDirect && next === to));
    while (stack.length > 0) {
      const next = stack.pop() as string;
      if (next === to) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      stack.push(...(edges.get(next) ?? []));
    }
    return false;
  };
  const reduced = new Map<string, Set<string>>();
  for (const [from, targets] of edges) {
    reduced.set(from, new Set([...targets].filter((to) => !reaches(from, to, true))));
  }
  return reduced;
}

/**
 * Two Mermaid flowcharts: the layers (each with the folders in it; an arrow means "imports", and
 * arrows implied by a longer path are left out), then the modules and the facade, with every
 * import between them.
 */
function render(layers: Layer[], nodes: string[], edges: Array<[string, string]>): string {
  const layerOf = (node: string): Layer | undefined =>
    layers.find((layer) => layer.paths.some((path) => path.test(node)));
  const layerEdges = new Map<string, Set<string>>();
  for (const [from, to] of edges) {
    const a = layerOf(from)?.name;
    const b = layerOf(to)?.name;
    if (a === undefined || b === undefined || a === b) continue;
    layerEdges.set(a, (layerEdges.get(a) ?? new Set()).add(b));
  }
  const stack = ['```mermaid', 'flowchart TB'];
  for (const layer of [...layers].reverse()) {
    const members = nodes.filter((node) => layerOf(node) === layer).map(label);
    if (members.length === 0) continue;
    stack.push(`  ${id(layer.name)}["<b>${layer.name}</b><br/>${members.join(' ')}"]`);
  }
  const reduced = transitiveReduction(layerEdges);
  const topDown = layers.map((layer) => layer.name).reverse();
  for (const from of topDown) {
    for (const to of topDown.filter((name) => reduced.get(from)?.has(name))) {
      stack.push(`  ${id(from)} --> ${id(to)}`);
    }
  }
  stack.push('```');

  const upper = new Set(['modules', 'facade']);
  const isModule = (node: string) => layerOf(node)?.name === 'modules';
  const modules = ['```mermaid', 'flowchart TB'];
  for (const node of nodes.filter((node) => upper.has(layerOf(node)?.name ?? ''))) {
    modules.push(`  ${id(label(node))}["${label(node)}"]`);
  }
  for (const [from, to] of edges) {
    if (upper.has(layerOf(from)?.name ?? '') && isModule(to)) {
      modules.push(`  ${id(label(from))} --> ${id(label(to))}`);
    }
  }
  modules.push('```');
  return `${stack.join('\n')}\n\n${modules.join('\n')}`;
}

async function main(): Promise<void> {
  const options = await extractDepcruiseOptions(join(repoRoot, '.dependency-cruiser.cjs'));
  const tsConfigFile = join(repoRoot, 'tsconfig.json');
  const result = await cruise(
    ['packages/core/src'],
    {
      ...options,
      baseDir: repoRoot,
      tsConfig: { fileName: tsConfigFile },
      includeOnly: `^${CORE}`,
      collapse: COLLAPSE,
    },
    undefined,
    { tsConfig: extractTSConfig(tsConfigFile) },
  );
  if (typeof result.output === 'string') throw new Error('dependency-cruiser returned a formatted report');
  const nodes = result.output.modules.map((module) => module.source).sort();
  const edges = result.output.modules
    .flatMap((module) =>
      module.dependencies
        .filter((dependency) => dependency.resolved !== module.source)
        .map((dependency): [string, string] => [module.source, dependency.resolved]),
    )
    .sort(([a, b], [c, d]) => `${a} ${b}`.localeCompare(`${c} ${d}`));
  const diagram = render(layersOf(options), nodes, edges);

  const doc = readFileSync(docFile, 'utf8');
  const begin = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`docs/architecture.md has no ${BEGIN} … ${END} block`);
  const updated = `${doc.slice(0, begin + BEGIN.length)}\n${diagram}\n${doc.slice(end)}`;
  if (process.argv.includes('--check')) {
    if (updated !== doc) {
      console.error('docs/architecture.md: the layer diagram is out of date; run `npm run depgraph`.');
      process.exitCode = 1;
    }
    return;
  }
  writeFileSync(docFile, updated);
  console.log(`docs/architecture.md: ${nodes.length} nodes, ${edges.length} edges.`);
}

await main();
