import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;
/** Stands in for /etc: what a planted link points at. */
let outside: string;

const run = (args: string[]) => runCliIn(dir, args);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-out-cli-'));
  outside = mkdtempSync(join(tmpdir(), 'fleetward-outside-'));
  mkdirSync(join(outside, 'etc'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

/** Every command that writes a file the user names with `--out`. */
const WRITERS: [string, string[]][] = [
  ['audit export', ['audit', 'export']],
  ['audit report', ['audit', 'report', '--format', 'csv']],
  ['compliance report', ['compliance', 'report', '--format', 'json']],
];

describe('fleetward --out files', () => {
  for (const [name, args] of WRITERS) {
    it(`${name} — a symbolic link at the --out path is refused with its path, and its target is untouched`, async () => {
      const passwd = join(outside, 'passwd');
      writeFileSync(passwd, 'root:x:0:0\n');
      for (const target of [passwd, join(outside, 'etc'), join(outside, 'gone')]) {
        const out = join(dir, 'report.out');
        rmSync(out, { force: true });
        symlinkSync(target, out);
        const result = await run([...args, '--out', out]);
        expect(result.code, target).toBe(EXIT.failure);
        expect(result.stderr, target).toContain('VALIDATION_FAILED');
        expect(result.stderr, target).toContain(out);
        expect(readFileSync(passwd, 'utf8')).toBe('root:x:0:0\n');
        expect(readdirSync(join(outside, 'etc'))).toEqual([]);
        expect(readdirSync(outside).sort()).toEqual(['etc', 'passwd']);
        expect(lstatSync(out).isSymbolicLink()).toBe(true);
      }
      // A plain path still works, and replaces an earlier file whole.
      const plain = join(dir, 'plain.out');
      expect((await run([...args, '--out', plain])).code).toBe(EXIT.ok);
      expect((await run([...args, '--out', plain])).code).toBe(EXIT.ok);
      expect(readFileSync(plain, 'utf8').length).toBeGreaterThan(0);
      expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    });
  }

  it('audit export — --out - writes the JSON Lines to standard output and nothing else', async () => {
    const result = await run(['audit', 'export', '--out', '-']);
    expect(result.code, result.stderr).toBe(EXIT.ok);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
  });

  it('script run --output-dir — every byte lands in <dir>/<run>/<server>.stdout; a link planted as a run folder is refused, its target untouched', async () => {
    const file = join(dir, 'say.sh');
    writeFileSync(file, 'echo said\necho warned >&2\n');
    expect((await run(['script', 'add', file, '--name', 'say'])).code).toBe(EXIT.ok);
    const outputs = join(dir, 'outputs');
    const ran = await run(['script', 'run', 'say', '-s', 'localhost', '--output-dir', outputs, '-o', 'id']);
    expect(ran.code, ran.stderr).toBe(EXIT.ok);
    const runId = ran.stdout.trim();
    expect(readFileSync(join(outputs, runId, 'localhost.stdout'), 'utf8')).toBe('said\n');
    expect(readFileSync(join(outputs, runId, 'localhost.stderr'), 'utf8')).toBe('warned\n');
    const shown = await run(['runs', 'show', runId]);
    expect(shown.stdout).toContain(
      `--- stdout (5 bytes; all of it in ${join(outputs, runId, 'localhost.stdout')})`,
    );

    const planned = (
      await run(['script', 'run', 'say', '-s', 'localhost', '--plan-only', '-o', 'id'])
    ).stdout.trim();
    symlinkSync(join(outside, 'etc'), join(outputs, planned));
    const started = await run(['script', 'start', planned, '--output-dir', outputs]);
    expect(started.code).toBe(EXIT.failure);
    const results = JSON.parse((await run(['runs', 'show', planned, '--json'])).stdout);
    expect(results.servers[0]).toMatchObject({ state: 'failed' });
    expect(results.servers[0].error.message).toContain(join(outputs, planned));
    expect(readdirSync(join(outside, 'etc'))).toEqual([]);
    expect(lstatSync(join(outputs, planned)).isSymbolicLink()).toBe(true);
  });

  it('--data-dir — a link planted at the database or a file SQLite keeps beside it is refused, and its target is untouched', async () => {
    const passwd = join(outside, 'passwd');
    for (const name of ['fleetward.db', 'fleetward.db-wal', 'fleetward.db-shm', 'fleetward.db-journal']) {
      writeFileSync(passwd, 'root:x:0:0\n');
      const data = mkdtempSync(join(dir, 'data-'));
      symlinkSync(passwd, join(data, name));
      const out = { stderr: '' };
      const code = await runCli(['--data-dir', data, 'init'], {
        stdout: () => {},
        stderr: (t) => {
          out.stderr += t;
        },
        env: {},
        isTTY: false,
      });
      expect(code, name).toBe(EXIT.failure);
      expect(out.stderr, name).toContain('VALIDATION_FAILED');
      expect(out.stderr, name).toContain(join(data, name));
      expect(readFileSync(passwd, 'utf8'), name).toBe('root:x:0:0\n');
    }
  });
});
