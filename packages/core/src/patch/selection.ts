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

export interface PatchSelection {
  /** Patches to install, by name and exact candidate version. */
  selected: PendingPatch[];
  heldBack: { patch: PendingPatch; reason: HoldReason }[];
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
  const matchers = policy.exclusions.map((pattern) => ({ pattern, test: picomatch(pattern, { dot: true }) }));
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
    const excluded = matchers.find((m) => m.test(patch.name));
    if (excluded && !approvedExclusions.has(patch.name)) {
      hold({ kind: 'excluded', pattern: excluded.pattern, needsSecondaryApproval: true });
      continue;
    }
    selection.selected.push(patch);
  }
  return selection;
}
