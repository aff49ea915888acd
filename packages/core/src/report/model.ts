import { z } from 'zod';
import { toIssues } from '../domain/validate.js';
import { ValidationError } from '../errors.js';

// Report text is deliberately loose (any characters, hostile or not): the renderers escape
// everything, and a report must be able to show whatever a server or package manager reported.
// Lengths are bounded only so one absurd field cannot blow up a shared file.
const Text = z.string().max(4_000);
const Label = z.string().min(1).max(500);
const Count = z.number().int().nonnegative();
// An offset is required so the instant is unambiguous for a reader in another time zone.
const Instant = z.iso.datetime({ offset: true });

/** A compliance standard the report was evaluated against. */
export const ReportStandardSchema = z.object({
  id: Label,
  name: Label,
  description: Text,
});
export type ReportStandard = z.infer<typeof ReportStandardSchema>;

/** Compliant / non-compliant / unknown server counts. `servers` is their sum. */
export const ReportTotalsSchema = z.object({
  servers: Count,
  compliant: Count,
  nonCompliant: Count,
  unknown: Count,
});
export type ReportTotals = z.infer<typeof ReportTotalsSchema>;

/** Dimensions a report can break its servers down by. */
export const REPORT_GROUP_DIMENSIONS = ['project', 'account', 'region', 'provider', 'os'] as const;
export type ReportGroupDimension = (typeof REPORT_GROUP_DIMENSIONS)[number];

/** Server counts for one value (`key`) of one dimension (`by`), e.g. the servers in region `eu-west-1`. */
export const ReportGroupSchema = z.object({
  by: z.enum(REPORT_GROUP_DIMENSIONS),
  key: Label,
  total: Count,
  compliant: Count,
  nonCompliant: Count,
  unknown: Count,
});
export type ReportGroup = z.infer<typeof ReportGroupSchema>;

/** Compliance status of one server. */
export const ReportServerStatusSchema = z.enum(['compliant', 'non-compliant', 'unknown']);
export type ReportServerStatus = z.infer<typeof ReportServerStatusSchema>;

/** One server's row in the report. */
export const ReportServerSchema = z
  .object({
    id: Label,
    name: Label,
    provider: Label,
    accountId: Label,
    region: Label.optional(),
    os: Label.optional(),
    status: ReportServerStatusSchema,
    lastScannedAt: Instant.optional(),
    lastUpdatedAt: Instant.optional(),
    /** Raised when the server needs attention beyond its status (e.g. an overdue security patch). */
    alert: z.boolean(),
    /** Why the server is not compliant (or why its status is unknown). */
    reasons: z.array(Text).max(100),
    /** Pending updates, of which `security` are security updates. */
    pending: Count,
    security: Count,
  })
  .refine((s) => s.security <= s.pending, {
    message: 'security must not exceed pending',
    path: ['security'],
  });
export type ReportServer = z.infer<typeof ReportServerSchema>;

/** One pending update on one server. */
export const ReportPatchSchema = z.object({
  serverId: Label,
  serverName: Label,
  name: Label,
  /** `null` when the update would install a package that is not installed yet. */
  installedVersion: Label.nullable(),
  candidateVersion: Label,
  category: Label,
  severity: Label,
  firstSeenAt: Instant.optional(),
  /** Whole days the update has been pending; when absent, derived from `firstSeenAt` where shown. */
  ageDays: Count.optional(),
  advisories: z.array(Label).max(200),
});
export type ReportPatch = z.infer<typeof ReportPatchSchema>;

/** Whose servers a report covers. */
export const ReportScopeSchema = z.object({
  kind: z.enum(['tenant', 'project', 'account']),
  id: Label,
  name: Label,
});
export type ReportScope = z.infer<typeof ReportScopeSchema>;

/**
 * Everything a compliance / pending-patch report shows, independent of how compliance was
 * evaluated. `servers` lists every server in scope, so `totals` must tally with it; `patches` may
 * be a subset of the pending updates (e.g. only security ones), but each names a listed server.
 */
export const ComplianceReportDataSchema = z
  .object({
    title: Label,
    scope: ReportScopeSchema,
    tenant: z.object({ id: Label, name: Label }),
    generatedAt: Instant,
    standards: z.array(ReportStandardSchema).max(500),
    totals: ReportTotalsSchema,
    groups: z.array(ReportGroupSchema),
    servers: z.array(ReportServerSchema),
    patches: z.array(ReportPatchSchema),
  })
  // A shared report whose chart disagrees with its own table is worse than no report, so
  // internal inconsistencies are rejected here rather than rendered.
  .superRefine((data, ctx) => {
    const t = data.totals;
    if (t.compliant + t.nonCompliant + t.unknown !== t.servers) {
      ctx.addIssue({
        code: 'custom',
        path: ['totals', 'servers'],
        message: 'must equal compliant + nonCompliant + unknown',
      });
    }
    const tally = { servers: data.servers.length, compliant: 0, nonCompliant: 0, unknown: 0 };
    for (const s of data.servers) {
      if (s.status === 'compliant') tally.compliant++;
      else if (s.status === 'non-compliant') tally.nonCompliant++;
      else tally.unknown++;
    }
    for (const key of ['servers', 'compliant', 'nonCompliant', 'unknown'] as const) {
      if (t[key] !== tally[key]) {
        ctx.addIssue({
          code: 'custom',
          path: ['totals', key],
          message: `is ${t[key]} but the servers list has ${tally[key]}`,
        });
      }
    }
    data.groups.forEach((g, i) => {
      if (g.compliant + g.nonCompliant + g.unknown !== g.total) {
        ctx.addIssue({
          code: 'custom',
          path: ['groups', i, 'total'],
          message: 'must equal compliant + nonCompliant + unknown',
        });
      }
    });
    const seenGroups = new Set<string>();
    data.groups.forEach((g, i) => {
      const id = `${g.by}\u0000${g.key}`;
      if (seenGroups.has(id)) {
        ctx.addIssue({ code: 'custom', path: ['groups', i, 'key'], message: `duplicate ${g.by} group` });
      }
      seenGroups.add(id);
    });
    const serverIds = new Set<string>();
    data.servers.forEach((s, i) => {
      if (serverIds.has(s.id)) {
        ctx.addIssue({ code: 'custom', path: ['servers', i, 'id'], message: 'duplicate server id' });
      }
      serverIds.add(s.id);
    });
    data.patches.forEach((p, i) => {
      if (!serverIds.has(p.serverId)) {
        ctx.addIssue({
          code: 'custom',
          path: ['patches', i, 'serverId'],
          message: 'names no server in the report',
        });
      }
    });
  });

/** Input of every report renderer. See {@link ComplianceReportDataSchema}. */
export type ComplianceReportData = z.infer<typeof ComplianceReportDataSchema>;

/**
 * Validates report data, returning a normalised copy: fields in schema order, unknown fields
 * dropped (so nothing the schema does not name can leak into a report shared with a customer).
 *
 * @throws {ValidationError} with subject `ComplianceReportData` and every offending field path.
 */
export function parseComplianceReportData(input: unknown): ComplianceReportData {
  const result = ComplianceReportDataSchema.safeParse(input);
  if (!result.success) throw new ValidationError('ComplianceReportData', toIssues(result.error));
  return result.data;
}
