import { z } from 'zod';
import { IdSchema, type Server, ServerSelectorSchema, toIssues } from '../domain/index.js';
import { NotFoundError, ValidationError } from '../errors.js';
import type { StoreScope } from '../ports/store.js';

/** Which servers an operation is for: explicit ids, a selector, or the servers of a project. */
export const TargetsSchema = z.union([
  z.strictObject({ serverIds: z.array(IdSchema).min(1) }),
  z.strictObject({ selector: ServerSelectorSchema }),
  z.strictObject({ projectId: IdSchema }),
]);
export type Targets = z.infer<typeof TargetsSchema>;

const TARGET_KEYS = ['serverIds', 'selector', 'projectId'] as const;

/**
 * Parses the targets of a call. A union's own error names only its root; this one names the field
 * that is wrong (`serverIds.0`, `selector.labels`) by checking the form whose key is given, and
 * the three keys when none or several are.
 */
export function validateTargets(value: unknown, subject = 'Targets'): Targets {
  const parsed = TargetsSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const given =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? TARGET_KEYS.filter((key) => Object.hasOwn(value, key))
      : [];
  if (given.length === 1) {
    const branch = TargetsSchema.options[TARGET_KEYS.indexOf(given[0]!)]!;
    const result = branch.safeParse(value);
    if (!result.success) throw new ValidationError(subject, toIssues(result.error));
  }
  throw new ValidationError(subject, [
    {
      path: [],
      message:
        given.length > 1
          ? `give one of serverIds, selector or projectId, not ${given.join(' and ')}`
          : 'give exactly one of serverIds (a list of ids), selector or projectId',
    },
  ]);
}

/**
 * The tenant's servers that `targets` names, sorted by id. An explicit id that does not exist is a
 * `NotFoundError`: silently skipping a server the caller asked for would hide it from a patch run.
 */
export async function resolveTargets(
  store: StoreScope,
  tenantId: string,
  targets: Targets,
): Promise<Server[]> {
  if ('serverIds' in targets) {
    const unique = [...new Set(targets.serverIds)].sort();
    // Looked up one by one: a listing would read the whole tenant to find a handful of servers.
    const servers: Server[] = [];
    for (const id of unique) {
      const server = await store.servers.get(tenantId, id);
      if (!server) throw new NotFoundError('server', id);
      servers.push(server);
    }
    return servers;
  }
  if ('selector' in targets) return store.servers.listAll(tenantId, { selector: targets.selector });
  const project = await store.projects.require(tenantId, targets.projectId);
  return store.servers.listAll(tenantId, { selector: project.selector });
}
