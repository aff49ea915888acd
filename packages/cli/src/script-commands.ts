import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import {
  type AddScriptInput,
  type ExecuteRunOptions,
  type Fleet,
  NotFoundError,
  type OutputSummary,
  type Script,
  type ScriptParameter,
  type ScriptRun,
  type ScriptRunResults,
  type ScriptRunStatus,
  ScriptRunStatusSchema,
  type ServerRunResult,
  scriptEvents,
  versionOptions,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  addTargetOptions,
  budget,
  type CommandDeps,
  collect,
  csv,
  EXIT,
  positiveInt,
  type TargetOptions,
  targetsFrom,
} from './deps.js';
import type { Colors } from './output.js';
import type { Progress } from './progress.js';
import { renderTable } from './table.js';
import {
  currentVersionLine,
  parameterValue,
  revisionLabel,
  runHeading,
  terminalSafe,
  type VersionColumns,
  versionOption,
  versionsTable,
} from './versioned.js';

const PARAM = /^([A-Z_][A-Z0-9_]*)(?::(string|integer|number|boolean))?(!)?(?:=(.*))?$/s;

/** `NAME[:type][!][=default]`: `!` makes it required. */
function parameter(secret: boolean) {
  return (value: string, previous: ScriptParameter[] = []): ScriptParameter[] => {
    const m = PARAM.exec(value);
    if (!m)
      throw new InvalidArgumentError('a parameter is NAME[:string|integer|number|boolean][!][=default]');
    if (secret && m[4] !== undefined) throw new InvalidArgumentError('a secret parameter has no default');
    return [
      ...previous,
      {
        name: m[1]!,
        type: (m[2] ?? 'string') as ScriptParameter['type'],
        required: m[3] === '!',
        secret,
        ...(m[4] !== undefined ? { default: m[4] } : {}),
      },
    ];
  };
}

const INTERPRETERS: Record<string, AddScriptInput['interpreter']> = {
  '.sh': 'sh',
  '.bash': 'bash',
  '.py': 'python',
  '.ps1': 'powershell',
};

/** What `script list` shows of a script after its name, revision and hash. */
const SCRIPT_COLUMNS: VersionColumns<Script> = {
  INTERPRETER: (s) => s.interpreter,
  PARAMETERS: (s) =>
    s.parameters.map((p) => `${p.name}${p.required ? '!' : ''}${p.secret ? ' (secret)' : ''}`).join(',') ||
    '-',
  TAGS: (s) => s.tags.join(',') || '-',
  RISKY: (s) => (s.risky ? 'yes' : 'no'),
};

const outputCell = (o: OutputSummary | undefined) => (o ? `${o.bytes}${o.truncated ? ' (cut)' : ''}` : '-');

/** A run's result as a table of servers, and where to read their output. */
function runSummary(results: ScriptRunResults): string {
  const { run } = results;
  const rows = results.servers.map((s) => [
    s.serverId,
    s.wave,
    s.state,
    s.exitCode === undefined ? '-' : String(s.exitCode),
    outputCell(s.stdout),
    s.error ? `${s.error.code}: ${s.error.message}`.slice(0, 100) : '',
  ]);
  return [
    runHeading(run, run.scriptName),
    renderTable(['SERVER', 'WAVE', 'STATE', 'EXIT', 'STDOUT BYTES', 'ERROR'], rows),
    `Output of each server: fleetward runs show ${run.id}`,
  ].join('\n');
}

/** One stream of a server as `runs show` prints it: a heading with its size, then the text kept. */
function streamText(name: string, o: OutputSummary | undefined, full: string | undefined): string[] {
  if (!o) return [`--- ${name}: none`];
  const kept = o.truncated ? `, only the first ${Buffer.byteLength(o.text)} kept` : '';
  const where = full ? `; all of it in ${full}` : '';
  const lines = [`--- ${name} (${o.bytes} bytes${kept}${where})`];
  if (o.text) lines.push(terminalSafe(o.text).replace(/\n$/, ''));
  return lines;
}

/** Every server of a run with its output, for `runs show`. */
function runDetails(results: ScriptRunResults, servers: ServerRunResult[]): string {
  const { run } = results;
  const out = [
    runHeading(run, run.scriptName),
    `  servers   ${run.serverIds.length}, waves ${run.waves.map((w) => `${w.name}(${w.serverIds.length})`).join(' → ')}`,
    `  by        ${run.requestedBy}${run.ticket ? `, ticket ${run.ticket}` : ''}`,
    `  started   ${run.startedAt ?? '-'}${run.finishedAt ? `, finished ${run.finishedAt}` : ''}`,
  ];
  for (const s of servers) {
    const exit =
      s.exitCode === undefined ? '' : s.exitCode === null ? ', ended by a signal' : `, exit ${s.exitCode}`;
    const flags = [s.unreachable ? 'unreachable' : '', s.timedOut ? 'timed out' : ''].filter(Boolean);
    out.push('');
    out.push(
      `=== ${s.serverId} (wave ${s.wave}): ${s.state}${exit}${s.durationMs !== undefined ? `, ${(s.durationMs / 1000).toFixed(1)} s` : ''}${flags.length ? `, ${flags.join(', ')}` : ''}`,
    );
    if (s.error) out.push(`error: ${s.error.code}: ${s.error.message}`);
    if (s.state === 'pending' || s.state === 'not-started') continue;
    out.push(...streamText('stdout', s.stdout, s.fullOutput?.stdout));
    out.push(...streamText('stderr', s.stderr, s.fullOutput?.stderr));
    if (s.outputRedacted) out.push('(secret values were replaced by [REDACTED])');
  }
  return out.join('\n');
}

/** Progress lines of script runs on `fleet` (only of `runId`, when given). */
function showProgress(fleet: Fleet, progress: Progress, c: Colors, runId?: string): void {
  const events = scriptEvents(fleet);
  const mine = (e: { runId: string }) => runId === undefined || e.runId === runId;
  const totals = new Map<string, { done: number; total: number }>();
  events.on('script.run.started', (e) => {
    if (!mine(e)) return;
    progress.line(`${e.resumed ? 'Resuming' : 'Starting'} run ${e.runId} of ${e.scriptName}…`);
  });
  events.on('script.wave.started', (e) => {
    if (!mine(e)) return;
    const t = totals.get(e.runId) ?? { done: 0, total: 0 };
    t.total += e.serverIds.length;
    totals.set(e.runId, t);
    progress.line(`${c.bold(`Wave ${e.wave}`)}: ${e.serverIds.join(', ')}`);
  });
  events.on('script.server.completed', (e) => {
    if (!mine(e)) return;
    const t = totals.get(e.runId) ?? { done: 0, total: 0 };
    t.done++;
    totals.set(e.runId, t);
    const status =
      e.status === 'succeeded'
        ? c.green('ok')
        : e.status === 'cancelled'
          ? c.yellow('cancelled')
          : c.red('failed');
    const exit = e.exitCode === null ? '' : ` (exit ${e.exitCode})`;
    progress.line(`[${t.done}/${t.total}] ${status} ${e.serverId}${exit}${e.reason ? `: ${e.reason}` : ''}`);
  });
  events.on('script.run.completed', (e) => {
    if (mine(e)) progress.line(`Run ${e.runId} ${e.status}${e.reason ? `: ${e.reason}` : ''}`);
  });
}

/** Paused runs exit 3 like partial ones: servers failed and the run waits for someone. */
function exitFor(status: ScriptRunStatus): number {
  if (status === 'succeeded' || status === 'awaiting-start') return EXIT.ok;
  return status === 'partial' || status === 'paused' ? EXIT.partial : EXIT.failure;
}

/** Values of environment variables named by `--param-env NAME=VAR`, so secrets stay off the command line. */
function fromEnv(map: Record<string, string> | undefined, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, variable] of Object.entries(map ?? {})) {
    const value = env[variable];
    if (value === undefined) throw new InvalidArgumentError(`environment variable ${variable} is not set`);
    out[name] = value;
  }
  return out;
}

const PARAM_ENV_HELP = 'a secret parameter’s value from environment variable VAR (repeatable)';

interface ExecuteFlags {
  paramEnv?: Record<string, string>;
  outputDir?: string;
}

/** The options of starting or resuming a run from its flags. */
function executeOptions(
  o: ExecuteFlags,
  signal: AbortSignal,
  env: NodeJS.ProcessEnv,
  acknowledgeFailures = false,
): ExecuteRunOptions {
  const secrets = fromEnv(o.paramEnv, env);
  return {
    signal,
    acknowledgeFailures,
    ...(Object.keys(secrets).length ? { secrets } : {}),
    ...(o.outputDir ? { outputDir: resolve(o.outputDir) } : {}),
  };
}

interface RunFlags extends TargetOptions, ExecuteFlags {
  param?: Record<string, string>;
  version?: string;
  concurrency: number;
  errorBudget: { count: number } | { percent: number };
  pause?: boolean;
  unreachableOk?: boolean;
  timeout: number;
  ticket?: string;
  planOnly?: boolean;
}

/**
 * `scripts` (`script`): the repository (`add`, `list`, `show`, `approve`, `export`, `import`) and
 * runs (`run`, `start`, `resume`, `cancel`); `runs` (`run`): script runs and their output.
 */
export function registerScriptCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, err, colors: c, setExit, signal } = deps;
  const script = program
    .command('scripts')
    .alias('script')
    .description('The script repository and script runs.');

  script
    .command('list', { isDefault: true })
    .description('List the current version of every script.')
    .option('-t, --tag <tag>', 'only scripts with this tag')
    .action(async (o: { tag?: string }) => {
      await withContext(async ({ session }) => {
        const scripts = await session.scripts.list(o.tag ? { tag: o.tag } : {});
        print(scripts, {
          human: (rows) =>
            rows.length
              ? versionsTable(rows, SCRIPT_COLUMNS)
              : 'No scripts. Add one with: fleetward script add <file> --name <name>',
          ids: (rows) => rows.map((s) => s.name),
        });
      });
    });

  script
    .command('add <file>')
    .description('Add a version of a script from a file (a new revision only when its content changed).')
    .requiredOption('-n, --name <name>', 'script name')
    .option('-i, --interpreter <name>', 'bash, sh, python or powershell (default: from the file extension)')
    .option('-p, --param <spec>', 'NAME[:type][!][=default], ! for required (repeatable)', parameter(false))
    .option('--secret-param <spec>', 'NAME[:type][!], a secret parameter (repeatable)', parameter(true))
    .option('-t, --tag <tag>', 'tag (repeatable)', collect)
    .option('--os <families>', 'OS families it is for: debian,rhel,suse,windows', csv)
    .option('--risky', 'runs need an approval of this version')
    .option('--root', 'run as root (sudo -n when the login is not root)')
    .option('--description <text>', 'what it does')
    .action(
      async (
        file: string,
        o: {
          name: string;
          interpreter?: AddScriptInput['interpreter'];
          param?: ScriptParameter[];
          secretParam?: ScriptParameter[];
          tag?: string[];
          os?: string[];
          risky?: boolean;
          root?: boolean;
          description?: string;
        },
      ) => {
        const interpreter = o.interpreter ?? INTERPRETERS[extname(file)];
        if (!interpreter)
          throw new InvalidArgumentError('say --interpreter: the file extension does not tell');
        const body = await readFile(file, 'utf8');
        await withContext(async ({ session }) => {
          const added = await session.scripts.add({
            name: o.name,
            interpreter,
            body,
            parameters: [...(o.param ?? []), ...(o.secretParam ?? [])],
            tags: o.tag ?? [],
            osFamilies: (o.os ?? []) as AddScriptInput['osFamilies'],
            risky: Boolean(o.risky),
            runAsRoot: Boolean(o.root),
            ...(o.description ? { description: o.description } : {}),
          });
          print(added, {
            human: (s) =>
              `${currentVersionLine(s)}${s.risky ? `\nRuns need someone else's approval of this hash: fleetward --as <someone else> script approve ${s.name} --hash ${s.contentHash}` : ''}`,
            ids: (s) => [s.name],
          });
        });
      },
    );

  script
    .command('show <name>')
    .description('A script: its version, parameters, approval and text.')
    .addOption(versionOption())
    .action(async (name: string, o: { version?: string }) => {
      const version = versionOptions(o.version);
      await withContext(async ({ session }) => {
        const found = await session.scripts.get(name, version);
        const approval = await session.scripts.approval(name, { version: found.revision });
        print(
          { ...found, approval },
          {
            human: (s) =>
              [
                `Script ${s.name} ${revisionLabel(s)}, ${s.interpreter}${s.runAsRoot ? ', as root' : ''}${s.risky ? ', risky' : ''}`,
                `  hash        ${s.contentHash}`,
                `  added by    ${s.createdBy} at ${s.createdAt}`,
                ...(s.description ? [`  description ${s.description}`] : []),
                `  parameters  ${SCRIPT_COLUMNS['PARAMETERS']!(s)}`,
                `  tags        ${s.tags.join(',') || '-'}`,
                `  approval    ${s.approval.required ? (s.approval.satisfied ? `approved by ${s.approval.approvals.map((a) => a.principalId).join(', ')}` : `not approved: ${s.approval.reason ?? ''}`) : 'not needed'}`,
                '',
                terminalSafe(s.body).replace(/\n$/, ''),
              ].join('\n'),
            ids: (s) => [s.name],
          },
        );
      });
    });

  script
    .command('approve <name>')
    .description('Approve the current version of a risky script, by the content hash you reviewed.')
    .requiredOption('--hash <hash>', 'the content hash you reviewed (fleetward script show <name>)')
    .option('--comment <text>', 'why')
    .action(async (name: string, o: { hash: string; comment?: string }) => {
      await withContext(async ({ session }) => {
        const approval = await session.scripts.approve(name, {
          hash: o.hash,
          ...(o.comment ? { comment: o.comment } : {}),
        });
        print(approval, {
          human: (a) => `Approved ${name} revision ${a.revision} (${a.contentHash}).`,
          ids: () => [name],
        });
      });
    });

  addTargetOptions(
    script
      .command('run <name>')
      .description('Run a script on servers, wave by wave, stopping when the error budget is spent.'),
    { allowAll: true, what: 'run on' },
  )
    .option('-p, --param <NAME=value>', 'parameter value (repeatable)', parameterValue)
    .option(
      '-e, --param-env <NAME=VAR>',
      'parameter value from environment variable VAR, for secrets (repeatable)',
      parameterValue,
    )
    .addOption(versionOption())
    .option('-c, --concurrency <n>', 'servers at once', positiveInt, 10)
    .option('--error-budget <n|n%>', 'failed servers tolerated before the run stops', budget, { count: 0 })
    .option('--pause', 'pause instead of stopping when the budget is spent')
    .option('--unreachable-ok', 'unreachable servers do not count against the budget')
    .option('--timeout <seconds>', 'per-server limit', positiveInt, 600)
    .option('--ticket <id>', 'change ticket, kept in the audit records')
    .option('--output-dir <dir>', 'also keep every byte of every server’s output in files here')
    .option(
      '--plan-only',
      'show the waves and the stop condition, start nothing (then: fleetward script start <run-id>)',
    )
    .action(async (name: string, o: RunFlags) => {
      const targets = targetsFrom(o);
      const version = versionOptions(o.version);
      const fromEnvironment = fromEnv(o.paramEnv, deps.env);
      await withContext(async ({ fleet, session }) => {
        const run = await session.scripts.planRun({
          script: name,
          ...version,
          params: { ...o.param, ...fromEnvironment },
          targets,
          rollout: {
            maxConcurrency: o.concurrency,
            errorBudget: o.errorBudget,
            onBudgetSpent: o.pause ? 'pause' : 'stop',
            unreachableCountsAsError: !o.unreachableOk,
          },
          timeoutMs: o.timeout * 1000,
          ...(o.ticket ? { ticket: o.ticket } : {}),
        });
        const waves = run.waves.map((w) => `${w.name}(${w.serverIds.length})`).join(' → ');
        err(
          `Run ${run.id}: ${run.serverIds.length} server(s), waves ${waves}\nIt ${run.stopCondition.description}\n`,
        );
        if (o.planOnly) {
          print(run, {
            human: (r) => `Planned run ${r.id}; start it with: fleetward script start ${r.id}`,
            ids: (r) => [r.id],
          });
          return;
        }
        showProgress(fleet, progress, c, run.id);
        // Secret values given on the command line go to the start too: without a SecretStore the
        // plan could not keep them.
        const secretNames = new Set(run.secretParams);
        const given = Object.fromEntries(
          Object.entries({ ...o.param, ...fromEnvironment }).filter(([k]) => secretNames.has(k)),
        );
        const results = await session.scripts.startRun(run.id, {
          ...executeOptions(o, signal, deps.env),
          ...(Object.keys(given).length ? { secrets: given } : {}),
        });
        print(results, { human: runSummary, ids: (r) => [r.run.id] });
        setExit(exitFor(results.run.status));
      });
    });

  script
    .command('start <runId>')
    .description('Start a run planned with "script run --plan-only".')
    .option('-e, --param-env <NAME=VAR>', PARAM_ENV_HELP, parameterValue)
    .option('--output-dir <dir>', 'also keep every byte of every server’s output in files here')
    .action(async (runId: string, o: ExecuteFlags) => {
      const options = executeOptions(o, signal, deps.env);
      await withContext(async ({ fleet, session }) => {
        showProgress(fleet, progress, c, runId);
        const results = await session.scripts.startRun(runId, options);
        print(results, { human: runSummary, ids: (r) => [r.run.id] });
        setExit(exitFor(results.run.status));
      });
    });

  script
    .command('resume <runId>')
    .description('Resume a run whose process died, or that paused when its error budget was spent.')
    .option('--acknowledge-failures', 'continue a run paused by its error budget')
    .option('-e, --param-env <NAME=VAR>', PARAM_ENV_HELP, parameterValue)
    .option('--output-dir <dir>', 'also keep every byte of every server’s output in files here')
    .action(async (runId: string, o: ExecuteFlags & { acknowledgeFailures?: boolean }) => {
      const options = executeOptions(o, signal, deps.env, Boolean(o.acknowledgeFailures));
      await withContext(async ({ fleet, session }) => {
        showProgress(fleet, progress, c, runId);
        const results = await session.scripts.resumeRun(runId, options);
        print(results, { human: runSummary, ids: (r) => [r.run.id] });
        setExit(exitFor(results.run.status));
      });
    });

  script
    .command('cancel <runId>')
    .description('Cancel a run.')
    .option('--reason <text>', 'why')
    .action(async (runId: string, o: { reason?: string }) => {
      await withContext(async ({ session }) => {
        const run = await session.scripts.cancelRun(runId, o.reason ? { reason: o.reason } : {});
        print(run, {
          human: (r) =>
            r.status === 'cancelled'
              ? `Run ${r.id} cancelled.`
              : `Run ${r.id} is being cancelled by the process executing it.`,
        });
      });
    });

  script
    .command('export <dir>')
    .description(
      'Write the current version of every script and fleetward-scripts.json into a folder (for git).',
    )
    .option('-n, --name <name>', 'only this script (repeatable)', collect)
    .action(async (dir: string, o: { name?: string[] }) => {
      await withContext(async ({ session }) => {
        const manifest = await session.scripts.exportRepository(
          resolve(dir),
          o.name ? { names: o.name } : {},
        );
        print(manifest, {
          human: (m) => `Exported ${m.scripts.length} script(s) to ${dir}.`,
          ids: (m) => m.scripts.map((s) => s.name),
        });
      });
    });

  script
    .command('import <dir>')
    .description(
      'Import a folder with fleetward-scripts.json; checks every hash first, adds only what changed.',
    )
    .action(async (dir: string) => {
      await withContext(async ({ session }) => {
        const result = await session.scripts.importRepository(resolve(dir));
        print(result, {
          human: (r) =>
            [
              ...r.created.map((s) => `added ${s.name} ${revisionLabel(s)}`),
              `${r.created.length} added, ${r.unchanged.length} unchanged.`,
            ].join('\n'),
          ids: (r) => r.created.map((s) => s.name),
        });
      });
    });

  registerRunsCommands(program, deps);
}

/** `runs` (`run`): script runs, newest first, and one run with every server's output. */
function registerRunsCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const runs = program.command('runs').alias('run').description('Script runs and the output of each server.');

  runs
    .command('list', { isDefault: true })
    .description('List script runs, newest first.')
    .option('--script <name>', 'only runs of this script')
    .addOption(
      new Option('--status <status>', 'only runs in this state').choices(ScriptRunStatusSchema.options),
    )
    .action(async (o: { script?: string; status?: ScriptRunStatus }) => {
      await withContext(async ({ session }) => {
        const list = await session.scripts.listRuns({
          ...(o.script ? { script: o.script } : {}),
          ...(o.status ? { status: o.status } : {}),
        });
        print(list, {
          human: (rows: ScriptRun[]) =>
            rows.length === 0
              ? 'No script runs. Start one with: fleetward script run <name> --server <id>'
              : renderTable(
                  ['ID', 'SCRIPT', 'REV', 'STATUS', 'SERVERS', 'BY', 'STARTED', 'FINISHED'],
                  rows.map((r) => [
                    r.id,
                    r.scriptName,
                    String(r.revision),
                    r.status,
                    String(r.serverIds.length),
                    r.requestedBy,
                    r.startedAt ?? '-',
                    r.finishedAt ?? '-',
                  ]),
                ),
        });
      });
    });

  runs
    .command('show <runId>')
    .description('A script run with each server’s state, exit code and output (stdout and stderr).')
    .option('-s, --server <id>', 'only this server’s result and output')
    .action(async (runId: string, o: { server?: string }) => {
      await withContext(async ({ session }) => {
        const results = await session.scripts.getRun(runId);
        const servers = o.server ? results.servers.filter((s) => s.serverId === o.server) : results.servers;
        if (o.server && servers.length === 0) {
          throw new NotFoundError('server', o.server, {
            details: {
              hint: `Run ${runId} ran on ${results.run.serverIds.slice(0, 20).join(', ')}${results.run.serverIds.length > 20 ? ', …' : ''}.`,
            },
          });
        }
        print({ ...results, servers }, { human: (r) => runDetails(r, r.servers), ids: (r) => [r.run.id] });
      });
    });
}
