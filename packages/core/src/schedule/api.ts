import type { ScanSchedule, ScanScheduleInput } from '../domain/index.js';
import { checkEntityInput } from '../domain/options.js';
import type { SessionInternals } from '../fleet/fleet.js';
import { latestSlot } from './scheduler.js';

/** Scan schedules of a session's tenant: who may change them is decided by `patch.policy`. */
export function createScheduleApi(internals: () => SessionInternals) {
  return {
    /**
     * Adds a scan schedule for a project (cron in a time zone, or an interval). Its `runAs`
     * principal must exist; scheduled scans are authorized as that principal, each time. Since the
     * schedule acts as `runAs`, it is refused (`AuthorizationError`) unless the caller may already
     * do everything `runAs` may.
     */
    add: (input: Omit<ScanScheduleInput, 'tenantId' | 'lastSlotAt' | 'lastJobId'>): Promise<ScanSchedule> => {
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
          latestSlot(schedule, ctx.fleet.clock.now());
          return schedule;
        },
        undefined,
        { principals: [input.runAs], servers: 'all', others: true, impersonates: input.runAs },
      );
    },
    list: () => {
      const ctx = internals();
      return ctx.read('patch.read', [], { type: 'scan-schedule', id: '*' }, () =>
        ctx.fleet.store.scanSchedules.listAll(ctx.tenantId),
      );
    },
    remove: async (id: string) => {
      const ctx = internals();
      const current = await ctx.fleet.store.scanSchedules.require(ctx.tenantId, id);
      return ctx.write(
        'patch.policy',
        [{ type: 'scan-schedule', projectId: current.projectId }],
        { type: 'scan-schedule', id },
        (tx) => tx.scanSchedules.delete(ctx.tenantId, id),
      );
    },
  };
}
