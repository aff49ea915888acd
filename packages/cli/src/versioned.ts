import type { Version } from '@fleetward/core';
import { Option } from 'commander';
import { renderTable } from './table.js';

/**
 * Versioned content on the command line: what the script and runbook commands share about naming
 * a version and printing versions (see `@fleetward/core`'s `sop/versioned.ts` for what a version is).
 */

/**
 * `--version <revision-or-hash>`: use that version instead of the current one. Read its value
 * with `versionOptions` from `@fleetward/core`.
 */
export function versionOption(): Option {
  return new Option('--version <revision-or-hash>', 'this version instead of the current one');
}

/** Enough of a content hash to tell versions apart in a table or a line. */
const shortHash = (contentHash: string): string => contentHash.slice(0, 12);

/** `revision <n> (<short hash>)`: a version as a line of text names it. */
export function revisionLabel(version: Pick<Version, 'revision' | 'contentHash'>): string {
  return `revision ${version.revision} (${shortHash(version.contentHash)})`;
}

/** `<name> revision <n>, hash <hash>`: the version now current, once a version was added. */
export function currentVersionLine(version: Version): string {
  return `${version.name} revision ${version.revision}, hash ${version.contentHash}\n`;
}

/** The columns of a version table after NAME, REV and HASH: header → the cell of a version. */
export type VersionColumns<T extends Version> = Record<string, (version: T) => string>;

/**
 * The current versions as a `list` command prints them: JSON with `json`, otherwise a table of
 * NAME, REV, HASH and then `columns`.
 */
export function formatVersions<T extends Version>(
  versions: readonly T[],
  options: { json?: boolean | undefined; columns: VersionColumns<T> },
): string {
  if (options.json) return `${JSON.stringify(versions, null, 2)}\n`;
  const cells = Object.values(options.columns);
  const table = renderTable(
    ['NAME', 'REV', 'HASH', ...Object.keys(options.columns)],
    versions.map((v) => [
      v.name,
      String(v.revision),
      shortHash(v.contentHash),
      ...cells.map((cell) => cell(v)),
    ]),
  );
  return `${table}\n`;
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
