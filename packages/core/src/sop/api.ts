import { isAbsolute } from 'node:path';
import { z } from 'zod';
import type { Resource } from '../authz/evaluate.js';
import {
  type Script,
  type ScriptApproval,
  ScriptNameSchema,
  type ScriptRun,
  type ScriptRunStatus,
  ScriptRunStatusSchema,
  validate,
} from '../domain/index.js';
import { objectArgument, VersionOptionsSchema, validateOptions } from '../domain/options.js';
import { AuthorizationError, ConflictError, ValidationError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { StoreScope } from '../ports/store.js';
import { fileSha256 } from './content.js';
import { type Manifest, readRepository, writeRepository } from './files.js';
import {
  type AddScriptInput,
  AddScriptInputSchema,
  type ApprovalState,
  addVersion,
  approvalState,
  currentVersion,
  findVersion,
  type ParsedScriptInput,
  scripts,
  scriptVersions,
} from './repository.js';
import {
  cancelRun,
  type ExecuteRunOptions,
  ExecuteRunOptionsSchema,
  type PlanRunInput,
  type PlanRunInputSchema,
  planRun,
  resumeRun,
  runResults,
  type ScriptRunResults,
  startRun,
} from './run.js';
import { versionAuditDetails } from './versioned.js';

export const ApproveScriptOptionsSchema = z.strictObject({
  /** The content hash the approver reviewed: it must be the script's current one. */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
  comment: z.string().max(2000).optional(),
});
export type ApproveScriptOptions = z.input<typeof ApproveScriptOptionsSchema>;

/** What an import did, script by script. */
export interface ImportResult {
  /** Versions the import added. */
  created: Script[];
  /** Scripts whose current version already had the file's content: nothing was added. */
  unchanged: Script[];
}

const scriptResource = (name: string): Resource => ({ type: 'script', id: name });

const ListScriptsOptionsSchema = z.strictObject({ tag: z.string().min(1).max(64).optional() });
const ListRunsOptionsSchema = z.strictObject({
  script: ScriptNameSchema.optional(),
  status: ScriptRunStatusSchema.optional(),
});
const ExportOptionsSchema = z.strictObject({ names: z.array(ScriptNameSchema).max(10_000).optional() });

/**
 * The folder of an export or import: an absolute path. A relative one would be resolved against
 * the working directory of whatever process embeds the SDK (a server's is rarely what its caller
 * means), so it is refused; the CLI resolves its argument against the shell's directory.
 */
function folderOf(dir: unknown): string {
  if (typeof dir !== 'string' || dir.length === 0 || dir.length > 4096 || dir.includes('\0')) {
    throw new ValidationError('dir', [{ path: [], message: 'must be a folder path (a non-empty string)' }]);
  }
  if (!isAbsolute(dir)) {
    throw new ValidationError('dir', [
      { path: [], message: `must be an absolute path, not ${JSON.stringify(dir.slice(0, 200))}` },
    ]);
  }
  return dir;
}

/**
 * The script repository and script runs of a session (`session.scripts`). Every call is
 * authorized (`script.read`, `script.write`, `script.approve`, `script.run` on the scripts and
 * servers concerned) and audited, allowed or denied; a denial is an `AuthorizationError`.
 */
export interface ScriptApi {
  /**
   * Adds a version of a script (creating the script on its first version). Adding content equal
   * to the current version adds nothing and resolves the current version. Any other change is a
   * new revision with a new content hash, which voids the approvals of a risky script. Needs
   * `script.write`; lowering a script's risk (risky to not risky) needs `script.approve` too.
   * @throws ValidationError for input that does not fit {@link AddScriptInputSchema} (a POSIX
   *   interpreter cannot target windows).
   * @throws AuthorizationError when a needed permission is missing.
   * @throws ConflictError when another version of the script was added at the same time, or its
   *   risk changed while it was being written: read it and try again.
   */
  add(input: AddScriptInput): Promise<Script>;
  /**
   * The current version of a script, or the one with this revision number or content hash.
   * @default options.version the current version
   * @throws ValidationError for unknown options; AuthorizationError without `script.read`.
   * @throws NotFoundError when the script (or that version of it) does not exist.
   */
  get(name: string, options?: { version?: number | string }): Promise<Script>;
  /**
   * Every version of a script, oldest first; none for a name nobody added.
   * @throws AuthorizationError without `script.read` on the script.
   */
  versions(name: string): Promise<Script[]>;
  /**
   * The current version of every script, by name (only those with `tag` when given). Needs
   * `script.read` not limited to some scripts.
   * @throws ValidationError for unknown options; AuthorizationError.
   */
  list(options?: { tag?: string }): Promise<Script[]>;
  /**
   * Approves the current version of a risky script, named by the content hash the approver
   * reviewed (`script.approve`). Its author cannot approve it (an audited denial), nor anyone
   * twice; a hash that is no longer current is refused (review the new version).
   * @throws ValidationError for options that do not fit {@link ApproveScriptOptionsSchema}.
   * @throws AuthorizationError without `script.approve`, or when the caller added the version.
   * @throws NotFoundError when the script does not exist.
   * @throws ConflictError when `hash` is not the current version's, the version is not risky, or
   *   the caller has approved it already.
   */
  approve(name: string, options: ApproveScriptOptions): Promise<ScriptApproval>;
  /**
   * Whether a version may run as far as approvals go, and why: a risky version runs only when it
   * is current and approved by someone other than its author.
   * @default options.version the current version
   * @throws ValidationError; AuthorizationError without `script.read`; NotFoundError.
   */
  approval(name: string, options?: { version?: number | string }): Promise<ApprovalState>;
  /**
   * Writes the current version of every script (or of `names`) into `dir`, an absolute folder
   * path: one file per script and `fleetward-scripts.json`, ready to commit to git. See
   * {@link writeRepository}. Needs `script.read` on every script written.
   * @throws ValidationError when `dir` is not an absolute path, or for unknown options.
   * @throws AuthorizationError; NotFoundError for a name in `names` that does not exist.
   * @throws UnsafePathError when a symbolic link (or a folder) is at the name of a file it writes:
   *   a link is never followed.
   */
  exportRepository(dir: string, options?: { names?: string[] }): Promise<Manifest>;
  /**
   * Imports a folder written by {@link ScriptApi.exportRepository} (or by hand, or from git).
   * Everything is checked first (manifest, file hashes, content hashes, no path traversal) and
   * then stored in one transaction, or nothing is. Idempotent: a script whose current version has
   * the same content hash is left as it is. Needs what {@link ScriptApi.add} needs, for every
   * script.
   * @throws ValidationError when `dir` is not an absolute path, or listing every problem of the
   *   folder with paths like `['scripts', 2, 'sha256']`.
   * @throws AuthorizationError; ConflictError as for {@link ScriptApi.add}.
   */
  importRepository(dir: string): Promise<ImportResult>;
  /**
   * Plans a run without running anything: the version, targets, parameters (validated, defaults
   * applied), waves and the stop condition in words. The run waits as `awaiting-start`. Secret
   * values go to the SecretStore for the run's lifetime; without one they must be passed again
   * to {@link ScriptApi.startRun}. Needs `script.run` on the script and every server.
   * @throws ValidationError for input that does not fit {@link PlanRunInputSchema}, parameters
   *   that do not fit the script's, targets that choose no server or servers of another OS family.
   * @throws NotFoundError for an unknown script or version.
   * @throws AuthorizationError without `script.run` on the script or a server.
   */
  planRun(input: PlanRunInput): Promise<ScriptRun>;
  /**
   * Starts a planned run and resolves with every server's result when it ends or pauses: servers
   * wave by wave, at most `maxConcurrency` at a time, until the error budget is spent.
   * @throws ValidationError for options that do not fit {@link ExecuteRunOptionsSchema}.
   * @throws AuthorizationError without `script.run`, and (audited) for a risky version that is
   *   not current and approved now; NotFoundError for an unknown run.
   * @throws ConflictError when the run has started already or ended, is being cancelled, or
   *   another process executes it.
   */
  startRun(runId: string, options?: ExecuteRunOptions): Promise<ScriptRunResults>;
  /**
   * Plans and starts a run in one call: `runScript({ script, version, params, targets, rollout })`.
   * Options are checked before the run is planned, so a bad one leaves no run behind. Secret
   * parameters are kept in memory for the call when the Fleet has no SecretStore.
   * @throws what {@link ScriptApi.planRun} and {@link ScriptApi.startRun} throw.
   */
  runScript(input: PlanRunInput & ExecuteRunOptions): Promise<ScriptRunResults>;
  /**
   * Resumes a run whose process died (its lease expired), or one paused by its error budget (pass
   * `acknowledgeFailures`). Servers that finished keep their results; a server whose script was
   * running when the process died is failed as interrupted, never run twice.
   * @throws ValidationError; AuthorizationError; NotFoundError.
   * @throws ConflictError when the run has ended or another process executes it.
   */
  resumeRun(runId: string, options?: ExecuteRunOptions): Promise<ScriptRunResults>;
  /**
   * Cancels a run. One that has not started, is paused or whose process is gone ends at once; one
   * executing in a process is marked, and that process kills the scripts still running, starts no
   * further server and ends the run as cancelled. Needs `script.run`.
   * @throws ValidationError for unknown options; AuthorizationError; NotFoundError.
   * @throws ConflictError when the run has ended.
   */
  cancelRun(runId: string, options?: { reason?: string }): Promise<ScriptRun>;
  /**
   * A run with every server's state and result: exit code, output summaries, where the full
   * output is.
   * @throws NotFoundError; AuthorizationError without `script.read` on the run's script.
   */
  getRun(runId: string): Promise<ScriptRunResults>;
  /**
   * Runs of a script (or of every script), newest first, optionally only those in `status`.
   * @throws ValidationError for unknown options; AuthorizationError without `script.read`.
   */
  listRuns(options?: { script?: string; status?: ScriptRunStatus }): Promise<ScriptRun[]>;
}

/**
 * The script repository and script runs of a session (`session.scripts`): versioned scripts with
 * typed parameters, approvals bound to content hashes, import and export as a folder for git,
 * and runs rolled out like patches.
 */
export function createScriptApi(internals: () => CallContext): ScriptApi {
  /**
   * Lowering a script's risk makes its runs need no approval, so it takes `script.approve` too.
   * Checked before the write and again inside it, against what the transaction reads.
   */
  const writeVersions = async (ctx: CallContext, inputs: ParsedScriptInput[]) => {
    const store = ctx.runtime.store;
    const names = inputs.map((i) => i.name);
    await ctx.authorize('script.write', names.map(scriptResource), {
      type: 'script',
      id: names.length === 1 ? names[0]! : `${names.length} scripts`,
    });
    const lowers = async (scope: StoreScope) => {
      const out: string[] = [];
      for (const input of inputs) {
        if (!input.risky && (await currentVersion(scope, ctx.tenantId, input.name))?.risky)
          out.push(input.name);
      }
      return out;
    };
    const lowered = await lowers(store);
    if (lowered.length) {
      await ctx.authorize('script.approve', lowered.map(scriptResource), { type: 'script', id: lowered[0]! });
    }
    return ctx.write(
      'script.write',
      names.map(scriptResource),
      { type: 'script', id: names.length === 1 ? names[0]! : `${names.length} scripts` },
      async (tx) => {
        const now = await lowers(tx);
        if (now.some((name) => !lowered.includes(name))) {
          throw new ConflictError(
            `the risk of ${now.join(', ')} changed while it was being written: try again`,
          );
        }
        const results = [];
        for (const input of inputs)
          results.push(await addVersion(tx, ctx.tenantId, input, ctx.actor.principalId));
        return results;
      },
      (results) => ({
        scripts: results.slice(0, 200).map((r) => ({
          name: r.version.name,
          ...versionAuditDetails(r),
          risky: r.version.risky,
        })),
      }),
    );
  };

  const readScript = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const ctx = internals();
    return ctx.read('script.read', [scriptResource(name)], { type: 'script', id: name }, fn);
  };

  return {
    add: async (input: AddScriptInput): Promise<Script> => {
      const ctx = internals();
      const parsed = validate(AddScriptInputSchema, input, 'AddScriptInput');
      const [result] = await writeVersions(ctx, [parsed]);
      return result!.version;
    },

    get: async (name: string, options: { version?: number | string } = {}): Promise<Script> => {
      const { version } = validateOptions(VersionOptionsSchema, options, 'GetScriptOptions');
      return readScript(name, () =>
        findVersion(internals().runtime.store, internals().tenantId, name, version),
      );
    },

    versions: (name: string): Promise<Script[]> =>
      readScript(name, () => scriptVersions(internals().runtime.store, internals().tenantId, name)),

    list: async (input: { tag?: string } = {}): Promise<Script[]> => {
      const ctx = internals();
      const options = validateOptions(ListScriptsOptionsSchema, input, 'ListScriptsOptions');
      return ctx.read('script.read', [{ type: 'script' }], { type: 'script', id: '*' }, async () =>
        (await scripts.latest(ctx.runtime.store, ctx.tenantId)).filter(
          (s) => options.tag === undefined || s.tags.includes(options.tag),
        ),
      );
    },

    approve: async (name: string, options: ApproveScriptOptions): Promise<ScriptApproval> => {
      const ctx = internals();
      const parsed = validate(ApproveScriptOptionsSchema, options, 'ApproveScriptOptions');
      const store = ctx.runtime.store;
      const principal = await ctx.authorize('script.approve', [scriptResource(name)], {
        type: 'script',
        id: name,
      });
      const script = await findVersion(store, ctx.tenantId, name);
      if (principal.id === script.createdBy) {
        const reason = `${principal.id} added revision ${script.revision} of ${name} and cannot approve it`;
        await ctx.runtime.audit(store, {
          tenantId: ctx.tenantId,
          actor: { principalId: principal.id, kind: principal.kind },
          action: 'script.approve',
          target: { type: 'script', id: name },
          decision: 'deny',
          result: 'denied',
          reason,
          details: { contentHash: parsed.hash },
        });
        throw new AuthorizationError(reason, {
          allowed: false,
          action: 'script.approve',
          principalId: principal.id,
          resource: { type: 'script', id: name },
          reason,
        });
      }
      return ctx.write(
        'script.approve',
        [scriptResource(name)],
        { type: 'script', id: name },
        async (tx) => {
          const current = await findVersion(tx, ctx.tenantId, name);
          if (current.contentHash !== parsed.hash) {
            throw new ConflictError(
              `script ${name} is at revision ${current.revision} with hash ${current.contentHash}, not the reviewed ${parsed.hash}: review it again`,
            );
          }
          if (!current.risky) {
            throw new ConflictError(
              `script ${name} revision ${current.revision} is not risky: it needs no approval`,
            );
          }
          const previous = await tx.scriptApprovals.listAll(ctx.tenantId, {
            where: { scriptName: name, contentHash: current.contentHash },
          });
          if (previous.some((a) => a.principalId === principal.id)) {
            throw new ConflictError(`${principal.id} has already approved ${name} at ${current.contentHash}`);
          }
          return tx.scriptApprovals.create({
            tenantId: ctx.tenantId,
            scriptName: name,
            contentHash: current.contentHash,
            revision: current.revision,
            principalId: principal.id,
            at: ctx.runtime.clock.now().toISOString(),
            ...(parsed.comment ? { comment: parsed.comment } : {}),
          });
        },
        (a) => ({ contentHash: a.contentHash, revision: a.revision, approvalId: a.id }),
      );
    },

    approval: async (name: string, options: { version?: number | string } = {}): Promise<ApprovalState> => {
      const { version } = validateOptions(VersionOptionsSchema, options, 'ScriptApprovalOptions');
      return readScript(name, async () => {
        const ctx = internals();
        const script = await findVersion(ctx.runtime.store, ctx.tenantId, name, version);
        return approvalState(ctx.runtime.store, ctx.tenantId, script);
      });
    },

    exportRepository: async (folder: string, options: { names?: string[] } = {}): Promise<Manifest> => {
      const ctx = internals();
      const store = ctx.runtime.store;
      const dir = folderOf(folder);
      const { names } = validateOptions(ExportOptionsSchema, options, 'ExportOptions');
      const resources = names ? names.map(scriptResource) : [{ type: 'script' }];
      return ctx.read(
        'script.read',
        resources,
        { type: 'script-repository', id: dir.slice(0, 512) },
        async () => {
          let exported: Script[];
          if (names) {
            exported = [];
            for (const name of names) exported.push(await findVersion(store, ctx.tenantId, name));
          } else {
            exported = await scripts.latest(store, ctx.tenantId);
          }
          return writeRepository(dir, exported, {
            // Only a byte-for-byte copy of a version this tenant holds may be removed: a manifest
            // edited by hand cannot point an export at any other file.
            isExportedVersion: async (entry) =>
              (await store.scripts.listAll(ctx.tenantId, { where: { name: entry.name } })).some(
                (v) =>
                  v.contentHash === entry.contentHash &&
                  v.interpreter === entry.interpreter &&
                  fileSha256(v.body) === entry.sha256,
              ),
          });
        },
      );
    },

    importRepository: async (dir: string): Promise<ImportResult> => {
      const ctx = internals();
      const inputs = await readRepository(folderOf(dir));
      if (inputs.length === 0) return { created: [], unchanged: [] };
      const results = await writeVersions(ctx, inputs);
      return {
        created: results.filter((r) => r.created).map((r) => r.version),
        unchanged: results.filter((r) => !r.created).map((r) => r.version),
      };
    },

    planRun: (input: PlanRunInput): Promise<ScriptRun> => planRun(internals(), input),

    startRun: (runId: string, options?: ExecuteRunOptions): Promise<ScriptRunResults> =>
      startRun(internals(), runId, options),

    runScript: async (input: PlanRunInput & ExecuteRunOptions): Promise<ScriptRunResults> => {
      const { script, version, params, targets, rollout, timeoutMs, ticket, ...options } = objectArgument(
        input,
        'RunScriptInput',
      );
      const ctx = internals();
      // Checked before the run is planned: a bad option must not leave a stored run behind.
      const { signal: _signal, ...executeOptions } = options;
      validate(ExecuteRunOptionsSchema, executeOptions, 'ExecuteRunOptions');
      const run = await planRun(ctx, {
        script,
        targets,
        ...(version === undefined ? {} : { version }),
        ...(params === undefined ? {} : { params }),
        ...(rollout === undefined ? {} : { rollout }),
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        ...(ticket === undefined ? {} : { ticket }),
      });
      const secrets =
        options.secrets ??
        (run.secretParams.length && !run.secretsRef
          ? Object.fromEntries(run.secretParams.map((n) => [n, String(params?.[n])]))
          : undefined);
      return startRun(ctx, run.id, { ...options, ...(secrets ? { secrets } : {}) });
    },

    resumeRun: (runId: string, options?: ExecuteRunOptions): Promise<ScriptRunResults> =>
      resumeRun(internals(), runId, options),

    cancelRun: (runId: string, options?: { reason?: string }): Promise<ScriptRun> =>
      cancelRun(internals(), runId, options),

    getRun: async (runId: string): Promise<ScriptRunResults> => {
      const ctx = internals();
      const run = await ctx.runtime.store.scriptRuns.require(ctx.tenantId, runId);
      return ctx.read(
        'script.read',
        [scriptResource(run.scriptName)],
        { type: 'script-run', id: runId },
        () => runResults(ctx, runId),
      );
    },

    listRuns: async (input: { script?: string; status?: ScriptRunStatus } = {}): Promise<ScriptRun[]> => {
      const ctx = internals();
      const options = validateOptions(ListRunsOptionsSchema, input, 'ListScriptRunsOptions');
      const resource = options.script ? scriptResource(options.script) : { type: 'script' };
      return ctx.read('script.read', [resource], { type: 'script-run', id: '*' }, async () => {
        const runs = await ctx.runtime.store.scriptRuns.listAll(ctx.tenantId, {
          where: {
            ...(options.script ? { scriptName: options.script } : {}),
            ...(options.status ? { status: options.status } : {}),
          },
        });
        return runs.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
      });
    },
  };
}
