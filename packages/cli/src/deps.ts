import type { Targets } from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CliContext, QueueChoice } from './context.js';
import type { Colors, OutputFormat, Printable } from './output.js';
import type { Progress } from './progress.js';

/** How `withContext` opens the Fleet where a command needs more than the configuration says. */
export interface ContextOptions {
  /** Open this rollout queue and build the Fleet with `rollouts: queue`. @default the configured one, if any */
  queue?: QueueChoice;
  /** Do not require the configured tenant to exist: for commands that serve every tenant (`worker`). */
  anyTenant?: boolean;
}

/** What every command group gets from the program. */
export interface CommandDeps {
  /** Opens the configured store as the configured principal, runs `fn`, closes it (and the queue). */
  withContext: <T>(fn: (ctx: CliContext) => Promise<T>, options?: ContextOptions) => Promise<T>;
  /**
   * Prints a command's result in the chosen format: JSON (`--json`, `-o json`), the ids (`-o id`),
   * or the human text. Every command ends with exactly one `print`.
   */
  print: <T>(value: T, how?: Printable<T>) => void;
  /** The chosen output format. */
  format: () => OutputFormat;
  /** Raw standard output (reports written to `-`); prefer `print`. */
  out: (text: string) => void;
  /** Standard error: notes and warnings for people (never in JSON mode's stdout). */
  err: (text: string) => void;
  /** Progress lines on a terminal; silent otherwise. */
  progress: Progress;
  colors: Colors;
  setExit: (code: number) => void;
  /** Aborted on SIGINT and SIGTERM. */
  signal: AbortSignal;
  /** The environment the command runs with (`runCli`'s, not necessarily `process.env`). */
  env: NodeJS.ProcessEnv;
  /** All of standard input, as text (for secrets that must not travel on the command line). */
  readStdin: () => Promise<string>;
}

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

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `a,b` or repeated: every value of a repeatable list option, split at commas. */
export const collectList = (value: string, previous: string[] = []): string[] => [
  ...previous,
  ...value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean),
];

export const csv = (value: string): string[] =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

/** `key=value`, repeatable, into a record. */
export function keyValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError(`"${value}" is not key=value`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive whole number');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}

export function budget(value: string): { count: number } | { percent: number } {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
  if (!m) throw new InvalidArgumentError('an error budget is a count (2) or a percentage (10%)');
  return m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
}

/** The options every command that chooses servers takes, with the same names everywhere. */
export interface TargetOptions {
  server?: string[];
  project?: string;
  label?: Record<string, string>;
  all?: boolean;
}

/**
 * Adds `-s, --server <ids>` (repeatable or comma-separated), `--project <id>`,
 * `-l, --label <key=value>` (repeatable) and, when `allowAll`, `-a, --all`; `project: false` leaves
 * `--project` out where the project is given otherwise (a plan's policy, a new project).
 */
export function addTargetOptions(
  cmd: Command,
  options: { allowAll?: boolean; what?: string; project?: boolean } = {},
): Command {
  const what = options.what ?? 'servers';
  cmd.addOption(
    new Option('-s, --server <ids>', `${what}: these server ids (repeatable, or comma-separated)`).argParser(
      collectList,
    ),
  );
  if (options.project !== false) cmd.option('--project <id>', `${what}: the servers of this project`);
  cmd.option(
    '-l, --label <key=value>',
    `${what}: servers with this label (repeatable: all must match)`,
    keyValue,
  );
  if (options.allowAll) cmd.option('-a, --all', `${what}: every server of the tenant`);
  return cmd;
}

/**
 * The targets the options name (`serverIds`, `projectId` or a selector of ids and labels, or all);
 * refuses none (unless `fallback`) and contradictory mixes, naming the flags.
 */
export function targetsFrom(o: TargetOptions, fallback?: Targets): Targets {
  const ids = o.server?.length ? o.server : undefined;
  if (o.all) {
    if (ids || o.project || o.label)
      throw new InvalidArgumentError('--all cannot be combined with --server, --project or --label');
    return { selector: { all: true } };
  }
  if (o.project) {
    if (ids || o.label)
      throw new InvalidArgumentError('--project cannot be combined with --server or --label');
    return { projectId: o.project };
  }
  if (o.label) return { selector: { ...(ids ? { ids } : {}), labels: o.label } };
  if (ids) return { serverIds: ids };
  if (fallback) return fallback;
  throw new InvalidArgumentError(
    'choose the servers: --server <ids>, --project <id>, --label <key=value> or --all',
  );
}
