import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createFileInFolder,
  openFolder,
  readFileInFolder,
  removeFileInFolder,
  UnsafePathError,
  writeFileInFolder,
  writeFileNoFollow,
} from '../../src/util/safe-fs.js';

let root: string;
/** Stands in for /etc: what a planted link points at. Nothing in it may ever change. */
let outside: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'fleetward-safefs-'));
  outside = mkdtempSync(join(tmpdir(), 'fleetward-outside-'));
  writeFileSync(join(outside, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  mkdirSync(join(outside, 'etc'));
  writeFileSync(join(outside, 'etc', 'x'), 'outside x\n');
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

/** Every entry under `dir` (links as their target text) and every file's bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string, prefix: string) => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      const info = lstatSync(path);
      if (info.isDirectory()) {
        out[`${prefix}${name}/`] = `dir ${info.mode}`;
        walk(path, `${prefix}${name}/`);
      } else out[`${prefix}${name}`] = `${info.mode} ${readFileSync(path, 'utf8')}`;
    }
  };
  walk(dir, '');
  return out;
}

type Layout = 'absent' | 'file' | 'dir' | 'link-to-file' | 'link-to-dir' | 'dangling-link';
const LAYOUTS: Layout[] = ['absent', 'file', 'dir', 'link-to-file', 'link-to-dir', 'dangling-link'];

function plant(path: string, layout: Layout): void {
  if (layout === 'file') writeFileSync(path, 'old\n');
  if (layout === 'dir') mkdirSync(path);
  if (layout === 'link-to-file') symlinkSync(join(outside, 'passwd'), path);
  if (layout === 'link-to-dir') symlinkSync(join(outside, 'etc'), path);
  if (layout === 'dangling-link') symlinkSync(join(outside, 'nothing-here'), path);
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('safe-fs', () => {
  it('writeFileInFolder — over every layout of the name and of a sub-folder, a link is refused by name and nothing outside changes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...LAYOUTS),
        fc.constantFrom(...LAYOUTS),
        fc.boolean(),
        fc.uint8Array({ maxLength: 64 }),
        async (atName, atSub, inSub, data) => {
          const dir = mkdtempSync(join(root, 'case-'));
          const before = snapshot(outside);
          plant(join(dir, 'sub'), atSub);
          if (inSub && (atSub === 'absent' || atSub === 'dir'))
            mkdirSync(join(dir, 'sub'), { recursive: true });
          const parent = inSub ? join(dir, 'sub') : dir;
          if (!inSub || atSub === 'absent' || atSub === 'dir') plant(join(parent, 'x'), atName);
          const folder = await openFolder(dir);
          const error = await errorOf(
            (async () => {
              const into = inSub ? await folder.folder('sub', { create: true }) : folder;
              try {
                await writeFileInFolder(into, 'x', data);
              } finally {
                if (into !== folder) await into.close();
              }
            })(),
          );
          await folder.close();
          expect(snapshot(outside)).toEqual(before);
          if (inSub && atSub !== 'absent' && atSub !== 'dir') {
            expect(error).toBeInstanceOf(UnsafePathError);
            expect((error as UnsafePathError).filePath).toBe(join(dir, 'sub'));
            expect((error as UnsafePathError).reason).toBe(
              atSub === 'file' ? 'not-a-directory' : 'symbolic-link',
            );
            return;
          }
          if (atName === 'absent' || atName === 'file') {
            expect(error).toBeUndefined();
            expect(Buffer.from(readFileSync(join(parent, 'x')))).toEqual(Buffer.from(data));
            expect(lstatSync(join(parent, 'x')).mode & 0o777).toBe(0o600 & ~process.umask());
          } else {
            expect(error).toBeInstanceOf(UnsafePathError);
            expect((error as UnsafePathError).filePath).toBe(join(parent, 'x'));
            expect((error as UnsafePathError).reason).toBe(
              atName === 'dir' ? 'not-a-regular-file' : 'symbolic-link',
            );
          }
          // No temp file is left behind, whatever happened.
          expect(readdirSync(parent).filter((n) => n.endsWith('.tmp'))).toEqual([]);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('readFileInFolder/removeFileInFolder — a link is refused, never read through or removed through', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...LAYOUTS), async (layout) => {
        const dir = mkdtempSync(join(root, 'case-'));
        const before = snapshot(outside);
        plant(join(dir, 'x'), layout);
        const folder = await openFolder(dir);
        try {
          const read = await errorOf(readFileInFolder(folder, 'x', { maxBytes: 1024 }));
          const removed = await errorOf(
            removeFileInFolder(folder, 'x', statSync(join(outside, 'passwd'), { bigint: true })),
          );
          if (layout === 'absent' || layout === 'file') {
            expect(read).toBeUndefined();
            // Not the file the caller checked: left alone.
            expect(removed).toBeUndefined();
            expect(existsSync(join(dir, 'x'))).toBe(layout === 'file');
          } else {
            for (const error of [read, removed]) {
              expect(error).toBeInstanceOf(UnsafePathError);
              expect((error as UnsafePathError).filePath).toBe(join(dir, 'x'));
              expect((error as UnsafePathError).reason).toBe(
                layout === 'dir' ? 'not-a-regular-file' : 'symbolic-link',
              );
            }
            expect(lstatSync(join(dir, 'x'))).toBeDefined();
          }
        } finally {
          await folder.close();
        }
        expect(snapshot(outside)).toEqual(before);
      }),
      { numRuns: 30 },
    );
  });

  it('removeFileInFolder — removes the file whose stats the caller checked', async () => {
    writeFileSync(join(root, 'x'), 'mine\n');
    const folder = await openFolder(root);
    const read = await readFileInFolder(folder, 'x', { maxBytes: 100 });
    expect(await removeFileInFolder(folder, 'x', read!.stats)).toBe(true);
    await folder.close();
    expect(readdirSync(root)).toEqual([]);
  });

  it('openFolder — a folder swapped for a link after it was opened is not followed', async () => {
    const dir = join(root, 'repo');
    mkdirSync(dir);
    const folder = await openFolder(dir);
    renameSync(dir, join(root, 'moved'));
    symlinkSync(join(outside, 'etc'), dir);
    const before = snapshot(outside);
    const error = await errorOf(writeFileInFolder(folder, 'x', 'script body\n'));
    await folder.close();
    expect(snapshot(outside)).toEqual(before);
    // Pinned through /proc on Linux (the write lands in the opened folder); refused elsewhere.
    if (error === undefined) expect(readFileSync(join(root, 'moved', 'x'), 'utf8')).toBe('script body\n');
    else expect((error as UnsafePathError).reason).toBe('folder-replaced');
  });

  it('createFileInFolder — a link planted at the name while the file is written is refused at commit', async () => {
    const folder = await openFolder(root);
    const file = await createFileInFolder(folder, 'x');
    await file.handle.writeFile('body\n');
    symlinkSync(join(outside, 'passwd'), join(root, 'x'));
    const before = snapshot(outside);
    const error = await errorOf(file.commit());
    await folder.close();
    expect(error).toBeInstanceOf(UnsafePathError);
    expect((error as UnsafePathError).filePath).toBe(join(root, 'x'));
    expect(snapshot(outside)).toEqual(before);
    expect(readdirSync(root)).toEqual(['x']);
  });

  it('writeFileInFolder — names that leave the folder are refused before anything is opened', async () => {
    const folder = await openFolder(root);
    for (const name of ['../x', 'a/b', '', '.', '..', `${outside}/passwd`, 'a\0b']) {
      const error = await errorOf(writeFileInFolder(folder, name, 'x'));
      expect(error, name).toBeInstanceOf(UnsafePathError);
      expect((error as UnsafePathError).reason, name).toBe('not-a-plain-name');
    }
    await folder.close();
    expect(readdirSync(root)).toEqual([]);
  });

  it('writeFileInFolder — replace: false keeps an existing file; exactMode ignores the umask', async () => {
    writeFileSync(join(root, 'x'), 'first\n');
    const folder = await openFolder(root);
    expect(await writeFileInFolder(folder, 'x', 'second\n', { replace: false })).toBeUndefined();
    expect(await writeFileInFolder(folder, 'y', 'y\n', { replace: false })).toBeDefined();
    await writeFileInFolder(folder, 'z', 'z\n', { mode: 0o640, exactMode: true });
    await folder.close();
    expect(readFileSync(join(root, 'x'), 'utf8')).toBe('first\n');
    expect(readdirSync(root).sort()).toEqual(['x', 'y', 'z']);
    expect(statSync(join(root, 'z')).mode & 0o777).toBe(0o640);
  });

  it('readFileInFolder — a FIFO does not block the read and is refused', async () => {
    execFileSync('mkfifo', [join(root, 'x')]);
    const folder = await openFolder(root);
    const error = await errorOf(readFileInFolder(folder, 'x', { maxBytes: 100 }));
    await folder.close();
    expect((error as UnsafePathError).reason).toBe('not-a-regular-file');
  });

  it('writeFileNoFollow — a file path whose last part is a link is refused; its folder may be named through a link', async () => {
    symlinkSync(join(outside, 'passwd'), join(root, 'report.html'));
    const before = snapshot(outside);
    const error = await errorOf(writeFileNoFollow(join(root, 'report.html'), '<html>'));
    expect(error).toBeInstanceOf(UnsafePathError);
    expect((error as UnsafePathError).filePath).toBe(join(root, 'report.html'));
    expect(snapshot(outside)).toEqual(before);
    symlinkSync(outside, join(root, 'reports'));
    await writeFileNoFollow(join(root, 'reports', 'new.html'), '<html>');
    expect(readFileSync(join(outside, 'new.html'), 'utf8')).toBe('<html>');
  });
});
