import { z } from 'zod';
import {
  OsFamilySchema,
  type Script,
  type ScriptApproval,
  ScriptInterpreterSchema,
  ScriptNameSchema,
  ScriptParametersSchema,
} from '../domain/index.js';
import type { StoreScope } from '../ports/store.js';
import { normalizeSet, POSIX_ONLY, scriptContentHash } from './content.js';
import { type AddedVersion, type VersionedContent, type VersionRef, versionedContent } from './versioned.js';

/** What a caller gives to add a script version. */
export const AddScriptInputSchema = z
  .strictObject({
    name: ScriptNameSchema,
    description: z.string().max(4000).optional(),
    interpreter: ScriptInterpreterSchema,
    /** OS families the script is written for; servers of other known families are refused. @default any */
    osFamilies: z.array(OsFamilySchema.exclude(['unknown'])).default([]),
    body: z.string().max(1_000_000),
    parameters: ScriptParametersSchema,
    tags: z.array(z.string().min(1).max(64)).max(50).default([]),
    /** Runs need an approval of the version's content hash. @default false */
    risky: z.boolean().default(false),
    /** Run through `sudo -n` when the login is not root. @default false */
    runAsRoot: z.boolean().default(false),
  })
  .superRefine((input, ctx) => {
    if (POSIX_ONLY.has(input.interpreter) && input.osFamilies.includes('windows')) {
      ctx.addIssue({
        code: 'custom',
        path: ['osFamilies'],
        message: `a ${input.interpreter} script runs through a POSIX shell and cannot target windows`,
      });
    }
  });
export type AddScriptInput = z.input<typeof AddScriptInputSchema>;
export type ParsedScriptInput = z.output<typeof AddScriptInputSchema>;

/** The versions of scripts: added, found and listed like every versioned content. */
export const scripts: VersionedContent<Script> = versionedContent('script', (scope) => scope.scripts);

/** The versions of a script, oldest first. */
export const scriptVersions = (scope: StoreScope, tenantId: string, name: string): Promise<Script[]> =>
  scripts.versions(scope, tenantId, name);

/** The current (highest) version of a script, or undefined when there is none. */
export const currentVersion = (
  scope: StoreScope,
  tenantId: string,
  name: string,
): Promise<Script | undefined> => scripts.current(scope, tenantId, name);

/**
 * A version of a script: the current one, or the one with this revision number or content hash.
 * @throws NotFoundError when there is none.
 */
export const findVersion = (
  scope: StoreScope,
  tenantId: string,
  name: string,
  version?: VersionRef,
): Promise<Script> => scripts.find(scope, tenantId, name, version);

/**
 * Adds a version unless the current one has the same content hash (then nothing is written and
 * `created` is false): importing the same repository twice adds nothing. A version equal to an
 * older, non-current one is added as a new revision, since it changes what runs.
 *
 * @throws ConflictError when another version of the same script was added concurrently.
 */
export async function addVersion(
  tx: StoreScope,
  tenantId: string,
  input: ParsedScriptInput,
  createdBy: string,
): Promise<AddedVersion<Script>> {
  const content = {
    interpreter: input.interpreter,
    body: input.body,
    osFamilies: normalizeSet(input.osFamilies),
    parameters: input.parameters,
    tags: normalizeSet(input.tags),
    risky: input.risky,
    runAsRoot: input.runAsRoot,
    description: input.description,
  };
  const contentHash = scriptContentHash(content);
  return scripts.add(tx, tenantId, { name: input.name, contentHash, createdBy }, (identity) =>
    // The identity goes last: nothing in the content can stand in for its tenant, name or revision.
    tx.scripts.create({
      ...content,
      ...(input.description === undefined ? {} : { description: input.description }),
      ...identity,
    }),
  );
}

/** Whether a version may run as far as approvals go, and why. */
export interface ApprovalState {
  /** False for a script that is not risky. */
  required: boolean;
  /** Whether the version may run: not risky, or risky, current and approved. */
  satisfied: boolean;
  /** Approvals of this version's content hash that count (not by its author). */
  approvals: ScriptApproval[];
  /** Why it may not run; absent when it may. */
  reason?: string;
}

/**
 * The approval state of a version. A risky version runs only when it is the script's current
 * version and someone other than its author approved its content hash: adding a version (any
 * edit) makes the old hash non-current, which voids its approvals.
 */
export async function approvalState(
  scope: StoreScope,
  tenantId: string,
  script: Script,
): Promise<ApprovalState> {
  if (!script.risky) return { required: false, satisfied: true, approvals: [] };
  const current = await scripts.current(scope, tenantId, script.name);
  const approvals = (
    await scope.scriptApprovals.listAll(tenantId, {
      where: { scriptName: script.name, contentHash: script.contentHash },
    })
  ).filter((a) => a.principalId !== script.createdBy);
  const label = `script ${script.name} revision ${script.revision} (${script.contentHash.slice(0, 12)})`;
  if (current?.contentHash !== script.contentHash) {
    return {
      required: true,
      satisfied: false,
      approvals,
      reason: `${label} is risky and no longer the current version (revision ${current?.revision ?? '?'}): its approvals are void`,
    };
  }
  if (approvals.length === 0) {
    return {
      required: true,
      satisfied: false,
      approvals,
      reason: `${label} is risky and nobody has approved its content hash yet`,
    };
  }
  return { required: true, satisfied: true, approvals };
}
