import type { Fleet, FleetSession, ScriptRunResults } from '@fleetward/core';
import {
  answerWindowsUpdate,
  startWinRmFake,
  type WinRmFake,
  type WinRmFakeCommand,
  type WinRmFakeCommandResult,
  type WinRmFakeWindowsUpdate,
} from '@fleetward/testkit/winrm';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { adapterFor, addWindowsServer, T, USER, windowsFleet } from './support/fleet.js';

// PowerShell scripts on Windows servers, end to end through a Fleet and the WinRM adapter: the
// host sees a constant command line (`-EncodedCommand` of a wrapper that runs the script from a
// file), the script's exact text on stdin and each parameter as the exact value of its variable,
// whatever the value holds.
const MARKER = '# fleetward:powershell-file v1';
const FLAGS = ['powershell.exe', '-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass'];

/** What the emulated host was asked to run, decoded from Fleetward's WinRM runner. */
interface HostCall {
  argv: string[];
  env: Record<string, string>;
  /** The text the program reads on stdin, undefined when the runner gives it none. */
  stdin: string | undefined;
  /** The program's own `-EncodedCommand` script, decoded, when it has one. */
  encoded: string | undefined;
}

const fromBase64 = (text: string) => Buffer.from(text, 'base64').toString('utf8');

/** The literal assigned to `$name` in a runner (`$fw_argv = '…'`). */
function literal(runner: string, name: string): string {
  const value = new RegExp(`^\\$${name} = '([^']*)'`, 'm').exec(runner)?.[1];
  if (value === undefined) throw new Error(`the runner assigns no $${name}`);
  return value;
}

/**
 * Decodes a command of the WinRM adapter: the runner is the `-EncodedCommand` script itself or,
 * when it did not fit the command line, the first stdin line (base64) read by the bootstrap; the
 * program's stdin is the next stdin line (base64).
 */
function decodeRunner(script: string, command: WinRmFakeCommand): HostCall {
  const lines = (command.stdin?.toString('latin1') ?? '').split('\r\n');
  const runner = script.includes("$fw_argv = '") ? script : fromBase64(lines.shift() ?? '');
  const argv = literal(runner, 'fw_argv')
    .split(' ')
    .filter(Boolean)
    .map((a) => fromBase64(a.slice(1)));
  const env: Record<string, string> = {};
  for (const pair of literal(runner, 'fw_env').split(' ').filter(Boolean)) {
    const eq = pair.indexOf('=');
    env[pair.slice(0, eq)] = fromBase64(pair.slice(eq + 1));
  }
  const stdin = literal(runner, 'fw_has_stdin') === '1' ? fromBase64(lines[0] ?? '') : undefined;
  const at = argv.findIndex((a) => a.toLowerCase() === '-encodedcommand');
  const encoded = at < 0 ? undefined : Buffer.from(argv[at + 1] ?? '', 'base64').toString('utf16le');
  return { argv, env, stdin, encoded };
}

describe('PowerShell scripts on Windows servers through the WinRM adapter', () => {
  let fleet: Fleet;
  let fake: WinRmFake;
  let model: WinRmFakeWindowsUpdate;
  let alice: FleetSession;
  let bob: FleetSession;
  let calls: HostCall[];

  /** The emulated host: Fleetward's file wrapper "runs" the script; Windows Update scripts get the model's answers. */
  function host(script: string, command: WinRmFakeCommand): WinRmFakeCommandResult {
    const call = decodeRunner(script, command);
    if (call.encoded?.startsWith(MARKER)) {
      calls.push(call);
      return { stdout: `ran ${call.env['FLEETWARD_SCRIPT'] ?? 'a patch script'}\r\n`, exitCode: 0 };
    }
    return answerWindowsUpdate(model, script, command) ?? { stderr: 'unexpected command\r\n', exitCode: 1 };
  }

  beforeEach(async () => {
    calls = [];
    model = {
      offered: [
        {
          id: 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab',
          revision: 201,
          title: '2026-11 Cumulative Update for .NET Framework 3.5 and 4.8 (KB5045935)',
          kb: ['5045935'],
          classification: 'Security Updates',
          severity: 'Important',
        },
      ],
    };
    fake = await startWinRmFake({ users: [USER], powershell: host });
    ({ fleet, alice, bob } = await windowsFleet([adapterFor(fake), adapterFor(fake, 'winrm-b')]));
    await addWindowsServer(alice, 'win-a', fake);
    await addWindowsServer(alice, 'win-b', fake, 'winrm-b');
  }, 60_000);

  afterEach(async () => {
    await fleet?.close();
    await fake?.close();
  });

  const addEcho = (body = '$v = $env:VALUE\r\nWrite-Output "got [$v]"\r\n') =>
    alice.scripts.add({
      name: 'echo-value',
      interpreter: 'powershell',
      osFamilies: ['windows'],
      body,
      parameters: [{ name: 'VALUE', type: 'string' }],
      runAsRoot: true,
    });

  const expectSucceeded = (results: ScriptRunResults, servers: number) => {
    expect(
      results.servers.map((s) => s.state),
      JSON.stringify(results.servers.map((s) => s.error)),
    ).toEqual(Array(servers).fill('succeeded'));
  };

  /** Runs `echo-value` with `value` on win-a and returns what the host got. */
  const runWith = async (value: string): Promise<HostCall> => {
    calls = [];
    const results = await alice.scripts.runScript({
      script: 'echo-value',
      params: { VALUE: value },
      targets: { serverIds: ['win-a'] },
    });
    expectSucceeded(results, 1);
    expect(calls).toHaveLength(1);
    return calls[0] as HostCall;
  };

  /** The command line is flags and base64 only: nothing Windows PowerShell 5.1 would re-quote. */
  const expectConstantArgv = (call: HostCall, baseline: HostCall) => {
    expect(call.argv).toEqual(baseline.argv);
    expect(call.argv.slice(0, FLAGS.length + 1)).toEqual([...FLAGS, '-EncodedCommand']);
    expect(call.argv).toHaveLength(FLAGS.length + 2);
    for (const arg of call.argv) expect(arg).toMatch(/^[-A-Za-z0-9+/=.]+$/);
  };

  it('runScript — a hostile parameter reaches the script as the exact value of its variable, never in the command line', async () => {
    const script = await addEcho();
    const baseline = await runWith('plain');
    expect(baseline.encoded?.split('\n')[0]).toBe(MARKER);

    const hostile = [
      "x'; Remove-Item -Recurse C:\\; '",
      'say "hi" and ""quit""',
      '‘smart’ ‚low‛ “double” „low“',
      '$(Stop-Computer -Force)',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: PowerShell variable syntax, not a template
      '${env:COMPUTERNAME}',
      '`$x`n`0 trailing backtick `',
      'a; b | c & d && e || f',
      'line one\nline two\r\nline three\r',
      '%PATH% %USERPROFILE% !VAR!',
      '@(1,2) @{a=1} [char]65',
      '-EncodedCommand ZQBjAGgAbwAgAHAAdwBuAGUAZAA=',
      '#> <# -- */ <!-- ',
      '\u00e9\u00df\u4e2d\u6587 \u{1F600} \u202e\u200b\uFEFF',
      ' ',
      '',
      '\\\\server\\share\\"',
    ];
    for (const value of hostile) {
      const call = await runWith(value);
      expect(call.env['VALUE']).toBe(value);
      expect(call.env['FLEETWARD_SCRIPT']).toBe('echo-value');
      expect(call.stdin).toBe(script.body);
      expectConstantArgv(call, baseline);
      if (value.trim().length > 3) expect(call.encoded).not.toContain(value);
    }
  }, 120_000);

  it('runScript — any string value arrives intact with the same command line (property)', async () => {
    const script = await addEcho();
    const baseline = await runWith('plain');
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !s.includes('\0')),
        async (value) => {
          const call = await runWith(value);
          expect(call.env['VALUE']).toBe(value);
          expect(call.stdin).toBe(script.body);
          expectConstantArgv(call, baseline);
        },
      ),
      { numRuns: 30 },
    );
  }, 120_000);

  it('runScript — a multi-line script reaches the host whole on stdin, for a file; the same wrapper on every Windows server, without sudo', async () => {
    // Blocks that `-Command -` would hold back until a blank line: none follows them here.
    const body = [
      'param()',
      'function Get-Greeting([string]$name) {',
      '  if ($name) {',
      '    "hello $name"',
      '  } else {',
      "    'hello nobody'",
      '  }',
      '}',
      'foreach ($i in 1..3) {',
      '  Get-Greeting "n$i"',
      '}',
      "$text = @'",
      "literal 'here-string' with $notAVariable and \u00e9\u4e2d",
      "'@",
      'Write-Output $text',
      'exit 3',
    ].join('\r\n');
    const script = await addEcho(body);
    const results = await alice.scripts.runScript({
      script: 'echo-value',
      params: { VALUE: 'v' },
      targets: { serverIds: ['win-a', 'win-b'] },
    });
    expectSucceeded(results, 2);
    expect(calls).toHaveLength(2);
    const [a, b] = calls as [HostCall, HostCall];
    expect(a.stdin).toBe(body);
    expect(b.stdin).toBe(body);
    expect(b.argv).toEqual(a.argv);
    expect(a.argv[0]).toBe('powershell.exe');
    expect(a.argv).not.toContain('sudo');
    expect(a.argv).not.toContain('-Command');
    expect(a.env['FLEETWARD_SCRIPT_HASH']).toBe(script.contentHash);
    for (const line of body.split('\r\n').filter((l) => l.length > 8)) {
      expect(a.encoded).not.toContain(line);
    }
    expect(results.servers.map((s) => s.stdout?.text)).toEqual(['ran echo-value\r\n', 'ran echo-value\r\n']);
  }, 60_000);

  it('executePlan — pre- and post-scripts in PowerShell run with the same file wrapper as a script run', async () => {
    const body = 'if ($true) {\r\n  Stop-Service -Name W3SVC\r\n}\r\n';
    const script = await alice.scripts.add({
      name: 'drain',
      interpreter: 'powershell',
      osFamilies: ['windows'],
      body,
      runAsRoot: true,
    });
    await alice.scripts.add({
      name: 'echo-value',
      interpreter: 'powershell',
      body: 'Write-Output $env:VALUE',
      parameters: [{ name: 'VALUE', type: 'string' }],
    });
    await alice.scripts.runScript({
      script: 'echo-value',
      params: { VALUE: 'x' },
      targets: { serverIds: ['win-a'] },
    });
    const runCall = calls[0] as HostCall;
    calls = [];

    await alice.projects.add({ id: 'p', name: 'Windows', selector: { all: true } });
    await alice.patch.policies.add({
      id: 'sec',
      name: 'Security',
      projectId: 'p',
      reboot: 'never',
      preScripts: [script.id],
      postScripts: [script.id],
    });
    const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
    await bob.patch.approvePlan(plan.id, { hash: plan.hash });
    const job = await bob.patch.executePlan(plan.id, { pollIntervalMs: 100 });
    const tasks = await fleet.store.taskResults.list(T, { where: { jobId: job.id } });
    expect(job.status, JSON.stringify(tasks.map((t) => t.error))).toBe('succeeded');

    // Pre and post on each of the two servers, each the script's exact text behind the same wrapper.
    expect(calls).toHaveLength(4);
    for (const call of calls) {
      expect(call.argv).toEqual(runCall.argv);
      expect(call.stdin).toBe(body);
    }
  }, 60_000);
});
