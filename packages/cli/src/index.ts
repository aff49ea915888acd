import { FleetwardError } from '@fleetward/core';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createColors } from 'picocolors';
import { registerAccessCommands } from './access-commands.js';
import { registerComplianceCommands } from './compliance-commands.js';
import { openContext } from './context.js';
import { registerPatchCommands } from './patch-commands.js';
import { buildReport, type Report } from './report.js';
import { registerRunbookCommands } from './runbook-commands.js';
import { registerScriptCommands } from './script-commands.js';
import { registerServeCommands } from './serve-command.js';
import { renderTable } from './table.js';

/** Exit codes of `fleetward`. */
export const EXIT = {
  ok: 0,
  /** The command failed (store, transport, authorization…). */
  failure: 1,
  /** The command line was wrong. */
  usage: 2,
  /** It ran, but some servers failed (a scan that could not reach every host). */
  partial: 3,
} as const;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal (progress lines are shown then). */
  isTTY: boolean;
}

const defaultIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  isTTY: Boolean(process.stderr.isTTY),
};

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/**
 * Runs the `fleetward` command line with `argv` (without `node` and the script) and resolves the
 * exit code. Never calls `process.exit`, so it can be embedded and tested in-process.
 */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const useColor = () =>
    !('NO_COLOR' in io.env && io.env['NO_COLOR'] !== '') && !argv.includes('--no-color') && io.isTTY;
  const c = createColors(useColor());
  const program = new Command('fleetward')
    .description(
      'Unified server management: patches, just-in-time access and keys, scripts and runbooks, audit.',
    )
    .addOption(
      new Option('-d, --data-dir <dir>', 'where the embedded SQLite store lives')
        .env('FLEETWARD_HOME')
        .default('.fleetward'),
    )
    .addOption(
      new Option('--as <principal>', 'act as this principal of the default tenant')
        .env('FLEETWARD_PRINCIPAL')
        .default('local-admin'),
    )
    .option('--no-color', 'plain output (NO_COLOR is honoured too)')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (s, write) => write(c.red(s)),
    });

  const withContext = async <T>(
    fn: (ctx: Awaited<ReturnType<typeof openContext>>) => Promise<T>,
  ): Promise<T> => {
    const { dataDir, as } = program.opts<{ dataDir: string; as: string }>();
    const ctx = await openContext(dataDir, as);
    try {
      return await fn(ctx);
    } finally {
      await ctx.fleet.close();
    }
  };

  program
    .command('scan')
    .description('Scan servers for pending patches (default: this machine) and store the results.')
    .option('-s, --server <id...>', 'servers to scan, by id')
    .option('-a, --all', 'scan every server in the inventory')
    .option('-c, --concurrency <n>', 'servers scanned at once', positiveInt, 32)
    .option('--json', 'print the outcome as JSON')
    .action(async (opts: { server?: string[]; all?: boolean; concurrency: number; json?: boolean }) => {
      if (opts.server && opts.all) throw new InvalidArgumentError('use either --server or --all');
      await withContext(async ({ fleet, session }) => {
        const targets = opts.all ? { selector: { all: true } } : { serverIds: opts.server ?? ['localhost'] };
        let done = 0;
        let total = 0;
        fleet.events.on('scan.started', (e) => {
          total = e.total;
          if (!opts.json) io.stderr(`Scanning ${e.total} server${e.total === 1 ? '' : 's'}…\n`);
        });
        fleet.events.on('scan.server.completed', (e) => {
          done++;
          const security = e.result.patches.filter((p) => p.category === 'security').length;
          if (!opts.json) {
            io.stderr(
              `[${done}/${total}] ${c.green('ok')}     ${e.serverId}: ${e.result.patches.length} pending, ${security} security${e.result.rebootRequired ? ', reboot required' : ''}\n`,
            );
          }
        });
        fleet.events.on('scan.server.failed', (e) => {
          done++;
          if (!opts.json)
            io.stderr(
              `[${done}/${total}] ${c.red('failed')} ${e.serverId}: ${e.error.code} ${e.error.message}\n`,
            );
        });
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once('SIGINT', onSignal);
        try {
          const outcome = await session.scan(targets, {
            concurrency: opts.concurrency,
            signal: controller.signal,
          });
          const summary = outcome.job.summary!;
          if (opts.json)
            io.stdout(`${JSON.stringify({ job: outcome.job, results: outcome.results }, null, 2)}\n`);
          else {
            io.stdout(
              `Scan ${outcome.job.status}: ${summary.succeeded} of ${summary.total} servers scanned. Run "fleetward report" to see pending patches.\n`,
            );
          }
          exitCode = summary.failed === 0 ? EXIT.ok : summary.succeeded === 0 ? EXIT.failure : EXIT.partial;
        } finally {
          process.off('SIGINT', onSignal);
        }
      });
    });

  const deps = {
    withContext,
    out: io.stdout,
    err: io.stderr,
    colors: c,
    setExit: (code: number) => {
      exitCode = code;
    },
  };
  registerPatchCommands(program, deps);
  registerAccessCommands(program, deps);
  registerComplianceCommands(program, deps);
  registerServeCommands(program, deps);
  registerScriptCommands(program, deps);
  registerRunbookCommands(program, deps);

  program
    .command('servers')
    .description('List the servers in the inventory with their last scan.')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        const report = buildReport(await session.latestScans(), fleet.clock.now());
        if (opts.json) {
          io.stdout(`${JSON.stringify(report.servers, null, 2)}\n`);
          return;
        }
        io.stdout(
          `${renderTable(
            ['ID', 'NAME', 'OS', 'LAST SCAN', 'STATUS'],
            report.servers.map((s) => [s.id, s.name, s.os ?? '-', s.scannedAt ?? 'never', s.status]),
          )}\n`,
        );
      });
    });

  program
    .command('report')
    .description('Pending patches and a per-server summary, from the latest scans.')
    .option('-s, --server <id...>', 'only these servers')
    .option('--security', 'only security patches')
    .option('--json', 'print as JSON (for machines)')
    .action(async (opts: { server?: string[]; security?: boolean; json?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        const rows = await session.latestScans(opts.server ? { serverIds: opts.server } : undefined);
        const report = buildReport(rows, fleet.clock.now());
        if (opts.security) report.patches = report.patches.filter((p) => p.category === 'security');
        if (opts.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
        else io.stdout(renderReport(report, c));
        if (report.servers.some((s) => s.status === 'failed')) exitCode = EXIT.partial;
      });
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      ) {
        return EXIT.ok;
      }
      return EXIT.usage;
    }
    if (error instanceof InvalidArgumentError) {
      io.stderr(`${c.red('error:')} ${error.message}\n`);
      return EXIT.usage;
    }
    const message = error instanceof FleetwardError ? `${error.code}: ${error.message}` : String(error);
    io.stderr(`${c.red('error:')} ${message}\n`);
    return EXIT.failure;
  }
}

function renderReport(report: Report, c: ReturnType<typeof createColors>): string {
  const out: string[] = [];
  out.push(c.bold('Servers'));
  out.push(
    renderTable(
      ['ID', 'OS', 'LAST SCAN', 'STATUS', 'PENDING', 'SECURITY', 'REBOOT'],
      report.servers.map((s) => [
        s.id,
        s.os ?? '-',
        s.scannedAt ?? 'never',
        s.status === 'failed' ? `failed: ${s.error?.code ?? ''}` : s.status,
        String(s.pending),
        String(s.security),
        s.rebootRequired ? 'yes' : 'no',
      ]),
    ),
  );
  out.push('');
  if (report.patches.length === 0) {
    out.push('No pending patches.');
  } else {
    out.push(c.bold(`Pending patches (${report.patches.length})`));
    out.push(
      renderTable(
        ['SERVER', 'PACKAGE', 'INSTALLED', 'CANDIDATE', 'CATEGORY', 'SEVERITY', 'NOTE'],
        report.patches.map((p) => [
          p.serverId,
          p.name,
          p.installedVersion ?? '(new)',
          p.candidateVersion,
          p.category === 'security' ? c.red(p.category) : p.category,
          p.severity,
          [p.held ? 'held' : '', p.keptBack && !p.held ? 'kept back' : ''].filter(Boolean).join(', '),
        ]),
      ),
    );
  }
  return `${out.join('\n')}\n`;
}

export { buildReport, type PatchRow, type Report, type ServerSummary } from './report.js';
