import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;
const run = (...args: string[]) => runCliIn(dir, args);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-cli-policies-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward policies', () => {
  it('policies add/list/show/remove — the policy as given, listed, shown and gone after remove', async () => {
    expect((await run('projects', 'add', 'web', '--server', 'localhost')).code).toBe(EXIT.ok);
    const added = await run(
      'policies',
      'add',
      'sec',
      '--project',
      'web',
      '--json',
      '--window-cron',
      '0 2 * * 0',
      '--tz',
      'Europe/Berlin',
      '--window-minutes',
      '30',
      '--categories',
      'security,bugfix',
      '-x',
      'linux-image-*',
      '--error-budget',
      '10%',
      '--approver',
      'bob,carol',
      '--approvals',
      '2',
      '-c',
      '3',
      '--reboot',
      'never',
    );
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(JSON.parse(added.stdout)).toMatchObject({
      id: 'sec',
      projectId: 'web',
      categories: ['security', 'bugfix'],
      exclusions: ['linux-image-*'],
      reboot: 'never',
      window: { cron: '0 2 * * 0', timeZone: 'Europe/Berlin', durationMinutes: 30 },
      rollout: { maxConcurrency: 3, errorBudget: { percent: 10 } },
      approvers: { principalIds: ['bob', 'carol'], required: 2 },
    });

    const listed = await run('policies');
    expect(listed.stdout).toMatch(
      /sec +web +security,bugfix +0 2 \* \* 0 Europe\/Berlin 30m +never +10% +linux-image-\*/,
    );
    expect((await run('policy', 'list', '-o', 'id')).stdout).toBe('sec\n');
    const shown = await run('policies', 'show', 'sec');
    expect(shown.stdout).toContain('Patch policy sec (sec) of project web');
    expect(shown.stdout).toContain('2 of bob, carol');

    const removed = await run('policies', 'rm', 'sec', '--json');
    expect(JSON.parse(removed.stdout)).toEqual({ id: 'sec', removed: true });
    expect(JSON.parse((await run('policies', '--json')).stdout)).toEqual([]);
    const again = await run('policies', 'remove', 'sec');
    expect(again.code).toBe(EXIT.failure);
    expect(again.stderr).toContain('patch policy "sec" not found');
  });

  it('policies show — an unknown policy is NOT_FOUND with a hint to list them, in JSON too', async () => {
    const text = await run('policies', 'show', 'nope');
    expect(text.code).toBe(EXIT.failure);
    expect(text.stderr).toContain('patch policy "nope" not found');
    expect(text.stderr).toContain('fleetward policies list');
    const json = await run('policies', 'show', 'nope', '--json');
    expect(json.code).toBe(EXIT.failure);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: 'NOT_FOUND', hint: expect.stringContaining('policies list') },
    });
  });

  it('policies add — missing --project, a bad error budget and a window length without a window are usage errors', async () => {
    const noProject = await run('policies', 'add', 'x');
    expect(noProject.code).toBe(EXIT.usage);
    expect(noProject.stderr).toContain('--project');
    expect((await run('policies', 'add', 'x', '--project', 'p', '--error-budget', 'lots')).code).toBe(
      EXIT.usage,
    );
    const lonely = await run('policies', 'add', 'x', '--project', 'p', '--tz', 'Europe/Berlin');
    expect(lonely.code).toBe(EXIT.usage);
    expect(lonely.stderr).toContain('--window-cron');
    expect((await run('policies', 'add', 'x', '--project', 'p', '--reboot', 'sometimes')).code).toBe(
      EXIT.usage,
    );
    expect(JSON.parse((await run('policies', '--json')).stdout)).toEqual([]);
  });
});
