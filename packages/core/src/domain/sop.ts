import { z } from 'zod';
import { IdSchema, isReservedKey, plainRecord, TimestampSchema } from './common.js';
import { ErrorBudgetSchema, RolloutSchema } from './patch.js';

const SHA256 = /^[a-f0-9]{64}$/;

/**
 * A script's name: lower-case letters, digits and `._-`, starting with a letter or digit. It is
 * the resource id that `script.*` permissions are decided on and the base of its file name in an
 * exported repository, so it is kept safe as both.
 */
export const ScriptNameSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,99}$/,
    'must be 1-100 characters of lower-case letters, digits and . _ -, starting with a letter or digit',
  )
  // Names key maps of scripts (repositories, grants, roles); `constructor` must not be one.
  .refine((name) => !isReservedKey(name), 'is a reserved name (constructor, prototype)');

export const ScriptInterpreterSchema = z.enum(['bash', 'sh', 'powershell', 'python']);
export type ScriptInterpreter = z.infer<typeof ScriptInterpreterSchema>;

/**
 * Variables a parameter may not be called: ones the interpreter, the dynamic linker or the shell
 * read on their own (a caller choosing `LD_PRELOAD` or `BASH_ENV` would run code of their choice
 * with the script's rights), and the `FLEETWARD_` prefix, which the run sets itself.
 */
const RESERVED_EXACT = new Set([
  'PATH',
  'IFS',
  'ENV',
  'BASH_ENV',
  'BASHOPTS',
  'SHELLOPTS',
  'PS4',
  'CDPATH',
  'GLOBIGNORE',
  'HOME',
  'SHELL',
  'TMPDIR',
  'PWD',
  'OLDPWD',
]);
const RESERVED_PREFIXES = [
  'FLEETWARD_',
  'LD_',
  'DYLD_',
  'BASH_',
  'PYTHON',
  'PERL',
  'RUBY',
  'NODE_',
  'LC_',
  'SUDO_',
];

/**
 * Variables Windows, cmd.exe or PowerShell read on their own, matched without regard to case as
 * Windows does (`Path` is `PATH` there): a caller choosing `PSModulePath` or `ComSpec` would make
 * the script load or start code of their choice.
 */
const RESERVED_WINDOWS = new Set([
  'PATH',
  'PATHEXT',
  'TEMP',
  'TMP',
  'COMSPEC',
  'SYSTEMROOT',
  'WINDIR',
  'SYSTEMDRIVE',
  'USERPROFILE',
  'APPDATA',
  'LOCALAPPDATA',
  'PROGRAMDATA',
  'PROGRAMFILES',
  'PROGRAMFILES(X86)',
  'COMMONPROGRAMFILES',
  'PSMODULEPATH',
  'PSEXECUTIONPOLICYPREFERENCE',
  'PSMODULEANALYSISCACHEPATH',
  '__PSLOCKDOWNPOLICY',
]);
const RESERVED_WINDOWS_PREFIXES = ['POWERSHELL_', 'FLEETWARD_', 'COR_', 'CORECLR_', 'COMPLUS_', 'DOTNET_'];

/** Whether `name` may be a script parameter (see the reserved names above). */
export function isReservedParameterName(name: string): boolean {
  const upper = name.toUpperCase();
  return (
    RESERVED_EXACT.has(name) ||
    RESERVED_PREFIXES.some((p) => name.startsWith(p)) ||
    RESERVED_WINDOWS.has(upper) ||
    RESERVED_WINDOWS_PREFIXES.some((p) => upper.startsWith(p))
  );
}

const ParameterValueSchema = z.union([z.string(), z.number(), z.boolean()]);
/**
 * The value of one script or runbook parameter.
 *
 * @useDeclaredType
 */
export type ParameterValue = z.infer<typeof ParameterValueSchema>;

/**
 * One typed parameter. It reaches the script only as the environment variable of the same name,
 * never as text spliced into the script.
 */
export const ScriptParameterSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]{0,63}$/, 'must be an environment variable name like MY_PARAM')
      .refine((n) => !isReservedParameterName(n), {
        message: 'is reserved: the shell, the interpreter or Fleetward itself reads this variable',
      }),
    description: z.string().max(500).optional(),
    type: z.enum(['string', 'integer', 'number', 'boolean']),
    required: z.boolean().default(false),
    default: ParameterValueSchema.optional(),
    /** The only values accepted. */
    allowed: z
      .array(z.union([z.string(), z.number()]))
      .min(1)
      .max(1000)
      .optional(),
    /** A regular expression (JavaScript syntax) the whole value of a string must match. */
    pattern: z
      .string()
      .min(1)
      .max(500)
      .refine(
        (p) => {
          try {
            new RegExp(p, 'u');
            return true;
          } catch {
            return false;
          }
        },
        { message: 'must be a valid regular expression' },
      )
      .optional(),
    /** Never stored with a run, never in an audit record or an event; redacted from kept output. */
    secret: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    if (p.secret && p.default !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['default'],
        message: 'a secret parameter has no default: it would sit in the repository in clear',
      });
    }
    if (p.secret && p.allowed) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowed'],
        message: 'a secret parameter has no list of allowed values: it would give the secret away',
      });
    }
    if (p.pattern && p.type !== 'string') {
      ctx.addIssue({ code: 'custom', path: ['pattern'], message: 'only a string parameter has a pattern' });
    }
  });
export type ScriptParameter = z.infer<typeof ScriptParameterSchema>;

export const ScriptParametersSchema = z
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
    });
  });

/**
 * One immutable version of a script (entity kind `scripts`). A version never changes: an edit adds
 * the next `revision`, and its `contentHash` names exactly what it says. `osFamilies` is added in
 * `entities.ts`, next to the OS family list.
 */
export const ScriptFields = {
  name: ScriptNameSchema,
  /** 1, 2, 3… per name, in the order versions were added. */
  revision: z.number().int().positive(),
  description: z.string().max(4000).optional(),
  interpreter: ScriptInterpreterSchema,
  body: z.string().max(1_000_000),
  /**
   * sha256 over the canonical JSON of everything the version says: body, interpreter, OS
   * families, parameters, tags, risk, root and description. Approvals attach to it.
   */
  contentHash: z.string().regex(SHA256),
  parameters: ScriptParametersSchema,
  tags: z.array(z.string().min(1).max(64)).max(50).default([]),
  /** A risky script runs only with an approval of its current content hash. */
  risky: z.boolean().default(false),
  /** Run through `sudo -n` when the login is not root. */
  runAsRoot: z.boolean().default(false),
  /** Who added this version: they cannot approve it. */
  createdBy: IdSchema,
};

/** An approval of one content hash of a risky script (entity kind `scriptApprovals`). */
export const ScriptApprovalFields = {
  scriptName: ScriptNameSchema,
  /** The hash the approver reviewed; the approval counts only while it is the script's current one. */
  contentHash: z.string().regex(SHA256),
  /** The revision that had the hash when it was approved (for people; the hash is what counts). */
  revision: z.number().int().positive(),
  principalId: IdSchema,
  at: TimestampSchema,
  comment: z.string().max(2000).optional(),
};

export const ScriptRunStatusSchema = z.enum([
  'awaiting-start',
  'running',
  'paused',
  'succeeded',
  'failed',
  'partial',
  'stopped',
  'cancelled',
]);
export type ScriptRunStatus = z.infer<typeof ScriptRunStatusSchema>;

/** When a rollout stops starting servers, computed before it starts and shown to the caller. */
export const StopConditionSchema = z.strictObject({
  errorBudget: ErrorBudgetSchema,
  /** The budget as a number of failed servers: the run stops when more than this many failed. */
  maxFailures: z.number().int().min(0),
  unreachableCountsAsError: z.boolean(),
  onBudgetSpent: z.enum(['stop', 'pause']),
  /** The same in one sentence, for people. */
  description: z.string().max(2000),
});
export type StopCondition = z.infer<typeof StopConditionSchema>;

export const WaveSchema = z.strictObject({
  name: z.string().min(1).max(100),
  serverIds: z.array(IdSchema),
});
export type Wave = z.infer<typeof WaveSchema>;

/**
 * One run of one script version on a set of servers (entity kind `scriptRuns`). Per-server state
 * lives in task results of the run's job. Secret parameter values are never in it: only their
 * names, and where the SecretStore keeps them for the run's lifetime.
 */
export const ScriptRunFields = {
  /** The version's entity id. */
  scriptId: IdSchema,
  scriptName: ScriptNameSchema,
  revision: z.number().int().positive(),
  contentHash: z.string().regex(SHA256),
  requestedBy: IdSchema,
  /** Parameter values after defaults, secret ones left out. */
  params: plainRecord(z.string(), ParameterValueSchema).default({}),
  /** Names of the secret parameters the run was given. */
  secretParams: z.array(z.string()).default([]),
  /** SecretStore reference of the secret values while the run lasts; absent when none is kept. */
  secretsRef: z.string().min(1).max(256).optional(),
  serverIds: z.array(IdSchema).min(1),
  waves: z.array(WaveSchema).min(1),
  rollout: RolloutSchema,
  /** Per-server time limit of the script; a server that runs longer is killed and failed. */
  timeoutMs: z.number().int().positive(),
  stopCondition: StopConditionSchema,
  status: ScriptRunStatusSchema,
  /** Why the run is where it is (stopped, paused, cancelled). */
  reason: z.string().max(2000).optional(),
  /** A change ticket the run belongs to, carried into its audit records. */
  ticket: z.string().trim().min(1).max(128).optional(),
  jobId: IdSchema.optional(),
  /** Set by `cancelRun`; the process executing the run sees it and stops. */
  cancelRequested: z.boolean().default(false),
  startedAt: TimestampSchema.optional(),
  finishedAt: TimestampSchema.optional(),
};
