import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from '@fleetward/worker';
import { type Command, InvalidArgumentError } from 'commander';
import { QUEUE_SCHEMA_PATTERN } from './config.js';
import type { CommandDeps } from './deps.js';

const MAX_CONCURRENCY = 1024;

function concurrency(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CONCURRENCY) {
    throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_CONCURRENCY}`);
  }
  return n;
}

function queueSchema(value: string): string {
  if (!QUEUE_SCHEMA_PATTERN.test(value)) {
    throw new InvalidArgumentError('must be a lower-case SQL name of at most 41 characters');
  }
  return value;
}

function port(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError('must be a port from 0 to 65535');
  }
  return n;
}

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });

/** The metrics endpoint: `GET /metrics` (Prometheus text), `GET /healthz` (JSON); anything else is 404. */
interface MetricsEndpoint {
  url: string;
  close(): Promise<void>;
}

async function serveMetrics(worker: Worker, host: string, listenOn: number): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://worker').pathname;
    if (req.method === 'GET' && path === '/metrics') {
      worker.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': worker.metricsContentType });
          res.end(text);
        },
        (error: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`metrics unavailable: ${error instanceof Error ? error.message : String(error)}\n`);
        },
      );
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      const health = worker.health();
      res.writeHead(health.status === 'running' ? 200 : 503, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(health)}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: GET /metrics or /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenOn, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port: bound } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface WorkerFlags {
  concurrency: number;
  queueSchema?: string;
  metricsPort?: number;
  metricsHost: string;
}

function maxInFlight(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 1 || n > 1_000_000) {
    throw new InvalidArgumentError('must be a whole number from 1 to 1000000');
  }
  return n;
}

interface LimitFlags {
  account?: string;
  max?: number;
  remove?: boolean;
  queueSchema?: string;
}

/**
 * `fleetward queue limits` and `fleetward queue limit <tenant>`: the caps on servers in flight over
 * all runs on the worker queue (a tenant's, an account's, `*` defaults), kept in PostgreSQL.
 */
function registerQueueCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const queueOptions = (schema?: string) => ({
    queue: { supervise: false, purpose: 'fleetward queue', ...(schema ? { schema } : {}) },
    anyTenant: true,
  });
  const queue = program
    .command('queue')
    .description('Caps of the worker queue on servers in flight over all runs (PostgreSQL store).');
  queue
    .command('limits')
    .description('List the caps set: per tenant, per account, and the "*" defaults.')
    .option('--queue-schema <name>', 'schema of the queue', queueSchema)
    .action(async (o: LimitFlags) => {
      await withContext(async ({ queue: q }) => {
        if (!q) throw new Error('no queue');
        const limits = await q.limits();
        print(limits, {
          human: (list) =>
            list.length === 0
              ? 'No caps: each run is limited by its own maxConcurrency only.'
              : list
                  .map(
                    (l) =>
                      `${l.tenantId === '*' ? 'every tenant' : `tenant ${l.tenantId}`}${l.accountId === undefined ? '' : l.accountId === '*' ? ', each account' : `, account ${l.accountId}`}: at most ${l.maxInFlight} servers in flight`,
                  )
                  .join('\n'),
          ids: (list) => list.map((l) => `${l.tenantId}/${l.accountId ?? ''}`),
        });
      }, queueOptions(o.queueSchema));
    });
  queue
    .command('limit <tenant>')
    .description(
      'Set (--max) or remove (--remove) the cap of a tenant ("*": every tenant without its own), or with --account of one account ("*": each account).',
    )
    .option('--account <id>', 'the account (Server.accountId) the cap is on, or "*"')
    .option('--max <n>', 'servers in flight at most, over all runs', maxInFlight)
    .option('--remove', 'remove the cap')
    .option('--queue-schema <name>', 'schema of the queue', queueSchema)
    .action(async (tenant: string, o: LimitFlags) => {
      if ((o.max === undefined) === (o.remove !== true)) {
        throw new InvalidArgumentError('give either --max <n> or --remove');
      }
      await withContext(async ({ queue: q }) => {
        if (!q) throw new Error('no queue');
        await q.setLimit({
          tenantId: tenant,
          ...(o.account !== undefined ? { accountId: o.account } : {}),
          maxInFlight: o.remove ? null : o.max!,
        });
        const set = { tenantId: tenant, accountId: o.account ?? null, maxInFlight: o.remove ? null : o.max! };
        print(set, {
          human: (l) =>
            `${l.maxInFlight === null ? 'Removed the cap of' : `At most ${l.maxInFlight} servers in flight for`} ${l.tenantId === '*' ? 'every tenant' : `tenant ${l.tenantId}`}${l.accountId === null ? '' : l.accountId === '*' ? ', each account' : `, account ${l.accountId}`}`,
          ids: (l) => [`${l.tenantId}/${l.accountId ?? ''}`],
        });
      }, queueOptions(o.queueSchema));
    });
}

/** `fleetward worker`: carries out the per-server tasks of script runs, scans and patch runs from the PostgreSQL queue. */
export function registerWorkerCommand(program: Command, deps: CommandDeps): void {
  const { withContext, print, signal } = deps;
  registerQueueCommands(program, deps);

  program
    .command('worker')
    .description(
      'Carry out the servers of script runs, scans and patch runs started anywhere with "workers" enabled, from the queue in the PostgreSQL store, until SIGINT or SIGTERM.',
    )
    .option('-c, --concurrency <n>', 'servers this worker runs at once', concurrency, 16)
    .option(
      '--queue-schema <name>',
      'schema of the queue (default: "workers.schema" of the configuration, else fleetward_worker)',
      queueSchema,
    )
    .option('--metrics-port <port>', 'serve GET /metrics (Prometheus) and GET /healthz on this port', port)
    .option('--metrics-host <address>', 'interface the metrics port listens on', '127.0.0.1')
    .action(async (o: WorkerFlags) => {
      await withContext(
        async ({ fleet, queue }) => {
          // openContext opened the queue, or refused a SQLite store: a worker always has one.
          if (!queue) throw new Error('the worker has no queue');
          const { createWorker } = await import('@fleetward/worker');
          const worker = await createWorker({
            fleet,
            queue,
            concurrency: o.concurrency,
            handleSignals: true,
          });
          let metrics: MetricsEndpoint | undefined;
          try {
            if (o.metricsPort !== undefined)
              metrics = await serveMetrics(worker, o.metricsHost, o.metricsPort);
            print(
              {
                workerId: worker.id,
                concurrency: o.concurrency,
                queue: queue.name,
                schema: queue.schema,
                ...(metrics ? { metrics: `${metrics.url}/metrics`, health: `${metrics.url}/healthz` } : {}),
              },
              {
                human: (w) =>
                  `Worker ${w.workerId} started: concurrency ${w.concurrency}, queue ${w.queue}${w.metrics ? `, metrics at ${w.metrics}` : ''}`,
                ids: (w) => [w.workerId],
              },
            );
            // On SIGINT/SIGTERM the worker stops by itself and then exits the process (handleSignals).
            await aborted(signal);
          } finally {
            await worker.stop();
            await metrics?.close();
          }
        },
        {
          queue: {
            supervise: true,
            purpose: 'fleetward worker',
            ...(o.queueSchema ? { schema: o.queueSchema } : {}),
          },
          anyTenant: true,
        },
      );
    });
}
