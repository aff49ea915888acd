// @ts-check
/**
 * The dependency rule of `@fleetward/core` (issue 12), checked by `npm run depcheck` (part of
 * `npm run lint`, which CI runs). Read it as three statements:
 *
 * 1. No import cycles anywhere, type-only imports included.
 * 2. `packages/core/src` is a stack of layers (`LAYERS`, lowest first). A file imports files of
 *    its own layer or of a lower one, never of a higher one: nothing under the kernel knows a
 *    module, no module knows the facade, nothing imports an entry file.
 * 3. Modules are independent of each other except for the imports in `MODULE_IMPORTS`, each with
 *    its reason. Adding a line there is a design decision: say why in its `comment`.
 *
 * Other packages reach core (and each other) only through their published entry points.
 *
 * `docs/architecture.md` draws the layers from this file and the tool's output (`npm run depgraph`).
 */

/** Every path below is relative to the repository root. */
const CORE = '^packages/core/src/';

/**
 * The layers of `packages/core/src`, lowest first. `paths` are regular expressions relative to
 * `packages/core/src/`; every file belongs to exactly one layer (the expressions do not overlap).
 */
const LAYERS = [
  {
    name: 'errors',
    comment: '`FleetwardError` and its subclasses: imported by everything, imports nothing.',
    paths: ['errors\\.ts$'],
  },
  {
    name: 'domain',
    comment:
      'Entity schemas and validation. `authz/actions.ts` is the action vocabulary the schemas validate ' +
      'against (it imports nothing), so it counts as domain although it lives in `authz/`.',
    paths: ['domain/', 'authz/actions\\.ts$'],
  },
  {
    name: 'ports',
    comment: 'The plugin contracts: Adapter, Store, SecretStore, Clock, ticket/email integrations.',
    paths: ['ports/'],
  },
  {
    name: 'util',
    comment:
      'Small helpers (canonical JSON, CSV, argv building, output capture, safe file writes). They throw ' +
      '`errors.ts` errors and speak the domain and port types (`Command`, `OutputSummary`), hence above ports.',
    paths: ['util/'],
  },
  {
    name: 'os',
    comment: 'Package-manager drivers: pure command builders and output parsers.',
    paths: ['os/(?!index\\.ts$)'],
  },
  {
    name: 'authz',
    comment: 'Policy evaluation: roles, selectors, reach, explicit deny.',
    paths: ['authz/(?!actions\\.ts$)'],
  },
  {
    name: 'engine',
    comment: 'Running commands on a server through its adapter, OS detection and scanning one server.',
    paths: ['engine/'],
  },
  {
    name: 'records',
    comment:
      'Offline tools over stored records, usable without a Fleet (`@fleetward/core/audit`): the audit ' +
      'hash chain, checkpoints, export, stored columns, the access-audit report and its rendering, and ' +
      'the compliance report model and renderers. The stores build on the chain and the columns.',
    paths: ['audit/(?!api\\.ts$|index\\.ts$)', 'report/(?!build\\.ts$)'],
  },
  {
    name: 'store',
    comment: 'The Store built over a backend (and the in-memory backend): the reference store.',
    paths: ['store/'],
  },
  {
    name: 'transport',
    comment: 'The local transport, the reference Adapter.',
    paths: ['transport/'],
  },
  {
    name: 'kernel',
    comment:
      'What every module runs on: Runtime, CallContext (authorize, audit + outbox + event in one ' +
      'transaction), jobs, leases, abortable sleep, the outbox.',
    paths: ['kernel/(?!index\\.ts$)'],
  },
  {
    name: 'modules',
    comment:
      'The capabilities, each written against a CallContext. They import each other only as MODULE_IMPORTS says.',
    paths: [
      'inventory/',
      'iam/',
      'patch/',
      'access/',
      'sop/',
      'audit/api\\.ts$',
      'compliance/',
      'report/build\\.ts$',
      'notify/',
      'schedule/',
      'integrations/',
    ],
  },
  {
    name: 'facade',
    comment: '`Fleet`: composes the modules over a Runtime and adds nothing of its own.',
    paths: ['fleet/'],
  },
  {
    name: 'entries',
    comment:
      'Public entry points that re-export across layers (`.`, `./kernel`, `./os`, `./audit`). The ' +
      '`domain/`, `ports/` and `report/` barrels re-export only their own folder and stay in its layer.',
    paths: ['index\\.ts$', '(kernel|os|audit)/index\\.ts$'],
  },
];

/**
 * The modules of core, by name: the paths (relative to `packages/core/src/`) that make each one up.
 * `audit/` and `report/` are mostly offline tools (layer `records`); only their API file is the module.
 */
const MODULES = {
  inventory: 'inventory/',
  iam: 'iam/',
  patch: 'patch/',
  access: 'access/',
  sop: 'sop/',
  audit: 'audit/api\\.ts$',
  compliance: 'compliance/',
  report: 'report/build\\.ts$',
  notify: 'notify/',
  schedule: 'schedule/',
  integrations: 'integrations/',
};

/**
 * The only imports allowed from one module into another. `to` is a path expression relative to
 * `packages/core/src/`; keep it as narrow as the need.
 */
const MODULE_IMPORTS = [
  {
    from: 'access',
    to: 'inventory/targets\\.ts$',
    comment: 'Target resolution: grants and key rotations name their servers as Targets.',
  },
  {
    from: 'compliance',
    to: 'inventory/targets\\.ts$',
    comment: 'Target resolution: a compliance summary is scoped by Targets.',
  },
  {
    from: 'patch',
    to: 'inventory/targets\\.ts$',
    comment: 'Target resolution: a patch plan is made for Targets.',
  },
  {
    from: 'sop',
    to: 'inventory/targets\\.ts$',
    comment: 'Target resolution: script runs and runbooks run on Targets.',
  },
  {
    from: 'report',
    to: 'inventory/targets\\.ts$',
    comment: 'Target resolution: a report is scoped by Targets.',
  },
  {
    from: 'patch',
    to: 'inventory/scans?\\.ts$',
    comment: 'A plan re-scans servers whose latest scan is stale, and plans from the newest scan of each.',
  },
  {
    from: 'patch',
    to: 'sop/content\\.ts$',
    comment:
      "A policy's pre- and post-scripts run with the command a script run uses (PowerShell on Windows).",
  },
  {
    from: 'sop',
    to: 'inventory/scan\\.ts$',
    comment: 'A runbook has a `scan` step.',
  },
  {
    from: 'schedule',
    to: 'inventory/scan\\.ts$',
    comment: 'The scheduler runs scan schedules.',
  },
  {
    from: 'report',
    to: 'inventory/scan\\.ts$',
    comment: 'A compliance report reads the latest scan of every server.',
  },
  {
    from: 'report',
    to: 'compliance/',
    comment: 'A compliance report is the compliance summary, rendered.',
  },
];

for (const entry of MODULE_IMPORTS) {
  if (!(entry.from in MODULES)) throw new Error(`MODULE_IMPORTS: "${entry.from}" is not a module of MODULES`);
}

const core = (/** @type {string} */ path) => CORE + path;
const layerPaths = (/** @type {{paths: string[]}} */ layer) => layer.paths.map(core);

/** @type {import('dependency-cruiser').IForbiddenRuleType[]} */
const layerRules = LAYERS.slice(0, -1).map((layer, index) => {
  const below = LAYERS.slice(0, index + 1).map((l) => l.name);
  return {
    name: `layer-${layer.name}`,
    severity: 'error',
    comment: `${layer.comment} May import only: ${below.join(', ')}.`,
    from: { path: layerPaths(layer) },
    to: { path: LAYERS.slice(index + 1).flatMap(layerPaths) },
  };
});

/** @type {import('dependency-cruiser').IForbiddenRuleType[]} */
const moduleRules = Object.entries(MODULES).map(([name, path]) => {
  const allowed = MODULE_IMPORTS.filter((entry) => entry.from === name);
  const others = Object.entries(MODULES).filter(([other]) => other !== name);
  return {
    name: `module-${name}`,
    severity: 'error',
    comment:
      allowed.length === 0
        ? `The ${name} module imports no other module.`
        : `The ${name} module imports other modules only for: ` +
          allowed.map((entry) => `${entry.to} (${entry.comment})`).join('; '),
    from: { path: core(path) },
    to: {
      path: others.map(([, otherPath]) => core(otherPath)),
      ...(allowed.length > 0 ? { pathNot: allowed.map((entry) => core(entry.to)) } : {}),
    },
  };
});

/** The files other packages may import: each package's `src/index.ts`, plus the published subpaths. */
const PUBLIC_ENTRIES = [
  '^packages/[^/]+/src/index\\.ts$',
  '^packages/core/src/(kernel|ports|domain|os|audit)/index\\.ts$',
  '^packages/testkit/src/lab/index\\.ts$',
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles, type-only imports included: a cycle hides which side is the lower layer.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'Every import resolves. A deep import such as `@fleetward/core/src/...` does not (the package ' +
        'exports only its entry points), so it lands here.',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'layer-unassigned',
      severity: 'error',
      comment:
        'Every file of packages/core/src belongs to a layer: add its folder to LAYERS in .dependency-cruiser.cjs.',
      from: { path: CORE, pathNot: LAYERS.flatMap(layerPaths) },
      to: {},
    },
    ...layerRules,
    ...moduleRules,
    {
      name: 'packages-through-entry-points',
      severity: 'error',
      comment:
        'A package imports another one only through its public entry points (`@fleetward/core`, ' +
        '`@fleetward/core/kernel`, ...), never a file inside it.',
      from: { path: '^packages/([^/]+)/' },
      to: { path: '^packages/', pathNot: ['^packages/$1/', ...PUBLIC_ENTRIES] },
    },
    {
      name: 'packages-by-name',
      severity: 'error',
      comment: 'A package imports another one by its package name, never by a relative path into its folder.',
      from: { path: '^packages/([^/]+)/' },
      // Through a tsconfig path the import is typed `aliased` (and `local`, from where it resolves).
      to: { path: '^packages/', pathNot: '^packages/$1/', dependencyTypesNot: ['aliased'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Keep `import type` edges: they take part in cycles and layering like any other import.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['types', 'import', 'node', 'default'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
    reporterOptions: {
      mermaid: { minify: false },
    },
  },
};
