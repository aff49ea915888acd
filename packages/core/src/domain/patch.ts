import { z } from 'zod';
import { IdSchema, TimestampSchema } from './common.js';
import { ServerSelectorSchema } from './selector.js';

/**
 * What a patch fixes. `unknown` is for sources that publish no classification at all (an RPM
 * repository without `updateinfo`): such a patch is never assumed to be `security` or not.
 */
export const PatchCategorySchema = z.enum(['security', 'bugfix', 'enhancement', 'other', 'unknown']);
export type PatchCategory = z.infer<typeof PatchCategorySchema>;

/** Vendor severity. apt metadata carries none, so Debian-family patches are `unspecified`. */
export const SeveritySchema = z.enum(['critical', 'important', 'moderate', 'low', 'unspecified']);
export type Severity = z.infer<typeof SeveritySchema>;

export const PackageManagerSchema = z.enum(['apt', 'dnf', 'yum', 'zypper', 'windows-update', 'native']);
export type PackageManager = z.infer<typeof PackageManagerSchema>;

/** Where a candidate version comes from, as the package manager names it. */
export const PatchOriginSchema = z.strictObject({
  /** e.g. `Debian-Security`, `Ubuntu`, a repo id. */
  origin: z.string(),
  /** e.g. `bookworm-security`, `12/oldstable-security`; empty when unknown. */
  archive: z.string(),
});
export type PatchOrigin = z.infer<typeof PatchOriginSchema>;

/** One pending update of one package on one server. */
export const PendingPatchSchema = z.strictObject({
  name: z.string().min(1).max(256),
  arch: z.string().max(32),
  /** `null` when the package is not installed yet (pulled in as a new dependency). */
  installedVersion: z.string().nullable(),
  candidateVersion: z.string().min(1),
  origins: z.array(PatchOriginSchema),
  category: PatchCategorySchema,
  severity: SeveritySchema,
  /** Advisory ids (e.g. `DSA-5000-1`, `RHSA-2026:0001`) when the source says. */
  advisories: z.array(z.string()).default([]),
  /** The admin pinned it (`apt-mark hold`, versionlock): it will not move unless released. */
  held: z.boolean().default(false),
  /** The package manager would not upgrade it in this transaction (held, phased, conflicts). */
  keptBack: z.boolean().default(false),
  /** Not installed now: a new dependency of another update. */
  isNew: z.boolean().default(false),
  /**
   * When this package was first seen pending on this server, carried across scans while it stays
   * pending (a newer candidate of a still-unpatched package keeps the original date).
   */
  firstSeenAt: z.iso.datetime({ offset: true }).optional(),
});
export type PendingPatch = z.infer<typeof PendingPatchSchema>;

export const RebootPolicySchema = z.enum(['never', 'if-required', 'always']);
export const BackupPolicySchema = z.enum(['none', 'pre', 'post', 'both']);

export const MaintenanceWindowSchema = z.strictObject({
  /** Five-field cron expression for window starts, or fixed start instants. */
  cron: z.string().min(9).max(120).optional(),
  dates: z.array(TimestampSchema).optional(),
  durationMinutes: z
    .number()
    .int()
    .min(5)
    .max(7 * 24 * 60),
  /** IANA time zone the cron is read in. */
  timeZone: z.string().min(1).max(64).default('UTC'),
});

export const HealthCheckSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('command'),
    argv: z.array(z.string()).min(1),
    expectExitCode: z.number().int().default(0),
    timeoutSeconds: z.number().int().positive().default(60),
  }),
  z.strictObject({
    type: z.literal('http'),
    /** http(s) URL probed from the orchestrator; `{address}` and `{name}` become the server's. */
    url: z
      .string()
      .max(2000)
      .refine(
        (u) =>
          URL.canParse(u.replaceAll('{address}', 'host.invalid').replaceAll('{name}', 'host.invalid')) &&
          /^https?:\/\//.test(u),
        {
          message: 'must be an http(s) URL, optionally with {address} or {name}',
        },
      ),
    expectStatus: z.number().int().min(100).max(599).default(200),
    timeoutSeconds: z.number().int().positive().default(30),
  }),
]);

export const ErrorBudgetSchema = z.union([
  z.strictObject({ count: z.number().int().min(0) }),
  z.strictObject({ percent: z.number().min(0).max(100) }),
]);

export const RolloutSchema = z.strictObject({
  waves: z
    .array(z.strictObject({ name: z.string().min(1).max(100), selector: ServerSelectorSchema }))
    .default([]),
  maxConcurrency: z.number().int().min(1).max(10_000).default(10),
  errorBudget: ErrorBudgetSchema.default({ count: 0 }),
  unreachableCountsAsError: z.boolean().default(true),
  onBudgetSpent: z.enum(['stop', 'pause']).default('stop'),
});

/** Patch policy of a project. This is its shape; the patch workflow gives it behaviour. */
export const PatchPolicyFields = {
  name: z.string().min(1).max(200),
  projectId: IdSchema,
  categories: z.array(PatchCategorySchema).min(1).default(['security']),
  minSeverity: SeveritySchema.default('unspecified'),
  window: MaintenanceWindowSchema.optional(),
  backups: BackupPolicySchema.default('none'),
  /** Package names or globs (`linux-image-*`) that need a secondary approval. */
  exclusions: z.array(z.string().min(1).max(256)).default([]),
  reboot: RebootPolicySchema.default('if-required'),
  preScripts: z.array(IdSchema).default([]),
  postScripts: z.array(IdSchema).default([]),
  healthChecks: z.array(HealthCheckSchema).default([]),
  rollout: RolloutSchema.default({
    waves: [],
    maxConcurrency: 10,
    errorBudget: { count: 0 },
    unreachableCountsAsError: true,
    onBudgetSpent: 'stop',
  }),
  approvers: z
    .strictObject({
      principalIds: z.array(IdSchema).default([]),
      required: z.number().int().min(1).default(1),
    })
    .default({ principalIds: [], required: 1 }),
  informed: z.array(IdSchema).default([]),
  /**
   * Open a change request through this integration (ServiceNow, Jira) whenever a scan finds
   * patches this policy would install: one request per project and pending set.
   */
  changeRequests: z.strictObject({ integrationId: IdSchema }).optional(),
};
