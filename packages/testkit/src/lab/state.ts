/**
 * Where labs keep their state, how their resources are named, and how leftovers of dead labs
 * are found and removed. A lab's state dir exists before its first resource and goes after
 * its last, so "state dir present and owner alive" is what makes a lab live; every netns,
 * link, process or claim of another lab id is a leftover.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  allPids,
  binary,
  isProcessAlive,
  LAB_MARKER_ENV,
  processEnv,
  processStartTime,
  runSync,
  sleepSync,
} from './system.js';

/** Root of everything labs keep on the machine (mode 0700: it holds private keys). */
export const LAB_RUN_DIR = '/run/fleetward-lab';
const LABS_DIR = join(LAB_RUN_DIR, 'labs');
const SUBNETS_DIR = join(LAB_RUN_DIR, 'subnets');
/** Content-addressed builds of packages and repositories, shared by all labs and runs. */
export const LAB_CACHE_DIR = join(LAB_RUN_DIR, 'cache');

const LAB_ID = /^[0-9a-f]{6}$/;

export function labDir(id: string): string {
  return join(LABS_DIR, id);
}

export function netnsName(id: string, host: string): string {
  return `fwlab-${id}-${host}`;
}

export function bridgeName(id: string): string {
  return `fwb${id}`;
}

/** Root-side end of host `index`'s veth; 11 characters, under IFNAMSIZ. */
export function vethName(id: string, index: number): string {
  return `fwv${id}${index.toString(16).padStart(2, '0')}`;
}

/** Written once, before the lab creates anything. */
export interface LabOwnerRecord {
  id: string;
  pid: number;
  startTime: string;
  createdAt: string;
}

export function ensureRunDir(): void {
  mkdirSync(LAB_RUN_DIR, { recursive: true, mode: 0o700 });
  for (const dir of [LABS_DIR, SUBNETS_DIR, LAB_CACHE_DIR]) mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Creates the state dir of a new lab with its owner record, atomically (a concurrent cleanup
 * must never see the dir without its owner and take the lab for dead).
 */
export function createLabDir(): LabOwnerRecord {
  ensureRunDir();
  for (;;) {
    const id = randomBytes(3).toString('hex');
    const record: LabOwnerRecord = {
      id,
      pid: process.pid,
      startTime: processStartTime(process.pid) ?? '',
      createdAt: new Date().toISOString(),
    };
    const staging = join(LABS_DIR, `.new-${id}-${process.pid}`);
    mkdirSync(staging, { mode: 0o700 });
    writeFileSync(join(staging, 'owner.json'), `${JSON.stringify(record, null, 2)}\n`);
    try {
      renameSync(staging, labDir(id));
      return record;
    } catch {
      rmSync(staging, { recursive: true, force: true });
    }
  }
}

function readOwner(id: string): LabOwnerRecord | undefined {
  try {
    return JSON.parse(readFileSync(join(labDir(id), 'owner.json'), 'utf8')) as LabOwnerRecord;
  } catch {
    return undefined;
  }
}

/** Whether the lab's state dir exists and its owner process is still the one that made it. */
export function isLabLive(id: string): boolean {
  const owner = readOwner(id);
  return owner !== undefined && isProcessAlive(owner.pid, owner.startTime);
}

/** Ids of the labs that are live now. */
export function liveLabIds(): Set<string> {
  return new Set(stateDirIds().filter(isLabLive));
}

/** Staging dirs of `createLabDir` whose creator died between mkdir and rename. */
function removeStaleStaging(): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(LABS_DIR);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = /^\.new-[0-9a-f]{6}-(\d+)$/.exec(entry)?.[1];
    if (pid !== undefined && !isProcessAlive(Number(pid)))
      rmSync(join(LABS_DIR, entry), { recursive: true, force: true });
  }
}

function stateDirIds(): string[] {
  try {
    return readdirSync(LABS_DIR).filter((e) => LAB_ID.test(e));
  } catch {
    return [];
  }
}

/**
 * Claims the lowest free `10.250.<n>.0/24` for a lab: a claim file per subnet (created with
 * O_EXCL, so two labs never pick the same one) and a check that no interface or route on the
 * machine already uses it.
 */
export function claimSubnet(id: string): number {
  ensureRunDir();
  const used = runSync(binary('ip'), ['-4', '-o', 'route', 'show', 'table', 'all']).stdout;
  const addresses = runSync(binary('ip'), ['-4', '-o', 'addr', 'show']).stdout;
  for (let n = 1; n <= 254; n++) {
    const prefix = `10.250.${n}.`;
    if (used.includes(prefix) || addresses.includes(prefix)) continue;
    try {
      writeFileSync(join(SUBNETS_DIR, String(n)), id, { flag: 'wx', mode: 0o600 });
      return n;
    } catch {
      // Claimed by another lab.
    }
  }
  throw new Error('no free subnet in 10.250.0.0/16: run `fleetward-lab cleanup`');
}

function claims(): { n: string; id: string }[] {
  try {
    return readdirSync(SUBNETS_DIR).map((n) => ({ n, id: safeRead(join(SUBNETS_DIR, n)).trim() }));
  } catch {
    return [];
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Everything of one or more labs that is still on the machine. */
export interface LabLeftovers {
  /** Named network namespaces `fwlab-<id>-<host>`. */
  netns: string[];
  /** Bridges `fwb<id>` and veths `fwv<id>NN`. */
  links: string[];
  /** Processes marked with the lab id, or living in one of its network namespaces. */
  processes: number[];
  /** Mount points of the machine's mount namespace under a lab's state dir. */
  mounts: string[];
  /** State dirs `/run/fleetward-lab/labs/<id>`. */
  stateDirs: string[];
  /** Subnet claims `/run/fleetward-lab/subnets/<n>`. */
  claims: string[];
}

/**
 * What is left on the machine of the labs `select` accepts (by lab id). Reads the kernel's
 * view directly (`ip netns`, `ip link`, /proc, /proc/self/mountinfo), not the lab's records.
 */
export function findLeftovers(select: (id: string) => boolean): LabLeftovers {
  const ip = binary('ip');
  const netns = runSync(ip, ['netns', 'list'])
    .stdout.split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => {
      const m = /^fwlab-([0-9a-f]{6})-/.exec(name);
      return m !== null && select(m[1] ?? '');
    });
  const links = runSync(ip, ['-o', 'link', 'show'])
    .stdout.split('\n')
    .map((line) => /^\d+:\s+([^:@\s]+)/.exec(line)?.[1] ?? '')
    .filter((name) => {
      const m = /^fw[bv]([0-9a-f]{6})/.exec(name);
      return m !== null && select(m[1] ?? '');
    });
  const processes = new Set<number>();
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    const id = processEnv(pid, LAB_MARKER_ENV);
    if (id !== undefined && select(id)) processes.add(pid);
  }
  for (const name of netns) {
    for (const pid of runSync(ip, ['netns', 'pids', name]).stdout.split(/\s+/).filter(Boolean)) {
      processes.add(Number(pid));
    }
  }
  const mounts = safeRead('/proc/self/mountinfo')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => {
      const m = /^\/run\/fleetward-lab\/labs\/([0-9a-f]{6})(\/|$)/.exec(point);
      return m !== null && select(m[1] ?? '');
    });
  const stateDirs = stateDirIds()
    .filter(select)
    .map((id) => labDir(id));
  const claimFiles = claims()
    .filter((c) => select(c.id))
    .map((c) => join(SUBNETS_DIR, c.n));
  return { netns, links, processes: [...processes], mounts, stateDirs, claims: claimFiles };
}

/** True when nothing is left. */
export function isClean(leftovers: LabLeftovers): boolean {
  return Object.values(leftovers).every((list: unknown[]) => list.length === 0);
}

/**
 * Removes the leftovers: kills processes first (a netns or mount is only gone once nobody
 * uses it), then links, namespaces, mounts, state dirs and claims. Synchronous so that exit
 * handlers can use it.
 */
export function removeLeftovers(leftovers: LabLeftovers): void {
  const ip = binary('ip');
  for (const pid of leftovers.processes) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + 3000;
  while (leftovers.processes.some((pid) => processStartTime(pid) !== undefined && !isZombie(pid))) {
    if (Date.now() > deadline) break;
    sleepSync(20);
  }
  for (const link of leftovers.links.filter((l) => l.startsWith('fwv'))) runSync(ip, ['link', 'del', link]);
  for (const link of leftovers.links.filter((l) => !l.startsWith('fwv'))) runSync(ip, ['link', 'del', link]);
  for (const name of leftovers.netns) runSync(ip, ['netns', 'del', name]);
  for (const point of [...leftovers.mounts].reverse()) runSync(binary('umount'), ['-l', point]);
  for (const dir of leftovers.stateDirs) rmSync(dir, { recursive: true, force: true });
  for (const file of leftovers.claims) rmSync(file, { force: true });
}

function isZombie(pid: number): boolean {
  const stat = safeRead(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

/** What `cleanupLabs` removed. */
export interface LabCleanupReport extends LabLeftovers {
  /** Ids of the labs it tore down. */
  labs: string[];
}

/**
 * Removes every leftover of labs whose owner process is dead (killed test runs, crashed
 * workers): processes, network namespaces, veths and bridges, mounts, state dirs and subnet
 * claims. With `all: true` it also tears down labs that are still running. `startLab` calls
 * it (without `all`) before it starts; the `fleetward-lab cleanup` command calls it too.
 * Safe to run concurrently with live labs: they are left alone.
 */
export async function cleanupLabs(options: { all?: boolean } = {}): Promise<LabCleanupReport> {
  return cleanupLabsSync(options);
}

/** Synchronous {@link cleanupLabs}. */
export function cleanupLabsSync(options: { all?: boolean } = {}): LabCleanupReport {
  // Judged per resource, when it is seen: a lab that starts during the scan made its state
  // dir before any resource, so its resources always look live. A snapshot of live ids taken
  // first would miss it and tear down a lab that just started.
  const verdicts = new Map<string, boolean>();
  const dead = (id: string) => {
    if (options.all) return true;
    const known = verdicts.get(id);
    if (known === false) return false;
    const verdict = !isLabLive(id);
    if (!verdict) verdicts.set(id, false);
    return verdict;
  };
  removeStaleStaging();
  const leftovers = findLeftovers(dead);
  removeLeftovers(leftovers);
  const labs = new Set<string>();
  const idOf = (text: string) => /(?:fwlab-|fw[bv]|labs\/)([0-9a-f]{6})/.exec(text)?.[1];
  for (const item of [...leftovers.netns, ...leftovers.links, ...leftovers.stateDirs]) {
    const id = idOf(item);
    if (id) labs.add(id);
  }
  return { labs: [...labs].sort(), ...leftovers };
}
