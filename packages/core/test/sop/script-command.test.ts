import { type Script, type Server, scriptCommand } from '@fleetward/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type SopFixture, sopFleet } from './helpers.js';

const WINDOWS_FLAGS = [
  'powershell.exe',
  '-NoLogo',
  '-NoProfile',
  '-NonInteractive',
  '-ExecutionPolicy',
  'Bypass',
  '-EncodedCommand',
];

const wrapperOf = (argv: readonly string[]) =>
  Buffer.from(argv[WINDOWS_FLAGS.length] ?? '', 'base64').toString('utf16le');

describe('scriptCommand', () => {
  let fx: SopFixture;
  let ps: Script;
  let psOther: Script;
  let bash: Script;
  let windows: Server;
  let winrm: Server;
  let linux: Server;
  let unknown: Server;

  beforeAll(async () => {
    fx = await sopFleet({ servers: 0 });
    const add = (input: Omit<Parameters<SopFixture['alice']['servers']['add']>[0], 'accountId'>) =>
      fx.alice.servers.add({ accountId: 'dc', ...input });
    windows = await add({
      id: 'w1',
      name: 'w1',
      provider: 'local',
      os: { family: 'windows', id: 'windows' },
    });
    winrm = await add({ id: 'w2', name: 'w2', provider: 'winrm', address: '127.0.0.1' });
    linux = await add({ id: 'l1', name: 'l1', provider: 'local', os: { family: 'debian', id: 'debian' } });
    unknown = await add({ id: 'l2', name: 'l2', provider: 'local' });
    const script = (name: string, interpreter: Script['interpreter'], body: string) =>
      fx.alice.scripts.add({ name, interpreter, body, runAsRoot: true });
    ps = await script('ps', 'powershell', 'if ($true) {\n  "x"\n}\n');
    psOther = await script('ps-other', 'powershell', "Write-Output 'other'\n");
    bash = await script('sh', 'bash', 'echo hi\n');
  });

  it('scriptCommand — PowerShell on a Windows server runs a constant -EncodedCommand wrapper, script on stdin, env as given, never sudo', () => {
    const env = { VALUE: `"; Remove-Item C:\\ -Recurse; '`, FLEETWARD_RUN_ID: 'r1' };
    const command = scriptCommand(ps, windows, env);
    expect(command.interpreter.slice(0, WINDOWS_FLAGS.length)).toEqual(WINDOWS_FLAGS);
    expect(command.interpreter).toHaveLength(WINDOWS_FLAGS.length + 1);
    expect(command.script).toBe(ps.body);
    expect(command.env).toEqual(env);
    expect(command.sudo).toBe(false);

    const other = scriptCommand(psOther, windows, { OTHER: 'y' });
    expect(other.interpreter).toEqual(command.interpreter);
    const wrapper = wrapperOf(command.interpreter);
    expect(wrapper.split('\n')[0]).toBe('# fleetward:powershell-file v1');
    expect(wrapper).not.toContain('Remove-Item');
    expect(wrapper).not.toContain('"x"');
  });

  it('scriptCommand — the wrapper runs standard input as a UTF-8 (BOM) temporary .ps1 file with -File, keeps its exit code and deletes it', () => {
    const wrapper = wrapperOf(scriptCommand(ps, windows, {}).interpreter);
    expect(wrapper).toContain('[Console]::OpenStandardInput().CopyTo(');
    expect(wrapper).toContain('[byte[]](0xEF, 0xBB, 0xBF)');
    expect(wrapper).toMatch(
      /GetTempPath\(\), 'fleetward-' \+ \[guid\]::NewGuid\(\)\.ToString\(\) \+ '\.ps1'/,
    );
    expect(wrapper).toContain("'CreateNew'");
    expect(wrapper).toMatch(/-ExecutionPolicy Bypass -File \$fw_file\n\s+\$fw_code = \$LASTEXITCODE/);
    expect(wrapper.split('\n').slice(-5)).toEqual([
      '} finally {',
      '  if ($fw_hold) { $fw_hold.Dispose() }',
      '  if ($fw_file) { [System.IO.File]::Delete($fw_file) }',
      '}',
      'exit $fw_code',
    ]);
    expect(wrapper).not.toMatch(/-Command\b/);
  });

  it('scriptCommand — a server reached over WinRM is Windows before its OS is known', () => {
    expect(scriptCommand(ps, winrm, {}).interpreter).toEqual(scriptCommand(ps, windows, {}).interpreter);
  });

  it('scriptCommand — PowerShell elsewhere and every other interpreter go through the POSIX file wrapper, with sudo when run as root', () => {
    for (const server of [linux, unknown]) {
      const command = scriptCommand(ps, server, { A: 'b' });
      expect(command.interpreter[0]).toBe('sh');
      expect(command.interpreter.slice(3)).toEqual([
        'fleetward-script',
        '.ps1',
        'pwsh',
        '-NoProfile',
        '-NonInteractive',
        '-File',
      ]);
      expect(command).toMatchObject({ script: ps.body, env: { A: 'b' }, sudo: true });
    }
    const onWindows = scriptCommand(bash, windows, {});
    expect(onWindows.interpreter.slice(3)).toEqual(['fleetward-script', '.sh', 'bash']);
    expect(onWindows.sudo).toBe(true);
  });
});
