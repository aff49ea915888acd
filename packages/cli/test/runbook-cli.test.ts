import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-runbook-'));
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

describe('fleetward runbook', () => {
  it('runbook define/start/approve/show — the run pauses at its gate and another principal lets it finish', async () => {
    const script = join(dir, 'note.sh');
    writeFileSync(script, 'printf "%s\\n" "$WHAT" >> "$OUT"\n');
    expect((await run('script', 'add', script, '--name', 'note', '-p', 'WHAT!', '-p', 'OUT!')).code).toBe(
      EXIT.ok,
    );
    expect((await run('principal', 'add', 'bob', '--name', 'Bob')).code).toBe(EXIT.ok);
    const out = join(dir, 'notes');
    const file = join(dir, 'runbook.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'two-notes',
        parameters: [{ name: 'OUT', type: 'string', required: true }],
        steps: [
          { id: 'first', kind: 'script', script: 'note', params: { WHAT: 'first', OUT: { param: 'OUT' } } },
          { id: 'gate', kind: 'approval' },
          { id: 'second', kind: 'script', script: 'note', params: { WHAT: 'second', OUT: { param: 'OUT' } } },
        ],
      }),
    );
    const defined = await run('runbook', 'define', file);
    expect(defined.code, defined.stderr).toBe(EXIT.ok);
    expect(defined.stdout).toMatch(/^two-notes revision 1, hash [a-f0-9]{64}\n$/);

    const started = await run(
      'runbook',
      'start',
      'two-notes',
      '-s',
      'localhost',
      '-p',
      `OUT=${out}`,
      '--json',
    );
    expect(started.code, started.stderr).toBe(EXIT.ok);
    const paused = JSON.parse(started.stdout) as { id: string; status: string };
    expect(paused.status).toBe('awaiting-approval');
    expect(readFileSync(out, 'utf8')).toBe('first\n');

    const own = await run('runbook', 'approve', paused.id);
    expect(own.code).toBe(EXIT.failure);
    expect(own.stderr).toContain('cannot approve its steps');
    const approved = await run('--as', 'bob', 'runbook', 'approve', paused.id, '--step', 'gate');
    expect(approved.code, approved.stderr).toBe(EXIT.ok);
    expect(approved.stdout).toMatch(/: succeeded\n/);
    expect(readFileSync(out, 'utf8')).toBe('first\nsecond\n');

    const shown = await run('runbook', 'show', paused.id);
    expect(shown.stdout).toMatch(/first +script +succeeded/);
    expect(shown.stdout).toMatch(/gate +approval +succeeded/);
    expect(shown.stdout).toMatch(/second +script +succeeded/);
  });

  it('runbook define — a backwards goto is refused with its path', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'loops',
        steps: [
          { id: 'a', kind: 'wait', durationSeconds: 1 },
          { id: 'b', kind: 'wait', durationSeconds: 1, onFailure: { goto: 'a' } },
        ],
      }),
    );
    const defined = await run('runbook', 'define', file);
    expect(defined.code).toBe(EXIT.failure);
    expect(defined.stderr).toContain('steps.1.onFailure.goto');
  });
});
