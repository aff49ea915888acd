/**
 * The source of time. Injected everywhere time matters (leases, windows, expiry, audit
 * timestamps) so that tests can move time instead of waiting.
 */
export interface Clock {
  /** The current instant. Must never go backwards within one process. */
  now(): Date;
}

/** The machine's clock. */
export const systemClock: Clock = { now: () => new Date() };
