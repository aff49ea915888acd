import { isReservedKey, type Version } from '@fleetward/core';
import { InvalidArgumentError, Option } from 'commander';
import { renderTable } from './table.js';

/**
 * Versioned content on the command line: what the script and runbook commands share about naming
 * a version, passing parameters and printing versions and runs (see `@fleetward/core`'s
 * `sop/versioned.ts` for what a version is).
 */

/**
 * `--version <revision-or-hash>`: use that version instead of the current one. Read its value
 * with `versionOptions` from `@fleetward/core`.
 */
export function versionOption(): Option {
  return new Option('--version <revision-or-hash>', 'this version instead of the current one');
}

/**
 * `NAME=value`, repeatable, into a record: parameters of a script or runbook run (`-p`), or the
 * environment variables holding them (`-e`). A reserved name (`__proto__`, `constructor`,
 * `prototype`) is a usage error, never silently dropped.
 */
export function parameterValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError(`"${value}" is not NAME=value`);
  const name = value.slice(0, eq);
  if (isReservedKey(name)) throw new InvalidArgumentError(`${JSON.stringify(name)} is a reserved name`);
  return { ...previous, [name]: value.slice(eq + 1) };
}

/** Enough of a content hash to tell versions apart in a table or a line. */
const shortHash = (contentHash: string): string => contentHash.slice(0, 12);

/** `revision <n> (<short hash>)`: a version as a line of text names it. */
export function revisionLabel(version: Pick<Version, 'revision' | 'contentHash'>): string {
  return `revision ${version.revision} (${shortHash(version.contentHash)})`;
}

/** `<name> revision <n>, hash <hash>`: the version now current, once a version was added. */
export function currentVersionLine(version: Version): string {
  return `${version.name} revision ${version.revision}, hash ${version.contentHash}`;
}

/** The columns of a version table after NAME, REV and HASH: header → the cell of a version. */
export type VersionColumns<T extends Version> = Record<string, (version: T) => string>;

/** The current versions as a `list` command shows them: NAME, REV, HASH and then `columns`. */
export function versionsTable<T extends Version>(versions: readonly T[], columns: VersionColumns<T>): string {
  const cells = Object.values(columns);
  return renderTable(
    ['NAME', 'REV', 'HASH', ...Object.keys(columns)],
    versions.map((v) => [
      v.name,
      String(v.revision),
      shortHash(v.contentHash),
      ...cells.map((cell) => cell(v)),
    ]),
  );
}

/** What a run says about the version it runs and how it went. */
export interface RunOfVersion {
  id: string;
  revision: number;
  contentHash: string;
  status: string;
  reason?: string | undefined;
}

/** `Run <id> of <name> revision <n> (<short hash>): <status>[ — <reason>]`: a run summary's first line. */
export function runHeading(run: RunOfVersion, name: string): string {
  return `Run ${run.id} of ${name} ${revisionLabel(run)}: ${run.status}${run.reason ? ` — ${run.reason}` : ''}`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * Text a server wrote (a script's output), made safe to show on a terminal: control characters
 * other than newline and tab become `?` (escape sequences could move the cursor, retitle the
 * window or rewrite what was printed before); a CRLF line end becomes a newline.
 */
export function terminalSafe(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(CONTROL, '?');
}
