import { CronExpressionParser } from 'cron-parser';
import type { z } from 'zod';
import type { MaintenanceWindowSchema } from '../domain/patch.js';
import { ValidationError } from '../errors.js';

/** When a patch policy's runs may start: a cron with a duration in an IANA time zone, or fixed dates. */
export type MaintenanceWindow = z.output<typeof MaintenanceWindowSchema>;

/** One opening of a maintenance window: `[start, end)`. */
export interface WindowOccurrence {
  /** The instant it opens (inclusive). */
  start: Date;
  /** The instant it closes (exclusive). */
  end: Date;
}

function checkTimeZone(timeZone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new ValidationError('MaintenanceWindow', [
      { path: ['timeZone'], message: `unknown IANA time zone ${JSON.stringify(timeZone)}` },
    ]);
  }
}

function parseCron(window: MaintenanceWindow, currentDate: Date) {
  try {
    return CronExpressionParser.parse(window.cron!, { currentDate, tz: window.timeZone, strict: false });
  } catch (error) {
    throw new ValidationError('MaintenanceWindow', [
      { path: ['cron'], message: `invalid cron expression: ${(error as Error).message}` },
    ]);
  }
}

/**
 * Checks a window's schedule: a valid cron in a known IANA time zone, or fixed dates. Throws a
 * ValidationError naming the field.
 */
export function validateWindow(window: MaintenanceWindow): void {
  if (!window.cron && !window.dates?.length) {
    throw new ValidationError('MaintenanceWindow', [
      { path: ['cron'], message: 'a window needs a cron schedule or dates' },
    ]);
  }
  checkTimeZone(window.timeZone);
  if (window.cron) parseCron(window, new Date(0));
}

const MINUTE = 60_000;

/**
 * The opening of `window` that contains `at`, if any. Cron schedules are read in the window's
 * time zone, so "02:00 every Sunday" in Europe/Berlin follows daylight-saving changes.
 */
export function windowAt(window: MaintenanceWindow, at: Date): WindowOccurrence | undefined {
  validateWindow(window);
  const duration = window.durationMinutes * MINUTE;
  for (const date of window.dates ?? []) {
    const start = new Date(date);
    if (start.getTime() <= at.getTime() && at.getTime() < start.getTime() + duration) {
      return { start, end: new Date(start.getTime() + duration) };
    }
  }
  if (!window.cron) return undefined;
  // The latest start at or before `at`: `prev()` is strictly before its reference, so step 1 ms past it.
  const expression = parseCron(window, new Date(at.getTime() + 1));
  const start = expression.prev().toDate();
  if (at.getTime() < start.getTime() + duration) return { start, end: new Date(start.getTime() + duration) };
  return undefined;
}

/** The next opening that starts after `after` (or contains it), earliest first. */
export function nextWindow(window: MaintenanceWindow, after: Date): WindowOccurrence | undefined {
  const current = windowAt(window, after);
  if (current) return current;
  const duration = window.durationMinutes * MINUTE;
  const candidates: Date[] = (window.dates ?? [])
    .map((d) => new Date(d))
    .filter((d) => d.getTime() > after.getTime());
  if (window.cron) candidates.push(parseCron(window, after).next().toDate());
  const start = candidates.sort((a, b) => a.getTime() - b.getTime())[0];
  return start && { start, end: new Date(start.getTime() + duration) };
}

/**
 * Whether work expected to take `expectedMs` can start at `at` and still finish inside the
 * window: what cannot finish before the window closes is not started.
 */
export function canStartWithin(window: MaintenanceWindow, at: Date, expectedMs: number): boolean {
  const open = windowAt(window, at);
  return open !== undefined && at.getTime() + expectedMs <= open.end.getTime();
}
