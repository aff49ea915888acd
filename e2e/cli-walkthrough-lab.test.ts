import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';

// A new user follows the README's command-line walkthroughs, then the guides' (docs/*.md), as
// written, with the `fleetward` that npm installed from the packed tarballs (not `npm run`, not
// the sources), against lab hosts over SSH. The README names its servers web-1.example.internal
// and so on; here those names resolve to lab hosts through /etc/hosts in a private mount
// namespace, the user's key is authorised for root on them and their host keys are in the user's
// known_hosts — what a real user's machine would have before they start. Nothing else is
// prepared: every step is the documents' own text. Each block runs in a bash of its own, in one
// working folder, home and store: a block keeps no shell variables of the blocks before it.

const root = fileURLToPath(new URL('..', import.meta.url));
const distBuilt = [
  'core',
  'cli',
  'adapter-ssh',
  'store-sqlite',
  'secret-store-file',
  'store-postgres',
  'http',
].every((p) => existsSync(join(root, 'packages', p, 'dist')));

/** A document's walkthrough blocks: every ```sh block right after a `<!-- walkthrough: name -->` line. */
export function walkthroughs(document: string): { name: string; script: string }[] {
  return [...document.matchAll(/^<!-- walkthrough: ([a-z0-9-]+) -->\n+```sh\n([\s\S]*?)\n```/gm)].map(
    (m) => ({
      name: m[1]!,
      script: m[2]!,
    }),
  );
}

/**
 * The guides with walkthroughs, in the order they run after the README's: each continues the
 * store the ones before it left (the README patched the web servers, the patch guide patches
 * db-1; scripts and runbooks; access and managed keys; the HTTP API), and the audit guide comes
 * last, so that it signs and verifies the log of everything the others did.
 */
const GUIDES = ['patch-a-fleet-safely', 'scripts', 'access', 'http-api', 'audit'] as const;

/** The README's servers: name → lab flavour. */
const SERVERS = { 'web-1': 'debian', 'web-2': 'rhel', 'db-1': 'suse' } as const;
const DOMAIN = 'example.internal';

interface Shell {
  run(script: string): Promise<Ran>;
}

describeWithLab('README and guide walkthroughs, with the installed fleetward, on lab hosts', () => {
  let lab: Lab;
  let work: string;
  let shell: Shell;

  beforeAll(async () => {
    if (!distBuilt) throw new Error('the packages are not built: run `npm run build` before this test');
    work = mkdtempSync(join(tmpdir(), 'fleetward-walkthrough-'));
    const install = join(work, 'install');
    const installing = new Promise<void>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [join(root, 'scripts/consumer-check.mjs'), '--install-into', install],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.on('data', (d) => {
        output += d;
      });
      child.stderr.on('data', (d) => {
        output += d;
      });
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`install failed:\n${output}`))));
    });
    [lab] = await Promise.all([
      startLab({ hosts: Object.entries(SERVERS).map(([name, flavour]) => ({ name, flavour })) }),
      installing,
    ]);
    const bin = join(install, 'node_modules', '.bin');
    expect(existsSync(join(bin, 'fleetward'))).toBe(true);

    // The user's machine: a home with a key, known hosts, a hosts file naming the servers.
    const home = join(work, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
    const keygen = spawnSync('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'user@laptop',
      '-f',
      join(home, '.ssh/id_ed25519'),
    ]);
    expect(keygen.status, String(keygen.stderr)).toBe(0);
    const publicKey = readFileSync(join(home, '.ssh/id_ed25519.pub'), 'utf8');
    const knownHosts: string[] = [];
    const hosts: string[] = ['127.0.0.1 localhost'];
    for (const name of Object.keys(SERVERS)) {
      const host = lab.host(name);
      const fqdn = `${name}.${DOMAIN}`;
      // The admin's key on the server (root), and a `deploy` login for the access walkthrough.
      const setup = await host.sh(
        `mkdir -p /root/.ssh && chmod 700 /root/.ssh && cat >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && (id deploy >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' deploy)`,
        { input: publicKey },
      );
      expect(setup.exitCode, setup.stderr).toBe(0);
      for (const line of host.knownHosts.trim().split('\n')) {
        knownHosts.push(line.replace(/^\S+/, fqdn));
      }
      hosts.push(`${host.address} ${fqdn}`);
    }
    writeFileSync(join(home, '.ssh/known_hosts'), `${knownHosts.join('\n')}\n`);
    const hostsFile = join(work, 'hosts');
    writeFileSync(hostsFile, `${hosts.join('\n')}\n`);
    const cwd = join(work, 'cwd');
    mkdirSync(cwd);
    chmodSync(work, 0o755);

    // OpenSSH's client reads the home folder of the passwd entry (root's here), not $HOME: this
    // ssh reads the user's ~/.ssh as it would on their own machine.
    const userBin = join(work, 'user-bin');
    mkdirSync(userBin);
    writeFileSync(
      join(userBin, 'ssh'),
      '#!/bin/sh\nexec /usr/bin/ssh -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$HOME/.ssh/known_hosts" -i "$HOME/.ssh/id_ed25519" "$@"\n',
      { mode: 0o755 },
    );
    const env = {
      PATH: `${bin}:${userBin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      HOME: home,
      USER: 'root',
      LANG: 'C.UTF-8',
      NO_COLOR: '1',
      TZ: 'UTC',
    };
    shell = {
      run: (script) =>
        new Promise((resolve) => {
          const file = join(work, `step-${Date.now()}-${Math.random().toString(36).slice(2)}.sh`);
          writeFileSync(file, `set -euo pipefail\ncd ${JSON.stringify(cwd)}\n${script}\n`);
          // Output goes to files, as to a terminal: a pipe shared with a server the block started
          // in the background is made non-blocking by Node.js, and a command writing a lot into
          // it then fails with EAGAIN.
          const stdoutFd = openSync(`${file}.out`, 'w');
          const stderrFd = openSync(`${file}.err`, 'w');
          // A private mount namespace in which /etc/hosts names the README's servers.
          const child = spawn(
            'unshare',
            [
              '--mount',
              '--propagation',
              'private',
              'sh',
              '-c',
              'mount --bind "$1" /etc/hosts && exec bash "$2"',
              'sh',
              hostsFile,
              file,
            ],
            // Its own process group: what a block started in the background and left running
            // when it failed (a server) is stopped with it.
            { env, stdio: ['ignore', stdoutFd, stderrFd], detached: true },
          );
          closeSync(stdoutFd);
          closeSync(stderrFd);
          child.on('exit', (code) => {
            try {
              process.kill(-child.pid!, 'SIGTERM');
            } catch {
              // Nothing of the block is left.
            }
            resolve({
              code,
              stdout: readFileSync(`${file}.out`, 'utf8'),
              stderr: readFileSync(`${file}.err`, 'utf8'),
            });
          });
        }),
    };
  }, 600_000);

  afterAll(async () => {
    await lab?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  }, 120_000);

  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = walkthroughs(readme);

  it('walkthroughs — the README has them (setup, patching, access)', () => {
    expect(blocks.map((b) => b.name)).toEqual(expect.arrayContaining(['setup', 'patching', 'access']));
  });

  it('setup — init, import, scan and report reach every server over SSH', async () => {
    const r = await shell.run(blocks.find((b) => b.name === 'setup')!.script);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    // init adds this machine as localhost: four servers.
    expect(r.stdout).toContain('4 of 4 servers scanned');
    for (const name of Object.keys(SERVERS)) expect(r.stdout).toContain(name);
    expect(r.stdout).toContain('labdemo');
  }, 300_000);

  it('patching — plan, approval by someone else, the run: the web servers get labdemo 1.1-1', async () => {
    const r = await shell.run(blocks.find((b) => b.name === 'patching')!.script);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    // The back channel, not the SDK: what is installed now.
    expect((await lab.host('web-1').readFile('/usr/share/fleetward-lab/labdemo')).trim()).toBe('1.1-1');
    expect((await lab.host('web-2').readFile('/usr/share/fleetward-lab/labdemo')).trim()).toBe('1.1-1');
    expect((await lab.host('db-1').readFile('/usr/share/fleetward-lab/labdemo')).trim()).toBe('1.0-1');
  }, 600_000);

  it('access — a request, approved by someone else, puts an expiring key on the server; a login works', async () => {
    const r = await shell.run(blocks.find((b) => b.name === 'access')!.script);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const keys = await lab
      .host('web-1')
      .readFile('/home/deploy/.ssh/authorized_keys')
      .catch(() => '');
    expect(keys).toContain('expiry-time=');
  }, 300_000);

  it('every other walkthrough block runs too', async () => {
    for (const block of blocks.filter((b) => !['setup', 'patching', 'access'].includes(b.name))) {
      const r = await shell.run(block.script);
      expect(r.code, `${block.name}:\n${r.stdout}\n${r.stderr}`).toBe(0);
    }
  }, 600_000);

  const guideBlocks = GUIDES.flatMap((guide) =>
    walkthroughs(readFileSync(join(root, 'docs', `${guide}.md`), 'utf8')).map((b) => ({ guide, ...b })),
  );
  const labdemo = async (server: string) =>
    (await lab.host(server).readFile('/usr/share/fleetward-lab/labdemo')).trim();
  const motd = async (server: string) => lab.host(server).readFile('/etc/motd');
  const authorizedKeys = (server: string) =>
    lab
      .host(server)
      .readFile('/home/deploy/.ssh/authorized_keys')
      .catch(() => '');

  /** What a guide's block promises, checked after it ran: on the servers by the back channel. */
  const promises: Record<string, { promise: string; check: (r: Ran) => Promise<void> }> = {
    patch: {
      promise: 'after the secondary approval of the excluded package and the plan, db-1 gets labdemo 1.1-1',
      check: async (r) => {
        // `plans show` named the excluded package before it was approved.
        expect(r.stdout).toMatch(/Held back until a secondary approval:\n {2}db-1 {2}labdemo=1\.1-1: /);
        expect(await labdemo('db-1')).toBe('1.1-1');
        expect(await labdemo('web-1')).toBe('1.1-1');
      },
    },
    'patch-compliance': {
      promise:
        'after a scan db-1 is unknown, not non-compliant (labplain has no advisory); the CSV report is written',
      check: async (r) => {
        // Before the scan the patched labdemo still counted as pending: non-compliant.
        expect(r.stdout).toMatch(/^project +db +1 +0 +0 +1 +0$/m);
        const csv = readFileSync(join(work, 'cwd', 'db-compliance.csv'), 'utf8');
        expect(csv).toContain('db-1');
        expect(csv).toContain('of unknown category pending');
      },
    },
    scripts: {
      promise: 'the approved script sets the message of the day on the servers each run chose',
      check: async (r) => {
        expect(await motd('web-1')).toBe('patched on Sunday\n');
        expect(await motd('web-2')).toBe('patched on Sunday\n');
        expect(await motd('db-1')).toBe('maintenance at 02:00\n');
        // `runs show -s db-1` prints what the script wrote there.
        expect(r.stdout).toContain('maintenance at 02:00');
      },
    },
    'scripts-runbook': {
      promise: 'the runbook sets the message on its servers and ends after the approval',
      check: async (r) => {
        expect(await motd('web-1')).toBe('back to normal\n');
        expect(await motd('web-2')).toBe('back to normal\n');
        expect(await motd('db-1')).toBe('maintenance at 02:00\n');
        expect(r.stdout).toMatch(/motd-rollout[^\n]*succeeded/);
      },
    },
    'access-certificate': {
      promise: 'sshd logged the certificate in; after the revocation web-2 has no CA line for deploy',
      check: async () => {
        // sshd took the certificate, not the bare key: its log names the certificate's key ID.
        const log = await lab.host('web-2').readFile('/var/log/fleetward-lab/sshd.log');
        expect(log).toMatch(/Accepted publickey for deploy .*-CERT .*ID fleetward:default:\S+:INC-4711/);
        expect(await authorizedKeys('web-2')).not.toContain('cert-authority');
      },
    },
    'access-keys': {
      promise: "the rotated key replaced the old one in deploy's authorized_keys on both web servers",
      check: async () => {
        const oldKey = readFileSync(join(work, 'cwd', 'deploy_key.pub'), 'utf8').split(/\s+/)[1]!;
        const listed = await shell.run('fleetward credentials list -o json');
        expect(listed.code, listed.stderr).toBe(0);
        const [credential] = JSON.parse(listed.stdout) as {
          fingerprint: string;
          previousFingerprint?: string;
        }[];
        expect(credential?.previousFingerprint).toBe(fingerprint(oldKey));
        expect(credential?.fingerprint).not.toBe(credential?.previousFingerprint);
        for (const server of ['web-1', 'web-2']) {
          const keys = await authorizedKeys(server);
          expect(keys, server).not.toContain(oldKey);
          expect(keyBlobs(keys).map(fingerprint), server).toContain(credential?.fingerprint);
        }
        expect(await authorizedKeys('db-1')).not.toContain(oldKey);
      },
    },
    'http-api': {
      promise: 'the API answers with the servers for the token, the document without one, and stops',
      check: async (r) => {
        expect(r.stdout).toContain('"web-1"');
        expect(r.stdout).toContain('"openapi"');
      },
    },
    audit: {
      promise: 'the checkpoint signed with the key file anchors the live log and the export',
      check: async (r) => {
        expect(r.stdout.match(/^OK: .*1 checkpoint\(s\) verified/gm)?.length).toBe(3);
        expect(r.stdout).not.toMatch(/TAMPERED|NOT ANCHORED/);
      },
    },
  };

  it('guides — every docs/*.md with walkthroughs runs here, and every promise checked names a block', () => {
    const withWalkthroughs = readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .filter((f) => walkthroughs(readFileSync(join(root, 'docs', f), 'utf8')).length > 0)
      .map((f) => f.replace(/\.md$/, ''));
    expect([...GUIDES].sort()).toEqual(withWalkthroughs.sort());
    const names = [...blocks, ...guideBlocks].map((b) => b.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of Object.keys(promises)) expect(names).toContain(name);
  });

  for (const block of guideBlocks) {
    const promised = promises[block.name];
    it(`docs/${block.guide}.md ${block.name} — runs as written${promised ? `; ${promised.promise}` : ''}`, async () => {
      const r = await shell.run(block.script);
      expect(r.code, `${block.name}:\n${r.stdout}\n${r.stderr}`).toBe(0);
      await promised?.check(r);
    }, 300_000);
  }
});

type Ran = { code: number | null; stdout: string; stderr: string };

/** The base64 key blobs of the lines of an authorized_keys file (after any options). */
function keyBlobs(file: string): string[] {
  return file.split('\n').flatMap((line) =>
    line
      .split(/\s+/)
      .filter((field) => /^AAAA[0-9A-Za-z+/]+={0,2}$/.test(field))
      .slice(0, 1),
  );
}

/** OpenSSH's SHA256 fingerprint of a base64 key blob, as `ssh-keygen -l` prints it. */
function fingerprint(blob: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}
