import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildPowerShellRunner, type PowerShellStdinSource } from '../../src/os/index.js';
import type { Command } from '../../src/ports/adapter.js';
import { ENV_NAME_PATTERN } from '../../src/util/command.js';

// There is no PowerShell on this machine: these tests check what can be checked without one. The
// script is constant after its value literals, every literal holds only base64-safe text (nothing
// that ends a literal or starts code), and the values decode back exactly.

/** The constant lines as the AWS and WinRM adapters produced them before they shared this code. */
const CONSTANT_HEAD = [
  "$ErrorActionPreference = 'Stop'",
  '$OutputEncoding = New-Object System.Text.UTF8Encoding $false',
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }',
  "$fw_args = @(foreach ($fw_a in $fw_argv.Split(' ')) { if ($fw_a) { fw_dec ($fw_a.Substring(1)) } })",
  "foreach ($fw_e in $fw_env.Split(' ')) { if ($fw_e) { $fw_i = $fw_e.IndexOf('='); [System.Environment]::SetEnvironmentVariable($fw_e.Substring(0, $fw_i), (fw_dec ($fw_e.Substring($fw_i + 1))), 'Process') } }",
  '$fw_exe = $fw_args[0]',
  '$fw_rest = @(if ($fw_args.Count -gt 1) { $fw_args[1..($fw_args.Count - 1)] })',
  'Remove-Variable fw_argv, fw_env, fw_a, fw_e, fw_i -ErrorAction SilentlyContinue',
  '$global:LASTEXITCODE = $null',
  'try {',
];
const STDIN_LINE: Record<PowerShellStdinSource, string> = {
  literal:
    "  if ($fw_has_stdin -eq '1') { fw_dec $fw_stdin | & $fw_exe @fw_rest } else { & $fw_exe @fw_rest }",
  'stdin-line':
    "  if ($fw_has_stdin -eq '1') { fw_dec ([Console]::In.ReadLine()) | & $fw_exe @fw_rest } else { & $fw_exe @fw_rest }",
};
const CONSTANT_TAIL = [
  '  $fw_ok = $?',
  '} catch [System.Management.Automation.CommandNotFoundException] {',
  '  [Console]::Error.WriteLine($_.Exception.Message); exit 127',
  '} catch {',
  '  [Console]::Error.WriteLine($_.Exception.Message); exit 1',
  '}',
  'if ($null -ne $LASTEXITCODE) { exit $LASTEXITCODE }',
  'if ($fw_ok) { exit 0 }',
  'exit 1',
];

/** Commands and the literal lines the adapters generated for them before this module existed. */
const PINNED: { command: Command; literals: string[]; stdinLiteral: string }[] = [
  {
    command: { argv: ['whoami'] },
    literals: ["$fw_argv = '_d2hvYW1p'", "$fw_env = ''", "$fw_has_stdin = '0'"],
    stdinLiteral: "$fw_stdin = ''",
  },
  {
    command: {
      argv: ['cmd.exe', '/c', 'echo', "it's ‘$(x)’", ''],
      env: { FW_X: '"; exit 0; "', _e: '' },
      stdin: 'héllo\n',
    },
    literals: [
      "$fw_argv = '_Y21kLmV4ZQ== _L2M= _ZWNobw== _aXQncyDigJgkKHgp4oCZ _'",
      "$fw_env = 'FW_X=IjsgZXhpdCAwOyAi _e='",
      "$fw_has_stdin = '1'",
    ],
    stdinLiteral: "$fw_stdin = 'aMOpbGxvCg=='",
  },
  {
    command: {
      interpreter: ['powershell.exe', '-Command', '-'],
      script: 'Get-Date\r\n',
      env: { PATH_EXTRA: 'C:\\tools' },
    },
    literals: [
      "$fw_argv = '_cG93ZXJzaGVsbC5leGU= _LUNvbW1hbmQ= _LQ=='",
      "$fw_env = 'PATH_EXTRA=QzpcdG9vbHM='",
      "$fw_has_stdin = '1'",
    ],
    stdinLiteral: "$fw_stdin = 'R2V0LURhdGUNCg=='",
  },
];

/** What may stand between two single quotes: base64, `_`, `=`, env names and spaces. */
const LITERAL_TEXT = /^[A-Za-z0-9+/=_ ]*$/;
/** Every character PowerShell treats as a quote (single or double), and its escape character. */
const QUOTES = /['"`\u2018\u2019\u201a\u201b\u201c\u201d\u201e]/;
const ASSIGNMENT = /^\$fw_(\w+) = '([^']*)'$/;

/** The text inside each single-quoted literal of `line`, read as PowerShell's tokenizer would. */
function literalsOf(line: string): string[] {
  const parts = line.split("'");
  expect(parts.length % 2, `unbalanced quotes in ${line}`).toBe(1);
  return parts.filter((_, i) => i % 2 === 1);
}

/** Decodes the value assignments as the constant lines do; `stdin` is what the transport sends. */
function decode(
  lines: string[],
  transportStdin?: string,
): { argv: string[]; env: Record<string, string>; stdin?: string } {
  const values: Record<string, string> = {};
  for (const line of lines) {
    const m = ASSIGNMENT.exec(line);
    if (m) values[m[1] as string] = m[2] as string;
  }
  const dec = (s: string) => Buffer.from(s, 'base64').toString('utf8');
  const argv = (values.argv ?? '')
    .split(' ')
    .filter(Boolean)
    .map((a) => dec(a.slice(1)));
  const env = Object.fromEntries(
    (values.env ?? '')
      .split(' ')
      .filter(Boolean)
      .map((e) => [e.slice(0, e.indexOf('=')), dec(e.slice(e.indexOf('=') + 1))]),
  );
  if (values.has_stdin !== '1') return { argv, env };
  return { argv, env, stdin: values.stdin === undefined ? transportStdin : dec(values.stdin) };
}

const value = fc.string({ unit: 'binary' });
const envArb = fc.dictionary(fc.stringMatching(ENV_NAME_PATTERN), value, { maxKeys: 4 });
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record(
    { argv: fc.array(value, { minLength: 1, maxLength: 6 }), env: envArb, stdin: value },
    { requiredKeys: ['argv'] },
  ),
  fc.record(
    { interpreter: fc.array(value, { minLength: 1, maxLength: 4 }), script: value, env: envArb },
    { requiredKeys: ['interpreter', 'script'] },
  ),
);
const sourceArb = fc.constantFrom<PowerShellStdinSource>('literal', 'stdin-line');

const argvOf = (c: Command) => ('interpreter' in c ? c.interpreter : c.argv);
const stdinOf = (c: Command) => ('interpreter' in c ? c.script : c.stdin);

describe('buildPowerShellRunner', () => {
  it('buildPowerShellRunner — produces the exact text the AWS and WinRM runners produced before they shared it', () => {
    for (const { command, literals, stdinLiteral } of PINNED) {
      expect(buildPowerShellRunner(command, { stdin: 'literal' })).toEqual([
        ...literals,
        stdinLiteral,
        ...CONSTANT_HEAD,
        STDIN_LINE.literal,
        ...CONSTANT_TAIL,
      ]);
      expect(buildPowerShellRunner(command, { stdin: 'stdin-line' })).toEqual([
        ...literals,
        ...CONSTANT_HEAD,
        STDIN_LINE['stdin-line'],
        ...CONSTANT_TAIL,
      ]);
    }
  });

  it('buildPowerShellRunner — for any argv, env and stdin, every literal holds only base64 text, no quote appears, and the rest is constant', () => {
    fc.assert(
      fc.property(commandArb, sourceArb, (command, stdin) => {
        const lines = buildPowerShellRunner(command, { stdin });
        const assignments = stdin === 'literal' ? 4 : 3;
        expect(lines.slice(0, assignments).every((line) => ASSIGNMENT.test(line))).toBe(true);
        expect(lines.slice(assignments)).toEqual([...CONSTANT_HEAD, STDIN_LINE[stdin], ...CONSTANT_TAIL]);
        for (const line of lines) {
          for (const text of literalsOf(line)) {
            expect(text).toMatch(LITERAL_TEXT);
            expect(text).not.toMatch(QUOTES);
          }
          expect(line.replaceAll("'", '')).not.toMatch(QUOTES);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('buildPowerShellRunner — the literals decode back to exactly the argv, env and stdin, quotes and PowerShell syntax included', () => {
    fc.assert(
      fc.property(commandArb, (command) => {
        const expected = {
          argv: argvOf(command),
          env: command.env ?? {},
          ...(stdinOf(command) === undefined ? {} : { stdin: stdinOf(command) }),
        };
        expect(decode(buildPowerShellRunner(command, { stdin: 'literal' }))).toEqual(expected);
        expect(decode(buildPowerShellRunner(command, { stdin: 'stdin-line' }), stdinOf(command))).toEqual(
          expected,
        );
      }),
      { numRuns: 300 },
    );
    const hostile = [
      "'; Remove-Item C:\\ -Recurse; '",
      '$(Get-Process)',
      '‘smart’ ‚low‛ `n "x" “y”',
      '@args',
      '',
    ];
    const command = {
      argv: ['cmd.exe', ...hostile],
      env: { FW_Q: hostile.join('\n') },
      stdin: hostile[0] as string,
    };
    expect(decode(buildPowerShellRunner(command, { stdin: 'literal' }))).toEqual(command);
  });

  it('buildPowerShellRunner — with stdin on a line of its own, the script carries only whether there is input, never the input', () => {
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 4 }), value, value, (argv, a, b) => {
        const withA = buildPowerShellRunner({ argv, stdin: a }, { stdin: 'stdin-line' });
        expect(withA).toEqual(buildPowerShellRunner({ argv, stdin: b }, { stdin: 'stdin-line' }));
        expect(withA).not.toEqual(buildPowerShellRunner({ argv }, { stdin: 'stdin-line' }));
        expect(withA.some((line) => line.startsWith('$fw_stdin'))).toBe(false);
      }),
      { numRuns: 100 },
    );
  });
});
