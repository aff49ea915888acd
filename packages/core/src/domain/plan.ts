import { z } from 'zod';
import { IdSchema, TimestampSchema } from './common.js';
import { ErrorBudgetSchema } from './patch.js';

/** A package at an exact version, as a plan pins it. */
export const PinnedPackageSchema = z.strictObject({
  name: z.string().min(1).max(256),
  version: z.string().min(1).max(256),
  arch: z.string().max(32).default(''),
});
export type PinnedPackage = z.infer<typeof PinnedPackageSchema>;

export const PlannedServerSchema = z.strictObject({
  serverId: IdSchema,
  /** The scan the plan was made from. */
  scanId: IdSchema,
  /** What the policy selected. */
  selected: z.array(PinnedPackageSchema),
  /**
   * What the package manager would install for it, dependencies included (from a simulation).
   * Execution installs exactly this set.
   */
  resolved: z.array(PinnedPackageSchema.extend({ isNew: z.boolean().default(false) })),
  heldBack: z.array(
    z.strictObject({
      name: z.string(),
      version: z.string(),
      reason: z.string(),
      needsSecondaryApproval: z.boolean().default(false),
    }),
  ),
  /** A server the plan cannot patch (no fresh scan, simulation failed), with the reason. */
  blocked: z.string().optional(),
});
export type PlannedServer = z.infer<typeof PlannedServerSchema>;

export const PlanApprovalSchema = z.strictObject({
  principalId: IdSchema,
  at: TimestampSchema,
  /** The plan hash the approver saw; an approval of another hash does not count. */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
  comment: z.string().max(2000).optional(),
});

export const PatchPlanFields = {
  policyId: IdSchema,
  projectId: IdSchema,
  requestedBy: IdSchema,
  status: z.enum([
    'awaiting-approval',
    'approved',
    'executing',
    'completed',
    'stopped',
    'cancelled',
    'superseded',
  ]),
  servers: z.array(PlannedServerSchema),
  waves: z.array(z.strictObject({ name: z.string().min(1).max(100), serverIds: z.array(IdSchema) })),
  stopCondition: z.strictObject({
    errorBudget: ErrorBudgetSchema,
    /** The budget as a number of failed servers. */
    maxFailures: z.number().int().min(0),
    unreachableCountsAsError: z.boolean(),
    onBudgetSpent: z.enum(['stop', 'pause']),
  }),
  /** sha256 over the canonical JSON of servers, waves and stop condition. */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
  approvals: z.array(PlanApprovalSchema).default([]),
  /** Secondary approvals of excluded packages, by package name. */
  exclusionApprovals: z
    .array(
      z.strictObject({
        principalId: IdSchema,
        at: TimestampSchema,
        packages: z.array(z.string().min(1)).min(1),
      }),
    )
    .default([]),
  jobId: IdSchema.optional(),
};
