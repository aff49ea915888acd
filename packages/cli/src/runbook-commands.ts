import { readFile } from 'node:fs/promises';
import {
  type DefineRunbookInput,
  type Fleet,
  isReservedKey,
  type Runbook,
  type RunbookRun,
  ValidationError,
  versionOptions,
} from '@fleetward/core';
import { type Command, InvalidArgumentError } from 'commander';
import type { CommandDeps } from './patch-commands.js';
import { renderTable } from './table.js';
import {
  currentVersionLine,
  formatVersions,
  runHeading,
  type VersionColumns,
  versionOption,
} from './versioned.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function pair(what: string) {
  return (value: string, previous: Record<string, string> = {}) => {
    const eq = value.indexOf('=');
    if (eq < 1) throw new InvalidArgumentError(`${what} are NAME=value`);
    if (isReservedKey(value.slice(0, eq)))
      throw new InvalidArgumentError(`${JSON.stringify(value.slice(0, eq))} is a reserved name`);
    return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
  };
}

/** What `runbook list` shows of a runbook after its name, revision and hash. */
const RUNBOOK_COLUMNS: VersionColumns<Runbook> = {
  STEPS: (r) => r.steps.map((s) => `${s.id}:${s.kind}`).join(' '),
};

function runSummary(run: RunbookRun): string {
  const rows = run.steps.map((s, i) => [
    `${i === run.currentStep && !['succeeded', 'failed', 'cancelled'].includes(run.status) ? '>' : ' '} ${s.stepId}`,
    s.kind,
    s.status,
    s.onFailureApplied ?? '',
    s.error ? `${s.error.code}: ${s.error.message}`.slice(0, 100) : '',
  ]);
  return [
    runHeading(run, run.runbookName),
    renderTable(['STEP', 'KIND', 'STATUS', 'ON FAILURE', 'ERROR'], rows),
  ].join('\n');
}

function progress(fleet: Fleet, err: (t: string) => void, c: CommandDeps['colors']) {
  fleet.events.on('runbook.step.started', (e) => err(`${c.bold(`Step ${e.stepId}`)} (${e.kind})\n`));
  fleet.events.on('runbook.step.waiting', (e) => err(`  waiting until ${e.until}\n`));
  fleet.events.on('runbook.step.completed', (e) =>
    err(
      `  ${e.status === 'succeeded' ? c.green('succeeded') : c.red('failed')}${e.error ? ` — ${e.error.message}` : ''}\n`,
    ),
  );
}

/** Paused runs are fine (exit 0): they wait for an approval or the end of a wait. */
function exitFor(run: RunbookRun): number {
  return run.status === 'failed' || run.status === 'cancelled' ? 1 : 0;
}

function pausedHint(run: RunbookRun): string {
  if (run.status === 'awaiting-approval') {
    return `Run ${run.id} awaits approval of step ${run.steps[run.currentStep]?.stepId}: fleetward --as <someone else> runbook approve ${run.id}\n`;
  }
  if (run.status === 'waiting') {
    return `Run ${run.id} waits until ${run.steps[run.currentStep]?.waitUntil}: fleetward runbook resume ${run.id}\n`;
  }
  return '';
}

/** `runbook define|list|start|approve|resume|cancel|show`: runbooks and their runs. */
export function registerRunbookCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out, err, colors: c } = deps;
  const runbook = program.command('runbook').description('Runbooks: ordered steps run and audited as one.');

  const show = (run: RunbookRun, json: boolean | undefined) => {
    out(json ? `${JSON.stringify(run, null, 2)}\n` : `${runSummary(run)}\n`);
    if (!json) err(pausedHint(run));
    deps.setExit(exitFor(run));
  };

  runbook
    .command('define <file>')
    .description('Add a version of a runbook from a JSON file: { name, description?, parameters?, steps }.')
    .action(async (file: string) => {
      let input: DefineRunbookInput;
      try {
        input = JSON.parse(await readFile(file, 'utf8')) as DefineRunbookInput;
      } catch (error) {
        throw new ValidationError('runbook file', [{ path: [], message: (error as Error).message }]);
      }
      await withContext(async ({ session }) => {
        const defined = await session.runbooks.define(input);
        out(currentVersionLine(defined));
      });
    });

  runbook
    .command('list')
    .description('List the current version of every runbook.')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      await withContext(async ({ session }) => {
        const runbooks = await session.runbooks.list();
        out(formatVersions(runbooks, { json: o.json, columns: RUNBOOK_COLUMNS }));
      });
    });

  runbook
    .command('start <name>')
    .description('Start a run of a runbook; it returns when the run ends or pauses.')
    .option('-s, --server <id>', 'on this server (repeatable)', collect)
    .option('--project <id>', 'on the servers of this project')
    .option('-l, --label <key=value>', 'on servers with this label (repeatable)', pair('labels'))
    .option('-p, --param <NAME=value>', 'parameter value (repeatable)', pair('parameters'))
    .addOption(versionOption())
    .option('--ticket <id>', 'change ticket, kept in the audit records')
    .option('--return-when-waiting', 'return at a wait step instead of waiting (resume later)')
    .option('--json', 'print the run as JSON')
    .action(async (name: string, o: Record<string, unknown>) => {
      const servers = o['server'] as string[] | undefined;
      const labels = o['label'] as Record<string, string> | undefined;
      const projectId = o['project'] as string | undefined;
      if ([servers, labels, projectId].filter(Boolean).length !== 1) {
        throw new InvalidArgumentError('choose servers with one of --server, --project or --label');
      }
      const version = versionOptions(o['version'] as string | undefined);
      await withContext(async ({ fleet, session }) => {
        if (!o['json']) progress(fleet, err, c);
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once('SIGINT', onSignal);
        try {
          const run = await session.runbooks.start(
            {
              runbook: name,
              ...version,
              targets: servers
                ? { serverIds: servers }
                : projectId
                  ? { projectId }
                  : { selector: { labels: labels! } },
              params: (o['param'] as Record<string, string> | undefined) ?? {},
              ...(o['ticket'] ? { ticket: o['ticket'] as string } : {}),
            },
            { signal: controller.signal, returnWhenWaiting: Boolean(o['returnWhenWaiting']) },
          );
          show(run, o['json'] as boolean | undefined);
        } finally {
          process.off('SIGINT', onSignal);
        }
      });
    });

  runbook
    .command('approve <runId>')
    .description('Approve the approval step a run waits on; with its last approval the run continues.')
    .option('--step <id>', 'the step you reviewed')
    .option('--comment <text>', 'why')
    .option('--no-continue', 'only record the approval; continue later with resume')
    .option('--json', 'print the run as JSON')
    .action(
      async (runId: string, o: { step?: string; comment?: string; continue: boolean; json?: boolean }) => {
        await withContext(async ({ fleet, session }) => {
          if (!o.json) progress(fleet, err, c);
          const run = await session.runbooks.approveStep(runId, {
            ...(o.step ? { stepId: o.step } : {}),
            ...(o.comment ? { comment: o.comment } : {}),
            continueRun: o.continue,
          });
          show(run, o.json);
        });
      },
    );

  runbook
    .command('resume <runId>')
    .description('Continue a run whose process died, that waited, or whose approval was recorded.')
    .option('--return-when-waiting', 'return at a wait step instead of waiting')
    .option('--json', 'print the run as JSON')
    .action(async (runId: string, o: { returnWhenWaiting?: boolean; json?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        if (!o.json) progress(fleet, err, c);
        show(
          await session.runbooks.resume(runId, { returnWhenWaiting: Boolean(o.returnWhenWaiting) }),
          o.json,
        );
      });
    });

  runbook
    .command('cancel <runId>')
    .description('Cancel a run.')
    .option('--reason <text>', 'why')
    .action(async (runId: string, o: { reason?: string }) => {
      await withContext(async ({ session }) => {
        const run = await session.runbooks.cancel(runId, o.reason ? { reason: o.reason } : {});
        out(
          run.status === 'cancelled'
            ? `Run ${runId} cancelled.\n`
            : `Run ${runId} is being cancelled by the process executing it.\n`,
        );
      });
    });

  runbook
    .command('show <runId>')
    .description('Show a run and the state of each step.')
    .option('--json', 'print the run as JSON')
    .action(async (runId: string, o: { json?: boolean }) => {
      await withContext(async ({ session }) => {
        const run = await session.runbooks.getRun(runId);
        out(o.json ? `${JSON.stringify(run, null, 2)}\n` : `${runSummary(run)}\n${pausedHint(run)}`);
      });
    });
}
