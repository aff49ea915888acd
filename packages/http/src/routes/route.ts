import { type Actor, type Fleet, type FleetSession, IdSchema } from '@fleetward/core';
import { createRoute, type OpenAPIHono, type RouteConfig, z } from '@hono/zod-openapi';
import type { BackgroundRuns } from '../background.js';
import { openapi } from '../zod-openapi.js';

/** What the authentication middleware puts on every `/v1` request's context. */
export interface ApiEnv {
  Variables: {
    /** The facade as the token's principal: every route goes through it. */
    session: FleetSession;
    actor: Actor;
    tokenId: string;
  };
}

/** The API's Hono app. */
export type ApiApp = OpenAPIHono<ApiEnv>;

/** What route modules get besides the app. */
export interface RouteDeps {
  fleet: Fleet;
  /** Work that outlives its request (patch runs), aborted and awaited on shutdown. */
  background: BackgroundRuns;
  /**
   * The app's `onError`, for failures no answer can carry any more (a stream that breaks after its
   * status was sent).
   */
  onError: (error: unknown, request: { method: string; path: string }) => void;
}

/**
 * A group of routes, one file each (`inventory.ts`, `patch.ts`, …). It only calls `app.openapi`:
 * authentication, body limits and problem responses are the app's.
 */
export type RouteModule = (app: ApiApp, deps: RouteDeps) => void;

/** Problem responses every operation may give, as `#/components/responses/<name>`. */
export const PROBLEM_RESPONSES = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  413: 'PayloadTooLarge',
  415: 'UnsupportedMediaType',
  422: 'UnprocessableContent',
  500: 'InternalError',
  501: 'CapabilityMissing',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
} as const;

type ProblemStatus = keyof typeof PROBLEM_RESPONSES;

/**
 * Problem responses an operation gives beyond the common ones, e.g. `problems(501, 502)` for one
 * that needs an adapter capability and reaches servers. Spread into `responses`.
 */
export function problems(...statuses: ProblemStatus[]): Record<string, { $ref: string }> {
  return Object.fromEntries(
    statuses.map((s) => [String(s), { $ref: `#/components/responses/${PROBLEM_RESPONSES[s]}` }]),
  );
}

function problemsFor(config: RouteConfig): Record<string, { $ref: string }> {
  const statuses: ProblemStatus[] = [400, 401, 403, 404, 422, 500];
  if (config.method !== 'get') statuses.push(409);
  if (config.request?.body) statuses.push(413, 415);
  return problems(...statuses);
}

/**
 * `createRoute` with what every API operation shares: bearer authentication and the problem
 * responses. The declared responses stay the route's own type, so handlers are checked against them.
 */
export function apiRoute<const R extends RouteConfig>(config: R): R & { getRoutingPath(): string } {
  return createRoute({
    ...config,
    security: [{ bearerAuth: [] }],
    responses: { ...problemsFor(config), ...config.responses },
  }) as R & { getRoutingPath(): string };
}

/**
 * A required JSON request body. `example` is a valid body: it documents the operation, and the
 * test that calls every route sends it.
 */
export function jsonBody<S extends z.ZodType>(schema: S, example: z.input<S>, description?: string) {
  return {
    required: true,
    ...(description ? { description } : {}),
    content: { 'application/json': { schema, example } },
  };
}

/**
 * An optional JSON request body, for operations whose every option has a default (approve with
 * an optional comment): a request without a body (and without `Content-Type`) means `{}`. Give
 * the schema no `.default()`s: a missing body is not parsed, so the handler applies defaults.
 */
export function optionalJsonBody<S extends z.ZodType>(schema: S, example: z.input<S>, description?: string) {
  return { ...jsonBody(schema, example, description), required: false };
}

/** A JSON response. */
export function jsonResponse<S extends z.ZodType>(schema: S, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** Path parameters: each an id, named as in the path template (`{serverId}`). */
export function idParams<const K extends string>(...names: K[]) {
  return z.strictObject(
    Object.fromEntries(
      names.map((name) => [
        name,
        openapi(IdSchema, { param: { name, in: 'path' }, example: `${name.replace(/Id$/, '')}-1` }),
      ]),
    ) as Record<K, z.ZodString>,
  );
}

/** `Location` of a created resource. */
export const locationHeader = z.object({
  Location: z.string().openapi({ description: 'Path of the created resource.' }),
});
