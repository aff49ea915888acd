export {
  type ApiCaller,
  createFleetwardApi,
  DEFAULT_MAX_BODY_BYTES,
  type FleetwardApi,
  type FleetwardApiOptions,
  FleetwardApiOptionsSchema,
  type MfaVerifiedAt,
} from './api.js';
export type { BackgroundRuns } from './background.js';
export { type ApiDocumentInfo, type OpenApiDocument, openApiDocument } from './openapi.js';
export { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type Page } from './pagination.js';
export {
  HttpProblemError,
  type Problem,
  type ProblemCode,
  type ProblemFieldError,
  type ProblemLocation,
  problemStatus,
  problemType,
  RequestValidationError,
  UnauthenticatedError,
} from './problem.js';
export type { ApiApp, ApiEnv, RouteDeps, RouteModule } from './routes/route.js';
export { type FleetwardServer, type ServeOptions, ServeOptionsSchema, serveFleetwardApi } from './serve.js';
export {
  API_TOKEN_PREFIX,
  type ApiTokenApi,
  type ApiTokenView,
  apiTokensAs,
  type CreateApiTokenInput,
  CreateApiTokenInputSchema,
  createApiTokenApi,
  createTokenVerifier,
  formatApiToken,
  hashTokenSecret,
  type IssueApiTokenInput,
  IssueApiTokenInputSchema,
  type IssuedApiToken,
  issueApiToken,
  LAST_USED_RESOLUTION_MS,
  type ParsedApiToken,
  parseApiToken,
  type TokenVerifierOptions,
  type VerifiedApiToken,
} from './tokens.js';
