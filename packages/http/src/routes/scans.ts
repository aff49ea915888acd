import { NotFoundError, type Server } from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, readableServersPage } from '../pagination.js';
import { Job, pageOf, ScanResult, Server as ServerSchema, Targets } from '../schemas.js';
import { apiRoute, idParams, jsonBody, jsonResponse, type RouteDeps, type RouteModule } from './route.js';

const ScanRequest = z
  .strictObject({
    targets: Targets,
    /** Servers scanned at once. @default the fleet's scanConcurrency */
    concurrency: z.number().int().min(1).max(256).optional(),
    /** Per-server time limit in ms. @default 600000 */
    timeoutMs: z.number().int().min(1000).max(3_600_000).optional(),
  })
  .openapi('ScanRequest');

const ScanOutcome = z
  .strictObject({ job: Job, results: z.array(ScanResult) })
  .openapi('ScanOutcome', { description: 'The scan job and one result per targeted server, in id order.' });

const LatestScan = z
  .strictObject({ server: ServerSchema, scan: ScanResult.nullable() })
  .openapi('LatestScan', { description: 'A server and its newest scan; `null` when never scanned.' });

type Session = ReturnType<RouteDeps['fleet']['as']>;

async function latestOf(session: Session, servers: Server[]) {
  if (servers.length === 0) return [];
  const rows = await session.latestScans({ serverIds: servers.map((s) => s.id) });
  return rows.map((row) => ({ server: row.server, scan: row.scan ?? null }));
}

/** Scanning for pending patches, and the latest results. */
export const scanRoutes: RouteModule = (app, { fleet, background }) => {
  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/scans',
      operationId: 'runScan',
      tags: ['scans'],
      summary: 'Scans the targeted servers and answers when every one is done (or failed).',
      description:
        'Every targeted server must be allowed `patch.scan`, or nothing runs. A client that ' +
        'disconnects cancels the scans not yet finished.',
      request: { body: jsonBody(ScanRequest, { targets: { serverIds: ['web-1'] }, concurrency: 8 }) },
      responses: { 200: jsonResponse(ScanOutcome, 'The finished scan.') },
    }),
    async (c) => {
      const { targets, concurrency, timeoutMs } = c.req.valid('json');
      const outcome = await c.get('session').scan(targets, {
        signal: AbortSignal.any([c.req.raw.signal, background.signal]),
        ...(concurrency ? { concurrency } : {}),
        ...(timeoutMs ? { timeoutMs } : {}),
      });
      return c.json(outcome, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/scans/latest',
      operationId: 'listLatestScans',
      tags: ['scans'],
      summary: 'The newest scan of each server the caller may read, in server id order.',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(LatestScan), 'A page of servers with their newest scan.') },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const session = c.get('session');
      const page = await readableServersPage(fleet, session, {
        list: 'scans/latest',
        limit: query.limit,
        cursor: query.cursor,
      });
      return c.json({ items: await latestOf(session, page.items), next: page.next }, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/servers/{serverId}/scans/latest',
      operationId: 'getLatestScan',
      tags: ['scans'],
      request: { params: idParams('serverId') },
      responses: { 200: jsonResponse(LatestScan, 'The server and its newest scan.') },
    }),
    async (c) => {
      const { serverId } = c.req.valid('param');
      const session = c.get('session');
      const server = await session.servers.get(serverId);
      if (!server) throw new NotFoundError('server', serverId);
      const [row] = await latestOf(session, [server]);
      return c.json(row!, 200);
    },
  );
};
