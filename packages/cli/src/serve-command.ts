import { NotFoundError } from '@fleetward/core';
import { apiTokensAs, issueApiToken, serveFleetwardApi } from '@fleetward/http';
import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULT_TENANT } from './context.js';
import type { CommandDeps } from './patch-commands.js';
import { renderTable } from './table.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port from 0 to 65535');
  return n;
}

function days(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of days');
  return n;
}

/** Resolves on the first SIGINT or SIGTERM. */
function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/** `fleetward serve` (the HTTP API) and `fleetward token create|list|revoke` (its API tokens). */
export function registerServeCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out, err } = deps;

  program
    .command('serve')
    .description('Serve the HTTP API (OpenAPI document at /openapi.json) until SIGINT or SIGTERM.')
    .option('-p, --port <port>', 'TCP port (0 picks a free one)', port, 8080)
    .option('-H, --host <address>', 'interface to listen on', '127.0.0.1')
    .action(async (o: { port: number; host: string }) => {
      await withContext(async ({ fleet }) => {
        const stopped = shutdownSignal();
        const server = await serveFleetwardApi(fleet, { port: o.port, hostname: o.host });
        out(`Fleetward API listening on ${server.url}\n`);
        if (o.host !== '127.0.0.1' && o.host !== '::1' && o.host !== 'localhost') {
          err(`warning: listening on ${o.host}; put TLS in front of it before it leaves this machine\n`);
        }
        const signal = await stopped;
        err(`${signal}: stopping, background patch runs record where they stopped\n`);
        await server.close();
      });
    });

  const token = program.command('token').description('API tokens of the HTTP API, for the --as principal.');
  token
    .command('create')
    .description('Mint a token acting as the --as principal; it is printed once, only its hash is kept.')
    .option('-n, --name <name>', 'what the token is for', 'cli')
    .option('--expires-in <days>', 'days until the token stops working', days)
    .action(async (o: { name: string; expiresIn?: number }) => {
      await withContext(async ({ fleet, session }) => {
        const expiresAt =
          o.expiresIn === undefined
            ? undefined
            : new Date(fleet.clock.now().getTime() + o.expiresIn * 86_400_000).toISOString();
        const issued = await issueApiToken(fleet, {
          tenantId: DEFAULT_TENANT,
          principalId: session.actor.principalId,
          name: o.name,
          ...(expiresAt ? { expiresAt } : {}),
        });
        out(`${issued.token}\n`);
        err(
          `Token ${issued.apiToken.id} acts as ${issued.apiToken.principalId}. It is shown only this once.\n`,
        );
      });
    });
  token
    .command('list')
    .description('The tenant’s tokens (needs iam.read).')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        const tokens = await apiTokensAs(fleet, session.actor).list();
        if (o.json) {
          out(`${JSON.stringify(tokens, null, 2)}\n`);
          return;
        }
        out(
          `${renderTable(
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
          )}\n`,
        );
      });
    });
  token
    .command('revoke <id>')
    .description('Revoke a token for good (needs iam.write).')
    .action(async (id: string) => {
      await withContext(async ({ fleet, session }) => {
        if (!(await apiTokensAs(fleet, session.actor).revoke(id))) throw new NotFoundError('api token', id);
        out(`Revoked token ${id}.\n`);
      });
    });
}
