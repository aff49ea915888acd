import { canStartWithin, nextWindow, type ValidationError, windowAt } from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const sundayTwoAmBerlin = { cron: '0 2 * * 0', durationMinutes: 120, timeZone: 'Europe/Berlin' };

describe('maintenance windows', () => {
  it('windowAt — reads the cron in the window’s time zone (CET in winter)', () => {
    // Sunday 2026-01-04 02:00 Berlin = 01:00 UTC.
    expect(windowAt(sundayTwoAmBerlin, new Date('2026-01-04T00:59:59Z'))).toBeUndefined();
    expect(windowAt(sundayTwoAmBerlin, new Date('2026-01-04T01:00:00Z'))).toEqual({
      start: new Date('2026-01-04T01:00:00Z'),
      end: new Date('2026-01-04T03:00:00Z'),
    });
    expect(windowAt(sundayTwoAmBerlin, new Date('2026-01-04T02:59:59Z'))).toBeDefined();
    expect(windowAt(sundayTwoAmBerlin, new Date('2026-01-04T03:00:00Z'))).toBeUndefined();
  });

  it('windowAt — follows daylight saving time (CEST in summer)', () => {
    // Sunday 2026-07-05 02:00 Berlin = 00:00 UTC.
    expect(windowAt(sundayTwoAmBerlin, new Date('2026-07-05T00:30:00Z'))?.start).toEqual(
      new Date('2026-07-05T00:00:00Z'),
    );
  });

  it('windowAt — fixed dates open for their duration', () => {
    const w = { dates: ['2026-03-01T22:00:00Z'], durationMinutes: 60, timeZone: 'UTC' };
    expect(windowAt(w, new Date('2026-03-01T22:30:00Z'))).toBeDefined();
    expect(windowAt(w, new Date('2026-03-01T23:00:00Z'))).toBeUndefined();
  });

  it('nextWindow — gives the next opening after a time outside any window', () => {
    expect(nextWindow(sundayTwoAmBerlin, new Date('2026-01-05T12:00:00Z'))?.start).toEqual(
      new Date('2026-01-11T01:00:00Z'),
    );
  });

  it('canStartWithin — refuses work that would not finish before the window closes', () => {
    const at = new Date('2026-01-04T02:30:00Z');
    expect(canStartWithin(sundayTwoAmBerlin, at, 20 * 60_000)).toBe(true);
    expect(canStartWithin(sundayTwoAmBerlin, at, 31 * 60_000)).toBe(false);
    expect(canStartWithin(sundayTwoAmBerlin, new Date('2026-01-04T04:00:00Z'), 1)).toBe(false);
  });

  it('windowAt — a bad cron or time zone is a ValidationError naming the field', () => {
    const bad = (w: object) => {
      try {
        windowAt(w as never, new Date());
      } catch (e) {
        return (e as ValidationError).paths;
      }
      return undefined;
    };
    expect(bad({ cron: '61 * * * *', durationMinutes: 60, timeZone: 'UTC' })).toEqual(['cron']);
    expect(bad({ cron: '0 2 * * 0', durationMinutes: 60, timeZone: 'Mars/Olympus' })).toEqual(['timeZone']);
    expect(bad({ durationMinutes: 60, timeZone: 'UTC' })).toEqual(['cron']);
  });
});
