import { z } from 'zod';
import { IdSchema, PlainDataRecordSchema, plainRecord, TimestampSchema } from './common.js';
import { RolloutSchema } from './patch.js';
import { ScriptNameSchema, ScriptParameterSchema } from './sop.js';

const SHA256 = /^[a-f0-9]{64}$/;

/**
 * A runbook's name: the same rules as a script's name (lower-case letters, digits and `._-`). It
 * is the resource id that runbook decisions are made on (`{ type: 'runbook', id: name }`).
 */
export const RunbookNameSchema = ScriptNameSchema;

/** A step's id, unique in its runbook: what `goto`, approvals and audit records name it by. */
export const RunbookStepIdSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,63}$/,
    'must be 1-64 characters of lower-case letters, digits, _ and -, starting with a letter or digit',
  );

/**
 * What a failed step does to the run. `stop` skips every later step and fails the run.
 * `continue` tolerates the failure: the run goes on and can still succeed. `{ goto }` is the
 * failure path: the steps in between are skipped, the run continues at the named step (which must
 * come after the failing one, so a runbook never loops) and ends `failed` whatever follows.
 */
export const RunbookOnFailureSchema = z.union([
  z.literal('stop'),
  z.literal('continue'),
  z.strictObject({ goto: RunbookStepIdSchema }),
]);
export type RunbookOnFailure = z.infer<typeof RunbookOnFailureSchema>;

const ParameterValueSchema = z.union([z.string(), z.number(), z.boolean()]);

/** A script step's parameter value: a literal, or `{ param: 'NAME' }` for the run's parameter of that name. */
export const RunbookStepParamSchema = z.union([
  ParameterValueSchema,
  z.strictObject({ param: z.string().regex(/^[A-Z_][A-Z0-9_]{0,63}$/, 'must name a runbook parameter') }),
]);

const stepCommon = {
  id: RunbookStepIdSchema,
  /** A line for people (shown in run listings and webhooks). */
  title: z.string().max(200).optional(),
  /** @default 'stop' */
  onFailure: RunbookOnFailureSchema.default('stop'),
};

/**
 * Runs a script of the repository on the run's targets through the script-run machinery (waves,
 * concurrency, error budget, per-server audit). The step succeeds only when that run succeeds.
 */
export const RunbookScriptStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('script'),
  script: ScriptNameSchema,
  /** A revision number or content hash. @default the script's current version when the run starts */
  version: z.union([z.number().int().positive(), z.string().regex(SHA256)]).optional(),
  params: plainRecord(z.string(), RunbookStepParamSchema).default({}),
  /** As for any script run, except that it cannot pause on its budget (the step fails instead). */
  rollout: RolloutSchema.prefault({}),
  /** Per-server limit of the script. @default 600_000 */
  timeoutMs: z
    .number()
    .int()
    .positive()
    .max(48 * 3_600_000)
    .default(600_000),
});

/** Scans the run's targets for pending patches (a normal fleet scan, with its own job and audit). */
export const RunbookScanStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('scan'),
  /**
   * When the step fails: `any` server's scan failed, `all` of them failed, or `never`.
   * @default 'any'
   */
  failWhen: z.enum(['any', 'all', 'never']).default('any'),
  /** Per-server limit. @default 600_000 */
  timeoutMs: z.number().int().positive().max(3_600_000).default(600_000),
});

/**
 * Reboots the run's targets and verifies each came back: its boot id
 * (`/proc/sys/kernel/random/boot_id`; on Windows `Win32_OperatingSystem.LastBootUpTime`) changed
 * and it answers again within `timeoutMs`. Servers are
 * rebooted as `rollout` says (one at a time by default, no failure allowed).
 */
export const RunbookRebootStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('reboot'),
  rollout: RolloutSchema.prefault({ maxConcurrency: 1 }),
  /** How long a server may take to come back. @default 600_000 */
  timeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  /** How often a rebooting server is asked for its boot id. @default 2000 */
  pollIntervalMs: z.number().int().min(100).max(60_000).default(2000),
});

/** Waits, measured on the Fleet's clock from a deadline kept with the run, so a resumed run waits only the rest. */
export const RunbookWaitStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('wait'),
  durationSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 86_400),
});

/**
 * Pauses the run (`awaiting-approval`) until `approvals` principals other than the one who started
 * it approve the step (`runbook.approve`); then the run continues.
 */
export const RunbookApprovalStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('approval'),
  /** Distinct approvals needed. @default 1 */
  approvals: z.number().int().min(1).max(10).default(1),
  /** Only these principals may approve. @default anyone allowed `runbook.approve` */
  approvers: z.array(IdSchema).min(1).max(100).optional(),
  /** What the approvers are asked to check. */
  instructions: z.string().max(2000).optional(),
});

/**
 * Enqueues one durable outbox message with the run's context for a webhook endpoint, in the
 * transaction that ends the step; delivery (retries, signatures) is the dispatcher's job.
 */
export const RunbookWebhookStepSchema = z.strictObject({
  ...stepCommon,
  kind: z.literal('webhook'),
  /** The webhook endpoint's id (see `notify.webhooks`). It gets the message whatever its `events` say. */
  endpointId: IdSchema,
  /** The message's type (`type` of the webhook body). @default 'runbook.webhook' */
  event: z
    .string()
    .regex(/^[a-z]+(\.[a-z-]+)*$/, 'must be an event type like "runbook.webhook"')
    .max(128)
    .default('runbook.webhook'),
  /** Static text passed on as `message`. */
  message: z.string().max(2000).optional(),
});

/** One step of a runbook; `kind` says which. */
export const RunbookStepSchema = z.discriminatedUnion('kind', [
  RunbookScriptStepSchema,
  RunbookScanStepSchema,
  RunbookRebootStepSchema,
  RunbookWaitStepSchema,
  RunbookApprovalStepSchema,
  RunbookWebhookStepSchema,
]);
export type RunbookStep = z.infer<typeof RunbookStepSchema>;
export type RunbookStepInput = z.input<typeof RunbookStepSchema>;
export type RunbookStepKind = RunbookStep['kind'];

/**
 * The ordered steps of a runbook. Ids are unique; a `goto` names a step after the failing one;
 * a script step cannot pause on its error budget.
 */
export const RunbookStepsSchema = z
  .array(RunbookStepSchema)
  .min(1)
  .max(100)
  .superRefine((steps, ctx) => {
    const index = new Map<string, number>();
    steps.forEach((step, i) => {
      if (index.has(step.id)) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'id'],
          message: `duplicate step id ${step.id} (also step ${index.get(step.id)})`,
        });
      } else index.set(step.id, i);
    });
    steps.forEach((step, i) => {
      if (typeof step.onFailure === 'object') {
        const target = index.get(step.onFailure.goto);
        if (target === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'onFailure', 'goto'],
            message: `no step has the id ${step.onFailure.goto}`,
          });
        } else if (target <= i) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'onFailure', 'goto'],
            message: `must name a step after ${step.id} (step ${i}); ${step.onFailure.goto} is step ${target}: a runbook never loops`,
          });
        }
      }
      if (step.kind === 'script' && step.rollout.onBudgetSpent === 'pause') {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'rollout', 'onBudgetSpent'],
          message: 'a runbook step cannot pause on its error budget: the step fails and onFailure decides',
        });
      }
    });
  });

/**
 * Typed parameters of a runbook, given when a run starts and passed to script steps by
 * `{ param: 'NAME' }`. Never secret: they are kept with the run in the store, in clear.
 */
export const RunbookParametersSchema = z
  .array(ScriptParameterSchema)
  .max(100)
  .default([])
  .superRefine((params, ctx) => {
    const seen = new Set<string>();
    params.forEach((p, i) => {
      if (seen.has(p.name)) {
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate parameter ${p.name}` });
      }
      seen.add(p.name);
      if (p.secret) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'secret'],
          message: 'a runbook parameter cannot be secret: runs keep their parameters in the store in clear',
        });
      }
    });
  });

/**
 * One immutable version of a runbook (entity kind `runbooks`, id `name:revision`). An edit adds
 * the next revision; `contentHash` names exactly what the version says, and every run records it.
 */
export const RunbookFields = {
  name: RunbookNameSchema,
  /** 1, 2, 3… per name, in the order versions were added. */
  revision: z.number().int().positive(),
  description: z.string().max(4000).optional(),
  parameters: RunbookParametersSchema,
  steps: RunbookStepsSchema,
  /** sha256 over the canonical JSON of the description, parameters and steps (defaults applied). */
  contentHash: z.string().regex(SHA256),
  /** Who added this version. */
  createdBy: IdSchema,
};

export const RunbookRunStatusSchema = z.enum([
  'running',
  'awaiting-approval',
  'waiting',
  'succeeded',
  'failed',
  'cancelled',
]);
export type RunbookRunStatus = z.infer<typeof RunbookRunStatusSchema>;

export const RunbookStepStatusSchema = z.enum(['pending', 'running', 'succeeded', 'failed', 'skipped']);
export type RunbookStepStatus = z.infer<typeof RunbookStepStatusSchema>;

/** Where one server is in a reboot step; what a resumed step needs to verify it without rebooting twice. */
export const RebootServerStateSchema = z.strictObject({
  status: z.enum(['pending', 'running', 'succeeded', 'failed', 'not-started', 'cancelled']),
  /** The boot id read before the reboot was asked for. */
  bootIdBefore: z.string().max(64).optional(),
  /** When the reboot command was sent: a resumed step then waits instead of rebooting again. */
  rebootRequestedAt: TimestampSchema.optional(),
  /** The boot id the server came back with. */
  bootIdAfter: z.string().max(64).optional(),
  countsAgainstBudget: z.boolean().optional(),
  error: z.strictObject({ code: z.string(), message: z.string().max(4000) }).optional(),
});
export type RebootServerState = z.infer<typeof RebootServerStateSchema>;

/** The state of one step of a run, in the order of the runbook's steps. */
export const RunbookStepStateSchema = z.strictObject({
  stepId: RunbookStepIdSchema,
  kind: z.enum(['script', 'scan', 'reboot', 'wait', 'approval', 'webhook']),
  status: RunbookStepStatusSchema,
  /** How many times the step was entered: more than 1 after a resume re-entered it. */
  attempt: z.number().int().min(0).default(0),
  startedAt: TimestampSchema.optional(),
  finishedAt: TimestampSchema.optional(),
  /** What the failure did to the run, once the step failed. */
  onFailureApplied: z.enum(['stop', 'continue', 'goto']).optional(),
  /** Script steps: the version pinned when the run started, so the run runs what was checked. */
  script: z
    .strictObject({
      name: ScriptNameSchema,
      revision: z.number().int().positive(),
      contentHash: z.string().regex(SHA256),
    })
    .optional(),
  /** Script steps: the parameters the script run gets, resolved when the run started. */
  params: plainRecord(z.string(), ParameterValueSchema).optional(),
  /** Script steps: the script run carrying it out. */
  scriptRunId: IdSchema.optional(),
  /** Scan steps: the scan job. */
  jobId: IdSchema.optional(),
  /** Wait steps: when the wait is over. */
  waitUntil: TimestampSchema.optional(),
  /** Reboot steps: every target's progress. */
  servers: plainRecord(z.string(), RebootServerStateSchema).optional(),
  /** A summary of what the step did (counts, ids, the outbox message), for people and audit. */
  result: PlainDataRecordSchema.optional(),
  error: z.strictObject({ code: z.string(), message: z.string().max(4000) }).optional(),
});
export type RunbookStepState = z.infer<typeof RunbookStepStateSchema>;

/** One approval of an approval step. */
export const RunbookApprovalSchema = z.strictObject({
  stepId: RunbookStepIdSchema,
  principalId: IdSchema,
  at: TimestampSchema,
  comment: z.string().max(2000).optional(),
});
export type RunbookApproval = z.infer<typeof RunbookApprovalSchema>;

/**
 * One run of one runbook version on a set of servers (entity kind `runbookRuns`). The targets are
 * resolved to server ids when it starts; every step's state is kept here, so that any process can
 * resume it from the store.
 */
export const RunbookRunFields = {
  /** The version's entity id (`name:revision`). */
  runbookId: IdSchema,
  runbookName: RunbookNameSchema,
  revision: z.number().int().positive(),
  contentHash: z.string().regex(SHA256),
  /** Who started it: they cannot approve its approval steps, and the run continues with their rights. */
  startedBy: IdSchema,
  /** The targets as given, for people; `serverIds` is what the run covers. */
  targets: PlainDataRecordSchema,
  serverIds: z.array(IdSchema).min(1),
  /** Parameter values after defaults. */
  params: plainRecord(z.string(), ParameterValueSchema).default({}),
  status: RunbookRunStatusSchema,
  /** Why the run is where it is (failed at which step, cancelled by whom). */
  reason: z.string().max(2000).optional(),
  /** A change ticket the run belongs to, carried into its audit records and its script runs. */
  ticket: z.string().trim().min(1).max(128).optional(),
  /** The index of the step the run is at; `steps.length` once every step is done. */
  currentStep: z.number().int().min(0),
  steps: z.array(RunbookStepStateSchema).min(1),
  approvals: z.array(RunbookApprovalSchema).default([]),
  /** Set by `cancel`; the process executing the run sees it and stops. */
  cancelRequested: z.boolean().default(false),
  startedAt: TimestampSchema.optional(),
  finishedAt: TimestampSchema.optional(),
};
