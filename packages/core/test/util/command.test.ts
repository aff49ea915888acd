import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import type { Command } from '../../src/ports/adapter.js';
import { buildArgv, quoteArgv, quoteShellArg, sudoWrap, validateCommand } from '../../src/util/command.js';

/** Catches what `fn` throws, failing the test if it does not throw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function validationError(fn: () => unknown): ValidationError {
  const error = thrown(fn);
  expect(error).toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

const HOSTILE = [
  '',
  ' ',
  'two words',
  "x'; touch /fleetward-nonexistent-dir/pwned; '",
  "'",
  "''",
  '"',
  '\\',
  "\\'",
  '$(touch /fleetward-nonexistent-dir/pwned)',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal shell expansion is the point
  '${HOME}',
  '$HOME',
  '`touch /fleetward-nonexistent-dir/pwned`',
  'a\nb',
  '\n',
  '\t',
  ';|&',
  '&& echo pwned',
  '|| true',
  '>/fleetward-nonexistent-dir/pwned',
  '<',
  '*',
  '?',
  '[a]',
  '~',
  '~root',
  '{a,b}',
  '#comment',
  '!',
  '-n',
  '--',
  'A=1',
  'héllo wörld',
  '日本語 😀',
  '\u00a0',
  '%s',
];

/** What `shell -c <line>` passes to its command, read back NUL-separated. */
function shellWords(shell: string, line: string): string[] {
  const result = spawnSync(shell, ['-c', line], { encoding: 'utf8' });
  expect(result.error).toBeUndefined();
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return result.stdout.split('\0').slice(0, -1);
}

const SHELLS = ['sh', 'bash'].filter((shell) => spawnSync(shell, ['-c', 'true']).status === 0);

describe('validateCommand', () => {
  it('validateCommand — accepts argv and script commands', () => {
    expect(() => validateCommand({ argv: ['true'] })).not.toThrow();
    expect(() =>
      validateCommand({
        interpreter: ['sh', '-s'],
        script: 'echo "$X"',
        env: { X: 'a\nb', _y2: '' },
        sudo: true,
      }),
    ).not.toThrow();
  });

  it('validateCommand — rejects an empty argv', () => {
    const error = validationError(() => validateCommand({ argv: [] }));
    expect(error.subject).toBe('Command');
    expect(error.issues.map((i) => i.path)).toEqual([['argv']]);
  });

  it('validateCommand — rejects an empty program name', () => {
    expect(validationError(() => validateCommand({ argv: [''] })).issues.map((i) => i.path)).toEqual([
      ['argv', 0],
    ]);
  });

  it('validateCommand — rejects NUL bytes in argv elements', () => {
    const error = validationError(() => validateCommand({ argv: ['printf', '%s', 'a\0b'] }));
    expect(error.issues.map((i) => i.path)).toEqual([['argv', 2]]);
  });

  it('validateCommand — rejects an empty interpreter and NUL in interpreter elements', () => {
    expect(
      validationError(() => validateCommand({ interpreter: [], script: 'true' })).issues.map((i) => i.path),
    ).toEqual([['interpreter']]);
    expect(
      validationError(() => validateCommand({ interpreter: ['sh', '-\0s'], script: 'true' })).issues.map(
        (i) => i.path,
      ),
    ).toEqual([['interpreter', 1]]);
  });

  it('validateCommand — rejects env names that are not portable variable names', () => {
    for (const name of ['BAD-NAME', '1ABC', '', 'A B', 'A=B', 'Ä', 'X;rm']) {
      const error = validationError(() => validateCommand({ argv: ['true'], env: { [name]: 'v' } }));
      expect(error.issues.map((i) => i.path)).toEqual([['env', name]]);
    }
  });

  it('validateCommand — rejects NUL bytes in env values', () => {
    const error = validationError(() => validateCommand({ argv: ['true'], env: { GOOD: 'a\0b' } }));
    expect(error.issues.map((i) => i.path)).toEqual([['env', 'GOOD']]);
  });

  it('validateCommand — reports every problem at once', () => {
    const error = validationError(() =>
      validateCommand({ argv: ['x', 'a\0'], env: { 'BAD-NAME': 'v', OK: '\0' } } as Command),
    );
    expect(error.paths).toEqual(['argv.1', 'env.BAD-NAME', 'env.OK']);
  });

  it('validateCommand — rejects wrong types from untyped callers', () => {
    const error = validationError(() =>
      validateCommand({ argv: ['true', 42], env: { A: 1 }, sudo: 'yes' } as unknown as Command),
    );
    expect(error.paths).toEqual(['argv.1', 'sudo', 'env.A']);
  });
});

describe('quoteShellArg', () => {
  it('quoteShellArg — quotes the empty string as a pair of quotes', () => {
    expect(quoteShellArg('')).toBe("''");
  });

  it('quoteShellArg — leaves words of safe characters bare', () => {
    for (const word of ['abc', 'a-b_c.d/e', '--flag=1', 'user@host:22', '%s', '+x,y']) {
      expect(quoteShellArg(word)).toBe(word);
    }
  });

  it("quoteShellArg — single-quotes everything else, writing ' as '\\''", () => {
    expect(quoteShellArg('a b')).toBe("'a b'");
    expect(quoteShellArg("it's")).toBe("'it'\\''s'");
    expect(quoteShellArg('$(x)')).toBe("'$(x)'");
    expect(quoteShellArg('~')).toBe("'~'");
  });

  it('quoteShellArg — refuses NUL, which no shell word can carry', () => {
    expect(validationError(() => quoteShellArg('a\0b')).subject).toBe('Command');
  });
});

describe('quoteArgv', () => {
  it.each(SHELLS)('quoteArgv — %s sees exactly the original words', (shell) => {
    const line = `set -- ${quoteArgv(HOSTILE)}; printf '%s\\0' "$@"`;
    expect(shellWords(shell, line)).toEqual(HOSTILE);
  });

  it.each(SHELLS)('quoteArgv — a whole command line run by %s gets the original argv', (shell) => {
    expect(shellWords(shell, quoteArgv(['printf', '%s\\0', ...HOSTILE]))).toEqual(HOSTILE);
  });

  it.each(SHELLS)('quoteArgv — in %s a command word like A=1 or if is a program, not syntax', (shell) => {
    for (const word of ['A=1', 'if', 'while', '!']) {
      const result = spawnSync(shell, ['-c', quoteArgv([word, 'arg'])], { encoding: 'utf8' });
      // 127: the shell looked for a program of that name; an assignment or keyword would not.
      expect(result.status).toBe(127);
    }
  });

  it('quoteArgv — quotes the command word and leaves safe arguments bare', () => {
    expect(quoteArgv(['ls', '-la', '/tmp'])).toBe("'ls' -la /tmp");
    expect(quoteArgv(['printf', '%s', ''])).toBe("'printf' %s ''");
  });

  it('quoteArgv — rejects an empty argv and NUL bytes with the element index', () => {
    expect(validationError(() => quoteArgv([])).issues[0]?.path).toEqual([]);
    expect(validationError(() => quoteArgv(['a', 'b', 'c\0'])).issues[0]?.path).toEqual([2]);
  });
});

describe('sudoWrap', () => {
  it('sudoWrap — adds sudo -n -- when root is asked for and the login is not root', () => {
    expect(sudoWrap(['apt-get', 'update'], { sudo: true, isRoot: false })).toEqual([
      'sudo',
      '-n',
      '--',
      'apt-get',
      'update',
    ]);
  });

  it('sudoWrap — leaves argv alone for root logins or without sudo, returning a copy', () => {
    const argv = ['id', '-u'];
    const asRoot = sudoWrap(argv, { sudo: true, isRoot: true });
    expect(asRoot).toEqual(argv);
    expect(asRoot).not.toBe(argv);
    expect(sudoWrap(argv, { isRoot: false })).toEqual(argv);
    expect(sudoWrap(argv, { sudo: false, isRoot: false })).toEqual(argv);
  });
});

describe('buildArgv', () => {
  it('buildArgv — runs an argv command as is, with its stdin and env', () => {
    expect(buildArgv({ argv: ['cat'], stdin: 'data', env: { A: '1' } }, { isRoot: false })).toEqual({
      argv: ['cat'],
      stdin: 'data',
      env: { A: '1' },
    });
    expect(buildArgv({ argv: ['true'] }, { isRoot: false })).toEqual({ argv: ['true'], env: {} });
  });

  it('buildArgv — runs a script command as its interpreter with the script on stdin', () => {
    const built = buildArgv(
      { interpreter: ['bash', '-s', '--', 'a b'], script: 'echo "$1"' },
      { isRoot: false },
    );
    expect(built).toEqual({ argv: ['bash', '-s', '--', 'a b'], stdin: 'echo "$1"', env: {} });
  });

  it('buildArgv — with sudo passes env as argv elements after sudo, never as shell text', () => {
    const built = buildArgv(
      {
        interpreter: ['sh', '-s'],
        script: 'echo "$P"',
        env: { P: "x'; touch /fleetward-nonexistent-dir/pwned; '", Q: '' },
        sudo: true,
      },
      { isRoot: false },
    );
    expect(built).toEqual({
      argv: ['sudo', '-n', '--', 'env', "P=x'; touch /fleetward-nonexistent-dir/pwned; '", 'Q=', 'sh', '-s'],
      stdin: 'echo "$P"',
      env: {},
    });
  });

  it('buildArgv — with sudo and no env adds only sudo', () => {
    expect(buildArgv({ argv: ['id'], sudo: true }, { isRoot: false }).argv).toEqual([
      'sudo',
      '-n',
      '--',
      'id',
    ]);
  });

  it('buildArgv — as root ignores sudo and keeps env for the transport to set', () => {
    expect(buildArgv({ argv: ['id'], sudo: true, env: { A: '1' } }, { isRoot: true })).toEqual({
      argv: ['id'],
      env: { A: '1' },
    });
  });

  it('buildArgv — with envInArgv passes env through env even without sudo', () => {
    expect(buildArgv({ argv: ['id'], env: { A: '1' } }, { isRoot: true, envInArgv: true })).toEqual({
      argv: ['env', 'A=1', 'id'],
      env: {},
    });
  });

  it('buildArgv — refuses a program name with = when env would read it as an assignment', () => {
    const error = validationError(() =>
      buildArgv({ argv: ['X=1'], env: { A: '1' }, sudo: true }, { isRoot: false }),
    );
    expect(error.paths).toEqual(['argv.0']);
    expect(buildArgv({ argv: ['X=1'], sudo: true }, { isRoot: false }).argv).toEqual([
      'sudo',
      '-n',
      '--',
      'X=1',
    ]);
  });

  it('buildArgv — validates the command first', () => {
    const error = validationError(() =>
      buildArgv({ argv: ['true'], env: { 'BAD-NAME': 'x' } }, { isRoot: false }),
    );
    expect(error.issues.map((i) => i.path)).toEqual([['env', 'BAD-NAME']]);
  });

  it('buildArgv — does not modify the command', () => {
    const command = { argv: ['a', 'b'], env: { A: '1' }, sudo: true } as const;
    const copy = structuredClone(command);
    const built = buildArgv(command, { isRoot: false });
    built.argv.push('c');
    expect(command).toEqual(copy);
  });

  it.each(SHELLS)(
    'buildArgv — with envInArgv and quoteArgv, %s runs the program with the exact env',
    (shell) => {
      const values = HOSTILE.filter((v) => v !== '');
      const env = Object.fromEntries(values.map((v, i) => [`V${i}`, v]));
      const built = buildArgv({ argv: ['env', '-0'], env }, { isRoot: true, envInArgv: true });
      const seen = Object.fromEntries(
        shellWords(shell, quoteArgv(built.argv))
          .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)])
          .filter(([name]) => /^V\d+$/.test(name ?? '')),
      );
      expect(seen).toEqual(env);
    },
  );
});
