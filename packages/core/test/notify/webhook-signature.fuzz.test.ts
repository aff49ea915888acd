import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import {
  decodeSigningSecrets,
  encodeSigningSecrets,
  generateWebhookSecret,
  signWebhook,
  type VerifyWebhookInput,
  verifyWebhook,
  WebhookVerificationError,
} from '../../src/notify/webhook-signature.js';
import { expectTypedOutcome, hostileText, RUNS } from '../hostile-input.js';

const secret = generateWebhookSecret();
const other = generateWebhookSecret();
const now = new Date('2026-12-07T10:00:00Z');
const ts = Math.floor(now.getTime() / 1000);
const body = '{"type":"patch.completed","data":{"id":"run-1"}}';
const good = signWebhook({ secret, id: 'msg_1', timestamp: ts, body });

/** A header value as a careless integrator might pass it: strings, arrays, or not a string at all. */
const headerValue = fc.oneof(
  { weight: 4, arbitrary: hostileText([good, `${good} v1,${'A'.repeat(44)}`, String(ts), 'msg_1']) },
  { weight: 2, arbitrary: fc.array(fc.string({ maxLength: 60 }), { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.anything() },
);

const headers = fc.oneof(
  fc.record(
    {
      'webhook-id': fc.oneof(fc.constant('msg_1'), headerValue),
      'Webhook-Timestamp': fc.oneof(fc.constant(String(ts)), fc.integer().map(String), headerValue),
      'webhook-signature': fc.oneof(fc.constant(good), headerValue),
      ['__proto__']: headerValue,
      constructor: headerValue,
    },
    { requiredKeys: [] },
  ),
  fc.dictionary(fc.string({ maxLength: 20 }), headerValue, { maxKeys: 5 }),
  fc
    .dictionary(fc.constantFrom('webhook-id', 'webhook-timestamp', 'webhook-signature'), fc.string())
    .map((d) => new Headers(Object.entries(d).filter(([, v]) => !/[\r\n\0]/.test(v) && v.trim() === v))),
);

function signatureHeader(headers: VerifyWebhookInput['headers']): string {
  if (headers instanceof Headers) return headers.get('webhook-signature') ?? '';
  const record = headers as Record<string, unknown>;
  const value = record[Object.keys(record).find((k) => k.toLowerCase() === 'webhook-signature') ?? ''];
  return Array.isArray(value) ? value.join(' ') : String(value);
}

describe('webhook signatures under hostile input', () => {
  it('verifyWebhook — verified only with the right signature; otherwise a FleetwardError', () => {
    const input: fc.Arbitrary<VerifyWebhookInput> = fc.record({
      secret: fc.oneof(
        fc.constant(secret),
        fc.constant([other, secret]),
        hostileText([secret]),
        fc.array(hostileText([secret]), { maxLength: 2 }),
      ),
      headers,
      body: fc.oneof(fc.constant(body), fc.string(), fc.uint8Array({ maxLength: 64 })),
      toleranceSeconds: fc.oneof(
        fc.constant(undefined),
        fc.constantFrom(0, 300, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e300),
      ),
      now: fc.oneof(fc.constant(now), fc.date({ noInvalidDate: false })),
    }) as fc.Arbitrary<VerifyWebhookInput>;
    fc.assert(
      fc.property(input, (i) =>
        expectTypedOutcome(
          () => verifyWebhook(i),
          (verified) => {
            // Anything verified carries a v1 entry that one of the secrets makes for its id and time.
            const secrets = typeof i.secret === 'string' ? [i.secret] : i.secret;
            const at = verified.timestamp.getTime() / 1000;
            const made = secrets.map((s) =>
              signWebhook({ secret: s, id: verified.id, timestamp: at, body: i.body }),
            );
            const offered = signatureHeader(i.headers).split(' ');
            expect(made.some((m) => offered.includes(m))).toBe(true);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('verifyWebhook — a NaN tolerance or an invalid clock is refused, never read as "no freshness check"', () => {
    const stale = signWebhook({ secret, id: 'msg_1', timestamp: ts - 86_400, body });
    const headers = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(ts - 86_400),
      'webhook-signature': stale,
    };
    for (const over of [
      { toleranceSeconds: Number.NaN },
      { toleranceSeconds: -5 },
      { now: new Date(Number.NaN) },
    ]) {
      expect(() => verifyWebhook({ secret, headers, body, now, ...over })).toThrow(ValidationError);
    }
    expect(() => verifyWebhook({ secret, headers, body, now })).toThrow(WebhookVerificationError);
  });

  it('verifyWebhook — a secret with a long run of = inside is refused at once', () => {
    // `/=+$/` took 30 s on 100,000 characters: this test would time out before its fix.
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': good };
    expect(() => verifyWebhook({ secret: `whsec_A${'='.repeat(200_000)}A`, headers, body, now })).toThrow(
      ValidationError,
    );
  });

  it('verifyWebhook — a header value that is not a string is a missing header, not a TypeError', () => {
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': 42 };
    expect(() =>
      verifyWebhook({ secret, headers: headers as unknown as VerifyWebhookInput['headers'], body, now }),
    ).toThrow(WebhookVerificationError);
  });

  it('decodeSigningSecrets — the secrets as plain strings, or a ValidationError that echoes nothing', () => {
    const stored = fc.oneof(
      hostileText([
        encodeSigningSecrets({ current: secret, previous: [{ secret: other, until: now.toISOString() }] }),
        secret,
      ]),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record({
          current: fc.oneof(fc.constant(secret), fc.anything()),
          previous: fc.oneof(
            fc.array(
              fc.record({
                secret: fc.oneof(fc.constant(other), fc.anything()),
                until: fc.oneof(fc.constant(now.toISOString()), fc.anything()),
              }),
            ),
            fc.anything(),
          ),
        })
        .map((v) => JSON.stringify(v)),
      fc.constantFrom(
        `{"current":"${secret}","previous":[{"secret":"${other}","until":"2030-01-01T00:00:00Z","__proto__":{"polluted":1}}]}`,
        `{"__proto__":{"polluted":1},"current":"${secret}","previous":[]}`,
        `{"current":"${secret}","previous":[null,1,"x",{"constructor":{"prototype":{"polluted":1}}}]}`,
      ),
    );
    fc.assert(
      fc.property(stored, (text) => {
        expectTypedOutcome(
          () => decodeSigningSecrets(text),
          (value) => {
            expect(typeof value.current).toBe('string');
            for (const p of value.previous) {
              expect(Object.keys(p).sort()).toEqual(['secret', 'until']);
              expect(typeof p.secret).toBe('string');
              expect(typeof p.until).toBe('string');
            }
          },
        );
        try {
          decodeSigningSecrets(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          if (text.length > 12) expect(JSON.stringify(error)).not.toContain(text);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
