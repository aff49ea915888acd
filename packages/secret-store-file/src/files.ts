/**
 * File access for the store: durable writes that never follow a link, bounded reads that never
 * block on a FIFO, the directory's safety checks and the clean-up of abandoned temp files.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, type FileHandle, lstat, mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { openFolder, UnsafePathError, writeFileInFolder } from '@fleetward/core';
import { errorCode, SecretStoreError } from './errors.js';
import { SECRET_FILE } from './format.js';

const POSIX = process.platform !== 'win32';
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const NONBLOCK = constants.O_NONBLOCK ?? 0;
const TEMP_PREFIX = '.tmp-';
/** `.tmp-<host tag>-<pid>-<random>`: who wrote it, so that a reopen can tell a dead writer's. */
const TEMP_FILE = /^\.tmp-([0-9a-f]{8})-(\d+)-[0-9a-f]+$/;
const STALE_TEMP_MS = 10 * 60_000;
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** A file's bytes and the identity (inode, size, mtime) of what was read. */
export interface RegularFile {
  bytes: Buffer;
  signature: string;
}

/** Inode, size and mtime: changes whenever a file is replaced or rewritten. */
export function signatureOf(stats: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** Makes the renames and unlinks done in `directory` durable. */
export async function syncDirectory(directory: string): Promise<void> {
  // Windows cannot open a directory for fsync; NTFS journals renames itself.
  if (!POSIX) return;
  const handle = await open(directory, constants.O_RDONLY | (constants.O_DIRECTORY ?? 0));
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function tempFileName(): string {
  return `${TEMP_PREFIX}${HOST_TAG}-${process.pid}-${randomBytes(8).toString('hex')}`;
}

/**
 * Writes `bytes` as `name` in `directory` through a synced 0600 temp file, never through a link
 * (see `writeFileInFolder` in `@fleetward/core`). With `replace: false` an existing file wins and
 * `undefined` is returned. Returns the signature of the written file.
 * @throws SecretStoreError `integrity` naming the path when a link, a folder or another non-file
 *   is at `name`; file system errors as they are.
 */
export async function writeFileAtomic(
  directory: string,
  name: string,
  bytes: Buffer,
  options: { replace: boolean; syncDirectory: boolean },
): Promise<string | undefined> {
  const folder = await openFolder(directory);
  try {
    const stats = await writeFileInFolder(folder, name, bytes, {
      mode: 0o600,
      // The umask may have taken bits away; the owner must still be able to read it back.
      exactMode: true,
      replace: options.replace,
      syncFolder: options.syncDirectory,
      tempName: tempFileName(),
    });
    return stats && signatureOf(stats);
  } catch (error) {
    // Something planted where a store file goes is tampering with the store, not bad input.
    if (error instanceof UnsafePathError) {
      throw new SecretStoreError(
        'integrity',
        `${error.filePath} is not a file of the store: ${error.reason}`,
        {
          cause: error,
        },
      );
    }
    throw error;
  } finally {
    await folder.close();
  }
}

/**
 * Reads a regular file of at most `max` bytes (or its first `limit` bytes), refusing symlinks and
 * never blocking on a FIFO. `undefined` when it does not exist.
 * @throws Error without an errno `code` for a link, a non-file or an oversized file; file system
 *   errors as they are.
 */
export async function readRegularFile(
  path: string,
  max: number,
  limit?: number,
): Promise<RegularFile | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | NOFOLLOW | NONBLOCK);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    if (errorCode(error) === 'ELOOP') throw new Error(`${path} is a symbolic link`);
    throw error;
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw new Error(`${path} is not a regular file`);
    if (stats.size > BigInt(max)) throw new Error(`${path} is larger than ${max} bytes`);
    const length = Math.min(Number(stats.size), limit ?? max);
    const bytes = Buffer.alloc(length);
    let offset = 0;
    while (offset < length) {
      const { bytesRead } = await handle.read(bytes, offset, length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return { bytes: bytes.subarray(0, offset), signature: signatureOf(stats) };
  } finally {
    await handle.close();
  }
}

/** The names of the secret files in `directory` (temp files and the header left out). */
export async function secretFileNames(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => SECRET_FILE.test(name));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/**
 * Removes temp files whose writer died (same host) or that are older than ten minutes: a crash
 * between create and rename leaves them behind.
 */
export async function removeAbandonedTempFiles(directory: string): Promise<void> {
  for (const name of await readdir(directory)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const path = join(directory, name);
    const stats = await lstat(path).catch(() => undefined);
    if (!stats) continue;
    const match = TEMP_FILE.exec(name);
    const pid = match ? Number(match[2]) : undefined;
    const writerDead = match?.[1] === HOST_TAG && pid !== process.pid && !processAlive(pid!);
    if (writerDead || Date.now() - stats.mtimeMs > STALE_TEMP_MS) await unlink(path).catch(() => undefined);
  }
}

/**
 * Creates the directory 0700 when missing (syncing every level created), then checks that it is a
 * directory owned by this uid with no group or other permission bits.
 * @throws SecretStoreError `unsafe-directory` when it cannot be created or is not safe.
 */
export async function prepareDirectory(directory: string): Promise<void> {
  let created: string | undefined;
  try {
    created = await mkdir(directory, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new SecretStoreError('unsafe-directory', `cannot create the secret store directory ${directory}`, {
      cause,
    });
  }
  if (created !== undefined) {
    // mkdir's mode passes through the umask; an odd umask must not leave it unreadable to us.
    await chmod(directory, 0o700);
    // Each new directory's entry lives in its parent: sync every level that mkdir created.
    for (let level = directory; ; level = dirname(level)) {
      await syncDirectory(dirname(level));
      if (level === created) break;
    }
  }
  const stats = await stat(directory);
  if (!stats.isDirectory()) {
    throw new SecretStoreError('unsafe-directory', `the secret store path ${directory} is not a directory`);
  }
  if (!POSIX) return;
  const uid = process.getuid!();
  if (stats.uid !== uid) {
    throw new SecretStoreError(
      'unsafe-directory',
      `the secret store directory ${directory} belongs to uid ${stats.uid}, not to this process (uid ${uid})`,
    );
  }
  if ((stats.mode & 0o077) !== 0) {
    const mode = (stats.mode & 0o777).toString(8).padStart(4, '0');
    throw new SecretStoreError(
      'unsafe-directory',
      `the secret store directory ${directory} has mode ${mode}: group and others must have no access (chmod 700)`,
    );
  }
}
