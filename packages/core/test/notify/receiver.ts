import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, WebhookVerificationError } from '@fleetward/core';

/** One request the receiver got. */
export interface ReceivedWebhook {
  id: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
  /** Whether `verifyWebhook` accepted it, or why not. */
  verified: true | string;
}

export interface ReceiverOptions {
  /** The secrets the receiver trusts; read on every request so a test can change them. */
  secrets: () => string[];
  /** The receiver's clock, for the timestamp tolerance. */
  now?: () => Date;
  /** The status to answer, given the request (after verification). @default 200 */
  respond?: (request: ReceivedWebhook, index: number) => number;
  /** Listen on this port (to come up where a dead receiver was). @default a free port */
  port?: number;
}

/**
 * A webhook receiver on 127.0.0.1 that verifies every request with `verifyWebhook`, as a real
 * receiver would, and records it. A request that fails verification is answered 401.
 */
export class Receiver {
  readonly received: ReceivedWebhook[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(options: ReceiverOptions): Promise<Receiver> {
    let receiver!: Receiver;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let verified: true | string = true;
        try {
          verifyWebhook({
            secret: options.secrets(),
            headers: req.headers,
            body,
            ...(options.now ? { now: options.now() } : {}),
          });
        } catch (error) {
          verified = error instanceof WebhookVerificationError ? error.reason : String(error);
        }
        const id = req.headers['webhook-id'];
        const record: ReceivedWebhook = {
          id: typeof id === 'string' ? id : undefined,
          headers: req.headers,
          body,
          verified,
        };
        receiver.received.push(record);
        const status =
          verified === true ? (options.respond?.(record, receiver.received.length - 1) ?? 200) : 401;
        res.writeHead(status).end();
      });
    });
    receiver = new Receiver(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hooks`;
  }

  /** How many requests carried each webhook-id. */
  countsById(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const r of this.received) if (r.id) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    return counts;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A loopback port nothing listens on (for a receiver that is down). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
