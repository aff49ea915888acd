import { z } from 'zod';
import type { Resource } from '../authz/evaluate.js';
import { plainRecord } from '../domain/common.js';
import { type ComplianceState, scansOfState } from '../domain/compliance-state.js';
import {
  type ComplianceStandard,
  type ComplianceStandardInput,
  IdSchema,
  type Project,
  type ScanResult,
  type Server,
  validate,
} from '../domain/index.js';
import { checkEntityInput, RemoveOptionsSchema, validateOptions } from '../domain/options.js';
import { NotFoundError } from '../errors.js';
import { resolveTargets, type Targets, validateTargets } from '../inventory/targets.js';
import type { CallContext } from '../kernel/context.js';
import type { StoreScope } from '../ports/store.js';
import { evaluateServer, projectsOf, type ServerEvaluation } from './evaluate.js';
import type { ComplianceSummary } from './summary.js';
import { complianceViewOf } from './view.js';

export const ComplianceSummaryOptionsSchema = z.strictObject({
  /** Only the servers this project's selector matches now. @default every server of the tenant */
  projectId: IdSchema.optional(),
});
/** Options of `compliance.summary`. */
export type ComplianceSummaryOptions = z.input<typeof ComplianceSummaryOptionsSchema>;

const ListStandardsOptionsSchema = z.strictObject({
  /** Only the standards that apply to this project's servers. @default every standard */
  projectId: IdSchema.optional(),
});
/**
 * Options of `compliance.standards.list`.
 *
 * @useDeclaredType
 */
export type ListStandardsOptions = z.input<typeof ListStandardsOptionsSchema>;
/** Changes are an object of fields; the store validates each field against the standard's schema. */
const StandardChangesSchema = plainRecord(z.string(), z.unknown());

/** A summary as of `generatedAt` (the fleet clock), for the tenant or one project. */
export interface ComplianceSummaryResult extends ComplianceSummary {
  /** When it was computed (ISO 8601, UTC). */
  generatedAt: string;
  /** The project it covers; absent for the whole tenant. */
  projectId?: string;
}

/** The scans of one server that compliance reads. */
export interface LatestScans {
  /** The newest successful scan. */
  succeeded?: ScanResult;
  /** The newest scan of any status. */
  attempt?: ScanResult;
}

/** The fields of a standard that `compliance.standards.update` may change. */
export type ComplianceStandardChanges = Partial<Omit<ComplianceStandardInput, 'tenantId' | 'id'>>;

/**
 * Compliance standards: rules every server (or one project's servers) must meet, such as "no
 * security patch pending longer than 14 days". Written with `patch.policy`, read with `patch.read`.
 */
export interface ComplianceStandardsApi {
  /**
   * Adds a standard for the whole tenant, or for one project's servers with `projectId`.
   * @throws ValidationError for input that does not fit the standard schema; NotFoundError when
   * the project does not exist; AlreadyExistsError for a taken id; AuthorizationError.
   */
  add(input: Omit<ComplianceStandardInput, 'tenantId'>): Promise<ComplianceStandard>;
  /**
   * Changes a standard, compare-and-swap on `expectedVersion`. Moving it to another project (or to
   * the whole tenant) needs `patch.policy` on both the old and the new scope.
   * @throws NotFoundError for an unknown standard or project; ConflictError for a stale version;
   * ValidationError; AuthorizationError.
   */
  update(
    id: string,
    changes: ComplianceStandardChanges,
    options: { expectedVersion: number },
  ): Promise<ComplianceStandard>;
  /**
   * Removes a standard (with `expectedVersion`, only that version); resolves `false` when there
   * was none.
   * @throws ConflictError for a stale version; ValidationError for a malformed id; AuthorizationError.
   */
  remove(id: string, options?: { expectedVersion?: number }): Promise<boolean>;
  /**
   * The standard with this id. Needs `patch.read` on its scope: its project, or the whole tenant
   * for a tenant-wide standard.
   * @throws NotFoundError when there is none; ValidationError for a malformed id; AuthorizationError.
   */
  get(id: string): Promise<ComplianceStandard>;
  /**
   * The tenant's standards; with `projectId`, those that apply to the project's servers (its own
   * and the tenant-wide ones), readable with `patch.read` on that project alone.
   * @throws ValidationError for unknown options; AuthorizationError.
   */
  list(options?: ListStandardsOptions): Promise<ComplianceStandard[]>;
}

/**
 * Compliance of a session (`fleet.as(actor).compliance`): central standards, per-server evaluation
 * and the bird's-eye summary. Every call is authorized and audited.
 */
export interface ComplianceApi {
  /** The standards servers are evaluated against. */
  readonly standards: ComplianceStandardsApi;
  /**
   * Evaluates the targeted servers (by default every server of the tenant) against the standards
   * that apply to each (see `evaluateServer`), as of the fleet clock, with the reasons of each
   * result. Needs `patch.read` on every targeted server (and on the project or tenant scope).
   * @throws ValidationError for bad targets; NotFoundError for an unknown project or server;
   * AuthorizationError.
   */
  evaluate(targets?: Targets): Promise<ServerEvaluation[]>;
  /**
   * The bird's-eye view (see `summarize`) of the tenant, or of one project's servers with
   * `projectId`. Needs `patch.read` on every server in it. The same numbers as evaluating every
   * server's latest scans at the fleet clock's `now`, without reading the scans:
   * - the first summary of a tenant in a process reads one compact compliance state per server
   *   (see `ComplianceState`: kept by the store with every server and scan write) and evaluates
   *   each;
   * - later ones keep those evaluations in memory (per store object, up to a million servers over
   *   all tenants) and redo only the servers whose state changed since (the store's change feed,
   *   `ComplianceStates.changes`, which sees the writes of every process on the same database)
   *   and those whose evaluation expired (each one knows the instant a patch passes its allowed
   *   age, a scan goes stale or an alert starts); a change of the standards or projects redoes
   *   all of them from the kept states. While nothing changed, the kept summary is given again.
   * A store without a change feed reads every state on every call. The groups, standards and
   * alerts of the result are frozen: the same objects may be given to other calls until something
   * changes.
   * @throws ValidationError for unknown options; NotFoundError for an unknown project;
   * AuthorizationError.
   */
  summary(options?: ComplianceSummaryOptions): Promise<ComplianceSummaryResult>;
}

const PAGE = 10_000;
/**
 * Up to this many servers, scans are read per server (`where: { serverId }`); above it, one pass
 * over the tenant's scans is cheaper than that many queries. Kept small because a store may answer
 * the per-server query by reading every scan anyway: the SQLite store's planner does today (about
 * 0.4 s per query at 100,000 scans, against about 2 s for the whole pass).
 */
const PER_SERVER_QUERY_LIMIT = 8;

function newer(a: ScanResult, b: ScanResult | undefined): boolean {
  if (!b) return true;
  const at = Date.parse(a.scannedAt);
  const bt = Date.parse(b.scannedAt);
  return at > bt || (at === bt && a.createdAt > b.createdAt);
}

function keep(latest: Map<string, LatestScans>, scan: ScanResult): void {
  let entry = latest.get(scan.serverId);
  if (!entry) {
    entry = {};
    latest.set(scan.serverId, entry);
  }
  if (newer(scan, entry.attempt)) entry.attempt = scan;
  if (scan.status === 'succeeded' && newer(scan, entry.succeeded)) entry.succeeded = scan;
}

/**
 * The newest successful scan and the newest scan attempt of each of `serverIds`. For many servers
 * it pages once through all of the tenant's scan results and keeps two per server as it goes, so
 * memory stays at one page plus two scans per server however long the scan history is.
 */
export async function loadLatestScans(
  store: StoreScope,
  tenantId: string,
  serverIds: ReadonlySet<string>,
): Promise<Map<string, LatestScans>> {
  const latest = new Map<string, LatestScans>();
  if (serverIds.size <= PER_SERVER_QUERY_LIMIT) {
    for (const serverId of serverIds) {
      for (const scan of await store.scanResults.listAll(tenantId, { where: { serverId } })) {
        keep(latest, scan);
      }
    }
    return latest;
  }
  let after: string | undefined;
  for (;;) {
    const page = await store.scanResults.list(tenantId, { limit: PAGE, ...(after ? { after } : {}) });
    for (const scan of page) if (serverIds.has(scan.serverId)) keep(latest, scan);
    if (page.length < PAGE) return latest;
    after = page[page.length - 1]!.id;
  }
}

/**
 * Evaluations of compliance states (see `scansOfState`), without reasons, for the summary. The
 * projects a server belongs to are matched here, at summary time, as standards are read here.
 */
export function* evaluateStates(
  states: readonly ComplianceState[],
  standards: readonly ComplianceStandard[],
  projects: readonly Project[],
  now: Date,
): Generator<ServerEvaluation> {
  for (const state of states) {
    if (!state.server) continue;
    yield evaluateServer({
      server: state.server,
      ...scansOfState(state),
      standards,
      projectIds: projectsOf(state.server, projects),
      now,
      explain: false,
    });
  }
}

const standardScope = (projectId: string | undefined): Resource =>
  projectId === undefined ? { type: 'compliance-standard' } : { type: 'compliance-standard', projectId };

/**
 * Creates the compliance module on a session's call context. Standards are written with
 * `patch.policy` (they are patch policy at tenant or project level) and read with `patch.read`.
 */
export function createComplianceApi(internals: () => CallContext): ComplianceApi {
  /** Everything evaluation reads besides the servers, in a few paged queries. */
  async function loadInputs(ctx: CallContext, servers: readonly Server[]) {
    const store = ctx.runtime.store;
    const [standards, scans] = await Promise.all([
      store.complianceStandards.listAll(ctx.tenantId),
      loadLatestScans(store, ctx.tenantId, new Set(servers.map((s) => s.id))),
    ]);
    return { standards: standards.filter((s) => s.enabled), scans };
  }

  function* evaluations(
    servers: readonly Server[],
    memberships: ReadonlyMap<string, string[]>,
    inputs: Awaited<ReturnType<typeof loadInputs>>,
    now: Date,
    explain: boolean,
  ): Generator<ServerEvaluation> {
    for (const server of servers) {
      const latest = inputs.scans.get(server.id);
      yield evaluateServer({
        server,
        latestScan: latest?.succeeded,
        latestAttempt: latest?.attempt,
        standards: inputs.standards,
        projectIds: memberships.get(server.id) ?? [],
        now,
        explain,
      });
    }
  }

  const membershipsOf = (servers: readonly Server[], projects: readonly Project[]) =>
    new Map(servers.map((server) => [server.id, projectsOf(server, projects)]));

  const serverResources = (servers: readonly Server[]): Resource[] =>
    servers.map((server) => ({ type: 'server', server }));

  return {
    standards: {
      add: (input: Omit<ComplianceStandardInput, 'tenantId'>): Promise<ComplianceStandard> => {
        const ctx = internals();
        checkEntityInput('complianceStandards', input, ctx.tenantId, 'ComplianceStandardInput');
        return ctx.write(
          'patch.policy',
          [standardScope(input.projectId)],
          { type: 'compliance-standard', id: input.id ?? '(new)' },
          async (tx) => {
            if (input.projectId !== undefined) await tx.projects.require(ctx.tenantId, input.projectId);
            return tx.complianceStandards.create({
              ...input,
              tenantId: ctx.tenantId,
            } as ComplianceStandardInput);
          },
          (s) => ({ standardId: s.id, rule: s.rule.kind, projectId: s.projectId ?? null }),
        );
      },
      update: async (
        id: string,
        changes: ComplianceStandardChanges,
        options: { expectedVersion: number },
      ): Promise<ComplianceStandard> => {
        const ctx = internals();
        validate(StandardChangesSchema, changes, 'ComplianceStandardChanges');
        const current = await ctx.runtime.store.complianceStandards.require(ctx.tenantId, id);
        const resources = [standardScope(current.projectId)];
        if ('projectId' in changes) resources.push(standardScope(changes.projectId));
        return ctx.write(
          'patch.policy',
          resources,
          { type: 'compliance-standard', id },
          async (tx) => {
            if (changes.projectId !== undefined) await tx.projects.require(ctx.tenantId, changes.projectId);
            return tx.complianceStandards.update(ctx.tenantId, id, changes, options);
          },
          (s) => ({ version: s.version, enabled: s.enabled }),
        );
      },
      remove: async (id: string, options: { expectedVersion?: number } = {}): Promise<boolean> => {
        const ctx = internals();
        validate(IdSchema, id, 'standardId');
        const opts = validateOptions(RemoveOptionsSchema, options, 'RemoveOptions');
        const current = await ctx.runtime.store.complianceStandards.get(ctx.tenantId, id);
        if (!current) return false;
        return ctx.write(
          'patch.policy',
          [standardScope(current.projectId)],
          { type: 'compliance-standard', id },
          (tx) => tx.complianceStandards.delete(ctx.tenantId, id, opts),
        );
      },
      get: async (id: string): Promise<ComplianceStandard> => {
        const ctx = internals();
        validate(IdSchema, id, 'standardId');
        const standard = await ctx.runtime.store.complianceStandards.get(ctx.tenantId, id);
        // An unknown standard has no scope: telling that it is not there takes patch.read tenant-wide.
        const found = await ctx.read(
          'patch.read',
          [standardScope(standard?.projectId)],
          { type: 'compliance-standard', id },
          async () => standard,
        );
        if (!found) throw new NotFoundError('compliance standard', id);
        return found;
      },
      list: async (options: ListStandardsOptions = {}): Promise<ComplianceStandard[]> => {
        const ctx = internals();
        const { projectId } = validateOptions(ListStandardsOptionsSchema, options, 'ListStandardsOptions');
        return ctx.read(
          'patch.read',
          [standardScope(projectId)],
          { type: 'compliance-standard', id: '*' },
          async () => {
            const all = await ctx.runtime.store.complianceStandards.listAll(ctx.tenantId);
            return projectId === undefined
              ? all
              : all.filter((s) => s.projectId === undefined || s.projectId === projectId);
          },
        );
      },
    },

    evaluate: async (targets?: Targets): Promise<ServerEvaluation[]> => {
      const ctx = internals();
      const store = ctx.runtime.store;
      const parsed = targets === undefined ? undefined : validateTargets(targets);
      const [servers, projects] = await Promise.all([
        parsed ? resolveTargets(store, ctx.tenantId, parsed) : store.servers.listAll(ctx.tenantId),
        store.projects.listAll(ctx.tenantId),
      ]);
      // The scope resource gates a whole-tenant or whole-project read even when it has no server.
      const scope: Resource[] = !parsed
        ? [{ type: 'compliance' }]
        : 'projectId' in parsed
          ? [{ type: 'compliance', projectId: parsed.projectId }]
          : [];
      return ctx.read(
        'patch.read',
        [...scope, ...serverResources(servers)],
        { type: 'compliance', id: servers.length === 1 ? servers[0]!.id : `${servers.length} servers` },
        async () => {
          const inputs = await loadInputs(ctx, servers);
          const memberships = membershipsOf(servers, projects);
          return [...evaluations(servers, memberships, inputs, ctx.runtime.clock.now(), true)];
        },
      );
    },

    summary: async (options: ComplianceSummaryOptions = {}): Promise<ComplianceSummaryResult> => {
      const ctx = internals();
      const store = ctx.runtime.store;
      const { projectId } = validate(ComplianceSummaryOptionsSchema, options, 'ComplianceSummaryOptions');
      const [projects, standards, accounts] = await Promise.all([
        store.projects.listAll(ctx.tenantId),
        store.complianceStandards.listAll(ctx.tenantId),
        store.accounts.listAll(ctx.tenantId),
      ]);
      if (projectId !== undefined && !projects.some((p) => p.id === projectId)) {
        await store.projects.require(ctx.tenantId, projectId); // the NotFoundError it names
      }
      const now = ctx.runtime.clock.now();
      // Kept evaluations, brought up to date from the store's change feed (see `view.ts`).
      const { summary, servers } = await complianceViewOf(store, ctx.tenantId).summary(
        store,
        ctx.tenantId,
        { standards: standards.filter((s) => s.enabled), projects, accounts, now },
        projectId,
      );
      return ctx.read(
        'patch.read',
        [
          projectId === undefined ? { type: 'compliance' } : { type: 'compliance', projectId },
          // Authorization reads of a server its id and the fields selectors match (`Selectable`),
          // which the state keeps; loading the full servers would cost more than the summary.
          ...servers.map((server): Resource => ({ type: 'server', server: server as unknown as Server })),
        ],
        { type: 'compliance-summary', id: projectId ?? '*' },
        async () => ({
          generatedAt: now.toISOString(),
          ...(projectId !== undefined ? { projectId } : {}),
          ...summary,
        }),
      );
    },
  };
}
