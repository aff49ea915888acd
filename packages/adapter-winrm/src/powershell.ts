import type { Command } from '@fleetward/core';

/** cmd.exe's command-line limit; the PowerShell command line is kept under it. */
export const MAX_COMMAND_LINE = 8191;

/** Flags before `-EncodedCommand`: no profile, no prompts, scripts allowed for this process only. */
const POWERSHELL_FLAGS = ['-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass'] as const;

const DECODE =
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }';

/**
 * The constant part of every runner. The values come before it as single-quoted literal
 * assignments whose text holds only base64 characters, `_`, `=`, spaces and env names matching
 * `ENV_NAME_PATTERN`: no quote of any kind (PowerShell also ends a literal on the typographic
 * quotes ‘ ’ ‚ ‛), so nothing PowerShell could read as code. Each value is decoded from UTF-8
 * base64 into an argument or a process environment variable; the program runs with
 * `& $exe @args`, the call operator, which never parses its arguments as code. Standard input
 * arrives base64-encoded on one line of the command's stdin (sent with WS-Man `Send`).
 */
const RUNNER_LINES = [
  "$ErrorActionPreference = 'Stop'",
  // Text piped to a native program is encoded with $OutputEncoding: ASCII by default in 5.1.
  '$OutputEncoding = New-Object System.Text.UTF8Encoding $false',
  DECODE,
  "$fw_args = @(foreach ($fw_a in $fw_argv.Split(' ')) { if ($fw_a) { fw_dec ($fw_a.Substring(1)) } })",
  "foreach ($fw_e in $fw_env.Split(' ')) { if ($fw_e) { $fw_i = $fw_e.IndexOf('='); [System.Environment]::SetEnvironmentVariable($fw_e.Substring(0, $fw_i), (fw_dec ($fw_e.Substring($fw_i + 1))), 'Process') } }",
  '$fw_exe = $fw_args[0]',
  '$fw_rest = @(if ($fw_args.Count -gt 1) { $fw_args[1..($fw_args.Count - 1)] })',
  'Remove-Variable fw_argv, fw_env, fw_a, fw_e, fw_i -ErrorAction SilentlyContinue',
  '$global:LASTEXITCODE = $null',
  'try {',
  "  if ($fw_has_stdin -eq '1') { fw_dec ([Console]::In.ReadLine()) | & $fw_exe @fw_rest } else { & $fw_exe @fw_rest }",
  '  $fw_ok = $?',
  '} catch [System.Management.Automation.CommandNotFoundException] {',
  '  [Console]::Error.WriteLine($_.Exception.Message); exit 127',
  '} catch {',
  '  [Console]::Error.WriteLine($_.Exception.Message); exit 1',
  '}',
  // A native program sets $LASTEXITCODE; a cmdlet or script only reports success in $?.
  'if ($null -ne $LASTEXITCODE) { exit $LASTEXITCODE }',
  'if ($fw_ok) { exit 0 }',
  'exit 1',
] as const;

/**
 * Used when the runner itself would make the command line too long (very long argv or env): it
 * reads the runner, base64-encoded, from the first line of stdin and runs it in the same scope.
 */
const BOOTSTRAP_LINES = [DECODE, '. ([scriptblock]::Create((fw_dec ([Console]::In.ReadLine()))))'] as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** The PowerShell runner script of `command`: four base64 literal assignments, then `RUNNER_LINES`. */
export function buildRunnerScript(command: Command): string {
  const argv = 'interpreter' in command ? command.interpreter : command.argv;
  const stdin = 'interpreter' in command ? command.script : command.stdin;
  const env = Object.entries(command.env ?? {}).map(([name, value]) => `${name}=${b64(value)}`);
  return [
    `$fw_argv = '${argv.map((a) => `_${b64(a)}`).join(' ')}'`,
    `$fw_env = '${env.join(' ')}'`,
    `$fw_has_stdin = '${stdin === undefined ? '0' : '1'}'`,
    ...RUNNER_LINES,
  ].join('\r\n');
}

/** `-EncodedCommand`'s argument: base64 of the UTF-16LE script. */
export function encodePowerShell(script: string): string {
  return Buffer.from(script, 'utf16le').toString('base64');
}

/** The WinRS command line of one command, and what its stdin must carry. */
export interface PowerShellInvocation {
  /** `rsp:Command`. */
  program: string;
  /** `rsp:Arguments`, ending with `-EncodedCommand <base64>`. */
  arguments: string[];
  /** Lines for stdin (base64 text and CRLF), or undefined when the command reads nothing. */
  stdin: Buffer | undefined;
  /** Whether the runner travels on stdin because it did not fit the command line. */
  runnerOnStdin: boolean;
}

/**
 * How `command` runs as PowerShell on a Windows host: `-EncodedCommand` of the runner when the
 * command line stays under {@link MAX_COMMAND_LINE} characters, else of a small bootstrap that
 * reads the runner from stdin. The command's stdin (or script) always travels on stdin, base64 on
 * one line, so its length never counts against the command line.
 */
export function buildPowerShellInvocation(
  command: Command,
  powershell = 'powershell.exe',
): PowerShellInvocation {
  const input = 'interpreter' in command ? command.script : command.stdin;
  const runner = buildRunnerScript(command);
  const lineOf = (script: string) => [...POWERSHELL_FLAGS, '-EncodedCommand', encodePowerShell(script)];
  const direct = lineOf(runner);
  const inputLine = input === undefined ? '' : `${b64(input)}\r\n`;
  if ([powershell, ...direct].join(' ').length <= MAX_COMMAND_LINE) {
    return {
      program: powershell,
      arguments: direct,
      stdin: input === undefined ? undefined : Buffer.from(inputLine, 'ascii'),
      runnerOnStdin: false,
    };
  }
  return {
    program: powershell,
    arguments: lineOf(BOOTSTRAP_LINES.join('\r\n')),
    stdin: Buffer.from(`${b64(runner)}\r\n${inputLine}`, 'ascii'),
    runnerOnStdin: true,
  };
}

const CLIXML_MARK = '#< CLIXML';

function unescapeClixml(s: string): string {
  return s
    .replace(/_x([0-9A-Fa-f]{4})_/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .replace(/&(lt|gt|quot|apos|amp|#x[0-9A-Fa-f]+|#\d+);/g, (_, e: string) => {
      if (e === 'lt') return '<';
      if (e === 'gt') return '>';
      if (e === 'quot') return '"';
      if (e === 'apos') return "'";
      if (e === 'amp') return '&';
      const code = e.startsWith('#x') ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10);
      return String.fromCodePoint(code);
    });
}

/**
 * Turns PowerShell's serialized error stream (`#< CLIXML` followed by `<Objs>` with `<S S="Error">`
 * strings) into the text a console would show, chunk by chunk. A stream that does not start with
 * the marker passes through unchanged, and so does what is left at the end outside a complete
 * `<Objs>`. Progress records and other objects are dropped; `Error`,
 * `Warning`, `Verbose` and `Debug` strings are kept (the last three prefixed as PowerShell prints them).
 */
export class ClixmlDecoder {
  #mode: 'detect' | 'plain' | 'clixml' = 'detect';
  #pending = Buffer.alloc(0);

  /** Decoded bytes for `chunk` (may be empty while a CLIXML element is incomplete). */
  push(chunk: Buffer): Buffer {
    if (this.#mode === 'plain') return chunk;
    this.#pending = Buffer.concat([this.#pending, chunk]);
    if (this.#mode === 'detect') {
      const head = this.#pending.subarray(0, CLIXML_MARK.length).toString('utf8');
      if (!CLIXML_MARK.startsWith(head)) {
        this.#mode = 'plain';
        return this.#take(this.#pending.length);
      }
      if (head.length < CLIXML_MARK.length) return Buffer.alloc(0);
      this.#mode = 'clixml';
    }
    return this.#decodeComplete();
  }

  /** What is left at the end of the stream. */
  end(): Buffer {
    if (this.#mode === 'clixml') {
      const out = this.#decodeComplete();
      // Whatever is not part of a complete `<Objs>` (a cut stream, text that only looked like
      // CLIXML) is shown as it came rather than lost.
      const rest = this.#take(this.#pending.length);
      return rest.toString('utf8').trim() === '' ? out : Buffer.concat([out, rest]);
    }
    return this.#take(this.#pending.length);
  }

  #take(n: number): Buffer {
    const out = this.#pending.subarray(0, n);
    this.#pending = this.#pending.subarray(n);
    return out;
  }

  #decodeComplete(): Buffer {
    const text = this.#pending.toString('latin1');
    const pattern = /<S S="(Error|Warning|Verbose|Debug)">([\s\S]*?)<\/S>/g;
    let out = '';
    let consumed = 0;
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      const body = unescapeClixml(Buffer.from(m[2] ?? '', 'latin1').toString('utf8'));
      const prefix = m[1] === 'Error' ? '' : `${(m[1] ?? '').toUpperCase()}: `;
      out += prefix + body;
      consumed = pattern.lastIndex;
    }
    const lastClose = text.lastIndexOf('</Objs>');
    if (lastClose >= consumed) consumed = lastClose + '</Objs>'.length;
    this.#pending = this.#pending.subarray(consumed);
    return Buffer.from(out, 'utf8');
  }
}
