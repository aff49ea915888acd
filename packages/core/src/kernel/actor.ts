import { z } from 'zod';

/** Who acts: a principal of a tenant. */
export interface Actor {
  tenantId: string;
  principalId: string;
  /**
   * When the embedding application last verified this principal's second factor (ISO time).
   * Rules with `mfaWithinMinutes` (e.g. for approvals) count only when it is recent enough.
   */
  mfaVerifiedAt?: string;
}

/** Validates an {@link Actor}: both ids non-empty, `mfaVerifiedAt` an ISO time with offset. */
export const ActorSchema = z.strictObject({
  tenantId: z.string().min(1),
  principalId: z.string().min(1),
  mfaVerifiedAt: z.iso.datetime({ offset: true }).optional(),
});
