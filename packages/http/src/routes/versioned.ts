import {
  NotFoundError,
  revisionKey,
  VERSION_REF_MESSAGE,
  VERSION_REF_PATTERN,
  type Version,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { type Page, type PageQuery, pageList } from '../pagination.js';

/**
 * Versioned content over HTTP: what the script and runbook routes share about reading and listing
 * versions (see `@fleetward/core`'s `sop/versioned.ts` for what a version is).
 */

/**
 * `?version=`: a revision number or a content hash, for reading one version of a script or
 * runbook; absent for the current one. Hand it to `versionOptions` for the facade.
 */
export const VersionQuery = z.strictObject({
  version: z
    .string()
    .regex(VERSION_REF_PATTERN, VERSION_REF_MESSAGE)
    .optional()
    .openapi({
      param: { name: 'version', in: 'query' },
      description: 'A revision number or a content hash. Default: the current version.',
    }),
});

/** The `?limit=&cursor=` of a page, as validated. */
type PageAsked = Pick<z.output<typeof PageQuery>, 'limit' | 'cursor'>;

/** A page of the current version of each name (as the facade lists them), in name order. */
export function pageOfCurrent<T extends Version>(
  list: string,
  current: readonly T[],
  query: PageAsked,
): Page<T> {
  return pageList(list, current, (v) => v.name, query);
}

/**
 * A page of every version of `name`, oldest first, as list `<noun>s/<name>/versions`.
 * @throws NotFoundError naming the `noun` when there is no version: the SDK lists none for a name
 *   nobody added, and over HTTP that is a missing resource.
 */
export function pageOfVersions<T extends Version>(
  noun: string,
  name: string,
  versions: readonly T[],
  query: PageAsked,
): Page<T> {
  if (versions.length === 0) throw new NotFoundError(noun, name);
  return pageList(`${noun}s/${name}/versions`, versions, (v) => revisionKey(v.revision), query);
}
