import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';
import { runOnTerminal } from './support/terminal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-runbook-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const data = () => join(dir, 'data');
const run = (...args: string[]) => runCliIn(data(), args);

/** Adds the script `note` (appends $WHAT to $OUT) and the runbook `two-notes` gated by an approval. */
async function defineTwoNotes() {
  const script = join(dir, 'note.sh');
  writeFileSync(script, 'printf "%s\\n" "$WHAT" >> "$OUT"\n');
  expect((await run('script', 'add', script, '--name', 'note', '-p', 'WHAT!', '-p', 'OUT!')).code).toBe(
    EXIT.ok,
  );
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
  return run('runbook', 'define', file);
}

describe('fleetward runbook', () => {
  it('runbook define/start/approve/show — the run pauses at its gate and another principal lets it finish', async () => {
    expect((await run('principals', 'add', 'bob', '--name', 'Bob', '--role', 'tenant-admin')).code).toBe(
      EXIT.ok,
    );
    const defined = await defineTwoNotes();
    expect(defined.code, defined.stderr).toBe(EXIT.ok);
    expect(defined.stdout).toMatch(/^two-notes revision 1, hash [a-f0-9]{64}\n$/);
    expect((await run('runbooks', '-o', 'id')).stdout).toBe('two-notes\n');
    expect((await run('runbook', 'list')).stdout).toMatch(
      /two-notes +1 +[a-f0-9]{12} +first:script gate:approval second:script/,
    );

    const out = join(dir, 'notes');
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
    expect(started.stderr).toContain(`fleetward --as <someone else> runbook approve ${paused.id}`);
    expect(readFileSync(out, 'utf8')).toBe('first\n');
    expect((await run('runbook', 'runs', '--status', 'awaiting-approval', '-o', 'id')).stdout).toBe(
      `${paused.id}\n`,
    );

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
    expect((await run('runbook', 'runs')).stdout).toMatch(
      new RegExp(`${paused.id} +two-notes +1 +succeeded`),
    );
  });

  it('runbook start — servers are chosen like everywhere else; choosing none is a usage error', async () => {
    expect((await defineTwoNotes()).code).toBe(EXIT.ok);
    const none = await run('runbook', 'start', 'two-notes', '-p', 'OUT=/tmp/x');
    expect(none.code).toBe(EXIT.usage);
    expect(none.stderr).toContain('choose the servers');
    const mixed = await run('runbook', 'start', 'two-notes', '-a', '-s', 'localhost', '-p', 'OUT=/tmp/x');
    expect(mixed.code).toBe(EXIT.usage);
    expect(mixed.stderr).toContain('--all cannot be combined');
    const unknown = await run('runbook', 'show', 'nope');
    expect(unknown.code).toBe(EXIT.failure);
    expect(unknown.stderr).toContain('runbook run "nope" not found');
  });

  it('runbook start on a terminal — progress lines name each step, the wait with its time left and its end', async () => {
    const file = join(dir, 'wait.json');
    writeFileSync(
      file,
      JSON.stringify({ name: 'pause', steps: [{ id: 'breathe', kind: 'wait', durationSeconds: 1 }] }),
    );
    expect((await run('runbook', 'define', file)).code).toBe(EXIT.ok);
    const started = await runOnTerminal(data(), ['runbook', 'start', 'pause', '-s', 'localhost']);
    expect(started.code, started.stderr).toBe(EXIT.ok);
    expect(started.stderr).toMatch(
      /^Starting run \S+ of pause…\nStep breathe \(wait\)\n {2}step breathe waits: opens \S+Z \(in [01]s\)\n/,
    );
    expect(started.stderr).toContain('  the wait of step breathe is over\n  succeeded\n');
    expect(started.stderr).toMatch(/Run \S+ succeeded\n$/);
    expect(started.stdout).toMatch(/breathe +wait +succeeded/);

    const quiet = await run('runbook', 'start', 'pause', '-s', 'localhost');
    expect(quiet.stderr).toBe('');
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
    writeFileSync(file, '{ not json');
    const broken = await run('runbook', 'define', file);
    expect(broken.code).toBe(EXIT.failure);
    expect(broken.stderr).toContain(`runbook file ${file}`);
  });
});
