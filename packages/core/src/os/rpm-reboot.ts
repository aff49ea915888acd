/**
 * What the RPM drivers (dnf/yum and zypper) share: RPM version comparison, the installed-package
 * list both scan scripts print, the `@@fleetward:` section reader, and the reboot inference from
 * kernel install times.
 */
import { ParseError } from '../errors.js';
import type { CommandOutput } from './driver.js';

/** An RPM epoch-version-release. */
export interface Evr {
  epoch: number;
  version: string;
  release: string;
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isAlpha = (c: string | undefined) =>
  c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
const isAlnum = (c: string | undefined) => isDigit(c) || isAlpha(c);

/**
 * Compares two RPM version (or release) strings exactly as rpm's `rpmvercmp` does: alternating
 * numeric and alphabetic segments, numeric beats alphabetic, `~` sorts before anything (even the
 * end) and `^` after the end but before anything else.
 * @returns -1, 0 or 1.
 */
export function rpmvercmp(a: string, b: string): -1 | 0 | 1 {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while (i < a.length && !isAlnum(a[i]) && a[i] !== '~' && a[i] !== '^') i++;
    while (j < b.length && !isAlnum(b[j]) && b[j] !== '~' && b[j] !== '^') j++;
    if (a[i] === '~' || b[j] === '~') {
      if (a[i] !== '~') return 1;
      if (b[j] !== '~') return -1;
      i++;
      j++;
      continue;
    }
    if (a[i] === '^' || b[j] === '^') {
      if (i >= a.length) return -1;
      if (j >= b.length) return 1;
      if (a[i] !== '^') return 1;
      if (b[j] !== '^') return -1;
      i++;
      j++;
      continue;
    }
    if (i >= a.length || j >= b.length) break;
    const numeric = isDigit(a[i]);
    const inSegment = numeric ? isDigit : isAlpha;
    let ie = i;
    let je = j;
    while (ie < a.length && inSegment(a[ie])) ie++;
    while (je < b.length && inSegment(b[je])) je++;
    // The other side has a segment of the other kind here: a number is newer than letters.
    if (je === j) return numeric ? 1 : -1;
    let sa = a.slice(i, ie);
    let sb = b.slice(j, je);
    if (numeric) {
      sa = sa.replace(/^0+/, '');
      sb = sb.replace(/^0+/, '');
      if (sa.length !== sb.length) return sa.length > sb.length ? 1 : -1;
    }
    if (sa !== sb) return sa < sb ? -1 : 1;
    i = ie;
    j = je;
  }
  if (i >= a.length && j >= b.length) return 0;
  return i >= a.length ? -1 : 1;
}

/** Compares two EVRs the way rpm orders packages: epoch, then version, then release. */
export function compareEvr(a: Evr, b: Evr): -1 | 0 | 1 {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  return rpmvercmp(a.version, b.version) || rpmvercmp(a.release, b.release);
}

/** `version-release`, prefixed by `epoch:` only when the epoch is not 0 (as dnf and zypper print it). */
export function formatEvr(evr: Evr): string {
  return `${evr.epoch !== 0 ? `${evr.epoch}:` : ''}${evr.version}-${evr.release}`;
}

/** Parses `[epoch:]version-release`; `null` when the text is not in that form. */
export function parseEvr(text: string): Evr | null {
  const m = /^(?:(\d+):)?([^\s:-]+)-([^\s:-]+)$/.exec(text);
  if (!m) return null;
  const epoch = m[1] === undefined ? 0 : Number(m[1]);
  // rpm's epoch is a 32-bit number: more digits than a double holds exactly is not an epoch.
  if (!Number.isSafeInteger(epoch)) return null;
  return { epoch, version: m[2]!, release: m[3]! };
}

/** One line of the installed-package list of the scan scripts (`rpm -qa` with {@link RPM_QA_FORMAT}). */
export interface InstalledRpm extends Evr {
  name: string;
  arch: string;
  /** Seconds since the epoch. */
  installTime: number;
}

/**
 * The `rpm -qa --qf` format of the scan scripts. EPOCHNUM prints 0 where EPOCH would print
 * `(none)`; gpg-pubkey entries print the arch `(none)` and are skipped by the parser.
 */
export const RPM_QA_FORMAT = '%{NAME}|%{EPOCHNUM}|%{VERSION}|%{RELEASE}|%{ARCH}|%{INSTALLTIME}\\n';

const INSTALLED_LINE = /^([^|\s]+)\|(\d+)\|([^|\s]+)\|([^|\s]+)\|([^|\s]+)\|(\d+)$/;

/**
 * Parses the lines of `rpm -qa --qf` in {@link RPM_QA_FORMAT}.
 * @throws ParseError on a line not in that format: rpm prints nothing else on stdout.
 */
export function parseInstalledRpms(lines: readonly string[]): InstalledRpm[] {
  const out: InstalledRpm[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    const m = INSTALLED_LINE.exec(line);
    if (!m) throw new ParseError(`Unrecognized line in the installed package list: ${line.slice(0, 200)}`);
    if (m[1] === 'gpg-pubkey' || m[5] === '(none)') continue;
    const epoch = Number(m[2]);
    const installTime = Number(m[6]);
    if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(installTime)) {
      throw new ParseError(
        `Out-of-range epoch or install time in the installed package list: ${line.slice(0, 200)}`,
      );
    }
    out.push({ name: m[1]!, epoch, version: m[3]!, release: m[4]!, arch: m[5]!, installTime });
  }
  return out;
}

/** The body and marker argument of one section of a scan script's output. */
export interface Section {
  arg: string;
  lines: string[];
}

const MARKER_LINE = /^@@fleetward:([a-z][a-z-]*)(?: (.*))?$/;

/**
 * Splits a scan script's stdout at its `@@fleetward:` marker lines and checks that every marker came,
 * in order; its stderr, which the scripts mark before each tool's run, is split at the same names.
 * Lines before the first marker (a login banner, sudo's lecture) and after `end` are not ours.
 * @throws ParseError when a marker is unknown, missing or out of order.
 */
export function readSections<M extends string>(
  output: CommandOutput,
  markers: readonly M[],
  tool: string,
): { stdout: Map<M, Section>; stderr: Map<M, string[]> } {
  const known = new Set<string>(markers);
  const stdout = new Map<M, Section>();
  const seen: string[] = [];
  let current: Section | undefined;
  for (const line of output.stdout.split('\n')) {
    if (seen.at(-1) === 'end') break;
    const m = MARKER_LINE.exec(line);
    if (m) {
      if (!known.has(m[1]!)) throw new ParseError(`Unknown marker in ${tool} scan output: ${line}`);
      seen.push(m[1]!);
      current = { arg: m[2] ?? '', lines: [] };
      stdout.set(m[1] as M, current);
      continue;
    }
    current?.lines.push(line);
  }
  if (seen.join(' ') !== markers.join(' ')) {
    throw new ParseError(`${tool} scan output does not have the expected @@fleetward markers`, {
      details: { expected: markers, found: seen, excerpt: output.stdout.slice(0, 500) },
    });
  }
  const stderr = new Map<M, string[]>();
  let errLines: string[] | undefined;
  for (const line of output.stderr.split('\n')) {
    const m = MARKER_LINE.exec(line);
    if (m && known.has(m[1]!)) {
      errLines = [];
      stderr.set(m[1] as M, errLines);
      continue;
    }
    if (errLines && line.trim() !== '') errLines.push(line);
  }
  return { stdout, stderr };
}

/** The exit status a `…-exit N` marker carries. */
export function sectionExit<M extends string>(sections: Map<M, Section>, marker: M, tool: string): number {
  const arg = sections.get(marker)?.arg ?? '';
  if (!/^\d+$/.test(arg)) throw new ParseError(`${tool} scan marker ${marker} has no exit status: "${arg}"`);
  return Number(arg);
}

/** The single number a section holds (the boot time), or `null` when it is empty or not a number. */
export function sectionNumber(section: Section | undefined): number | null {
  const text = (section?.lines ?? []).join('\n').trim();
  return /^\d+$/.test(text) ? Number(text) : null;
}

/**
 * Kernel packages whose install after boot means the running kernel is not the newest: RHEL's
 * `kernel` and `kernel-core`, Oracle's UEK, real-time, 64k-page and debug builds, SUSE's flavours.
 * `kernel-devel`, `kernel-headers`, `kernel-tools` and firmware are not kernels.
 */
const KERNEL_PACKAGE =
  /^kernel(?:-(?:uek|rt|64k|debug|default|azure|preempt|lpae|zfcpdump|aws|ml|lt|kvmsmall))?(?:-(?:core|base))?$/;

/** Whether a package name is one of the kernel packages the reboot inference looks at. */
export function isKernelPackage(name: string): boolean {
  return KERNEL_PACKAGE.test(name);
}

/** What a scan learned about rebooting. */
export interface RebootInference {
  rebootRequired: boolean;
  rebootPackages: string[];
  warnings: string[];
}

/**
 * Infers a pending reboot from the installed kernels when the package manager's own tool could not
 * answer: a kernel package installed after boot (`btime` of /proc/stat) means the running kernel is
 * older than one on disk.
 *
 * `runningKernel` (`uname -r`) is compared only when `compareRunning` is set (RHEL names kernels
 * `version-release.arch` exactly like `uname -r`; SUSE does not). A mismatch alone is a warning, not
 * a pending reboot: when the newest kernel was installed before this boot and is still not running,
 * the boot loader chose another one, a reboot would not change that, and the flag would never clear.
 */
export function inferKernelReboot(
  installed: readonly InstalledRpm[],
  bootTime: number | null,
  runningKernel: string | null,
  options: { compareRunning: boolean },
): RebootInference {
  const kernels = installed.filter((p) => isKernelPackage(p.name));
  const warnings: string[] = [];
  if (kernels.length === 0) return { rebootRequired: false, rebootPackages: [], warnings };
  if (bootTime === null) {
    warnings.push(
      'boot time is unknown (no btime in /proc/stat): a pending kernel reboot cannot be inferred',
    );
    return { rebootRequired: false, rebootPackages: [], warnings };
  }
  const after = kernels.filter((k) => k.installTime > bootTime);
  const rebootPackages = [...new Set(after.map((k) => k.name))].sort();
  if (after.length > 0) return { rebootRequired: true, rebootPackages, warnings };
  if (options.compareRunning && runningKernel) {
    const label = (k: InstalledRpm) => `${k.version}-${k.release}.${k.arch}`;
    // A running kernel that no package owns (a container on another distribution's kernel) says
    // nothing about this host's packages.
    if (kernels.some((k) => label(k) === runningKernel)) {
      const newest = kernels.reduce((a, b) => (compareEvr(b, a) > 0 ? b : a));
      if (label(newest) !== runningKernel) {
        warnings.push(
          `the running kernel ${runningKernel} is not the newest installed kernel ${label(newest)}, ` +
            'which was installed before this boot: check the boot loader default',
        );
      }
    }
  }
  return { rebootRequired: false, rebootPackages: [], warnings };
}
