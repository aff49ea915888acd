import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@fleetward/core';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { Argument, Command, Option } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CompletionShell, completionScript } from '../src/completion.js';

let dir: string;
/** Created only if the shell ran text from the program: it must never exist. */
let marker: string;
/** Where file names are completed: `alpha.yaml`, `beta.txt`, `data.txt` and the directory `docs/`. */
let cwd: string;
const scripts = {} as Record<CompletionShell, string>;
/** Choices of `servers add --format`, three of them shell syntax that must stay text. */
let formats: string[];

function sampleProgram(): Command {
  const hostile = `it's "quoted" $(touch ${marker}) \`touch ${marker}\`; touch ${marker}\nsecond line: [x] 100%`;
  const program = new Command('fleetward')
    .description(hostile)
    .option('-c, --config <file>', 'configuration file')
    .option('--as <principal>', hostile)
    .option('--no-color', 'plain output')
    .addOption(new Option('--token <secret>', 'not shown').hideHelp());
  const servers = program.command('servers').alias('srv').description(hostile);
  servers
    .command('add')
    .description('add a server')
    .argument('<file>', 'server definition')
    .option('--label <key=value>', hostile)
    .addOption(new Option('--format <format>', 'output format').choices(formats));
  servers.command('show <id>').description('show one server').option('--out-dir <dir>', 'where to write');
  servers.command('purge', { hidden: true }).option('--force', 'no questions');
  program
    .command('scan')
    .description(hostile)
    .option('-s, --server <id...>', 'servers to scan')
    .addOption(new Option('-t, --tag <tag...>', 'tags').choices(['red', 'green']))
    .option('--json', 'as JSON');
  program
    .command('report')
    .description('pending patches')
    .addArgument(new Argument('<kind>', 'what to report').choices(['patches', 'servers']))
    .addOption(new Option('--level [level]', 'minimum level').choices(['low', 'high']));
  return program;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-completion-'));
  marker = join(dir, 'executed');
  cwd = join(dir, 'cwd');
  formats = ['json', 'table', "it's", `$(touch ${marker})`, `\`touch ${marker}\``];
  mkdirSync(join(cwd, 'docs'), { recursive: true });
  for (const f of ['alpha.yaml', 'beta.txt', 'data.txt']) writeFileSync(join(cwd, f), '');
  for (const shell of ['bash', 'zsh', 'fish'] as const) {
    scripts[shell] = completionScript(sampleProgram(), shell);
    writeFileSync(join(dir, `completion.${shell}`), scripts[shell]);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(command: string, args: string[]) {
  const r = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { PATH: process.env['PATH'], HOME: dir },
  });
  if (r.error) throw r.error;
  return r;
}

const lines = (out: string) => out.split('\n').filter((l) => l !== '');

/** Sources the bash script and calls `_fleetward` as bash's completion would for `words`. */
function bashComplete(...words: string[]): string[] {
  const driver = `source "$1" || exit 9
shift
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
_fleetward
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = run('bash', [
    '--norc',
    '--noprofile',
    '-c',
    driver,
    'bash',
    join(dir, 'completion.bash'),
    ...words,
  ]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return lines(r.stdout).sort();
}

/**
 * Sources the zsh script and calls `_fleetward` with zsh's completion builtins replaced by functions
 * that print what they were given, so the walk and what it offers are checked without a terminal.
 */
function zshComplete(...words: string[]): string[] {
  const driver = `compdef() { }
compset() { PREFIX=\${cur#*=}; }
_describe() { local item; for item in "\${(@P)4}"; do print -r -- "\${item%%:*}"; done; }
compadd() { print -rl -- "\${(@P)2}"; }
_files() { print -r -- "files $*"; }
source "$1" || exit 9
shift
words=("$@")
CURRENT=$#
_fleetward`;
  const r = run('zsh', ['-f', '-c', driver, 'zsh', join(dir, 'completion.zsh'), ...words]);
  expect(r.stderr).toBe('');
  return lines(r.stdout).sort();
}

/** What fish itself completes for `line`, after sourcing the script: candidates without descriptions. */
function fishComplete(line: string): { values: string[]; raw: string } {
  const r = run('fish', [
    '--no-config',
    '-c',
    'source $argv[1]; and complete -C $argv[2]',
    join(dir, 'completion.fish'),
    line,
  ]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return {
    values: lines(r.stdout)
      .map((l) => l.split('\t')[0]!)
      .sort(),
    raw: r.stdout,
  };
}

/** What bash makes of each completion once it is on the command line and the line is run. */
function asTyped(completions: string[]): string[] {
  const r = run('bash', [
    '--norc',
    '--noprofile',
    '-c',
    'for w; do eval "set -- $w"; printf "%s\\n" "$1"; done',
    'bash',
    ...completions,
  ]);
  expect(r.stderr).toBe('');
  return lines(r.stdout).sort();
}

const withoutBash = unavailableWithout({ commands: ['bash'] });
const withoutZsh = unavailableWithout({ commands: ['zsh'] });
const withoutFish = unavailableWithout({ commands: ['fish'] });

const rootCommands = ['help', 'report', 'scan', 'servers'];
const rootLongOptions = ['--as', '--config', '--help', '--no-color'];

describe('completionScript', () => {
  it('completionScript — refuses an unknown shell and names it', () => {
    expect(() => completionScript(sampleProgram(), 'powershell' as CompletionShell)).toThrow(ValidationError);
    expect(() => completionScript(sampleProgram(), 'powershell' as CompletionShell)).toThrow(/powershell/);
  });

  it('completionScript — refuses a choice with a control character, naming where it is', () => {
    const program = new Command('fleetward');
    program.command('x').addOption(new Option('--mode <m>').choices(['a\nb']));
    expect(() => completionScript(program, 'bash')).toThrow(/x\.--mode/);
  });

  it('bash — the script holds names only, no descriptions', () => {
    expect(scripts.bash).not.toContain('second line');
    expect(scripts.bash).not.toContain('configuration file');
    expect(scripts.bash).toContain('complete -F _fleetward');
  });

  it('zsh and fish — descriptions are flattened to one line', () => {
    for (const shell of ['zsh', 'fish'] as const) {
      const line = scripts[shell].split('\n').find((l) => l.includes('second line'));
      expect(line, shell).toContain('100%');
      expect(line, shell).toContain(`touch ${marker}`);
    }
  });
});

describe('bash completion', () => {
  itIfAvailable('subcommands — the root lists its visible commands, by prefix', withoutBash, () => {
    expect(bashComplete('fleetward', '')).toEqual(rootCommands);
    expect(bashComplete('fleetward', 'se')).toEqual(['servers']);
    expect(bashComplete('fleetward', 'zz')).toEqual([]);
  });

  itIfAvailable('subcommands — nested, reached through an alias, hidden ones left out', withoutBash, () => {
    expect(bashComplete('fleetward', 'servers', '')).toEqual(['add', 'help', 'show']);
    expect(bashComplete('fleetward', 'srv', 'a')).toEqual(['add']);
  });

  itIfAvailable('options — the command’s own plus the root’s, hidden ones left out', withoutBash, () => {
    expect(bashComplete('fleetward', 'servers', 'add', '--')).toEqual(
      ['--format', '--label', ...rootLongOptions].sort(),
    );
    expect(bashComplete('fleetward', '--')).toEqual(rootLongOptions);
    expect(bashComplete('fleetward', '-')).toEqual(['--as', '--config', '--help', '--no-color', '-c', '-h']);
    expect(bashComplete('fleetward', 'scan', '--j')).toEqual(['--json']);
  });

  itIfAvailable('options — a hidden command is still understood', withoutBash, () => {
    expect(bashComplete('fleetward', 'servers', '')).not.toContain('purge');
    expect(bashComplete('fleetward', 'servers', 'purge', '--f')).toEqual(['--force']);
  });

  itIfAvailable(
    'values — choices of an option, quoted so the line runs them as plain words',
    withoutBash,
    () => {
      const offered = bashComplete('fleetward', 'servers', 'add', '--format', '');
      expect(offered).toHaveLength(formats.length);
      expect(offered).toContain("it\\'s");
      expect(asTyped(offered)).toEqual([...formats].sort());
      expect(asTyped(bashComplete('fleetward', 'servers', 'add', '--format', 'it'))).toEqual(["it's"]);
      expect(asTyped(bashComplete('fleetward', 'servers', 'add', '--format', '$'))).toEqual([
        `$(touch ${marker})`,
      ]);
      expect(existsSync(marker)).toBe(false);
    },
  );

  itIfAvailable('values — files for <file> options and arguments, directories for <dir>', withoutBash, () => {
    expect(bashComplete('fleetward', '--config', '')).toEqual(['alpha.yaml', 'beta.txt', 'data.txt', 'docs']);
    expect(bashComplete('fleetward', '-c', 'a')).toEqual(['alpha.yaml']);
    expect(bashComplete('fleetward', '--config', '=', 'b')).toEqual(['beta.txt']);
    expect(bashComplete('fleetward', 'servers', 'add', 'd')).toEqual(['data.txt', 'docs']);
    expect(bashComplete('fleetward', 'servers', 'show', 'web1', '--out-dir', 'd')).toEqual(['docs']);
  });

  itIfAvailable('values — nothing for free text such as an id', withoutBash, () => {
    expect(bashComplete('fleetward', 'servers', 'show', '')).toEqual([]);
    expect(bashComplete('fleetward', '--as', '')).toEqual([]);
  });

  itIfAvailable(
    'walk — neither an option’s value nor a later operand is taken for a subcommand',
    withoutBash,
    () => {
      expect(bashComplete('fleetward', '--config', 'servers', '')).toEqual(rootCommands);
      expect(bashComplete('fleetward', '--token', 'servers', '')).toEqual(rootCommands);
      expect(bashComplete('fleetward', '--no-color', 'servers', '')).toEqual(['add', 'help', 'show']);
      // Only a command's first operand can name a subcommand (commander reports `web1` unknown).
      expect(bashComplete('fleetward', 'web1', 'scan', '--j')).toEqual([]);
    },
  );

  itIfAvailable('walk — variadic options keep taking values until the next option', withoutBash, () => {
    expect(bashComplete('fleetward', 'scan', '--tag', 'red', '')).toEqual(['green', 'red']);
    expect(bashComplete('fleetward', 'scan', '--tag', 'red', '--js')).toEqual(['--json']);
  });

  itIfAvailable(
    'walk — argument choices, and an optional value that does not take options',
    withoutBash,
    () => {
      expect(bashComplete('fleetward', 'report', '')).toEqual(['patches', 'servers']);
      expect(bashComplete('fleetward', 'report', 'patches', '')).toEqual([]);
      expect(bashComplete('fleetward', 'report', '--level', '')).toEqual(['high', 'low']);
      expect(bashComplete('fleetward', 'report', '--level', '--he')).toEqual(['--help']);
      expect(bashComplete('fleetward', 'report', '--level', 'low', 'p')).toEqual(['patches']);
    },
  );
});

describe('zsh completion', () => {
  itIfAvailable('zsh -n — the script is valid zsh', withoutZsh, () => {
    const r = run('zsh', ['-n', join(dir, 'completion.zsh')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  itIfAvailable('compinit — sourcing registers _fleetward for fleetward', withoutZsh, () => {
    const r = run('zsh', [
      '-f',
      '-c',
      `autoload -U compinit && compinit -u -D && source $1 && print -r -- \${_comps[fleetward]}`,
      'zsh',
      join(dir, 'completion.zsh'),
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('_fleetward');
  });

  itIfAvailable('_fleetward — walks like bash and offers the same names', withoutZsh, () => {
    expect(zshComplete('fleetward', '')).toEqual(rootCommands);
    expect(zshComplete('fleetward', '--config', 'servers', '')).toEqual(rootCommands);
    expect(zshComplete('fleetward', 'srv', '')).toEqual(['add', 'help', 'show']);
    expect(zshComplete('fleetward', 'servers', 'add', '--format', '')).toEqual([...formats].sort());
    expect(zshComplete('fleetward', 'servers', 'add', '--format=')).toEqual([...formats].sort());
    // The stand-in _describe prints every candidate; zsh itself then keeps those matching the prefix.
    expect(zshComplete('fleetward', 'scan', '--')).toEqual(
      ['--json', '--server', '--tag', '-s', '-t', ...rootLongOptions, '-c', '-h'].sort(),
    );
    expect(zshComplete('fleetward', 'servers', 'add', '')).toEqual(['files ']);
    expect(zshComplete('fleetward', 'servers', 'show', 'x', '--out-dir', '')).toEqual(['files -/']);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('fish completion', () => {
  itIfAvailable('fish --no-execute — the script is valid fish', withoutFish, () => {
    const r = run('fish', ['--no-config', '--no-execute', join(dir, 'completion.fish')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  itIfAvailable('complete -C — subcommands, with their descriptions', withoutFish, () => {
    const serv = fishComplete('fleetward serv');
    expect(serv.values).toEqual(['servers']);
    expect(serv.raw).toContain(`second line: [x] 100%`);
    expect(fishComplete('fleetward ').values).toEqual(rootCommands);
    expect(fishComplete('fleetward srv ').values).toEqual(['add', 'help', 'show']);
    expect(fishComplete('fleetward --config servers ').values).toEqual(rootCommands);
  });

  itIfAvailable('complete -C — options, choices and files', withoutFish, () => {
    expect(fishComplete('fleetward scan --j').values).toEqual(['--json']);
    expect(fishComplete('fleetward servers add --').values).toEqual(
      ['--format', '--label', ...rootLongOptions].sort(),
    );
    expect(fishComplete('fleetward servers add --format ').values).toEqual([...formats].sort());
    expect(fishComplete('fleetward report ').values).toEqual(['patches', 'servers']);
    expect(fishComplete('fleetward --config a').values).toEqual(['alpha.yaml']);
    expect(fishComplete('fleetward servers add d').values).toEqual(['data.txt', 'docs/']);
    expect(fishComplete('fleetward servers show x --out-dir d').values).toEqual(['docs/']);
    expect(fishComplete('fleetward servers show ').values).toEqual([]);
    expect(existsSync(marker)).toBe(false);
  });
});
