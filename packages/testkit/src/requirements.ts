import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, it } from 'vitest';

/** Whether missing prerequisites must fail the run instead of skipping (CI sets it). */
export function prerequisitesRequired(): boolean {
  return process.env['FLEETWARD_REQUIRE_LAB'] === '1';
}

/**
 * `describe` for tests that need something this machine may lack (root, sshd, the lab, a database).
 * With `unavailable` undefined the suite runs. Otherwise it is skipped loudly — the reason in its
 * name and on stderr — or, when `FLEETWARD_REQUIRE_LAB=1`, replaced by one failing test that says
 * what is missing, so CI can never pass by skipping.
 */
export function describeIfAvailable(name: string, unavailable: string | undefined, fn: () => void): void {
  if (unavailable === undefined) {
    describe(name, fn);
    return;
  }
  if (prerequisitesRequired()) {
    describe(name, () => {
      it('prerequisites', () => {
        throw new Error(`${unavailable} (FLEETWARD_REQUIRE_LAB=1)`);
      });
    });
    return;
  }
  console.warn(`[fleetward] SKIPPED "${name}": ${unavailable}`);
  describe.skip(`${name} [skipped: ${unavailable}]`, fn);
}

/**
 * `it` for one test that needs something this machine may lack, with the same rule as
 * {@link describeIfAvailable}: runs when `unavailable` is undefined, otherwise is skipped loudly
 * (reason in its name and on stderr) or, when `FLEETWARD_REQUIRE_LAB=1`, fails with the reason.
 */
export function itIfAvailable(
  name: string,
  unavailable: string | undefined,
  fn: () => unknown,
  timeoutMs?: number,
): void {
  if (unavailable === undefined) {
    it(name, fn, timeoutMs);
    return;
  }
  if (prerequisitesRequired()) {
    it(name, () => {
      throw new Error(`${unavailable} (FLEETWARD_REQUIRE_LAB=1)`);
    });
    return;
  }
  console.warn(`[fleetward] SKIPPED "${name}": ${unavailable}`);
  it.skip(`${name} [skipped: ${unavailable}]`, fn, timeoutMs);
}

/**
 * Why a test cannot run here, or undefined when it can: programs missing from `PATH`, and
 * whether it needs root. Pass the result to {@link describeIfAvailable} or {@link itIfAvailable}.
 */
export function unavailableWithout(needs: {
  commands?: readonly string[];
  root?: boolean;
}): string | undefined {
  const reasons: string[] = [];
  const missing = (needs.commands ?? []).filter((command) => !onPath(command));
  if (missing.length) reasons.push(`missing ${missing.join(', ')}`);
  if (needs.root && process.getuid?.() !== 0) reasons.push('needs root');
  return reasons.length ? reasons.join('; ') : undefined;
}

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '')
    .split(delimiter)
    .filter(Boolean)
    .some((dir) => {
      try {
        accessSync(join(dir, command), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}
