import {
  AccessRequestSchemas,
  canonicalJson,
  compileSelector,
  ENTITY_SCHEMAS,
  matchesSelector,
  redact,
  ServerSchemas,
  ServerSelectorSchema,
  ValidationError,
  validate,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

describe('domain', () => {
  it('validate — names every bad field of a server with its path', () => {
    const error = (() => {
      try {
        validate(
          ServerSchemas.input,
          {
            tenantId: 't',
            accountId: 'a',
            provider: 'mainframe',
            name: 'x\u0007',
            address: 'host name; rm -rf /',
            labels: { env: 'has spaces' },
            os: { family: 'beos', id: 'x' },
          },
          'Server',
        );
      } catch (e) {
        return e as ValidationError;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect(error!.subject).toBe('Server');
    expect(error!.paths).toEqual(
      expect.arrayContaining(['provider', 'name', 'address', 'labels.env', 'os.family']),
    );
    expect(error!.toJSON()).toMatchObject({ code: 'VALIDATION_FAILED', fault: 'caller' });
  });

  it('validate — accepts hostnames and IPv4/IPv6 literals as addresses, nothing shell-like', () => {
    const ok = ['web-1.example.com', '10.250.0.2', '::1', 'fe80::1', 'localhost'];
    const bad = ['$(id)', 'a b', 'host;reboot', '`x`', '-oProxyCommand=x', 'host\nname', ''];
    const parse = (address: string) =>
      ServerSchemas.input.safeParse({ tenantId: 't', accountId: 'a', provider: 'ssh', name: 'n', address })
        .success;
    expect(ok.map(parse)).toEqual(ok.map(() => true));
    expect(bad.map(parse)).toEqual(bad.map(() => false));
  });

  it('ServerSelectorSchema — In needs values and Exists takes none', () => {
    const r = ServerSelectorSchema.safeParse({
      expressions: [
        { key: 'a', operator: 'In' },
        { key: 'b', operator: 'Exists', values: ['x'] },
      ],
    });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toEqual([
      'expressions.0.values',
      'expressions.1.values',
    ]);
  });

  it('matchesSelector — an empty selector matches nothing', () => {
    const s = { id: 'a', provider: 'ssh', accountId: 'x', labels: { env: 'prod' } };
    expect(matchesSelector(s, {})).toBe(false);
    expect(matchesSelector(s, { all: true })).toBe(true);
  });

  it('matchesSelector / compileSelector — a selector whose only criteria are empty lists or maps matches nothing', () => {
    const s = { id: 'a', provider: 'ssh', accountId: 'x', labels: { env: 'prod' } };
    const server = { ...s, name: 'a', tenantId: 't', version: 1, createdAt: '', updatedAt: '' } as never;
    for (const selector of [
      { labels: {} },
      { expressions: [] },
      { ids: [] },
      { labels: {}, expressions: [] },
    ]) {
      expect(matchesSelector(s, selector)).toBe(false);
      expect(compileSelector(selector)(server)).toBe(false);
    }
  });

  it('AccessRequest — reason and ticket are required', () => {
    const r = AccessRequestSchemas.input.safeParse({ tenantId: 't' });
    expect(r.success).toBe(false);
    const paths = r.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(
      expect.arrayContaining(['reason', 'ticket', 'serverIds', 'durationMinutes', 'requiredApprovals']),
    );
  });

  it('ENTITY_SCHEMAS — every entity input requires a tenantId', () => {
    for (const [kind, schemas] of Object.entries(ENTITY_SCHEMAS)) {
      const r = schemas.input.safeParse({});
      expect(r.success, kind).toBe(false);
      expect(
        r.error!.issues.some((i) => i.path[0] === 'tenantId'),
        kind,
      ).toBe(true);
    }
  });

  it('redact — hides secret-named fields and PEM private keys, keeps the rest', () => {
    const pem = '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----';
    expect(
      redact({
        password: 'p',
        apiKey: 'k',
        Authorization: 'Bearer x',
        note: `key: ${pem}`,
        host: 'h',
        list: [{ token: 't' }],
        credential: 'c',
        credentialId: 'cred-1',
        secretRef: 'tenants/a/credentials/cred-1',
        tokenHash: 'ab12',
        tokenPrefix: 'fwt_a',
      }),
    ).toEqual({
      password: '[REDACTED]',
      apiKey: '[REDACTED]',
      Authorization: '[REDACTED]',
      note: 'key: [REDACTED PRIVATE KEY]',
      host: 'h',
      list: [{ token: '[REDACTED]' }],
      credential: '[REDACTED]',
      // Identifiers and fingerprints of secrets are kept: an audit trail needs them.
      credentialId: 'cred-1',
      secretRef: 'tenants/a/credentials/cred-1',
      tokenHash: 'ab12',
      tokenPrefix: 'fwt_a',
    });
  });

  it('canonicalJson — equal values give equal text whatever the key order', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: undefined } })).toBe(
      canonicalJson({ a: { d: [2, { e: 0, f: 1 }] }, b: 1 }),
    );
  });
});
