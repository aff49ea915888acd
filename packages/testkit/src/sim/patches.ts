import type { OsFacts, PatchCategory, PendingPatch, Severity } from '@fleetward/core';
import { type Random, sample, weighted } from './random.js';

type Flavour = 'debian' | 'ubuntu' | 'rhel' | 'suse';

interface OsRelease {
  flavour: Flavour;
  facts: OsFacts;
  /** Archive names of the distribution's security and ordinary updates. */
  archives: { security: string; updates: string };
}

const release = (
  flavour: Flavour,
  facts: Omit<OsFacts, 'arch'>,
  archives: OsRelease['archives'],
): OsRelease => ({ flavour, facts: { ...facts, arch: 'x86_64' }, archives });

/** OS releases of a simulated fleet with their share of it: mostly Debian and Ubuntu, some RHEL-likes, a little SLES. */
const RELEASES: readonly (readonly [OsRelease, number])[] = [
  [
    release(
      'debian',
      {
        family: 'debian',
        id: 'debian',
        versionId: '12',
        prettyName: 'Debian GNU/Linux 12 (bookworm)',
        packageManager: 'apt',
        kernel: '6.1.0-28-amd64',
      },
      { security: 'bookworm-security', updates: 'bookworm' },
    ),
    30,
  ],
  [
    release(
      'ubuntu',
      {
        family: 'debian',
        id: 'ubuntu',
        versionId: '22.04',
        prettyName: 'Ubuntu 22.04.5 LTS',
        packageManager: 'apt',
        kernel: '5.15.0-126-generic',
      },
      { security: 'jammy-security', updates: 'jammy-updates' },
    ),
    25,
  ],
  [
    release(
      'ubuntu',
      {
        family: 'debian',
        id: 'ubuntu',
        versionId: '24.04',
        prettyName: 'Ubuntu 24.04.1 LTS',
        packageManager: 'apt',
        kernel: '6.8.0-49-generic',
      },
      { security: 'noble-security', updates: 'noble-updates' },
    ),
    15,
  ],
  [
    release(
      'rhel',
      {
        family: 'rhel',
        id: 'rocky',
        versionId: '9.4',
        prettyName: 'Rocky Linux 9.4 (Blue Onyx)',
        packageManager: 'dnf',
        kernel: '5.14.0-427.42.1.el9_4.x86_64',
      },
      { security: 'baseos', updates: 'appstream' },
    ),
    15,
  ],
  [
    release(
      'rhel',
      {
        family: 'rhel',
        id: 'rhel',
        versionId: '8.10',
        prettyName: 'Red Hat Enterprise Linux 8.10 (Ootpa)',
        packageManager: 'dnf',
        kernel: '4.18.0-553.27.1.el8_10.x86_64',
      },
      { security: 'rhel-8-for-x86_64-baseos-rpms', updates: 'rhel-8-for-x86_64-appstream-rpms' },
    ),
    10,
  ],
  [
    release(
      'suse',
      {
        family: 'suse',
        id: 'sles',
        versionId: '15.6',
        prettyName: 'SUSE Linux Enterprise Server 15 SP6',
        packageManager: 'zypper',
        kernel: '6.4.0-150600.23.25-default',
      },
      {
        security: 'SLE-Module-Basesystem15-SP6-Updates',
        updates: 'SLE-Module-Server-Applications15-SP6-Updates',
      },
    ),
    5,
  ],
];

const DEB_PACKAGES = [
  'openssl',
  'libssl3',
  'curl',
  'libcurl4',
  'openssh-server',
  'openssh-client',
  'sudo',
  'bash',
  'tzdata',
  'libc6',
  'libsystemd0',
  'systemd',
  'python3.11',
  'libxml2',
  'libexpat1',
  'git',
  'nginx',
  'rsync',
  'vim',
  'wget',
  'gnupg',
  'libgnutls30',
  'zlib1g',
  'linux-image-amd64',
  'ca-certificates',
  'libpam-modules',
  'less',
  'bind9-host',
  'libsqlite3-0',
  'postgresql-15',
] as const;

const RPM_PACKAGES = [
  'openssl',
  'openssl-libs',
  'curl',
  'libcurl',
  'openssh-server',
  'openssh-clients',
  'sudo',
  'bash',
  'tzdata',
  'glibc',
  'glibc-common',
  'systemd',
  'systemd-libs',
  'python3',
  'python3-libs',
  'libxml2',
  'expat',
  'git',
  'nginx',
  'rsync',
  'vim-minimal',
  'wget',
  'gnupg2',
  'gnutls',
  'zlib',
  'kernel',
  'kernel-core',
  'ca-certificates',
  'pam',
  'sqlite-libs',
] as const;

/** Packages whose update needs a reboot to take effect. */
const REBOOT_PACKAGES = new Set(['linux-image-amd64', 'kernel', 'kernel-core', 'libc6', 'glibc', 'systemd']);

const SECURITY_SEVERITIES: readonly (readonly [Severity, number])[] = [
  ['critical', 10],
  ['important', 35],
  ['moderate', 40],
  ['low', 15],
];

/** How a simulated server's pending patches are drawn. */
export interface PatchDistribution {
  /** Most patches pending on one server. */
  max: number;
  /** Share of servers with nothing pending. */
  noneShare: number;
  /** Share of pending patches that are security updates. */
  securityShare: number;
}

/** What a simulated server is when the fleet is created. */
export interface InitialServerState {
  os: OsFacts;
  patches: PendingPatch[];
  rebootRequired: boolean;
}

function version(random: Random, flavour: Flavour): { installed: string; candidate: string } {
  const major = 1 + Math.floor(random() * 9);
  const minor = Math.floor(random() * 20);
  const patch = Math.floor(random() * 30);
  const build = 1 + Math.floor(random() * 8);
  const base = `${major}.${minor}.${patch}`;
  switch (flavour) {
    case 'debian':
      return { installed: `${base}-${build}`, candidate: `${base}-${build}+deb12u1` };
    case 'ubuntu':
      return { installed: `${base}-${build}ubuntu0.1`, candidate: `${base}-${build}ubuntu0.2` };
    case 'rhel':
      return { installed: `${base}-${build}.el9`, candidate: `${base}-${build + 1}.el9` };
    case 'suse':
      return { installed: `${base}-150600.${build}.1`, candidate: `${base}-150600.${build}.2` };
  }
}

function advisory(random: Random, flavour: Flavour): string {
  const n = Math.floor(random() * 9000) + 1000;
  switch (flavour) {
    case 'debian':
      return `DSA-${n + 5000}-1`;
    case 'ubuntu':
      return `USN-${n + 6000}-1`;
    case 'rhel':
      return `RHSA-2026:${n}`;
    case 'suse':
      return `SUSE-SU-2026:${n}-1`;
  }
}

function drawPatch(
  random: Random,
  name: string,
  os: OsRelease,
  distribution: PatchDistribution,
): PendingPatch {
  const security = random() < distribution.securityShare;
  const apt = os.flavour === 'debian' || os.flavour === 'ubuntu';
  // apt knows security updates by their archive and publishes no other classification or any
  // severity; RPM updateinfo classifies every update and rates security ones.
  const category: PatchCategory = security
    ? 'security'
    : apt
      ? 'other'
      : weighted<PatchCategory>(random, [
          ['bugfix', 65],
          ['enhancement', 25],
          ['unknown', 10],
        ]);
  const severity: Severity = security && !apt ? weighted(random, SECURITY_SEVERITIES) : 'unspecified';
  const { installed, candidate } = version(random, os.flavour);
  const advisoryId = advisory(random, os.flavour);
  const archive = security ? os.archives.security : os.archives.updates;
  return {
    name,
    arch: apt ? 'amd64' : 'x86_64',
    installedVersion: installed,
    candidateVersion: candidate,
    origins: [
      {
        origin: apt ? (os.flavour === 'debian' ? 'Debian' : 'Ubuntu') : archive,
        archive: apt ? archive : '',
      },
    ],
    category,
    severity,
    advisories: security || !apt ? [advisoryId] : [],
    held: false,
    keptBack: false,
    isNew: false,
  };
}

/**
 * Draws a server's OS and pending patches: nothing pending on `noneShare` of servers, else a count
 * with a long tail (most servers a few, some many, at most `max`), distinct packages, a security
 * share, categories and severities as each package manager reports them.
 */
export function drawServer(random: Random, distribution: PatchDistribution): InitialServerState {
  const os = weighted(random, RELEASES);
  const apt = os.flavour === 'debian' || os.flavour === 'ubuntu';
  const names = apt ? DEB_PACKAGES : RPM_PACKAGES;
  const max = Math.min(distribution.max, names.length);
  const none = random() < distribution.noneShare;
  const tail = Math.floor(-Math.log(1 - random()) * 4);
  const count = none || max === 0 ? 0 : Math.min(max, 1 + tail);
  const patches = sample(random, names, count)
    .sort()
    .map((name) => drawPatch(random, name, os, distribution));
  const rebootRequired = random() < 0.05;
  return { os: { ...os.facts }, patches, rebootRequired };
}

/** Whether installing `name` leaves the server needing a reboot. */
export function needsReboot(name: string): boolean {
  return REBOOT_PACKAGES.has(name);
}
