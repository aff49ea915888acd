import { z } from '@hono/zod-openapi';

/** A component name and/or OpenAPI metadata (`description`, `example`, `param`, …). */
type OpenApiArgs = [refId: string, metadata?: Record<string, unknown>] | [metadata: Record<string, unknown>];

/**
 * `schema.openapi(...)` that works on every schema. `@hono/zod-openapi` adds `.openapi` to zod's
 * prototype when it is imported, and zod gives each schema its methods when it is made: the SDK's
 * schemas, made when `@fleetward/core` was imported first, lack it. Parsing is unchanged.
 */
export function openapi<S extends z.ZodType>(schema: S, ...args: OpenApiArgs): S {
  const method = (z.ZodType.prototype as unknown as { openapi: (...a: OpenApiArgs) => S }).openapi;
  return method.apply(schema, args);
}
