import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';
import type { Server } from '@fleetward/core';
import { Mutex, redact } from '@fleetward/core';
import type { LearnedHostKey, SshAdapterConfig } from './options.js';

/** ssh2's default host key algorithms, in its order of preference. */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const;

/** Host key algorithms that prove a key of the given type. */
const ALGORITHMS_OF_KEY_TYPE: Record<string, readonly string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** The name a host has in known_hosts and in `pinnedHostKeys`: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `SHA256:<base64 without padding>` of a public key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type written at the start of an SSH public key blob, e.g. `ssh-ed25519`. */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  if (length > 64 || blob.length < 4 + length) return 'unknown';
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** One key line of a known_hosts file. */
export interface KnownHostEntry {
  marker: 'revoked' | 'cert-authority' | undefined;
  /** The host field as written: comma-separated patterns, or one hashed `|1|salt|hash`. */
  hosts: string;
  keyType: string;
  key: Buffer;
  /** 1-based line number, for error messages. */
  line: number;
}

/**
 * Parses an OpenSSH known_hosts file. Lines that cannot be understood are skipped, as OpenSSH
 * does, so one bad line never hides the others.
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const name = fields.shift();
      if (name === '@revoked') marker = 'revoked';
      else if (name === '@cert-authority') marker = 'cert-authority';
      else return;
    }
    const [hosts, keyType, base64] = fields;
    if (hosts === undefined || keyType === undefined || base64 === undefined) return;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return;
    const key = Buffer.from(base64, 'base64');
    // The blob names its own type; a line whose two disagree is corrupt, not a key to trust.
    if (keyTypeOf(key) !== keyType) return;
    entries.push({ marker, hosts, keyType, key, line: index + 1 });
  });
  return entries;
}

/**
 * Whether `name` matches an OpenSSH host pattern (`*` any run, `?` one character), case-insensitively.
 * Not a RegExp: `*a*a*a…b` compiled to `.*a.*a.*…b` backtracks exponentially, and a known_hosts
 * line is enough to hang every connection. One backtrack point keeps this O(pattern × name).
 */
function globMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const t = name.toLowerCase();
  let pi = 0;
  let ti = 0;
  let star = -1;
  let resume = 0;
  while (ti < t.length) {
    if (pi < p.length && p[pi] === '*') {
      star = pi++;
      resume = ti;
    } else if (pi < p.length && (p[pi] === '?' || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (star >= 0) {
      pi = star + 1;
      ti = ++resume;
    } else {
      return false;
    }
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}

/**
 * Whether a known_hosts host field names `name` (`host` or `[host]:port`): a hashed `|1|salt|hash`
 * entry, or comma-separated patterns with `*`, `?` and `!` negation, as OpenSSH matches them.
 */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (salt === undefined || hash === undefined) return false;
    const expected = Buffer.from(hash, 'base64');
    const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
  let matched = false;
  for (const pattern of hosts.split(',')) {
    const negated = pattern.startsWith('!');
    const glob = negated ? pattern.slice(1) : pattern;
    if (glob === '' || !globMatches(glob, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** Host key algorithms to offer, the types already known for the host first (as OpenSSH does). */
export function hostKeyAlgorithmsFor(knownKeyTypes: readonly string[]): string[] {
  // Key types come from a known_hosts file: `constructor` must not find Object.prototype's.
  const preferred = knownKeyTypes.flatMap((type) =>
    Object.hasOwn(ALGORITHMS_OF_KEY_TYPE, type) ? ALGORITHMS_OF_KEY_TYPE[type]! : [],
  );
  return [...new Set([...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}

/** Where a host's key is checked: the hop being verified. */
export interface HostKeyTarget {
  host: string;
  port: number;
  /** The server the command is for; absent for a bastion. */
  server?: Server;
}

/** What the policy knows about a host before the handshake. */
export interface HostKeyExpectation {
  fingerprints: Set<string>;
  keys: Buffer[];
  revoked: Buffer[];
  /** Types of the known keys, to steer algorithm negotiation towards a key we can check. */
  keyTypes: string[];
  /** Where the expectation came from, for error messages. */
  sources: string[];
}

/** The outcome of checking a presented host key. */
export type HostKeyVerdict =
  | { ok: true; learned?: LearnedHostKey }
  | { ok: false; kind: 'mismatch' | 'unrecorded'; reason: string; details: Record<string, unknown> };

/**
 * Verifies host keys under one policy. Keeps the keys learned under `tofu` for the adapter's
 * lifetime, so a learned key is enforced even when it could not be written to a file.
 */
export class HostKeyVerifier {
  readonly #config: SshAdapterConfig;
  readonly #learned = new Map<string, Buffer>();
  readonly #fileLock = new Mutex();

  constructor(config: SshAdapterConfig) {
    this.#config = config;
  }

  /** Collects what is known about the host: pins, known_hosts lines and keys learned here. */
  async expectationFor(target: HostKeyTarget): Promise<HostKeyExpectation> {
    const name = knownHostsName(target.host, target.port);
    const expectation: HostKeyExpectation = {
      fingerprints: new Set(),
      keys: [],
      revoked: [],
      keyTypes: [],
      sources: [],
    };
    const pinned = this.#config.pinnedHostKeys[name] ?? [];
    const pinnedForServer =
      target.server && this.#config.pinnedHostKeysFor
        ? ((await this.#config.pinnedHostKeysFor(target.server)) ?? [])
        : [];
    for (const fingerprint of [...pinned, ...pinnedForServer]) expectation.fingerprints.add(fingerprint);
    if (expectation.fingerprints.size > 0) expectation.sources.push('pinned fingerprints');

    if (this.#config.hostKeyPolicy !== 'pinned' && this.#config.knownHostsFile !== undefined) {
      const file = this.#config.knownHostsFile;
      let text = '';
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        // Under tofu the file is created by the first key learned; otherwise a missing file is a
        // configuration error that must not silently turn into "no host is known".
        if ((error as { code?: unknown }).code !== 'ENOENT' || this.#config.hostKeyPolicy !== 'tofu') {
          throw error;
        }
      }
      for (const entry of parseKnownHosts(text)) {
        if (entry.marker === 'cert-authority' || !hostFieldMatches(entry.hosts, name)) continue;
        if (entry.marker === 'revoked') {
          expectation.revoked.push(entry.key);
          continue;
        }
        expectation.keys.push(entry.key);
        expectation.keyTypes.push(entry.keyType);
        expectation.sources.push(`${file}:${entry.line}`);
      }
    }
    const learned = this.#learned.get(name);
    if (learned) {
      expectation.keys.push(learned);
      expectation.keyTypes.push(keyTypeOf(learned));
      expectation.sources.push('key learned on first use');
    }
    return expectation;
  }

  /**
   * Checks the key a host presented against `expectation`. Under `tofu`, a host with no known key
   * has this one recorded (in memory at once, then through `onHostKeyLearned` and the known_hosts
   * file) before the verdict is given, so the connection is only used once the key is on record.
   */
  async verify(
    target: HostKeyTarget,
    expectation: HostKeyExpectation,
    blob: Buffer,
  ): Promise<HostKeyVerdict> {
    const name = knownHostsName(target.host, target.port);
    const fingerprint = fingerprintOf(blob);
    const keyType = keyTypeOf(blob);
    const details = {
      host: target.host,
      port: target.port,
      hostName: name,
      keyType,
      fingerprint,
      policy: this.#config.hostKeyPolicy,
      expected: [...expectation.fingerprints, ...expectation.keys.map(fingerprintOf)],
      sources: expectation.sources,
    };
    if (expectation.revoked.some((key) => key.equals(blob))) {
      return {
        ok: false,
        kind: 'mismatch',
        reason: `its ${keyType} key ${fingerprint} is marked @revoked`,
        details,
      };
    }
    if (expectation.fingerprints.has(fingerprint) || expectation.keys.some((key) => key.equals(blob))) {
      return { ok: true };
    }
    // A key learned by a concurrent first connection counts, even if this expectation predates it.
    const learnedMeanwhile = this.#learned.get(name);
    const known = expectation.fingerprints.size > 0 || expectation.keys.length > 0 || learnedMeanwhile;
    if (learnedMeanwhile?.equals(blob)) return { ok: true };
    if (known) {
      return {
        ok: false,
        kind: 'mismatch',
        reason: `it presented ${keyType} key ${fingerprint}, which is not the one on record (${details.expected.join(', ')})`,
        details,
      };
    }
    if (this.#config.hostKeyPolicy !== 'tofu') {
      const where =
        this.#config.hostKeyPolicy === 'pinned'
          ? `no fingerprint is pinned for ${name}`
          : `${name} is not in ${this.#config.knownHostsFile}`;
      return {
        ok: false,
        kind: 'mismatch',
        reason: `it presented ${keyType} key ${fingerprint}, but ${where} (hostKeyPolicy '${this.#config.hostKeyPolicy}')`,
        details,
      };
    }
    this.#learned.set(name, blob);
    const learned: LearnedHostKey = {
      hostName: name,
      host: target.host,
      port: target.port,
      keyType,
      fingerprint,
      knownHostsLine: `${name} ${keyType} ${blob.toString('base64')}`,
    };
    try {
      await this.#config.onHostKeyLearned?.(learned);
      const file = this.#config.knownHostsFile;
      if (file !== undefined) {
        await this.#fileLock.run(() => appendFile(file, `${learned.knownHostsLine}\n`, { mode: 0o600 }));
      }
    } catch (error) {
      // Nothing may run on a key that is not on record where the caller asked for it to be.
      this.#learned.delete(name);
      return {
        ok: false,
        kind: 'unrecorded',
        reason: `its key ${fingerprint} could not be recorded: ${String(redact(error instanceof Error ? error.message : String(error)))}`,
        details,
      };
    }
    return { ok: true, learned };
  }
}
