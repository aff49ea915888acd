import { readFile } from 'node:fs/promises';
import {
  type DefineRunbookInput,
  type Fleet,
  type Runbook,
  type RunbookRun,
  type RunbookRunStatus,
  RunbookRunStatusSchema,
  ValidationError,
  versionOptions,
} from '@fleetward/core';
import { type Command, Option } from 'commander';
import { addTargetOptions, type CommandDeps, EXIT, type TargetOptions, targetsFrom } from './deps.js';
import type { Colors } from './output.js';
import type { Progress } from './progress.js';
import { renderTable } from './table.js';
import {
  currentVersionLine,
  parameterValue,
  runHeading,
  type VersionColumns,
  versionOption,
  versionsTable,
} from './versioned.js';

/** What `runbook list` shows of a runbook after its name, revision and hash. */
const RUNBOOK_COLUMNS: VersionColumns<Runbook> = {
  STEPS: (r) => r.steps.map((s) => `${s.id}:${s.kind}`).join(' '),
};

const ENDED: readonly RunbookRunStatus[] = ['succeeded', 'failed', 'cancelled'];

function runSummary(run: RunbookRun): string {
  const rows = run.steps.map((s, i) => [
    `${i === run.currentStep && !ENDED.includes(run.status) ? '>' : ' '} ${s.stepId}`,
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

/**
 * Progress lines of runbook runs: each step as it starts and ends, approvals, and a wait step's
 * time left until it is over. Returns a function that stops a wait still shown.
 */
function showProgress(fleet: Fleet, progress: Progress, c: Colors): () => void {
  let stopWaiting: (() => void) | undefined;
  const waited = () => {
    stopWaiting?.();
    stopWaiting = undefined;
  };
  fleet.events.on('runbook.run.started', (e) =>
    progress.line(`${e.resumed ? 'Resuming' : 'Starting'} run ${e.runId} of ${e.runbook}…`),
  );
  fleet.events.on('runbook.step.started', (e) =>
    progress.line(
      `${c.bold(`Step ${e.stepId}`)} (${e.kind})${e.attempt > 1 ? `, attempt ${e.attempt}` : ''}`,
    ),
  );
  fleet.events.on('runbook.step.waiting', (e) => {
    waited();
    stopWaiting = progress.waitingUntil(`  step ${e.stepId} waits`, new Date(e.until), () =>
      fleet.clock.now(),
    );
  });
  fleet.events.on('runbook.step.approved', (e) =>
    progress.line(`  approved by ${e.principalId} (${e.approvals} of ${e.required})`),
  );
  fleet.events.on('runbook.step.completed', (e) => {
    if (stopWaiting) {
      waited();
      if (e.kind === 'wait' && e.status === 'succeeded')
        progress.line(`  the wait of step ${e.stepId} is over`);
    }
    progress.line(
      `  ${e.status === 'succeeded' ? c.green('succeeded') : c.red('failed')}${e.error ? `: ${e.error.message}` : ''}`,
    );
  });
  fleet.events.on('runbook.run.paused', () => waited());
  fleet.events.on('runbook.run.completed', (e) => {
    waited();
    progress.line(`Run ${e.runId} ${e.status}${e.reason ? `: ${e.reason}` : ''}`);
  });
  return waited;
}

/** Paused runs are fine (exit 0): they wait for an approval or the end of a wait. */
function exitFor(run: RunbookRun): number {
  return run.status === 'failed' || run.status === 'cancelled' ? EXIT.failure : EXIT.ok;
}

/** What to do next with a paused run, for people. */
function pausedHint(run: RunbookRun): string {
  if (run.status === 'awaiting-approval') {
    return `Run ${run.id} awaits approval of step ${run.steps[run.currentStep]?.stepId}: fleetward --as <someone else> runbook approve ${run.id}\n`;
  }
  if (run.status === 'waiting') {
    return `Run ${run.id} waits until ${run.steps[run.currentStep]?.waitUntil}: fleetward runbook resume ${run.id}\n`;
  }
  return '';
}

interface StartFlags extends TargetOptions {
  param?: Record<string, string>;
  version?: string;
  ticket?: string;
  returnWhenWaiting?: boolean;
}

/** `runbooks` (`runbook`): define, list, start, approve, resume, cancel, show and list runs. */
export function registerRunbookCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, err, colors: c, setExit, signal } = deps;
  const runbook = program
    .command('runbooks')
    .alias('runbook')
    .description('Runbooks: ordered steps run and audited as one.');

  /** Prints a run that ended or paused, says what to do next, and sets the exit code. */
  const finish = (run: RunbookRun) => {
    print(run, { human: runSummary });
    const hint = pausedHint(run);
    if (hint) err(hint);
    setExit(exitFor(run));
  };

  /** Runs `fn` with progress lines, stopping a wait still shown however it ends. */
  const withProgress = async (fleet: Fleet, fn: () => Promise<RunbookRun>) => {
    const stop = showProgress(fleet, progress, c);
    try {
      finish(await fn());
    } finally {
      stop();
    }
  };

  runbook
    .command('list', { isDefault: true })
    .description('List the current version of every runbook.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.runbooks.list(), {
          human: (rows) =>
            rows.length
              ? versionsTable(rows, RUNBOOK_COLUMNS)
              : 'No runbooks. Define one with: fleetward runbook define <file.json>',
          ids: (rows) => rows.map((r) => r.name),
        });
      });
    });

  runbook
    .command('define <file>')
    .description('Add a version of a runbook from a JSON file: { name, description?, parameters?, steps }.')
    .action(async (file: string) => {
      const text = await readFile(file, 'utf8');
      let input: DefineRunbookInput;
      try {
        input = JSON.parse(text) as DefineRunbookInput;
      } catch (error) {
        throw new ValidationError(`runbook file ${file}`, [
          { path: [], message: `is not JSON: ${(error as Error).message}` },
        ]);
      }
      await withContext(async ({ session }) => {
        print(await session.runbooks.define(input), { human: currentVersionLine, ids: (r) => [r.name] });
      });
    });

  addTargetOptions(
    runbook
      .command('start <name>')
      .description('Start a run of a runbook; it returns when the run ends or pauses.'),
    { allowAll: true, what: 'run on' },
  )
    .option('-p, --param <NAME=value>', 'parameter value (repeatable)', parameterValue)
    .addOption(versionOption())
    .option('--ticket <id>', 'change ticket, kept in the audit records')
    .option('--return-when-waiting', 'return at a wait step instead of waiting (resume later)')
    .action(async (name: string, o: StartFlags) => {
      const targets = targetsFrom(o);
      const version = versionOptions(o.version);
      await withContext(async ({ fleet, session }) => {
        await withProgress(fleet, () =>
          session.runbooks.start(
            {
              runbook: name,
              ...version,
              targets,
              params: o.param ?? {},
              ...(o.ticket ? { ticket: o.ticket } : {}),
            },
            { signal, returnWhenWaiting: Boolean(o.returnWhenWaiting) },
          ),
        );
      });
    });

  runbook
    .command('approve <runId>')
    .description('Approve the approval step a run waits on; with its last approval the run continues.')
    .option('--step <id>', 'the step you reviewed')
    .option('--comment <text>', 'why')
    .option('--no-continue', 'only record the approval; continue later with resume')
    .action(async (runId: string, o: { step?: string; comment?: string; continue: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        await withProgress(fleet, () =>
          session.runbooks.approveStep(
            runId,
            {
              ...(o.step ? { stepId: o.step } : {}),
              ...(o.comment ? { comment: o.comment } : {}),
              continueRun: o.continue,
            },
            { signal },
          ),
        );
      });
    });

  runbook
    .command('resume <runId>')
    .description('Continue a run whose process died, that waited, or whose approval was recorded.')
    .option('--return-when-waiting', 'return at a wait step instead of waiting')
    .action(async (runId: string, o: { returnWhenWaiting?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        await withProgress(fleet, () =>
          session.runbooks.resume(runId, { signal, returnWhenWaiting: Boolean(o.returnWhenWaiting) }),
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
        print(run, {
          human: (r) =>
            r.status === 'cancelled'
              ? `Run ${r.id} cancelled.`
              : `Run ${r.id} is being cancelled by the process executing it.`,
        });
      });
    });

  runbook
    .command('show <runId>')
    .description('A run and the state of each step.')
    .action(async (runId: string) => {
      await withContext(async ({ session }) => {
        print(await session.runbooks.getRun(runId), { human: (r) => `${runSummary(r)}\n${pausedHint(r)}` });
      });
    });

  runbook
    .command('runs')
    .description('Runs of runbooks, newest first.')
    .option('--runbook <name>', 'only runs of this runbook')
    .addOption(
      new Option('--status <status>', 'only runs in this state').choices(RunbookRunStatusSchema.options),
    )
    .action(async (o: { runbook?: string; status?: RunbookRunStatus }) => {
      await withContext(async ({ session }) => {
        const runs = await session.runbooks.listRuns({
          ...(o.runbook ? { runbook: o.runbook } : {}),
          ...(o.status ? { status: o.status } : {}),
        });
        print(runs, {
          human: (rows: RunbookRun[]) =>
            rows.length === 0
              ? 'No runbook runs. Start one with: fleetward runbook start <name> --server <id>'
              : renderTable(
                  ['ID', 'RUNBOOK', 'REV', 'STATUS', 'STEP', 'SERVERS', 'BY', 'STARTED'],
                  rows.map((r) => [
                    r.id,
                    r.runbookName,
                    String(r.revision),
                    r.status,
                    r.steps[r.currentStep]?.stepId ?? '-',
                    String(r.serverIds.length),
                    r.startedBy,
                    r.startedAt ?? '-',
                  ]),
                ),
        });
      });
    });
}
