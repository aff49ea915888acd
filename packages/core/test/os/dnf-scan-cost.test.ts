import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dnfDriver } from '../../src/os/dnf.js';
import type { CommandOutput } from '../../src/os/driver.js';

/**
 * The dnf scan script run by sh against a stand-in dnf whose answers are set per subcommand, and
 * a stand-in rpm: which dnf runs it makes, and what the parser makes of them.
 */
describe('the dnf scan script loads the metadata only as often as it must', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-dnf-cost-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const PATH = `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`;

  function install(answers: {
    checkUpdate: [number, string];
    list: [number, string];
    info: [number, string];
  }) {
    for (const [name, [code, text]] of Object.entries(answers)) {
      writeFileSync(join(dir, `${name}.txt`), text);
      writeFileSync(join(dir, `${name}.code`), String(code));
    }
    writeFileSync(join(dir, 'log.txt'), '');
    const answer = (name: string) => `cat "${dir}/${name}.txt"; exit "$(cat "${dir}/${name}.code")"`;
    writeFileSync(
      join(dir, 'dnf'),
      [
        '#!/bin/sh',
        `printf '%s\\n' "$*" >> "${dir}/log.txt"`,
        'case "$*" in',
        `*check-update*) ${answer('checkUpdate')} ;;`,
        `*"updateinfo list"*) ${answer('list')} ;;`,
        `*"updateinfo info"*) ${answer('info')} ;;`,
        `*) echo 'No such command: needs-restarting.' >&2; exit 1 ;;`,
        'esac',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'rpm'), "#!/bin/sh\necho 'labdemo|0|1.0|1|noarch|1700000000'\n");
    for (const t of ['dnf', 'rpm']) chmodSync(join(dir, t), 0o755);
  }

  function run(): { output: CommandOutput; runs: string[] } {
    const cmd = dnfDriver.scanCommand();
    if (!('script' in cmd)) throw new Error('dnf scan command is not a script');
    const r = spawnSync(cmd.interpreter[0]!, cmd.interpreter.slice(1), {
      input: cmd.script,
      encoding: 'utf8',
      env: { ...process.env, ...cmd.env, PATH },
    });
    const runs = readFileSync(join(dir, 'log.txt'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) =>
        l
          .split(' ')
          .filter((a) => !a.startsWith('-'))
          .join(' '),
      );
    return { output: { exitCode: r.status, stdout: r.stdout, stderr: r.stderr }, runs };
  }

  const AGE = 'Last metadata expiration check: 0:01:45 ago on Mon Dec  7 15:45:37 2026.\n';

  it('scanCommand — nothing to update: one check-update, no updateinfo, no patches', () => {
    install({ checkUpdate: [0, AGE], list: [0, 'must not run\n'], info: [0, 'must not run\n'] });
    const { output, runs } = run();
    expect(runs).toEqual(['check-update', 'needs-restarting']);
    expect(dnfDriver.parseScan(output).patches).toEqual([]);
  });

  it('scanCommand — updates without advisories: updateinfo list runs, info does not', () => {
    install({
      checkUpdate: [100, `${AGE}\nlabdemo.noarch   1.1-1   fleetward-lab\n`],
      list: [0, ''],
      info: [0, 'must not run\n'],
    });
    const { output, runs } = run();
    expect(runs).toEqual(['check-update', 'updateinfo list updates', 'needs-restarting']);
    const scan = dnfDriver.parseScan(output);
    expect(scan.patches.map((p) => [p.name, p.candidateVersion, p.category])).toEqual([
      ['labdemo', '1.1-1', 'unknown'],
    ]);
  });

  it('scanCommand — updates with advisories: list and info both run and classify the update', () => {
    install({
      checkUpdate: [100, `${AGE}\nlabdemo.noarch   1.1-1   fleetward-lab\n`],
      list: [0, 'LAB-2026:0001 Critical/Sec. labdemo-1.1-1.noarch\n'],
      info: [
        0,
        [
          '===============================================================================',
          '  labdemo security update',
          '===============================================================================',
          '  Update ID: LAB-2026:0001',
          '       Type: security',
          '   Severity: Important',
          '',
        ].join('\n'),
      ],
    });
    const { output, runs } = run();
    expect(runs).toEqual([
      'check-update',
      'updateinfo list updates',
      'updateinfo info updates',
      'needs-restarting',
    ]);
    const [patch] = dnfDriver.parseScan(output).patches;
    // info's severity wins over the list label's, as before: info must still run.
    expect(patch).toMatchObject({
      category: 'security',
      severity: 'important',
      advisories: ['LAB-2026:0001'],
    });
  });
});
