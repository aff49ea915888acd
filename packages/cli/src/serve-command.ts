import { NotFoundError } from '@fleetward/core';
import { apiTokensAs, issueApiToken, serveFleetwardApi } from '@fleetward/http';
import { type Command, InvalidArgumentError } from 'commander';
import type { CommandDeps } from './deps.js';
import { renderTable } from './table.js';

function port(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError('must be a port from 0 to 65535');
  }
  return n;
}

function days(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of days');
  return n;
}

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** `fleetward serve` (the HTTP API) and `fleetward token create|list|revoke` (its API tokens). */
export function registerServeCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, err } = deps;

  program
    .command('serve')
    .description('Serve the HTTP API (OpenAPI document at /openapi.json) until SIGINT or SIGTERM.')
    .option('--port <port>', 'TCP port (0 picks a free one)', port, 8080)
    .option('--host <address>', 'interface to listen on', '127.0.0.1')
    .action(async (o: { port: number; host: string }) => {
      await withContext(async ({ fleet, signal }) => {
        const server = await serveFleetwardApi(fleet, { port: o.port, hostname: o.host });
        try {
          print(
            { url: server.url, host: o.host },
            { human: (s) => `Fleetward API listening on ${s.url}`, ids: (s) => [s.url] },
          );
          if (!LOOPBACK.has(o.host)) {
            err(`warning: listening on ${o.host}; put TLS in front of it before it leaves this machine\n`);
          }
          await aborted(signal);
          const why = signal.reason instanceof Error ? signal.reason.message : 'stopped';
          err(`${why}: stopping; background patch and script runs record where they stopped\n`);
        } finally {
          await server.close();
        }
      });
    });

  const token = program.command('token').description('API tokens of the HTTP API.');
  token
    .command('create')
    .description('Mint a token acting as the --as principal. It is printed once; only its hash is kept.')
    .option('-n, --name <name>', 'what the token is for', 'cli')
    .option('--expires-in <days>', 'days until the token stops working (default: never)', days)
    .action(async (o: { name: string; expiresIn?: number }) => {
      await withContext(async ({ fleet, session }) => {
        const expiresAt =
          o.expiresIn === undefined
            ? undefined
            : new Date(fleet.clock.now().getTime() + o.expiresIn * 86_400_000).toISOString();
        const issued = await issueApiToken(fleet, {
          tenantId: session.actor.tenantId,
          principalId: session.actor.principalId,
          name: o.name,
          ...(expiresAt ? { expiresAt } : {}),
        });
        print(issued, { human: (i) => i.token, ids: (i) => [i.apiToken.id] });
        err(
          `Token ${issued.apiToken.id} acts as ${issued.apiToken.principalId}. It is shown only this once.\n`,
        );
      });
    });
  token
    .command('list', { isDefault: true })
    .description('The tenant’s tokens, revoked and expired ones included (needs iam.read).')
    .action(async () => {
      await withContext(async ({ fleet, session }) => {
        print(await apiTokensAs(fleet, session.actor).list(), {
          human: (tokens) =>
            tokens.length === 0
              ? 'No API tokens. Create one with: fleetward token create --name <what-for>'
              : renderTable(
                  ['ID', 'NAME', 'PRINCIPAL', 'PREFIX', 'EXPIRES', 'LAST USED', 'REVOKED'],
                  tokens.map((t) => [
                    t.id,
                    t.name,
                    t.principalId,
                    `${t.prefix}…`,
                    t.expiresAt ?? 'never',
                    t.lastUsedAt ?? 'never',
                    t.revokedAt ?? '-',
                  ]),
                ),
        });
      });
    });
  token
    .command('revoke <id>')
    .description('Revoke a token for good (needs iam.write).')
    .action(async (id: string) => {
      await withContext(async ({ fleet, session }) => {
        if (!(await apiTokensAs(fleet, session.actor).revoke(id))) throw new NotFoundError('API token', id);
        print({ id, revoked: true }, { human: () => `Revoked token ${id}.` });
      });
    });
}
