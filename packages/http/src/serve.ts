import type { AddressInfo } from 'node:net';
import type { Fleet } from '@fleetward/core';
import { serve } from '@hono/node-server';
import { z } from 'zod';
import { backgroundOf, createFleetwardApi, type FleetwardApi, type FleetwardApiOptions } from './api.js';

export const ServeOptionsSchema = z.strictObject({
  /** TCP port; 0 picks a free one (see `url`). @default 8080 */
  port: z.number().int().min(0).max(65535).default(8080),
  /** Interface to listen on. Loopback unless you mean to expose the API. @default '127.0.0.1' */
  hostname: z.string().min(1).default('127.0.0.1'),
});
/**
 * Where to listen, and the options of {@link createFleetwardApi}. `logger` (the Fleet's when not
 * given) also gets an info record once the server listens and once it has closed.
 */
export type ServeOptions = z.input<typeof ServeOptionsSchema> & Omit<FleetwardApiOptions, 'signal'>;

/** A running API server. */
export interface FleetwardServer {
  /** Where it listens, e.g. `http://127.0.0.1:8080`. */
  url: string;
  app: FleetwardApi;
  /**
   * Stops accepting connections, aborts background work (patch runs, script runs, key rotations) and
   * waits until it has recorded where it stopped (starting it again resumes it), then closes idle
   * connections. The Fleet stays open: it is the caller's.
   */
  close(): Promise<void>;
}

/** Serves {@link createFleetwardApi} over HTTP with Node's own server. Resolves once it listens. */
export async function serveFleetwardApi(fleet: Fleet, options: ServeOptions = {}): Promise<FleetwardServer> {
  const { port, hostname, ...apiOptions } = options;
  const listen = ServeOptionsSchema.parse({ port, hostname });
  const app = createFleetwardApi(fleet, apiOptions);
  const { server, address } = await new Promise<{
    server: ReturnType<typeof serve>;
    address: AddressInfo;
  }>((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: listen.port, hostname: listen.hostname }, (info) =>
      resolve({ server, address: info }),
    );
    server.once('error', reject);
  });
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  // createFleetwardApi checked the option.
  const log = (apiOptions.logger ? fleet.logger.to(apiOptions.logger) : fleet.logger).child({
    component: 'http',
  });
  log.info({ url }, 'Fleetward API listening');
  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    close: () => {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve, reject) =>
          server.close((error) => (error ? reject(error) : resolve())),
        );
        await backgroundOf(app).shutdown();
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        await stopped;
        log.info({ url }, 'Fleetward API closed');
      })();
      return closing;
    },
  };
}
