import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;

const run = (args: string[]) => runCliIn(dir, args);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-access-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward audit and access', () => {
  it('audit verify — the store verifies; an export verifies offline; one edited byte fails and names the record', async () => {
    expect((await run(['servers'])).code).toBe(EXIT.ok);
    const verified = await run(['audit', 'verify']);
    expect(verified.code).toBe(EXIT.ok);
    expect(verified.stdout).toMatch(/^OK: \d+ records verified/);

    const file = join(dir, 'audit.jsonl');
    expect((await run(['audit', 'export', '--out', file])).code).toBe(EXIT.ok);
    expect((await run(['audit', 'verify', '--file', file])).stdout).toMatch(/^OK/);

    const lines = readFileSync(file, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"success"', '"failure"');
    writeFileSync(file, lines.join('\n'));
    const tampered = await run(['audit', 'verify', '--file', file]);
    expect(tampered.code).toBe(EXIT.failure);
    expect(tampered.stdout).toContain('TAMPERED');
    expect(tampered.stdout).toMatch(/hash-mismatch: record 2 \(id [^)]+\)/);
  });

  it('access request/approve/list — actions-only access, approved by someone else, listed with its history', async () => {
    expect((await run(['principal', 'add', 'bob', '--name', 'Bob'])).code).toBe(EXIT.ok);
    const requested = await run([
      'access',
      'request',
      '--servers',
      'localhost',
      '--actions',
      'patch.scan',
      '--minutes',
      '30',
      '--reason',
      'check pending patches for the audit',
      '--ticket',
      'INC-77',
    ]);
    expect(requested.code).toBe(EXIT.ok);
    const id = /Requested (\S+):/.exec(requested.stdout)![1]!;
    const own = await run(['access', 'approve', id]);
    expect(own.code).toBe(EXIT.failure);
    expect(own.stderr).toContain('approval is by others only');
    const approved = await run(['--as', 'bob', 'access', 'approve', id, '--comment', 'ok']);
    expect(approved.code).toBe(EXIT.ok);
    expect(approved.stdout).toMatch(/^Granted /);
    const listed = await run(['access', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        id,
        status: 'approved',
        ticket: 'INC-77',
        approvals: [expect.objectContaining({ principalId: 'bob' })],
      }),
    ]);
    const report = await run(['audit', 'report', '--format', 'json']);
    expect(report.code).toBe(EXIT.ok);
    expect(JSON.parse(report.stdout).topActions).toEqual(
      expect.arrayContaining([expect.objectContaining({ action: 'access.approve', count: 2, denied: 1 })]),
    );
    const audit = await run(['audit', 'list', '--action', 'access.approve', '--json']);
    expect(JSON.parse(audit.stdout).map((r: { decision: string }) => r.decision)).toEqual(['deny', 'allow']);
  });
});
