import { FleetwardError, type FleetwardErrorOptions, ValidationError } from '../errors.js';
import type { AuthorizedKeyOption } from './authorized-keys.js';

/** An OpenSSH release, e.g. 9.2p1. */
export interface SshdVersion {
  major: number;
  minor: number;
  /** The N of `pN` (portable release); absent when the text has none, as `sshd -V` on Debian prints. */
  portable?: number;
  /** The line the version was read from, trimmed. */
  raw: string;
}

/**
 * The host's sshd lacks a feature the operation needs and writing it anyway would do harm (an
 * option sshd does not know makes it refuse the whole authorized_keys line: a lockout).
 */
export class UnsupportedSshdError extends FleetwardError {
  constructor(message: string, options: FleetwardErrorOptions = {}) {
    super('CAPABILITY_MISSING', message, { fault: 'remote', ...options });
  }
}

const VERSION = /^OpenSSH_(?:for_Windows_)?(\d{1,3})\.(\d{1,3})(?:p(\d{1,3}))?(?![0-9.])/;
const BANNER = /^SSH-(?:2\.0|1\.99)-(\S+)/;

/**
 * Reads the OpenSSH version from `sshd -V` (`OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL …`, or
 * `OpenSSH_9.2, OpenSSL …` as Debian 12's sshd prints it), from an old sshd's usage text on `-V`
 * (`unknown option -- V`, then `OpenSSH_7.4p1, OpenSSL …`), from `ssh -V`, or from the SSH banner
 * (`SSH-2.0-OpenSSH_8.0`). Only a line that starts with the version (or a banner whose software
 * field does) counts, so a version quoted inside other text is not taken for the host's own.
 * @returns `undefined` for anything that is not OpenSSH, e.g. `SSH-2.0-dropbear_2022.83`.
 */
export function parseSshdVersion(output: string): SshdVersion | undefined {
  for (const line of output.split(/\r?\n/)) {
    const trimmed = line.trim();
    const banner = BANNER.exec(trimmed);
    const candidate = banner ? banner[1]! : trimmed;
    const m = VERSION.exec(candidate);
    if (!m) continue;
    const version: SshdVersion = { major: Number(m[1]), minor: Number(m[2]), raw: trimmed };
    if (m[3] !== undefined) version.portable = Number(m[3]);
    return version;
  }
  return undefined;
}

function atLeast(v: SshdVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

/** Whether sshd understands the `expiry-time` authorized_keys option (OpenSSH 7.7 and later). */
export function supportsExpiryTime(v: SshdVersion): boolean {
  return atLeast(v, 7, 7);
}

/** Whether sshd reads a trailing `Z` on `expiry-time` as UTC (OpenSSH 9.1 and later). */
export function supportsUtcExpiry(v: SshdVersion): boolean {
  return atLeast(v, 9, 1);
}

const LOCAL_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/;
/** The widest UTC offsets in use (Baker Island −12:00, Line Islands +14:00); every zone is a multiple of 15 minutes. */
const MAX_OFFSET_MS = 14 * 3600_000;
const OFFSET_STEP_MS = 15 * 60_000;

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** Milliseconds since the epoch of a `YYYYMMDDHHMMSS` read as if it were UTC, or undefined if not a real time. */
function wallClockMs(text: string): number | undefined {
  const m = LOCAL_TIME.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const t = new Date(ms);
  const real =
    t.getUTCFullYear() === year &&
    t.getUTCMonth() === month - 1 &&
    t.getUTCDate() === day &&
    t.getUTCHours() === hour &&
    t.getUTCMinutes() === minute &&
    t.getUTCSeconds() === second;
  return real ? ms : undefined;
}

/**
 * The `expiry-time` option for an instant. For OpenSSH 9.1 and later it is `YYYYMMDDHHMMSSZ` in
 * UTC. For 7.7 to 9.0 sshd reads the time in the host's own time zone, so the caller passes
 * `hostLocalTime`: the same instant already formatted as `YYYYMMDDHHMMSS` on the host (asked of the
 * host, because an offset taken now is wrong after a DST change); it is written without `Z`.
 * Seconds are kept and milliseconds dropped, so access never outlives `at`.
 * @throws UnsupportedSshdError below 7.7 or for an unknown version: sshd would refuse the line.
 * @throws ValidationError for an invalid `at` (or a year outside 1970–9999), or, before 9.1, a
 * missing `hostLocalTime`, one that is not a real `YYYYMMDDHHMMSS`, or one that is not `at` in
 * any time zone (more than 14 hours away or not a whole quarter hour apart).
 */
export function expiryTimeOption(
  at: Date,
  version: SshdVersion | undefined,
  hostLocalTime?: string,
): AuthorizedKeyOption {
  if (!version || !supportsExpiryTime(version)) {
    throw new UnsupportedSshdError(
      version
        ? `sshd ${version.major}.${version.minor} does not know expiry-time (needs OpenSSH 7.7+) and would refuse the line`
        : 'sshd version unknown: expiry-time is written only for OpenSSH 7.7+, where sshd is known to accept it',
      { details: { version: version?.raw, needs: 'OpenSSH 7.7' } },
    );
  }
  const ms = at instanceof Date ? at.getTime() : Number.NaN;
  if (Number.isNaN(ms))
    throw new ValidationError('ExpiryTime', [{ path: ['at'], message: 'is not a valid Date' }]);
  const year = at.getUTCFullYear();
  if (year < 1970 || year > 9999) {
    throw new ValidationError('ExpiryTime', [
      { path: ['at'], message: 'year must be between 1970 and 9999' },
    ]);
  }
  if (supportsUtcExpiry(version)) {
    const utc =
      pad(year, 4) +
      pad(at.getUTCMonth() + 1) +
      pad(at.getUTCDate()) +
      pad(at.getUTCHours()) +
      pad(at.getUTCMinutes()) +
      pad(at.getUTCSeconds());
    return { name: 'expiry-time', value: `${utc}Z` };
  }
  if (hostLocalTime === undefined) {
    throw new ValidationError('ExpiryTime', [
      {
        path: ['hostLocalTime'],
        message: `sshd ${version.major}.${version.minor} reads expiry-time in the host's time zone; pass the instant formatted on the host`,
      },
    ]);
  }
  const wall = typeof hostLocalTime === 'string' ? wallClockMs(hostLocalTime) : undefined;
  if (wall === undefined) {
    throw new ValidationError('ExpiryTime', [
      { path: ['hostLocalTime'], message: 'must be a real YYYYMMDDHHMMSS' },
    ]);
  }
  const offset = wall - Math.floor(ms / 1000) * 1000;
  if (Math.abs(offset) > MAX_OFFSET_MS || offset % OFFSET_STEP_MS !== 0) {
    throw new ValidationError('ExpiryTime', [
      { path: ['hostLocalTime'], message: `is not ${at.toISOString()} in any time zone` },
    ]);
  }
  return { name: 'expiry-time', value: hostLocalTime };
}
