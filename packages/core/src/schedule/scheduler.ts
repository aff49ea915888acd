import { randomUUID } from 'node:crypto';
import { CronExpressionParser } from 'cron-parser';
import type { ScanSchedule } from '../domain/index.js';
import { ConflictError, toFleetwardError, ValidationError } from '../errors.js';
import { scanTargets } from '../inventory/scan.js';
import { createCallContext } from '../kernel/context.js';
import type { RedactingLogger } from '../kernel/log.js';
import type { Runtime } from '../kernel/runtime.js';
import { Ticker } from '../util/ticker.js';

/**
 * The latest slot of `schedule` at or before `now`, or undefined when none has come yet. Interval
 * schedules count from the schedule's creation; cron schedules are read in their time zone.
 */
export function latestSlot(
  schedule: Pick<ScanSchedule, 'cron' | 'intervalMinutes' | 'timeZone' | 'createdAt'>,
  now: Date,
): Date | undefined {
  if (schedule.cron) {
    try {
      const expression = CronExpressionParser.parse(schedule.cron, {
        currentDate: new Date(now.getTime() + 1),
        tz: schedule.timeZone,
      });
      const slot = expression.prev().toDate();
      // A slot from before the schedule existed is not a missed run.
      return slot.getTime() < Date.parse(schedule.createdAt) ? undefined : slot;
    } catch (error) {
      throw new ValidationError('ScanSchedule', [
        { path: ['cron'], message: `invalid cron expression: ${(error as Error).message}` },
      ]);
    }
  }
  if (!schedule.intervalMinutes) {
    throw new ValidationError('ScanSchedule', [
      { path: ['cron'], message: 'a schedule needs cron or intervalMinutes' },
    ]);
  }
  const anchor = Date.parse(schedule.createdAt);
  const period = schedule.intervalMinutes * 60_000;
  if (now.getTime() < anchor + period) return undefined;
  return new Date(anchor + Math.floor((now.getTime() - anchor) / period) * period);
}

/** Options of {@link createScanScheduler}. */
export interface SchedulerOptions {
  /** The Fleet (or any kernel runtime) whose store holds the schedules and whose adapters scan. */
  fleet: Runtime;
  /** Identifies this process in logs and jobs. @default a random id */
  holder?: string;
  /**
   * Called when a scheduled scan could not run or failed; never throws into the scheduler. The
   * failure is also logged (error) to the fleet's `logger`.
   */
  onError?: (error: unknown, schedule: ScanSchedule) => void;
}

/** What one {@link ScanScheduler.tick} did. */
export interface SchedulerTickResult {
  /** Schedules whose slot this process claimed and ran. */
  ran: { tenantId: string; scheduleId: string; slot: string; jobId?: string }[];
}

/**
 * Runs scan schedules. Any number of processes may run schedulers on one store: a slot is claimed
 * by a compare-and-set of the schedule's `lastSlotAt` (optimistic concurrency), so each slot runs
 * exactly once, in whichever process claims it first. After downtime only the latest missed slot
 * runs, once.
 */
export class ScanScheduler {
  readonly #fleet: Runtime;
  readonly holder: string;
  readonly #onError: SchedulerOptions['onError'];
  readonly #log: RedactingLogger;
  readonly #ticker = new Ticker(
    () => this.tick(),
    (error) => {
      this.#log.error({ err: error }, 'scan scheduler tick failed');
      this.#onError?.(error, undefined as never);
    },
  );

  constructor(options: SchedulerOptions) {
    this.#fleet = options.fleet;
    this.holder = options.holder ?? `scheduler-${randomUUID()}`;
    this.#onError = options.onError;
    this.#log = options.fleet.logger.child({ component: 'scan-scheduler', holder: this.holder });
  }

  /** Looks at every enabled schedule once and runs the due ones. */
  async tick(): Promise<SchedulerTickResult> {
    const store = this.#fleet.store;
    const ran: SchedulerTickResult['ran'] = [];
    for (const tenantId of await store.tenantIds()) {
      const schedules = await store.scanSchedules.listAll(tenantId, { where: { enabled: true } });
      for (const schedule of schedules) {
        const slot = latestSlot(schedule, this.#fleet.clock.now());
        if (!slot || (schedule.lastSlotAt && Date.parse(schedule.lastSlotAt) >= slot.getTime())) continue;
        let claimed: ScanSchedule;
        try {
          claimed = await store.scanSchedules.update(
            tenantId,
            schedule.id,
            { lastSlotAt: slot.toISOString() },
            { expectedVersion: schedule.version },
          );
        } catch (error) {
          if (error instanceof ConflictError) continue; // another process claimed this slot
          throw error;
        }
        this.#log.debug(
          { tenantId, scheduleId: schedule.id, slot: slot.toISOString() },
          'scheduled scan slot claimed',
        );
        try {
          const outcome = await scanTargets(
            createCallContext(this.#fleet, { tenantId, principalId: schedule.runAs }),
            { projectId: schedule.projectId },
          );
          await store.scanSchedules
            .update(
              tenantId,
              schedule.id,
              { lastJobId: outcome.job.id },
              { expectedVersion: claimed.version },
            )
            .catch(() => undefined);
          ran.push({ tenantId, scheduleId: schedule.id, slot: slot.toISOString(), jobId: outcome.job.id });
        } catch (error) {
          ran.push({ tenantId, scheduleId: schedule.id, slot: slot.toISOString() });
          const failure = toFleetwardError(error, `scheduled scan ${schedule.id}`);
          this.#log.error(
            {
              tenantId,
              scheduleId: schedule.id,
              projectId: schedule.projectId,
              runAs: schedule.runAs,
              slot: slot.toISOString(),
              err: failure,
            },
            'scheduled scan failed',
          );
          this.#onError?.(failure, schedule);
        }
      }
    }
    return { ran };
  }

  /** Ticks every `intervalMs` (default 30 s) until `stop()`; ticks never overlap. */
  start(options: { intervalMs?: number } = {}): void {
    this.#ticker.start(options.intervalMs ?? 30_000);
  }

  /** Stops ticking and waits for a tick in progress. */
  stop(): Promise<void> {
    return this.#ticker.stop();
  }
}

/** Creates a {@link ScanScheduler}. */
export function createScanScheduler(options: SchedulerOptions): ScanScheduler {
  return new ScanScheduler(options);
}
