import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '@fleetward/cli';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliIn } from './support/run.js';

let dir: string;
const run = (args: string[]) => runCliIn(dir, args);
const json = async (args: string[]) => {
  const r = await run([...args, '--json']);
  expect(r.code, r.stdout + r.stderr).toBe(EXIT.ok);
  return JSON.parse(r.stdout);
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-iam-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetward principals, roles, bindings', () => {
  it('principals add without a role — can do nothing, and the hint says how to give one', async () => {
    const r = await run(['principals', 'add', 'bob', '--name', 'Bob']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toContain('fleetward bindings add bob --role');
    const denied = await run(['--as', 'bob', 'servers', 'add', 'x', '--address', '10.0.0.1']);
    expect(denied.code).toBe(EXIT.failure);
    expect(denied.stderr).toContain('FORBIDDEN');
    expect(denied.stderr).toContain('fleetward bindings add bob --role');
  });

  it('roles add and bindings add — bob may then do exactly what the role allows', async () => {
    await run(['principals', 'add', 'bob', '--name', 'Bob']);
    const role = await json([
      'roles',
      'add',
      'inventory-admin',
      '--allow',
      'inventory.*',
      '--deny',
      'patch.*',
    ]);
    expect(role.rules).toEqual([
      { effect: 'allow', actions: ['inventory.*'] },
      { effect: 'deny', actions: ['patch.*'] },
    ]);
    const binding = await json(['bindings', 'add', 'bob', '--role', 'inventory-admin']);
    expect(binding).toMatchObject({ principalId: 'bob', roleId: 'inventory-admin' });
    expect((await run(['--as', 'bob', 'servers', 'add', 'x', '--address', '10.0.0.1'])).code).toBe(EXIT.ok);
    const shown = await json(['principals', 'show', 'bob']);
    expect(shown.bindings.map((b: { roleId: string }) => b.roleId)).toEqual(['inventory-admin']);
    expect((await run(['bindings', 'list', '--principal', 'bob', '-o', 'id'])).stdout.trim()).toBe(
      binding.id,
    );

    const inUse = await run(['roles', 'remove', 'inventory-admin']);
    expect(inUse.code).toBe(EXIT.failure);
    expect(inUse.stderr).toContain('bob');
    expect((await run(['bindings', 'remove', binding.id])).code).toBe(EXIT.ok);
    expect((await run(['roles', 'remove', 'inventory-admin'])).code).toBe(EXIT.ok);
    expect((await run(['--as', 'bob', 'servers', 'add', 'y', '--address', '10.0.0.2'])).code).toBe(
      EXIT.failure,
    );
  });

  it('roles add --file — a role with rules limited to servers, from JSON', async () => {
    const file = join(dir, 'role.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'Web operators',
        rules: [{ effect: 'allow', actions: ['patch.*'], servers: { labels: { tier: 'web' } } }],
      }),
    );
    const role = await json(['roles', 'add', 'web-ops', '--file', file]);
    expect(role).toMatchObject({
      id: 'web-ops',
      name: 'Web operators',
      rules: [{ servers: { labels: { tier: 'web' } } }],
    });
    expect((await run(['roles', 'add', 'x', '--file', file, '--allow', '*'])).code).toBe(EXIT.usage);
  });

  it('lockout — the last tenant admin cannot be unbound or removed, nor can you remove yourself', async () => {
    const [binding] = await json(['bindings', 'list', '--principal', 'local-admin']);
    const unbind = await run(['bindings', 'remove', binding.id]);
    expect(unbind.code).toBe(EXIT.failure);
    expect(unbind.stderr).toContain('CONFLICT');
    const self = await run(['principals', 'remove', 'local-admin']);
    expect(self.code).toBe(EXIT.failure);
    expect((await run(['principals', 'remove', 'ghost'])).stderr).toContain('fleetward principals list');
  });
});
