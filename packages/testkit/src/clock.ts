import type { Clock } from '@fleetward/core';

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: Date | string = '2026-01-01T00:00:00.000Z') {
    this.#now = new Date(start).getTime();
  }
  now(): Date {
    return new Date(this.#now);
  }
  /** Moves time forward by `ms` milliseconds. */
  advance(ms: number): void {
    if (ms < 0) throw new RangeError('a clock never goes backwards');
    this.#now += ms;
  }
  set(to: Date | string): void {
    const next = new Date(to).getTime();
    if (next < this.#now) throw new RangeError('a clock never goes backwards');
    this.#now = next;
  }
}
