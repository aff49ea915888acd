/**
 * What a lab publishes unless told otherwise. Tests assert against these constants ("exactly
 * what the lab published"), so they are frozen: copy them (`structuredClone`) to derive content.
 */
import type { AdvisorySpec, AptSuiteSpec, LabPackageSpec, RpmRepositorySpec } from './repos/types.js';
import type { LabContent, LabUserSpec } from './types.js';

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** The apt suite that plays Debian's security pocket (`Origin: Debian`, `Label: Debian-Security`). */
export const LAB_APT_SECURITY_SUITE = 'lab-security';
/** The apt suite that plays Debian's updates pocket (`Origin: Debian`, `Label: Debian`). */
export const LAB_APT_UPDATES_SUITE = 'lab-updates';

/** Installed on every debian host at start: labdemo 1.0-1 and labtool 2.0-1. */
export const LAB_DEFAULT_DEB_INSTALLED: readonly LabPackageSpec[] = deepFreeze([
  { name: 'labdemo', version: '1.0', release: '1' },
  { name: 'labtool', version: '2.0', release: '1' },
]);

/** labdemo 1.1-1 in lab-security, labtool 2.1-1 in lab-updates. */
export const LAB_DEFAULT_APT_SUITES: readonly AptSuiteSpec[] = deepFreeze([
  {
    suite: LAB_APT_SECURITY_SUITE,
    origin: 'Debian',
    label: 'Debian-Security',
    packages: [{ name: 'labdemo', version: '1.1', release: '1' }],
  },
  {
    suite: LAB_APT_UPDATES_SUITE,
    origin: 'Debian',
    label: 'Debian',
    packages: [{ name: 'labtool', version: '2.1', release: '1' }],
  },
]);

/** Installed on every rhel and suse host at start: the old builds of the four lab rpms. */
export const LAB_DEFAULT_RPM_INSTALLED: readonly LabPackageSpec[] = deepFreeze([
  { name: 'labdemo', version: '1.0', release: '1' },
  { name: 'labtool', version: '2.0', release: '1' },
  { name: 'labextra', version: '0.9', release: '1' },
  { name: 'labplain', version: '1.0', release: '1' },
]);

const LABDEMO_11: LabPackageSpec = { name: 'labdemo', version: '1.1', release: '1' };
const LABTOOL_21: LabPackageSpec = { name: 'labtool', version: '2.1', release: '1' };
const LABEXTRA_10: LabPackageSpec = { name: 'labextra', version: '1.0', release: '1' };
const LABPLAIN_11: LabPackageSpec = { name: 'labplain', version: '1.1', release: '1' };

/** The three advisories of the default RPM repository. labplain's update has none. */
export const LAB_DEFAULT_ADVISORIES: readonly AdvisorySpec[] = deepFreeze([
  {
    id: 'LAB-2026:0001',
    type: 'security',
    severity: 'Critical',
    title: 'Critical: labdemo security update',
    issued: '2026-01-15',
    cves: ['CVE-2026-0001'],
    packages: [LABDEMO_11],
  },
  {
    id: 'LAB-2026:0002',
    type: 'bugfix',
    severity: 'Moderate',
    title: 'labtool bug fix update',
    issued: '2026-01-16',
    packages: [LABTOOL_21],
  },
  {
    id: 'LAB-2026:0003',
    type: 'enhancement',
    severity: 'Low',
    title: 'labextra enhancement update',
    issued: '2026-01-17',
    packages: [LABEXTRA_10],
  },
]);

/**
 * labdemo 1.1-1 (LAB-2026:0001, security, Critical), labtool 2.1-1 (LAB-2026:0002, bugfix,
 * Moderate), labextra 1.0-1 (LAB-2026:0003, enhancement, Low), labplain 1.1-1 (no advisory).
 */
export const LAB_DEFAULT_RPM_REPOSITORY: RpmRepositorySpec = deepFreeze({
  packages: [LABDEMO_11, LABTOOL_21, LABEXTRA_10, LABPLAIN_11],
  advisories: [...LAB_DEFAULT_ADVISORIES],
});

/** Everything a lab publishes by default, so every host starts with real pending patches. */
export const LAB_DEFAULT_CONTENT: LabContent = deepFreeze({
  apt: { suites: [...LAB_DEFAULT_APT_SUITES], installed: [...LAB_DEFAULT_DEB_INSTALLED] },
  rpm: { repository: LAB_DEFAULT_RPM_REPOSITORY, installed: [...LAB_DEFAULT_RPM_INSTALLED] },
});

/**
 * Users on every host unless `startLab({ users })` says otherwise: `labops` (sudo without
 * password, no password), `labadmin` (sudo with its password) and `labuser` (a password, no
 * sudo). Every user also gets an ed25519 key.
 */
export const LAB_DEFAULT_USERS: readonly LabUserSpec[] = deepFreeze([
  { login: 'labops', sudo: 'nopasswd' },
  { login: 'labadmin', sudo: 'password', password: true },
  { login: 'labuser', sudo: 'none', password: true },
]);

/** Size of a host's writable layer unless `LabHostSpec.diskSizeMb` says otherwise. */
export const LAB_DEFAULT_DISK_SIZE_MB = 512;
