import { ValidationError, type ValidationIssue } from '@fleetward/core';
import type { Command, Option } from 'commander';

/** The shells {@link completionScript} writes a completion script for. */
export type CompletionShell = 'bash' | 'zsh' | 'fish';

/** Every {@link CompletionShell}, e.g. for `.choices()` on a `completion <shell>` argument. */
export const COMPLETION_SHELLS: readonly CompletionShell[] = ['bash', 'zsh', 'fish'];

/**
 * What the shell may offer for an option's or an argument's value. Each renderer has one case per
 * kind, so a dynamic source (server ids from `fleetward __complete servers`, say) is one more
 * variant here, chosen in `valueSource` and rendered by `posixValue` (with a case in the bash and
 * zsh `_values` functions) and `fishValue`; the compiler points at each place.
 */
type ValueSource =
  | { kind: 'text' }
  | { kind: 'choices'; values: readonly string[] }
  | { kind: 'files' }
  | { kind: 'dirs' };

interface OptionValue {
  /** `[value]`: commander takes the next word only when it does not start with `-`. */
  optional: boolean;
  /** `<value...>`: commander keeps taking words until one starts with `-`. */
  variadic: boolean;
  source: ValueSource;
}

interface OptionSpec {
  /** Flags this option owns, e.g. `['-d', '--data-dir']` (flags an ancestor owns are left out). */
  flags: string[];
  description: string;
  shown: boolean;
  /** Undefined for a flag that takes no value. */
  value: OptionValue | undefined;
}

interface CommandNode {
  id: number;
  /** The name, then the aliases. */
  names: string[];
  description: string;
  shown: boolean;
  options: OptionSpec[];
  /** Positional arguments by position; with `variadicArgs` the last one repeats. */
  args: ValueSource[];
  variadicArgs: boolean;
  children: CommandNode[];
  /** This node's id and its descendants' ids. */
  subtree: number[];
}

/**
 * Writes a completion script for `program`'s command tree: subcommands at every level, the options
 * of the command under the cursor and of its ancestors (commander parses an ancestor's options
 * anywhere after it), `.choices()` values, and file or directory names for values whose name says
 * so (`<file>`, `<path>`, `<out>`, `<dir>`, `<output-dir>`...). Hidden commands and options are
 * understood on the command line but never offered. Only names go into the script, quoted; zsh and
 * fish also get descriptions, flattened to one line and quoted, so no text from the program is
 * ever run by the shell.
 *
 * Load it with `source <(fleetward completion bash)` (bash, zsh: `fleetward completion zsh`) or
 * `fleetward completion fish | source`. The bash and zsh functions are named `_<program name>`.
 *
 * @param program - the root command, with every subcommand registered.
 * @param shell - which shell the script is for.
 * @throws {ValidationError} when `shell` is not one of {@link COMPLETION_SHELLS}, or a command
 *   name, alias, option flag or choice holds a control character (no shell can complete it).
 */
export function completionScript(program: Command, shell: CompletionShell): string {
  if (!COMPLETION_SHELLS.includes(shell)) {
    throw new ValidationError('completion shell', [
      { path: ['shell'], message: `"${String(shell)}" is not one of ${COMPLETION_SHELLS.join(', ')}` },
    ]);
  }
  const nodes = commandTree(program);
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  if (shell === 'bash') return bashScript(nodes, name, fn);
  if (shell === 'zsh') return zshScript(nodes, name, fn);
  return fishScript(nodes, name, `_${fn}`);
}

function commandTree(program: Command): CommandNode[] {
  const nodes: CommandNode[] = [];
  const issues: ValidationIssue[] = [];
  const checkName = (value: string, path: string[]) => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      issues.push({ path, message: `${JSON.stringify(value)} holds a control character` });
    }
  };

  const visit = (
    cmd: Command,
    path: string[],
    shown: boolean,
    inherited: ReadonlySet<string>,
  ): CommandNode => {
    const help = cmd.createHelp();
    const node: CommandNode = {
      id: nodes.length,
      names: [cmd.name(), ...cmd.aliases()],
      description: cmd.description(),
      shown,
      options: [],
      args: [],
      variadicArgs: false,
      children: [],
      subtree: [],
    };
    nodes.push(node);
    for (const n of node.names) checkName(n, path);

    // visibleOptions adds the built-in help option and leaves hidden ones out.
    const visibleOptions = help.visibleOptions(cmd);
    const owned = new Set(inherited);
    for (const option of [...cmd.options, ...visibleOptions.filter((o) => !cmd.options.includes(o))]) {
      const flags = [option.short, option.long].filter(
        (f): f is string => f !== undefined && !inherited.has(f),
      );
      if (flags.length === 0) continue;
      for (const flag of flags) {
        checkName(flag, [...path, flag]);
        owned.add(flag);
      }
      const value = optionValue(option);
      if (value?.source.kind === 'choices') {
        for (const choice of value.source.values) checkName(choice, [...path, ...flags]);
      }
      node.options.push({
        flags,
        description: option.description,
        shown: visibleOptions.includes(option),
        value,
      });
    }

    for (const arg of cmd.registeredArguments) {
      for (const choice of arg.argChoices ?? []) checkName(choice, [...path, arg.name()]);
      node.args.push(valueSource(arg.name(), arg.argChoices));
      node.variadicArgs = arg.variadic;
    }

    // visibleCommands adds the implicit `help` command and leaves hidden ones out.
    const visibleCommands = help.visibleCommands(cmd);
    for (const sub of [...cmd.commands, ...visibleCommands.filter((c) => !cmd.commands.includes(c))]) {
      node.children.push(visit(sub, [...path, sub.name()], visibleCommands.includes(sub), owned));
    }
    node.subtree = [node.id, ...node.children.flatMap((c) => c.subtree)];
    return node;
  };

  visit(program, [], true, new Set());
  if (issues.length) throw new ValidationError('command tree for completion', issues);
  return nodes;
}

function optionValue(option: Option): OptionValue | undefined {
  if (!option.required && !option.optional) return undefined;
  const valueName = /[<[]([^>\]]*)[>\]]/.exec(option.flags)?.[1] ?? '';
  return {
    optional: option.optional,
    variadic: option.variadic,
    source: valueSource(valueName, option.argChoices),
  };
}

/**
 * Chooses what to offer for a value from its name, word by word (`dataDir`, `out-file`): `dir` as
 * a word, or at the end of one, means directories; a word starting with `file`, `path` or `out`, or
 * ending with `file(s)` or `path(s)`, means files (`<timeout>` and `<layout>` stay text). Ids of
 * things (`<id>`, `--server <id>`) are text for now: that is where a dynamic source plugs in.
 */
function valueSource(valueName: string, choices: readonly string[] | undefined): ValueSource {
  if (choices?.length) return { kind: 'choices', values: choices };
  const words = valueName
    .replace(/\.\.\.$/, '')
    .replace(/([a-z\d])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z\d]+/);
  if (words.some((w) => /^dirs?$|^director|^folder|dir$/.test(w))) return { kind: 'dirs' };
  if (words.some((w) => /^(file|path|out)|(file|path)s?$/.test(w))) return { kind: 'files' };
  return { kind: 'text' };
}

/** One line of plain text: descriptions can hold anything, menus want one line. */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  return text.replace(/[\u0000-\u001f\u007f\s]+/g, ' ').trim();
}

/** POSIX single quotes (bash, zsh): nothing inside is expanded. */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
/** fish single quotes: only `\\` and `\'` are escapes inside. */
const fq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

// bash and zsh share the tables and the walk over the words before the cursor.

function posixValue(source: ValueSource): string {
  switch (source.kind) {
    case 'text':
      return 'kind=text';
    case 'files':
      return 'kind=files';
    case 'dirs':
      return 'kind=dirs';
    case 'choices':
      return `kind=choices; vals=(${source.values.map(sq).join(' ')})`;
  }
}

/**
 * `__x_sub`, `__x_opt`, `__x_arg`: what the walk needs to follow a command line, each one `case`
 * on `"<node id> <word>"` (ids are numbers, so the first space ends them).
 */
function posixTables(nodes: CommandNode[], fn: string): string {
  const key = (n: CommandNode, word: string) => sq(`${n.id} ${word}`);
  const sub = nodes.flatMap((n) =>
    n.children.map((c) => `${c.names.map((w) => key(n, w)).join('|')}) next=${c.id} ;;`),
  );
  const opt = nodes.flatMap((n) =>
    n.options.flatMap((o) => {
      if (!o.value) return [];
      const want = `want=${o.value.optional ? 'maybe' : 'value'} many=${o.value.variadic ? 1 : ''}`;
      return [`${o.flags.map((f) => key(n, f)).join('|')}) ${want}; ${posixValue(o.value.source)} ;;`];
    }),
  );
  const arg = nodes.flatMap((n) => {
    if (n.args.every((a) => a.kind === 'text')) return [];
    const last = n.args.length - 1;
    return n.args.map(
      (a, i) =>
        `${i === last && n.variadicArgs ? `${sq(`${n.id} `)}*` : key(n, String(i))}) ${posixValue(a)} ;;`,
    );
  });
  const table = (name: string, what: string, lines: string[], otherwise: string) =>
    `# ${what}\n_${fn}_${name}() {\n  case "$1 $2" in\n${lines.map((l) => `  ${l}\n`).join('')}  *) ${otherwise} ;;\n  esac\n}`;
  return [
    table('sub', 'Sets next to the subcommand of node $1 named $2.', sub, 'return 1'),
    table(
      'opt',
      'Sets want, many and what the value is when option $2 of node $1 takes one.',
      opt,
      'return 1',
    ),
    table('arg', 'Sets what operand $2 of node $1 is.', arg, 'kind=text'),
  ].join('\n\n');
}

/** `__x_node`: the subcommands and options node $1 offers (`name:description` for zsh). */
function posixOffers(nodes: CommandNode[], fn: string, describe: boolean): string {
  const item = (name: string, description: string) =>
    sq(describe ? `${name.replace(/\\/g, '\\\\').replace(/:/g, '\\:')}:${oneLine(description)}` : name);
  const lines = nodes.flatMap((n) => {
    const subs = n.children.filter((c) => c.shown).map((c) => item(c.names[0]!, c.description));
    const opts = n.options.filter((o) => o.shown).flatMap((o) => o.flags.map((f) => item(f, o.description)));
    if (!subs.length && !opts.length) return [];
    return [`  ${n.id}) subs=(${subs.join(' ')}); opts=(${opts.join(' ')}) ;;`];
  });
  return `# Sets the subcommands and options node $1 offers.\n_${fn}_node() {\n  case $1 in\n${lines.join('\n')}\n  *) subs=(); opts=() ;;\n  esac\n}`;
}

/**
 * Follows the words before the cursor as commander parses them: an option's value is skipped,
 * the first operand of a command may name a subcommand, `--` ends the options.
 */
function posixWalk(fn: string, words: string, from: number, to: string): string {
  return `  for ((i = ${from}; i < ${to}; i++)); do
    w=\${${words}[i]}
    if [[ -n $rest ]]; then pos=$((pos + 1)); continue; fi
    if [[ $w == '=' && -n $want ]]; then continue; fi
    if [[ -n $want ]]; then
      if [[ $want == value || $w != -* ]]; then
        if [[ -n $many ]]; then want=more; else want=; fi
        continue
      fi
      want=
    fi
    case $w in
    --) rest=1 ;;
    -*) for n in "\${chain[@]}"; do _${fn}_opt "$n" "$w" && break; done ;;
    *)
      if ((pos == 0)) && _${fn}_sub "$node" "$w"; then
        node=$next
        chain+=("$next")
      else
        pos=$((pos + 1))
      fi
      ;;
    esac
  done`;
}

const header = (shell: string, name: string) =>
  `# ${shell} completion for ${name}, generated from its commands: do not edit.\n`;

function bashScript(nodes: CommandNode[], name: string, fn: string): string {
  return `${header('bash', name)}# Load it with: source <(${name} completion bash)

${posixTables(nodes, fn)}

${posixOffers(nodes, fn, false)}

# Offers the words starting with what was typed, quoted as words: readline inserts them as they are.
_${fn}_add() {
  local v q
  for v in "$@"; do
    if [[ $v == "$cur"* ]]; then
      printf -v q '%q' "$v"
      COMPREPLY+=("$q")
    fi
  done
}

_${fn}_values() {
  local v
  case $kind in
  files | dirs)
    compopt -o filenames 2>/dev/null
    while IFS= read -r v; do COMPREPLY+=("$v"); done < <(if [[ $kind == dirs ]]; then compgen -d -- "$cur"; else compgen -f -- "$cur"; fi)
    ;;
  choices) _${fn}_add "\${vals[@]}" ;;
  esac
}

${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} node=0 pos=0 want= many= kind=text rest= next= i w n
  local -a chain=(0) vals=() subs=() opts=()
  COMPREPLY=()
${posixWalk(fn, 'COMP_WORDS', 1, 'COMP_CWORD')}
  # bash splits --option=value at the =; the value is then the word after it.
  if [[ $cur == '=' && -n $want ]]; then cur=; fi
  if [[ -n $want && ($want == value || $cur != -*) ]]; then
    _${fn}_values
  elif [[ $cur == -* && -z $rest ]]; then
    for n in "\${chain[@]}"; do
      _${fn}_node "$n"
      _${fn}_add "\${opts[@]}"
    done
  else
    _${fn}_node "$node"
    if ((pos == 0)); then _${fn}_add "\${subs[@]}"; fi
    _${fn}_arg "$node" "$pos"
    _${fn}_values
  fi
  return 0
}

complete -F ${fn} ${sq(name)}
`;
}

function zshScript(nodes: CommandNode[], name: string, fn: string): string {
  return `#compdef ${name}
${header('zsh', name)}# Load it with: source <(${name} completion zsh), or save it as ${fn} in a directory of $fpath.

${posixTables(nodes, fn)}

${posixOffers(nodes, fn, true)}

_${fn}_values() {
  case $kind in
  files) _files ;;
  dirs) _files -/ ;;
  choices) compadd -a vals ;;
  *) return 1 ;;
  esac
}

${fn}() {
  # No emulate -L zsh: _files needs the options compsys set (extendedglob among them).
  local cur=\${words[CURRENT]} node=0 pos=0 want= many= kind=text rest= next= i w n ret=1
  local -a chain=(0) vals subs opts all
${posixWalk(fn, 'words', 2, 'CURRENT')}
  if [[ -n $want && ($want == value || $cur != -*) ]]; then
    _${fn}_values
    return
  fi
  if [[ $cur == --*=* && -z $rest ]]; then
    for n in "\${chain[@]}"; do
      if _${fn}_opt "$n" "\${cur%%=*}"; then
        compset -P '*='
        _${fn}_values
        return
      fi
    done
  fi
  if [[ $cur == -* && -z $rest ]]; then
    for n in "\${chain[@]}"; do
      _${fn}_node "$n"
      all+=("\${opts[@]}")
    done
    _describe -t options option all
    return
  fi
  _${fn}_node "$node"
  if ((pos == 0 && \${#subs} > 0)); then _describe -t commands command subs && ret=0; fi
  _${fn}_arg "$node" "$pos"
  _${fn}_values && ret=0
  return ret
}

if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  ${fn} "$@"
elif (( \${+functions[compdef]} )); then
  compdef ${fn} ${sq(name)}
else
  print -u2 -r -- ${sq(`${name} completion: run "autoload -U compinit && compinit" before loading this script`)}
fi
`;
}

function fishValue(source: ValueSource): string[] {
  switch (source.kind) {
    case 'text':
      return [];
    case 'files':
      return ['-F'];
    case 'dirs':
      return ['-a', fq('(__fish_complete_directories)')];
    case 'choices':
      // -a is expanded again when completing: quote each value, then the list.
      return ['-a', fq(source.values.map(fq).join(' '))];
  }
}

function fishScript(nodes: CommandNode[], name: string, fn: string): string {
  const c = `complete -c ${fq(name)}`;
  const sub = nodes.flatMap((n) =>
    n.children.map(
      (ch) =>
        `test $node = ${n.id}; and contains -- $word ${ch.names.map(fq).join(' ')}; and echo ${ch.id}; and return`,
    ),
  );
  const opt = nodes.flatMap((n) =>
    n.options.flatMap((o) => {
      if (!o.value) return [];
      const want = `${o.value.optional ? 'maybe' : 'value'}${o.value.variadic ? '+' : ''}`;
      return [
        `test $node = ${n.id}; and contains -- $word ${o.flags.map(fq).join(' ')}; and echo ${want}; and return`,
      ];
    }),
  );
  const completions = nodes.flatMap((n) => {
    const inside = n.id === 0 ? [] : ['-n', fq(`${fn}_in ${n.subtree.join(' ')}`)];
    const at = (pos: string) => ['-n', fq(`${fn}_at ${n.id} ${pos}`)];
    const lines: string[][] = [];
    for (const o of n.options.filter((o) => o.shown)) {
      const flags = o.flags.flatMap((f) =>
        /^-[^-]$/.test(f) ? ['-s', fq(f.slice(1))] : ['-l', fq(f.slice(2))],
      );
      // -r with -F offers files for the value; -x offers only what fishValue gives.
      const value = o.value
        ? [o.value.source.kind === 'files' ? '-r' : '-x', ...fishValue(o.value.source)]
        : [];
      lines.push([...inside, ...flags, ...value, '-d', fq(oneLine(o.description))]);
    }
    for (const ch of n.children.filter((ch) => ch.shown)) {
      lines.push([...at('0'), '-a', fq(fq(ch.names[0]!)), '-d', fq(oneLine(ch.description))]);
    }
    n.args.forEach((a, i) => {
      const value = fishValue(a);
      if (value.length)
        lines.push([...at(i === n.args.length - 1 && n.variadicArgs ? `${i}+` : `${i}`), ...value]);
    });
    return lines.map((l) => `${c} ${l.join(' ')}`);
  });

  return `${header('fish', name)}# Load it with: ${name} completion fish | source

# Prints the subcommand of node $1 named $2.
function ${fn}_sub --argument-names node word
${sub.map((l) => `    ${l}\n`).join('')}    return 1
end

# Prints value or maybe (and + when it repeats) when option $2 of node $1 takes a value.
function ${fn}_opt --argument-names node word
${opt.map((l) => `    ${l}\n`).join('')}    return 1
end

# Follows the words before the cursor as commander parses them; prints the command node, how many
# operands it has before the cursor, and whether an option still waits for its value.
function ${fn}_state
    set -l node 0
    set -l pos 0
    set -l want ''
    set -l many ''
    set -l rest ''
    set -l next ''
    set -l chain 0
    for w in (commandline -opc)[2..-1]
        if test -n "$rest"
            set pos (math $pos + 1)
            continue
        end
        if test -n "$want"
            if test "$want" = value; or not string match -q -- '-*' $w
                test -n "$many"; and set want more; or set want ''
                continue
            end
            set want ''
        end
        if test "$w" = --
            set rest 1
        else if string match -q -- '-*' $w
            for n in $chain
                set -l r (${fn}_opt $n $w); or continue
                set want (string replace -- + '' $r)
                string match -q -- '*+' $r; and set many 1; or set many ''
                break
            end
        else if test $pos -eq 0; and set next (${fn}_sub $node $w)
            set node $next
            set -a chain $next
        else
            set pos (math $pos + 1)
        end
    end
    echo $node $pos $want
end

# True when the cursor is at operand $2 (N, or N+ for N and after) of command node $1.
function ${fn}_at --argument-names node pos
    set -l s (string split ' ' (${fn}_state))
    test "$s[1]" = $node; and test -z "$s[3]"; or return 1
    if string match -q -- '*+' $pos
        test $s[2] -ge (string trim -c + -- $pos)
    else
        test $s[2] = $pos
    end
end

# True when the cursor is inside one of the command nodes given.
function ${fn}_in
    set -l s (string split ' ' (${fn}_state))
    contains -- $s[1] $argv
end

${c} -e
${c} -f
${completions.join('\n')}
`;
}
