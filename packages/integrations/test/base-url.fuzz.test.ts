import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectTypedOutcome, hostileText, RUNS } from '../../core/test/hostile-input.js';
import { parseBaseUrl } from '../src/http.js';

const URLS = [
  'https://acme.atlassian.net/',
  'https://acme.service-now.com/api//',
  'http://127.0.0.1:8080/jira',
  'http://[::1]:9000',
];

describe('parseBaseUrl under hostile input', () => {
  it('parseBaseUrl — an http(s) origin and path without credentials, query or fragment, or a ValidationError', () => {
    const input = fc.oneof(
      hostileText(URLS),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.webUrl().map((u) => u.replace('://', '://user:secret@')),
      fc.constantFrom(
        'https://user:pass@host/',
        'javascript:alert(1)',
        'file:///etc/passwd',
        'http://10.0.0.1/',
        'https://host/%2e%2e/',
        'https://host\\@evil/',
        'https://ho\0st/',
        `https://${'a'.repeat(70_000)}.example/`,
      ),
    );
    fc.assert(
      fc.property(input, fc.boolean(), (text, insecure) =>
        expectTypedOutcome(
          () => parseBaseUrl('Jira', text, insecure),
          (base) => {
            const url = new URL(base);
            expect(['http:', 'https:']).toContain(url.protocol);
            expect(url.username + url.password + url.search + url.hash).toBe('');
            expect(base.endsWith('/')).toBe(false);
            // Loopback is all of 127.0.0.0/8 (`http://127.0` is 127.0.0.0), ::1 and localhost.
            if (!insecure && url.protocol === 'http:')
              expect(/^127(\.\d{1,3}){3}$|^\[::1\]$|^localhost$/.test(url.hostname)).toBe(true);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseBaseUrl — a path of 200,000 slashes before its end is answered at once', () => {
    // `/\/+$/` took 13 s on 50,000 slashes: this test would time out before its fix.
    expect(parseBaseUrl('Jira', `https://h.example/${'/'.repeat(200_000)}x//`)).toBe(
      `https://h.example/${'/'.repeat(200_000)}x`,
    );
  });
});
