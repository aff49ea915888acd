import picomatch from 'picomatch';
import type { PatchCategory, PatchPolicy, PendingPatch, Severity } from '../domain/index.js';

const SEVERITY_RANK: Record<Severity, number> = {
  unspecified: 0,
  low: 1,
  moderate: 2,
  important: 3,
  critical: 4,
};

/** Why a pending patch is not in a plan's install set. */
export type HoldReason =
  | { kind: 'category'; category: PatchCategory }
  | { kind: 'severity'; severity: Severity; minimum: Severity }
  | { kind: 'excluded'; pattern: string; needsSecondaryApproval: true }
  | { kind: 'held'; detail: string };

/** What a policy selects from a server's pending patches, and what it holds back. */
export interface PatchSelection {
  /** Patches to install, by name and exact candidate version. */
  selected: PendingPatch[];
  /** Pending patches left out, each with the reason. */
  heldBack: { patch: PendingPatch; reason: HoldReason }[];
}

/**
 * The policy's exclusion test: the first pattern (exact name or glob, dot files included) that
 * matches a package name, or `undefined`. The one matcher for selection and for the resolved
 * transaction, so a package cannot be excluded in one and not the other.
 */
export function exclusionMatcher(
  policy: Pick<PatchPolicy, 'exclusions'>,
): (name: string) => string | undefined {
  const matchers = policy.exclusions.map((pattern) => ({ pattern, test: picomatch(pattern, { dot: true }) }));
  return (name) => matchers.find((m) => m.test(name))?.pattern;
}

/** An excluded package in a resolved transaction that has no secondary approval. */
export interface UnapprovedExclusion {
  /** The package name. */
  name: string;
  /** The version the transaction would install. */
  version: string;
  /** The policy's exclusion pattern that matches it. */
  pattern: string;
  /** Not among the packages the policy selected: the package manager pulls it in for them. */
  dependency: boolean;
}

/**
 * The packages of a resolved transaction (what the package manager would really install, its
 * dependencies included) that an exclusion matches and no secondary approval names.
 */
export function unapprovedExclusions(
  policy: Pick<PatchPolicy, 'exclusions'>,
  transaction: readonly { name: string; version: string }[],
  selected: readonly { name: string }[],
  approvedExclusions: ReadonlySet<string>,
): UnapprovedExclusion[] {
  const excludedBy = exclusionMatcher(policy);
  const chosen = new Set(selected.map((p) => p.name));
  const found = new Map<string, UnapprovedExclusion>();
  for (const p of transaction) {
    const pattern = excludedBy(p.name);
    if (pattern === undefined || approvedExclusions.has(p.name) || found.has(p.name)) continue;
    found.set(p.name, { name: p.name, version: p.version, pattern, dependency: !chosen.has(p.name) });
  }
  return [...found.values()];
}

/** `labhelper 1.0-1 (excluded by labhelp*, a dependency of the selected updates)`, joined by `; `. */
export function describeExclusions(found: readonly UnapprovedExclusion[]): string {
  return found
    .map(
      (e) =>
        `${e.name} ${e.version} (excluded by ${e.pattern}, ${e.dependency ? 'a dependency of the selected updates' : 'selected'})`,
    )
    .join('; ');
}

/**
 * Splits a server's pending patches into what the policy installs and what it holds back, each
 * with its reason. Pure.
 *
 * - Category must be one the policy lists.
 * - Severity must reach `minSeverity` where the source states one; sources that state none
 *   (apt, third-party RPM repos) cannot be judged and are not held back for it.
 * - A name matching an exclusion (exact name or glob) is held back until a secondary approval lists
 *   it in `approvedExclusions`.
 * - Packages an administrator pinned (`apt-mark hold`) or that the package manager keeps back are
 *   never selected: installing them would override a decision made on the host.
 * - New packages are not selected on their own: they come in as dependencies of what is.
 */
export function selectPatches(
  policy: Pick<PatchPolicy, 'categories' | 'minSeverity' | 'exclusions'>,
  patches: readonly PendingPatch[],
  approvedExclusions: ReadonlySet<string> = new Set(),
): PatchSelection {
  const excludedBy = exclusionMatcher(policy);
  const selection: PatchSelection = { selected: [], heldBack: [] };
  for (const patch of patches) {
    if (patch.isNew) continue;
    const hold = (reason: HoldReason) => selection.heldBack.push({ patch, reason });
    if (patch.held || patch.keptBack) {
      hold({ kind: 'held', detail: patch.held ? 'pinned on the host' : 'kept back by the package manager' });
      continue;
    }
    if (!policy.categories.includes(patch.category)) {
      hold({ kind: 'category', category: patch.category });
      continue;
    }
    if (
      patch.severity !== 'unspecified' &&
      SEVERITY_RANK[patch.severity] < SEVERITY_RANK[policy.minSeverity]
    ) {
      hold({ kind: 'severity', severity: patch.severity, minimum: policy.minSeverity });
      continue;
    }
    const pattern = excludedBy(patch.name);
    if (pattern !== undefined && !approvedExclusions.has(patch.name)) {
      hold({ kind: 'excluded', pattern, needsSecondaryApproval: true });
      continue;
    }
    selection.selected.push(patch);
  }
  return selection;
}
