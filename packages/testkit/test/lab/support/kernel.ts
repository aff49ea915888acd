/**
 * The machine's own view of lab resources, read with the system tools and /proc rather than
 * the lab's code, so leftover checks do not trust what they check.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function tool(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', env: { PATH } });
}

/** Lines of `ip netns`, `ip link`, `mount` and `ps` that name one of the lab's resources. */
export function kernelTraces(labId: string): {
  netns: string[];
  links: string[];
  mounts: string[];
  ps: string[];
} {
  const marks = [`fwlab-${labId}`, `fwb${labId}`, `fwv${labId}`, `labs/${labId}`];
  const mentions = (text: string) => text.split('\n').filter((line) => marks.some((m) => line.includes(m)));
  return {
    netns: mentions(tool('ip', ['netns', 'list'])),
    links: mentions(tool('ip', ['-o', 'link', 'show'])),
    mounts: mentions(tool('mount', [])),
    ps: mentions(tool('ps', ['-eo', 'pid,args'])).filter((line) => !line.includes(' ps -eo')),
  };
}

/** Inode of a network namespace file, e.g. `/run/netns/fwlab-...`. */
export function netnsInode(path: string): string {
  return tool('stat', ['-L', '-c', '%i', path]).trim();
}

/** Pids of processes whose network namespace is one of `inodes`. */
export function processesInNetns(inodes: readonly string[]): number[] {
  const wanted = new Set(inodes.map((i) => `net:[${i}]`));
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (wanted.has(readlinkSync(`/proc/${entry}/ns/net`))) pids.push(Number(entry));
    } catch {
      // Gone, or a kernel thread.
    }
  }
  return pids;
}

/** Pids of processes whose environment carries FLEETWARD_LAB_ID=<labId>. */
export function markedProcesses(labId: string): number[] {
  const marker = `FLEETWARD_LAB_ID=${labId}`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(marker))
        pids.push(Number(entry));
    } catch {
      // Gone.
    }
  }
  return pids;
}

/** The first line a TCP server sends (sshd's banner), or the connection error. */
export function tcpBanner(address: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timeout connecting to ${address}:${port}`));
    }, timeoutMs);
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      const line = data.split('\r\n')[0];
      if (data.includes('\r\n') && line !== undefined) {
        clearTimeout(timer);
        socket.destroy();
        resolve(line);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

/** Retries `tcpBanner` until it succeeds or `totalMs` passes. */
export async function waitForBanner(address: string, port: number, totalMs = 10_000): Promise<string> {
  const deadline = Date.now() + totalMs;
  for (;;) {
    try {
      return await tcpBanner(address, port, 1000);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a system command (async: the lab's repository server lives in this process). */
export function runCommand(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { PATH, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    // A command that does not read its stdin closes the pipe early; that is not an error here.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}
