/**
 * Running the packaging tools: argv only (never a shell), a fixed C locale so their output is
 * parseable, and errors that carry the command line and stderr.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';

/** What a finished tool run produced. */
export interface ToolResult {
  /** The argv that ran, for error messages and capture READMEs. */
  argv: string[];
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@link runTool}. */
export interface RunToolOptions {
  /** Extra environment; merged over the process environment and the fixed locale. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Exit codes that are not failures (e.g. `[0, 100]` for `dnf check-update`). @default [0] */
  okCodes?: readonly number[];
  /** @default 120_000 */
  timeoutMs?: number;
}

const MAX_BUFFER = 64 * 1024 * 1024;

/**
 * Runs `file` with `args` (no shell) and resolves with its output. Rejects when it cannot be
 * started, times out, or exits with a code outside `okCodes`.
 */
export function runTool(
  file: string,
  args: readonly string[],
  options: RunToolOptions = {},
): Promise<ToolResult> {
  const okCodes = options.okCodes ?? [0];
  const argv = [file, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        // LC_ALL wins over a caller's LANG, which would otherwise translate tool output.
        env: { ...process.env, LANG: 'C.UTF-8', LANGUAGE: 'C', ...options.env, LC_ALL: 'C.UTF-8' },
        maxBuffer: MAX_BUFFER,
        timeout: options.timeoutMs ?? 120_000,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        const rawCode = (error as { code?: unknown } | null)?.code;
        const code = error === null ? 0 : typeof rawCode === 'number' ? rawCode : -1;
        const result: ToolResult = { argv, code, stdout, stderr };
        if (okCodes.includes(code)) {
          resolve(result);
          return;
        }
        const why =
          code === -1
            ? (error?.message ?? 'failed to run')
            : `exited with ${code}${error?.killed ? ' (killed)' : ''}`;
        reject(new ToolError(`${formatArgv(argv)} ${why}\n${tail(stderr || stdout)}`, result));
      },
    );
  });
}

/** A tool run that failed; `result` keeps the full output. */
export class ToolError extends Error {
  override readonly name = 'ToolError';
  constructor(
    message: string,
    readonly result: ToolResult,
  ) {
    super(message);
  }
}

/** Quotes an argv for humans (error messages, READMEs); never fed to a shell. */
export function formatArgv(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`))
    .join(' ');
}

function tail(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** A tiny promise pool: at most `limit` tasks run at once, in submission order. */
export function createLimiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  const next = (): void => {
    if (active >= limit) return;
    const start = queue.shift();
    if (start) {
      active++;
      start();
    }
  };
  return <T>(task: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        task()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}

/**
 * Replaces `path` with `data` via a sibling temp file and rename, so a client reading the
 * repository while it is republished sees the old file or the new one, never half of one.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, data, { mode: 0o644 });
    await chmod(tmp, 0o644);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
