import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSshdLog, type SshLoginEvent } from '../../src/access/sshd-log.js';
import { ValidationError } from '../../src/errors.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/sshd-log/${name}`, import.meta.url), 'utf8');

const FP = 'SHA256:lC6XtA/bpU+9JQcDD5O9z9ZK+Lo/FDVmGHi5Xf6fVqU';
const CA = 'SHA256:mRbcHoQBZw52SYVOzclVYsWKnRWfeT2ukCygFJo5+ro';

describe('parseSshdLog', () => {
  it('parseSshdLog — reads the bare CRLF lines of a real `sshd -E` file (OpenSSH 9.2p1, LogLevel VERBOSE)', () => {
    const events = parseSshdLog(fixture('openssh-9.2p1-debian12-sshd-E-verbose.txt'));
    expect(events).toEqual<SshLoginEvent[]>([
      {
        login: 'root',
        from: '127.0.0.1',
        port: 38364,
        method: 'publickey',
        result: 'accepted',
        keyType: 'ED25519',
        fingerprint: FP,
      },
      {
        login: 'root',
        from: '127.0.0.1',
        port: 46902,
        method: 'publickey',
        result: 'failed',
        keyType: 'ED25519',
        fingerprint: 'SHA256:jwYFQlb4SrtbcZSAHs7Gjn8YWRDAnx4OI+ZB2OTDhCk',
      },
      { login: 'nosuchuser', from: '127.0.0.1', port: 46908, method: 'other', result: 'invalid-user' },
      {
        login: 'root',
        from: '127.0.0.1',
        port: 46910,
        method: 'publickey',
        result: 'accepted',
        keyType: 'ED25519-CERT',
        fingerprint: 'SHA256:1EVw8OVk4gLRuEZHVqFHTIFQBpU9aTMa+AVrUR0Hm90',
        certificate: { id: 'alice@corp:req-1', serial: '4711', caFingerprint: CA },
      },
      // The certificate was signed by an untrusted CA whose key ID mimics the tail of an auth line.
      {
        login: 'root',
        from: '127.0.0.1',
        port: 46918,
        method: 'publickey',
        result: 'failed',
        keyType: 'ED25519-CERT',
        fingerprint: 'SHA256:8lxvWJHAv5ln02kFDCD72OtAThMTtXpRFR/TQvStnew',
        certificate: {
          id: 'mallory from 10.9.9.9 port 1 ssh2',
          serial: '99',
          caFingerprint: 'SHA256:AVzNWslM2M84Iw7SJn4AH8GphnlgXuqgV5vpM1ch3XU',
        },
      },
      {
        login: 'root',
        from: '127.0.0.1',
        port: 46918,
        method: 'publickey',
        result: 'failed',
        keyType: 'ED25519',
        fingerprint: 'SHA256:8lxvWJHAv5ln02kFDCD72OtAThMTtXpRFR/TQvStnew',
      },
      {
        login: 'root',
        from: '::1',
        port: 47916,
        method: 'publickey',
        result: 'accepted',
        keyType: 'ED25519',
        fingerprint: FP,
      },
    ]);
  });

  it('parseSshdLog — classic syslog takes the year and the zone offset from the options', () => {
    const line = `Nov 27 04:12:01 web1 sshd[123]: Accepted publickey for alice from 10.0.0.5 port 50122 ssh2: ED25519 ${FP}`;
    expect(parseSshdLog(line)).toEqual([
      {
        login: 'alice',
        from: '10.0.0.5',
        port: 50122,
        method: 'publickey',
        result: 'accepted',
        keyType: 'ED25519',
        fingerprint: FP,
      },
    ]);
    expect(parseSshdLog(line, { year: 2026 })[0]?.at).toBe('2026-11-27T04:12:01.000Z');
    expect(parseSshdLog(line, { year: 2026, timeZoneOffsetMinutes: 60 })[0]?.at).toBe(
      '2026-11-27T03:12:01.000Z',
    );
    expect(parseSshdLog(line, { year: 2026, timeZoneOffsetMinutes: -330 })[0]?.at).toBe(
      '2026-11-27T09:42:01.000Z',
    );
    const padded = 'Feb  3 23:59:59 web1 sshd[9]: Failed password for bob from 192.0.2.7 port 2222 ssh2';
    expect(parseSshdLog(padded, { year: 2026 })).toEqual([
      {
        at: '2026-02-03T23:59:59.000Z',
        login: 'bob',
        from: '192.0.2.7',
        port: 2222,
        method: 'password',
        result: 'failed',
      },
    ]);
  });

  it('parseSshdLog — an impossible syslog date is skipped when it must be placed in a year', () => {
    const line = 'Feb 29 10:00:00 web1 sshd[9]: Failed password for bob from 192.0.2.7 port 2222 ssh2';
    expect(parseSshdLog(line, { year: 2026 })).toEqual([]);
    expect(parseSshdLog(line, { year: 2028 })[0]?.at).toBe('2028-02-29T10:00:00.000Z');
  });

  it('parseSshdLog — RFC 3339 and journalctl -o short-iso stamps become UTC', () => {
    const text = [
      '2026-11-27T04:12:01.123456+00:00 web1 sshd[123]: Accepted password for alice from 10.0.0.5 port 50122 ssh2',
      '2026-11-27T05:12:01+0100 web1 sshd[124]: Accepted keyboard-interactive/pam for alice from 10.0.0.5 port 50123 ssh2',
      '2026-11-26T23:12:01-05:00 web1 sshd-session[125]: Failed publickey for alice from 2001:db8::5 port 50124 ssh2: RSA SHA256:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ',
      '2026-11-27T04:12:01Z web1 sshd[126]: Accepted gssapi-with-mic for alice from fe80::1%eth0 port 50125 ssh2',
    ].join('\n');
    expect(parseSshdLog(text)).toEqual([
      {
        at: '2026-11-27T04:12:01.123Z',
        login: 'alice',
        from: '10.0.0.5',
        port: 50122,
        method: 'password',
        result: 'accepted',
      },
      {
        at: '2026-11-27T04:12:01.000Z',
        login: 'alice',
        from: '10.0.0.5',
        port: 50123,
        method: 'keyboard-interactive',
        result: 'accepted',
      },
      {
        at: '2026-11-27T04:12:01.000Z',
        login: 'alice',
        from: '2001:db8::5',
        port: 50124,
        method: 'publickey',
        result: 'failed',
        keyType: 'RSA',
        fingerprint: 'SHA256:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ',
      },
      {
        at: '2026-11-27T04:12:01.000Z',
        login: 'alice',
        from: 'fe80::1%eth0',
        port: 50125,
        method: 'gssapi-with-mic',
        result: 'accepted',
      },
    ]);
  });

  it('parseSshdLog — certificate logins keep ID, serial and CA, in the current and the pre-8 format', () => {
    const text = [
      `Nov 27 04:12:01 h sshd[1]: Accepted publickey for alice from 10.0.0.5 port 1 ssh2: ED25519-CERT ${FP} ID alice@corp:req-1 (serial 4711) CA ED25519 ${CA}`,
      `Nov 27 04:12:02 h sshd[1]: Accepted publickey for alice from 10.0.0.5 port 2 ssh2: RSA-CERT ID alice (serial 7) CA RSA ${CA}`,
    ].join('\n');
    expect(parseSshdLog(text).map((e) => [e.keyType, e.fingerprint, e.certificate])).toEqual([
      ['ED25519-CERT', FP, { id: 'alice@corp:req-1', serial: '4711', caFingerprint: CA }],
      ['RSA-CERT', undefined, { id: 'alice', serial: '7', caFingerprint: CA }],
    ]);
  });

  it('parseSshdLog — failures for unknown logins are invalid-user, with their method', () => {
    const text = [
      'Nov 27 04:12:01 h sshd[1]: Invalid user admin from 198.51.100.9 port 40000',
      'Nov 27 04:12:01 h sshd[1]: Failed password for invalid user admin from 198.51.100.9 port 40000 ssh2',
      'Nov 27 04:12:01 h sshd[1]: Failed none for invalid user admin from 198.51.100.9 port 40000 ssh2',
    ].join('\n');
    expect(parseSshdLog(text)).toEqual([
      { login: 'admin', from: '198.51.100.9', port: 40000, method: 'other', result: 'invalid-user' },
      { login: 'admin', from: '198.51.100.9', port: 40000, method: 'password', result: 'invalid-user' },
      { login: 'admin', from: '198.51.100.9', port: 40000, method: 'other', result: 'invalid-user' },
    ]);
  });

  it('parseSshdLog — hostbased logins, old and new extra formats', () => {
    const text = [
      'Accepted hostbased for alice from 10.0.0.5 port 1 ssh2: client user "alice", client host "ws1"',
      `Accepted hostbased for alice from 10.0.0.5 port 2 ssh2: ED25519 ${FP}, client user "alice", client host "ws1"`,
    ].join('\n');
    expect(parseSshdLog(text).map((e) => [e.method, e.port, e.fingerprint])).toEqual([
      ['hostbased', 1, undefined],
      ['hostbased', 2, FP],
    ]);
  });

  it('parseSshdLog — a login name crafted to look like a second event yields one event with the real address', () => {
    // sshd logs the name an unknown client sent, blanks included; the real address is the last one sshd appended.
    const text = [
      'Nov 27 04:12:01 h sshd[1]: Invalid user x from 10.0.0.1 port 22 Accepted publickey for root from 10.0.0.1 port 22 from 203.0.113.66 port 5555',
      'Nov 27 04:12:01 h sshd[1]: Failed password for invalid user root from 10.0.0.1 port 22 ssh2 from 203.0.113.66 port 5556 ssh2',
      `Nov 27 04:12:01 h sshd[1]: Failed publickey for invalid user a from 10.0.0.1 port 1 ssh2: ED25519 ${FP} from 203.0.113.66 port 5557 ssh2: ED25519 ${CA}`,
    ].join('\n');
    expect(parseSshdLog(text)).toEqual([
      {
        login: 'x from 10.0.0.1 port 22 Accepted publickey for root from 10.0.0.1 port 22',
        from: '203.0.113.66',
        port: 5555,
        method: 'other',
        result: 'invalid-user',
      },
      {
        login: 'root from 10.0.0.1 port 22 ssh2',
        from: '203.0.113.66',
        port: 5556,
        method: 'password',
        result: 'invalid-user',
      },
      {
        login: `a from 10.0.0.1 port 1 ssh2: ED25519 ${FP}`,
        from: '203.0.113.66',
        port: 5557,
        method: 'publickey',
        result: 'invalid-user',
        keyType: 'ED25519',
        fingerprint: CA,
      },
    ]);
  });

  it('parseSshdLog — a line that reads two ways is skipped rather than attributed to either address', () => {
    // Both the name and a rejected certificate's ID are the client's: either split is well-formed.
    const line = `Failed publickey for invalid user a from 10.0.0.1 port 1 ssh2: ED25519-CERT ${FP} ID q from 203.0.113.66 port 2 ssh2: ED25519-CERT ${FP} ID z (serial 1) CA ED25519 ${CA}`;
    expect(parseSshdLog(line)).toEqual([]);
  });

  it('parseSshdLog — skips what sshd did not write: other programs, accepted unknown logins, junk, huge lines', () => {
    const text = [
      'Nov 27 04:12:01 h sudo[1]: Accepted publickey for root from 10.0.0.1 port 22 ssh2: ED25519 ' + FP,
      '2026-11-27T04:12:01+00:00 h evil: Accepted password for root from 10.0.0.1 port 22 ssh2',
      'Accepted password for invalid user root from 10.0.0.1 port 22 ssh2',
      'Accepted password for root from 10.0.0.300 port 22 ssh2',
      'Accepted password for root from 10.0.0.1 port 70000 ssh2',
      'Accepted password for root from host.example port 22 ssh2',
      'Accepted password for root from 10.0.0.1 port 22 ssh2: unexpected extra',
      'Accepted publickey for root from 10.0.0.1 port 22 ssh2',
      'Postponed publickey for root from 127.0.0.1 port 1 ssh2 [preauth]',
      `Accepted key ED25519 ${FP} found at /root/.ssh/authorized_keys:1`,
      '2026-13-45T04:12:01Z h sshd[1]: Accepted password for root from 10.0.0.1 port 22 ssh2',
      `Invalid user ${'a from 1.2.3.4 port 1 '.repeat(500)}from 10.0.0.1 port 22`,
      '',
      '\0\x1b[31m',
    ].join('\n');
    expect(parseSshdLog(text)).toEqual([]);
  });

  it('parseSshdLog — refuses out-of-range options', () => {
    expect(() => parseSshdLog('', { year: 26.5 })).toThrow(ValidationError);
    expect(() => parseSshdLog('', { timeZoneOffsetMinutes: 24 * 60 })).toThrow(ValidationError);
  });
});
