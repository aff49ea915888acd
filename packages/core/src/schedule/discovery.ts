import { randomUUID } from 'node:crypto';
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { IdSchema, ScanScheduleFields } from '../domain/index.js';
import { validate } from '../domain/validate.js';
import { toFleetwardError, ValidationError } from '../errors.js';
import type { RedactingLogger } from '../kernel/log.js';
import type { Runtime } from '../kernel/runtime.js';
import { Ticker } from '../util/ticker.js';
import { latestSlot } from './scheduler.js';

const DiscoveryScheduleSchema = z
  .strictObject({
    /** Names the schedule in leases, logs and results; unique per tenant. */
    id: IdSchema,
    tenantId: IdSchema,
    /** The principal whose authority each run has (`inventory.discover` on the accounts). */
    runAs: ScanScheduleFields.runAs,
    // When it runs: the same fields, and the same limits, as a scan schedule's.
    cron: ScanScheduleFields.cron,
    intervalMinutes: ScanScheduleFields.intervalMinutes,
    timeZone: ScanScheduleFields.timeZone,
    accountIds: z.array(IdSchema).min(1).max(1000).optional(),
  })
  .refine((s) => (s.cron === undefined) !== (s.intervalMinutes === undefined), {
    message: 'a discovery schedule needs exactly one of cron and intervalMinutes',
  });

/**
 * A discovery schedule, given to {@link createDiscoveryScheduler} by the embedding process.
 *
 * @useDeclaredType
 */
export type DiscoverySchedule = z.input<typeof DiscoveryScheduleSchema>;

/**
 * What the scheduler needs of the Fleet: its runtime (store, clock, logger) and the sessions'
 * `inventory.discover`, through which every run goes exactly as a caller's would. A `Fleet` fits;
 * `O` is then its `DiscoveryOutcome`. (Structural, so that the schedule module does not reach
 * into the inventory module.)
 */
export interface DiscoveringFleet<O> extends Runtime {
  as(actor: { tenantId: string; principalId: string }): {
    inventory: { discover(options?: { accountIds?: string[] }): Promise<O> };
  };
}

/** Options of {@link createDiscoveryScheduler}. */
export interface DiscoverySchedulerOptions<O> {
  /** The Fleet whose adapters discover and whose store keeps the servers and the leases. */
  fleet: DiscoveringFleet<O>;
  /**
   * The schedules: five-field `cron` read in `timeZone` (@default `UTC`), or `intervalMinutes`
   * counted from 1970-01-01T00:00Z (so `60` runs on the hour). Each run discovers `accountIds`
   * (@default every account of the tenant) as `runAs`.
   */
  schedules: readonly DiscoverySchedule[];
  /** Identifies this process in logs and leases. @default a random id */
  holder?: string;
  /** Called when a scheduled discovery could not run; never throws into the scheduler. Also logged. */
  onError?: (error: unknown, schedule: DiscoverySchedule) => void;
}

/** What one {@link DiscoveryScheduler.tick} did. */
export interface DiscoveryTickResult<O> {
  /** Schedules whose slot this process claimed and ran; `outcome` is absent when the run failed. */
  ran: { tenantId: string; scheduleId: string; slot: string; outcome?: O }[];
}

type Parsed = z.output<typeof DiscoveryScheduleSchema> & { createdAt: string };

const EPOCH = '1970-01-01T00:00:00.000Z';

function nextSlot(schedule: Parsed, slot: Date): Date {
  if (schedule.cron) {
    return CronExpressionParser.parse(schedule.cron, {
      currentDate: new Date(slot.getTime() + 1),
      tz: schedule.timeZone,
    })
      .next()
      .toDate();
  }
  return new Date(slot.getTime() + schedule.intervalMinutes! * 60_000);
}

/**
 * Runs `inventory.discover` on a schedule, with the scan scheduler's slot arithmetic
 * (`latestSlot`). The schedules are configuration of the embedding process, not stored entities.
 * Any number of processes may run the same schedules on one store: a slot is claimed through the
 * store's lease `discovery-schedule:<tenant>/<id>`, held until the next slot, so each slot runs in
 * one process only. After downtime only the latest missed slot runs, once.
 */
export class DiscoveryScheduler<O> {
  readonly #fleet: DiscoveringFleet<O>;
  readonly holder: string;
  readonly #schedules: Parsed[];
  readonly #onError: DiscoverySchedulerOptions<O>['onError'];
  readonly #log: RedactingLogger;
  readonly #ran = new Map<string, number>();
  readonly #ticker = new Ticker(
    () => this.tick(),
    (error) => this.#log.error({ err: error }, 'discovery scheduler tick failed'),
  );

  /** @throws ValidationError for a schedule that does not fit, a cron or time zone that does not parse, or a repeated id. */
  constructor(options: DiscoverySchedulerOptions<O>) {
    this.#fleet = options.fleet;
    this.holder = options.holder ?? `discovery-${randomUUID()}`;
    this.#onError = options.onError;
    this.#log = options.fleet.logger.child({ component: 'discovery-scheduler', holder: this.holder });
    const seen = new Set<string>();
    this.#schedules = (options.schedules ?? []).map((input, i) => {
      const schedule = { ...validate(DiscoveryScheduleSchema, input, `schedules[${i}]`), createdAt: EPOCH };
      const key = `${schedule.tenantId}/${schedule.id}`;
      if (seen.has(key)) {
        throw new ValidationError('DiscoverySchedulerOptions', [
          { path: ['schedules', i, 'id'], message: `repeats the schedule ${key}` },
        ]);
      }
      seen.add(key);
      latestSlot(schedule, this.#fleet.clock.now());
      return schedule;
    });
  }

  /** Runs every schedule whose latest slot has not run yet (in any process) once. */
  async tick(): Promise<DiscoveryTickResult<O>> {
    const ran: DiscoveryTickResult<O>['ran'] = [];
    for (const schedule of this.#schedules) {
      const now = this.#fleet.clock.now();
      const slot = latestSlot(schedule, now);
      const key = `${schedule.tenantId}/${schedule.id}`;
      if (!slot || (this.#ran.get(key) ?? -1) >= slot.getTime()) continue;
      const ttl = Math.max(1, nextSlot(schedule, slot).getTime() - now.getTime());
      const lease = await this.#fleet.store.leases.acquire(`discovery-schedule:${key}`, this.holder, ttl);
      this.#ran.set(key, slot.getTime());
      if (!lease) continue; // another process has this slot
      const at = slot.toISOString();
      try {
        const session = this.#fleet.as({ tenantId: schedule.tenantId, principalId: schedule.runAs });
        const outcome = await session.inventory.discover(
          schedule.accountIds ? { accountIds: schedule.accountIds } : {},
        );
        ran.push({ tenantId: schedule.tenantId, scheduleId: schedule.id, slot: at, outcome });
      } catch (error) {
        ran.push({ tenantId: schedule.tenantId, scheduleId: schedule.id, slot: at });
        const failure = toFleetwardError(error, `scheduled discovery ${schedule.id}`);
        this.#log.error(
          {
            tenantId: schedule.tenantId,
            scheduleId: schedule.id,
            runAs: schedule.runAs,
            slot: at,
            err: failure,
          },
          'scheduled discovery failed',
        );
        this.#onError?.(failure, schedule);
      }
    }
    return { ran };
  }

  /** Ticks every `intervalMs` (@default 30_000) until `stop()`; ticks never overlap. */
  start(options: { intervalMs?: number } = {}): void {
    this.#ticker.start(options.intervalMs ?? 30_000);
  }

  /** Stops ticking and waits for a tick in progress. */
  stop(): Promise<void> {
    return this.#ticker.stop();
  }
}

/**
 * Creates a {@link DiscoveryScheduler}.
 * @throws ValidationError for schedules that do not fit (see the class).
 */
export function createDiscoveryScheduler<O>(options: DiscoverySchedulerOptions<O>): DiscoveryScheduler<O> {
  return new DiscoveryScheduler(options);
}
