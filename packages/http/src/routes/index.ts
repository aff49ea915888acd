import { accessRoutes } from './access.js';
import { auditRoutes } from './audit.js';
import { complianceRoutes } from './compliance.js';
import { iamRoutes } from './iam.js';
import { inventoryRoutes } from './inventory.js';
import { keyRoutes } from './keys.js';
import { patchRoutes } from './patch.js';
import type { RouteModule } from './route.js';
import { runbookRoutes } from './runbooks.js';
import { scanRoutes } from './scans.js';
import { scriptRoutes } from './scripts.js';
import { tokenRoutes } from './tokens.js';

/**
 * Every group of routes, in the order of the OpenAPI document. A new area is one file exporting a
 * {@link RouteModule} and one line here. The order matters to the examples too: a later example may
 * name what an earlier one creates (the server `web-1`, the principal `ci-bot`, the script
 * `restart-nginx`), and the test that calls every route sends them in this order.
 */
export const ROUTE_MODULES: readonly RouteModule[] = [
  inventoryRoutes,
  scanRoutes,
  complianceRoutes,
  patchRoutes,
  auditRoutes,
  iamRoutes,
  tokenRoutes,
  accessRoutes,
  keyRoutes,
  scriptRoutes,
  runbookRoutes,
];
