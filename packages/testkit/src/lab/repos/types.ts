/**
 * Contract between the lab and its package repositories. The lab asks for repositories built
 * from these specs; the builders turn them into real apt and RPM repositories on disk.
 */

/** A test package. The builders produce a tiny real package (one file under /usr/share/fleetward-lab/). */
export interface LabPackageSpec {
  name: string;
  /** Upstream version, e.g. `1.0`. */
  version: string;
  /** Debian revision / RPM release. @default '1' */
  release?: string;
  /** @default 'all' for deb, 'noarch' for rpm */
  arch?: string;
  summary?: string;
  /** Names of other lab packages this one depends on (lets tests produce NEW dependencies). */
  depends?: string[];
  /**
   * Names of other lab packages this one replaces: installing it removes them (Debian `Conflicts`
   * and `Replaces`, RPM `Obsoletes`). Lets tests produce transactions that remove a package.
   */
  replaces?: string[];
}

/** An apt suite (pocket) of the lab's apt repository. */
export interface AptSuiteSpec {
  /** Suite and codename, e.g. `lab-security` or `lab-updates`. */
  suite: string;
  /** `Origin:` field of the Release file, e.g. `Debian`. */
  origin: string;
  /** `Label:` field, e.g. `Debian-Security` for the security pocket. */
  label: string;
  /**
   * `Version:` field, e.g. `12`. apt prints origins as `Label:Version/Suite`
   * (`Debian-Security:12/lab-security`); without it they read `Debian-Security:lab-security`.
   */
  version?: string;
  packages: LabPackageSpec[];
}

export type AdvisoryType = 'security' | 'bugfix' | 'enhancement';
export type AdvisorySeverity = 'Critical' | 'Important' | 'Moderate' | 'Low';

/** An `updateinfo.xml` advisory covering some packages of the RPM repository. */
export interface AdvisorySpec {
  /** e.g. `LAB-2026:0001` */
  id: string;
  type: AdvisoryType;
  /** Absent for advisories without a severity (bugfix/enhancement usually). */
  severity?: AdvisorySeverity;
  title: string;
  /** ISO date, e.g. `2026-01-15`. */
  issued: string;
  /** ISO date of the last revision; emitted as `<updated date=…/>` when given. */
  updated?: string;
  /** Free text; defaults to the title. */
  description?: string;
  /** CVE ids (`CVE-2026-0001`), emitted as `<reference type="cve">` entries. */
  cves?: string[];
  /**
   * Emits `<reboot_suggested>True</reboot_suggested>`; zypper then reports the patch as
   * `restart="true"` (dnf 4.14 does not display it).
   */
  rebootSuggested?: boolean;
  /** The package builds (name, version, release, arch) the advisory ships. */
  packages: LabPackageSpec[];
}

export interface RpmRepositorySpec {
  packages: LabPackageSpec[];
  advisories: AdvisorySpec[];
}
