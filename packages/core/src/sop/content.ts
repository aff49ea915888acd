import { createHash } from 'node:crypto';
import type { OsFamily, Script, ScriptInterpreter, ScriptParameter, Server } from '../domain/index.js';
import { ScriptParametersSchema } from '../domain/index.js';
import { isWindowsServer } from '../engine/scan.js';
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
 * The first line of {@link POWERSHELL_FILE_WRAPPER}, by which a host emulation recognises it.
 */
const POWERSHELL_FILE_MARKER = '# fleetward:powershell-file v1';

/**
 * The Windows counterpart of `POSIX_WRAPPER`, run with `-EncodedCommand` (which runs a script
 * block whole, unlike `-Command -`). It copies standard input byte for byte into a new
 * `%TEMP%\fleetward-<guid>.ps1` behind a UTF-8 byte order mark (without it Windows PowerShell 5.1
 * reads a script file in the ANSI code page), and runs that file with `-File`, which inherits the
 * environment. The bytes are not decoded on the way: `[Console]::In` would decode them with the
 * console's OEM code page. After writing, the file is opened again without write or delete
 * sharing and compared with what was written: a file swapped in between is refused, and it
 * cannot be swapped while it runs. No cmdlet is used, so nothing is loaded from `PSModulePath`.
 * Exit code: the script's, or 125 when the file could not be prepared or PowerShell not started.
 */
const POWERSHELL_FILE_WRAPPER = [
  POWERSHELL_FILE_MARKER,
  '$fw_code = 125',
  '$fw_file = $null',
  '$fw_hold = $null',
  'try {',
  '  $fw_data = [System.IO.MemoryStream]::new()',
  '  $fw_data.Write([byte[]](0xEF, 0xBB, 0xBF), 0, 3)',
  '  [Console]::OpenStandardInput().CopyTo($fw_data)',
  '  $fw_bytes = $fw_data.ToArray()',
  "  $fw_path = [System.IO.Path]::Combine([System.IO.Path]::GetTempPath(), 'fleetward-' + [guid]::NewGuid().ToString() + '.ps1')",
  "  $fw_out = [System.IO.File]::Open($fw_path, 'CreateNew', 'Write', 'None')",
  '  $fw_file = $fw_path',
  '  try { $fw_out.Write($fw_bytes, 0, $fw_bytes.Length) } finally { $fw_out.Dispose() }',
  "  $fw_hold = [System.IO.File]::Open($fw_file, 'Open', 'Read', 'Read')",
  '  $fw_back = [System.IO.MemoryStream]::new()',
  '  $fw_hold.CopyTo($fw_back)',
  '  if ([Convert]::ToBase64String($fw_back.ToArray()) -cne [Convert]::ToBase64String($fw_bytes)) {',
  '    throw "the temporary script file $fw_file changed after it was written"',
  '  }',
  "  & ([System.IO.Path]::Combine($PSHOME, 'powershell.exe')) -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File $fw_file",
  '  $fw_code = $LASTEXITCODE',
  '} catch {',
  "  [Console]::Error.WriteLine('fleetward: ' + $_.Exception.Message)",
  '} finally {',
  '  if ($fw_hold) { $fw_hold.Dispose() }',
  '  if ($fw_file) { [System.IO.File]::Delete($fw_file) }',
  '}',
  'exit $fw_code',
].join('\n');

/** `-EncodedCommand`'s argument for {@link POWERSHELL_FILE_WRAPPER}: base64 of its UTF-16LE text. */
const POWERSHELL_FILE_WRAPPER_ENCODED = Buffer.from(POWERSHELL_FILE_WRAPPER, 'utf16le').toString('base64');

/**
 * The command that runs `script` on `server` with `env` (parameters and the `FLEETWARD_*`
 * variables). Both ways run the script from a private temporary file, with the script's text as
 * the command's standard input and its parameters only in the environment: the command line is
 * constant text that no value ever becomes part of.
 *
 * - PowerShell on a Windows server (its OS family is `windows`, or it is reached over WinRM before
 *   its OS was detected: see `isWindowsServer`) runs as `powershell.exe … -EncodedCommand` of a
 *   constant wrapper that writes standard input to `%TEMP%\fleetward-<guid>.ps1` (UTF-8 with a
 *   byte order mark), runs it with `powershell.exe -File`, deletes it and exits with its exit code.
 *   Not `-Command -`: that runs standard input statement by statement, a multi-line block runs
 *   only once a blank line follows it (PowerShell issue #3223) and prompts and `$input` read the
 *   same stream. The argv holds only flags and base64, no quote, so Windows PowerShell 5.1's
 *   re-quoting of native arguments cannot change it. It never uses `sudo`: it runs as the login.
 * - Everything else runs through a constant `sh -c` wrapper that writes the script to a private
 *   temporary directory and runs the interpreter on that file, through `sudo` when the script
 *   runs as root.
 */
export function scriptCommand(script: Script, server: Server, env: Record<string, string>): ScriptCommand {
  if (script.interpreter === 'powershell' && isWindowsServer(server)) {
    return {
      interpreter: [
        'powershell.exe',
        '-NoLogo',
        '-NoProfile',
        '-NonInteractive',
        '-ExecutionPolicy',
        'Bypass',
        '-EncodedCommand',
        POWERSHELL_FILE_WRAPPER_ENCODED,
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
