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
