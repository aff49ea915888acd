import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { ValidationError } from '@fleetward/core';
import {
  FileSecretStore,
  openFileSecretStore,
  SecretStoreError,
  type SecretStoreFailure,
} from '@fleetward/secret-store-file';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SOURCE = fileURLToPath(new URL('../src/index.ts', import.meta.url));
const SECRET_FILE = /^[0-9a-f]{64}\.secret$/;
const PASSPHRASE = 'correct horse battery staple';

let root: string;
let dir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleetward-secrets-'));
  dir = join(root, 'store');
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

async function storeFailure(
  promise: Promise<unknown>,
  reason?: SecretStoreFailure,
): Promise<SecretStoreError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(SecretStoreError);
  const failure = error as SecretStoreError;
  expect(failure.code).toBe('STORE_FAILED');
  if (reason) expect(failure.reason).toBe(reason);
  return failure;
}

async function secretFiles(directory = dir): Promise<string[]> {
  return (await readdir(directory)).filter((name) => SECRET_FILE.test(name)).sort();
}

/** The file that holds `ref`: refs are in plaintext inside their file, by design. */
async function fileHolding(ref: string): Promise<string> {
  for (const name of await secretFiles()) {
    if ((await readFile(join(dir, name))).includes(Buffer.from(`${ref}`))) return join(dir, name);
  }
  throw new Error(`no file holds ${ref}`);
}

async function treeOf(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true });
  return entries.map((entry) => relative(directory, join(directory, entry))).sort();
}

function headerPath(): string {
  return join(dir, 'header.json');
}

async function readHeaderJson(): Promise<{ currentKey: string; keys: { id: string }[]; kdf: object }> {
  return JSON.parse(await readFile(headerPath(), 'utf8'));
}

/** Runs an ES module that imports the store's TypeScript source through tsx, as a real process. */
async function spawnScript(source: string, env: Record<string, string>): Promise<ChildProcess> {
  const script = join(root, `script-${randomUUID()}.mjs`);
  await writeFile(script, source);
  return spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', STORE_MODULE: pathToFileURL(SOURCE).href, STORE_DIR: dir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Collects stdout lines; resolves `closed` with the lines and stderr when the process is gone. */
function watch(child: ChildProcess, onLine: (line: string) => void) {
  const lines: string[] = [];
  let stderr = '';
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      onLine(line);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const closed = new Promise<{ lines: string[]; stderr: string; signal: NodeJS.Signals | null }>((done) =>
    child.on('close', (_code, signal) => done({ lines, stderr, signal })),
  );
  return closed;
}

describe('FileSecretStore', () => {
  it('get/set — round-trips ASCII, unicode, the empty string and a 1 MiB value', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const values: Record<string, string> = {
      'tenant-a/keys/ascii': 'hunter2',
      'tenant-a/keys/unicode': 'pässwörd 🔑 密码 \u0000 after NUL',
      'tenant-a/keys/empty': '',
      // Two UTF-8 bytes per character: exactly 1 MiB of UTF-8, the largest value allowed.
      'tenant-a/keys/big': 'é'.repeat(512 * 1024),
    };
    for (const [ref, value] of Object.entries(values)) await store.set(ref, value);
    for (const [ref, value] of Object.entries(values)) expect(await store.get(ref)).toBe(value);
    expect(await store.get('tenant-a/keys/missing')).toBeUndefined();
    await store.set('tenant-a/keys/ascii', 'replaced');
    expect(await store.get('tenant-a/keys/ascii')).toBe('replaced');
  });

  it('set — refuses values over 1 MiB of UTF-8, lone surrogates and non-strings, naming the ref but not the value', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const ref = 'tenant-a/keys/too-big';
    // 524 289 characters but 1 MiB + 2 bytes: the limit is in bytes, not characters.
    const tooBig = 'é'.repeat(512 * 1024 + 1);
    for (const value of [tooBig, 'abc\uD800def', 42 as unknown as string]) {
      const error = await rejection(store.set(ref, value));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['value']);
      expect((error as Error).message).toContain(ref);
      expect((error as Error).message).not.toContain('éé');
      expect((error as Error).message).not.toContain('abc');
    }
    expect(await secretFiles()).toEqual([]);
  });

  it('list — returns the refs under a prefix, sorted, and never values', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    for (const ref of [
      'tenant-b/keys/2',
      'tenant-a/keys/b',
      'tenant-a/keys/a',
      'tenant-a/tokens/x',
      'zeta',
    ]) {
      await store.set(ref, `value of ${ref}`);
    }
    expect(await store.list()).toEqual([
      'tenant-a/keys/a',
      'tenant-a/keys/b',
      'tenant-a/tokens/x',
      'tenant-b/keys/2',
      'zeta',
    ]);
    expect(await store.list('tenant-a/keys/')).toEqual(['tenant-a/keys/a', 'tenant-a/keys/b']);
    expect(await store.list('tenant-c/')).toEqual([]);
  });

  it('delete — removes the secret and returns true, then false when it is absent', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    await store.set('tenant-a/keys/one', 'v1');
    expect(await store.delete('tenant-a/keys/one')).toBe(true);
    expect(await store.get('tenant-a/keys/one')).toBeUndefined();
    expect(await store.delete('tenant-a/keys/one')).toBe(false);
    expect(await store.delete('never/existed')).toBe(false);
    expect(await secretFiles()).toEqual([]);
  });

  it('openFileSecretStore — a second store over the same directory sees the first one’s writes and deletes', async () => {
    const key = randomBytes(32);
    const first = await openFileSecretStore({ directory: dir, key });
    const second = await openFileSecretStore({ directory: dir, key });
    await first.set('tenant-a/keys/shared', 'from first');
    expect(await second.get('tenant-a/keys/shared')).toBe('from first');
    await second.set('tenant-a/keys/shared', 'from second');
    expect(await first.get('tenant-a/keys/shared')).toBe('from second');
    expect(await second.list()).toEqual(['tenant-a/keys/shared']);
    expect(await first.delete('tenant-a/keys/shared')).toBe(true);
    expect(await second.get('tenant-a/keys/shared')).toBeUndefined();
  });

  it('set — no byte on disk holds a value, a PEM marker, the key or the passphrase; files are 0600 in a 0700 directory', async () => {
    await promisify(execFile)('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'rot',
      '-f',
      join(root, 'id'),
    ]);
    const pem = await readFile(join(root, 'id'), 'utf8');
    expect(pem).toContain('-----BEGIN OPENSSH PRIVATE KEY-----');
    const pemBody = pem.split('\n')[1]!;
    const key = randomBytes(32);
    const rawDir = dir;
    const rawStore = await openFileSecretStore({ directory: rawDir, key });
    await rawStore.set('tenant-a/keys/ssh', pem);
    await rawStore.set('tenant-a/passwords/db', 'Sup3r-Secret-Passw0rd');
    dir = join(root, 'by-passphrase');
    const phraseStore = await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
    await phraseStore.set('tenant-a/keys/ssh', pem);

    const needles = [
      Buffer.from(pem),
      Buffer.from('PRIVATE KEY'),
      Buffer.from('BEGIN OPENSSH'),
      Buffer.from(pemBody),
      Buffer.from(pemBody.slice(20, 44)),
      Buffer.from('Sup3r-Secret-Passw0rd'),
      key,
      Buffer.from(key.toString('hex')),
      Buffer.from(key.toString('base64')),
      Buffer.from(PASSPHRASE),
    ];
    for (const directory of [rawDir, dir]) {
      expect((await stat(directory)).mode & 0o777).toBe(0o700);
      const names = await readdir(directory);
      expect(names).toContain('header.json');
      for (const name of names) {
        const path = join(directory, name);
        expect((await stat(path)).mode & 0o777).toBe(0o600);
        const bytes = await readFile(path);
        for (const needle of needles) expect(bytes.includes(needle)).toBe(false);
      }
    }
  });

  it('get — a flipped bit anywhere in a secret file is refused with a SecretStoreError naming the ref, never the value', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const ref = 'tenant-a/keys/flip';
    const value = 'flip-me-if-you-can';
    await store.set(ref, value);
    const path = await fileHolding(ref);
    const original = await readFile(path);
    for (let offset = 0; offset < original.length; offset++) {
      const damaged = Buffer.from(original);
      damaged[offset]! ^= 0x01;
      await writeFile(path, damaged);
      const error = await storeFailure(store.get(ref));
      expect(error.message).toContain(ref);
      expect(error.ref).toBe(ref);
      expect(JSON.stringify(error.toJSON())).not.toContain(value);
      expect(String(error.cause ?? '')).not.toContain(value);
    }
    await writeFile(path, original);
    expect(await store.get(ref)).toBe(value);
    await writeFile(path, original.subarray(0, original.length - 1));
    expect((await storeFailure(store.get(ref), 'integrity')).message).toContain(ref);
  });

  it('get — swapped or renamed secret files are refused, even with the ref inside rewritten', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    await store.set('tenant-a/keys/one', 'value one');
    await store.set('tenant-a/keys/two', 'value two');
    const one = await fileHolding('tenant-a/keys/one');
    const two = await fileHolding('tenant-a/keys/two');
    const oneBytes = await readFile(one);
    const twoBytes = await readFile(two);

    await rename(one, join(dir, 'swap'));
    await rename(two, one);
    await rename(join(dir, 'swap'), two);
    expect((await storeFailure(store.get('tenant-a/keys/one'), 'integrity')).message).toContain(
      'tenant-a/keys/one',
    );
    expect((await storeFailure(store.get('tenant-a/keys/two'), 'integrity')).message).toContain(
      'tenant-a/keys/two',
    );
    await storeFailure(store.list(), 'integrity');

    // Same-length refs: rewrite the plaintext ref so that the name check passes; the AAD still binds it.
    const forged = Buffer.from(twoBytes);
    forged.set(Buffer.from('tenant-a/keys/one'), twoBytes.indexOf('tenant-a/keys/two'));
    await writeFile(one, forged);
    await writeFile(two, twoBytes);
    await storeFailure(store.get('tenant-a/keys/one'), 'integrity');
    expect(await store.get('tenant-a/keys/two')).toBe('value two');

    // Renamed under the name of a ref that has no secret.
    await writeFile(one, oneBytes);
    await store.set('tenant-a/keys/three', 'value three');
    const three = await fileHolding('tenant-a/keys/three');
    await store.delete('tenant-a/keys/three');
    await rename(one, three);
    await storeFailure(store.get('tenant-a/keys/three'), 'integrity');
    expect(await store.get('tenant-a/keys/one')).toBeUndefined();
  });

  it('openFileSecretStore — a wrong passphrase or key is refused with reason wrong-key', async () => {
    const phrase = await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
    await phrase.set('tenant-a/keys/one', 'v1');
    const wrong = await storeFailure(
      openFileSecretStore({ directory: dir, key: { passphrase: 'correct horse battery stapler' } }),
      'wrong-key',
    );
    expect(wrong.message).toMatch(/wrong key/);
    expect(wrong.fault).toBe('caller');
    expect(JSON.stringify(wrong.toJSON())).not.toContain('stapler');
    await storeFailure(openFileSecretStore({ directory: dir, key: randomBytes(32) }), 'wrong-key');

    const rawDir = join(root, 'raw');
    await openFileSecretStore({ directory: rawDir, key: randomBytes(32) });
    await storeFailure(openFileSecretStore({ directory: rawDir, key: randomBytes(32) }), 'wrong-key');
    await storeFailure(
      openFileSecretStore({ directory: rawDir, key: { passphrase: PASSPHRASE } }),
      'wrong-key',
    );

    const again = await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
    expect(await again.get('tenant-a/keys/one')).toBe('v1');
  });

  it('openFileSecretStore — bad keys and passphrases are a ValidationError that does not echo them', async () => {
    const cases: [unknown, string][] = [
      [randomBytes(16), 'key'],
      [Buffer.alloc(32), 'key'],
      [{ passphrase: 'short-pass' }, 'key.passphrase'],
      ['a bare string key', 'key'],
    ];
    for (const [key, path] of cases) {
      const error = await rejection(openFileSecretStore({ directory: dir, key: key as Buffer }));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual([path]);
      expect((error as Error).message).not.toContain('short-pass');
      expect((error as Error).message).not.toContain('bare string');
    }
  });

  it('openFileSecretStore — creates a missing directory 0700 and refuses one that group or others can access', async () => {
    await openFileSecretStore({ directory: join(dir, 'nested', 'deeper'), key: randomBytes(32) });
    expect((await stat(join(dir, 'nested', 'deeper'))).mode & 0o777).toBe(0o700);

    for (const mode of [0o755, 0o750, 0o701, 0o770]) {
      const open = join(root, `open-${mode.toString(8)}`);
      await mkdir(open);
      await chmod(open, mode);
      const error = await storeFailure(
        openFileSecretStore({ directory: open, key: randomBytes(32) }),
        'unsafe-directory',
      );
      expect(error.message).toContain(mode.toString(8));
      expect(await readdir(open)).toEqual([]);
    }
    const file = join(root, 'a-file');
    await writeFile(file, '');
    await storeFailure(openFileSecretStore({ directory: file, key: randomBytes(32) }), 'unsafe-directory');
  });

  // Handing a directory to another user needs root.
  itIfAvailable(
    'openFileSecretStore — refuses a directory that belongs to another user',
    unavailableWithout({ root: true }),
    async () => {
      await mkdir(dir, { mode: 0o700 });
      await chown(dir, 65534, 65534);
      const error = await storeFailure(
        openFileSecretStore({ directory: dir, key: randomBytes(32) }),
        'unsafe-directory',
      );
      expect(error.message).toContain('65534');
    },
  );

  it('set — hostile refs are stored inside the directory and nothing is created outside it', async () => {
    dir = join(root, 'a', 'b', 'c', 'store');
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const outsidePath = join(tmpdir(), `fleetward-escape-${randomUUID()}`);
    const hostile = [
      '../../etc/passwd',
      'a/../../b',
      '../../../../../../../../../../../../etc/shadow',
      outsidePath,
      '/etc/passwd',
      `../../../../../../../..${outsidePath}`,
      '..',
      '.',
      './',
      'C:\\Windows\\System32\\config',
      '~/.ssh/authorized_keys',
      '%2e%2e%2f%2e%2e%2f',
      '🔑/../../..',
      'x'.repeat(512),
      '🔑'.repeat(512),
    ];
    const outsideBefore = (await treeOf(root)).filter((p) => !p.startsWith(join('a', 'b', 'c', 'store')));
    for (const ref of hostile) await store.set(ref, `value for ${ref}`);
    for (const ref of hostile) expect(await store.get(ref)).toBe(`value for ${ref}`);
    expect(await store.list()).toEqual([...hostile].sort());

    const outsideAfter = (await treeOf(root)).filter((p) => !p.startsWith(join('a', 'b', 'c', 'store')));
    expect(outsideAfter).toEqual(outsideBefore);
    await expect(stat(outsidePath)).rejects.toMatchObject({ code: 'ENOENT' });
    const inside = await readdir(dir);
    expect(inside.filter((n) => n !== 'header.json').every((n) => SECRET_FILE.test(n))).toBe(true);
    expect(await secretFiles()).toHaveLength(hostile.length);
    for (const ref of hostile) expect(await store.delete(ref)).toBe(true);
    expect(await readdir(dir)).toEqual(['header.json']);
  });

  it('get/set/delete/list — invalid refs are a ValidationError that does not echo them and touch nothing', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const invalid: unknown[] = [
      '',
      'a\u0000b',
      'y'.repeat(10_000),
      'y'.repeat(513),
      'line\nbreak',
      'tab\there',
      '\u001b[31mred',
      'del\u007f',
      'c1\u0085',
      'bidi\u202Eoverride',
      'zero\u200Bwidth',
      'a\u2028b',
      'lone\uD800',
      42,
      undefined,
    ];
    for (const ref of invalid) {
      for (const call of [
        () => store.get(ref as string),
        () => store.set(ref as string, 'v'),
        () => store.delete(ref as string),
      ]) {
        const error = await rejection(call());
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).paths).toEqual(['ref']);
        expect((error as Error).message).not.toContain('yyyy');
        expect((error as Error).message).not.toContain('\u001b');
      }
    }
    for (const prefix of ['a\u0000', 'y'.repeat(513), 7]) {
      const error = await rejection(store.list(prefix as string));
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['prefix']);
    }
    expect(await readdir(dir)).toEqual(['header.json']);
  });

  it('set/get — concurrent calls on one ref run in call order: each get sees the set before it', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    const ref = 'tenant-a/keys/contended';
    const sets: Promise<void>[] = [];
    const gets: Promise<string | undefined>[] = [];
    for (let i = 0; i < 40; i++) {
      // Larger values first, so that an unserialised early write would finish last.
      sets.push(store.set(ref, `v${i}:${'x'.repeat((40 - i) * 20_000)}`));
      gets.push(store.get(ref));
    }
    await Promise.all(sets);
    const seen = await Promise.all(gets);
    seen.forEach((value, i) => {
      expect(value?.split(':')[0]).toBe(`v${i}`);
    });
    expect((await store.get(ref))?.startsWith('v39:')).toBe(true);
  });

  it('set — a writer in another process is never seen torn, and SIGKILLed mid-loop leaves the last or the next value', async () => {
    const key = randomBytes(32);
    const ref = 'tenant-a/keys/looped';
    // Close to the 1 MiB limit, so that a write takes several write(2) calls and a kill can land between them.
    const loopValue = (i: number) => `${i}:` + String(i % 10).repeat(1_000_000);
    const source = `
      const { openFileSecretStore } = await import(process.env.STORE_MODULE);
      const store = await openFileSecretStore({ directory: process.env.STORE_DIR, key: Buffer.from(process.env.STORE_KEY, 'hex') });
      const loopValue = (i) => \`\${i}:\` + String(i % 10).repeat(1_000_000);
      for (let i = 0; ; i++) {
        await store.set(${JSON.stringify(ref)}, loopValue(i));
        process.stdout.write(\`\${i}\\n\`);
      }
    `;
    const observer = await openFileSecretStore({ directory: dir, key });
    for (const killAfter of [2, 4, 6, 8, 10]) {
      const child = await spawnScript(source, { STORE_KEY: key.toString('hex') });
      const closed = watch(child, (line) => {
        if (Number(line) + 1 === killAfter) setTimeout(() => child.kill('SIGKILL'), Math.random() * 10);
      });
      let running = true;
      let reads = 0;
      const reader = (async () => {
        while (running) {
          const value = await observer.get(ref);
          if (value === undefined) continue;
          expect(value).toBe(loopValue(Number(value.split(':')[0])));
          reads++;
        }
      })().catch((error: unknown) => error);
      const { lines, stderr, signal } = await closed;
      running = false;
      expect(await reader).toBeUndefined();
      expect(reads).toBeGreaterThan(0);
      expect(stderr).toBe('');
      expect(signal).toBe('SIGKILL');
      const last = Number(lines.at(-1));
      expect(last).toBeGreaterThanOrEqual(killAfter - 1);

      const store = await openFileSecretStore({ directory: dir, key });
      expect((await readdir(dir)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
      const value = await store.get(ref);
      const index = Number(value?.split(':')[0]);
      expect([last, last + 1]).toContain(index);
      expect(value).toBe(loopValue(index));
    }
  });

  it('rotateKey — the old key no longer opens the store and the new key reads every secret', async () => {
    const oldKey = randomBytes(32);
    const store = await openFileSecretStore({ directory: dir, key: oldKey });
    const values = new Map(Array.from({ length: 25 }, (_, i) => [`tenant-a/keys/${i}`, `secret ${i} ✓`]));
    for (const [ref, value] of values) await store.set(ref, value);
    const before = new Map<string, Buffer>();
    for (const name of await secretFiles()) before.set(name, await readFile(join(dir, name)));

    await store.rotateKey({ passphrase: PASSPHRASE });
    for (const [ref, value] of values) expect(await store.get(ref)).toBe(value);
    for (const name of await secretFiles())
      expect((await readFile(join(dir, name))).equals(before.get(name)!)).toBe(false);
    expect((await readHeaderJson()).keys).toHaveLength(1);
    await storeFailure(openFileSecretStore({ directory: dir, key: oldKey }), 'wrong-key');

    const byPhrase = await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
    for (const [ref, value] of values) expect(await byPhrase.get(ref)).toBe(value);
    const newKey = randomBytes(32);
    await byPhrase.rotateKey(newKey);
    await storeFailure(openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } }), 'wrong-key');
    const byKey = await openFileSecretStore({ directory: dir, key: newKey });
    expect(await byKey.list()).toEqual([...values.keys()].sort());
    for (const [ref, value] of values) expect(await byKey.get(ref)).toBe(value);
  });

  it('rotateKey — waits for operations in flight and holds new ones until the rotation is done', async () => {
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    for (let i = 0; i < 20; i++) await store.set(`tenant-a/keys/${i}`, `first ${i}`);
    const newKey = randomBytes(32);
    const writes = Array.from({ length: 20 }, (_, i) => store.set(`tenant-a/keys/${i}`, `second ${i}`));
    const rotation = store.rotateKey(newKey);
    const later = Array.from({ length: 20 }, (_, i) => store.set(`tenant-b/keys/${i}`, `third ${i}`));
    await Promise.all([...writes, rotation, ...later]);

    const reopened = await openFileSecretStore({ directory: dir, key: newKey });
    for (let i = 0; i < 20; i++) {
      expect(await reopened.get(`tenant-a/keys/${i}`)).toBe(`second ${i}`);
      expect(await reopened.get(`tenant-b/keys/${i}`)).toBe(`third ${i}`);
    }
    const { currentKey, keys } = await readHeaderJson();
    expect(keys.map((k) => k.id)).toEqual([currentKey]);
    for (const name of await secretFiles()) {
      expect((await readFile(join(dir, name))).subarray(5, 13).toString('hex')).toBe(currentKey);
    }
  });

  it('rotateKey — another store object over the directory is refused with key-rotated afterwards', async () => {
    const key = randomBytes(32);
    const rotating = await openFileSecretStore({ directory: dir, key });
    const stale = await openFileSecretStore({ directory: dir, key });
    await rotating.set('tenant-a/keys/one', 'v1');
    expect(await stale.get('tenant-a/keys/one')).toBe('v1');
    await rotating.rotateKey(randomBytes(32));
    for (const call of [
      () => stale.get('tenant-a/keys/one'),
      () => stale.set('tenant-a/keys/one', 'stale write'),
      () => stale.delete('tenant-a/keys/one'),
      () => stale.list(),
    ]) {
      await storeFailure(call(), 'key-rotated');
    }
    expect(await rotating.get('tenant-a/keys/one')).toBe('v1');
  });

  it('rotateKey — a rotation SIGKILLed midway is finished by the next open with the new key', async () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const store = await openFileSecretStore({ directory: dir, key: oldKey });
    const values = new Map(
      Array.from({ length: 400 }, (_, i) => [`tenant-a/keys/${i}`, `secret ${i} ${'k'.repeat(2000)}`]),
    );
    await Promise.all([...values].map(([ref, value]) => store.set(ref, value)));
    const source = `
      const { openFileSecretStore } = await import(process.env.STORE_MODULE);
      const store = await openFileSecretStore({ directory: process.env.STORE_DIR, key: Buffer.from(process.env.OLD_KEY, 'hex') });
      await store.rotateKey(Buffer.from(process.env.NEW_KEY, 'hex'));
      process.stdout.write('rotated\\n');
    `;
    const child = await spawnScript(source, {
      OLD_KEY: oldKey.toString('hex'),
      NEW_KEY: newKey.toString('hex'),
    });
    const closed = watch(child, () => undefined);
    let exited = false;
    void closed.then(() => {
      exited = true;
    });
    // Kill the rotation between its two header writes: the switch is made, the sweep is not.
    while (!exited) {
      const header = await readHeaderJson().catch(() => undefined);
      if (header && header.keys.length === 2) {
        child.kill('SIGKILL');
        break;
      }
      await new Promise((done) => setImmediate(done));
    }
    const { lines, signal } = await closed;
    expect(lines).not.toContain('rotated');
    expect(signal).toBe('SIGKILL');

    const { currentKey } = await readHeaderJson();
    let underOldKey = 0;
    for (const name of await secretFiles()) {
      if ((await readFile(join(dir, name))).subarray(5, 13).toString('hex') !== currentKey) underOldKey++;
    }
    expect(underOldKey).toBeGreaterThan(0);

    await storeFailure(openFileSecretStore({ directory: dir, key: oldKey }), 'wrong-key');
    const reopened = await openFileSecretStore({ directory: dir, key: newKey });
    expect((await readHeaderJson()).keys.map((k) => k.id)).toEqual([currentKey]);
    expect(await reopened.list()).toEqual([...values.keys()].sort());
    for (const [ref, value] of values) expect(await reopened.get(ref)).toBe(value);
    expect((await readdir(dir)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('openFileSecretStore — removes stale temp files and ignores fresh ones', async () => {
    const key = randomBytes(32);
    const store = await openFileSecretStore({ directory: dir, key });
    await store.set('tenant-a/keys/one', 'v1');
    const stale = join(dir, '.tmp-00000000-1-deadbeef');
    const fresh = join(dir, '.tmp-written-by-someone-else');
    await writeFile(stale, 'half a secret');
    await writeFile(fresh, 'half a secret');
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(stale, anHourAgo, anHourAgo);

    const reopened = await openFileSecretStore({ directory: dir, key });
    const names = await readdir(dir);
    expect(names).not.toContain('.tmp-00000000-1-deadbeef');
    expect(names).toContain('.tmp-written-by-someone-else');
    expect(await reopened.list()).toEqual(['tenant-a/keys/one']);
    expect(await reopened.get('tenant-a/keys/one')).toBe('v1');
  });

  it('openFileSecretStore — refuses to start a new store when the header is missing beside secrets', async () => {
    const key = randomBytes(32);
    const store = await openFileSecretStore({ directory: dir, key });
    await store.set('tenant-a/keys/one', 'v1');
    await rm(headerPath());
    const error = await storeFailure(openFileSecretStore({ directory: dir, key }), 'integrity');
    expect(error.message).toContain('header.json');
    expect(await readdir(dir)).not.toContain('header.json');
  });

  it('openFileSecretStore — a header with weakened scrypt cost, another salt or an unknown version is refused', async () => {
    await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
    const original = await readFile(headerPath(), 'utf8');
    const header = JSON.parse(original);
    expect(header.kdf).toEqual({ name: 'scrypt', N: 2 ** 17, r: 8, p: 1 });

    await writeFile(headerPath(), JSON.stringify({ ...header, kdf: { ...header.kdf, N: 1024 } }));
    await storeFailure(openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } }), 'integrity');
    await writeFile(headerPath(), JSON.stringify({ ...header, salt: randomBytes(32).toString('base64') }));
    await storeFailure(openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } }), 'wrong-key');
    await writeFile(headerPath(), JSON.stringify({ ...header, version: 2 }));
    await storeFailure(
      openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } }),
      'unsupported-format',
    );
    await writeFile(headerPath(), original);
    await openFileSecretStore({ directory: dir, key: { passphrase: PASSPHRASE } });
  });

  it('set/rotateKey — a link or folder planted at a secret file or the header is refused as integrity, never written through', async () => {
    const outside = join(root, 'outside');
    const store = await openFileSecretStore({ directory: dir, key: randomBytes(32) });
    await store.set('tenant-a/keys/one', 'v1');
    const secret = await fileHolding('tenant-a/keys/one');
    for (const [at, layout] of [
      [secret, 'link-to-file'],
      [secret, 'link-to-dir'],
      [secret, 'dangling-link'],
      [secret, 'dir'],
      [headerPath(), 'link-to-file'],
    ] as const) {
      await rm(outside, { recursive: true, force: true });
      await mkdir(join(outside, 'etc'), { recursive: true });
      await writeFile(join(outside, 'passwd'), 'root:x:0:0\n');
      const saved = await readFile(at);
      await rm(at);
      if (layout === 'link-to-file') await symlink(join(outside, 'passwd'), at);
      if (layout === 'link-to-dir') await symlink(join(outside, 'etc'), at);
      if (layout === 'dangling-link') await symlink(join(outside, 'gone'), at);
      if (layout === 'dir') await mkdir(at);
      const failure =
        at === secret
          ? await storeFailure(store.set('tenant-a/keys/one', 'v2'), 'integrity')
          : await storeFailure(store.rotateKey(randomBytes(32)));
      if (at === secret) expect(failure.message, layout).toContain(at);
      expect(await readFile(join(outside, 'passwd'), 'utf8'), layout).toBe('root:x:0:0\n');
      expect(await readdir(join(outside, 'etc')), layout).toEqual([]);
      expect(await readdir(outside), layout).toEqual(['etc', 'passwd']);
      await rm(at, { recursive: true });
      await writeFile(at, saved, { mode: 0o600 });
    }
  });

  it('FileSecretStore — cannot be constructed except by openFileSecretStore', () => {
    const Store = FileSecretStore as unknown as new (...args: unknown[]) => unknown;
    expect(() => new Store(Symbol('FileSecretStore'), {})).toThrow(/openFileSecretStore/);
  });
});
