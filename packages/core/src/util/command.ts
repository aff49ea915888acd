import { ValidationError, type ValidationIssue } from '../errors.js';
import type { Command } from '../ports/adapter.js';

/** Environment variable names a command may set. */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

function isScript(command: Command): command is Extract<Command, { interpreter: readonly string[] }> {
  return 'interpreter' in command;
}

function checkWords(
  words: unknown,
  field: 'argv' | 'interpreter',
  issues: ValidationIssue[],
): words is readonly string[] {
  if (!Array.isArray(words)) {
    issues.push({ path: [field], message: 'must be an array of strings' });
    return false;
  }
  if (words.length === 0) {
    issues.push({ path: [field], message: 'must not be empty' });
    return false;
  }
  words.forEach((word: unknown, i) => {
    if (typeof word !== 'string') issues.push({ path: [field, i], message: 'must be a string' });
    else if (word.includes('\0')) issues.push({ path: [field, i], message: 'must not contain NUL bytes' });
  });
  // An empty program name would make the OS look up "" on PATH; never what the caller meant.
  if (words[0] === '') issues.push({ path: [field, 0], message: 'program name must not be empty' });
  return true;
}

/**
 * Checks that a command can be delivered exactly as written: argv and interpreter are non-empty
 * with no NUL bytes (NUL cannot cross `execve`, so the program would see a different string), and
 * environment names and values are ones every POSIX system can carry.
 *
 * @throws ValidationError (subject `Command`) listing every problem with its field path, e.g.
 *   `['argv', 2]` or `['env', 'BAD-NAME']`.
 */
export function validateCommand(command: Command): void {
  const issues: ValidationIssue[] = [];
  if (typeof command !== 'object' || command === null) {
    throw new ValidationError('Command', [{ path: [], message: 'must be an object' }]);
  }
  if (isScript(command)) {
    if ('argv' in command)
      issues.push({ path: ['argv'], message: 'a script command must not also have argv' });
    checkWords(command.interpreter, 'interpreter', issues);
    if (typeof command.script !== 'string') issues.push({ path: ['script'], message: 'must be a string' });
  } else {
    checkWords((command as { argv?: unknown }).argv, 'argv', issues);
    if (command.stdin !== undefined && typeof command.stdin !== 'string') {
      issues.push({ path: ['stdin'], message: 'must be a string' });
    }
  }
  if (command.sudo !== undefined && typeof command.sudo !== 'boolean') {
    issues.push({ path: ['sudo'], message: 'must be a boolean' });
  }
  if (command.env !== undefined) {
    if (typeof command.env !== 'object' || command.env === null || Array.isArray(command.env)) {
      issues.push({ path: ['env'], message: 'must be an object of strings' });
    } else {
      for (const [name, value] of Object.entries(command.env)) {
        if (!ENV_NAME_PATTERN.test(name)) {
          issues.push({ path: ['env', name], message: 'name must match ^[A-Za-z_][A-Za-z0-9_]*$' });
        }
        if (typeof value !== 'string')
          issues.push({ path: ['env', name], message: 'value must be a string' });
        else if (value.includes('\0'))
          issues.push({ path: ['env', name], message: 'value must not contain NUL bytes' });
      }
    }
  }
  if (issues.length > 0) throw new ValidationError('Command', issues);
}

/**
 * Quotes one word for a POSIX `sh` command line, so that the shell hands it to the program
 * unchanged: words made only of `[A-Za-z0-9_@%+=:,./-]` stay bare, anything else is wrapped in
 * single quotes with each `'` written as `'\''`. The empty string becomes `''`.
 *
 * Safe for argument positions. For a whole command line use {@link quoteArgv}, which also guards
 * the command word.
 *
 * @throws ValidationError when `s` contains a NUL byte, which no shell word can carry.
 */
export function quoteShellArg(s: string): string {
  if (s.includes('\0')) {
    throw new ValidationError('Command', [{ path: [], message: 'a shell word must not contain NUL bytes' }]);
  }
  if (SAFE_WORD.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Quotes an argv as one POSIX `sh` command line (for transports such as SSH that can only send a
 * string), so that the shell runs `argv[0]` with exactly the other elements as arguments.
 *
 * @throws ValidationError when `argv` is empty or an element contains a NUL byte (path `[index]`).
 */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) {
    throw new ValidationError('Command', [{ path: [], message: 'argv must not be empty' }]);
  }
  return argv
    .map((word, i) => {
      if (word.includes('\0')) {
        throw new ValidationError('Command', [{ path: [i], message: 'must not contain NUL bytes' }]);
      }
      // The command word is always quoted: bare, `FOO=bar` would be read as an assignment and
      // `if`, `while`, ... as reserved words (and aliases could apply), instead of a program name.
      return i === 0 ? `'${word.replaceAll("'", `'\\''`)}'` : quoteShellArg(word);
    })
    .join(' ');
}

/** Whether to run through sudo. */
export interface SudoOptions {
  /** The command asked for root (`Command.sudo`). */
  sudo?: boolean;
  /** The login is already root, so sudo is neither needed nor wanted. */
  isRoot: boolean;
}

/**
 * Prefixes `argv` with `sudo -n --` when root was asked for and the login is not root.
 * `-n` makes sudo fail instead of waiting for a password nobody will type; `--` keeps an argv
 * that starts with `-` from being read as sudo options. Returns a new array.
 */
export function sudoWrap(argv: readonly string[], options: SudoOptions): string[] {
  return options.sudo === true && !options.isRoot ? ['sudo', '-n', '--', ...argv] : [...argv];
}

/** Options of {@link buildArgv}. */
export interface BuildArgvOptions {
  /** The login is already root, so `sudo` is never added. */
  isRoot: boolean;
  /**
   * Always pass the environment as `env K=V ...` argv elements, even without sudo. For transports
   * that cannot set environment variables themselves (SSH servers mostly refuse `setenv`).
   * @default false
   */
  envInArgv?: boolean;
}

/** What a transport actually starts. */
export interface BuiltCommand {
  /** The program and its arguments, with `sudo`/`env` wrappers already applied. */
  argv: string[];
  /** Text to write to standard input and then close; absent means stdin is empty. */
  stdin?: string;
  /** Variables the transport must set for the process (empty when they travel in `argv`). */
  env: Record<string, string>;
}

/**
 * Turns a {@link Command} into what a transport starts, the same way for every transport.
 *
 * - Argv commands run `argv`, with `command.stdin` on standard input.
 * - Script commands run the interpreter, with the script on standard input, so the script text
 *   never becomes an argument or a shell string.
 * - With sudo (and a non-root login) the argv becomes `sudo -n -- ...`. Because sudo resets the
 *   environment, variables then travel as `env K=V ...` argv elements: never as shell text.
 *
 * @throws ValidationError when the command is invalid (see {@link validateCommand}), or when the
 *   environment travels through `env` and the program name contains `=` (env would read it as a
 *   variable assignment instead of the program to run).
 */
export function buildArgv(command: Command, options: BuildArgvOptions): BuiltCommand {
  validateCommand(command);
  let argv: string[];
  let stdin: string | undefined;
  let field: 'argv' | 'interpreter';
  if (isScript(command)) {
    argv = [...command.interpreter];
    stdin = command.script;
    field = 'interpreter';
  } else {
    argv = [...command.argv];
    stdin = command.stdin;
    field = 'argv';
  }
  const entries = Object.entries(command.env ?? {});
  const useSudo = command.sudo === true && !options.isRoot;
  let env: Record<string, string> = Object.fromEntries(entries);
  if (entries.length > 0 && (useSudo || options.envInArgv === true)) {
    if (argv[0]?.includes('=')) {
      throw new ValidationError('Command', [
        {
          path: [field, 0],
          message: 'program name must not contain "=" when the environment is passed via env',
        },
      ]);
    }
    // Names match ENV_NAME_PATTERN, so no `K=V` can be read as an option of env.
    argv = ['env', ...entries.map(([name, value]) => `${name}=${value}`), ...argv];
    env = {};
  }
  argv = sudoWrap(argv, { sudo: useSudo, isRoot: options.isRoot });
  return stdin === undefined ? { argv, env } : { argv, stdin, env };
}
