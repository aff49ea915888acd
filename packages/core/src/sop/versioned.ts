import { z } from 'zod';
import { AlreadyExistsError, ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { StoreScope } from '../ports/store.js';

/**
 * Versioned content: scripts and runbooks are kept as immutable versions of a name, numbered by
 * `revision` (1, 2, …) and identified by the `contentHash` of what they say. The current version
 * is the one with the highest revision. This file is the one implementation of adding, finding
 * and listing versions for both, and of reading a version reference given as text (an HTTP query
 * parameter, a CLI flag).
 */

/** What every version of versioned content carries. */
export interface Version {
  id: string;
  name: string;
  /** 1 for the first version of a name, one more for each later one. */
  revision: number;
  /** sha256 (hex) over the canonical JSON of the version's content. */
  contentHash: string;
  /** The principal who added the version. */
  createdBy: string;
}

/**
 * A reference to one version: its revision number or its content hash. Absent means the current
 * version.
 */
export type VersionRef = number | string;

/** A version reference as given in a typed input: a positive revision number or a content hash. */
export const VersionRefSchema = z.union([z.number().int().positive(), z.string().regex(/^[a-f0-9]{64}$/)]);

/**
 * A version reference as text (an HTTP query parameter, a CLI flag): a revision number without a
 * leading zero (at most nine digits) or a 64-character lowercase hex content hash.
 */
export const VERSION_REF_PATTERN = /^([1-9][0-9]{0,8}|[a-f0-9]{64})$/;

/** What {@link VERSION_REF_PATTERN} means, in the words of an error message. */
export const VERSION_REF_MESSAGE = 'must be a revision number or a 64-character content hash';

/**
 * A version reference as text, as a typed input wants it: digits become a revision number, a
 * content hash stays a string.
 * @throws ValidationError (subject `version`) when `text` is neither.
 */
export function parseVersionRef(text: string): VersionRef {
  if (!VERSION_REF_PATTERN.test(text)) {
    throw new ValidationError('version', [{ path: [], message: VERSION_REF_MESSAGE }]);
  }
  return /^\d+$/.test(text) ? Number(text) : text;
}

/**
 * The options of a read of one version from a reference given as text, or none: `{}` for the
 * current version, `{ version }` otherwise.
 * @throws ValidationError when `text` is given and is not a version reference.
 */
export function versionOptions(text: string | undefined): { version?: VersionRef } {
  return text === undefined ? {} : { version: parseVersionRef(text) };
}

/**
 * A key for a page of versions ordered by revision: pages go by the key's byte order, so the
 * revision is padded to sort as a number.
 */
export const revisionKey = (revision: number): string => String(revision).padStart(10, '0');

/** The entity id of a version: `name:revision`. */
export const versionId = (name: string, revision: number): string => `${name}:${revision}`;

/** The current version of each name among `versions`, ordered by name. */
export function latestOfEach<T extends Version>(versions: Iterable<T>): T[] {
  const latest = new Map<string, T>();
  for (const v of versions) {
    const seen = latest.get(v.name);
    if (!seen || seen.revision < v.revision) latest.set(v.name, v);
  }
  return [...latest.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** What adding a version did. */
export interface AddedVersion<T extends Version> {
  /** The version added, or the current one when it already had the content hash. */
  version: T;
  /** False when the current version already had the content hash: nothing was written. */
  created: boolean;
  /** The version that was current before, if any. */
  previous: T | undefined;
}

/** Where the versions of one kind of content are stored: a repository of the store. */
export interface VersionRepository<T extends Version> {
  listAll(tenantId: string, options?: { where?: { name: string } }): Promise<T[]>;
}

/** The versions of one kind of content (scripts, runbooks) in a tenant. */
export interface VersionedContent<T extends Version> {
  /** How errors name the content: `script`, `runbook`. */
  readonly noun: string;
  /** Every version of `name`, oldest first; none for a name nobody added. */
  versions(scope: StoreScope, tenantId: string, name: string): Promise<T[]>;
  /** The current (highest) version of `name`, or undefined when there is none. */
  current(scope: StoreScope, tenantId: string, name: string): Promise<T | undefined>;
  /**
   * A version of `name`: the current one, or the one with this revision number, or the latest one
   * with this content hash.
   * @throws NotFoundError naming `name` (and the version asked for) when there is none.
   */
  find(scope: StoreScope, tenantId: string, name: string, version?: VersionRef): Promise<T>;
  /** The current version of every name of the tenant, ordered by name. */
  latest(scope: StoreScope, tenantId: string): Promise<T[]>;
  /**
   * Adds a version of `draft.name` unless the current one has `draft.contentHash` (then nothing is
   * written and `created` is false): adding the same content twice adds nothing. Content equal to
   * an older, non-current version is added as a new revision, since it changes what is current.
   * `create` stores the version under the identity it is given (`id`, `name`, `revision`,
   * `contentHash`, `createdBy`, `tenantId`) through `tx`.
   * @throws ConflictError when another version of the same name was added concurrently (the
   *   revision was taken): read it and try again.
   */
  add(
    tx: StoreScope,
    tenantId: string,
    draft: { name: string; contentHash: string; createdBy: string },
    create: (identity: Version & { tenantId: string }) => Promise<T>,
  ): Promise<AddedVersion<T>>;
}

/**
 * The versions of one kind of content kept in `repository` of the store, named `noun` in errors.
 * Used for scripts (`sop/repository.ts`) and runbooks (`sop/runbook.ts`).
 */
export function versionedContent<T extends Version>(
  noun: string,
  repository: (scope: StoreScope) => VersionRepository<T>,
): VersionedContent<T> {
  const versions = async (scope: StoreScope, tenantId: string, name: string): Promise<T[]> => {
    const found = await repository(scope).listAll(tenantId, { where: { name } });
    return found.sort((a, b) => a.revision - b.revision);
  };
  const current = async (scope: StoreScope, tenantId: string, name: string) =>
    (await versions(scope, tenantId, name)).at(-1);
  return {
    noun,
    versions,
    current,
    async find(scope, tenantId, name, version) {
      const all = await versions(scope, tenantId, name);
      const found =
        version === undefined
          ? all.at(-1)
          : typeof version === 'number'
            ? all.find((v) => v.revision === version)
            : all.findLast((v) => v.contentHash === version);
      if (!found) throw new NotFoundError(noun, version === undefined ? name : `${name} version ${version}`);
      return found;
    },
    async latest(scope, tenantId) {
      return latestOfEach(await repository(scope).listAll(tenantId));
    },
    async add(tx, tenantId, draft, create) {
      const previous = await current(tx, tenantId, draft.name);
      if (previous?.contentHash === draft.contentHash) return { version: previous, created: false, previous };
      const revision = (previous?.revision ?? 0) + 1;
      try {
        const version = await create({
          id: versionId(draft.name, revision),
          name: draft.name,
          revision,
          contentHash: draft.contentHash,
          createdBy: draft.createdBy,
          tenantId,
        });
        return { version, created: true, previous };
      } catch (error) {
        if (error instanceof AlreadyExistsError) {
          throw new ConflictError(
            `another version of ${noun} ${draft.name} was added at the same time as revision ${revision}: read it and try again`,
            { cause: error },
          );
        }
        throw error;
      }
    },
  };
}

/**
 * The audit details of a version written: name, revision, content hash, whether it was added, and
 * the hash it replaced.
 */
export function versionAuditDetails<T extends Version>(added: AddedVersion<T>) {
  return {
    revision: added.version.revision,
    contentHash: added.version.contentHash,
    created: added.created,
    ...(added.created && added.previous ? { previousHash: added.previous.contentHash } : {}),
  };
}
