import { randomBytes } from 'node:crypto';
import { type BigIntStats, constants, lstatSync } from 'node:fs';
import { type FileHandle, link, lstat, mkdir, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ValidationError } from '../errors.js';

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const NONBLOCK = constants.O_NONBLOCK ?? 0;
const DIRECTORY = constants.O_DIRECTORY ?? 0;
// Windows has no O_NOFOLLOW and cannot hold a directory open: there an lstat before each use
// stands in for both, which narrows the window but cannot close it.
const POSIX = process.platform !== 'win32';

/** Why a path was refused. */
export type UnsafePathReason =
  | 'symbolic-link'
  | 'not-a-directory'
  | 'not-a-regular-file'
  | 'not-a-plain-name'
  | 'folder-replaced'
  /** A login's `~/.ssh` on a server is owned by someone else (server-keys). */
  | 'wrong-owner';

/**
 * A write, read or removal was refused because the path is (or leads through) a symbolic link, is
 * not the kind of file expected, is not a plain name inside its folder, or the folder was replaced
 * after it was opened. Nothing outside the folder was touched. `filePath` names the path refused.
 */
export class UnsafePathError extends ValidationError {
  readonly filePath: string;
  readonly reason: UnsafePathReason;

  constructor(filePath: string, reason: UnsafePathReason, message: string) {
    super('file path', [{ path: [filePath], message, code: reason }]);
    this.filePath = filePath;
    this.reason = reason;
  }
}

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Refuses anything but one plain entry name: no separator, no `.`/`..`, no NUL. A name read from a
 * manifest or a store must not be able to leave its folder.
 */
export function assertPlainName(folder: string, name: string): void {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name) || basename(name) !== name) {
    throw new UnsafePathError(
      join(folder, name),
      'not-a-plain-name',
      `${JSON.stringify(name)} is not a plain file name inside ${folder}`,
    );
  }
}

/**
 * A folder opened once and then reached only through what was opened. On Linux every entry is
 * addressed through `/proc/self/fd/<fd>/`, so renaming the folder or a parent and planting a link in
 * its place afterwards changes nothing; elsewhere each operation first checks that the folder's
 * path still names the folder that was opened.
 */
export interface SafeFolder {
  /** The folder's absolute path as it was named; for messages. */
  readonly path: string;
  /** The path to use for an entry of this folder; `name` must be a plain name. */
  entry(name: string): string;
  /** @throws UnsafePathError `folder-replaced` when the folder's path no longer names the opened folder. */
  check(): Promise<void>;
  /** Flushes the folder's entries (creations, renames, removals) to disk. */
  sync(): Promise<void>;
  /**
   * Opens (and with `create`, first makes) the sub-folder `name`, which must be a real folder:
   * a symbolic link there is refused, never followed.
   * @throws UnsafePathError `symbolic-link` or `not-a-directory`.
   */
  folder(name: string, options?: { create?: boolean; mode?: number }): Promise<SafeFolder>;
  close(): Promise<void>;
}

function sameFile(a: { dev: bigint; ino: bigint }, b: { dev: bigint; ino: bigint }): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** `path` names the folder in messages; `openedAt` is where it was opened (maybe a /proc path). */
async function pinFolder(
  path: string,
  openedAt: string,
  handle: FileHandle | undefined,
): Promise<SafeFolder> {
  const opened = handle ? await handle.stat({ bigint: true }) : await lstat(openedAt, { bigint: true });
  if (!opened.isDirectory()) {
    await handle?.close();
    throw new UnsafePathError(path, 'not-a-directory', `${path} is not a folder`);
  }
  let base: string | undefined;
  if (handle && process.platform === 'linux') {
    const viaProc = `/proc/self/fd/${handle.fd}`;
    const seen = await stat(viaProc, { bigint: true }).catch(() => undefined);
    if (seen && sameFile(seen, opened)) base = viaProc;
  }
  let real: string;
  try {
    real = base ?? (await realpath(openedAt));
  } catch (error) {
    await handle?.close();
    throw error;
  }
  const pinned = base !== undefined;
  let closed = false;
  const self: SafeFolder = {
    path,
    entry(name) {
      // Once closed, the descriptor's number may belong to another file: never resolve through it.
      if (closed) throw new Error(`${path} was closed`);
      assertPlainName(path, name);
      return join(real, name);
    },
    async check() {
      if (pinned) return;
      const now = await lstat(real, { bigint: true }).catch(() => undefined);
      if (!now?.isDirectory() || !sameFile(now, opened)) {
        throw new UnsafePathError(path, 'folder-replaced', `${path} was replaced after it was opened`);
      }
    },
    async sync() {
      await handle?.sync();
    },
    async folder(name, options = {}) {
      const at = join(path, name);
      const target = self.entry(name);
      await self.check();
      if (options.create) {
        try {
          await mkdir(target, { mode: options.mode ?? 0o700 });
          await self.sync();
        } catch (error) {
          if (errnoOf(error) !== 'EEXIST') throw error;
        }
      }
      const info = await lstat(target).catch(() => undefined);
      if (info?.isSymbolicLink()) {
        throw new UnsafePathError(at, 'symbolic-link', `${at} is a symbolic link: it is not followed`);
      }
      if (info && !info.isDirectory())
        throw new UnsafePathError(at, 'not-a-directory', `${at} is not a folder`);
      if (!POSIX) return pinFolder(at, target, undefined);
      let sub: FileHandle;
      try {
        sub = await open(target, constants.O_RDONLY | DIRECTORY | NOFOLLOW | NONBLOCK);
      } catch (error) {
        if (errnoOf(error) === 'ELOOP') {
          throw new UnsafePathError(at, 'symbolic-link', `${at} is a symbolic link: it is not followed`);
        }
        if (errnoOf(error) === 'ENOTDIR')
          throw new UnsafePathError(at, 'not-a-directory', `${at} is not a folder`);
        throw error;
      }
      return pinFolder(at, target, sub);
    },
    async close() {
      closed = true;
      await handle?.close();
    },
  };
  return self;
}

/**
 * Opens the folder `path` as named (links in the path itself are followed, as for any path a
 * caller names) and pins it: nothing done through the result follows a link inside it.
 * `create` makes the folder and its missing parents first.
 *
 * @throws UnsafePathError `not-a-directory` when `path` is not a folder.
 */
export async function openFolder(
  path: string,
  options: { create?: boolean; mode?: number } = {},
): Promise<SafeFolder> {
  const absolute = resolve(path);
  if (options.create)
    await mkdir(absolute, { recursive: true, ...(options.mode === undefined ? {} : { mode: options.mode }) });
  if (!POSIX) return pinFolder(absolute, absolute, undefined);
  let handle: FileHandle;
  try {
    handle = await open(absolute, constants.O_RDONLY | DIRECTORY | NONBLOCK);
  } catch (error) {
    if (errnoOf(error) === 'ENOTDIR') {
      throw new UnsafePathError(absolute, 'not-a-directory', `${absolute} is not a folder`);
    }
    throw error;
  }
  return pinFolder(absolute, absolute, handle);
}

/** Refuses a link or a non-file at `name` (absent is fine); true when something is there. */
async function checkTarget(folder: SafeFolder, name: string): Promise<boolean> {
  const at = join(folder.path, name);
  const info = await lstat(folder.entry(name)).catch((error: unknown) => {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw error;
  });
  if (!info) return false;
  if (info.isSymbolicLink()) {
    throw new UnsafePathError(
      at,
      'symbolic-link',
      `${at} is a symbolic link: Fleetward never writes through one`,
    );
  }
  if (!info.isFile()) throw new UnsafePathError(at, 'not-a-regular-file', `${at} is not a regular file`);
  return true;
}

/** A new file being written under a temporary name; `commit` gives it its name. */
export interface PendingFile {
  readonly handle: FileHandle;
  /**
   * Flushes and closes the file and renames it over `name` (with `replace: false`, an existing
   * file wins and false is returned). A link or non-file planted at `name` meanwhile is refused.
   */
  commit(): Promise<boolean>;
  /** Closes and removes the temporary file. */
  discard(): Promise<void>;
}

export interface CreateFileOptions {
  /** Mode of the new file. @default 0o600 */
  mode?: number;
  /** Set `mode` exactly, whatever the umask. @default false */
  exactMode?: boolean;
  /** Replace an existing regular file at the name; false keeps it (link(2), not rename). @default true */
  replace?: boolean;
  /** fsync the file (before it gets its name). @default true */
  sync?: boolean;
  /** fsync the folder after the rename; a caller renaming many files may sync once at the end. @default `sync` */
  syncFolder?: boolean;
  /** The temporary name; it must not exist. @default `.<name>.<pid>.<random>.tmp` */
  tempName?: string;
}

/**
 * Creates a file in `folder` under a fresh temporary name, opened with O_CREAT|O_EXCL|O_NOFOLLOW
 * (so nothing that already exists, link or not, is opened) and checked with fstat to be a regular
 * file. Write through `handle`, then `commit`.
 *
 * @throws UnsafePathError when `name` is not a plain name, or a link or non-file is at `name`.
 */
export async function createFileInFolder(
  folder: SafeFolder,
  name: string,
  options: CreateFileOptions = {},
): Promise<PendingFile> {
  const target = folder.entry(name);
  await folder.check();
  await checkTarget(folder, name);
  const tempName =
    options.tempName ?? `.${name.slice(0, 100)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const temp = folder.entry(tempName);
  const mode = options.mode ?? 0o600;
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, mode);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  const discard = async () => {
    await close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
  };
  try {
    if (!(await handle.stat()).isFile()) {
      throw new UnsafePathError(
        join(folder.path, tempName),
        'not-a-regular-file',
        `${tempName} is not a regular file`,
      );
    }
    if (options.exactMode) await handle.chmod(mode);
  } catch (error) {
    await discard();
    throw error;
  }
  return {
    handle,
    discard,
    async commit() {
      try {
        if (options.sync !== false) await handle.sync();
        await close();
        await folder.check();
        const exists = await checkTarget(folder, name);
        if (options.replace === false) {
          // link(2) never replaces: of two writers racing for the name, the first one wins.
          const linked =
            !exists &&
            (await link(temp, target).then(
              () => true,
              (error: unknown) => {
                if (errnoOf(error) === 'EEXIST') return false;
                throw error;
              },
            ));
          await unlink(temp);
          if (!linked) return false;
        } else {
          // rename(2) replaces the entry itself: a link planted since the check is dropped, never followed.
          await rename(temp, target);
        }
      } catch (error) {
        await discard();
        throw error;
      }
      if (options.syncFolder ?? options.sync !== false) await folder.sync();
      return true;
    },
  };
}

/**
 * Writes `data` as `name` in `folder` without ever following a link: a fresh temp file (see
 * {@link createFileInFolder}), written, fsynced, renamed over `name`, the folder fsynced. Resolves
 * the written file's stats, or undefined when `replace: false` and a file was already there.
 *
 * @throws UnsafePathError when `name` is or became a link, a folder or another non-file.
 */
export async function writeFileInFolder(
  folder: SafeFolder,
  name: string,
  data: string | Uint8Array,
  options: CreateFileOptions = {},
): Promise<BigIntStats | undefined> {
  const file = await createFileInFolder(folder, name, options);
  let stats: BigIntStats;
  try {
    await file.handle.writeFile(data);
    stats = await file.handle.stat({ bigint: true });
  } catch (error) {
    await file.discard();
    throw error;
  }
  return (await file.commit()) ? stats : undefined;
}

/**
 * Writes the file at `path` (its folder as named, the file itself never through a link): the
 * one-call form of {@link writeFileInFolder} for a file path a user gives. The folder must exist.
 */
export async function writeFileNoFollow(
  path: string,
  data: string | Uint8Array,
  options: CreateFileOptions = {},
): Promise<void> {
  const absolute = resolve(path);
  const folder = await openFolder(dirname(absolute));
  try {
    await writeFileInFolder(folder, basename(absolute), data, options);
  } finally {
    await folder.close();
  }
}

/**
 * Reads the regular file `name` of `folder`, opened with O_NOFOLLOW|O_NONBLOCK (a FIFO does not
 * block) and checked with fstat. Undefined when there is nothing there.
 *
 * @throws UnsafePathError `symbolic-link` or `not-a-regular-file`; ValidationError when larger than `maxBytes`.
 */
export async function readFileInFolder(
  folder: SafeFolder,
  name: string,
  options: { maxBytes: number },
): Promise<{ bytes: Buffer; stats: BigIntStats } | undefined> {
  const at = join(folder.path, name);
  const path = folder.entry(name);
  await folder.check();
  if (!POSIX && (await lstat(path).catch(() => undefined))?.isSymbolicLink()) {
    throw new UnsafePathError(at, 'symbolic-link', `${at} is a symbolic link: it is not followed`);
  }
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | NOFOLLOW | NONBLOCK);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    if (errnoOf(error) === 'ELOOP') {
      throw new UnsafePathError(at, 'symbolic-link', `${at} is a symbolic link: it is not followed`);
    }
    throw error;
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw new UnsafePathError(at, 'not-a-regular-file', `${at} is not a regular file`);
    if (stats.size > BigInt(options.maxBytes)) {
      throw new ValidationError('file', [
        { path: [at], message: `is larger than ${options.maxBytes} bytes` },
      ]);
    }
    const bytes = Buffer.alloc(Number(stats.size));
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesRead } = await handle.read(bytes, offset, bytes.length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return { bytes: bytes.subarray(0, offset), stats };
  } finally {
    await handle.close();
  }
}

/**
 * Removes the regular file `name` of `folder` if it is still the file `expected` describes (the
 * stats {@link readFileInFolder} returned when the caller checked its content). A link is refused;
 * a file replaced since the check is left alone. Resolves whether it was removed.
 */
export async function removeFileInFolder(
  folder: SafeFolder,
  name: string,
  expected: { dev: bigint; ino: bigint },
): Promise<boolean> {
  const path = folder.entry(name);
  await folder.check();
  if (!(await checkTarget(folder, name))) return false;
  const now = await lstat(path, { bigint: true });
  if (!sameFile(now, expected)) return false;
  await unlink(path);
  return true;
}

/**
 * Refuses when any of `paths` is a symbolic link (a missing path is fine). For files a library
 * opens by path without O_NOFOLLOW (SQLite's database and its -wal, -shm and -journal files): it
 * narrows the window to the time between this check and the library's open.
 *
 * @throws UnsafePathError `symbolic-link` naming the first link found.
 */
export function assertNoLinksSync(paths: readonly string[]): void {
  for (const path of paths) {
    let info: ReturnType<typeof lstatSync>;
    try {
      info = lstatSync(path);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT' || errnoOf(error) === 'ENOTDIR') continue;
      throw error;
    }
    if (info.isSymbolicLink()) {
      throw new UnsafePathError(path, 'symbolic-link', `${path} is a symbolic link: it is not followed`);
    }
  }
}
