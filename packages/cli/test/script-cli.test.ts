import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-script-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function run(...args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--data-dir', join(dir, 'data'), ...args], {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    env: {},
    isTTY: false,
  });
  return { code, stdout, stderr };
}

describe('fleetward script', () => {
  it('script run — a reserved parameter name is a usage error, never silently dropped', async () => {
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      for (const flag of ['-p', '-e']) {
        const ran = await run('script', 'run', 'greet', '-s', 'localhost', flag, `${name}=x`);
        expect(ran.code).toBe(EXIT.usage);
        expect(ran.stderr).toContain(`"${name}" is a reserved name`);
      }
    }
  });

  it('script add/list/run — parameters from the command line reach the script as literal values; the exit code follows the run', async () => {
    const file = join(dir, 'greet.sh');
    writeFileSync(file, 'printf "%s" "$WHO" > "$OUT"\necho "hello $WHO"\nexit "$CODE"\n');
    const added = await run(
      'script',
      'add',
      file,
      '--name',
      'greet',
      '-p',
      'WHO!',
      '-p',
      'OUT!',
      '-p',
      'CODE:integer=0',
      '-t',
      'demo',
    );
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(added.stdout).toMatch(/^greet revision 1, hash [a-f0-9]{64}\n$/);
    expect((await run('script', 'list')).stdout).toMatch(
      /greet +1 +[a-f0-9]{12} +sh +WHO!,OUT!,CODE +demo +no/,
    );

    const out = join(dir, 'who');
    const value = `x'; touch ${join(dir, 'pwned')}; '`;
    const ran = await run(
      'script',
      'run',
      'greet',
      '-s',
      'localhost',
      '-p',
      `WHO=${value}`,
      '-p',
      `OUT=${out}`,
    );
    expect(ran.code, ran.stderr).toBe(EXIT.ok);
    expect(ran.stderr).toContain('stops starting servers after the first failed server of 1');
    expect(ran.stdout).toMatch(/localhost +all +succeeded +0/);
    expect(readFileSync(out, 'utf8')).toBe(value);
    expect(existsSync(join(dir, 'pwned'))).toBe(false);

    const failed = await run(
      'script',
      'run',
      'greet',
      '-s',
      'localhost',
      '-p',
      'WHO=x',
      '-p',
      `OUT=${out}`,
      '-p',
      'CODE=4',
      '--json',
    );
    expect(failed.code).toBe(EXIT.failure);
    const results = JSON.parse(failed.stdout) as { run: { status: string }; servers: { exitCode: number }[] };
    expect(results.run.status).toBe('failed');
    expect(results.servers[0]!.exitCode).toBe(4);
  });

  it('script approve — a risky script runs only after someone else approves the hash it has now', async () => {
    const file = join(dir, 'risky.sh');
    writeFileSync(file, 'true\n');
    expect((await run('principal', 'add', 'bob', '--name', 'Bob')).code).toBe(EXIT.ok);
    const added = await run('script', 'add', file, '--name', 'risky', '--risky');
    const hash = /hash ([a-f0-9]{64})/.exec(added.stdout)![1]!;
    const refused = await run('script', 'run', 'risky', '-s', 'localhost');
    expect(refused.code).toBe(EXIT.failure);
    expect(refused.stderr).toContain('nobody has approved its content hash yet');
    expect((await run('script', 'approve', 'risky', '--hash', hash)).stderr).toContain('cannot approve');
    expect((await run('--as', 'bob', 'script', 'approve', 'risky', '--hash', hash)).code).toBe(EXIT.ok);
    expect((await run('script', 'run', 'risky', '-s', 'localhost')).code).toBe(EXIT.ok);
  });

  it('script export/import — a folder for git, imported again without adding anything', async () => {
    const file = join(dir, 'a.py');
    writeFileSync(file, 'print("a")\n');
    await run('script', 'add', file, '--name', 'a');
    const repo = join(dir, 'repo');
    expect((await run('script', 'export', repo)).stdout).toBe(`Exported 1 script(s) to ${repo}.\n`);
    expect(readFileSync(join(repo, 'a.py'), 'utf8')).toBe('print("a")\n');
    expect((await run('script', 'import', repo)).stdout).toBe('0 added, 1 unchanged.\n');
    writeFileSync(join(repo, 'a.py'), 'print("tampered")\n');
    const tampered = await run('script', 'import', repo);
    expect(tampered.code).toBe(EXIT.failure);
    expect(tampered.stderr).toContain('scripts.0.sha256');
  });
});
