import type { ScanSchedule, ScanScheduleInput } from '../domain/index.js';
import { checkEntityInput } from '../domain/options.js';
import type { CallContext } from '../kernel/context.js';
import { latestSlot } from './scheduler.js';

/** What `schedules.add` takes: the schedule without its tenant and the scheduler's bookkeeping. */
export type AddScanScheduleInput = Omit<ScanScheduleInput, 'tenantId' | 'lastSlotAt' | 'lastJobId'>;

/**
 * Scan schedules of a session's tenant (`fleet.as(actor).schedules`). Changes need `patch.policy`
 * on the schedule's project, reads `patch.read`; every call is audited. A `ScanScheduler` runs them.
 */
export interface ScheduleApi {
  /**
   * Adds a scan schedule for a project (cron in a time zone, or an interval). Its `runAs`
   * principal must exist; scheduled scans are authorized as that principal, each time. Since the
   * schedule acts as `runAs`, it is refused (`AuthorizationError`, audited as a deny) unless the
   * caller may already do everything `runAs` may.
   * @throws ValidationError for input that does not fit the schedule schema or a cron / time zone
   * that does not parse; NotFoundError when the project or `runAs` does not exist;
   * AlreadyExistsError for a taken id; AuthorizationError.
   */
  add(input: AddScanScheduleInput): Promise<ScanSchedule>;
  /** Every scan schedule of the tenant. @throws AuthorizationError without `patch.read` anywhere. */
  list(): Promise<ScanSchedule[]>;
  /**
   * Removes a schedule; a scan it started keeps running.
   * @throws NotFoundError when there is none; AuthorizationError.
   */
  remove(id: string): Promise<boolean>;
}

/** Creates the schedule module on a session's call context. */
export function createScheduleApi(internals: () => CallContext): ScheduleApi {
  return {
    add: (input: AddScanScheduleInput): Promise<ScanSchedule> => {
      const ctx = internals();
      checkEntityInput('scanSchedules', input, ctx.tenantId, 'ScanScheduleInput');
      return ctx.write(
        'patch.policy',
        [{ type: 'scan-schedule', projectId: input.projectId }],
        { type: 'scan-schedule', id: input.id ?? '(new)' },
        async (tx) => {
          await tx.projects.require(ctx.tenantId, input.projectId);
          await tx.principals.require(ctx.tenantId, input.runAs);
          const schedule = await tx.scanSchedules.create({
            ...input,
            tenantId: ctx.tenantId,
          } as ScanScheduleInput);
          // Validates the cron and time zone by evaluating it once.
          latestSlot(schedule, ctx.runtime.clock.now());
          return schedule;
        },
        undefined,
        { principals: [input.runAs], servers: 'all', others: true, impersonates: input.runAs },
      );
    },
    list: () => {
      const ctx = internals();
      return ctx.read('patch.read', [], { type: 'scan-schedule', id: '*' }, () =>
        ctx.runtime.store.scanSchedules.listAll(ctx.tenantId),
      );
    },
    remove: async (id: string) => {
      const ctx = internals();
      const current = await ctx.runtime.store.scanSchedules.require(ctx.tenantId, id);
      return ctx.write(
        'patch.policy',
        [{ type: 'scan-schedule', projectId: current.projectId }],
        { type: 'scan-schedule', id },
        (tx) => tx.scanSchedules.delete(ctx.tenantId, id),
      );
    },
  };
}
