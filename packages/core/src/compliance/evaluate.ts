import {
  type ComplianceRule,
  type ComplianceStandard,
  matchesSelector,
  type PatchCategory,
  type PendingPatch,
  type Project,
  type ScanResult,
  type Selectable,
  type Severity,
} from '../domain/index.js';

const DAY_MS = 86_400_000;

const SEVERITY_RANK: Record<Severity, number> = {
  unspecified: 0,
  low: 1,
  moderate: 2,
  important: 3,
  critical: 4,
};

/** How a server (or one of its standards) stands. */
export type ComplianceStatus = 'compliant' | 'non-compliant' | 'unknown';

/** A pending patch named as evidence in a {@link ComplianceReason}. */
export interface CompliancePatch {
  name: string;
  candidateVersion: string;
  category: PatchCategory;
  severity: Severity;
  /** When it was first seen pending (the scan's `scannedAt` when the scan did not record it). */
  firstSeenAt: string;
  /** Whole days from `firstSeenAt` to the evaluation's `now`. */
  ageDays: number;
  /** Pinned on the host (`apt-mark hold`, versionlock): still pending, still counted. */
  held?: boolean;
}

/** Why a standard is not compliant, in words and evidence. */
export interface ComplianceReason {
  message: string;
  /** The patches that fail the rule (or cannot be judged), oldest first. */
  patches?: CompliancePatch[];
  /** When the rule started failing for this reason (see {@link evaluateServer}). */
  since?: string;
}

/** One standard's verdict on one server. */
export interface StandardResult {
  standardId: string;
  name: string;
  status: ComplianceStatus;
  /** Empty when compliant. */
  reasons: ComplianceReason[];
  /** When the rule started failing; only for `non-compliant`. */
  failingSince?: string;
  /** The rule has been failing for longer than the standard's `alertAfterDays`. */
  alert: boolean;
  /** `failingSince + alertAfterDays`: when the server crossed the alert threshold. */
  alertSince?: string;
}

/** Every applicable standard's verdict on one server, and the server's overall status. */
export interface ServerEvaluation {
  serverId: string;
  /** `non-compliant` if any standard is, else `unknown` if any is, else `compliant`. */
  status: ComplianceStatus;
  /** One per applicable, enabled standard, in the order the standards were given. */
  results: StandardResult[];
  /** The projects whose selector matches the server (evaluated once, reused by the summary). */
  projectIds: string[];
  /** `scannedAt` of the latest successful scan. */
  lastScannedAt?: string;
  /** When scans last saw packages installed (carried from scan to scan). */
  lastUpdatedAt?: string;
  /** Set when the newest scan attempt failed after the last success (or with no success at all). */
  lastFailedScanAt?: string;
  /** Any standard is in alert. */
  alert: boolean;
  /** The earliest `alertSince` of the standards in alert. */
  alertSince?: string;
}

/** What {@link evaluateServer} judges. Nothing is loaded: the caller passes everything in. */
export interface EvaluateServerInput {
  server: Selectable;
  /**
   * The server's latest *successful* scan. A failed scan passed here is ignored (treated as no
   * scan), because a failed scan says nothing about pending patches.
   */
  latestScan?: ScanResult | undefined;
  /** The newest scan of any status, to say in the reasons that the last attempt failed. Optional. */
  latestAttempt?: ScanResult | undefined;
  /** The tenant's standards; the ones that do not apply to the server are skipped. */
  standards: readonly ComplianceStandard[];
  /** The tenant's projects, to decide which project-scoped standards apply. */
  projects?: readonly Project[];
  /**
   * The server's project memberships when the caller has already computed them; takes precedence
   * over `projects`, so a summary over many servers matches every selector only once.
   */
  projectIds?: readonly string[];
  now: Date;
  /**
   * `false` leaves every result's `reasons` empty and omits its `failingSince` and `alertSince`
   * (no messages, no evidence, fewer dates to format); every status and `alert`, and the server's
   * own dates and `alertSince`, are the same. For aggregate views over many servers.
   * @default true
   */
  explain?: boolean;
}

interface Verdict {
  status: ComplianceStatus;
  reasons: ComplianceReason[];
  /** Epoch ms when the rule started failing (non-compliant only). */
  failingSince?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The earliest instant, after `now`, at which one of an evaluation's comparisons with the clock
 * would come out differently: every rule compares `now` with an instant computed from the inputs
 * (a patch's first sighting plus the allowed age, a scan's date plus the allowed days, a failing
 * rule's start plus the alert delay), and each comparison still to flip notes that instant here.
 */
class Horizon {
  #at = Number.POSITIVE_INFINITY;
  /** `now` is not yet past `instant`; once it is, the comparison flips. */
  note(instant: number): void {
    if (instant < this.#at) this.#at = instant;
  }
  /**
   * The last epoch ms through which the evaluation holds, given that it holds at `nowMs`: one ms
   * short of the earliest noted instant, rounded down, so that floating-point sums of fractional
   * days never make it late. `Infinity` when no passing of time changes it.
   */
  stableThrough(nowMs: number): number {
    return Number.isFinite(this.#at) ? Math.max(nowMs, Math.floor(this.#at) - 1) : this.#at;
  }
}
const days = (ms: number) => Math.floor(Math.max(0, ms) / DAY_MS);
const patchCount = (n: number) => `${n} patch${n === 1 ? '' : 'es'}`;

function evidence(patch: PendingPatch, seenMs: number, nowMs: number): CompliancePatch {
  return {
    name: patch.name,
    candidateVersion: patch.candidateVersion,
    category: patch.category,
    severity: patch.severity,
    firstSeenAt: iso(seenMs),
    ageDays: days(nowMs - seenMs),
    ...(patch.held ? { held: true } : {}),
  };
}

function noScanReason(attempt: ScanResult | undefined): ComplianceReason {
  if (attempt?.status === 'failed') {
    const why = attempt.error ? `: ${attempt.error.code} ${attempt.error.message}`.slice(0, 500) : '';
    return {
      message: `never successfully scanned; the latest attempt at ${attempt.scannedAt} failed${why}`,
    };
  }
  return { message: 'never successfully scanned' };
}

interface Aged {
  patch: PendingPatch;
  seen: number;
}

const byAge = (a: Aged, b: Aged) => a.seen - b.seen;

/**
 * Judges `max-pending-age` and `no-pending`. Which patches count is the filter patch policies use
 * (`selectPatches`), so a standard counts exactly what a policy with the same categories and
 * minimum severity would install:
 * - a patch whose source states no severity (`unspecified`, e.g. apt) meets any minimum;
 * - a patch of category `unknown` is never assumed to be of the rule's categories, nor not to be:
 *   unless the rule lists `unknown` itself, it makes the rule `unknown` instead of compliant;
 * - new dependencies (`isNew`) are not pending updates of the server and are skipped; pinned
 *   (`held`) and kept-back patches still leave the server exposed and are counted.
 *
 * One loop, and evidence is collected only when `explain`: a fleet-wide summary judges every
 * pending patch of every server and needs none of it.
 */
function judgePatches(
  rule: Extract<ComplianceRule, { kind: 'max-pending-age' | 'no-pending' }>,
  scan: ScanResult,
  nowMs: number,
  explain: boolean,
  horizon: Horizon,
): Verdict {
  // no-pending fails on any matching patch, however young; max-pending-age only past the age.
  const maxAgeMs = rule.kind === 'max-pending-age' ? rule.maxAgeDays * DAY_MS : 0;
  const aged = rule.kind === 'max-pending-age';
  const minimum = SEVERITY_RANK[rule.minSeverity];
  const scannedMs = Date.parse(scan.scannedAt);
  let offending = 0;
  let unclear = 0;
  let oldest = Number.POSITIVE_INFINITY;
  const offendingList: Aged[] = [];
  const unclearList: Aged[] = [];
  for (const patch of scan.patches) {
    if (patch.isNew) continue;
    if (patch.severity !== 'unspecified' && SEVERITY_RANK[patch.severity] < minimum) continue;
    const counted = rule.categories.includes(patch.category);
    if (!counted && patch.category !== 'unknown') continue;
    const parsed = patch.firstSeenAt === undefined ? scannedMs : Date.parse(patch.firstSeenAt);
    const seen = Number.isNaN(parsed) ? scannedMs : parsed;
    if (aged && !(nowMs - seen > maxAgeMs)) {
      horizon.note(seen + maxAgeMs);
      continue;
    }
    if (counted) {
      offending++;
      if (seen < oldest) oldest = seen;
      if (explain) offendingList.push({ patch, seen });
    } else {
      unclear++;
      if (explain) unclearList.push({ patch, seen });
    }
  }
  const status: ComplianceStatus = offending ? 'non-compliant' : unclear ? 'unknown' : 'compliant';
  const failingSince = offending ? oldest + maxAgeMs : undefined;
  const verdict: Verdict = { status, reasons: [], ...(failingSince !== undefined ? { failingSince } : {}) };
  if (!explain) return verdict;
  const what = rule.categories.join('/');
  const severity = rule.minSeverity === 'unspecified' ? '' : ` (severity ${rule.minSeverity} or higher)`;
  const condition =
    rule.kind === 'max-pending-age' ? `pending for more than ${rule.maxAgeDays} days` : 'pending';
  if (failingSince !== undefined) {
    offendingList.sort(byAge);
    const first = offendingList[0]!;
    verdict.reasons.push({
      message:
        `${patchCount(offending)} of ${what}${severity} ${condition} as of the scan at ` +
        `${scan.scannedAt}; oldest ${first.patch.name} ${first.patch.candidateVersion}, ` +
        `first seen ${days(nowMs - first.seen)} days ago`,
      patches: offendingList.map((p) => evidence(p.patch, p.seen, nowMs)),
      since: iso(failingSince),
    });
  }
  if (unclear) {
    unclearList.sort(byAge);
    verdict.reasons.push({
      message: `${patchCount(unclear)} of unknown category ${condition}: the source does not say whether they are ${what}`,
      patches: unclearList.map((p) => evidence(p.patch, p.seen, nowMs)),
    });
  }
  return verdict;
}

function judge(
  rule: ComplianceRule,
  scan: ScanResult | undefined,
  attempt: ScanResult | undefined,
  nowMs: number,
  explain: boolean,
  horizon: Horizon,
): Verdict {
  if (!scan) return { status: 'unknown', reasons: explain ? [noScanReason(attempt)] : [] };
  switch (rule.kind) {
    case 'max-pending-age':
    case 'no-pending':
      return judgePatches(rule, scan, nowMs, explain, horizon);
    case 'updated-within': {
      if (!scan.lastUpdatedAt) {
        return {
          status: 'unknown',
          reasons: explain
            ? [{ message: 'no scan has yet observed packages being installed on this server' }]
            : [],
        };
      }
      const updated = Date.parse(scan.lastUpdatedAt);
      const failingSince = updated + rule.days * DAY_MS;
      if (nowMs <= failingSince) {
        horizon.note(failingSince);
        return { status: 'compliant', reasons: [] };
      }
      if (!explain) return { status: 'non-compliant', failingSince, reasons: [] };
      return {
        status: 'non-compliant',
        failingSince,
        reasons: [
          {
            message: `last updated ${days(nowMs - updated)} days ago (${scan.lastUpdatedAt}), more than ${rule.days} days`,
            since: iso(failingSince),
          },
        ],
      };
    }
    case 'scanned-within': {
      const scanned = Date.parse(scan.scannedAt);
      const failingSince = scanned + rule.days * DAY_MS;
      if (nowMs <= failingSince) {
        horizon.note(failingSince);
        return { status: 'compliant', reasons: [] };
      }
      if (!explain) return { status: 'non-compliant', failingSince, reasons: [] };
      const failed =
        attempt?.status === 'failed' ? `; the latest attempt at ${attempt.scannedAt} failed` : '';
      return {
        status: 'non-compliant',
        failingSince,
        reasons: [
          {
            message: `last successful scan ${days(nowMs - scanned)} days ago (${scan.scannedAt}), more than ${rule.days} days${failed}`,
            since: iso(failingSince),
          },
        ],
      };
    }
  }
}

/** The project ids whose selector matches `server`. */
export function projectsOf(server: Selectable, projects: readonly Project[]): string[] {
  const out: string[] = [];
  for (const project of projects) if (matchesSelector(server, project.selector)) out.push(project.id);
  return out;
}

/**
 * Judges one server against the tenant's compliance standards. Pure: no I/O, no clock but `now`.
 *
 * **Which standards apply.** Enabled standards without a `projectId` apply to every server; a
 * project's standards apply to the servers its selector matches now (`projectIds`, or matched
 * against `projects`). A standard naming a project that is not given applies to nothing.
 *
 * **Which scan counts.** Every rule reads the latest *successful* scan. A failed scan tells nothing
 * about pending patches, so it neither clears nor worsens the patch rules; the staleness it causes
 * is the business of `scanned-within`, which counts from the last success. A server with no
 * successful scan is `unknown` for every rule, `scanned-within` included: it is never `compliant`.
 *
 * **Rules** (ages run from the recorded instant to `now`, in exact milliseconds; a day is 24 h):
 * - `max-pending-age`: non-compliant when a counted patch has been pending longer than
 *   `maxAgeDays` since `firstSeenAt` (the scan's `scannedAt` when absent); a newer candidate of a
 *   still-pending package keeps its original first-seen date, so upgrades of the candidate do not
 *   reset the age. Patches are judged as the last successful scan saw them: pair the standard with
 *   `scanned-within` to demand fresh evidence. Failing since: oldest offending `firstSeenAt +
 *   maxAgeDays`.
 * - `no-pending`: non-compliant on any counted patch. Failing since: oldest offending `firstSeenAt`.
 * - For both, which patches count is described in `judgePatches`: `unspecified` severity meets any
 *   minimum (as in patch policies), category `unknown` makes the rule `unknown` rather than
 *   compliant, `isNew` dependencies are skipped.
 * - `updated-within`: non-compliant when `now − lastUpdatedAt > days`; `unknown` while no scan has
 *   observed an update (`lastUpdatedAt` absent). Failing since: `lastUpdatedAt + days`.
 * - `scanned-within`: non-compliant when `now − lastScannedAt > days`. Failing since:
 *   `lastScannedAt + days`.
 *
 * **Alerts.** A standard with `alertAfterDays` is in alert when it is `non-compliant` and
 * `now − failingSince > alertAfterDays` (strictly). So for `max-pending-age` the oldest offending
 * patch's age minus `maxAgeDays` exceeds `alertAfterDays`; for `updated-within` the days since the
 * last update minus `days` exceed it; likewise for `scanned-within` and, from the first sighting, for
 * `no-pending`. `unknown` never alerts: it is not known to be failing. The server is in alert when
 * any standard is, and `alertSince` is the earliest `failingSince + alertAfterDays`.
 *
 * **Overall.** `non-compliant` if any standard is, else `unknown` if any is, else `compliant` (also
 * when no standard applies).
 */
export function evaluateServer(input: EvaluateServerInput): ServerEvaluation {
  return evaluateServerUntil(input).evaluation;
}

/**
 * {@link evaluateServer}, and the last epoch ms through which its answer holds for the same
 * inputs (`Infinity` when the passing of time never changes it): from `now` up to and including
 * that instant, every status, alert and date of the evaluation is the same. What a view that keeps
 * evaluations between calls re-evaluates by.
 */
export function evaluateServerUntil(input: EvaluateServerInput): {
  evaluation: ServerEvaluation;
  stableThrough: number;
} {
  const { server, standards, now } = input;
  const horizon = new Horizon();
  const nowMs = now.getTime();
  const explain = input.explain ?? true;
  const scan = input.latestScan?.status === 'succeeded' ? input.latestScan : undefined;
  const attempt = input.latestAttempt ?? input.latestScan;
  const projectIds = input.projectIds ? [...input.projectIds] : projectsOf(server, input.projects ?? []);
  const results: StandardResult[] = [];
  let nonCompliant = false;
  let unknown = false;
  let alertSince: number | undefined;
  for (const standard of standards) {
    if (!standard.enabled) continue;
    if (standard.projectId !== undefined && !projectIds.includes(standard.projectId)) continue;
    const verdict = judge(standard.rule, scan, attempt, nowMs, explain, horizon);
    const result: StandardResult = {
      standardId: standard.id,
      name: standard.name,
      status: verdict.status,
      reasons: verdict.reasons,
      alert: false,
    };
    if (verdict.failingSince !== undefined) {
      if (explain) result.failingSince = iso(verdict.failingSince);
      if (standard.alertAfterDays !== undefined) {
        const since = verdict.failingSince + standard.alertAfterDays * DAY_MS;
        if (nowMs > since) {
          result.alert = true;
          if (explain) result.alertSince = iso(since);
          alertSince = alertSince === undefined ? since : Math.min(alertSince, since);
        } else {
          horizon.note(since);
        }
      }
    }
    if (verdict.status === 'non-compliant') nonCompliant = true;
    else if (verdict.status === 'unknown') unknown = true;
    results.push(result);
  }
  const failedAfter =
    attempt?.status === 'failed' && (!scan || Date.parse(attempt.scannedAt) >= Date.parse(scan.scannedAt));
  const evaluation: ServerEvaluation = {
    serverId: server.id,
    status: nonCompliant ? 'non-compliant' : unknown ? 'unknown' : 'compliant',
    results,
    projectIds,
    ...(scan ? { lastScannedAt: scan.scannedAt } : {}),
    ...(scan?.lastUpdatedAt ? { lastUpdatedAt: scan.lastUpdatedAt } : {}),
    ...(failedAfter ? { lastFailedScanAt: attempt.scannedAt } : {}),
    alert: alertSince !== undefined,
    ...(alertSince !== undefined ? { alertSince: iso(alertSince) } : {}),
  };
  return { evaluation, stableThrough: horizon.stableThrough(nowMs) };
}
