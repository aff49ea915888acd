import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import {
  type AddScriptInput,
  type Fleet,
  isReservedKey,
  type Script,
  type ScriptParameter,
  type ScriptRunResults,
  scriptEvents,
  versionOptions,
} from '@fleetward/core';
import { type Command, InvalidArgumentError } from 'commander';
import type { CommandDeps } from './patch-commands.js';
import { renderTable } from './table.js';
import {
  currentVersionLine,
  formatVersions,
  revisionLabel,
  runHeading,
  type VersionColumns,
  versionOption,
} from './versioned.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];
const csv = (value: string) =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

function pair(what: string) {
  return (value: string, previous: Record<string, string> = {}) => {
    const eq = value.indexOf('=');
    if (eq < 1) throw new InvalidArgumentError(`${what} are NAME=value`);
    if (isReservedKey(value.slice(0, eq)))
      throw new InvalidArgumentError(`${JSON.stringify(value.slice(0, eq))} is a reserved name`);
    return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
  };
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function budget(value: string): { count: number } | { percent: number } {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
  if (!m) throw new InvalidArgumentError('an error budget is a count (2) or a percentage (10%)');
  return m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
}

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

function runSummary(results: ScriptRunResults): string {
  const { run } = results;
  const rows = results.servers.map((s) => [
    s.serverId,
    s.wave,
    s.state,
    s.exitCode === undefined ? '-' : String(s.exitCode),
    s.stdout ? `${s.stdout.bytes}${s.stdout.truncated ? ' (cut)' : ''}` : '-',
    s.error ? `${s.error.code}: ${s.error.message}`.slice(0, 100) : '',
  ]);
  return [
    runHeading(run, run.scriptName),
    renderTable(['SERVER', 'WAVE', 'STATE', 'EXIT', 'STDOUT BYTES', 'ERROR'], rows),
  ].join('\n');
}

function progress(fleet: Fleet, err: (t: string) => void, c: CommandDeps['colors']) {
  const events = scriptEvents(fleet);
  events.on('script.wave.started', (e) => err(`${c.bold(`Wave ${e.wave}`)}: ${e.serverIds.join(', ')}\n`));
  events.on('script.server.completed', (e) =>
    err(
      `  ${e.serverId}: ${e.status === 'succeeded' ? c.green('succeeded') : e.status === 'cancelled' ? c.yellow('cancelled') : c.red('failed')}${e.reason ? ` — ${e.reason}` : ''}\n`,
    ),
  );
}

function exitFor(status: string): number {
  return status === 'succeeded' || status === 'paused' ? 0 : status === 'partial' ? 3 : 1;
}

/** Values of environment variables named by `--param-env NAME=VAR`, so secrets stay off the command line. */
function fromEnv(map: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, variable] of Object.entries(map ?? {})) {
    if (isReservedKey(name)) throw new InvalidArgumentError(`${JSON.stringify(name)} is a reserved name`);
    const value = process.env[variable];
    if (value === undefined) throw new InvalidArgumentError(`environment variable ${variable} is not set`);
    out[name] = value;
  }
  return out;
}

/** `script add|list|approve|run|resume|cancel|export|import`: the script repository and runs. */
export function registerScriptCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out, err, colors: c } = deps;
  const script = program.command('script').description('The script repository and script runs.');

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
    .action(async (file: string, o: Record<string, unknown>) => {
      const interpreter =
        (o['interpreter'] as AddScriptInput['interpreter'] | undefined) ?? INTERPRETERS[extname(file)];
      if (!interpreter) throw new InvalidArgumentError('say --interpreter: the file extension does not tell');
      const body = await readFile(file, 'utf8');
      await withContext(async ({ session }) => {
        const added = await session.scripts.add({
          name: o['name'] as string,
          interpreter,
          body,
          parameters: [
            ...((o['param'] as ScriptParameter[] | undefined) ?? []),
            ...((o['secretParam'] as ScriptParameter[] | undefined) ?? []),
          ],
          tags: (o['tag'] as string[] | undefined) ?? [],
          osFamilies: (o['os'] as never) ?? [],
          risky: Boolean(o['risky']),
          runAsRoot: Boolean(o['root']),
          ...(o['description'] ? { description: o['description'] as string } : {}),
        });
        out(currentVersionLine(added));
      });
    });

  script
    .command('list')
    .description('List the current version of every script.')
    .option('-t, --tag <tag>', 'only scripts with this tag')
    .option('--json', 'print as JSON')
    .action(async (o: { tag?: string; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const scripts = await session.scripts.list(o.tag ? { tag: o.tag } : {});
        out(formatVersions(scripts, { json: o.json, columns: SCRIPT_COLUMNS }));
      });
    });

  script
    .command('approve <name>')
    .description('Approve the current version of a risky script, by the content hash you reviewed.')
    .requiredOption('--hash <hash>', 'the content hash you reviewed')
    .option('--comment <text>', 'why')
    .action(async (name: string, o: { hash: string; comment?: string }) => {
      await withContext(async ({ session }) => {
        const approval = await session.scripts.approve(name, {
          hash: o.hash,
          ...(o.comment ? { comment: o.comment } : {}),
        });
        out(`Approved ${name} revision ${approval.revision} (${approval.contentHash}).\n`);
      });
    });

  script
    .command('run <name>')
    .description('Run a script on servers, wave by wave, stopping when the error budget is spent.')
    .option('-s, --server <id>', 'on this server (repeatable)', collect)
    .option('--project <id>', 'on the servers of this project')
    .option('-l, --label <key=value>', 'on servers with this label (repeatable)', pair('labels'))
    .option('-p, --param <NAME=value>', 'parameter value (repeatable)', pair('parameters'))
    .option(
      '-e, --param-env <NAME=VAR>',
      'parameter value from environment variable VAR, for secrets',
      pair('parameters'),
    )
    .addOption(versionOption())
    .option('--max-concurrency <n>', 'servers at once', positiveInt, 10)
    .option('--error-budget <n|n%>', 'failed servers tolerated before the run stops', budget, { count: 0 })
    .option('--pause', 'pause instead of stopping when the budget is spent')
    .option('--unreachable-ok', 'unreachable servers do not count against the budget')
    .option('--timeout <seconds>', 'per-server limit', positiveInt, 600)
    .option('--ticket <id>', 'change ticket, kept in the audit records')
    .option('--output-dir <dir>', 'also keep every byte of every server’s output in files here')
    .option('--plan-only', 'show the waves and the stop condition, and start nothing')
    .option('--json', 'print the results as JSON')
    .action(async (name: string, o: Record<string, unknown>) => {
      const servers = o['server'] as string[] | undefined;
      const labels = o['label'] as Record<string, string> | undefined;
      const projectId = o['project'] as string | undefined;
      if ([servers, labels, projectId].filter(Boolean).length !== 1) {
        throw new InvalidArgumentError('choose servers with one of --server, --project or --label');
      }
      const version = versionOptions(o['version'] as string | undefined);
      await withContext(async ({ fleet, session }) => {
        const run = await session.scripts.planRun({
          script: name,
          ...version,
          params: {
            ...(o['param'] as Record<string, string> | undefined),
            ...fromEnv(o['paramEnv'] as never),
          },
          targets: servers
            ? { serverIds: servers }
            : projectId
              ? { projectId }
              : { selector: { labels: labels! } },
          rollout: {
            maxConcurrency: o['maxConcurrency'] as number,
            errorBudget: o['errorBudget'] as never,
            onBudgetSpent: o['pause'] ? 'pause' : 'stop',
            unreachableCountsAsError: !o['unreachableOk'],
          },
          timeoutMs: (o['timeout'] as number) * 1000,
          ...(o['ticket'] ? { ticket: o['ticket'] as string } : {}),
        });
        const waves = run.waves.map((w) => `${w.name}(${w.serverIds.length})`).join(' → ');
        err(
          `Run ${run.id}: ${run.serverIds.length} server(s), waves ${waves}\nIt ${run.stopCondition.description}\n`,
        );
        if (o['planOnly']) {
          out(
            o['json']
              ? `${JSON.stringify(run, null, 2)}\n`
              : `Planned run ${run.id}; start it with: fleetward script resume ${run.id} --start\n`,
          );
          return;
        }
        if (!o['json']) progress(fleet, err, c);
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once('SIGINT', onSignal);
        try {
          const secrets = fromEnv(o['paramEnv'] as never);
          const secretNames = new Set(run.secretParams);
          const given = Object.fromEntries(
            Object.entries({ ...(o['param'] as Record<string, string> | undefined), ...secrets }).filter(
              ([k]) => secretNames.has(k),
            ),
          );
          const results = await session.scripts.startRun(run.id, {
            signal: controller.signal,
            ...(Object.keys(given).length ? { secrets: given } : {}),
            ...(o['outputDir'] ? { outputDir: o['outputDir'] as string } : {}),
          });
          out(o['json'] ? `${JSON.stringify(results, null, 2)}\n` : `${runSummary(results)}\n`);
          deps.setExit(exitFor(results.run.status));
        } finally {
          process.off('SIGINT', onSignal);
        }
      });
    });

  script
    .command('resume <runId>')
    .description('Resume a run whose process died or that paused, or start a planned run (--start).')
    .option('--start', 'start a run planned with --plan-only')
    .option('--acknowledge-failures', 'continue a run paused by its error budget')
    .option(
      '-e, --param-env <NAME=VAR>',
      'a secret parameter’s value from environment variable VAR',
      pair('parameters'),
    )
    .option('--json', 'print the results as JSON')
    .action(async (runId: string, o: Record<string, unknown>) => {
      await withContext(async ({ fleet, session }) => {
        if (!o['json']) progress(fleet, err, c);
        const secrets = fromEnv(o['paramEnv'] as never);
        const options = {
          acknowledgeFailures: Boolean(o['acknowledgeFailures']),
          ...(Object.keys(secrets).length ? { secrets } : {}),
        };
        const results = o['start']
          ? await session.scripts.startRun(runId, options)
          : await session.scripts.resumeRun(runId, options);
        out(o['json'] ? `${JSON.stringify(results, null, 2)}\n` : `${runSummary(results)}\n`);
        deps.setExit(exitFor(results.run.status));
      });
    });

  script
    .command('cancel <runId>')
    .description('Cancel a run.')
    .option('--reason <text>', 'why')
    .action(async (runId: string, o: { reason?: string }) => {
      await withContext(async ({ session }) => {
        const run = await session.scripts.cancelRun(runId, o.reason ? { reason: o.reason } : {});
        out(
          run.status === 'cancelled'
            ? `Run ${runId} cancelled.\n`
            : `Run ${runId} is being cancelled by the process executing it.\n`,
        );
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
        out(`Exported ${manifest.scripts.length} script(s) to ${dir}.\n`);
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
        for (const s of result.created) out(`added ${s.name} ${revisionLabel(s)}\n`);
        out(`${result.created.length} added, ${result.unchanged.length} unchanged.\n`);
      });
    });
}
