import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;
const run = (...args: string[]) => runCliIn(dir, args);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-compliance-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward standards', () => {
  it('standards add/list/show/remove — the rule as given, listed, shown and gone after remove', async () => {
    const added = await run(
      'standards',
      'add',
      'sec7',
      '--rule',
      'max-pending-age',
      '--days',
      '7',
      '--alert-after',
      '30',
      '--json',
    );
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(JSON.parse(added.stdout)).toMatchObject({
      id: 'sec7',
      rule: { kind: 'max-pending-age', maxAgeDays: 7, categories: ['security'], minSeverity: 'unspecified' },
      alertAfterDays: 30,
    });
    const none = await run(
      'standard',
      'add',
      'none',
      '--rule',
      'no-pending',
      '--categories',
      'security,bugfix',
      '-n',
      'Nothing pending',
    );
    expect(none.code, none.stderr).toBe(EXIT.ok);
    expect(none.stdout).toContain(
      'Added compliance standard none: no security/bugfix patch (critical+) pending.',
    );

    expect((await run('standards', '-o', 'id')).stdout.split('\n').filter(Boolean).sort()).toEqual([
      'none',
      'sec7',
    ]);
    expect((await run('standards', 'list')).stdout).toMatch(
      /none +Nothing pending +tenant +no security\/bugfix patch \(critical\+\) pending/,
    );
    const shown = await run('standards', 'show', 'sec7');
    expect(shown.stdout).toContain('no security patch (unspecified+) pending longer than 7 day(s)');
    expect(shown.stdout).toContain('servers failing for more than 30 day(s)');

    expect(JSON.parse((await run('standards', 'rm', 'none', '--json')).stdout)).toEqual({
      id: 'none',
      removed: true,
    });
    expect(JSON.parse((await run('standards', '--json')).stdout).map((s: { id: string }) => s.id)).toEqual([
      'sec7',
    ]);
    const again = await run('standards', 'remove', 'none');
    expect(again.code).toBe(EXIT.failure);
    expect(again.stderr).toContain('compliance standard "none" not found');
  });

  it('standards show — an unknown standard is NOT_FOUND with a hint to list them', async () => {
    const r = await run('standards', 'show', 'nope');
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('compliance standard "nope" not found');
    expect(r.stderr).toContain('hint: List them with: fleetward standards list');
  });

  it('standards add — flags that do not fit the rule are usage errors, and nothing is added', async () => {
    const cases: [string[], string][] = [
      [['--days', '7'], '--rule'],
      [['--rule', 'max-pending-age'], '--days'],
      [['--rule', 'no-pending', '--days', '3'], 'no --days'],
      [['--rule', 'scanned-within', '--days', '1', '--categories', 'bugfix'], 'looks at no patches'],
      [['--rule', 'scanned-within'], '--days'],
      [['--rule', 'sometimes', '--days', '1'], '--rule'],
      [['--rule', 'scanned-within', '--days', 'soon'], 'number of days'],
    ];
    for (const [flags, says] of cases) {
      const r = await run('standards', 'add', 'x', ...flags);
      expect(r.code, flags.join(' ')).toBe(EXIT.usage);
      expect(r.stderr, flags.join(' ')).toContain(says);
    }
    expect((await run('compliance', 'standard', 'add', 'x', '--rule', 'no-pending')).code).toBe(EXIT.usage);
    expect(JSON.parse((await run('standards', '--json')).stdout)).toEqual([]);
  });
});

describe('fleetward compliance', () => {
  it('compliance summary — a server never scanned is unknown, in JSON and in the table', async () => {
    expect((await run('standards', 'add', 'scanned', '--rule', 'scanned-within', '--days', '1')).code).toBe(
      EXIT.ok,
    );
    const json = await run('compliance', 'summary', '--json');
    expect(json.code, json.stderr).toBe(EXIT.ok);
    expect(JSON.parse(json.stdout).overall).toMatchObject({ total: 1, compliant: 0, unknown: 1 });
    expect((await run('compliance', 'summary')).stdout).toMatch(/^all +all servers +1 +0 +0 +1 +0$/m);
    const unknownProject = await run('compliance', 'summary', '--project', 'nope');
    expect(unknownProject.code).toBe(EXIT.failure);
    expect(unknownProject.stderr).toContain('project "nope" not found');
  });

  it('compliance report — to standard output without --out or with -, to a file with --out (-o json says where)', async () => {
    const stdout = await run('compliance', 'report', '--format', 'json');
    expect(stdout.code, stdout.stderr).toBe(EXIT.ok);
    expect(JSON.parse(stdout.stdout).servers.map((s: { id: string }) => s.id)).toEqual(['localhost']);
    const dash = await run('compliance', 'report', '--format', 'csv', '--out', '-', '--json');
    expect(dash.stdout.split('\r\n')[1]).toMatch(/^"localhost",/);

    const file = join(dir, 'report.csv');
    const written = await run(
      'compliance',
      'report',
      '--format',
      'csv',
      '--table',
      'patches',
      '--out',
      file,
      '-o',
      'json',
    );
    expect(written.code, written.stderr).toBe(EXIT.ok);
    expect(JSON.parse(written.stdout)).toEqual({ path: file, bytes: statSync(file).size, format: 'csv' });
    expect(readFileSync(file, 'utf8')).toMatch(/^"serverId",/);
    const told = await run('compliance', 'report', '--out', join(dir, 'report.html'), '--brand', 'Acme MSP');
    expect(told.stdout).toBe(
      `Wrote ${join(dir, 'report.html')} (html, ${statSync(join(dir, 'report.html')).size} bytes).\n`,
    );
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Acme MSP');
    expect(html).not.toMatch(/<script(?! type="application\/json")/);
  });

  it('compliance report — two scopes at once and an unknown format are usage errors', async () => {
    expect((await run('compliance', 'report', '--project', 'a', '--account', 'b')).code).toBe(EXIT.usage);
    expect((await run('compliance', 'report', '--format', 'pdf')).code).toBe(EXIT.usage);
    expect((await run('compliance', 'report', '--table', 'people')).code).toBe(EXIT.usage);
  });
});

describeIfAvailable(
  'fleetward compliance of this machine',
  unavailableWithout({ commands: ['apt-get'] }),
  () => {
    it('compliance summary — a machine scanned just now meets scanned-within 1 day', async () => {
      expect((await run('scan')).code).toBe(EXIT.ok);
      expect((await run('standards', 'add', 'scanned', '--rule', 'scanned-within', '--days', '1')).code).toBe(
        EXIT.ok,
      );
      const summary = await run('compliance', 'summary', '--json');
      expect(summary.code, summary.stderr).toBe(EXIT.ok);
      expect(JSON.parse(summary.stdout).overall).toMatchObject({ total: 1, compliant: 1 });
    });
  },
);
