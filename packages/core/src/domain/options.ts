import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { plainRecord } from './common.js';
import { ENTITY_SCHEMAS, type EntityKind } from './entities.js';
import { ServerSelectorSchema } from './selector.js';
import { validate } from './validate.js';

/**
 * Parses the options object of an SDK method: absent is `{}`; anything but a plain object, an
 * unknown key (`tenantId` among them) or an own `__proto__` key is a `ValidationError` naming the
 * subject and the field. The schema must be a `z.strictObject` for unknown keys to be refused.
 */
export function validateOptions<S extends z.ZodType>(
  schema: S,
  value: unknown,
  subject: string,
): z.output<S> {
  return validate(schema, value === undefined ? {} : value, subject);
}

/**
 * A method argument that must be a plain object (an input, or options when `optional`, where
 * absent is `{}`): checked before a field of it is read, so `null`, a list or a string is a
 * `ValidationError` naming the subject rather than a `TypeError` from deep inside.
 */
export function objectArgument<T extends object>(value: T, subject: string, optional = false): T {
  if (value === undefined && optional) return {} as T;
  const proto = typeof value === 'object' && value !== null ? Object.getPrototypeOf(value) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value;
    throw new ValidationError(subject, [{ path: [], message: `expected an object, received ${got}` }]);
  }
  return value;
}

/**
 * Checks the input of an `add` before any of its fields is used (to look up its project, decide on
 * its scope): a bad field is named by its path, not by whatever it was first used for.
 */
export function checkEntityInput(kind: EntityKind, input: object, tenantId: string, subject: string): void {
  validate(ENTITY_SCHEMAS[kind].input, { ...objectArgument(input, subject), tenantId }, subject);
}

/** A method argument that must be a string naming one entity (an id or a name). */
export function validateId(value: unknown, subject: string): string {
  if (typeof value !== 'string') {
    throw new ValidationError(subject, [
      { path: [], message: `expected a string, received ${value === null ? 'null' : typeof value}` },
    ]);
  }
  return value;
}

/**
 * The options of `servers.list` and of every listing that takes a store's `ListOptions`: `where`
 * (equality on indexed fields, plain scalar values), `selector`, `after` and `limit`.
 */
export const ListOptionsSchema = z.strictObject({
  where: plainRecord(
    z.string().min(1).max(64),
    z.union([z.string().max(1024), z.number(), z.boolean()]),
  ).optional(),
  selector: ServerSelectorSchema.optional(),
  after: z.string().max(512).optional(),
  limit: z.number().int().min(1).max(10_000).optional(),
});

/** Options of calls that remove something: the version the caller read, when it wants the check. */
export const RemoveOptionsSchema = z.strictObject({
  expectedVersion: z.number().int().min(1).optional(),
});

/** Options of calls that end or cancel something with a reason for the audit log. */
export const ReasonOptionsSchema = z.strictObject({
  reason: z.string().max(2000).optional(),
});

/** Options of reads of one versioned entity: a revision number or a content hash. */
export const VersionOptionsSchema = z.strictObject({
  version: z.union([z.number().int().min(1), z.string().min(1).max(128)]).optional(),
});
