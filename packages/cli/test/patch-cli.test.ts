import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, expect, it } from 'vitest';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-patch-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function run(...args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--data-dir', dir, ...args], {
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

describeIfAvailable('fleetward patch workflow', unavailableWithout({ commands: ['apt-get'] }), () => {
  it('principal/project/policy/plan/approve/patch — goes through authorization and never installs outside the window', async () => {
    expect((await run('principal', 'add', 'bob', '--name', 'Bob')).code).toBe(EXIT.ok);
    expect((await run('project', 'add', 'local', '--server', 'localhost')).code).toBe(EXIT.ok);
    // A window that opens on 1 January only: today is not in it (unless the suite runs then).
    const policy = await run(
      'policy',
      'add',
      'sec',
      '--project',
      'local',
      '--window-cron',
      '0 0 1 1 *',
      '--window-minutes',
      '5',
    );
    expect(policy.code, policy.stderr).toBe(EXIT.ok);
    expect((await run('policy', 'list')).stdout).toMatch(/sec +local +security +0 0 1 1 \* UTC 5m/);

    const planned = await run('plan', '--policy', 'sec', '--json');
    expect(planned.code, planned.stderr).toBe(EXIT.ok);
    const plan = JSON.parse(planned.stdout) as { id: string; hash: string; status: string };
    expect(plan.status).toBe('awaiting-approval');

    const own = await run('approve', plan.id, '--hash', plan.hash);
    expect(own.code).toBe(EXIT.failure);
    expect(own.stderr).toContain('cannot approve');
    const approved = await run('--as', 'bob', 'approve', plan.id, '--hash', plan.hash);
    expect(approved.stdout).toContain('is approved');

    const patched = await run('--as', 'bob', 'patch', plan.id, '--json');
    expect(patched.code, patched.stderr).toBe(EXIT.ok);
    expect(JSON.parse(patched.stdout)).toMatchObject({
      status: 'pending',
      reason: expect.stringContaining('waiting for the maintenance window'),
    });
  });

  it('plan — an unknown policy fails with exit 1 and names it', async () => {
    const r = await run('plan', '--policy', 'nope');
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('"nope" not found');
  });

  it('policy add — a bad error budget is a usage error', async () => {
    expect((await run('policy', 'add', 'x', '--project', 'p', '--error-budget', 'lots')).code).toBe(
      EXIT.usage,
    );
  });

  it('compliance — standard add, summary and a self-contained HTML report of this machine', async () => {
    expect((await run('scan')).code).toBe(EXIT.ok);
    const added = await run(
      'compliance',
      'standard',
      'add',
      'scanned',
      '--rule',
      'scanned-within',
      '--days',
      '1',
    );
    expect(added.code, added.stderr).toBe(EXIT.ok);
    const summary = await run('compliance', 'summary', '--json');
    expect(summary.code, summary.stderr).toBe(EXIT.ok);
    expect(JSON.parse(summary.stdout).overall).toMatchObject({ total: 1, compliant: 1 });
    const out = join(dir, 'report.html');
    const report = await run('compliance', 'report', '--format', 'html', '--out', out, '--brand', 'Acme MSP');
    expect(report.code, report.stderr).toBe(EXIT.ok);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('Acme MSP');
    expect(html).not.toMatch(/<script(?! type="application\/json")/);
    const csv = await run('compliance', 'report', '--format', 'csv', '--table', 'servers');
    expect(csv.stdout.split('\r\n')[1]).toContain('localhost');
  });
});
