import { createRequire } from 'node:module';
import { FleetwardError, NotFoundError } from '@fleetward/core';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createColors } from 'picocolors';
import { registerAccessCommands } from './access-commands.js';
import { COMPLETION_SHELLS, type CompletionShell, completionScript } from './completion.js';
import { registerComplianceCommands } from './compliance-commands.js';
import {
  describeStore,
  type GlobalFlags,
  PRECEDENCE_HELP,
  type ResolvedConfig,
  resolveConfig,
} from './config.js';
import { type CliContext, initialise, openContext } from './context.js';
import { type CommandDeps, type ContextOptions, EXIT } from './deps.js';
import { registerDiscoverCommand } from './discover-command.js';
import { registerIamCommands } from './iam-commands.js';
import { registerInventoryCommands } from './inventory-commands.js';
import { jsonLinesLogger, LOG_LEVELS, type LogLevel } from './log.js';
import {
  defaultIds,
  describeError,
  fieldValues,
  OUTPUT_FORMATS,
  type OutputFormat,
  type Printable,
  parseOutputFormat,
  renderError,
} from './output.js';
import { registerPatchCommands } from './patch-commands.js';
import { registerPlansCommands } from './plans-commands.js';
import { createProgress } from './progress.js';
import { registerRunbookCommands } from './runbook-commands.js';
import { registerScriptCommands } from './script-commands.js';
import { registerServeCommands } from './serve-command.js';
import { registerWinRmCommands } from './winrm-commands.js';
import { registerWorkerCommand } from './worker-command.js';

export { COMPLETION_SHELLS, type CompletionShell, completionScript } from './completion.js';
export { EXIT } from './deps.js';

/** The version of `@fleetward/cli`, as `--version` prints it. */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string })
  .version;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal (progress lines are shown then). */
  isTTY: boolean;
  /** The folder relative paths are taken from. @default process.cwd() */
  cwd?: string;
  /** All of standard input, as text (e.g. `--password-stdin`). @default reads `process.stdin` */
  readStdin?: () => Promise<string>;
}

async function readProcessStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

const defaultIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  isTTY: Boolean(process.stderr.isTTY),
};

/** The output format asked for on the command line, known before parsing (usage errors need it). */
function formatIn(argv: string[]): OutputFormat {
  let format: OutputFormat = 'table';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--json') format = 'json';
    const value = a === '-o' || a === '--output' ? argv[i + 1] : /^(?:--output=|-o)(.+)$/.exec(a)?.[1];
    const parsed = value ? parseOutputFormat(value) : undefined;
    if (parsed) format = parsed;
  }
  return format;
}

/** `fleetward servers add`: the command's full name. */
function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function forEachCommand(cmd: Command, fn: (c: Command) => void): void {
  fn(cmd);
  for (const sub of cmd.commands) forEachCommand(sub, fn);
}

/**
 * Runs the `fleetward` command line with `argv` (without `node` and the script) and resolves the
 * exit code. Never calls `process.exit`, so it can be embedded and tested in-process; the one
 * exception is `worker`, which exits the process once it has stopped on SIGINT or SIGTERM.
 */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  let format = formatIn(argv);
  const colorOn =
    !('NO_COLOR' in io.env && io.env['NO_COLOR'] !== '') &&
    !argv.includes('--no-color') &&
    io.isTTY &&
    format === 'table';
  const c = createColors(colorOn);
  const controller = new AbortController();
  let config: ResolvedConfig | undefined;
  let failedCommand: Command | undefined;
  let usageMessage = '';

  const program = new Command('fleetward')
    .description(
      'Unified server management: patches, just-in-time access and keys, scripts and runbooks, audit.',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option('--config <file>', 'the configuration file (FLEETWARD_CONFIG)')
    .option('--store <path-or-url>', 'a SQLite file or a postgres:// URL (FLEETWARD_STORE)')
    .addOption(
      new Option('-d, --data-dir <dir>', 'a folder holding fleetward.db (FLEETWARD_HOME)').hideHelp(),
    )
    .option('--tenant <id>', 'the tenant (FLEETWARD_TENANT)')
    .option('--as <principal>', 'act as this principal (FLEETWARD_PRINCIPAL)')
    .addOption(
      new Option(
        '-o, --output <format>',
        `${OUTPUT_FORMATS.join(', ')}: table for people, json for programs, id for the ids only, field=hash for one field`,
      )
        .argParser((value: string) => {
          const parsed = parseOutputFormat(value);
          if (!parsed) throw new InvalidArgumentError(`choose ${OUTPUT_FORMATS.join(', ')}`);
          return parsed;
        })
        .default('table'),
    )
    .option('--json', 'the same as --output json')
    .option('--no-color', 'plain output (NO_COLOR is honoured too)')
    .addOption(
      new Option(
        '--log-level <level>',
        'operator log lines (JSON) on stderr: what runs, fails, retries (FLEETWARD_LOG_LEVEL; default off)',
      ).choices([...LOG_LEVELS]),
    )
    .addHelpText('after', `\n${PRECEDENCE_HELP}`)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (message) => {
        usageMessage = message.replace(/^error:\s*/, '').trim();
      },
    });

  const flags = (): GlobalFlags => {
    const o = program.opts<GlobalFlags & { output: OutputFormat; json?: boolean }>();
    return o;
  };
  const configOf = (): ResolvedConfig => {
    config ??= resolveConfig(flags(), io.env, io.cwd ?? process.cwd());
    return config;
  };

  /** `--log-level`, else FLEETWARD_LOG_LEVEL (of `io.env`, not necessarily `process.env`), else off. */
  const logLevel = (): LogLevel => {
    const flag = program.opts<{ logLevel?: LogLevel }>().logLevel;
    if (flag) return flag;
    const fromEnv = io.env['FLEETWARD_LOG_LEVEL'];
    if (fromEnv === undefined || fromEnv === '') return 'off';
    if (!(LOG_LEVELS as readonly string[]).includes(fromEnv)) {
      throw new InvalidArgumentError(`FLEETWARD_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
    }
    return fromEnv as LogLevel;
  };

  const onSignal = (signal: NodeJS.Signals) =>
    controller.abort(new FleetwardError('ABORTED', `interrupted by ${signal}`));
  const withSignals = async <T>(fn: () => Promise<T>): Promise<T> => {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      return await fn();
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  };

  const open = async <T>(
    create: boolean,
    fn: (ctx: CliContext) => Promise<T>,
    options: ContextOptions = {},
  ): Promise<T> =>
    withSignals(async () => {
      const cfg = configOf();
      const level = logLevel();
      const ctx = await openContext(cfg, io.env, controller.signal, {
        create,
        ...(level !== 'off' ? { logger: jsonLinesLogger(level, io.stderr) } : {}),
        ...(options.queue ? { queue: options.queue } : {}),
      });
      try {
        if (!create && !options.anyTenant && !(await ctx.fleet.store.tenants.get(cfg.tenant, cfg.tenant))) {
          throw new NotFoundError('tenant', cfg.tenant, {
            details: {
              hint: `The store at ${describeStore(cfg.store)} has no tenant "${cfg.tenant}". Run "fleetward init --tenant ${cfg.tenant}" to create it, or choose another with --tenant.`,
            },
          });
        }
        return await fn(ctx);
      } finally {
        await ctx.close();
      }
    });

  const print = <T>(value: T, how: Printable<T> = {}) => {
    if (format === 'json') io.stdout(`${JSON.stringify(value, null, 2)}\n`);
    else if (format === 'id') {
      const ids = how.ids ? how.ids(value) : defaultIds(value);
      if (ids.length) io.stdout(`${ids.join('\n')}\n`);
    } else if (format.startsWith('field=')) {
      const values = fieldValues(value, format.slice('field='.length));
      if (values.length) io.stdout(`${values.join('\n')}\n`);
    } else if (how.human) {
      const text = how.human(value);
      if (text) io.stdout(text.endsWith('\n') ? text : `${text}\n`);
    } else io.stdout(`${JSON.stringify(value, null, 2)}\n`);
  };

  const deps: CommandDeps = {
    withContext: (fn, options) => open(false, fn, options),
    print,
    format: () => format,
    out: io.stdout,
    err: (t) => io.stderr(t),
    progress: createProgress(io.stderr, io.isTTY && format === 'table'),
    colors: c,
    setExit: (code: number) => {
      exitCode = code;
    },
    signal: controller.signal,
    env: io.env,
    readStdin: io.readStdin ?? readProcessStdin,
  };

  program
    .command('init')
    .description(
      'Create the store (and its folder), the tenant with its first administrator, and this machine as "localhost".',
    )
    .option(
      '--tenant-name <name>',
      'display name of a new tenant (default: "Default" for the default tenant)',
    )
    .option('--admin-name <name>', 'display name of the administrator', 'Local administrator')
    .option('--no-localhost', 'do not add this machine as a server')
    .action(async (o: { tenantName?: string; adminName: string; localhost: boolean }) => {
      const cfg = configOf();
      const result = await open(true, (ctx) =>
        initialise(ctx, {
          tenantName: o.tenantName ?? (cfg.tenant === 'default' ? 'Default' : cfg.tenant),
          adminName: o.adminName,
          localhost: o.localhost,
        }),
      );
      print(result, {
        human: (r) =>
          r.created
            ? `Initialised ${r.store}: tenant "${r.tenant}", administrator "${r.admin}"${r.localhost ? ', server "localhost"' : ''}.\nNext: fleetward servers add <id> --address <host>, or fleetward scan for this machine.`
            : `Already initialised: ${r.store} (tenant "${r.tenant}", administrator "${r.admin}"). Nothing changed.`,
        ids: (r) => [r.tenant],
      });
    });

  const configCmd = program.command('config').description('The configuration in effect.');
  configCmd
    .command('show')
    .description('Print the settings in effect and where each came from (flag, env, config, default).')
    .action(() => {
      const cfg = configOf();
      const shown = {
        file: cfg.fileRead ? cfg.file : null,
        store: describeStore(cfg.store),
        storeKind: cfg.store.kind,
        tenant: cfg.tenant,
        principal: cfg.principal,
        sources: cfg.sources,
        ssh: cfg.ssh,
        secrets: cfg.secrets ?? null,
        aws: cfg.aws,
        winrm: cfg.winrm,
        workers: cfg.workers,
      };
      print(shown, {
        human: (s) =>
          [
            `config file  ${s.file ?? '(none)'}`,
            `store        ${s.store}  [${s.sources.store}]`,
            `tenant       ${s.tenant}  [${s.sources.tenant}]`,
            `principal    ${s.principal}  [${s.sources.principal}]`,
            `ssh          host keys ${cfg.ssh.hostKeyPolicy}${cfg.ssh.user ? `, user ${cfg.ssh.user}` : ''}${cfg.ssh.jumpHost ? `, via ${cfg.ssh.jumpHost.host}` : ''}`,
            `aws          endpoint ${s.aws.endpoint ?? "AWS's public endpoints"}  [${s.aws.sources.endpoint}]`,
            `             default region ${s.aws.defaultRegion}  [${s.aws.sources.defaultRegion}]`,
            `             poll interval ${s.aws.pollIntervalMs} ms  [${s.aws.sources.pollIntervalMs}]`,
            `winrm        ${s.winrm.https ? 'https' : 'http'}, ${s.winrm.auth}${s.winrm.port ? `, port ${s.winrm.port}` : ''}${s.winrm.caFile ? `, CA ${s.winrm.caFile}` : ''}${s.winrm.credentialsRef ? `, login ${s.winrm.credentialsRef}` : ''}`,
            `workers      ${s.workers.enabled ? `script runs carried out by workers, queue schema ${s.workers.schema}` : 'off: script runs are carried out by the command that starts them'}`,
          ].join('\n'),
        ids: () => [],
      });
    });
  configCmd
    .command('path')
    .description('Print the configuration file that is read (whether it exists or not).')
    .action(() => {
      const cfg = configOf();
      print(
        { path: cfg.file, exists: cfg.fileRead },
        { human: (p) => `${p.path}${p.exists ? '' : ' (does not exist: defaults apply)'}`, ids: () => [] },
      );
    });

  program
    .command('completion')
    .description(
      'Print the shell completion script: source <(fleetward completion bash); zsh likewise after compinit; fleetward completion fish | source.',
    )
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(COMPLETION_SHELLS))
    .action((shell: CompletionShell) => {
      io.stdout(completionScript(program, shell));
    });

  registerInventoryCommands(program, deps);
  registerDiscoverCommand(program, deps);
  registerPatchCommands(program, deps);
  registerPlansCommands(program, deps);
  registerComplianceCommands(program, deps);
  registerAccessCommands(program, deps);
  registerIamCommands(program, deps);
  registerScriptCommands(program, deps);
  registerRunbookCommands(program, deps);
  registerServeCommands(program, deps);
  registerWinRmCommands(program, deps);
  registerWorkerCommand(program, deps);

  forEachCommand(program, (cmd) => {
    // Commander's help does not mark required options: say it in their description.
    for (const option of cmd.options) {
      if (option.mandatory && !option.description.includes('(required)')) option.description += ' (required)';
    }
    cmd.exitOverride((error) => {
      failedCommand ??= cmd;
      throw error;
    });
  });
  program.hook('preAction', (_root, action) => {
    failedCommand = action;
    const o = program.opts<{ output: OutputFormat; json?: boolean }>();
    format = o.json ? 'json' : o.output;
  });

  const usage = (message: string, cmd: Command | undefined): number => {
    const target = cmd ?? program;
    const name = fullName(target);
    if (format === 'json') {
      io.stdout(
        `${JSON.stringify({ error: { code: 'USAGE', message, usage: `${name} ${target.usage()}`, hint: `Run "${name} --help" for the options.` } }, null, 2)}\n`,
      );
    } else {
      io.stderr(
        `${c.red('error:')} ${message}\nUsage: ${name} ${target.usage()}\nRun "${name} --help" for the options.\n`,
      );
    }
    return EXIT.usage;
  };

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code))
        return EXIT.ok;
      // `fleetward servers` without a subcommand: the group's help, as a usage error.
      if (
        error.code === 'commander.executeSubCommandAsync' ||
        error.code === 'commander.missingMandatoryOptionValue'
      ) {
        return usage(usageMessage || error.message, failedCommand);
      }
      return usage(usageMessage || error.message.replace(/^error:\s*/, ''), failedCommand);
    }
    if (error instanceof InvalidArgumentError) return usage(error.message, failedCommand);
    const principal = config?.principal ?? 'local-admin';
    const described = describeError(error, principal);
    if (format === 'json') io.stdout(`${JSON.stringify({ error: described }, null, 2)}\n`);
    else io.stderr(renderError(described, c));
    return EXIT.failure;
  }
}

export { buildReport, type PatchRow, type Report, type ServerSummary } from './report.js';
