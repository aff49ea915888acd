import { basename } from 'node:path';
import { z } from 'zod';
import {
  OsFamilySchema,
  type Script,
  ScriptInterpreterSchema,
  ScriptNameSchema,
  ScriptParametersSchema,
} from '../domain/index.js';
import { toIssues } from '../domain/validate.js';
import { ValidationError, type ValidationIssue } from '../errors.js';
import {
  openFolder,
  readFileInFolder,
  removeFileInFolder,
  type SafeFolder,
  UnsafePathError,
  writeFileInFolder,
} from '../util/safe-fs.js';
import { fileSha256, normalizeSet, scriptContentHash, scriptFileSuffix } from './content.js';
import { AddScriptInputSchema, type ParsedScriptInput } from './repository.js';

/** The manifest's file name inside a repository folder. */
export const MANIFEST_FILE = 'fleetward-scripts.json';
const FORMAT = 'fleetward-scripts/1';
const SHA256 = /^[a-f0-9]{64}$/;
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const MAX_SCRIPT_BYTES = 1_000_000;

/**
 * A file name in the repository folder: one plain name, no folder, not hidden. Anything else
 * (`../x`, `/etc/passwd`, `a/b`) could make an import read outside the folder.
 */
const FileNameSchema = z
  .string()
  .refine(
    (f) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/.test(f) && basename(f) === f && !f.includes('..'),
    'must be a plain file name in the repository folder',
  );

export const ManifestEntrySchema = z.strictObject({
  name: ScriptNameSchema,
  /** The revision in the repository it was exported from (imports number their own). */
  revision: z.number().int().positive(),
  /** The version's content hash; an import recomputes it and refuses a mismatch. */
  contentHash: z.string().regex(SHA256),
  /** sha256 of the file's bytes; an import refuses a file that does not match. */
  sha256: z.string().regex(SHA256),
  file: FileNameSchema,
  interpreter: ScriptInterpreterSchema,
  osFamilies: z.array(OsFamilySchema.exclude(['unknown'])).default([]),
  parameters: ScriptParametersSchema,
  tags: z.array(z.string().min(1).max(64)).max(50).default([]),
  risky: z.boolean().default(false),
  runAsRoot: z.boolean().default(false),
  description: z.string().max(4000).optional(),
});
export type ManifestEntry = z.output<typeof ManifestEntrySchema>;

export const ManifestSchema = z.strictObject({
  format: z.literal(FORMAT),
  scripts: z.array(ManifestEntrySchema).max(10_000),
});
export type Manifest = z.output<typeof ManifestSchema>;

/** The file an export writes a script's body to. */
function scriptFileName(script: Pick<Script, 'name' | 'interpreter'>): string {
  return `${script.name}${scriptFileSuffix(script.interpreter)}`;
}

/** The manifest entry of a version, with the name of its file. */
export function manifestEntry(script: Script): ManifestEntry {
  return {
    name: script.name,
    revision: script.revision,
    contentHash: script.contentHash,
    sha256: fileSha256(script.body),
    file: scriptFileName(script),
    interpreter: script.interpreter,
    osFamilies: normalizeSet(script.osFamilies.filter((f) => f !== 'unknown')),
    parameters: script.parameters,
    tags: normalizeSet(script.tags),
    risky: script.risky,
    runAsRoot: script.runAsRoot,
    ...(script.description === undefined ? {} : { description: script.description }),
  };
}

async function readManifest(folder: SafeFolder): Promise<Manifest> {
  const missing = () =>
    new ValidationError('ScriptRepository', [
      {
        path: [MANIFEST_FILE],
        message: `no ${MANIFEST_FILE} in ${folder.path} (a symbolic link is not followed)`,
      },
    ]);
  let file: Awaited<ReturnType<typeof readFileInFolder>>;
  try {
    file = await readFileInFolder(folder, MANIFEST_FILE, { maxBytes: MAX_MANIFEST_BYTES });
  } catch (error) {
    if (error instanceof UnsafePathError) throw missing();
    if (error instanceof ValidationError) {
      throw new ValidationError('ScriptRepository', [
        { path: [MANIFEST_FILE], message: `is larger than ${MAX_MANIFEST_BYTES} bytes` },
      ]);
    }
    throw error;
  }
  if (!file) throw missing();
  let json: unknown;
  try {
    json = JSON.parse(file.bytes.toString('utf8'));
  } catch (error) {
    throw new ValidationError('ScriptRepository', [
      { path: [MANIFEST_FILE], message: `is not JSON: ${(error as Error).message}` },
    ]);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) throw new ValidationError('ScriptRepository', toIssues(parsed.error));
  return parsed.data;
}

/**
 * Reads a repository folder and checks all of it before anything is stored: the manifest's shape,
 * one entry per name, each file a plain regular file inside the folder (no path traversal, no
 * symbolic link) whose bytes have the manifest's sha256, valid UTF-8, and whose recomputed content
 * hash is the manifest's. Resolves the versions to add, in manifest order.
 *
 * @throws ValidationError listing every problem, with paths like `['scripts', 2, 'sha256']`.
 */
export async function readRepository(dir: string): Promise<ParsedScriptInput[]> {
  const folder = await openFolder(dir).catch((cause: unknown) => {
    throw new ValidationError(
      'ScriptRepository',
      [{ path: [MANIFEST_FILE], message: `no ${MANIFEST_FILE} in ${dir}: the folder cannot be opened` }],
      { cause },
    );
  });
  try {
    return await readRepositoryFolder(folder);
  } finally {
    await folder.close();
  }
}

async function readRepositoryFolder(folder: SafeFolder): Promise<ParsedScriptInput[]> {
  const manifest = await readManifest(folder);
  const issues: ValidationIssue[] = [];
  const inputs: ParsedScriptInput[] = [];
  const names = new Set<string>();
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  for (const [i, entry] of manifest.scripts.entries()) {
    const at = (field: string, message: string) => issues.push({ path: ['scripts', i, field], message });
    if (names.has(entry.name)) {
      at('name', `script ${entry.name} appears twice`);
      continue;
    }
    names.add(entry.name);
    let file: Awaited<ReturnType<typeof readFileInFolder>>;
    try {
      file = await readFileInFolder(folder, entry.file, { maxBytes: MAX_SCRIPT_BYTES });
    } catch (error) {
      if (error instanceof UnsafePathError && error.reason === 'not-a-plain-name') {
        at('file', 'must be a plain file name in the repository folder');
      } else if (error instanceof UnsafePathError) {
        at('file', `${entry.file} is missing or not a regular file (a symbolic link is not followed)`);
      } else if (error instanceof ValidationError) {
        at('file', `${entry.file} is larger than ${MAX_SCRIPT_BYTES} bytes`);
      } else throw error;
      continue;
    }
    if (!file) {
      at('file', `${entry.file} is missing or not a regular file (a symbolic link is not followed)`);
      continue;
    }
    const bytes = file.bytes;
    const sha256 = fileSha256(bytes);
    if (sha256 !== entry.sha256) {
      at('sha256', `${entry.file} has sha256 ${sha256}, the manifest says ${entry.sha256}`);
      continue;
    }
    let body: string;
    try {
      body = decoder.decode(bytes);
    } catch {
      at('file', `${entry.file} is not valid UTF-8`);
      continue;
    }
    const candidate = AddScriptInputSchema.safeParse({
      name: entry.name,
      interpreter: entry.interpreter,
      osFamilies: entry.osFamilies,
      body,
      parameters: entry.parameters,
      tags: entry.tags,
      risky: entry.risky,
      runAsRoot: entry.runAsRoot,
      ...(entry.description === undefined ? {} : { description: entry.description }),
    });
    if (!candidate.success) {
      for (const issue of toIssues(candidate.error))
        issues.push({ ...issue, path: ['scripts', i, ...issue.path] });
      continue;
    }
    const contentHash = scriptContentHash(candidate.data);
    if (contentHash !== entry.contentHash) {
      at(
        'contentHash',
        `the content of ${entry.name} hashes to ${contentHash}, the manifest says ${entry.contentHash}`,
      );
      continue;
    }
    inputs.push(candidate.data);
  }
  if (issues.length) throw new ValidationError('ScriptRepository', issues);
  return inputs;
}

/** What {@link writeRepository} may remove. */
export interface WriteRepositoryOptions {
  /**
   * Whether the file of an entry of the previous manifest, whose bytes still have the entry's
   * sha256, is a version this export could write again (the store holds that exact body). Without
   * it, nothing is removed.
   */
  isExportedVersion?: (entry: ManifestEntry) => Promise<boolean>;
}

/**
 * Writes `scripts` into `dir` as one file per script and the manifest, replacing an earlier
 * export in the same folder. Nothing is written through a link: a symbolic link (or a folder) at a
 * file's name is refused with an {@link UnsafePathError} naming it, and the folder is pinned once
 * opened. The manifest is written last, by rename, so a reader never sees a manifest whose files are
 * not all there.
 *
 * A file the previous manifest listed and this export no longer writes is removed only when it is
 * what an export wrote: the file name an export gives that script, a regular file (not a link)
 * whose bytes still have the manifest's sha256, of a version `isExportedVersion` vouches for. A
 * hand-edited manifest can therefore make an export remove nothing but a copy of a stored script.
 */
export async function writeRepository(
  dir: string,
  scripts: readonly Script[],
  options: WriteRepositoryOptions = {},
): Promise<Manifest> {
  const folder = await openFolder(dir, { create: true });
  try {
    const previous = await readManifest(folder).catch(() => undefined);
    const entries = [...scripts]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map(manifestEntry);
    for (const entry of entries) {
      const body = scripts.find((s) => s.name === entry.name)!.body;
      await writeFileInFolder(folder, entry.file, body, { mode: 0o666 });
    }
    const manifest: Manifest = { format: FORMAT, scripts: entries };
    await writeFileInFolder(folder, MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o666 });
    const kept = new Set(entries.map((e) => e.file));
    for (const old of previous?.scripts ?? []) {
      if (kept.has(old.file) || old.file !== scriptFileName(old)) continue;
      await removeExported(folder, old, options);
    }
    return manifest;
  } finally {
    await folder.close();
  }
}

async function removeExported(folder: SafeFolder, entry: ManifestEntry, options: WriteRepositoryOptions) {
  try {
    const file = await readFileInFolder(folder, entry.file, { maxBytes: MAX_SCRIPT_BYTES });
    if (!file || fileSha256(file.bytes) !== entry.sha256) return;
    if (!(await options.isExportedVersion?.(entry))) return;
    await removeFileInFolder(folder, entry.file, file.stats);
  } catch (error) {
    // A link, a non-file or an oversized file is not ours: leave it, the export itself is done.
    if (!(error instanceof ValidationError)) throw error;
  }
}
