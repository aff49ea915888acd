import {
  type OsFacts,
  type PackageManager,
  type PendingPatch,
  PendingPatchSchema,
  type PinnedPackage,
} from '../domain/index.js';
import { ParseError } from '../errors.js';
import type { Command } from '../ports/adapter.js';

/** What a driver needs from a finished command. */
export interface CommandOutput {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** The transport cut the output: the parser must not pretend to have seen all of it. */
  truncated?: boolean;
}

export interface ParsedScan {
  patches: PendingPatch[];
  rebootRequired: boolean;
  rebootPackages: string[];
  warnings: string[];
}

/**
 * A package manager as pure functions: the command to run and the parser of its output.
 * No I/O. Every command is constant text or argv built from validated data.
 */
export interface PackageManagerDriver {
  readonly manager: PackageManager;
  /** Whether this driver serves a host with these OS facts. */
  supports(os: OsFacts): boolean;
  /** The read-only command that lists pending updates (runs as root where the manager needs it). */
  scanCommand(): Command;
  /**
   * Parses the scan command's output.
   * @throws ParseError when the output is not what the tool prints (never returns an empty list for garbage).
   * @throws CommandFailedError when the tool reported failure (lock held, broken sources).
   */
  parseScan(output: CommandOutput): ParsedScan;

  /**
   * A read-only simulation of installing exactly `packages` (name at version), which tells what the
   * transaction would really do: dependencies pulled in, packages removed.
   * @throws ValidationError when a name or version is not valid for this package manager.
   */
  simulateInstallCommand?(packages: readonly PinnedPackage[]): Command;
  /** Parses the simulation into the full transaction. */
  parseSimulateInstall?(output: CommandOutput): ResolvedTransaction;
  /**
   * Installs exactly `packages` at their versions, non-interactively, refusing to remove anything.
   * @throws ValidationError for an invalid name or version.
   */
  installCommand?(packages: readonly PinnedPackage[]): Command;
  /**
   * Checks the install's output: a failure is a CommandFailedError with the tool's message (a
   * DriftedError when an approved package is no longer what the host offers).
   */
  parseInstall?(output: CommandOutput): ParsedInstall;
  /**
   * True when the driver installs exactly the selected packages and nothing else (no dependency
   * resolution, nothing removed), so the selection is the transaction and no simulation is needed
   * to plan it: Windows Update installs updates one by one, by identity.
   */
  readonly installsExactlySelection?: boolean;
  /** Lists the installed version of each of `names` (for verification after install). */
  installedVersionsCommand?(names: readonly string[]): Command;
  /**
   * Parses it: name to installed version; absent names are not installed. `pinned` (what was
   * installed) lets a driver whose names are not unique on the host pick the pinned one.
   */
  parseInstalledVersions?(output: CommandOutput, pinned?: readonly PinnedPackage[]): Map<string, string>;
}

/** What an install did, as the driver read it from the tool's output. */
export interface ParsedInstall {
  rebootRequired: boolean;
  warnings: string[];
  /** The outcome per package, when the tool reports one (Windows Update does). */
  results?: InstalledPackageResult[];
}

/** The outcome of installing one package, as the tool reported it. */
export interface InstalledPackageResult {
  name: string;
  version: string;
  /**
   * `installed`, `installed-with-errors` (the tool says succeeded with errors), `already-installed`,
   * `not-offered` (no longer offered at the pinned version: superseded, revised or withdrawn),
   * `download-failed`, `failed`, `aborted`, or `skipped` (not attempted because another package of
   * the same install drifted).
   */
  state:
    | 'installed'
    | 'installed-with-errors'
    | 'already-installed'
    | 'not-offered'
    | 'download-failed'
    | 'failed'
    | 'aborted'
    | 'skipped';
  /** Whether this package needs a reboot to complete. */
  rebootRequired: boolean;
  /** The tool's error code (`0x80240022`), with its explanation where known. */
  code?: string;
  explanation?: string;
}

/** What a simulated install would do. */
export interface ResolvedTransaction {
  install: (PinnedPackage & { isNew: boolean })[];
  remove: string[];
  warnings: string[];
}

/**
 * Checks the patches a scan parser built against {@link PendingPatchSchema} before they leave the
 * driver: a host's output is untrusted, and a name or arch no package manager prints (a 10,000
 * character arch, an empty version) must fail the scan, not reach the store.
 * @throws ParseError naming the package and the fields that are out of bounds.
 */
export function checkScannedPatches(tool: string, patches: PendingPatch[]): PendingPatch[] {
  for (const patch of patches) {
    const result = PendingPatchSchema.safeParse(patch);
    if (!result.success) {
      const fields = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new ParseError(`${tool} scan lists a package Fleetward cannot keep (${fields})`, {
        details: { name: String(patch.name).slice(0, 200), arch: String(patch.arch).slice(0, 64) },
      });
    }
  }
  return patches;
}
