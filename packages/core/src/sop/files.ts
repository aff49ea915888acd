import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
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

/** The manifest entry of a version, with the name of its file. */
export function manifestEntry(script: Script): ManifestEntry {
  return {
    name: script.name,
    revision: script.revision,
    contentHash: script.contentHash,
    sha256: fileSha256(script.body),
    file: `${script.name}${scriptFileSuffix(script.interpreter)}`,
    interpreter: script.interpreter,
    osFamilies: normalizeSet(script.osFamilies.filter((f) => f !== 'unknown')),
    parameters: script.parameters,
    tags: normalizeSet(script.tags),
    risky: script.risky,
    runAsRoot: script.runAsRoot,
    ...(script.description === undefined ? {} : { description: script.description }),
  };
}

async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  const info = await lstat(path).catch(() => undefined);
  if (!info?.isFile()) {
    throw new ValidationError('ScriptRepository', [
      { path: [MANIFEST_FILE], message: `no ${MANIFEST_FILE} in ${dir} (a symbolic link is not followed)` },
    ]);
  }
  if (info.size > MAX_MANIFEST_BYTES) {
    throw new ValidationError('ScriptRepository', [
      { path: [MANIFEST_FILE], message: `is larger than ${MAX_MANIFEST_BYTES} bytes` },
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
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
  const root = resolve(dir);
  const manifest = await readManifest(root);
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
    const path = resolve(root, entry.file);
    if (resolve(path, '..') !== root) {
      at('file', 'must be a plain file name in the repository folder');
      continue;
    }
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isFile()) {
      at('file', `${entry.file} is missing or not a regular file (a symbolic link is not followed)`);
      continue;
    }
    if (info.size > MAX_SCRIPT_BYTES) {
      at('file', `${entry.file} is larger than ${MAX_SCRIPT_BYTES} bytes`);
      continue;
    }
    const bytes = await readFile(path);
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

/**
 * Writes `scripts` into `dir` as one file per script and the manifest, replacing an earlier
 * export in the same folder: files the previous manifest listed that are no longer exported are
 * removed (nothing else is touched). The manifest is written last, by rename, so a reader never
 * sees a manifest whose files are not all there.
 */
export async function writeRepository(dir: string, scripts: readonly Script[]): Promise<Manifest> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true });
  const previous = await readManifest(root).catch(() => undefined);
  const entries = [...scripts]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(manifestEntry);
  for (const entry of entries) {
    await writeFile(join(root, entry.file), scripts.find((s) => s.name === entry.name)!.body, 'utf8');
  }
  const manifest: Manifest = { format: FORMAT, scripts: entries };
  const temporary = join(root, `.${MANIFEST_FILE}.${process.pid}.tmp`);
  await writeFile(temporary, `${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
  await rename(temporary, join(root, MANIFEST_FILE));
  const kept = new Set(entries.map((e) => e.file));
  for (const old of previous?.scripts ?? []) {
    if (!kept.has(old.file)) await rm(join(root, old.file), { force: true });
  }
  return manifest;
}
