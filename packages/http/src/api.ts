import {
  type Actor,
  type Fleet,
  FleetwardError,
  isLogger,
  type Logger,
  toFleetwardError,
  toIssues,
  type ValidationIssue,
  validate,
} from '@fleetward/core';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { z } from 'zod';
import { BackgroundRuns } from './background.js';
import { openApiDocument, registerCommonComponents, setDocumentInfo } from './openapi.js';
import {
  HttpProblemError,
  type ProblemLocation,
  ProblemSchema,
  RequestValidationError,
  toProblem,
  UnauthenticatedError,
} from './problem.js';
import { ROUTE_MODULES } from './routes/index.js';
import type { ApiApp, ApiEnv } from './routes/route.js';
import { createTokenVerifier } from './tokens.js';

/** 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const fn = <T>() => z.custom<T>((v) => typeof v === 'function', 'must be a function');

/** Who a request's token says is calling: what {@link FleetwardApiOptions.mfaVerifiedAt} is asked about. */
export interface ApiCaller {
  tenantId: string;
  principalId: string;
  /** The id of the API token the request came with. */
  tokenId: string;
}

/**
 * Says when the caller of `request` last verified a second factor (ISO 8601 with offset), or
 * `undefined` when they have not (or it is unknown). The embedding server knows this from its own
 * session; a bearer token alone proves no second factor.
 */
export type MfaVerifiedAt = (
  request: Request,
  caller: ApiCaller,
) => string | undefined | Promise<string | undefined>;

const MfaInstantSchema = z.iso.datetime({ offset: true });

export const FleetwardApiOptionsSchema = z.strictObject({
  /** Largest request body accepted; larger ones get 413. @default 1 MiB */
  maxBodyBytes: z
    .number()
    .int()
    .min(1)
    .max(1024 ** 3)
    .default(DEFAULT_MAX_BODY_BYTES),
  /**
   * Aborts work the API started in the background (patch runs, script runs, key rotations that
   * outlived their answer) when it aborts: pass the embedding server's shutdown signal.
   * `serveFleetwardApi` does this for you.
   */
  signal: z.instanceof(AbortSignal).optional(),
  /**
   * Gets every failure answered with a 5xx, and failures of background work, with the request it
   * belongs to. They are logged to `logger` as well.
   * @default nothing more when there is a logger (here or the Fleet's), else writes them to stderr
   */
  onError: fn<(error: unknown, request: { method: string; path: string }) => void>().optional(),
  /**
   * Where the API logs (error) every request answered with a 5xx: method, path, status, error
   * code and message; never the body, the query's values or a header. Failures of background work
   * (a patch run outliving its request) too. Records are redacted like the Fleet's.
   * @default the Fleet's `logger`
   */
  logger: z
    .custom<Logger>(isLogger, 'must have the methods error, warn, info and debug (a pino logger fits)')
    .optional(),
  /**
   * When the caller last verified MFA, asked once per authenticated request and passed to
   * `fleet.as({ tenantId, principalId, mfaVerifiedAt })`: role rules with `mfaWithinMinutes` (e.g.
   * approving access) count only when it is recent enough. Take it from the embedding server's own
   * session, never from something the client sends alongside the token. Throwing refuses the
   * request (a `FleetwardError` keeps its status, anything else is a 500).
   * @default no caller has verified MFA, so such rules never allow anything over HTTP
   */
  mfaVerifiedAt: fn<MfaVerifiedAt>().optional(),
  /** Title, version, description and servers of the OpenAPI document. */
  document: z
    .strictObject({
      title: z.string().min(1).optional(),
      version: z.string().min(1).optional(),
      description: z.string().optional(),
      servers: z
        .array(z.strictObject({ url: z.string().min(1), description: z.string().optional() }))
        .optional(),
    })
    .optional(),
});
/**
 * Options of {@link createFleetwardApi}; see {@link FleetwardApiOptionsSchema}.
 *
 * @useDeclaredType
 */
export type FleetwardApiOptions = z.input<typeof FleetwardApiOptionsSchema>;

/** The API's Hono app: mount it (`app.fetch`, `app.route`) or serve it with `@hono/node-server`. */
export type FleetwardApi = ApiApp;

const backgrounds = new WeakMap<object, BackgroundRuns>();

/** The background work of an app made by {@link createFleetwardApi}. */
export function backgroundOf(app: FleetwardApi): BackgroundRuns {
  const background = backgrounds.get(app);
  if (!background) throw new TypeError('not an app made by createFleetwardApi');
  return background;
}

const LOCATIONS: Record<string, ProblemLocation> = {
  json: 'body',
  query: 'query',
  param: 'path',
  header: 'header',
};

const defaultOnError = (error: unknown, request: { method: string; path: string }) => {
  const e = toFleetwardError(error, `${request.method} ${request.path}`);
  process.stderr.write(`fleetward http: ${request.method} ${request.path}: ${e.code}: ${e.message}\n`);
};

/** Field errors of a request; an unknown field gets its own path rather than its object's. */
function requestIssues(error: z.ZodError): ValidationIssue[] {
  return toIssues(error).flatMap((issue, i) => {
    const raw = error.issues[i];
    if (raw?.code !== 'unrecognized_keys') return [issue];
    return raw.keys.map((key) => ({
      path: [...issue.path, key],
      message: 'is not a field of this request',
      code: raw.code,
    }));
  });
}

function problemResponse(c: Context, error: FleetwardError | HttpProblemError): Response {
  const problem = toProblem(error, c.req.path);
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  // The unread rest of an oversized body would be taken for the next request on the connection.
  if (problem.code === 'PAYLOAD_TOO_LARGE') headers['connection'] = 'close';
  if (error instanceof UnauthenticatedError) {
    headers['www-authenticate'] =
      `Bearer realm="fleetward"${error.challenge ? `, error="${error.challenge}"` : ''}`;
  }
  return c.body(JSON.stringify(problem), problem.status as 400, headers);
}

const BEARER = /^Bearer +([^\s]+) *$/i;

/**
 * Creates the HTTP API over `fleet`: every `/v1` route authenticates its bearer token, then acts
 * through `fleet.as({ tenantId, principalId })` of that token, so the facade authorizes and audits
 * each call and the tenant always comes from the token. `GET /openapi.json` serves the OpenAPI 3.1
 * document without authentication: it describes the API, not any tenant's data.
 *
 * @example
 * const app = createFleetwardApi(fleet);
 * serve({ fetch: app.fetch, port: 8080 }); // @hono/node-server
 */
export function createFleetwardApi(fleet: Fleet, options: FleetwardApiOptions = {}): FleetwardApi {
  const opts = validate(FleetwardApiOptionsSchema, options, 'FleetwardApiOptions');
  const tooLarge = `the body is larger than ${opts.maxBodyBytes} bytes`;
  const logger = opts.logger ? fleet.logger.to(opts.logger) : fleet.logger;
  const log = logger.child({ component: 'http' });
  const onError = opts.onError ?? (logger.silent ? defaultOnError : () => undefined);
  const failed = (error: unknown, request: { method: string; path: string }, status: number) => {
    const e = toFleetwardError(error, `${request.method} ${request.path}`);
    log.error({ ...request, status, code: e.code, error: e.message }, 'request failed');
    onError(error, request);
  };
  const background = new BackgroundRuns((error, what) => {
    log.error({ run: what, err: error }, 'background work failed');
    onError(error, { method: 'BACKGROUND', path: `(${what})` });
  }, opts.signal);
  const verify = createTokenVerifier(fleet);
  const mfaVerifiedAt = opts.mfaVerifiedAt;

  const withMfa = async (request: Request, actor: Actor, tokenId: string): Promise<Actor> => {
    if (!mfaVerifiedAt) return actor;
    const at = await mfaVerifiedAt(request, {
      tenantId: actor.tenantId,
      principalId: actor.principalId,
      tokenId,
    });
    if (at === undefined) return actor;
    // A malformed instant is the embedding server's bug, not the caller's: a 500, never a 4xx.
    if (!MfaInstantSchema.safeParse(at).success) {
      throw new FleetwardError(
        'INTERNAL',
        `the mfaVerifiedAt option returned ${typeof at === 'string' ? 'a string that is not an ISO 8601 instant with offset' : `a ${typeof at}`}`,
        { fault: 'internal' },
      );
    }
    return { ...actor, mfaVerifiedAt: at };
  };

  const app: ApiApp = new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new RequestValidationError(LOCATIONS[result.target] ?? 'body', requestIssues(result.error));
      }
    },
  });
  backgrounds.set(app, background);
  setDocumentInfo(app, opts.document ?? {});

  app.onError((error, c) => {
    if (error instanceof FleetwardError || error instanceof HttpProblemError) {
      const status = problemStatusOf(error);
      if (status >= 500) failed(error, { method: c.req.method, path: c.req.path }, status);
      return problemResponse(c, error);
    }
    if (error instanceof HTTPException) {
      if (error.status === 413)
        return problemResponse(c, new HttpProblemError('PAYLOAD_TOO_LARGE', tooLarge));
      if (error.status === 415) {
        return problemResponse(
          c,
          new HttpProblemError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json'),
        );
      }
      if (error.status === 400) {
        return problemResponse(c, new RequestValidationError('body', [{ path: [], message: error.message }]));
      }
    }
    const answer = toFleetwardError(error, 'handling the request');
    failed(error, { method: c.req.method, path: c.req.path }, problemStatusOf(answer));
    return problemResponse(c, answer);
  });
  app.notFound((c) =>
    problemResponse(
      c,
      new FleetwardError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`, { fault: 'caller' }),
    ),
  );

  let document: ReturnType<typeof openApiDocument> | undefined;
  app.get('/openapi.json', (c) => {
    document ??= openApiDocument(app);
    return c.json(document);
  });

  const authenticate: MiddlewareHandler<ApiEnv> = async (c, next) => {
    const header = c.req.header('authorization');
    if (header === undefined) {
      throw new UnauthenticatedError('a bearer token is required: Authorization: Bearer fwt_…');
    }
    const match = BEARER.exec(header);
    if (!match)
      throw new UnauthenticatedError('the Authorization header must be "Bearer <token>"', 'invalid_request');
    const verified = await verify(match[1]!);
    const actor = await withMfa(c.req.raw, verified.actor, verified.tokenId);
    c.set('actor', actor);
    c.set('tokenId', verified.tokenId);
    c.set('session', fleet.as(actor));
    await next();
  };
  app.use('/v1/*', authenticate);
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: opts.maxBodyBytes,
      onError: () => {
        throw new HttpProblemError('PAYLOAD_TOO_LARGE', tooLarge);
      },
    }),
  );

  registerCommonComponents(app);
  app.openAPIRegistry.register('Problem', ProblemSchema);
  const deps = { fleet, background, onError };
  for (const register of ROUTE_MODULES) register(app, deps);
  return app;
}

function problemStatusOf(error: FleetwardError | HttpProblemError): number {
  return toProblem(error, '').status;
}
