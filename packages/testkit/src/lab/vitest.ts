/**
 * Vitest helpers for lab tests: skip loudly where the lab cannot run, fail where it must.
 */
import { describeIfAvailable, prerequisitesRequired } from '../requirements.js';
import { labPrerequisites } from './prerequisites.js';
import type { LabFlavour } from './types.js';

/**
 * Why lab tests cannot run here, or undefined when they can (for `it.skipIf`). Throws when
 * `FLEETWARD_REQUIRE_LAB=1` (CI) and the lab is unavailable, so a broken CI machine fails
 * instead of passing with everything skipped.
 */
export function labSkipReason(options: { flavours?: readonly LabFlavour[] } = {}): string | undefined {
  const missing = labPrerequisites(options);
  if (missing.length === 0) return undefined;
  const reason = `the lab cannot run here: ${missing.join('; ')}`;
  if (prerequisitesRequired()) throw new Error(`${reason} (FLEETWARD_REQUIRE_LAB=1)`);
  return reason;
}

/**
 * `describe` for tests that need a lab. Where the lab cannot run (not root, tools missing) the
 * suite is skipped with the reason in its name and on stderr; with `FLEETWARD_REQUIRE_LAB=1`
 * it fails instead, with the same reason.
 */
export function describeWithLab(
  name: string,
  fn: () => void,
  options: { flavours?: readonly LabFlavour[] } = {},
): void {
  const missing = labPrerequisites(options);
  describeIfAvailable(
    name,
    missing.length ? `the lab cannot run here: ${missing.join('; ')}` : undefined,
    fn,
  );
}
