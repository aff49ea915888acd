import { readFileSync } from 'node:fs';
import { findBinary } from './system.js';
import { LAB_FLAVOURS, type LabFlavour } from './types.js';

interface Requirement {
  binary: string;
  /** Debian package that provides it. */
  package: string;
  /** Flavours that need it; absent = every lab. */
  flavours?: readonly LabFlavour[];
}

const REQUIREMENTS: readonly Requirement[] = [
  { binary: 'ip', package: 'iproute2' },
  { binary: 'unshare', package: 'util-linux' },
  { binary: 'nsenter', package: 'util-linux' },
  { binary: 'setpriv', package: 'util-linux' },
  { binary: 'mount', package: 'mount' },
  { binary: 'umount', package: 'mount' },
  { binary: 'pivot_root', package: 'util-linux' },
  { binary: '/usr/sbin/sshd', package: 'openssh-server' },
  { binary: 'ssh-keygen', package: 'openssh-client' },
  { binary: '/usr/bin/python3', package: 'python3' },
  { binary: 'useradd', package: 'passwd' },
  { binary: 'chpasswd', package: 'passwd' },
  { binary: 'sudo', package: 'sudo' },
  { binary: 'dpkg-deb', package: 'dpkg', flavours: ['debian'] },
  { binary: 'dpkg', package: 'dpkg', flavours: ['debian'] },
  { binary: 'apt-get', package: 'apt', flavours: ['debian'] },
  { binary: 'rpm', package: 'rpm', flavours: ['rhel', 'suse'] },
  { binary: 'rpmbuild', package: 'rpm', flavours: ['rhel', 'suse'] },
  { binary: 'createrepo_c', package: 'createrepo-c', flavours: ['rhel', 'suse'] },
  { binary: 'modifyrepo_c', package: 'createrepo-c', flavours: ['rhel', 'suse'] },
  { binary: 'dnf', package: 'dnf', flavours: ['rhel'] },
  { binary: 'zypper', package: 'zypper', flavours: ['suse'] },
];

/**
 * What this machine lacks to run a lab, one human-readable item each; empty when a lab can
 * start. Checks: Linux, root, overlayfs, and the binaries the lab and its flavours use
 * (iproute2, util-linux, OpenSSH, python3, sudo, dpkg/apt for debian hosts, rpm and
 * createrepo-c for rhel/suse hosts, dnf, zypper).
 *
 * @param options.flavours only check what these flavours need. @default every flavour
 */
export function labPrerequisites(options: { flavours?: readonly LabFlavour[] } = {}): string[] {
  const flavours = options.flavours ?? LAB_FLAVOURS;
  if (process.platform !== 'linux') return [`the lab needs Linux (this is ${process.platform})`];
  const missing: string[] = [];
  const uid = process.getuid?.();
  if (uid !== 0)
    missing.push(`not running as root (uid ${uid ?? 'unknown'}); the lab creates namespaces and mounts`);
  if (!overlaySupported()) missing.push('no overlayfs in /proc/filesystems (try `modprobe overlay`)');
  const reported = new Set<string>();
  for (const req of REQUIREMENTS) {
    if (req.flavours && !req.flavours.some((f) => flavours.includes(f))) continue;
    if (findBinary(req.binary) !== undefined || reported.has(req.binary)) continue;
    reported.add(req.binary);
    missing.push(`missing ${req.binary} (Debian package ${req.package})`);
  }
  return missing;
}

function overlaySupported(): boolean {
  try {
    return /\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'));
  } catch {
    return false;
  }
}
