/**
 * `node --import ./record-resolutions.mjs app.mjs`: records every module `app.mjs` resolves into
 * the file named by `FLEETWARD_RESOLUTION_LOG` (see `resolution-hooks.mjs`).
 */
import { register } from 'node:module';

const logPath = process.env.FLEETWARD_RESOLUTION_LOG;
if (!logPath) throw new Error('FLEETWARD_RESOLUTION_LOG must name the file to record resolutions in');
register('./resolution-hooks.mjs', import.meta.url, { data: { logPath } });
