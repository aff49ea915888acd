import type { WinRmFakeCommand, WinRmFakeCommandResult, WinRmFakeOptions } from './types.js';

/**
 * Splits a Windows command line into words the way most programs' argv parsing does for simple
 * input: whitespace separates, double quotes group. Enough to find the program and its flags.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/"([^"]*)"|(\S+)/g)) words.push(match[1] ?? match[2] ?? '');
  return words;
}

/**
 * The script of `powershell[.exe] … -EncodedCommand <base64 of UTF-16LE>` (any unambiguous prefix
 * of the flag, `-` or `/`, as PowerShell accepts), or undefined when the command line is not one.
 */
export function decodePowerShellCommand(commandLine: string): string | undefined {
  const words = splitCommandLine(commandLine);
  const program = (words[0] ?? '')
    .split(/[\\/]/)
    .pop()
    ?.toLowerCase()
    .replace(/\.exe$/, '');
  if (program !== 'powershell' && program !== 'pwsh') return undefined;
  for (let i = 1; i < words.length - 1; i++) {
    const flag = (words[i] as string).toLowerCase();
    if (!/^[-/]/.test(flag)) continue;
    const name = flag.slice(1);
    if (name === 'e' || name === 'ec' || (name.length >= 2 && 'encodedcommand'.startsWith(name))) {
      return Buffer.from(words[i + 1] as string, 'base64').toString('utf16le');
    }
  }
  return undefined;
}

/** Runs one command as the fake's host: the PowerShell hook, then `run`, then the cmd.exe built-ins. */
export async function runCommand(
  command: WinRmFakeCommand,
  options: WinRmFakeOptions,
): Promise<WinRmFakeCommandResult> {
  const commandLine = [command.command, ...command.arguments].join(' ');
  try {
    const script = options.powershell ? decodePowerShellCommand(commandLine) : undefined;
    if (script !== undefined && options.powershell) return await options.powershell(script, command);
    return (await options.run?.(command)) ?? builtinCmd(commandLine);
  } catch (error) {
    return { stderr: `${error instanceof Error ? error.message : String(error)}\r\n`, exitCode: 1 };
  }
}

/**
 * A tiny cmd.exe: `[cmd /c] echo <text> [1>&2]`, `exit [/b] <n>`, joined with `&`. Anything else
 * gets cmd.exe's "is not recognized" message and exit code 1.
 */
export function builtinCmd(commandLine: string): WinRmFakeCommandResult {
  let line = commandLine.trim();
  const shell = line.match(/^cmd(?:\.exe)?\s+\/[ckCK]\s+/i);
  if (shell) line = line.slice(shell[0].length);
  let stdout = '';
  let stderr = '';
  let exitCode = 0;
  for (const part of line.split(/\s&&?\s/)) {
    const segment = part.trim();
    const exit = segment.match(/^exit(?:\s+\/b)?(?:\s+(-?\d+))?$/i);
    if (exit) return { stdout, stderr, exitCode: Number(exit[1] ?? exitCode) };
    const echo = segment.match(/^echo(?:\s+|\.)([\s\S]*?)(\s*1?>&2)?$/i);
    if (echo) {
      if (echo[2]) stderr += `${echo[1]}\r\n`;
      else stdout += `${echo[1]}\r\n`;
      exitCode = 0;
      continue;
    }
    const name = splitCommandLine(segment)[0] ?? segment;
    stderr += `'${name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n`;
    exitCode = 1;
  }
  return { stdout, stderr, exitCode };
}

/** A piece of a command's output, in the order the host wrote it. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/**
 * What a command has written and not yet been received, and how it ended: the buffer between the
 * emulated host (a hook's result, or a child process's pipes) and `Receive`.
 */
export class CommandOutput {
  #chunks: OutputChunk[] = [];
  #pendingBytes = 0;
  #exitCode: number | undefined;
  #waiters = new Set<() => void>();
  #drained: (() => void) | undefined;

  /** Bytes written and not yet taken. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** The exit code once the command ended (its output may still be pending), else undefined. */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** Appends what the command wrote; nothing once it ended. */
  push(stream: OutputChunk['stream'], data: Buffer): void {
    if (data.length === 0 || this.#exitCode !== undefined) return;
    this.#chunks.push({ stream, data });
    this.#pendingBytes += data.length;
    this.#wake();
  }

  /** The command ended; later output is dropped. Only the first call counts. */
  finish(exitCode: number): void {
    if (this.#exitCode !== undefined) return;
    this.#exitCode = exitCode;
    this.#wake();
  }

  /** Called after every `take`, so that a paused producer can check `pendingBytes` and resume. */
  onDrained(listener: () => void): void {
    this.#drained = listener;
  }

  /** Resolves true as soon as there is output to take or the command ended, false after `ms`. */
  async wait(ms: number): Promise<boolean> {
    if (this.#ready()) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(ready);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      timer.unref();
      this.#waiters.add(wake);
    });
  }

  /** Takes at most `maxBytes` of pending output, oldest first (a chunk is split if it must). */
  take(maxBytes: number): OutputChunk[] {
    const taken: OutputChunk[] = [];
    let room = maxBytes;
    while (room > 0 && this.#chunks.length > 0) {
      const head = this.#chunks[0] as OutputChunk;
      if (head.data.length <= room) {
        this.#chunks.shift();
        taken.push(head);
        room -= head.data.length;
      } else {
        taken.push({ stream: head.stream, data: head.data.subarray(0, room) });
        head.data = head.data.subarray(room);
        room = 0;
      }
    }
    this.#pendingBytes -= maxBytes - room;
    this.#drained?.();
    return taken;
  }

  #ready(): boolean {
    return this.#chunks.length > 0 || this.#exitCode !== undefined;
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** Runs `command` with {@link runCommand} into a new {@link CommandOutput}. */
export function runIntoOutput(command: WinRmFakeCommand, options: WinRmFakeOptions): CommandOutput {
  const output = new CommandOutput();
  void runCommand(command, options).then((result) => {
    output.push('stdout', toBuffer(result.stdout));
    output.push('stderr', toBuffer(result.stderr));
    output.finish(result.exitCode ?? 0);
  });
  return output;
}

function toBuffer(data: Buffer | string | undefined): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : (data ?? Buffer.alloc(0));
}
