import type { AccountDiscovery, DiscoveryOutcome } from '@fleetward/core';
import type { Command } from 'commander';
import { type CommandDeps, collectList, EXIT } from './deps.js';
import type { Colors } from './output.js';
import { renderTable } from './table.js';

const STATUS_COLOUR = {
  succeeded: 'green',
  partial: 'yellow',
  failed: 'red',
  skipped: 'dim',
} as const satisfies Record<AccountDiscovery['status'], keyof Colors>;

/** The table of a discovery, then one line per failure: the account's error and each failed region. */
export function renderDiscovery(outcome: DiscoveryOutcome, c: Colors): string {
  if (outcome.accounts.length === 0) {
    return 'No accounts to discover. Add one with: fleetward accounts add <id> --provider aws --role-arn <arn>';
  }
  const lines = [
    renderTable(
      ['ACCOUNT', 'STATUS', 'ADDED', 'CHANGED', 'GONE', 'UNCHANGED', 'UNVERIFIED'],
      outcome.accounts.map((a) => [
        a.accountId,
        c[STATUS_COLOUR[a.status]](a.status),
        String(a.added.length),
        String(a.changed.length),
        String(a.gone.length),
        String(a.unchanged.length),
        String(a.unverified.length),
      ]),
    ),
  ];
  for (const a of outcome.accounts) {
    if (a.error && a.status === 'failed') {
      lines.push(`  ${c.red('failed')} ${a.accountId}: ${a.error.code} ${a.error.message}`);
    } else if (a.error) lines.push(`  ${c.dim('skipped')} ${a.accountId}: ${a.error.message}`);
    for (const r of a.regionFailures) {
      lines.push(
        `  ${c.yellow('region failed')} ${a.accountId} ${r.region}: ${r.error.code} ${r.error.message}`,
      );
    }
    for (const r of a.rejected) {
      lines.push(`  ${c.yellow('rejected')} ${a.accountId} ${r.providerId ?? '(no id)'}: ${r.error.message}`);
    }
  }
  return lines.join('\n');
}

/**
 * The exit code of a discovery: `ok` when no account failed or lost a region (skipped accounts,
 * whose provider lists nothing, are not failures), `failure` when every account that was tried
 * failed, `partial` otherwise.
 */
export function discoveryExit(outcome: DiscoveryOutcome): number {
  const tried = outcome.accounts.filter((a) => a.status !== 'skipped');
  const failed = tried.filter((a) => a.status === 'failed');
  if (failed.length === 0 && tried.every((a) => a.status === 'succeeded')) return EXIT.ok;
  return failed.length === tried.length ? EXIT.failure : EXIT.partial;
}

/** `discover`: the servers of cloud accounts, into the inventory (issue 14). */
export function registerDiscoverCommand(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, colors: c, setExit } = deps;
  program
    .command('discover')
    .description(
      'List the servers of cloud accounts (AWS: EC2 instances with their SSM agent) and bring the inventory in step: added, changed, gone.',
    )
    .option(
      '-a, --account <ids>',
      'only these accounts (repeatable, or comma-separated; default: every account)',
      collectList,
    )
    .action(async (o: { account?: string[] }) => {
      await withContext(async ({ fleet, session, signal }) => {
        progress.line(
          o.account?.length ? `Discovering ${o.account.join(', ')}…` : 'Discovering every account…',
        );
        fleet.events.on('inventory.discovered', (e) => {
          const what =
            e.status === 'failed' || e.status === 'skipped'
              ? `${e.error?.code ?? ''} ${e.error?.message ?? ''}`
              : `${e.added} added, ${e.changed} changed, ${e.gone} gone, ${e.unchanged} unchanged`;
          progress.line(`${c[STATUS_COLOUR[e.status]](e.status.padEnd(9))} ${e.accountId}: ${what}`);
        });
        const outcome = await session.inventory.discover({
          ...(o.account?.length ? { accountIds: o.account } : {}),
          signal,
        });
        print(outcome, {
          human: (r) => renderDiscovery(r, c),
          ids: (r) => r.accounts.flatMap((a) => [...a.added, ...a.changed, ...a.unchanged]),
        });
        setExit(discoveryExit(outcome));
      });
    });
}
