import { FleetwardError, generateEd25519KeyPair, type Logger, MemorySecretStore } from '@fleetward/core';
import { noteSecrets, RedactingLogger, SecretValues } from '@fleetward/core/kernel';
import { describe, expect, it } from 'vitest';
import { capturingLogger } from './capture.js';

// The redaction every record goes through before it reaches the application's logger: the shapes
// of credentials, secret-looking fields, errors reduced to what an operator needs, and a logger
// that misbehaves costing nothing but its record.

describe('RedactingLogger', () => {
  it('info — Authorization values, Bearer tokens, credentials in URLs, key=value secrets and PEM keys are redacted in messages and fields', () => {
    const target = capturingLogger();
    const { privateKey } = generateEd25519KeyPair('k');
    const log = new RedactingLogger(target);
    log.warn(
      {
        request: 'Authorization: Basic ZGVwbG95OnMzY3IzdA==',
        upstream: 'GET https://deploy:pa55w0rd-x@git.example.test/repo.git failed',
        hook: 'https://hooks.example.test/in?sig=abcdef123456&x=1',
        env: 'DB_PASSWORD=opensesame-42 MODE=fast',
        key: privateKey,
        cut: privateKey.slice(0, 60),
        password: 'hunter2-field',
        nested: { apiKey: 'ak-1234567890', credentialId: 'cred-1' },
      },
      'call with Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig refused',
    );
    const [record] = target.records;
    const text = JSON.stringify(record);
    for (const secret of [
      'ZGVwbG95OnMzY3IzdA==',
      'pa55w0rd-x',
      'abcdef123456',
      'opensesame-42',
      'eyJhbGciOiJIUzI1NiJ9',
      privateKey.split('\n')[1]!,
      'hunter2-field',
      'ak-1234567890',
    ]) {
      expect(text, secret).not.toContain(secret);
    }
    expect(record).toMatchObject({
      level: 'warn',
      msg: 'call with Bearer [REDACTED] refused',
      fields: {
        request: 'Authorization: [REDACTED]',
        upstream: 'GET https://[REDACTED]@git.example.test/repo.git failed',
        env: 'DB_PASSWORD=[REDACTED] MODE=fast',
        password: '[REDACTED]',
        // A reference to a secret is not one: ids stay readable.
        nested: { apiKey: '[REDACTED]', credentialId: 'cred-1' },
      },
    });
  });

  it('error — an error in the fields keeps its type, code and message only: no stack, cause or details', () => {
    const target = capturingLogger();
    const cause = new Error('inner with password=swordfish-9');
    const error = new FleetwardError('TRANSPORT_FAILED', 'connection reset', {
      cause,
      details: { stdout: 'command output here' },
    });
    new RedactingLogger(target).error({ err: error, at: new Date('2026-01-02T03:04:05.000Z') }, 'failed');
    expect(target.records[0]!.fields).toEqual({
      err: { type: 'FleetwardError', code: 'TRANSPORT_FAILED', message: 'connection reset' },
      at: '2026-01-02T03:04:05.000Z',
    });
  });

  it('child — bindings reach a target without child on every record; cycles and functions do not break it', () => {
    const records: unknown[][] = [];
    const bare: Logger = {
      error: (...args: unknown[]) => void records.push(args),
      warn: (...args: unknown[]) => void records.push(args),
      info: (...args: unknown[]) => void records.push(args),
      debug: (...args: unknown[]) => void records.push(args),
    };
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic['self'] = cyclic;
    new RedactingLogger(bare)
      .child({ tenantId: 'acme' })
      .child({ jobId: 'j1' })
      .info({ cyclic, fn: () => 1 }, 'hello');
    expect(records).toEqual([
      [{ tenantId: 'acme', jobId: 'j1', cyclic: { name: 'loop', self: '[circular]' } }, 'hello'],
    ]);
  });

  it('info — a logger that throws loses the record, never the caller', () => {
    const throwing: Logger = {
      error: () => {
        throw new Error('disk full');
      },
      warn: () => {
        throw new Error('disk full');
      },
      info: () => {
        throw new Error('disk full');
      },
      debug: () => {
        throw new Error('disk full');
      },
      child: () => {
        throw new Error('no children');
      },
    };
    const log = new RedactingLogger(throwing);
    expect(() => log.child({ a: 1 }).error({ b: 2 }, 'still fine')).not.toThrow();
  });

  it('withSecrets and noteSecrets — known values are scrubbed wherever they appear, keys included', async () => {
    const target = capturingLogger();
    const known = new SecretValues();
    const store = noteSecrets(new MemorySecretStore(), known);
    await store.set('acme/webhook', JSON.stringify({ current: 'opaque-hidden-value', previous: [] }));
    const log = new RedactingLogger(target, known).withSecrets(['scoped-secret-1']);
    log.info(
      { 'opaque-hidden-value': 'x', note: 'has scoped-secret-1 inside' },
      'quoting opaque-hidden-value',
    );
    expect(target.records[0]).toEqual({
      level: 'info',
      fields: { '[REDACTED]': 'x', note: 'has [REDACTED] inside' },
      msg: 'quoting [REDACTED]',
    });
  });
});
