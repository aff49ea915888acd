import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  editAuthorizedKeys,
  readAllAuthorizedKeys,
  readAuthorizedKeys,
  writeAuthorizedKeys,
} from '../../src/access/server-keys.js';
import type { Server } from '../../src/domain/index.js';
import { ConflictError } from '../../src/errors.js';
import { createLocalAdapter } from '../../src/transport/local.js';
import { UnsafePathError } from '../../src/util/safe-fs.js';
import { tempDir } from './support.js';

// The scripts that read and edit a login's authorized_keys as root, run for real by this machine's
// shell on files in a temporary home. A `getent` on PATH answers for one login living there, so
// nothing here touches a real account. Other stand-ins on PATH (`flock`, `mktemp`) run the real
// tool after doing what a hostile user could do at that moment: swap `.ssh` for a link, or plant a
// link at the temporary file's name.

const LOGIN = 'fwkeysuser';
const SERVER = { id: 'srv', name: 'srv', tenantId: 't' } as Server;
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const VICTIM_TEXT = 'root:$y$secret-hash:19000:0:99999:7:::\n';
const ADDED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl added\n';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let root: { dir: string; remove: () => Promise<void> };
let bin: string;
let count = 0;

beforeAll(async () => {
  root = await tempDir('server-keys');
  bin = join(root.dir, 'bin');
  await mkdir(bin);
  const scripts: Record<string, string> = {
    getent: `#!/bin/sh
[ "$1" = passwd ] || exit 2
shift; [ "\${1:-}" = -- ] && shift
if [ $# -eq 0 ]; then cat "$FAKE_PASSWD"; else grep "^$1:" "$FAKE_PASSWD" || exit 2; fi
`,
    flock: `#!/bin/sh
if [ -n "\${SWAP_SSH_FOR:-}" ]; then mv "$FAKE_HOME/.ssh" "$FAKE_HOME/.ssh.moved"; ln -s "$SWAP_SSH_FOR" "$FAKE_HOME/.ssh"; fi
exec /usr/bin/flock "$@"
`,
    mktemp: `#!/bin/sh
made=$(/usr/bin/mktemp "$@") || exit 1
if [ -n "\${PLANT_AT_TEMP:-}" ]; then rm -f -- "$made"; ln -s "$PLANT_AT_TEMP" "$made"; fi
printf '%s\\n' "$made"
`,
  };
  for (const [name, text] of Object.entries(scripts)) {
    await writeFile(join(bin, name), text);
    await chmod(join(bin, name), 0o755);
  }
});
afterAll(() => root?.remove());

interface Home {
  home: string;
  ssh: string;
  keys: string;
  /** A file root may read and write but the user must not reach: stands for /etc/shadow. */
  victim: string;
  /** A folder the user must not write into: stands for /root/.ssh. */
  victimDir: string;
  passwd: string;
  adapter: ReturnType<typeof createLocalAdapter>;
}

async function home(options: { uid?: number; env?: Record<string, string> } = {}): Promise<Home> {
  const base = join(root.dir, `case-${++count}`);
  const homeDir = join(base, 'home');
  const victimDir = join(base, 'root-ssh');
  await mkdir(homeDir, { recursive: true });
  await mkdir(victimDir);
  const victim = join(base, 'shadow');
  await writeFile(victim, VICTIM_TEXT);
  await writeFile(join(victimDir, 'authorized_keys'), VICTIM_TEXT);
  const passwd = join(base, 'passwd');
  const uid = options.uid ?? process.getuid!();
  await writeFile(passwd, `${LOGIN}:x:${uid}:${process.getgid!()}::${homeDir}:/bin/sh\n`);
  const adapter = createLocalAdapter({
    isRoot: true,
    env: { PATH: `${bin}:${SYSTEM_PATH}`, FAKE_PASSWD: passwd, FAKE_HOME: homeDir, ...options.env },
  });
  const ssh = join(homeDir, '.ssh');
  return { home: homeDir, ssh, keys: join(ssh, 'authorized_keys'), victim, victimDir, passwd, adapter };
}

/** The adapter of `h` with one of the hostile stand-ins switched on. */
function racyAdapter(h: Home, env: Record<string, string>) {
  return createLocalAdapter({
    isRoot: true,
    env: { PATH: `${bin}:${SYSTEM_PATH}`, FAKE_PASSWD: h.passwd, FAKE_HOME: h.home, ...env },
  });
}

/** What must be exactly as it was: the victim file's bytes and the victim folder's entries. */
async function victimState(h: Home): Promise<string> {
  const entries = (await readdir(h.victimDir)).sort();
  const inside = await readFile(join(h.victimDir, 'authorized_keys'), 'utf8');
  return JSON.stringify({ victim: await readFile(h.victim, 'utf8'), entries, inside });
}

type Operation = 'read' | 'write' | 'edit' | 'inventory';
const OPERATIONS: Operation[] = ['read', 'write', 'edit', 'inventory'];

function perform(h: Home, operation: Operation): Promise<unknown> {
  switch (operation) {
    case 'read':
      return readAuthorizedKeys(h.adapter, SERVER, LOGIN);
    // The hash the victim has: had the link been followed, the compare-and-swap would pass.
    case 'write':
      return writeAuthorizedKeys(h.adapter, SERVER, LOGIN, sha256(VICTIM_TEXT), ADDED);
    case 'edit':
      return editAuthorizedKeys(h.adapter, SERVER, LOGIN, (current) => current.text + ADDED);
    case 'inventory':
      return readAllAuthorizedKeys(h.adapter, SERVER);
  }
}

/** Where a hostile user puts a link, and to what; `refused` is the path the error must name. */
const PLACEMENTS: {
  name: string;
  plant: (h: Home) => Promise<void>;
  refused: (h: Home) => string;
}[] = [
  {
    name: '~/.ssh -> a folder of root',
    plant: (h) => symlink(h.victimDir, h.ssh),
    refused: (h) => h.ssh,
  },
  {
    name: '~/.ssh -> nowhere',
    plant: (h) => symlink(join(h.victimDir, 'missing'), h.ssh),
    refused: (h) => h.ssh,
  },
  {
    name: '~/.ssh/authorized_keys -> /etc/shadow',
    plant: async (h) => {
      await mkdir(h.ssh, { mode: 0o700 });
      await symlink(h.victim, h.keys);
    },
    refused: (h) => h.keys,
  },
  {
    name: "~/.ssh/authorized_keys -> root's authorized_keys",
    plant: async (h) => {
      await mkdir(h.ssh, { mode: 0o700 });
      await symlink(join(h.victimDir, 'authorized_keys'), h.keys);
    },
    refused: (h) => h.keys,
  },
  {
    name: '~/.ssh/authorized_keys -> nowhere',
    plant: async (h) => {
      await mkdir(h.ssh, { mode: 0o700 });
      await symlink(join(h.victimDir, 'missing'), h.keys);
    },
    refused: (h) => h.keys,
  },
];

describe('authorized_keys on a server', () => {
  for (const placement of PLACEMENTS) {
    it(`readAuthorizedKeys, writeAuthorizedKeys, editAuthorizedKeys, readAllAuthorizedKeys — refuse ${placement.name} with an UnsafePathError naming it, and reach nothing behind it`, async () => {
      for (const operation of OPERATIONS) {
        const h = await home();
        await placement.plant(h);
        const before = await victimState(h);
        const link = placement.refused(h);
        const target = await readlink(link);

        const error = await perform(h, operation).then(
          (value) => ({ value }),
          (e: unknown) => e,
        );
        expect(error, operation).toBeInstanceOf(UnsafePathError);
        expect((error as UnsafePathError).filePath, operation).toBe(link);
        expect((error as UnsafePathError).reason, operation).toBe('symbolic-link');
        expect((error as UnsafePathError).message, operation).toContain(`login ${LOGIN} on srv`);
        expect(await victimState(h), operation).toBe(before);
        expect(await readlink(link), operation).toBe(target);
        expect(await readdir(h.home), operation).toEqual(['.ssh']);
        if (!(await lstat(h.ssh)).isSymbolicLink()) {
          expect(await readdir(h.ssh), operation).toEqual(['authorized_keys']);
        }
      }
    });
  }

  it('writeAuthorizedKeys — ~/.ssh swapped for a link to root’s folder after it was checked: the write stays in the folder that was ~/.ssh', async () => {
    const h = await home();
    await mkdir(h.ssh, { mode: 0o700 });
    await writeFile(h.keys, 'ssh-ed25519 AAAA old\n');
    const { hash } = await readAuthorizedKeys(h.adapter, SERVER, LOGIN);
    // The same home, with a flock that swaps ~/.ssh for a link to root's folder when it is run.
    const racy = racyAdapter(h, { SWAP_SSH_FOR: h.victimDir });
    const before = await victimState(h);

    expect(await writeAuthorizedKeys(racy, SERVER, LOGIN, hash, ADDED)).toEqual({ hash: sha256(ADDED) });
    expect(await victimState(h)).toBe(before);
    expect(await readlink(h.ssh)).toBe(h.victimDir);
    expect(await readFile(join(h.home, '.ssh.moved', 'authorized_keys'), 'utf8')).toBe(ADDED);
    expect(await readdir(join(h.home, '.ssh.moved'))).toEqual(['authorized_keys']);
  });

  it('writeAuthorizedKeys — a link planted at the temporary file’s name is refused: nothing is written through it', async () => {
    const plain = await home();
    await mkdir(plain.ssh, { mode: 0o700 });
    await writeFile(plain.keys, 'ssh-ed25519 AAAA old\n');
    const { hash } = await readAuthorizedKeys(plain.adapter, SERVER, LOGIN);
    const racy = racyAdapter(plain, { PLANT_AT_TEMP: plain.victim });
    const before = await victimState(plain);
    const error = await writeAuthorizedKeys(racy, SERVER, LOGIN, hash, ADDED).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsafePathError);
    expect((error as UnsafePathError).filePath).toMatch(/\/\.ssh\/\.authorized_keys\.fleetward\.\w{6}$/);
    expect(await victimState(plain)).toBe(before);
    expect(await readFile(plain.keys, 'utf8')).toBe('ssh-ed25519 AAAA old\n');
    // The planted link is removed with the temporary name; the folder holds only the old file.
    expect(await readdir(plain.ssh)).toEqual(['authorized_keys']);
  });

  it('writeAuthorizedKeys — a ~/.ssh the login does not own is refused (a link above it can lead to another login’s folder)', async () => {
    const h = await home({ uid: process.getuid!() + 4242 });
    await mkdir(h.ssh, { mode: 0o700 });
    const error = await writeAuthorizedKeys(h.adapter, SERVER, LOGIN, 'absent', ADDED).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UnsafePathError);
    expect(error).toMatchObject({ filePath: h.ssh, reason: 'wrong-owner' });
    expect(await readdir(h.ssh)).toEqual([]);
  });

  it('editAuthorizedKeys — creates ~/.ssh (0700) and the file (0600), compare-and-swap with the hash read, stale hash is a conflict', async () => {
    const h = await home();
    expect(await readAuthorizedKeys(h.adapter, SERVER, LOGIN)).toEqual({
      path: h.keys,
      hash: 'absent',
      text: '',
    });
    const edited = await editAuthorizedKeys(h.adapter, SERVER, LOGIN, (current) => current.text + ADDED);
    expect(edited).toEqual({ path: h.keys, text: ADDED, hash: sha256(ADDED) });
    expect((await lstat(h.ssh)).mode & 0o777).toBe(0o700);
    expect((await lstat(h.keys)).mode & 0o777).toBe(0o600);
    expect(await readAuthorizedKeys(h.adapter, SERVER, LOGIN)).toEqual(edited);
    expect(await readAllAuthorizedKeys(h.adapter, SERVER)).toEqual(new Map([[LOGIN, `${ADDED}\n`]]));

    await expect(writeAuthorizedKeys(h.adapter, SERVER, LOGIN, 'absent', 'x\n')).rejects.toBeInstanceOf(
      ConflictError,
    );
    expect(await readFile(h.keys, 'utf8')).toBe(ADDED);
    expect(await readdir(h.ssh)).toEqual(['authorized_keys']);
  });
});
