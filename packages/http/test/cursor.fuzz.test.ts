import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectTypedOutcome, hostileText, RUNS } from '../../core/test/hostile-input.js';
import { decodeCursor, encodeCursor } from '../src/pagination.js';
import { formatApiToken, parseApiToken } from '../src/tokens.js';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

describe('cursors and tokens under hostile input', () => {
  it('decodeCursor — the sort key of a cursor of this list, or a ValidationError', () => {
    const cursor = fc.oneof(
      hostileText([encodeCursor('servers', 'srv-1')]),
      fc.jsonValue().map((v) => b64(JSON.stringify(v))),
      fc.constantFrom(
        b64('{"l":"servers","a":"x","__proto__":{"polluted":1}}'),
        b64('{"__proto__":{"l":"servers","a":"x"}}'),
        b64('{"l":"servers","a":{"toString":"x"}}'),
        b64('{"l":"servers","a":""}'),
        b64(`{"l":"servers","a":"${'9'.repeat(100_000)}"}`),
        b64(`${'['.repeat(100_000)}`),
        b64('{"l":"projects","a":"p-1"}'),
      ),
      fc.string({ unit: 'binary', maxLength: 64 }).map((a) => encodeCursor('servers', a)),
    );
    fc.assert(
      fc.property(cursor, (c) =>
        expectTypedOutcome(
          () => decodeCursor('servers', c),
          (after) => {
            expect(typeof after).toBe('string');
            expect(encodeCursor('servers', after!)).toBeTruthy();
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('decodeCursor — a cursor round-trips its sort key, whatever the key holds', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }), (after) => {
        expect(decodeCursor('servers', encodeCursor('servers', after))).toBe(after);
      }),
      { numRuns: RUNS },
    );
  });

  it('parseApiToken — the parts of a token-shaped string, or undefined', () => {
    const token = formatApiToken({ tenantId: 'acme_eu', tokenId: 'a'.repeat(24), secret: 'S'.repeat(43) });
    fc.assert(
      fc.property(hostileText([token]), (text) =>
        expectTypedOutcome(
          () => parseApiToken(text),
          (parsed) => {
            if (parsed) expect(formatApiToken(parsed)).toBe(text);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });
});
