import type { Command } from '@fleetward/core';
import { buildPowerShellRunner } from '@fleetward/core/os';

/** cmd.exe's command-line limit; the PowerShell command line is kept under it. */
export const MAX_COMMAND_LINE = 8191;

/** Flags before `-EncodedCommand`: no profile, no prompts, scripts allowed for this process only. */
const POWERSHELL_FLAGS = ['-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass'] as const;

const DECODE =
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }';

/**
 * Used when the runner itself would make the command line too long (very long argv or env): it
 * reads the runner, base64-encoded, from the first line of stdin and runs it in the same scope.
 */
const BOOTSTRAP_LINES = [DECODE, '. ([scriptblock]::Create((fw_dec ([Console]::In.ReadLine()))))'] as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * The PowerShell runner script of `command`, CRLF-separated: core's runner (`buildPowerShellRunner`
 * of `@fleetward/core/os`, which explains why no value can become code) reading its standard input
 * base64-encoded from the first line of the process's stdin, sent with WS-Man `Send`.
 */
export function buildRunnerScript(command: Command): string {
  return buildPowerShellRunner(command, { stdin: 'stdin-line' }).join('\r\n');
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
