import { auditRoutes } from './audit.js';
import { complianceRoutes } from './compliance.js';
import { iamRoutes } from './iam.js';
import { inventoryRoutes } from './inventory.js';
import { patchRoutes } from './patch.js';
import type { RouteModule } from './route.js';
import { scanRoutes } from './scans.js';
import { tokenRoutes } from './tokens.js';

/**
 * Every group of routes, in the order of the OpenAPI document. A new area (access requests,
 * scripts) is one file exporting a {@link RouteModule} and one line here.
 */
export const ROUTE_MODULES: readonly RouteModule[] = [
  inventoryRoutes,
  scanRoutes,
  complianceRoutes,
  patchRoutes,
  auditRoutes,
  iamRoutes,
  tokenRoutes,
];
