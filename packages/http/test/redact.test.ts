import { AuthorizationError, FleetwardError, ValidationError } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { RequestValidationError } from '../src/problem.js';
import { redactDeep, scrubError, withoutSecrets } from '../src/redact.js';

const SECRET = 'hunter2-Zq';

describe('redactDeep', () => {
  it('redactDeep — replaces secrets in every string and key, and leaves other values alone', () => {
    const at = new Date();
    const value = { a: `x${SECRET}y`, list: [SECRET, 7, true, null], [SECRET]: 1, nested: { at, n: 3 } };
    expect(redactDeep(value, [SECRET])).toEqual({
      a: 'x[REDACTED]y',
      list: ['[REDACTED]', 7, true, null],
      '[REDACTED]': 1,
      nested: { at, n: 3 },
    });
  });

  it('redactDeep — an empty secret redacts nothing', () => {
    expect(redactDeep({ a: 'abc' }, [''])).toEqual({ a: 'abc' });
  });
});

describe('scrubError', () => {
  it('scrubError — gives back an error without secrets unchanged', () => {
    const error = new ValidationError('Thing', [{ path: ['x'], message: 'bad' }]);
    expect(scrubError(error, [SECRET])).toBe(error);
  });

  it('scrubError — keeps a validation error’s class, subject and field paths, redacting its messages', () => {
    const scrubbed = scrubError(
      new ValidationError('ScriptRun.params', [
        { path: ['TOKEN'], message: `${SECRET} is wrong`, code: 'custom' },
      ]),
      [SECRET],
    );
    expect(scrubbed).toBeInstanceOf(ValidationError);
    expect(scrubbed).toMatchObject({
      code: 'VALIDATION_FAILED',
      subject: 'ScriptRun.params',
      issues: [{ path: ['TOKEN'], message: '[REDACTED] is wrong', code: 'custom' }],
    });
    expect((scrubbed as Error).message).not.toContain(SECRET);
    const request = scrubError(new RequestValidationError('body', [{ path: ['a'], message: SECRET }]), [
      SECRET,
    ]);
    expect(request).toBeInstanceOf(RequestValidationError);
    expect(request).toMatchObject({ location: 'body', issues: [{ message: '[REDACTED]' }] });
  });

  it('scrubError — keeps code, fault and retryability of other errors, and drops a cause that holds the secret', () => {
    const cause = new Error(`vault said ${SECRET}`);
    const scrubbed = scrubError(
      new FleetwardError('TRANSPORT_FAILED', 'store failed', { cause, fault: 'remote', retryable: true }),
      [SECRET],
    ) as FleetwardError;
    expect(scrubbed).toMatchObject({
      code: 'TRANSPORT_FAILED',
      fault: 'remote',
      retryable: true,
      message: 'store failed',
    });
    expect(scrubbed.cause).toBeUndefined();
    const denied = scrubError(new AuthorizationError(`may not use ${SECRET}`, {}), [
      SECRET,
    ]) as FleetwardError;
    expect(denied).toMatchObject({ code: 'FORBIDDEN', message: 'may not use [REDACTED]' });
  });

  it('scrubError — turns anything else that mentions a secret into an internal error without it', () => {
    const scrubbed = scrubError(new TypeError(`cannot read ${SECRET}`), [SECRET]) as FleetwardError;
    expect(scrubbed).toBeInstanceOf(FleetwardError);
    expect(scrubbed).toMatchObject({ code: 'INTERNAL', message: 'cannot read [REDACTED]' });
  });
});

describe('withoutSecrets', () => {
  it('withoutSecrets — redacts the result, and throws the scrubbed error', async () => {
    expect(await withoutSecrets([SECRET], async () => ({ echo: SECRET }))).toEqual({ echo: '[REDACTED]' });
    await expect(
      withoutSecrets([SECRET], async () => {
        throw new FleetwardError('CONFLICT', `taken by ${SECRET}`);
      }),
    ).rejects.toMatchObject({ code: 'CONFLICT', message: 'taken by [REDACTED]' });
  });
});
