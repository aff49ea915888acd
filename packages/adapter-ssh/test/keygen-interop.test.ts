import { fingerprintOf } from '@fleetward/adapter-ssh';
import { generateEd25519KeyPair } from '@fleetward/core';
import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';

/**
 * ssh2's own `utils.generateKeyPairSync('ed25519')` strips the leading zero bytes of a public
 * key, so one key in 256 is one it cannot read back (mscdex/ssh2#1390). Every key Fleetward
 * makes (rotation, grants, tests) comes from `generateEd25519KeyPair`: ssh2 must read all of them,
 * those whose public key starts with a zero byte above all.
 */
describe('generateEd25519KeyPair — keys ssh2 reads', () => {
  it('ssh2 parses the private and public key of every pair, leading zero bytes included, to the same fingerprint', () => {
    let leadingZero = 0;
    for (let i = 0; i < 20_000 && leadingZero < 3; i++) {
      const pair = generateEd25519KeyPair('');
      const raw = Buffer.from(pair.keyBase64, 'base64').subarray(-32);
      if (raw[0] === 0) leadingZero++;
      else if (i >= 200) continue; // past the first 200, parse only the keys of the risky kind
      const privateKey = ssh2.utils.parseKey(pair.privateKey);
      const publicKey = ssh2.utils.parseKey(pair.publicKey);
      if (privateKey instanceof Error || Array.isArray(privateKey)) throw privateKey;
      if (publicKey instanceof Error || Array.isArray(publicKey)) throw publicKey;
      expect(fingerprintOf(privateKey.getPublicSSH())).toBe(pair.fingerprint);
      expect(fingerprintOf(publicKey.getPublicSSH())).toBe(pair.fingerprint);
    }
    // About 78 in 20,000 start with a zero byte; three are found long before the end.
    expect(leadingZero).toBe(3);
  });
});
