import { describe, expect, it } from 'vitest';
import {
  expiryTimeOption,
  parseSshdVersion,
  type SshdVersion,
  supportsExpiryTime,
  supportsUtcExpiry,
  UnsupportedSshdError,
} from '../../src/access/sshd-version.js';
import { FleetwardError, ValidationError } from '../../src/errors.js';

const v = (major: number, minor: number): SshdVersion => ({ major, minor, raw: `OpenSSH_${major}.${minor}` });

function paths(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).paths;
  }
  throw new Error('expected a ValidationError');
}

describe('parseSshdVersion', () => {
  it.each([
    [
      'sshd -V on Debian 12 (no pN)',
      'OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026\n',
      { major: 9, minor: 2, raw: 'OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026' },
    ],
    [
      'sshd -V with a distribution suffix',
      'OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026',
      { major: 9, minor: 2, portable: 1, raw: 'OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026' },
    ],
    [
      "an old sshd's usage text on -V",
      'unknown option -- V\nOpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017\nusage: sshd [-46DdeiqTt] [-C connection_spec] [-c host_cert_file]\n',
      { major: 7, minor: 4, portable: 1, raw: 'OpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017' },
    ],
    [
      'ssh -V',
      'OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026\r\n',
      { major: 9, minor: 2, portable: 1, raw: 'OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026' },
    ],
    ['a banner', 'SSH-2.0-OpenSSH_8.0\r\n', { major: 8, minor: 0, raw: 'SSH-2.0-OpenSSH_8.0' }],
    [
      'a Debian banner',
      'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10',
      { major: 9, minor: 2, portable: 1, raw: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10' },
    ],
    [
      'Win32-OpenSSH',
      'SSH-2.0-OpenSSH_for_Windows_8.1',
      { major: 8, minor: 1, raw: 'SSH-2.0-OpenSSH_for_Windows_8.1' },
    ],
    [
      'a two-digit major',
      'OpenSSH_10.0p2, OpenSSL 3.5.0',
      { major: 10, minor: 0, portable: 2, raw: 'OpenSSH_10.0p2, OpenSSL 3.5.0' },
    ],
  ])('parseSshdVersion — reads %s', (_name, output, expected) => {
    expect(parseSshdVersion(output)).toEqual(expected);
  });

  it.each([
    ['dropbear', 'SSH-2.0-dropbear_2022.83'],
    ['an empty string', ''],
    ['a version quoted inside other text', 'debug1: Remote software version OpenSSH_9.2p1'],
    ['a dropbear banner quoting OpenSSH', 'SSH-2.0-dropbear_2022.83 OpenSSH_9.9'],
    ['a malformed version', 'OpenSSH_9'],
  ])('parseSshdVersion — returns undefined for %s', (_name, output) => {
    expect(parseSshdVersion(output)).toBeUndefined();
  });
});

describe('supportsExpiryTime / supportsUtcExpiry', () => {
  it.each([
    [v(7, 6), false, false],
    [v(7, 7), true, false],
    [v(8, 0), true, false],
    [v(9, 0), true, false],
    [v(9, 1), true, true],
    [v(10, 0), true, true],
  ])('supportsExpiryTime — %o: expiry-time %s, UTC %s', (version, expiry, utc) => {
    expect(supportsExpiryTime(version)).toBe(expiry);
    expect(supportsUtcExpiry(version)).toBe(utc);
  });
});

describe('expiryTimeOption', () => {
  const at = new Date('2026-01-31T12:34:56.789Z');

  it('expiryTimeOption — 9.1 and later get UTC with Z, milliseconds dropped so access never outlives the instant', () => {
    expect(expiryTimeOption(at, v(9, 1))).toEqual({ name: 'expiry-time', value: '20260131123456Z' });
    expect(expiryTimeOption(at, v(9, 2), '20260131183456')).toEqual({
      name: 'expiry-time',
      value: '20260131123456Z',
    });
  });

  it('expiryTimeOption — 7.7 to 9.0 get the host-local time without Z', () => {
    expect(expiryTimeOption(at, v(7, 7), '20260131183456')).toEqual({
      name: 'expiry-time',
      value: '20260131183456',
    });
    // The extremes: Baker Island (−12:00) and Chatham Islands in summer (+13:45).
    expect(expiryTimeOption(at, v(9, 0), '20260131003456')).toEqual({
      name: 'expiry-time',
      value: '20260131003456',
    });
    expect(expiryTimeOption(at, v(8, 9), '20260201021956')).toEqual({
      name: 'expiry-time',
      value: '20260201021956',
    });
  });

  it('expiryTimeOption — before 9.1 a missing or implausible host-local time is refused', () => {
    expect(paths(() => expiryTimeOption(at, v(8, 9)))).toEqual(['hostLocalTime']);
    expect(paths(() => expiryTimeOption(at, v(8, 9), '2026-01-31 12:34:56'))).toEqual(['hostLocalTime']);
    expect(paths(() => expiryTimeOption(at, v(8, 9), '20260231123456'))).toEqual(['hostLocalTime']);
    // 15 hours away, or 7 minutes away, is no time zone's reading of this instant.
    expect(paths(() => expiryTimeOption(at, v(8, 9), '20260201033456'))).toEqual(['hostLocalTime']);
    expect(paths(() => expiryTimeOption(at, v(8, 9), '20260131124156'))).toEqual(['hostLocalTime']);
    // A different second means it was formatted from another instant.
    expect(paths(() => expiryTimeOption(at, v(8, 9), '20260131123457'))).toEqual(['hostLocalTime']);
  });

  it('expiryTimeOption — below 7.7 or for an unknown version it throws UnsupportedSshdError', () => {
    for (const version of [v(7, 6), undefined]) {
      let caught: unknown;
      try {
        expiryTimeOption(at, version, '20260131123456');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(UnsupportedSshdError);
      expect(caught).toBeInstanceOf(FleetwardError);
      expect(caught).toMatchObject({ code: 'CAPABILITY_MISSING', fault: 'remote', retryable: false });
    }
  });

  it('expiryTimeOption — refuses an invalid Date', () => {
    expect(paths(() => expiryTimeOption(new Date(Number.NaN), v(9, 2)))).toEqual(['at']);
    expect(paths(() => expiryTimeOption(new Date('1969-12-31T00:00:00Z'), v(9, 2)))).toEqual(['at']);
  });
});
