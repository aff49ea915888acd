import type { OpenAPIHono } from '@hono/zod-openapi';
import { PROBLEM_RESPONSES } from './routes/route.js';

/** What the document says about the API besides its operations. */
export interface ApiDocumentInfo {
  /** @default 'Fleetward API' */
  title?: string;
  /** The API's version string. @default the package version */
  version?: string;
  description?: string;
  /** Where the API is served, e.g. `[{ url: 'https://fleet.example.com' }]`. */
  servers?: { url: string; description?: string }[];
}

/** The OpenAPI 3.1 document as `openApiDocument` returns it. */
export type OpenApiDocument = ReturnType<OpenAPIHono['getOpenAPI31Document']>;

export const API_VERSION = '0.1.0';

const infos = new WeakMap<object, ApiDocumentInfo>();

/** Remembers the document info of an app made by `createFleetwardApi`. */
export function setDocumentInfo(app: object, info: ApiDocumentInfo): void {
  infos.set(app, info);
}

const PROBLEM_DESCRIPTIONS: Record<keyof typeof PROBLEM_RESPONSES, string> = {
  400: 'The request does not match the operation’s schema (`VALIDATION_FAILED`, with field errors).',
  401: 'No bearer token, or one that is malformed, unknown, expired or revoked (`UNAUTHORIZED`).',
  403: 'The token’s principal may not do this (`FORBIDDEN`); the denial is in the audit log.',
  404: 'No such resource in the token’s tenant (`NOT_FOUND`).',
  409: 'A conflicting change (`CONFLICT`, `ALREADY_EXISTS`, `DRIFTED`, `LEASE_NOT_HELD`).',
  413: 'The body is larger than the server accepts (`PAYLOAD_TOO_LARGE`).',
  415: 'The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).',
  422: 'The SDK refused the input (`VALIDATION_FAILED`, with field errors).',
  500: 'The server failed (`INTERNAL`, `STORE_FAILED`); details are logged, not returned.',
  501: 'No adapter, SecretStore or signing key for what was asked (`CAPABILITY_MISSING`).',
  502: 'A server or provider failed (`TRANSPORT_FAILED`, `HOST_KEY_MISMATCH`, `COMMAND_FAILED`, `PARSE_FAILED`).',
  503: 'The server is shutting down (`ABORTED`); the work stopped where it can be resumed.',
  504: 'A server did not answer in time (`TIMEOUT`).',
};

/** Registers what every operation refers to: the bearer scheme and the problem responses. */
export function registerCommonComponents(app: Pick<OpenAPIHono, 'openAPIRegistry'>): void {
  const registry = app.openAPIRegistry;
  registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'fwt_<tenantId>_<tokenId>_<secret>',
    description: 'An API token; the tenant and the principal every call acts as come from it.',
  });
  for (const [status, name] of Object.entries(PROBLEM_RESPONSES)) {
    registry.registerComponent('responses', name, {
      description: PROBLEM_DESCRIPTIONS[Number(status) as keyof typeof PROBLEM_RESPONSES],
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    });
  }
}

// The generator writes a RegExp's flags into `pattern` (`^[^\p{Cc}]+$/u`). A regex source never holds
// an unescaped `/`, so one followed by flags at the end of a pattern can only be that mistake.
const TRAILING_FLAGS = /^(.*?)(\\*)\/[dgimsuvy]+$/s;

function fixPattern(pattern: string): string {
  const match = TRAILING_FLAGS.exec(pattern);
  if (!match || match[2]!.length % 2 === 1) return pattern;
  return `${match[1]}${match[2]}`;
}

function normalize(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(normalize);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === 'pattern' && typeof value === 'string' ? fixPattern(value) : normalize(value);
  }
  return out;
}

/**
 * The OpenAPI 3.1 document of an app made by `createFleetwardApi` (or of any `OpenAPIHono` app),
 * generated from the zod schemas its routes validate with — the SDK's own schemas.
 */
export function openApiDocument(app: Pick<OpenAPIHono, 'getOpenAPI31Document'>): OpenApiDocument {
  const info = infos.get(app) ?? {};
  const document = app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: info.title ?? 'Fleetward API',
      version: info.version ?? API_VERSION,
      description:
        info.description ??
        'Server management over HTTP: inventory, scans, compliance, patch plans and runs, just-in-time ' +
          'access, managed SSH keys, scripts and their runs, audit. ' +
          'Every call acts as the principal of its API token, within that token’s tenant.',
    },
    ...(info.servers ? { servers: info.servers } : {}),
    security: [{ bearerAuth: [] }],
  });
  return normalize(document) as OpenApiDocument;
}
