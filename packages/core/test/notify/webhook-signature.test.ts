import {
  generateWebhookSecret,
  signWebhook,
  ValidationError,
  verifyWebhook,
  WebhookVerificationError,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

// The published Standard Webhooks / Svix test vector.
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const AT_VECTOR = new Date(VECTOR.timestamp * 1000);

function headers(overrides: Record<string, string | undefined> = {}) {
  return {
    'webhook-id': VECTOR.id,
    'webhook-timestamp': String(VECTOR.timestamp),
    'webhook-signature': VECTOR.signature,
    ...overrides,
  };
}

function failure(fn: () => unknown): WebhookVerificationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(WebhookVerificationError);
    return error as WebhookVerificationError;
  }
  throw new Error('expected a WebhookVerificationError');
}

describe('webhook signatures', () => {
  it('signWebhook — reproduces the published Standard Webhooks test vector', () => {
    expect(signWebhook(VECTOR)).toBe(VECTOR.signature);
    expect(signWebhook({ ...VECTOR, timestamp: AT_VECTOR })).toBe(VECTOR.signature);
    expect(signWebhook({ ...VECTOR, body: new TextEncoder().encode(VECTOR.body) })).toBe(VECTOR.signature);
  });

  it('verifyWebhook — accepts the test vector and returns its id and timestamp', () => {
    const verified = verifyWebhook({
      secret: VECTOR.secret,
      headers: headers(),
      body: VECTOR.body,
      now: AT_VECTOR,
    });
    expect(verified).toEqual({ id: VECTOR.id, timestamp: AT_VECTOR });
  });

  it('verifyWebhook — reads fetch Headers and header names in any case', () => {
    const fetchHeaders = new Headers(headers());
    expect(
      verifyWebhook({ secret: VECTOR.secret, headers: fetchHeaders, body: VECTOR.body, now: AT_VECTOR }).id,
    ).toBe(VECTOR.id);
    const upper = {
      'Webhook-Id': VECTOR.id,
      'WEBHOOK-TIMESTAMP': String(VECTOR.timestamp),
      'Webhook-Signature': VECTOR.signature,
    };
    expect(
      verifyWebhook({ secret: VECTOR.secret, headers: upper, body: VECTOR.body, now: AT_VECTOR }).id,
    ).toBe(VECTOR.id);
  });

  it('verifyWebhook — refuses a tampered body, id or timestamp', () => {
    const base = { secret: VECTOR.secret, body: VECTOR.body, now: AT_VECTOR };
    expect(
      failure(() => verifyWebhook({ ...base, headers: headers(), body: '{"test": 2432232315}' })).reason,
    ).toBe('no-matching-signature');
    expect(
      failure(() => verifyWebhook({ ...base, headers: headers({ 'webhook-id': 'msg_other' }) })).reason,
    ).toBe('no-matching-signature');
    expect(
      failure(() =>
        verifyWebhook({ ...base, headers: headers({ 'webhook-timestamp': String(VECTOR.timestamp + 1) }) }),
      ).reason,
    ).toBe('no-matching-signature');
  });

  it('verifyWebhook — refuses the wrong secret and a signature with another scheme', () => {
    const error = failure(() =>
      verifyWebhook({
        secret: generateWebhookSecret(),
        headers: headers(),
        body: VECTOR.body,
        now: AT_VECTOR,
      }),
    );
    expect(error.reason).toBe('no-matching-signature');
    expect(error.code).toBe('UNAUTHORIZED');
    const v2 = headers({ 'webhook-signature': VECTOR.signature.replace('v1,', 'v1a,') });
    expect(
      failure(() => verifyWebhook({ secret: VECTOR.secret, headers: v2, body: VECTOR.body, now: AT_VECTOR }))
        .message,
    ).toMatch(/no v1 entry/);
  });

  it('verifyWebhook — refuses a timestamp older or newer than the tolerance, and accepts one at its edge', () => {
    const sign = (timestamp: number) =>
      headers({
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook({ ...VECTOR, timestamp }),
      });
    const base = { secret: VECTOR.secret, body: VECTOR.body, now: AT_VECTOR };
    expect(failure(() => verifyWebhook({ ...base, headers: sign(VECTOR.timestamp - 301) })).reason).toBe(
      'timestamp-too-old',
    );
    expect(failure(() => verifyWebhook({ ...base, headers: sign(VECTOR.timestamp + 301) })).reason).toBe(
      'timestamp-too-new',
    );
    expect(verifyWebhook({ ...base, headers: sign(VECTOR.timestamp - 300) }).id).toBe(VECTOR.id);
    expect(verifyWebhook({ ...base, headers: sign(VECTOR.timestamp + 300) }).id).toBe(VECTOR.id);
    expect(
      failure(() => verifyWebhook({ ...base, headers: sign(VECTOR.timestamp - 11), toleranceSeconds: 10 }))
        .reason,
    ).toBe('timestamp-too-old');
  });

  it('verifyWebhook — names a missing header and a timestamp that is not Unix seconds', () => {
    const base = { secret: VECTOR.secret, body: VECTOR.body, now: AT_VECTOR };
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
      const error = failure(() => verifyWebhook({ ...base, headers: headers({ [name]: undefined }) }));
      expect(error.reason).toBe('missing-header');
      expect(error.message).toContain(name);
    }
    expect(
      failure(() =>
        verifyWebhook({ ...base, headers: headers({ 'webhook-timestamp': '2021-02-26T00:00:00Z' }) }),
      ).reason,
    ).toBe('invalid-timestamp');
  });

  it('verifyWebhook — during a rotation accepts either secret and any matching entry of the list', () => {
    const oldSecret = VECTOR.secret;
    const newSecret = generateWebhookSecret();
    const both = `${signWebhook({ ...VECTOR, secret: newSecret })} ${signWebhook({ ...VECTOR, secret: oldSecret })}`;
    const h = headers({ 'webhook-signature': both });
    const base = { body: VECTOR.body, now: AT_VECTOR, headers: h };
    expect(verifyWebhook({ ...base, secret: oldSecret }).id).toBe(VECTOR.id);
    expect(verifyWebhook({ ...base, secret: newSecret }).id).toBe(VECTOR.id);
    expect(verifyWebhook({ ...base, secret: [newSecret, oldSecret] }).id).toBe(VECTOR.id);
    // A receiver that already switched to the new secret refuses a sender still on the old one only.
    const oldOnly = headers({ 'webhook-signature': signWebhook({ ...VECTOR, secret: oldSecret }) });
    expect(failure(() => verifyWebhook({ ...base, headers: oldOnly, secret: newSecret })).reason).toBe(
      'no-matching-signature',
    );
  });

  it('verifyWebhook — a malformed secret is a ValidationError that does not show the secret', () => {
    const bad = 'whsec_not base64!!';
    expect(() =>
      verifyWebhook({ secret: bad, headers: headers(), body: VECTOR.body, now: AT_VECTOR }),
    ).toThrow(ValidationError);
    expect(() => signWebhook({ ...VECTOR, secret: bad })).toThrow(ValidationError);
    expect(() => signWebhook({ ...VECTOR, secret: bad })).not.toThrow(/not base64/);
  });

  it('generateWebhookSecret — is whsec_ and base64 of 32 random bytes by default, 24 to 64 allowed', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32);
    expect(Buffer.from(generateWebhookSecret(24).slice(6), 'base64')).toHaveLength(24);
    expect(generateWebhookSecret()).not.toBe(secret);
    expect(() => generateWebhookSecret(16)).toThrow(ValidationError);
  });
});
