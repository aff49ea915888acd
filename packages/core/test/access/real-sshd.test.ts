import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { describeIfAvailable } from '@fleetward/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type AuthorizedKeyOption, renderAuthorizedKeyLine } from '../../src/access/authorized-keys.js';
import { type GeneratedKeyPair, generateEd25519KeyPair } from '../../src/access/keygen.js';
import { parseSshdLog } from '../../src/access/sshd-log.js';
import {
  expiryTimeOption,
  parseSshdVersion,
  type SshdVersion,
  supportsUtcExpiry,
} from '../../src/access/sshd-version.js';
import { ValidationError } from '../../src/errors.js';
import { run, SSH, SSH_KEYGEN, SSHD, sshdUnavailable, tempDir, writePrivateKey } from './support.js';

/** POSIX TZ for UTC+14 (the sign is inverted in POSIX): far enough from UTC that a zone mix-up cannot pass. */
const HOST_TZ = 'UTC-14';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describeIfAvailable('access building blocks against a real sshd', sshdUnavailable(), () => {
  let dir: { dir: string; remove: () => Promise<void> };
  let sshd: ChildProcess | undefined;
  let port: number;
  let version: SshdVersion;
  let authorizedKeys: string;
  let logFile: string;
  const key: GeneratedKeyPair = generateEd25519KeyPair('fleetward-real-sshd');
  let keyFile: string;

  beforeAll(async () => {
    const sshdV = await run(SSHD, ['-V']).catch((error: { stdout?: string; stderr?: string }) => error);
    const parsed = parseSshdVersion(`${sshdV.stdout ?? ''}${sshdV.stderr ?? ''}`);
    if (!parsed) throw new Error(`cannot read the sshd version from ${JSON.stringify(sshdV)}`);
    version = parsed;

    dir = await tempDir('real-sshd');
    // sshd's privilege separation directory; Debian creates it only while its own service runs.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    await run(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', join(dir.dir, 'host_key')]);
    keyFile = join(dir.dir, 'client_key');
    await writePrivateKey(keyFile, key.privateKey);
    authorizedKeys = join(dir.dir, 'authorized_keys');
    await writeFile(authorizedKeys, '');
    logFile = join(dir.dir, 'sshd.log');
    port = await freePort();
    const config = join(dir.dir, 'sshd_config');
    await writeFile(
      config,
      [
        `ListenAddress 127.0.0.1`,
        `HostKey ${join(dir.dir, 'host_key')}`,
        `PidFile ${join(dir.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // The temp dir sits under the world-writable /tmp, which StrictModes refuses.
        'StrictModes no',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    sshd = spawn(SSHD, ['-D', '-e', '-E', logFile, '-f', config, '-p', String(port)], {
      env: { ...process.env, TZ: HOST_TZ },
      stdio: 'ignore',
    });
    await waitFor(
      async () => (await readFile(logFile, 'utf8').catch(() => '')).includes('Server listening'),
      'sshd',
    );
  });

  afterAll(async () => {
    if (sshd?.pid !== undefined && sshd.exitCode === null) {
      const exited = new Promise((resolve) => sshd?.once('exit', resolve));
      sshd.kill('SIGTERM');
      await exited;
    }
    await dir?.remove();
  });

  async function authorize(options: AuthorizedKeyOption[]): Promise<void> {
    const line = renderAuthorizedKeyLine({
      options,
      keyType: key.keyType,
      keyBase64: key.keyBase64,
      comment: 'test',
    });
    await writeFile(authorizedKeys, `${line}\n`);
  }

  async function login(): Promise<{ ok: boolean; stdout: string }> {
    const args = [
      '-F',
      '/dev/null',
      '-i',
      keyFile,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'PreferredAuthentications=publickey',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-p',
      String(port),
      'root@127.0.0.1',
      'true',
    ];
    try {
      const { stdout } = await run(SSH, args, { timeout: 15_000 });
      return { ok: true, stdout };
    } catch {
      return { ok: false, stdout: '' };
    }
  }

  /** The host's own rendering of an instant, asked of the host the way a caller would. */
  async function hostLocalTime(at: Date): Promise<string> {
    const { stdout } = await run('date', ['-d', `@${Math.floor(at.getTime() / 1000)}`, '+%Y%m%d%H%M%S'], {
      env: { ...process.env, TZ: HOST_TZ },
    });
    return stdout.trim();
  }

  it('parseSshdVersion — the banner of the running sshd gives the same version as sshd -V', async () => {
    const banner = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (chunk) => {
        data += chunk.toString('latin1');
        if (data.includes('\n')) {
          socket.destroy();
          resolve(data.split('\n')[0]!);
        }
      });
      socket.on('error', reject);
    });
    expect(parseSshdVersion(banner)).toMatchObject({ major: version.major, minor: version.minor });
  });

  it('generateEd25519KeyPair — the generated private key logs in to a real sshd, and parseSshdLog sees it with the same fingerprint', async () => {
    await authorize([]);
    expect((await login()).ok).toBe(true);
    const events = parseSshdLog(await readFile(logFile, 'utf8'));
    expect(events.at(-1)).toMatchObject({
      login: 'root',
      from: '127.0.0.1',
      method: 'publickey',
      result: 'accepted',
      keyType: 'ED25519',
      fingerprint: key.fingerprint,
    });
  });

  it('renderAuthorizedKeyLine — sshd reads quoted values with commas, blanks, quotes and backslashes as rendered', async () => {
    const command = `printf '%s|' "a, b" 'x"y' 'c\\d' "$SSH_ORIGINAL_COMMAND"`;
    await authorize([
      { name: 'from', value: '127.0.0.1,::1' },
      { name: 'command', value: command },
      { name: 'no-pty' },
    ]);
    expect(await login()).toEqual({ ok: true, stdout: 'a, b|x"y|c\\d|true|' });
    await authorize([{ name: 'from', value: '10.0.0.0/8,!127.0.0.1' }]);
    expect((await login()).ok).toBe(false);
  });

  it('expiryTimeOption — sshd honours the form chosen for its own version', async () => {
    if (!supportsUtcExpiry(version)) {
      expect(() => expiryTimeOption(new Date(), version)).toThrow(ValidationError);
      return;
    }
    await authorize([expiryTimeOption(new Date(Date.now() + 3600_000), version)]);
    expect((await login()).ok).toBe(true);
    await authorize([expiryTimeOption(new Date(Date.now() - 60_000), version)]);
    expect((await login()).ok).toBe(false);
  });

  it('expiryTimeOption — without Z sshd reads host-local time: the host-formatted value works, UTC digits would not', async () => {
    const preUtc: SshdVersion = { major: 9, minor: 0, raw: 'OpenSSH_9.0' };
    const inAnHour = new Date(Date.now() + 3600_000);
    await authorize([expiryTimeOption(inAnHour, preUtc, await hostLocalTime(inAnHour))]);
    expect((await login()).ok).toBe(true);
    // The trap: the same instant's UTC digits without Z are 14 hours in this host's past.
    const utcDigits = inAnHour.toISOString().replace(/[-:T]/g, '').slice(0, 14);
    await authorize([{ name: 'expiry-time', value: utcDigits }]);
    expect((await login()).ok).toBe(false);
  });
});
