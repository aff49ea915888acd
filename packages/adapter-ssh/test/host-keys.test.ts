import {
  createSshAdapter,
  fingerprintOf,
  hostFieldMatches,
  knownHostsName,
  parseKnownHosts,
  type SshAdapterOptions,
} from '@fleetward/adapter-ssh';
import { ValidationError } from '@fleetward/core';
import { describe, expect, it } from 'vitest';

// Vectors made by OpenSSH itself: `ssh-keygen -l` for the fingerprint, `ssh-keygen -H` for the
// hashed entries (of `[web-1.example]:2222` and `plain.example`).
const ED25519_BLOB = 'AAAAC3NzaC1lZDI1NTE5AAAAIIicC7UrD6lFNZLk9YjaeEyD4JNERrmRhcjxDJyQYhgZ';
const ED25519_FINGERPRINT = 'SHA256:6Qkr/710Np2Mg9YtOu7Z1EpE9Bfv9pxhU9dG35y9TSI';
const HASHED_PORT = '|1|Vd6IimPWpwtPDLSJbyrKYpRRpNM=|UjDxpAcx2okcwR85VRaKYvL3y3w=';
const HASHED_PLAIN = '|1|A7hvf7mge4YzUecmkkZJw4jBG5g=|RtjPLLwgnm0iJLBQ3O3bVLoh4OA=';

describe('host keys', () => {
  it('fingerprintOf — prints what ssh-keygen -l prints', () => {
    expect(fingerprintOf(Buffer.from(ED25519_BLOB, 'base64'))).toBe(ED25519_FINGERPRINT);
  });

  it('knownHostsName — is the bare host on port 22 and [host]:port elsewhere', () => {
    expect(knownHostsName('web-1.example', 22)).toBe('web-1.example');
    expect(knownHostsName('10.0.0.5', 2222)).toBe('[10.0.0.5]:2222');
  });

  it('parseKnownHosts — reads markers, skips comments and lines that are not keys', () => {
    const entries = parseKnownHosts(
      [
        '# a comment',
        '',
        `web-1.example,10.0.0.5 ssh-ed25519 ${ED25519_BLOB} comment words`,
        `@revoked old.example ssh-ed25519 ${ED25519_BLOB}`,
        `@cert-authority *.example ssh-ed25519 ${ED25519_BLOB}`,
        `@unknown-marker x.example ssh-ed25519 ${ED25519_BLOB}`,
        'broken-line-without-key',
        `mislabelled.example ssh-rsa ${ED25519_BLOB}`,
        `bad-base64.example ssh-ed25519 !!!notbase64`,
      ].join('\n'),
    );
    expect(entries.map((e) => [e.marker, e.hosts, e.keyType, e.line])).toEqual([
      [undefined, 'web-1.example,10.0.0.5', 'ssh-ed25519', 3],
      ['revoked', 'old.example', 'ssh-ed25519', 4],
      ['cert-authority', '*.example', 'ssh-ed25519', 5],
    ]);
  });

  it('hostFieldMatches — matches hashed entries made by ssh-keygen -H, including [host]:port', () => {
    expect(hostFieldMatches(HASHED_PORT, '[web-1.example]:2222')).toBe(true);
    expect(hostFieldMatches(HASHED_PORT, 'web-1.example')).toBe(false);
    expect(hostFieldMatches(HASHED_PORT, '[web-1.example]:2223')).toBe(false);
    expect(hostFieldMatches(HASHED_PLAIN, 'plain.example')).toBe(true);
    expect(hostFieldMatches('|1|garbage', 'plain.example')).toBe(false);
  });

  it('hostFieldMatches — understands lists, wildcards and negation as OpenSSH does', () => {
    expect(hostFieldMatches('a.example,b.example', 'b.example')).toBe(true);
    expect(hostFieldMatches('A.Example', 'a.example')).toBe(true);
    expect(hostFieldMatches('*.example', 'web.example')).toBe(true);
    expect(hostFieldMatches('web-?.example', 'web-1.example')).toBe(true);
    expect(hostFieldMatches('*.example,!db.example', 'db.example')).toBe(false);
    expect(hostFieldMatches('[10.0.0.5]:2222', '[10.0.0.5]:2222')).toBe(true);
    expect(hostFieldMatches('10.0.0.5', '[10.0.0.5]:2222')).toBe(false);
    // A regex metacharacter in a pattern is literal.
    expect(hostFieldMatches('10.0.0.5', '10a0b0c5')).toBe(false);
  });
});

describe('createSshAdapter', () => {
  const valid: SshAdapterOptions = {
    credentials: { username: 'root', password: 'correct horse battery staple' },
    hostKeyPolicy: 'pinned',
  };

  it("createSshAdapter — is named 'ssh' and has exec and close", () => {
    const adapter = createSshAdapter(valid);
    expect(adapter.name).toBe('ssh');
    expect(adapter.exec).toBeDefined();
    expect(adapter.close).toBeDefined();
  });

  it('createSshAdapter — rejects invalid options with their paths and without the secrets in them', () => {
    const secret = 'hunter2-do-not-print';
    const error = (() => {
      try {
        createSshAdapter({
          credentials: { username: 'bad user;', password: secret },
          hostKeyPolicy: 'known-hosts',
          pinnedHostKeys: { 'web-1': ['MD5:aa:bb'] },
          maxChannelsPerConnection: 0,
          bogus: true,
        } as unknown as SshAdapterOptions);
      } catch (e) {
        return e as ValidationError;
      }
      throw new Error('expected a throw');
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.subject).toBe('SshAdapterOptions');
    expect(error.paths).toEqual(
      expect.arrayContaining([
        'credentials.username',
        'knownHostsFile',
        'pinnedHostKeys.web-1.0',
        'maxChannelsPerConnection',
      ]),
    );
    expect(JSON.stringify(error.toJSON())).not.toContain(secret);
    expect(error.message).not.toContain(secret);
  });

  it('createSshAdapter — requires a login method and a way to find credentials', () => {
    for (const options of [
      { credentials: { username: 'root' }, hostKeyPolicy: 'pinned' },
      { hostKeyPolicy: 'pinned' },
      { credentials: { username: 'root', passphrase: 'x', password: 'y' }, hostKeyPolicy: 'tofu' },
    ]) {
      expect(() => createSshAdapter(options as SshAdapterOptions)).toThrow(ValidationError);
    }
  });
});
