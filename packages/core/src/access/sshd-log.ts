import { isIP } from 'node:net';
import { ValidationError, type ValidationIssue } from '../errors.js';

/** One authentication outcome sshd logged. */
export interface SshLoginEvent {
  /** ISO 8601 in UTC, when the line carries a full timestamp (a classic syslog one needs `options.year`). */
  at?: string;
  /** The login name as sshd logged it; for `invalid-user` it is whatever the client sent. */
  login: string;
  /** The client's IP address (sshd logs addresses, never names, here). */
  from: string;
  port: number;
  method: 'publickey' | 'password' | 'keyboard-interactive' | 'hostbased' | 'gssapi-with-mic' | 'other';
  /**
   * `invalid-user` for `Invalid user …` lines (method `other`) and for `Failed <method> for
   * invalid user …` lines; a login with an unknown name is never `accepted`.
   */
  result: 'accepted' | 'failed' | 'invalid-user';
  /** As sshd names it in the log: `ED25519`, `RSA`, `ECDSA-SK`, `ED25519-CERT`, … */
  keyType?: string;
  /** `SHA256:…` (or `MD5:…` when sshd runs with `FingerprintHash md5`) of the key used. */
  fingerprint?: string;
  /** For certificate logins: the key ID and serial signed into the certificate, and the CA's fingerprint. */
  certificate?: { id: string; serial: string; caFingerprint?: string };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const PROGRAM = String.raw`sshd(?:-session|-auth)?(?:\[\d{1,10}\])?:`;
const SYSLOG = new RegExp(
  String.raw`^(${MONTHS.join('|')}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) \S+ ${PROGRAM} (.*)$`,
);
const ISO = new RegExp(
  String.raw`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2}) \S+ ${PROGRAM} (.*)$`,
);
/** `sshd -E file` and `sshd -e` write the bare message. */
const BARE = /^(?:Accepted|Failed|Invalid user) /;

const OUTCOME = /^(Accepted|Failed) (\S+) for (invalid user )?/;
const INVALID_USER = /^Invalid user (.*) from (\S+) port (\d{1,5})$/;
const TAIL = /^ from (\S+) port (\d{1,5}) ssh2(?:: (.*))?$/;
const FP = `(?:SHA256:[A-Za-z0-9+/]{43}|MD5(?::[0-9a-f]{2}){16}|[0-9a-f]{2}(?::[0-9a-f]{2}){15})`;
const KEY_TYPE = `[A-Z][A-Z0-9-]*`;
const PLAIN_KEY = new RegExp(`^(${KEY_TYPE}) (${FP})$`);
// Greedy ID: the key ID may hold anything (a client chooses it for a certificate sshd then rejects),
// and the part sshd appends after it is always the line's last `(serial N) CA TYPE FP`.
const CERT_KEY = new RegExp(
  String.raw`^(${KEY_TYPE}-CERT)(?: (${FP}))? ID (.*) \(serial (\d{1,20})\) CA ${KEY_TYPE} (${FP})$`,
);
const HOSTBASED = new RegExp(`^(?:(${KEY_TYPE}) (${FP}), )?client user ".*", client host ".*"$`);

/** sshd truncates its own log lines near 1 KiB; anything far longer did not come from sshd. */
const MAX_LINE = 8192;

type Method = SshLoginEvent['method'];
const METHODS = new Set<Method>([
  'publickey',
  'password',
  'keyboard-interactive',
  'hostbased',
  'gssapi-with-mic',
]);

function methodOf(token: string): Method {
  const base = token.split('/')[0] as Method;
  return METHODS.has(base) ? base : 'other';
}

function ipOf(text: string): string | undefined {
  const zone = text.indexOf('%');
  const address = zone >= 0 ? text.slice(0, zone) : text;
  return isIP(address) === 0 ? undefined : text;
}

function portOf(text: string): number | undefined {
  const port = Number(text);
  return Number.isInteger(port) && port >= 0 && port <= 65535 ? port : undefined;
}

type KeyFacts = Pick<SshLoginEvent, 'keyType' | 'fingerprint' | 'certificate'>;

/** What the text after `ssh2: ` says, or `undefined` when it is not what sshd writes for `method`. */
function extraOf(method: Method, extra: string | undefined): KeyFacts | undefined {
  if (extra === undefined) return method === 'publickey' || method === 'hostbased' ? undefined : {};
  if (method === 'publickey') {
    const plain = PLAIN_KEY.exec(extra);
    if (plain) return { keyType: plain[1]!, fingerprint: plain[2]! };
    const cert = CERT_KEY.exec(extra);
    if (!cert) return undefined;
    const facts: KeyFacts = {
      keyType: cert[1]!,
      certificate: { id: cert[3]!, serial: cert[4]!, caFingerprint: cert[5]! },
    };
    if (cert[2] !== undefined) facts.fingerprint = cert[2];
    return facts;
  }
  if (method === 'hostbased') {
    const hostbased = HOSTBASED.exec(extra);
    if (!hostbased) return undefined;
    return hostbased[1] === undefined ? {} : { keyType: hostbased[1], fingerprint: hostbased[2]! };
  }
  return undefined;
}

/**
 * Reads `Accepted|Failed <method> for [invalid user ]<user> from <ip> port <n> ssh2[: <extra>]`.
 * The user (for an unknown login) and a rejected certificate's ID are chosen by the client and may
 * contain ` from … port … ssh2`; the line is read only if exactly one split leaves a well-formed
 * address, port and extra, so a crafted name can neither move the source address nor add an event.
 */
function parseOutcome(message: string): Omit<SshLoginEvent, 'at'> | undefined {
  const head = OUTCOME.exec(message);
  if (!head) return undefined;
  const method = methodOf(head[2]!);
  const invalid = head[3] !== undefined;
  // sshd cannot accept an unknown login, so such a line was not written by sshd.
  if (invalid && head[1] === 'Accepted') return undefined;
  const result = invalid ? 'invalid-user' : head[1] === 'Accepted' ? 'accepted' : 'failed';
  const rest = message.slice(head[0].length);
  let found: Omit<SshLoginEvent, 'at'> | undefined;
  for (let i = rest.indexOf(' from '); i >= 0; i = rest.indexOf(' from ', i + 1)) {
    const tail = TAIL.exec(rest.slice(i));
    if (!tail) continue;
    const from = ipOf(tail[1]!);
    const port = portOf(tail[2]!);
    const facts = extraOf(method, tail[3]);
    if (from === undefined || port === undefined || facts === undefined) continue;
    if (found) return undefined;
    found = { login: rest.slice(0, i), from, port, method, result, ...facts };
  }
  return found;
}

function parseMessage(message: string): Omit<SshLoginEvent, 'at'> | undefined {
  const invalid = INVALID_USER.exec(message);
  if (invalid) {
    const from = ipOf(invalid[2]!);
    const port = portOf(invalid[3]!);
    if (from === undefined || port === undefined) return undefined;
    return { login: invalid[1]!, from, port, method: 'other', result: 'invalid-user' };
  }
  return parseOutcome(message);
}

function utcMs(parts: number[], offsetMinutes: number): number | undefined {
  const [year, month, day, hour, minute, second] = parts as [number, number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const t = new Date(ms);
  if (t.getUTCMonth() !== month - 1 || t.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    return undefined;
  }
  return ms - offsetMinutes * 60_000;
}

function validateOptions(options: { year?: number; timeZoneOffsetMinutes?: number }): void {
  const issues: ValidationIssue[] = [];
  const { year, timeZoneOffsetMinutes } = options;
  if (year !== undefined && !(Number.isInteger(year) && year >= 1970 && year <= 9999)) {
    issues.push({ path: ['year'], message: 'must be an integer between 1970 and 9999' });
  }
  if (
    timeZoneOffsetMinutes !== undefined &&
    !(Number.isInteger(timeZoneOffsetMinutes) && Math.abs(timeZoneOffsetMinutes) <= 18 * 60)
  ) {
    issues.push({ path: ['timeZoneOffsetMinutes'], message: 'must be an integer within ±1080' });
  }
  if (issues.length) throw new ValidationError('SshdLogOptions', issues);
}

/**
 * Extracts login outcomes from sshd's log: classic syslog lines (`Nov 27 04:12:01 host sshd[123]: …`),
 * RFC 3339 / `journalctl -o short-iso` lines (`2026-11-27T04:12:01.123456+00:00 host sshd[123]: …`,
 * `…+0000 …`), and the bare messages `sshd -E file` writes (CRLF endings included). Only
 * `sshd`, `sshd-session` and `sshd-auth` lines are read; anything else, and anything that does not
 * parse, is skipped, never thrown on. Each line yields at most one event.
 *
 * Classic syslog stamps have no year and no zone: `at` is set only when `options.year` is given, and
 * the stamp is read as local time `timeZoneOffsetMinutes` east of UTC (default 0, i.e. UTC).
 * Note that any local user can write syslog lines naming sshd (`logger -t sshd`): a syslog source
 * is only as trustworthy as its write access.
 * @throws ValidationError for out-of-range options (never for log content).
 */
export function parseSshdLog(
  text: string,
  options: { year?: number; timeZoneOffsetMinutes?: number } = {},
): SshLoginEvent[] {
  validateOptions(options);
  const offset = options.timeZoneOffsetMinutes ?? 0;
  const events: SshLoginEvent[] = [];
  for (const rawLine of text.split('\n')) {
    if (rawLine.length > MAX_LINE) continue;
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    let message: string;
    let at: number | undefined;
    const iso = ISO.exec(line);
    const syslog = iso ? undefined : SYSLOG.exec(line);
    if (iso) {
      const zone = iso[8]!;
      const zoneMinutes =
        zone === 'Z'
          ? 0
          : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(-2)));
      at = utcMs(iso.slice(1, 7).map(Number), zoneMinutes);
      if (at === undefined) continue;
      if (iso[7]) at += Math.floor(Number(`0${iso[7]}`) * 1000);
      message = iso[9]!;
    } else if (syslog) {
      if (options.year !== undefined) {
        const month = MONTHS.indexOf(syslog[1]!) + 1;
        at = utcMs([options.year, month, ...syslog.slice(2, 6).map(Number)], offset);
        if (at === undefined) continue;
      }
      message = syslog[6]!;
    } else if (BARE.test(line)) {
      message = line;
    } else {
      continue;
    }
    const event = parseMessage(message);
    if (!event) continue;
    events.push(at === undefined ? event : { at: new Date(at).toISOString(), ...event });
  }
  return events;
}
