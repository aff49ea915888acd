import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A throw-away test CA and a server certificate it signed for `localhost` and 127.0.0.1. */
export interface TestCertificates {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** SHA-256 fingerprint of the server certificate, `AA:BB:…`. */
  fingerprint256: string;
}

/**
 * Generates the certificates with the `openssl` CLI (node:crypto cannot issue certificates).
 * Keys are EC P-256 so generation is quick; nothing outlives the call but the PEM strings.
 */
export async function createTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetward-winrm-ca-'));
  const file = (name: string): string => join(dir, name);
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run('openssl', [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      file('ca.key'),
      '-out',
      file('ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=Fleetward WinRM fake test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await run('openssl', [
      'req',
      '-new',
      ...ec,
      '-keyout',
      file('server.key'),
      '-out',
      file('server.csr'),
      '-subj',
      '/CN=localhost',
    ]);
    await writeFile(
      file('server.ext'),
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
        'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
    );
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      file('server.csr'),
      '-CA',
      file('ca.pem'),
      '-CAkey',
      file('ca.key'),
      '-CAcreateserial',
      '-out',
      file('server.pem'),
      '-days',
      '2',
      '-sha256',
      '-extfile',
      file('server.ext'),
    ]);
    const [caPem, certPem, keyPem] = await Promise.all(
      ['ca.pem', 'server.pem', 'server.key'].map((name) => readFile(file(name), 'utf8')),
    );
    return {
      caPem: caPem as string,
      certPem: certPem as string,
      keyPem: keyPem as string,
      fingerprint256: new X509Certificate(certPem as string).fingerprint256,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
