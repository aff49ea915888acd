import { createHash } from 'node:crypto';
import type { OsFamily, Script, ScriptInterpreter, ScriptParameter, Server } from '../domain/index.js';
import { ScriptParametersSchema } from '../domain/index.js';
import type { ScriptCommand } from '../ports/adapter.js';
import { canonicalJson } from '../util/canonical-json.js';
import { versionId } from './versioned.js';

/** What a version says; its content hash is computed over exactly this. */
export interface ScriptContent {
  interpreter: ScriptInterpreter;
  body: string;
  osFamilies: readonly OsFamily[];
  parameters: readonly ScriptParameter[];
  tags: readonly string[];
  risky: boolean;
  runAsRoot: boolean;
  description?: string | undefined;
}

/** Sorted, without repeats: the order of tags or families says nothing, so it must not change a hash. */
export const normalizeSet = <T extends string>(values: readonly T[]): T[] => [...new Set(values)].sort();

/**
 * The content hash of a version: sha256 over the canonical JSON of everything it says (body,
 * interpreter, OS families, parameters with their defaults filled in, tags, risk, root and
 * description). Equal content gives an equal hash whatever order fields or tags were given in.
 */
export function scriptContentHash(content: ScriptContent): string {
  const document = {
    format: 'fleetward-script/1',
    interpreter: content.interpreter,
    body: content.body,
    osFamilies: normalizeSet(content.osFamilies),
    parameters: ScriptParametersSchema.parse(content.parameters),
    tags: normalizeSet(content.tags),
    risky: content.risky,
    runAsRoot: content.runAsRoot,
    description: content.description,
  };
  return createHash('sha256').update(canonicalJson(document)).digest('hex');
}

/** The entity id of a version: `name:revision`. */
export const scriptVersionId: (name: string, revision: number) => string = versionId;

/** sha256 (hex) of a file's bytes, as the repository manifest records it. */
export const fileSha256 = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Runs the script from a private temporary file rather than from standard input: a script fed on
 * stdin (`bash -s`) would hand the rest of its own text to the first command that reads stdin.
 * The wrapper is constant text; the script and its parameters never become part of it.
 */
const POSIX_WRAPPER = [
  'umask 077',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
  'd=$(mktemp -d "${TMPDIR:-/tmp}/fleetward-script.XXXXXXXXXX") || { echo "fleetward: cannot create a temporary directory" >&2; exit 125; }',
  'trap \'rm -rf "$d"\' EXIT',
  'trap \'rm -rf "$d"; exit 143\' HUP INT TERM',
  'f="$d/script$1"',
  'shift',
  'cat >"$f" || { echo "fleetward: cannot write the script to $f" >&2; exit 125; }',
  '"$@" "$f" </dev/null',
].join('\n');

const POSIX_INTERPRETERS: Record<ScriptInterpreter, { argv: string[]; suffix: string }> = {
  bash: { argv: ['bash'], suffix: '.sh' },
  sh: { argv: ['sh'], suffix: '.sh' },
  python: { argv: ['python3'], suffix: '.py' },
  powershell: { argv: ['pwsh', '-NoProfile', '-NonInteractive', '-File'], suffix: '.ps1' },
};

/** The file name suffix of a script in an exported repository. */
export const scriptFileSuffix = (interpreter: ScriptInterpreter) => POSIX_INTERPRETERS[interpreter].suffix;

/** Interpreters that run through the POSIX wrapper and so cannot target Windows. */
export const POSIX_ONLY: ReadonlySet<ScriptInterpreter> = new Set(['bash', 'sh', 'python']);

/**
 * The command that runs `script` on `server` with `env` (parameters and the `FLEETWARD_*`
 * variables). PowerShell on Windows reads the script on standard input; everything else runs
 * through a constant `sh -c` wrapper that writes the script to a private temporary file and runs
 * the interpreter on that file.
 */
export function scriptCommand(script: Script, server: Server, env: Record<string, string>): ScriptCommand {
  if (script.interpreter === 'powershell' && server.os?.family === 'windows') {
    return {
      interpreter: [
        'powershell.exe',
        '-NoProfile',
        '-NonInteractive',
        '-ExecutionPolicy',
        'Bypass',
        '-Command',
        '-',
      ],
      script: script.body,
      env,
      sudo: false,
    };
  }
  const { argv, suffix } = POSIX_INTERPRETERS[script.interpreter];
  return {
    interpreter: ['sh', '-c', POSIX_WRAPPER, 'fleetward-script', suffix, ...argv],
    script: script.body,
    env,
    sudo: script.runAsRoot,
  };
}
