import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cleanupLabs,
  describeWithLab,
  LAB_DEFAULT_CONTENT,
  type Lab,
  type LabHost,
  LabHostDownError,
  startLab,
} from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  kernelTraces,
  markedProcesses,
  netnsInode,
  processesInNetns,
  runCommand,
  tcpBanner,
  waitForBanner,
} from './support/kernel.js';

const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
/** reboot(2)'s number; LINUX_REBOOT_MAGIC1, MAGIC2 and CMD_RESTART follow it in the tests. */
/** RFC 4253 §7.1: the first packet each side sends after the identification strings. */
const SSH_MSG_KEXINIT = 20;
const SYS_REBOOT = process.arch === 'arm64' ? 142 : 169;
const CHILD_SCRIPT = fileURLToPath(new URL('./support/child-lab.ts', import.meta.url));

interface ChildLab {
  child: ChildProcess;
  exited: Promise<NodeJS.Signals | null>;
  id: string;
  address: string;
  netns: string;
}

/**
 * One request/response round trip with sshd over raw TCP: wait for its banner, send a client
 * identification, and time until sshd's first key-exchange packet (SSH_MSG_KEXINIT, which sshd
 * sends only after reading the client's identification) arrives.
 */
function sshdRoundTrip(
  address: string,
  port: number,
): Promise<{ banner: string; replyMessageType: number | undefined; roundTripMs: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    let received = Buffer.alloc(0);
    let banner: string | undefined;
    let sentAt = 0;
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (banner === undefined) {
        const end = received.indexOf('\r\n');
        if (end < 0) return;
        banner = received.subarray(0, end).toString('latin1');
        received = received.subarray(end + 2);
        if (received.length > 0)
          return fail(new Error('sshd sent more than its banner before the client spoke'));
        sentAt = performance.now();
        socket.write('SSH-2.0-fleetward-latency-probe\r\n');
        return;
      }
      // uint32 packet length, byte padding length, then the message type.
      if (received.length < 6) return;
      const roundTripMs = performance.now() - sentAt;
      socket.destroy();
      resolve({ banner, replyMessageType: received[5], roundTripMs });
    });
    socket.on('end', () => fail(new Error(`${address}:${port} closed before answering`)));
    socket.on('error', fail);
  });
}

/** A separate test process (sources via tsx, like vitest) that started a lab and waits. */
async function startChildLab(): Promise<ChildLab> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD_SCRIPT], {
    cwd: REPO_ROOT,
    env: { ...process.env, TSX_TSCONFIG_PATH: join(REPO_ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const info = await new Promise<{ id: string; address: string; netns: string }>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line));
    });
    void exited.then(() => reject(new Error(`child lab exited early: ${stderr}`)));
  });
  return { child, exited, ...info };
}

describeWithLab('lab', () => {
  let lab: Lab;
  let deb: LabHost;
  let rhel: LabHost;
  let suse: LabHost;
  let scratch: string;

  beforeAll(async () => {
    lab = await startLab({
      hosts: [
        { name: 'deb1', flavour: 'debian' },
        { name: 'rhel1', flavour: 'rhel' },
        { name: 'suse1', flavour: 'suse' },
      ],
    });
    console.info(`[lab.test] startLab with 3 hosts took ${lab.startupMs} ms`);
    deb = lab.host('deb1');
    rhel = lab.host('rhel1');
    suse = lab.host('suse1');
    scratch = mkdtempSync(join(tmpdir(), 'fleetward-lab-test-'));
  }, 120_000);

  afterAll(async () => {
    await lab?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  /** ssh with the system client, trusting only `knownHosts`, never asking anything. */
  function ssh(
    host: LabHost,
    login: string,
    command: string,
    options: { knownHosts?: string; port?: number; address?: string } = {},
  ) {
    const creds = host.users[login];
    if (!creds) throw new Error(`no user ${login}`);
    const knownHostsFile = join(scratch, `known_hosts-${host.name}-${Math.random().toString(36).slice(2)}`);
    writeFileSync(knownHostsFile, options.knownHosts ?? host.knownHosts);
    return runCommand('ssh', [
      '-F',
      '/dev/null',
      '-i',
      creds.privateKeyPath,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `UserKnownHostsFile=${knownHostsFile}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=10',
      '-p',
      String(options.port ?? host.port),
      `${login}@${options.address ?? host.address}`,
      command,
    ]);
  }

  it('startLab — three hosts answer on port 22 from the root namespace', async () => {
    expect(lab.hosts.map((h) => [h.name, h.flavour, h.state])).toEqual([
      ['deb1', 'debian', 'running'],
      ['rhel1', 'rhel', 'running'],
      ['suse1', 'suse', 'running'],
    ]);
    const addresses = lab.hosts.map((h) => h.address);
    expect(new Set(addresses).size).toBe(3);
    for (const host of lab.hosts) {
      expect(host.address).toMatch(/^10\.250\.\d{1,3}\.\d{1,3}$/);
      expect(host.port).toBe(22);
      expect(await tcpBanner(host.address, 22)).toMatch(/^SSH-2\.0-OpenSSH_/);
      expect(host.hostKeys.ed25519.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    }
  });

  it('startLab — every host has its own hostname, os-release and boot id', async () => {
    const seen = await Promise.all(
      lab.hosts.map(async (h) => {
        const r = await h.sh('hostname; . /etc/os-release; echo "$ID|$ID_LIKE|$VERSION_ID"');
        expect(r.exitCode).toBe(0);
        return { name: h.name, out: r.stdout.trim().split('\n'), bootId: await h.bootId() };
      }),
    );
    expect(seen[0]?.out).toEqual(['deb1', 'debian||12']);
    expect(seen[1]?.out).toEqual(['rhel1', 'rocky|rhel centos fedora|9.4']);
    expect(seen[2]?.out).toEqual(['suse1', 'sles|suse|15.5']);
    const realBootId = (await runCommand('cat', ['/proc/sys/kernel/random/boot_id'])).stdout.trim();
    const ids = new Set([realBootId, ...seen.map((s) => s.bootId)]);
    expect(ids.size).toBe(4);
    for (const s of seen) expect(s.bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await rhel.readFile('/etc/dnf/vars/releasever')).toBe('9\n');
    expect(await rhel.readFile('/etc/redhat-release')).toMatch(/^Rocky Linux release 9\.4/);
  });

  it('exec — runs inside the host namespaces, not over ssh', async () => {
    const inside = await deb.sh(
      'readlink /proc/self/ns/net; ip -4 -o addr show dev eth0; tr "\\0" " " < /proc/1/cmdline',
    );
    const outsideNet = (await runCommand('readlink', ['/proc/self/ns/net'])).stdout.trim();
    const [net, addr, init] = inside.stdout.trim().split('\n');
    expect(net).not.toBe(outsideNet);
    expect(addr).toContain(`inet ${deb.address}/24`);
    expect(init).toContain('init.sh');
    expect((await deb.exec(['sh', '-c', 'exit 3'])).exitCode).toBe(3);
    expect((await deb.exec(['cat'], { input: 'from stdin' })).stdout).toBe('from stdin');
    const asUser = await deb.exec(['sh', '-c', 'id -un; pwd; echo "$GREETING"'], {
      user: 'labops',
      env: { GREETING: 'hi' },
    });
    expect(asUser.stdout).toBe('labops\n/home/labops\nhi\n');
    expect((await deb.exec(['pwd'], { cwd: '/etc' })).stdout).toBe('/etc\n');
    const killed = await deb.exec(['sleep', '30'], { timeoutMs: 200 });
    expect(killed.signal).toBe('SIGKILL');
  });

  it('writeFile — writes land in the host overlay only', async () => {
    const probe = `/etc/fleetward-lab-probe-${Date.now()}`;
    await deb.writeFile(probe, 'only in deb1\n', { mode: '600' });
    expect(await deb.readFile(probe)).toBe('only in deb1\n');
    expect((await deb.exec(['stat', '-c', '%a', probe])).stdout.trim()).toBe('600');
    expect(existsSync(probe)).toBe(false);
    expect((await rhel.exec(['test', '-e', probe])).exitCode).toBe(1);
    // Deleting a file of the machine's own root only hides it in the host.
    expect((await deb.exec(['rm', '/etc/debian_version'])).exitCode).toBe(0);
    expect((await deb.exec(['test', '-e', '/etc/debian_version'])).exitCode).toBe(1);
    expect(existsSync('/etc/debian_version')).toBe(true);
    expect((await deb.exec(['rm', probe])).exitCode).toBe(0);
    await expect(deb.readFile(probe)).rejects.toThrow(/No such file/);
  });

  it('startLab — hosts reach the machine only at the repository port, and the machine reaches them', async () => {
    const server = createServer((socket) => socket.end('machine\n'));
    await new Promise<void>((resolve) => server.listen(0, lab.gateway, resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const probe = (p: number | string) => `exec 3<>/dev/tcp/${lab.gateway}/${p}`;
      const blocked = await deb.exec(['timeout', '3', 'bash', '-c', probe(port)]);
      expect(blocked.exitCode).not.toBe(0);
      expect(blocked.stderr).toMatch(/Permission denied/);
      const repoPort = new URL(lab.repositories.apt).port;
      expect((await deb.exec(['timeout', '3', 'bash', '-c', probe(repoPort)])).exitCode).toBe(0);
      // Hosts reach each other.
      expect(
        (await deb.exec(['timeout', '3', 'bash', '-c', `exec 3<>/dev/tcp/${rhel.address}/22`])).exitCode,
      ).toBe(0);
      const noRoute = await deb.exec(['timeout', '3', 'bash', '-c', 'exec 3<>/dev/tcp/192.0.2.1/80']);
      expect(noRoute.stderr).toMatch(/Network is unreachable/);
    } finally {
      server.close();
    }
  });

  it('startLab — the debian host has labdemo pending from Debian-Security and labtool from Debian', async () => {
    const r = await deb.exec(['apt-get', '-s', 'dist-upgrade']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('Inst labdemo [1.0-1] (1.1-1 Debian-Security:lab-security [all])');
    expect(r.stdout).toContain('Inst labtool [2.0-1] (2.1-1 Debian:lab-updates [all])');
    expect(r.stdout).toMatch(/^2 upgraded, 0 newly installed/m);
  });

  it('startLab — the rhel host lists LAB-2026:0001 as Critical/Sec.', async () => {
    const r = await rhel.exec(['dnf', 'updateinfo', 'list']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^LAB-2026:0001\s+Critical\/Sec\.\s+labdemo-1\.1-1\.noarch$/m);
    expect(r.stdout).toMatch(/^LAB-2026:0002\s+bugfix\s+labtool-2\.1-1\.noarch$/m);
    expect(r.stdout).toMatch(/^LAB-2026:0003\s+enhancement\s+labextra-1\.0-1\.noarch$/m);
    const check = await rhel.exec(['dnf', '-q', 'check-update']);
    expect(check.exitCode).toBe(100);
    expect(check.stdout).toMatch(/^labplain\.noarch\s+1\.1-1\s+fleetward-lab$/m);
  });

  it('startLab — the suse host lists a needed critical security patch', async () => {
    const r = await suse.exec(['zypper', '--non-interactive', '--xmlout', 'list-patches']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(
      /<update kind="patch" name="LAB-2026:0001"[^>]*status="needed" category="security" severity="critical"/,
    );
    expect(r.stdout).toContain('name="LAB-2026:0002"');
  });

  it('ssh — root and sudo users log in with the system client and the reported host keys', async () => {
    await Promise.all(
      lab.hosts.map(async (host) => {
        const root = await ssh(host, 'root', 'id -u');
        expect(root, host.name).toMatchObject({ code: 0, stdout: '0\n' });
        const ops = await ssh(host, 'labops', 'id -un; sudo -n id -u');
        expect(ops, host.name).toMatchObject({ code: 0, stdout: 'labops\n0\n' });
      }),
    );
    // The reported key is the one sshd serves: a different key is refused.
    const other = lab.host('rhel1').hostKeys.ed25519.publicKey;
    const wrong = await ssh(deb, 'root', 'true', { knownHosts: `${deb.address} ${other}\n` });
    expect(wrong.code).toBe(255);
    expect(wrong.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('ssh — a password user logs in with its password and sudo asks for it', async () => {
    const admin = deb.users['labadmin'];
    expect(admin?.sudo).toBe('password');
    const password = admin?.password ?? '';
    expect(password.length).toBeGreaterThan(8);
    const askpass = join(scratch, 'askpass.sh');
    writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$LAB_PASSWORD"\n', { mode: 0o700 });
    const knownHosts = join(scratch, 'known_hosts-password');
    writeFileSync(knownHosts, deb.knownHosts);
    const r = await runCommand(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-o',
        `UserKnownHostsFile=${knownHosts}`,
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'PreferredAuthentications=password',
        '-o',
        'PubkeyAuthentication=no',
        '-o',
        'NumberOfPasswordPrompts=1',
        `labadmin@${deb.address}`,
        // Generated passwords are base64url: safe inside single quotes.
        `sudo -n true 2>/dev/null && echo no-password-asked; printf '%s\\n' '${password}' | sudo -S -p '' id -u`,
      ],
      {
        env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', LAB_PASSWORD: password, DISPLAY: 'none' },
      },
    );
    expect(r).toMatchObject({ code: 0, stdout: '0\n' });
  });

  it('ssh — sessions cannot reach the machine: no CAP_SYS_ADMIN, no block devices, read-only /proc/sys', async () => {
    const r = await ssh(
      deb,
      'root',
      'grep CapBnd /proc/self/status; ls /dev; mount -t tmpfs none /mnt 2>&1; { echo 1 > /proc/sys/vm/drop_caches; } 2>&1; echo done',
    );
    expect(r.code).toBe(0);
    const capBnd = BigInt(`0x${/CapBnd:\s+([0-9a-f]+)/.exec(r.stdout)?.[1] ?? 'f'}`);
    const CAPS = {
      SYS_MODULE: 16n,
      SYS_RAWIO: 17n,
      SYS_ADMIN: 21n,
      SYS_BOOT: 22n,
      SYS_TIME: 25n,
      MKNOD: 27n,
    };
    for (const [name, bit] of Object.entries(CAPS)) expect(capBnd & (1n << bit), name).toBe(0n);
    expect(r.stdout).not.toMatch(/\b(vd|sd|nvme|loop)\w*\b/);
    expect(r.stdout).toMatch(/mount: .*permission denied|must be superuser/i);
    expect(r.stdout).toMatch(/Read-only file system/);
  });

  it('reboot — `reboot` inside the host gives a new boot id, keeps the disk and brings sshd back', async () => {
    const before = await deb.bootId();
    const boots = deb.bootCount;
    await deb.writeFile('/etc/fleetward-lab-survives-reboot', 'yes\n');
    await deb.writeFile('/run/fleetward-lab-gone-after-reboot', 'no\n');
    const r = await deb.exec(['reboot']);
    expect(r.exitCode).toBe(0);
    await deb.waitForBoot({ previousBootId: before });
    expect(deb.bootCount).toBe(boots + 1);
    const after = await deb.bootId();
    expect(after).not.toBe(before);
    expect(await waitForBanner(deb.address, 22)).toMatch(/^SSH-2\.0-OpenSSH_/);
    expect(await deb.readFile('/etc/fleetward-lab-survives-reboot')).toBe('yes\n');
    expect((await deb.exec(['test', '-e', '/run/fleetward-lab-gone-after-reboot'])).exitCode).toBe(1);
    expect((await ssh(deb, 'root', 'cat /proc/sys/kernel/random/boot_id')).stdout.trim()).toBe(after);
  });

  it('reboot — `shutdown -r now` over ssh ends the session and the host comes back', async () => {
    const before = await rhel.bootId();
    const r = await ssh(rhel, 'labops', 'sudo shutdown -r now');
    expect([0, 255]).toContain(r.code);
    await rhel.waitForBoot({ previousBootId: before });
    expect((await ssh(rhel, 'root', 'true')).code).toBe(0);
  });

  it('reboot(2) — refused to ssh sessions; from the back channel it ends only the host, never the machine', async () => {
    const refused = await ssh(
      suse,
      'root',
      `perl -e 'syscall(${SYS_REBOOT}, 0xfee1dead, 672274793, 0x01234567); print "$!"'`,
    );
    expect(refused.stdout).toBe('Operation not permitted');
    const realBootId = (await runCommand('cat', ['/proc/sys/kernel/random/boot_id'])).stdout.trim();
    const before = await suse.bootId();
    // LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_RESTART
    const r = await suse.exec([
      'perl',
      '-e',
      `syscall(${SYS_REBOOT}, 0xfee1dead, 672274793, 0x01234567); exit 7`,
    ]);
    expect(r.exitCode).not.toBe(7);
    await suse.waitForBoot({ previousBootId: before });
    expect(await suse.bootId()).not.toBe(before);
    expect((await runCommand('cat', ['/proc/sys/kernel/random/boot_id'])).stdout.trim()).toBe(realBootId);
  });

  it('poweroff — the host goes silent and stays down until start()', async () => {
    const r = await suse.exec(['poweroff']);
    expect(r.exitCode).toBe(0);
    await expect.poll(() => suse.state, { timeout: 10_000 }).toBe('off');
    // Silent like a dead server, not refused like a live one without sshd.
    await expect(tcpBanner(suse.address, 22, 1500)).rejects.toThrow(/timeout|EHOSTUNREACH/);
    await expect(suse.exec(['true'])).rejects.toBeInstanceOf(LabHostDownError);
    await expect(suse.waitForBoot({ timeoutMs: 1000 })).rejects.toBeInstanceOf(LabHostDownError);
    await suse.start();
    expect(suse.state).toBe('running');
    expect(await waitForBanner(suse.address, 22)).toMatch(/^SSH-2\.0-/);
  });

  it('cutNetwork — TCP connects fail and repositories are unreachable until restoreNetwork', async () => {
    await deb.cutNetwork();
    await expect(tcpBanner(deb.address, 22, 1000)).rejects.toThrow(/timeout|EHOSTUNREACH/);
    const gateway = new URL(lab.repositories.apt);
    const fetch = `exec 3<>/dev/tcp/${gateway.hostname}/${gateway.port}`;
    expect((await deb.exec(['timeout', '1', 'bash', '-c', fetch])).exitCode).not.toBe(0);
    expect((await deb.exec(['hostname'])).stdout).toBe('deb1\n');
    await deb.restoreNetwork();
    expect(await waitForBanner(deb.address, 22)).toMatch(/^SSH-2\.0-/);
    expect((await deb.exec(['timeout', '3', 'bash', '-c', fetch])).exitCode).toBe(0);
  });

  it('slow — every round trip through the proxy takes at least twice delayMs, and ssh still works', async () => {
    const delayMs = 150;
    const proxy = await deb.slow({ delayMs });
    try {
      expect(proxy.address).toBe(lab.gateway);
      const direct = await sshdRoundTrip(deb.address, deb.port);
      const slowed = await sshdRoundTrip(proxy.address, proxy.port);
      // The same exchange on both paths: the proxy delays bytes, it does not change them.
      expect(slowed.banner).toBe(direct.banner);
      expect(direct.replyMessageType).toBe(SSH_MSG_KEXINIT);
      expect(slowed.replyMessageType).toBe(SSH_MSG_KEXINIT);
      // A lower bound the proxy causes (one delay each way), not a performance limit. The 2 ms
      // allow for timers that count whole milliseconds.
      expect(slowed.roundTripMs).toBeGreaterThanOrEqual(2 * delayMs - 2);
      const knownHosts = deb.knownHosts.replaceAll(deb.address, `[${proxy.address}]:${proxy.port}`);
      const r = await ssh(deb, 'root', 'hostname', { address: proxy.address, port: proxy.port, knownHosts });
      expect(r).toMatchObject({ code: 0, stdout: 'deb1\n' });
    } finally {
      await proxy.close();
    }
  });

  it('killSshd — the port refuses connections until startSshd', async () => {
    await rhel.killSshd();
    await expect(tcpBanner(rhel.address, 22, 1500)).rejects.toThrow(/ECONNREFUSED/);
    await rhel.startSshd();
    await rhel.startSshd();
    expect(await waitForBanner(rhel.address, 22)).toMatch(/^SSH-2\.0-/);
  });

  it('holdPackageLock — apt, dnf and zypper report the lock until it is released', async () => {
    const locks = await Promise.all([deb.holdPackageLock(), rhel.holdPackageLock(), suse.holdPackageLock()]);
    try {
      const [apt, dnf, zypper] = await Promise.all([
        deb.exec(['apt-get', 'install', '-y', 'labdemo']),
        rhel.exec(['dnf', '-y', '--setopt=exit_on_lock=True', 'upgrade', 'labdemo']),
        suse.exec(['zypper', '--non-interactive', 'update', 'labdemo']),
      ]);
      expect(apt.exitCode).not.toBe(0);
      expect(apt.stderr).toMatch(
        /Could not get lock \/var\/lib\/dpkg\/lock-frontend\. It is held by process \d+ \(hold-locks\)/,
      );
      expect(dnf.exitCode).not.toBe(0);
      expect(`${dnf.stdout}${dnf.stderr}`).toMatch(/RPMDB already locked by \d+/);
      expect(zypper.exitCode).toBe(7);
      expect(`${zypper.stdout}${zypper.stderr}`).toMatch(
        /System management is locked by the application with pid \d+/,
      );
    } finally {
      await Promise.all(locks.map((l) => l.release()));
    }
    expect((await deb.exec(['apt-get', '-s', 'install', 'labdemo'])).exitCode).toBe(0);
    expect((await suse.exec(['zypper', '--non-interactive', 'list-updates'])).exitCode).toBe(0);
  });

  it('fillDisk — writes fail with ENOSPC in the host while the real disk is untouched', async () => {
    const freeBefore = statfsSync('/').bavail * statfsSync('/').bsize;
    const fill = await deb.fillDisk();
    try {
      const r = await deb.exec(['cp', '/etc/hostname', '/var/tmp/fleetward-lab-after-fill']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/No space left on device/);
      expect((await deb.sh('df --output=pcent / | tail -1')).stdout.trim()).toBe('100%');
      const freeAfter = statfsSync('/').bavail * statfsSync('/').bsize;
      // The filler is hundreds of MiB; other processes may write a little meanwhile.
      expect(freeBefore - freeAfter).toBeLessThan(64 * 1024 * 1024);
      expect(existsSync('/var/lib/fleetward-lab/disk-filler')).toBe(false);
    } finally {
      await fill.release();
    }
    expect((await deb.exec(['cp', '/etc/hostname', '/var/tmp/fleetward-lab-after-fill'])).exitCode).toBe(0);
  });

  it('publish — new packages and advisories reach the hosts after refreshPackageLists', async () => {
    const labdemo12 = { name: 'labdemo', version: '1.2', release: '1' };
    const published = await lab.publish({
      apt: [
        { suite: 'lab-security', packages: [labdemo12] },
        {
          suite: 'lab-backports',
          origin: 'Debian',
          label: 'Debian Backports',
          packages: [{ name: 'labnew', version: '1.0' }],
        },
      ],
      rpm: {
        packages: [labdemo12],
        advisories: [
          {
            id: 'LAB-2026:0100',
            type: 'security',
            severity: 'Important',
            title: 'Important: labdemo 1.2',
            issued: '2026-02-01',
            packages: [labdemo12],
          },
        ],
      },
      refresh: true,
    });
    expect(published).toBe(lab.published);
    expect(published.apt.suites.map((s) => s.suite)).toEqual([
      'lab-security',
      'lab-updates',
      'lab-backports',
    ]);
    expect(published.rpm.repository.advisories.map((a) => a.id)).toEqual([
      ...LAB_DEFAULT_CONTENT.rpm.repository.advisories.map((a) => a.id),
      'LAB-2026:0100',
    ]);
    const apt = await deb.exec(['apt-get', '-s', 'dist-upgrade']);
    expect(apt.stdout).toContain('Inst labdemo [1.0-1] (1.2-1 Debian-Security:lab-security [all])');
    expect((await deb.exec(['apt-cache', 'policy', 'labnew'])).stdout).toMatch(/Candidate: 1\.0-1/);
    expect((await rhel.exec(['dnf', 'updateinfo', 'list'])).stdout).toMatch(
      /^LAB-2026:0100\s+Important\/Sec\.\s+labdemo-1\.2-1\.noarch$/m,
    );
    expect((await suse.exec(['zypper', '--non-interactive', '--xmlout', 'list-patches'])).stdout).toContain(
      'name="LAB-2026:0100"',
    );
  });

  it('cleanupLabs — removes everything of a lab whose test process was SIGKILLed, and nothing of live labs', async () => {
    const child = await startChildLab();
    expect(await waitForBanner(child.address, 22)).toMatch(/^SSH-2\.0-/);
    const inode = netnsInode(`/run/netns/${child.netns}`);
    expect(processesInNetns([inode]).length).toBeGreaterThan(0);
    expect(kernelTraces(child.id).netns).toHaveLength(1);

    child.child.kill('SIGKILL');
    await child.exited;
    // The hosts die with their owner (parent-death signal); namespaces and links stay behind.
    await expect.poll(() => processesInNetns([inode]), { timeout: 10_000 }).toEqual([]);
    expect(kernelTraces(child.id).netns).toHaveLength(1);

    const report = await cleanupLabs();
    expect(report.labs).toContain(child.id);
    expect(kernelTraces(child.id)).toEqual({ netns: [], links: [], mounts: [], ps: [] });
    expect(markedProcesses(child.id)).toEqual([]);
    expect(existsSync(`/run/fleetward-lab/labs/${child.id}`)).toBe(false);
    // This file's lab is alive and was left alone.
    expect(report.labs).not.toContain(lab.id);
    expect(await tcpBanner(deb.address, 22)).toMatch(/^SSH-2\.0-/);
  }, 60_000);

  it('startLab — a SIGTERMed test process removes its lab on the way out', async () => {
    const child = await startChildLab();
    const inode = netnsInode(`/run/netns/${child.netns}`);
    child.child.kill('SIGTERM');
    // The handler tears down, then re-raises so the process still ends by SIGTERM.
    expect(await child.exited).toBe('SIGTERM');
    expect(kernelTraces(child.id)).toEqual({ netns: [], links: [], mounts: [], ps: [] });
    expect(processesInNetns([inode])).toEqual([]);
    expect(markedProcesses(child.id)).toEqual([]);
    expect(existsSync(`/run/fleetward-lab/labs/${child.id}`)).toBe(false);
  }, 60_000);

  it('stop — leaves no namespace, link, mount, process or state dir behind', async () => {
    const inodes = lab.hosts.map((h) => netnsInode(`/run/netns/fwlab-${lab.id}-${h.name}`));
    const before = kernelTraces(lab.id);
    expect(before.netns).toHaveLength(3);
    expect(before.links.length).toBeGreaterThanOrEqual(4);
    expect(before.ps.length).toBeGreaterThan(0);
    expect(markedProcesses(lab.id).length).toBeGreaterThan(0);

    await lab.stop();
    await lab.stop();
    expect(kernelTraces(lab.id)).toEqual({ netns: [], links: [], mounts: [], ps: [] });
    expect(processesInNetns(inodes)).toEqual([]);
    expect(markedProcesses(lab.id)).toEqual([]);
    expect(existsSync(`/run/fleetward-lab/labs/${lab.id}`)).toBe(false);
    expect(lab.hosts.every((h) => h.state === 'stopped')).toBe(true);
    await expect(deb.exec(['true'])).rejects.toBeInstanceOf(LabHostDownError);
    await expect(tcpBanner(deb.address, 22, 1000)).rejects.toThrow();
  });
});
