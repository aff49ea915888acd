import {
  type ComplianceState,
  type ComplianceStateServer,
  scansOfState,
} from '../domain/compliance-state.js';
import type { Account, ComplianceStandard, Project } from '../domain/index.js';
import type { Store } from '../ports/store.js';
import { Mutex } from '../util/mutex.js';
import { evaluateServerUntil, projectsOf, type ServerEvaluation } from './evaluate.js';
import { type ComplianceSummary, SummaryBuilder } from './summary.js';

/** Ids read through the feed in one `getMany`. */
const PAGE = 10_000;
/**
 * Past this many changed ids (and a quarter of the view), reading every state again in pages is
 * cheaper than asking for each changed one: a nightly scan of the whole fleet, say.
 */
const RELOAD_AT = 20_000;
/**
 * Servers kept in the views of one store, over all tenants. A view over budget drops the tenants
 * least recently summarised; a dropped tenant's next summary reads its states again.
 */
const SERVER_BUDGET = 1_000_000;

/** One server as the view keeps it: its state's server part and its evaluation. */
interface Entry {
  server: ComplianceStateServer;
  state: ComplianceState;
  evaluation: ServerEvaluation;
  /** The `now` it was evaluated at, and the last instant its evaluation holds through. */
  from: number;
  through: number;
  /** `lastScannedAt` and `lastUpdatedAt` of the evaluation in epoch ms, `NaN` for "never". */
  scanned: number;
  updated: number;
}

/** What evaluation reads besides the states, as the summary loaded it for this call. */
export interface ViewInputs {
  /** The tenant's enabled standards. */
  standards: readonly ComplianceStandard[];
  projects: readonly Project[];
  accounts: readonly Account[];
  now: Date;
}

/** Summaries (tenant and projects) kept up to date entry by entry, per tenant. */
const MAX_SCOPES = 8;

/** Whether an entry counts in the summary of `scope`: `''` is the tenant, else a project id. */
const inScope = (entry: Entry, scope: string): boolean =>
  scope === '' || entry.evaluation.projectIds.includes(scope);

/**
 * What a list of stored entities says, in full: an entity deleted and created again under its id
 * starts at version 1 again, possibly in the same millisecond, so neither the version nor the
 * time of the write tells it apart. Standards, projects and accounts are few and small.
 */
const fingerprint = (items: readonly object[]): string => JSON.stringify(items);

/**
 * One tenant's compliance evaluations, kept between summaries and brought up to date on each from
 * the store's change feed (`ComplianceStates.changes`): a summary re-evaluates only the servers
 * whose state changed since the last one (a scan, a server written or deleted, by this process or
 * any other on the same database) and those whose evaluation expired (a patch passed its allowed
 * age, a scan went stale: `evaluateServerUntil` says until when each one holds). A change of the
 * standards or projects re-evaluates every server from the kept states. The summaries are kept
 * too, each in a `SummaryBuilder` that takes a changed server's old evaluation back and adds its
 * new one, so a summary after a few changes costs those changes, not a pass over the fleet.
 *
 * A backend without a feed gets no saving: every summary reads and evaluates every state.
 */
class ComplianceView {
  readonly #mutex = new Mutex();
  readonly #entries = new Map<string, Entry>();
  /** Where the feed was read last; undefined until the states were first read (or without a feed). */
  #cursor: string | undefined;
  #inputs = '';
  /**
   * The summaries kept up to date entry by entry, by scope (`''` for the tenant, else the project
   * id), each with the projects and accounts it was built for; the most recently used last.
   */
  readonly #builders = new Map<string, { key: string; builder: SummaryBuilder }>();

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The summary of the tenant, or of the servers of `projectId`, at `inputs.now`, with the servers
   * it covers for the caller's authorization. A project's summary lists in `byProject` only the
   * projects its servers belong to, not the whole tenant's.
   */
  summary(
    store: Store,
    tenantId: string,
    inputs: ViewInputs,
    projectId: string | undefined,
  ): Promise<{ summary: ComplianceSummary; servers: ComplianceStateServer[] }> {
    return this.#mutex.run(async () => {
      const nowMs = inputs.now.getTime();
      await this.#refresh(store, tenantId, inputs);
      const inputsKey = `${fingerprint(inputs.standards)}\u0001${fingerprint(inputs.projects)}`;
      if (inputsKey !== this.#inputs) {
        this.#builders.clear();
        for (const [id, entry] of this.#entries) this.#evaluate(id, entry.state, inputs);
        this.#inputs = inputsKey;
      }
      for (const [id, entry] of this.#entries) {
        if (nowMs < entry.from || nowMs > entry.through) this.#evaluate(id, entry.state, inputs);
      }

      const servers: ComplianceStateServer[] = [];
      const present = new Set<string>(projectId !== undefined ? [projectId] : []);
      for (const e of this.#entries.values()) {
        if (!inScope(e, projectId ?? '')) continue;
        if (projectId !== undefined) for (const id of e.evaluation.projectIds) present.add(id);
        servers.push(e.server);
      }
      const shown =
        projectId === undefined ? inputs.projects : inputs.projects.filter((p) => present.has(p.id));
      const scope = projectId ?? '';
      const key = `${fingerprint(shown)}\u0001${fingerprint(inputs.accounts)}`;
      let kept = this.#builders.get(scope);
      this.#builders.delete(scope);
      if (kept?.key !== key) {
        const builder = new SummaryBuilder(shown, {
          accountNames: new Map(inputs.accounts.map((a) => [a.id, a.name])),
        });
        for (const e of this.#entries.values()) {
          if (inScope(e, scope)) builder.add(e.evaluation, e.server, e.scanned, e.updated);
        }
        kept = { key, builder };
      }
      this.#builders.set(scope, kept);
      for (const [other] of this.#builders) {
        if (this.#builders.size <= MAX_SCOPES) break;
        this.#builders.delete(other);
      }
      // Frozen, and given to every caller until something changes (a copy of 40,000 alerts would
      // cost more than the summary).
      const summary = kept.builder.build(() => this.#inScope(scope));
      return { summary, servers };
    });
  }

  *#inScope(scope: string): Generator<[ServerEvaluation, ComplianceStateServer, number, number]> {
    for (const e of this.#entries.values()) {
      if (inScope(e, scope)) yield [e.evaluation, e.server, e.scanned, e.updated];
    }
  }

  /** Applies what changed in the store since the last call, or reads every state the first time. */
  async #refresh(store: Store, tenantId: string, inputs: ViewInputs): Promise<void> {
    const states = store.complianceStates;
    if (this.#cursor !== undefined) {
      const changes = await states.changes(tenantId, this.#cursor);
      if (changes && changes.serverIds.length <= Math.max(RELOAD_AT, this.#entries.size / 4)) {
        for (let i = 0; i < changes.serverIds.length; i += PAGE) {
          const ids = changes.serverIds.slice(i, i + PAGE);
          const found = new Map((await states.getMany(tenantId, ids)).map((s) => [s.serverId, s]));
          for (const id of ids) {
            const state = found.get(id);
            if (state?.server) this.#evaluate(id, state, inputs);
            else this.#drop(id);
          }
        }
        this.#cursor = changes.cursor;
        return;
      }
    }
    // The cursor is read before the states: whatever commits in between comes in the next answer.
    const start = await states.changes(tenantId);
    const all = await states.listAll(tenantId);
    this.#entries.clear();
    this.#builders.clear();
    for (const state of all) if (state.server) this.#evaluate(state.serverId, state, inputs);
    this.#cursor = start?.cursor;
  }

  #evaluate(serverId: string, state: ComplianceState, inputs: ViewInputs): void {
    const server = state.server!;
    const nowMs = inputs.now.getTime();
    const { evaluation, stableThrough } = evaluateServerUntil({
      server,
      ...scansOfState(state),
      standards: inputs.standards,
      projectIds: projectsOf(server, inputs.projects),
      now: inputs.now,
      explain: false,
    });
    const entry: Entry = {
      server,
      state,
      evaluation,
      from: nowMs,
      through: stableThrough,
      scanned: evaluation.lastScannedAt ? Date.parse(evaluation.lastScannedAt) : Number.NaN,
      updated: evaluation.lastUpdatedAt ? Date.parse(evaluation.lastUpdatedAt) : Number.NaN,
    };
    // Replaced in place, not deleted and added: a pass over the entries that re-evaluates them
    // must not meet the same server again at the end of the map.
    const old = this.#entries.get(serverId);
    if (old) this.#unsummarize(old);
    this.#entries.set(serverId, entry);
    for (const [scope, { builder }] of this.#builders) {
      if (inScope(entry, scope)) builder.add(evaluation, server, entry.scanned, entry.updated);
    }
  }

  /** Removes a server from the view and from every kept summary. */
  #drop(serverId: string): void {
    const old = this.#entries.get(serverId);
    if (!old) return;
    this.#entries.delete(serverId);
    this.#unsummarize(old);
  }

  /** Takes an entry back out of every kept summary. */
  #unsummarize(old: Entry): void {
    for (const [scope, { builder }] of this.#builders) {
      if (inScope(old, scope)) builder.remove(old.evaluation, old.server, old.scanned, old.updated);
    }
  }
}

/** The views of one store, by tenant, least recently used first. */
const views = new WeakMap<Store, Map<string, ComplianceView>>();

/**
 * The compliance view of `tenantId` over `store`, shared by every fleet on the same store object
 * in this process (the view is derived from the store's data alone). Views past the budget of
 * servers are dropped, least recently used first.
 */
export function complianceViewOf(store: Store, tenantId: string): ComplianceView {
  let byTenant = views.get(store);
  if (!byTenant) {
    byTenant = new Map();
    views.set(store, byTenant);
  }
  const view = byTenant.get(tenantId) ?? new ComplianceView();
  byTenant.delete(tenantId);
  byTenant.set(tenantId, view);
  let total = 0;
  for (const v of byTenant.values()) total += v.size;
  for (const [id, v] of byTenant) {
    if (total <= SERVER_BUDGET || v === view) break;
    total -= v.size;
    byTenant.delete(id);
  }
  return view;
}
