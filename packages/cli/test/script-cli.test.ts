import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';
import { runOnTerminal } from './support/terminal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-script-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => runCliIn(join(dir, 'data'), args);
/** The JSON a command prints with `--json`, once it succeeded. */
async function json(...args: string[]) {
  const r = await run(...args, '--json');
  expect(r.code, r.stderr || r.stdout).toBe(EXIT.ok);
  return JSON.parse(r.stdout);
}

/** Adds `greet`: writes $WHO to $OUT, says hello on stdout, complains on stderr, exits $CODE. */
async function addGreet() {
  const file = join(dir, 'greet.sh');
  writeFileSync(file, 'printf "%s" "$WHO" > "$OUT"\necho "hello $WHO"\necho "careful" >&2\nexit "$CODE"\n');
  return run(
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
    const added = await addGreet();
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(added.stdout).toMatch(/^greet revision 1, hash [a-f0-9]{64}\n$/);
    expect((await run('script', 'list')).stdout).toMatch(
      /greet +1 +[a-f0-9]{12} +sh +WHO!,OUT!,CODE +demo +no/,
    );
    expect((await run('scripts', '-o', 'id')).stdout).toBe('greet\n');

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
    expect(ran.stdout).toMatch(/Output of each server: fleetward runs show \S+/);
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

    const old = await run('script', 'run', 'greet', '--max-concurrency', '2', '-s', 'localhost');
    expect(old.code).toBe(EXIT.usage);
    expect(old.stderr).toContain("unknown option '--max-concurrency'");
  });

  it('script run on a terminal — progress lines name each wave and each server as it ends', async () => {
    expect((await addGreet()).code).toBe(EXIT.ok);
    const out = join(dir, 'who');
    const args = ['script', 'run', 'greet', '-s', 'localhost', '-p', 'WHO=x', '-p', `OUT=${out}`];
    const ran = await runOnTerminal(join(dir, 'data'), args);
    expect(ran.code, ran.stderr).toBe(EXIT.ok);
    expect(ran.stderr).toMatch(
      /Starting run (\S+) of greet…\nWave all: localhost\n\[1\/1\] ok localhost \(exit 0\)\nRun \1 succeeded\n$/,
    );
    const failed = await runOnTerminal(join(dir, 'data'), [...args, '-p', 'CODE=2']);
    expect(failed.code).toBe(EXIT.failure);
    expect(failed.stderr).toMatch(/\[1\/1\] failed localhost \(exit 2\)/);
  });

  it('script run --plan-only, script start — a planned run starts later by its id; resume --start is gone', async () => {
    expect((await addGreet()).code).toBe(EXIT.ok);
    const out = join(dir, 'who');
    const planned = await run(
      'script',
      'run',
      'greet',
      '-s',
      'localhost',
      '-p',
      'WHO=later',
      '-p',
      `OUT=${out}`,
      '--plan-only',
      '-o',
      'id',
    );
    expect(planned.code, planned.stderr).toBe(EXIT.ok);
    const runId = planned.stdout.trim();
    expect(runId).toMatch(/^\S+$/);
    expect(existsSync(out)).toBe(false);
    expect(await json('runs', 'list', '--status', 'awaiting-start')).toEqual([
      expect.objectContaining({ id: runId, scriptName: 'greet', status: 'awaiting-start' }),
    ]);

    const human = await run(
      'script',
      'run',
      'greet',
      '-s',
      'localhost',
      '-p',
      'WHO=x',
      '-p',
      `OUT=${out}`,
      '--plan-only',
    );
    expect(human.stdout).toMatch(/^Planned run (\S+); start it with: fleetward script start \1\n$/);

    expect((await run('script', 'resume', runId, '--start')).code).toBe(EXIT.usage);
    const started = await run('script', 'start', runId);
    expect(started.code, started.stderr).toBe(EXIT.ok);
    expect(started.stdout).toContain(`Run ${runId} of greet revision 1`);
    expect(readFileSync(out, 'utf8')).toBe('later');
    const again = await run('script', 'start', runId);
    expect(again.code).toBe(EXIT.failure);
    expect(again.stderr).toContain('cannot run again');
  });

  it('runs show — each server’s exit code, stdout and stderr; -s shows one server; unknown ids say how to find them', async () => {
    expect((await addGreet()).code).toBe(EXIT.ok);
    const out = join(dir, 'who');
    const runId = (
      await run(
        'script',
        'run',
        'greet',
        '-s',
        'localhost',
        '-p',
        'WHO=world',
        '-p',
        `OUT=${out}`,
        '-p',
        'CODE=3',
        '-o',
        'id',
      )
    ).stdout.trim();
    expect(runId).not.toBe('');

    const shown = await run('runs', 'show', runId);
    expect(shown.code, shown.stderr).toBe(EXIT.ok);
    expect(shown.stdout).toContain(`Run ${runId} of greet revision 1`);
    expect(shown.stdout).toMatch(/=== localhost \(wave all\): failed, exit 3/);
    expect(shown.stdout).toContain('--- stdout (12 bytes)\nhello world\n');
    expect(shown.stdout).toContain('--- stderr (8 bytes)\ncareful');

    const one = await json('run', 'show', runId, '-s', 'localhost');
    expect(one.servers).toEqual([
      expect.objectContaining({
        serverId: 'localhost',
        exitCode: 3,
        stdout: expect.objectContaining({ text: 'hello world\n', truncated: false }),
        stderr: expect.objectContaining({ text: 'careful\n' }),
      }),
    ]);

    const other = await run('runs', 'show', runId, '-s', 'web-1');
    expect(other.code).toBe(EXIT.failure);
    expect(other.stderr).toContain('server "web-1" not found');
    expect(other.stderr).toContain(`Run ${runId} ran on localhost.`);
    const unknown = await run('runs', 'show', 'nope');
    expect(unknown.code).toBe(EXIT.failure);
    expect(unknown.stderr).toContain('fleetward runs list');

    expect((await run('runs', '--script', 'greet', '-o', 'id')).stdout).toBe(`${runId}\n`);
    expect((await run('runs', 'list', '--script', 'greet', '--status', 'succeeded', '-o', 'id')).stdout).toBe(
      '',
    );
  });

  it('runs show — output beyond what is kept says so, and escape sequences a script prints never reach the terminal', async () => {
    const file = join(dir, 'loud.sh');
    writeFileSync(file, "printf '\\033]0;owned\\007\\033[2J'\nhead -c 70000 /dev/zero | tr '\\0' a\n");
    expect((await run('script', 'add', file, '--name', 'loud')).code).toBe(EXIT.ok);
    const runId = (await run('script', 'run', 'loud', '-s', 'localhost', '-o', 'id')).stdout.trim();

    const results = await json('runs', 'show', runId);
    const stdout = results.servers[0].stdout as { text: string; bytes: number; truncated: boolean };
    expect(stdout.truncated).toBe(true);
    expect(stdout.bytes).toBe(70_000 + 14);
    expect(stdout.text.startsWith('\u001b]0;owned\u0007')).toBe(true);

    const shown = await run('runs', 'show', runId);
    expect(shown.stdout).toMatch(
      /--- stdout \(70014 bytes, only the first \d+ kept\)\n\?\]0;owned\?\?\[2Jaaaa/,
    );
    expect(shown.stdout).not.toContain('\u001b');
    expect(shown.stdout).not.toContain('\u0007');
  });

  it('script approve — a risky script runs only after someone else approves the hash it has now', async () => {
    const file = join(dir, 'risky.sh');
    writeFileSync(file, 'true\n');
    expect((await run('principals', 'add', 'bob', '--name', 'Bob', '--role', 'tenant-admin')).code).toBe(
      EXIT.ok,
    );
    const added = await run('script', 'add', file, '--name', 'risky', '--risky');
    const hash = /hash ([a-f0-9]{64})/.exec(added.stdout)![1]!;
    expect(added.stdout).toContain(`fleetward --as <someone else> script approve risky --hash ${hash}`);
    const refused = await run('script', 'run', 'risky', '-s', 'localhost');
    expect(refused.code).toBe(EXIT.failure);
    expect(refused.stderr).toContain('nobody has approved its content hash yet');
    expect((await run('script', 'show', 'risky')).stdout).toMatch(/approval +not approved: /);
    expect((await run('script', 'approve', 'risky', '--hash', hash)).stderr).toContain('cannot approve');
    expect((await run('--as', 'bob', 'script', 'approve', 'risky', '--hash', hash)).code).toBe(EXIT.ok);
    const shown = await run('script', 'show', 'risky');
    expect(shown.stdout).toContain(`hash        ${hash}`);
    expect(shown.stdout).toMatch(/approval +approved by bob/);
    expect(shown.stdout.endsWith('\ntrue\n')).toBe(true);
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
