import type { ScanResult, Server } from './entities.js';
import type { PatchCategory, PendingPatch, Severity } from './patch.js';
import type { Selectable } from './selector.js';

/** The OS grouping key of a server: its pretty name, else id (or family) and version. */
export function osKey(server: Pick<Server, 'os'>): string | null {
  const os = server.os;
  if (!os) return null;
  if (os.prettyName) return os.prettyName;
  return `${os.id || os.family}${os.versionId ? ` ${os.versionId}` : ''}`;
}

/** The fields of a server that the summary groups, labels and selects by. */
export interface ComplianceStateServer extends Selectable {
  name: string;
  /** The OS grouping key (`osKey`), `null` when the OS is not known. */
  osKey: string | null;
}

/**
 * The pending patches of one category and severity in a scan, reduced to what the patch rules
 * judge: how many there are and when the oldest was first seen. New dependencies (`isNew`) are
 * left out, as the rules skip them.
 */
export interface PatchDigest {
  category: PatchCategory;
  severity: Severity;
  count: number;
  /** The oldest first sighting (the scan's `scannedAt` where a patch records none), ISO 8601. */
  oldestSeenAt: string;
}

/** Which scan a state refers to, and how it is ordered against other scans of the server. */
export interface ComplianceStateScanRef {
  id: string;
  scannedAt: string;
  createdAt: string;
}

/** The latest successful scan reduced to the evaluation's inputs. */
export interface ComplianceStateScan extends ComplianceStateScanRef {
  lastUpdatedAt?: string;
  patches: PatchDigest[];
}

/** The newest scan attempt of any status. */
export interface ComplianceStateAttempt extends ComplianceStateScanRef {
  status: ScanResult['status'];
}

/**
 * One server's compliance inputs, kept by the store in the same transaction as every write of the
 * server or its scans, so that a summary reads one compact row per server instead of the scans.
 * Nothing in it depends on the time of evaluation: ages are judged from these dates at `now`.
 */
export interface ComplianceState {
  serverId: string;
  /** Absent while the server does not exist (scans recorded for an id that has no server). */
  server?: ComplianceStateServer;
  /** The newest successful scan. */
  succeeded?: ComplianceStateScan;
  /** The newest scan of any status. */
  attempt?: ComplianceStateAttempt;
}

/** The server part of a state. */
export function stateServerOf(server: Server): ComplianceStateServer {
  return {
    id: server.id,
    name: server.name,
    provider: server.provider,
    accountId: server.accountId,
    ...(server.region !== undefined ? { region: server.region } : {}),
    labels: server.labels,
    osKey: osKey(server),
  };
}

/**
 * Whether scan `a` supersedes `b` as a server's latest: later `scannedAt`, then later `createdAt`,
 * then the smaller id (the first in id order, as a pass over the scans in id order keeps).
 */
export function supersedes(a: ComplianceStateScanRef, b: ComplianceStateScanRef | undefined): boolean {
  if (!b) return true;
  const at = Date.parse(a.scannedAt);
  const bt = Date.parse(b.scannedAt);
  if (at !== bt) return at > bt;
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt;
  return a.id < b.id;
}

/** The digests of a successful scan's pending patches, by category and severity. */
export function digestPatches(scan: Pick<ScanResult, 'scannedAt' | 'patches'>): PatchDigest[] {
  const scannedMs = Date.parse(scan.scannedAt);
  const groups = new Map<
    string,
    { category: PatchCategory; severity: Severity; count: number; seen: number }
  >();
  for (const patch of scan.patches) {
    if (patch.isNew) continue;
    const parsed = patch.firstSeenAt === undefined ? scannedMs : Date.parse(patch.firstSeenAt);
    const seen = Number.isNaN(parsed) ? scannedMs : parsed;
    const key = `${patch.category}\u0000${patch.severity}`;
    const group = groups.get(key);
    if (!group) groups.set(key, { category: patch.category, severity: patch.severity, count: 1, seen });
    else {
      group.count++;
      if (seen < group.seen) group.seen = seen;
    }
  }
  return [...groups.values()].map((g) => ({
    category: g.category,
    severity: g.severity,
    count: g.count,
    oldestSeenAt: new Date(g.seen).toISOString(),
  }));
}

const refOf = (scan: ScanResult): ComplianceStateScanRef => ({
  id: scan.id,
  scannedAt: scan.scannedAt,
  createdAt: scan.createdAt,
});

/** `state` after `scan` was recorded: it replaces the latest attempt and success it supersedes. */
export function withScan(state: ComplianceState, scan: ScanResult): ComplianceState {
  const next: ComplianceState = { ...state };
  const ref = refOf(scan);
  if (supersedes(ref, state.attempt)) next.attempt = { ...ref, status: scan.status };
  if (scan.status === 'succeeded' && supersedes(ref, state.succeeded)) {
    next.succeeded = {
      ...ref,
      ...(scan.lastUpdatedAt !== undefined ? { lastUpdatedAt: scan.lastUpdatedAt } : {}),
      patches: digestPatches(scan),
    };
  }
  return next;
}

/** A server's state built from scratch: its server (if it exists) and all of its scans. */
export function complianceStateOf(
  serverId: string,
  server: Server | undefined,
  scans: Iterable<ScanResult>,
): ComplianceState {
  let state: ComplianceState = { serverId, ...(server ? { server: stateServerOf(server) } : {}) };
  for (const scan of scans) if (scan.serverId === serverId) state = withScan(state, scan);
  return state;
}

/**
 * The scans `evaluateServer` reads, rebuilt from a state: one patch per digest, first seen at the
 * digest's oldest sighting. The patch rules judge a group by its oldest patch only (any counted
 * patch past the age fails the rule, and the oldest is when it started failing), so the verdicts,
 * `failingSince` and alerts are those of the full scan. Only for evaluations without `explain`:
 * the names and versions the reasons would cite are not kept.
 */
export function scansOfState(state: ComplianceState): {
  latestScan?: ScanResult;
  latestAttempt?: ScanResult;
} {
  const out: { latestScan?: ScanResult; latestAttempt?: ScanResult } = {};
  const succeeded = state.succeeded;
  if (succeeded) {
    const patches: PendingPatch[] = succeeded.patches.map((d) => ({
      name: '',
      candidateVersion: '',
      category: d.category,
      severity: d.severity,
      firstSeenAt: d.oldestSeenAt,
    })) as PendingPatch[];
    // Evaluation reads status, scannedAt, lastUpdatedAt and the patches; the rest is not kept.
    out.latestScan = {
      id: succeeded.id,
      serverId: state.serverId,
      status: 'succeeded',
      scannedAt: succeeded.scannedAt,
      createdAt: succeeded.createdAt,
      ...(succeeded.lastUpdatedAt !== undefined ? { lastUpdatedAt: succeeded.lastUpdatedAt } : {}),
      patches,
    } as ScanResult;
  }
  if (state.attempt) {
    out.latestAttempt = {
      id: state.attempt.id,
      serverId: state.serverId,
      status: state.attempt.status,
      scannedAt: state.attempt.scannedAt,
      createdAt: state.attempt.createdAt,
      patches: [],
    } as unknown as ScanResult;
  }
  return out;
}

/**
 * Folds servers and scans, in any order, into their states: what a store migration uses to build
 * the states of the data it already holds. Keyed by tenant, then server id.
 */
export class ComplianceStateBackfill {
  readonly #states = new Map<string, Map<string, ComplianceState>>();

  #state(tenantId: string, serverId: string): [Map<string, ComplianceState>, ComplianceState] {
    let tenant = this.#states.get(tenantId);
    if (!tenant) {
      tenant = new Map();
      this.#states.set(tenantId, tenant);
    }
    return [tenant, tenant.get(serverId) ?? { serverId }];
  }

  /** Takes in a stored server. */
  addServer(tenantId: string, server: Server): void {
    const [tenant, state] = this.#state(tenantId, server.id);
    tenant.set(server.id, { ...state, server: stateServerOf(server) });
  }

  /** Takes in a stored scan result. */
  addScan(tenantId: string, scan: ScanResult): void {
    const [tenant, state] = this.#state(tenantId, scan.serverId);
    tenant.set(scan.serverId, withScan(state, scan));
  }

  /** Every state built, with its tenant. */
  *states(): Generator<[tenantId: string, state: ComplianceState]> {
    for (const [tenantId, tenant] of this.#states)
      for (const state of tenant.values()) yield [tenantId, state];
  }
}
