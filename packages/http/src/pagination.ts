import type { Fleet, FleetSession, Server, ServerSelector } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { RequestValidationError } from './problem.js';

/** Items per page when the caller does not say. */
export const DEFAULT_PAGE_SIZE = 100;
/** The most items a page holds. */
export const MAX_PAGE_SIZE = 1000;
// The store's own limit on one listing.
const MAX_WINDOW = 10_000;

/** `?limit=&cursor=`, shared by every list. */
export const PageQuery = z.strictObject({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_PAGE_SIZE)
    .default(DEFAULT_PAGE_SIZE)
    .openapi({ param: { name: 'limit', in: 'query' }, description: 'Items per page.' }),
  cursor: z
    .string()
    .min(1)
    .max(1024)
    .optional()
    .openapi({ param: { name: 'cursor', in: 'query' }, description: 'The `next` of the previous page.' }),
});

/** Makes the opaque cursor of a list: which list, and the sort key of the last item given. */
export function encodeCursor(list: string, after: string): string {
  return Buffer.from(JSON.stringify({ l: list, a: after }), 'utf8').toString('base64url');
}

/** The sort key a cursor continues after. A cursor of another list, or no cursor at all, is a 400. */
export function decodeCursor(list: string, cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  const parsed = z.strictObject({ l: z.literal(list), a: z.string().min(1) }).safeParse(decoded);
  if (!parsed.success) {
    throw new RequestValidationError('query', [
      { path: ['cursor'], message: 'is not a cursor of this list: pass the `next` of its previous page' },
    ]);
  }
  return parsed.data.a;
}

/** One page of a list. `next` is `null` on the last page. */
export interface Page<T> {
  items: T[];
  next: string | null;
}

/**
 * Pages a list the facade returns whole (accounts, projects, policies…: tenant-sized, not
 * fleet-sized), ordered by `key` in byte order like the store's own listings.
 */
export function pageList<T>(
  list: string,
  all: readonly T[],
  key: (item: T) => string,
  query: { limit: number; cursor?: string | undefined },
): Page<T> {
  const after = decodeCursor(list, query.cursor);
  const sorted = [...all].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const rest = after === undefined ? sorted : sorted.filter((item) => key(item) > after);
  const items = rest.slice(0, query.limit);
  const more = rest.length > query.limit;
  return { items, next: more ? encodeCursor(list, key(items[items.length - 1]!)) : null };
}

/**
 * A page of the servers the session may read, in id order, without gaps or repeats.
 *
 * The facade leaves out servers the principal may not read, so a page it returns can be short
 * without being the last, and its last item says nothing about where the store stopped. The store
 * is therefore asked only for the ids in the next window of the tenant's servers; the servers
 * themselves, and whether each may be read, come from the facade (authorized and audited). The
 * cursor only ever holds the id of a server the caller was given.
 */
export async function readableServersPage(
  fleet: Fleet,
  session: FleetSession,
  options: { list: string; selector?: ServerSelector; limit: number; cursor?: string | undefined },
): Promise<Page<Server>> {
  const tenantId = session.actor.tenantId;
  let after = decodeCursor(options.list, options.cursor);
  let window = Math.min(options.limit + 1, MAX_WINDOW);
  const found: Server[] = [];
  for (;;) {
    const rows = await fleet.store.servers.list(tenantId, {
      ...(options.selector ? { selector: options.selector } : {}),
      ...(after === undefined ? {} : { after }),
      limit: window,
    });
    if (rows.length === 0) break;
    const readable = await session.servers.list({
      selector: { ids: rows.map((s) => s.id) },
      ...(after === undefined ? {} : { after }),
      limit: rows.length,
    });
    found.push(...readable);
    if (found.length > options.limit || rows.length < window) break;
    after = rows[rows.length - 1]!.id;
    // Windows grow when little is readable, so a sparse view of a big tenant takes few round trips.
    window = Math.min(window * 4, MAX_WINDOW);
  }
  const items = found.slice(0, options.limit);
  const more = found.length > options.limit;
  return { items, next: more ? encodeCursor(options.list, items[items.length - 1]!.id) : null };
}
