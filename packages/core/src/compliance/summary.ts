import { type ComplianceStateServer, osKey } from '../domain/compliance-state.js';
import type { Project, Server } from '../domain/index.js';
import type { ServerEvaluation } from './evaluate.js';

/**
 * The fields of a server that {@link summarize} groups and labels by: a stored server, or the
 * server part of its compliance state (which carries the OS key instead of the OS).
 */
export type SummaryServer =
  | Pick<Server, 'id' | 'name' | 'accountId' | 'provider' | 'region' | 'os'>
  | ComplianceStateServer;

/** Shares of a group in percent, with one decimal; the three always add up to exactly 100 (or all 0). */
export interface CompliancePercentages {
  compliant: number;
  nonCompliant: number;
  unknown: number;
}

/** Counts of a set of servers by compliance status. */
export interface ComplianceCounts {
  total: number;
  compliant: number;
  nonCompliant: number;
  unknown: number;
  percent: CompliancePercentages;
  /** Servers in alert (see `evaluateServer`). */
  alerts: number;
}

/** The servers sharing one value of a dimension (a project, an account, a region…). */
export interface ComplianceGroup extends ComplianceCounts {
  /** The value (project id, account id, region, provider, OS name); `null` for servers without one. */
  key: string | null;
  /** For display: the project's or account's name where known, else the key, `(none)` for `null`. */
  label: string;
  /** The oldest latest-successful-scan among the group's scanned servers. */
  oldestLastScannedAt?: string;
  /** Servers never successfully scanned: they are not reflected in `oldestLastScannedAt`. */
  neverScanned: number;
  /** The oldest last update among servers where scans have observed one. */
  oldestLastUpdatedAt?: string;
  /** Servers on which no update has been observed: not reflected in `oldestLastUpdatedAt`. */
  neverUpdated: number;
}

/** How the servers a standard applies to stand against it. */
export interface StandardSummary extends ComplianceCounts {
  standardId: string;
  name: string;
}

/** A server over a standard's alert threshold. */
export interface ComplianceAlert {
  serverId: string;
  serverName: string;
  /** When it crossed the first threshold. */
  alertSince: string;
  /** The standards in alert. */
  standardIds: string[];
}

/** The bird's-eye view: overall, grouped by dimension, by standard, and the alert list. */
export interface ComplianceSummary {
  overall: ComplianceGroup;
  /**
   * One group per project given (also those with no server), by name, then a `null` group for the
   * servers of no project. A server in several projects counts in each, so project totals may add
   * up to more than the overall total.
   */
  byProject: ComplianceGroup[];
  byAccount: ComplianceGroup[];
  byRegion: ComplianceGroup[];
  byProvider: ComplianceGroup[];
  /** By `os.prettyName`, else `os.id`/`os.family` and `versionId`; `null` when the OS is not known. */
  byOs: ComplianceGroup[];
  byStandard: StandardSummary[];
  /** Servers in alert, longest in alert first. */
  alerts: ComplianceAlert[];
}

/** Options of {@link summarize}. */
export interface SummarizeOptions {
  /** Account names by id, for the labels of `byAccount`. */
  accountNames?: ReadonlyMap<string, string>;
}

class Tally {
  total = 0;
  compliant = 0;
  nonCompliant = 0;
  unknown = 0;
  alerts = 0;
  oldestScanned = Number.POSITIVE_INFINITY;
  oldestUpdated = Number.POSITIVE_INFINITY;
  neverScanned = 0;
  neverUpdated = 0;

  constructor(
    readonly key: string | null,
    readonly label: string,
  ) {}

  add(evaluation: ServerEvaluation, scannedMs: number, updatedMs: number): void {
    this.total++;
    if (evaluation.status === 'compliant') this.compliant++;
    else if (evaluation.status === 'non-compliant') this.nonCompliant++;
    else this.unknown++;
    if (evaluation.alert) this.alerts++;
    if (Number.isNaN(scannedMs)) this.neverScanned++;
    else if (scannedMs < this.oldestScanned) this.oldestScanned = scannedMs;
    if (Number.isNaN(updatedMs)) this.neverUpdated++;
    else if (updatedMs < this.oldestUpdated) this.oldestUpdated = updatedMs;
  }

  /**
   * Takes back an `add` of the same arguments. Answers whether the group's oldest dates may have
   * been that server's: they cannot be taken back, only found again over the remaining servers.
   */
  remove(evaluation: ServerEvaluation, scannedMs: number, updatedMs: number): boolean {
    this.total--;
    if (evaluation.status === 'compliant') this.compliant--;
    else if (evaluation.status === 'non-compliant') this.nonCompliant--;
    else this.unknown--;
    if (evaluation.alert) this.alerts--;
    let oldest = false;
    if (Number.isNaN(scannedMs)) this.neverScanned--;
    else if (scannedMs <= this.oldestScanned) oldest = true;
    if (Number.isNaN(updatedMs)) this.neverUpdated--;
    else if (updatedMs <= this.oldestUpdated) oldest = true;
    return oldest;
  }

  /** Forgets the oldest dates, to find them again with {@link Tally.offer}. */
  resetOldest(): void {
    this.oldestScanned = Number.POSITIVE_INFINITY;
    this.oldestUpdated = Number.POSITIVE_INFINITY;
  }

  /** One remaining server's dates, while the oldest are found again. */
  offer(scannedMs: number, updatedMs: number): void {
    if (scannedMs < this.oldestScanned) this.oldestScanned = scannedMs;
    if (updatedMs < this.oldestUpdated) this.oldestUpdated = updatedMs;
  }

  group(): ComplianceGroup {
    return {
      key: this.key,
      label: this.label,
      ...counts(this),
      ...(Number.isFinite(this.oldestScanned)
        ? { oldestLastScannedAt: new Date(this.oldestScanned).toISOString() }
        : {}),
      neverScanned: this.neverScanned,
      ...(Number.isFinite(this.oldestUpdated)
        ? { oldestLastUpdatedAt: new Date(this.oldestUpdated).toISOString() }
        : {}),
      neverUpdated: this.neverUpdated,
    };
  }
}

/**
 * Largest-remainder rounding to tenths, so that a dashboard's three shares never show 99.9 % or
 * 100.1 % in total.
 */
function percentages(c: number, n: number, u: number, total: number): CompliancePercentages {
  if (total === 0) return { compliant: 0, nonCompliant: 0, unknown: 0 };
  const exact = [c, n, u].map((x) => (x * 1000) / total);
  const tenths = exact.map(Math.floor);
  let left = 1000 - tenths.reduce((a, b) => a + b, 0);
  const order = [0, 1, 2].sort((a, b) => exact[b]! - tenths[b]! - (exact[a]! - tenths[a]!));
  for (const i of order) {
    if (left <= 0) break;
    tenths[i]!++;
    left--;
  }
  return { compliant: tenths[0]! / 10, nonCompliant: tenths[1]! / 10, unknown: tenths[2]! / 10 };
}

function counts(t: Omit<ComplianceCounts, 'percent'>): ComplianceCounts {
  return {
    total: t.total,
    compliant: t.compliant,
    nonCompliant: t.nonCompliant,
    unknown: t.unknown,
    percent: percentages(t.compliant, t.nonCompliant, t.unknown, t.total),
    alerts: t.alerts,
  };
}

export { osKey };

class Dimension {
  readonly #tallies = new Map<string | null, Tally>();
  /** Groups listed even when empty (every project given). */
  readonly #pinned = new Set<string | null>();
  constructor(readonly labelOf: (key: string) => string = (key) => key) {}

  pin(key: string): void {
    this.tally(key);
    this.#pinned.add(key);
  }

  /** Drops the group of `key` once its last server was removed, unless it is pinned. */
  release(tally: Tally): void {
    if (tally.total === 0 && !this.#pinned.has(tally.key)) this.#tallies.delete(tally.key);
  }

  all(): Iterable<Tally> {
    return this.#tallies.values();
  }

  tally(key: string | null): Tally {
    let tally = this.#tallies.get(key);
    if (!tally) {
      tally = new Tally(key, key === null ? '(none)' : this.labelOf(key));
      this.#tallies.set(key, tally);
    }
    return tally;
  }

  groups(): ComplianceGroup[] {
    return [...this.#tallies.values()]
      .sort((a, b) =>
        a.key === b.key ? 0 : a.key === null ? 1 : b.key === null ? -1 : a.key < b.key ? -1 : 1,
      )
      .map((t) => t.group());
  }
}

/**
 * The fold behind {@link summarize}: one `add` per server, then `build`. A view that keeps
 * evaluations between summaries keeps a builder too: it takes back a server's old evaluation with
 * `remove` and adds the new one, so a summary after a few changes costs a few updates and the
 * output, not a pass over the fleet. Dates come already parsed (`NaN` for "never").
 */
export class SummaryBuilder {
  readonly #projectById = new Map<string, Project>();
  readonly #overall = new Tally(null, 'all servers');
  readonly #byProject: Dimension;
  readonly #byAccount: Dimension;
  readonly #byRegion = new Dimension();
  readonly #byProvider = new Dimension();
  readonly #byOs = new Dimension();
  readonly #byStandard = new Map<string, Omit<StandardSummary, 'percent'>>();
  readonly #alerts = new Map<string, { sinceMs: number; alert: ComplianceAlert }>();
  /** Some group's oldest dates may have left with a removed server. */
  #oldestLost = false;
  #built: ComplianceSummary | undefined;

  constructor(projects: readonly Project[], options: SummarizeOptions = {}) {
    for (const project of projects) this.#projectById.set(project.id, project);
    this.#byProject = new Dimension((id) => this.#projectById.get(id)?.name ?? id);
    for (const project of projects) this.#byProject.pin(project.id);
    const accountNames = options.accountNames;
    this.#byAccount = new Dimension((id) => accountNames?.get(id) ?? id);
  }

  /** The groups a server counts in, with the dimension each belongs to. */
  #groups(evaluation: ServerEvaluation, server: SummaryServer): [Dimension | undefined, Tally][] {
    const out: [Dimension | undefined, Tally][] = [[undefined, this.#overall]];
    let inProject = false;
    for (const projectId of evaluation.projectIds) {
      if (!this.#projectById.has(projectId)) continue;
      inProject = true;
      out.push([this.#byProject, this.#byProject.tally(projectId)]);
    }
    if (!inProject) out.push([this.#byProject, this.#byProject.tally(null)]);
    out.push([this.#byAccount, this.#byAccount.tally(server.accountId)]);
    out.push([this.#byRegion, this.#byRegion.tally(server.region ?? null)]);
    out.push([this.#byProvider, this.#byProvider.tally(server.provider)]);
    out.push([this.#byOs, this.#byOs.tally('osKey' in server ? server.osKey : osKey(server))]);
    return out;
  }

  /**
   * Counts one server's evaluation. `scanned` and `updated` are `lastScannedAt` and
   * `lastUpdatedAt` as epoch ms, `NaN` for "never".
   */
  add(evaluation: ServerEvaluation, server: SummaryServer, scanned: number, updated: number): void {
    this.#built = undefined;
    for (const [, tally] of this.#groups(evaluation, server)) tally.add(evaluation, scanned, updated);
    for (const result of evaluation.results) {
      let s = this.#byStandard.get(result.standardId);
      if (!s) {
        s = {
          standardId: result.standardId,
          name: result.name,
          total: 0,
          compliant: 0,
          nonCompliant: 0,
          unknown: 0,
          alerts: 0,
        };
        this.#byStandard.set(result.standardId, s);
      }
      s.total++;
      if (result.status === 'compliant') s.compliant++;
      else if (result.status === 'non-compliant') s.nonCompliant++;
      else s.unknown++;
      if (result.alert) s.alerts++;
    }
    if (evaluation.alert && evaluation.alertSince) {
      this.#alerts.set(server.id, {
        sinceMs: Date.parse(evaluation.alertSince),
        alert: Object.freeze({
          serverId: server.id,
          serverName: server.name,
          alertSince: evaluation.alertSince,
          standardIds: Object.freeze(
            evaluation.results.filter((r) => r.alert).map((r) => r.standardId),
          ) as string[],
        }),
      });
    }
  }

  /** Takes back an {@link SummaryBuilder.add} of the same arguments. */
  remove(evaluation: ServerEvaluation, server: SummaryServer, scanned: number, updated: number): void {
    this.#built = undefined;
    for (const [dimension, tally] of this.#groups(evaluation, server)) {
      if (tally.remove(evaluation, scanned, updated)) this.#oldestLost = true;
      dimension?.release(tally);
    }
    for (const result of evaluation.results) {
      const s = this.#byStandard.get(result.standardId);
      if (!s) continue;
      s.total--;
      if (result.status === 'compliant') s.compliant--;
      else if (result.status === 'non-compliant') s.nonCompliant--;
      else s.unknown--;
      if (result.alert) s.alerts--;
      if (s.total === 0) this.#byStandard.delete(result.standardId);
    }
    if (evaluation.alert && evaluation.alertSince) this.#alerts.delete(server.id);
  }

  /**
   * The summary of what was added and not removed. `remaining` gives the servers counted now; it
   * is walked only when a removed server may have held a group's oldest dates. The result is
   * frozen and given again until the next `add` or `remove`.
   */
  build(
    remaining: () => Iterable<[ServerEvaluation, SummaryServer, number, number]> = () => [],
  ): ComplianceSummary {
    if (this.#built) return this.#built;
    if (this.#oldestLost) {
      const tallies = [
        this.#overall,
        ...[this.#byProject, this.#byAccount, this.#byRegion, this.#byProvider, this.#byOs].flatMap((d) => [
          ...d.all(),
        ]),
      ];
      for (const tally of tallies) tally.resetOldest();
      for (const [evaluation, server, scanned, updated] of remaining()) {
        for (const [, tally] of this.#groups(evaluation, server)) tally.offer(scanned, updated);
      }
      this.#oldestLost = false;
    }
    const alerts = [...this.#alerts.values()].sort(
      (a, b) => a.sinceMs - b.sinceMs || (a.alert.serverId < b.alert.serverId ? -1 : 1),
    );
    const projectGroups = this.#byProject.groups();
    const [unassigned] = projectGroups.filter((g) => g.key === null);
    const named = projectGroups
      .filter((g) => g.key !== null)
      .sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    const freeze = <T extends { percent: CompliancePercentages }>(group: T): T => {
      Object.freeze(group.percent);
      return Object.freeze(group);
    };
    const frozen = <T extends { percent: CompliancePercentages }>(groups: T[]): T[] =>
      Object.freeze(groups.map(freeze)) as T[];
    this.#built = Object.freeze({
      overall: freeze(this.#overall.group()),
      byProject: frozen(unassigned ? [...named, unassigned] : named),
      byAccount: frozen(this.#byAccount.groups()),
      byRegion: frozen(this.#byRegion.groups()),
      byProvider: frozen(this.#byProvider.groups()),
      byOs: frozen(this.#byOs.groups()),
      byStandard: frozen(
        [...this.#byStandard.values()]
          .map((s) => ({ ...s, ...counts(s) }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      ),
      alerts: Object.freeze(alerts.map((a) => a.alert)) as ComplianceAlert[],
    });
    return this.#built;
  }
}

/**
 * Aggregates per-server evaluations into counts and percentages, overall and by project, account,
 * region, provider and OS, per standard, with the oldest scan and update dates of each group and
 * the servers in alert.
 *
 * One pass over `evaluations`: each costs O(1 + its projects + its standard results) map updates,
 * so the whole is O(N·(P̄ + S)) for N servers, P̄ projects per server and S standards, plus
 * O(A log A) to sort the A alerts. Project membership is not recomputed: it is read from each
 * evaluation's `projectIds` (computed once by `evaluateServer`), so `projects` only supplies names.
 * Evaluations of servers missing from `servers` are left out; so are memberships of projects
 * missing from `projects`. `evaluations` may be a lazy iterable (a generator calling
 * `evaluateServer`): nothing is kept per evaluation but the alert list, so memory does not grow
 * with the evaluations' reasons. The result is frozen.
 */
export function summarize(
  evaluations: Iterable<ServerEvaluation>,
  servers: readonly SummaryServer[],
  projects: readonly Project[],
  options: SummarizeOptions = {},
): ComplianceSummary {
  const serverById = new Map<string, SummaryServer>();
  for (const server of servers) serverById.set(server.id, server);
  const builder = new SummaryBuilder(projects, options);
  for (const evaluation of evaluations) {
    const server = serverById.get(evaluation.serverId);
    if (!server) continue;
    // NaN stands for "never": parsing once here keeps every group's comparison numeric.
    const scanned = evaluation.lastScannedAt ? Date.parse(evaluation.lastScannedAt) : Number.NaN;
    const updated = evaluation.lastUpdatedAt ? Date.parse(evaluation.lastUpdatedAt) : Number.NaN;
    builder.add(evaluation, server, scanned, updated);
  }
  return builder.build();
}
