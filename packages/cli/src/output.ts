import { AuthorizationError, FleetwardError, NotFoundError, ValidationError } from '@fleetward/core';
import type { createColors } from 'picocolors';

/**
 * How results are printed: for people (`table`), for programs (`json`), only the ids (`id`), or
 * one field (`field=<path>`, e.g. `field=hash`, `field=grant.status`) for shell variables.
 */
export type OutputFormat = 'table' | 'json' | 'id' | `field=${string}`;
export const OUTPUT_FORMATS = ['table', 'json', 'id', 'field=<path>'] as const;

/** Parses an `--output` value; undefined when it is none of the formats. */
export function parseOutputFormat(value: string): OutputFormat | undefined {
  if (value === 'table' || value === 'json' || value === 'id') return value;
  if (/^field=[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/.test(value)) return value as OutputFormat;
  return undefined;
}

/**
 * The values at a dotted `path` of a result: of the value, or of each item when it is an array;
 * objects as JSON, missing values left out.
 */
export function fieldValues(value: unknown, path: string): string[] {
  const at = (v: unknown): unknown =>
    path
      .split('.')
      .reduce<unknown>(
        (o, key) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[key] : undefined),
        v,
      );
  const show = (v: unknown) =>
    v === undefined || v === null ? [] : [typeof v === 'object' ? JSON.stringify(v) : String(v)];
  return Array.isArray(value) ? value.flatMap((item) => show(at(item))) : show(at(value));
}

export type Colors = ReturnType<typeof createColors>;

/** What a command prints when it succeeds: the value (JSON), the human text, the ids. */
export interface Printable<T> {
  /** The text for people; without it, the JSON is printed. */
  human?: (value: T) => string;
  /** The identifiers `-o id` prints, one per line; without it, `id` of the value or its items. */
  ids?: (value: T) => string[];
}

/** An error as the CLI reports it: code, message in the user's words, and a hint how to fix it. */
export interface DescribedError {
  code: string;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
}

/** The CLI resource listing a kind, for hints (`fleetward servers list`). */
const LIST_COMMAND: Record<string, string> = {
  server: 'servers list',
  account: 'accounts list',
  project: 'projects list',
  principal: 'principals list',
  role: 'roles list',
  'role binding': 'bindings list',
  'patch policy': 'policies list',
  'patch plan': 'plan --policy <policy-id>',
  script: 'script list',
  'script run': 'runs list',
  runbook: 'runbook list',
  'runbook run': 'runbooks runs',
  credential: 'credentials list',
  'access request': 'access list',
  'access grant': 'grants list',
  'compliance standard': 'standards list',
  'API token': 'token list',
};

/** Words for the subjects validation errors name, instead of schema names. */
const SUBJECTS: Record<string, string> = {
  AccessRequestOptions: 'access request',
  AccessDecision: 'decision',
  Server: 'server',
  Project: 'project',
  Principal: 'principal',
  PatchPolicy: 'patch policy',
  ComplianceStandard: 'compliance standard',
  BindRoleOptions: 'role binding',
  RegisterCredentialInput: 'credential',
  PlanRunInput: 'script run',
  ScanOptions: 'scan',
};

function humanSubject(subject: string): string {
  if (SUBJECTS[subject]) return SUBJECTS[subject];
  // Already words (`server at servers.csv line 3`, `configuration file /etc/x.json`).
  if (/\s/.test(subject)) return subject;
  // `patchPolicies`, `ScriptRun.params`: split camel case into words.
  return subject
    .replace(/Schema$|Options$|Input$/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase();
}

/**
 * The error as the user should read it. Fleetward errors keep their code; validation errors name
 * the fields in words; system errors (a file that is not there) say what and where once; anything
 * else is an internal error with its message.
 */
export function describeError(error: unknown, principal: string): DescribedError {
  if (error instanceof ValidationError) {
    const problems = error.issues
      .slice(0, 8)
      .map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`)
      .join('; ');
    const hint = typeof error.details['hint'] === 'string' ? (error.details['hint'] as string) : undefined;
    return {
      code: error.code,
      message: `invalid ${humanSubject(error.subject)}: ${problems}${error.issues.length > 8 ? '; …' : ''}`,
      ...(hint ? { hint } : {}),
      details: { issues: error.issues },
    };
  }
  if (error instanceof NotFoundError) {
    const given = typeof error.details['hint'] === 'string' ? (error.details['hint'] as string) : undefined;
    const list = LIST_COMMAND[error.what];
    return {
      code: error.code,
      message: error.message,
      hint: given ?? (list ? `List them with: fleetward ${list}` : `Check the ${error.what} id.`),
      details: { what: error.what, id: error.id },
    };
  }
  if (error instanceof AuthorizationError) {
    return {
      code: error.code,
      message: error.message,
      hint: `You act as "${principal}" (--as, FLEETWARD_PRINCIPAL or "principal" in the configuration). A tenant admin can give it a role: fleetward bindings add ${principal} --role <role-id>; "fleetward principals show ${principal}" lists its roles.`,
    };
  }
  if (error instanceof FleetwardError) {
    const hint = typeof error.details['hint'] === 'string' ? (error.details['hint'] as string) : undefined;
    return { code: error.code, message: error.message, ...(hint ? { hint } : {}) };
  }
  const errno = error as NodeJS.ErrnoException;
  if (errno && typeof errno.code === 'string' && typeof errno.syscall === 'string') {
    const reasons: Record<string, string> = {
      ENOENT: 'no such file or folder',
      EACCES: 'permission denied',
      EEXIST: 'it exists already',
      EISDIR: 'it is a folder',
      ENOTDIR: 'a part of the path is not a folder',
      ELOOP: 'it is a symbolic link (refused)',
    };
    const where = errno.path ?? (errno as { dest?: string }).dest ?? '';
    return {
      code: errno.code,
      message: `cannot ${errno.syscall.replace(/^l?stat$/, 'read')} ${where}: ${reasons[errno.code] ?? errno.message}`,
    };
  }
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

/** Renders an error for a terminal or a log: `error: CODE message` and the hint. */
export function renderError(described: DescribedError, c: Colors): string {
  const lines = [`${c.red('error:')} ${described.message} (${described.code})`];
  if (described.hint) lines.push(`${c.dim('hint:')} ${described.hint}`);
  return `${lines.join('\n')}\n`;
}

/** The ids `-o id` prints when the command names none: `id` of the value or of its items. */
export function defaultIds(value: unknown): string[] {
  const idOf = (v: unknown) =>
    v && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string'
      ? [(v as { id: string }).id]
      : [];
  return Array.isArray(value) ? value.flatMap(idOf) : idOf(value);
}
