import { generateKeyPairSync } from 'node:crypto';
import { fingerprintOf, hostFieldMatches, parseKnownHosts } from '@fleetward/adapter-ssh';
import { generateEd25519KeyPair } from '@fleetward/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectTypedOutcome, hostileText, mutated, RUNS } from '../../core/test/hostile-input.js';
import { parseCredentials } from '../src/transport.js';

const ED25519_BLOB = 'AAAAC3NzaC1lZDI1NTE5AAAAIIicC7UrD6lFNZLk9YjaeEyD4JNERrmRhcjxDJyQYhgZ';
const HASHED_PORT = '|1|Vd6IimPWpwtPDLSJbyrKYpRRpNM=|UjDxpAcx2okcwR85VRaKYvL3y3w=';
const KNOWN_HOSTS = [
  [
    '# a comment',
    '',
    `web-1.example,10.0.0.5 ssh-ed25519 ${ED25519_BLOB} comment words`,
    `@revoked old.example ssh-ed25519 ${ED25519_BLOB}`,
    `@cert-authority *.example,!bad.example ssh-ed25519 ${ED25519_BLOB}`,
    `${HASHED_PORT} ssh-ed25519 ${ED25519_BLOB}`,
    `[10.0.0.5]:2222 ssh-ed25519 ${ED25519_BLOB}`,
  ].join('\n'),
];

describe('known_hosts under hostile input', () => {
  it('parseKnownHosts — entries whose key names its own type; never throws', () => {
    fc.assert(
      fc.property(hostileText(KNOWN_HOSTS), (text) => {
        const entries = parseKnownHosts(text);
        expectTypedOutcome(
          () => entries,
          (es) => {
            const lines = text.split(/\r?\n/).length;
            for (const e of es) {
              expect(e.line >= 1 && e.line <= lines).toBe(true);
              expect(e.hosts).not.toBe('');
              expect(fingerprintOf(e.key)).toMatch(/^SHA256:/);
            }
          },
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('parseKnownHosts — comments and blank lines between entries change no entry', () => {
    const keyLines = KNOWN_HOSTS[0]!.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const noise = fc.array(
      fc.oneof(
        fc.constant(''),
        fc.constant(' \t'),
        fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => `# ${s.replace(/[\r\n]/g, ' ')}`),
      ),
      { maxLength: 3 },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(noise, fc.constantFrom(...keyLines)), { maxLength: 6 }), (parts) => {
        const text = parts.flatMap(([n, line]) => [...n, line]).join('\n');
        expect(parseKnownHosts(text).map((e) => [e.marker, e.hosts])).toEqual(
          parseKnownHosts(parts.map(([, line]) => line).join('\n')).map((e) => [e.marker, e.hosts]),
        );
      }),
      { numRuns: 100 },
    );
  });

  it('hostFieldMatches — answers for any pattern and name, wildcards included, in bounded work', () => {
    const glob = fc
      .array(fc.oneof(fc.constantFrom('*', '?', 'a', '.', '!', ','), fc.string({ maxLength: 3 })), {
        maxLength: 60,
      })
      .map((parts) => parts.join(''));
    const name = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.integer({ min: 1, max: 200 }).map((n) => 'a'.repeat(n)),
      fc.constantFrom('[web-1.example]:2222', 'web-1.example'),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          glob,
          hostileText(KNOWN_HOSTS).map((t) => t.slice(0, 500)),
          fc.constant(HASHED_PORT),
        ),
        name,
        (hosts, host) =>
          expectTypedOutcome(
            () => hostFieldMatches(hosts, host),
            (matched) => expect(typeof matched).toBe('boolean'),
          ),
      ),
      { numRuns: RUNS },
    );
  });

  it('hostFieldMatches — a pattern of many wildcards that cannot match answers false', () => {
    // Compiled to a RegExp, this pattern backtracked for minutes: one known_hosts line hung every connection.
    expect(hostFieldMatches(`${'*a'.repeat(40)}b`, 'a'.repeat(60))).toBe(false);
    expect(hostFieldMatches(`${'*a'.repeat(40)}`, 'a'.repeat(60))).toBe(true);
    expect(hostFieldMatches('*.EXAMPLE,!bad.example', 'web.example')).toBe(true);
    expect(hostFieldMatches('*.example,!bad.example', 'bad.example')).toBe(false);
    expect(hostFieldMatches('web-?.example', 'web-10.example')).toBe(false);
  });
});

describe('parseCredentials under hostile keys', () => {
  const ed25519 = generateEd25519KeyPair('fuzz').privateKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const rsaPem = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const rsaEncrypted = rsa.privateKey
    .export({ type: 'pkcs1', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'secret' })
    .toString();
  const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'sec1', format: 'pem' })
    .toString();
  const keys = [ed25519, rsaPem, rsaEncrypted, ecPem];

  it('parseCredentials — parsed credentials or a ValidationError that names no secret', () => {
    const input = fc.record(
      {
        username: fc.oneof(fc.constant('deploy'), fc.string({ maxLength: 70 })),
        privateKey: fc.oneof(fc.constantFrom(...keys), mutated(keys), hostileText(keys)),
        passphrase: fc.oneof(fc.constant('secret'), fc.stringMatching(/^pw-[A-Za-z0-9]{12}$/)),
        password: fc.string({ maxLength: 10 }),
      },
      { requiredKeys: ['username'] },
    );
    fc.assert(
      fc.property(input, (credentials) => {
        expectTypedOutcome(
          () => parseCredentials(credentials, 'SshCredentials'),
          (r) => expect(r.credentials.username).toBe(credentials.username),
        );
        try {
          parseCredentials(credentials, 'SshCredentials');
        } catch (error) {
          const text = JSON.stringify(error) + String((error as Error).message);
          if (credentials.passphrase) expect(text).not.toContain(credentials.passphrase);
          expect(text).not.toContain('PRIVATE KEY-----');
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('host key algorithms', () => {
  it('hostKeyAlgorithmsFor — a key type named like a property of Object.prototype offers only real algorithms', async () => {
    const { hostKeyAlgorithmsFor } = await import('../src/host-keys.js');
    const plain = hostKeyAlgorithmsFor([]);
    for (const name of Object.getOwnPropertyNames(Object.prototype)) {
      const offered = hostKeyAlgorithmsFor([name]);
      expect(offered, name).toEqual(plain);
      for (const a of offered) expect(typeof a, name).toBe('string');
    }
  });
});
