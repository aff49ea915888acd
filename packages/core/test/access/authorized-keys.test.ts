import { readFile } from 'node:fs/promises';
import { describeIfAvailable } from '@fleetward/testkit';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type AuthorizedKeyEntry,
  type AuthorizedKeysLine,
  fingerprintOf,
  fleetwardMarker,
  isCloudAgentManaged,
  optionOf,
  parseAuthorizedKeys,
  parsePublicKey,
  renderAuthorizedKeyLine,
  renderAuthorizedKeys,
  withFleetwardMarker,
} from '../../src/access/authorized-keys.js';
import { generateEd25519KeyPair } from '../../src/access/keygen.js';
import { encodeString } from '../../src/access/ssh-wire.js';
import { ValidationError } from '../../src/errors.js';
import { keygenFingerprint, keygenUnavailable, run, SSH_KEYGEN, sshKeygen, tempDir } from './support.js';

const ED = generateEd25519KeyPair('alice@laptop');
const OTHER = generateEd25519KeyPair('bob');

function keyLine(lines: AuthorizedKeysLine[], index: number): AuthorizedKeyEntry {
  const line = lines[index];
  if (line?.kind !== 'key') throw new Error(`line ${index} is ${line?.kind}: ${JSON.stringify(line)}`);
  return line;
}

function validationPaths(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).paths;
  }
  throw new Error('expected a ValidationError');
}

/** A blob of the given type holding the given body parts, as base64. */
function blobOf(type: string, ...parts: Buffer[]): string {
  return Buffer.concat([encodeString(type), ...parts.map((p) => encodeString(p))]).toString('base64');
}

describe('parseAuthorizedKeys', () => {
  it('parseAuthorizedKeys — keeps every line and renders the file back byte for byte', () => {
    const file = [
      '# team keys',
      '',
      `   ${ED.publicKey}`,
      '\t',
      `restrict,command="echo \\"hi, there\\"",from="10.0.0.0/8,!10.0.9.*" ${OTHER.publicKey}`,
      `${ED.keyType} ${ED.keyBase64}\r`,
      'this is not a key',
      `cert-authority,principals="alice,deploy" ${OTHER.keyType} ${OTHER.keyBase64} user-ca-2026`,
      '',
    ].join('\n');
    const lines = parseAuthorizedKeys(file);
    expect(lines.map((l) => l.kind)).toEqual([
      'comment',
      'blank',
      'key',
      'blank',
      'key',
      'key',
      'invalid',
      'key',
    ]);
    expect(lines.map((l) => l.lineNo)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(renderAuthorizedKeys(lines)).toBe(file);
    expect(keyLine(lines, 5)).toMatchObject({
      comment: '',
      keyBase64: ED.keyBase64,
      raw: `${ED.keyType} ${ED.keyBase64}\r`,
    });
    expect(keyLine(lines, 2)).toMatchObject({
      comment: 'alice@laptop',
      options: [],
      fingerprint: ED.fingerprint,
    });
  });

  it('parseAuthorizedKeys — unescapes quoted values with commas, blanks and escaped quotes as sshd does', () => {
    const line = `RESTRICT,command="echo \\"a, b\\" c:\\\\d",from="10.0.0.0/8,!10.0.9.*",environment="X=a b",pty ${ED.keyType} ${ED.keyBase64} c`;
    const entry = keyLine(parseAuthorizedKeys(line), 0);
    expect(entry.options).toEqual([
      { name: 'restrict' },
      // Only \" is an escape in sshd: the other backslashes stay as they are.
      { name: 'command', value: 'echo "a, b" c:\\\\d' },
      { name: 'from', value: '10.0.0.0/8,!10.0.9.*' },
      { name: 'environment', value: 'X=a b' },
      { name: 'pty' },
    ]);
    expect(optionOf(entry, 'FROM')?.value).toBe('10.0.0.0/8,!10.0.9.*');
    expect(optionOf(entry, 'expiry-time')).toBeUndefined();
    expect(entry.comment).toBe('c');
  });

  it('parseAuthorizedKeys — a key type word inside a quoted value does not end the options', () => {
    const line = `command="ssh-ed25519 ${ED.keyBase64}" ${OTHER.publicKey}`;
    const entry = keyLine(parseAuthorizedKeys(line), 0);
    expect(entry.keyBase64).toBe(OTHER.keyBase64);
    expect(entry.options).toEqual([{ name: 'command', value: `ssh-ed25519 ${ED.keyBase64}` }]);
  });

  it('parseAuthorizedKeys — cert-authority lines keep their principals', () => {
    const entry = keyLine(parseAuthorizedKeys(`cert-authority,principals="alice,deploy" ${ED.publicKey}`), 0);
    expect(optionOf(entry, 'cert-authority')).toEqual({ name: 'cert-authority' });
    expect(optionOf(entry, 'principals')?.value).toBe('alice,deploy');
  });

  it.each([
    ['bad base64', `${ED.keyType} ${ED.keyBase64.slice(0, -3)}!!= c`, 'not valid base64'],
    [
      'unpadded base64',
      `ssh-ed25519 ${blobOf('ssh-ed25519', Buffer.alloc(32), Buffer.alloc(1)).replace(/=+$/, '')}`,
      'not valid base64',
    ],
    ['base64 cut short', `${ED.keyType} ${ED.keyBase64.slice(0, -1)}`, 'not valid base64'],
    ['blob of another type', `ssh-rsa ${ED.keyBase64} c`, 'holds a "ssh-ed25519" key'],
    ['truncated blob', `ssh-ed25519 ${blobOf('ssh-ed25519', Buffer.alloc(31))}`, '32 bytes'],
    [
      'trailing bytes',
      `ssh-ed25519 ${blobOf('ssh-ed25519', Buffer.alloc(32), Buffer.alloc(1))}`,
      'trailing bytes',
    ],
    [
      'wrong ECDSA curve',
      `ecdsa-sha2-nistp256 ${blobOf('ecdsa-sha2-nistp256', Buffer.from('nistp384'), Buffer.alloc(97, 4))}`,
      'curve',
    ],
    ['unknown key type', `ssh-foo ${ED.keyBase64}`, 'unknown key type'],
    ['key type alone', 'ssh-ed25519', 'no key data'],
    ['unquoted value', `from=10.0.0.1 ${ED.publicKey}`, 'not in double quotes'],
    ['unterminated quote', `command="echo ${ED.publicKey}`, 'unterminated quote'],
    ['escaped closing quote', `command="echo\\" ${ED.publicKey}`, 'unterminated quote'],
    ['empty option', `restrict,,pty ${ED.publicKey}`, 'empty option'],
    ['junk after a value', `command="a"b ${ED.publicKey}`, 'after option'],
    ['options and no key', 'restrict,pty', 'no key after the options'],
  ])('parseAuthorizedKeys — %s is an invalid line with the reason', (_name, line, reason) => {
    const [parsed] = parseAuthorizedKeys(line);
    expect(parsed?.kind).toBe('invalid');
    expect(parsed && 'error' in parsed ? parsed.error : '').toContain(reason);
    expect(renderAuthorizedKeys(parseAuthorizedKeys(line))).toBe(`${line}\n`);
  });

  /**
   * Parses `text` while recording every string a regular expression is run on (every match,
   * test, replace and split goes through RegExp.prototype.exec once it is replaced): how many
   * regex runs the parse took, and the longest run of blanks any of them was given.
   */
  const parseRecordingRegexes = (text: string) => {
    const inputs: string[] = [];
    const exec = RegExp.prototype.exec;
    const spy = vi.spyOn(RegExp.prototype, 'exec').mockImplementation(function (this: RegExp, input: string) {
      inputs.push(String(input));
      return exec.call(this, input);
    });
    let lines: AuthorizedKeysLine[];
    try {
      lines = parseAuthorizedKeys(text);
    } finally {
      spy.mockRestore();
    }
    const longestBlankRun = Math.max(
      0,
      ...inputs.flatMap((i) => (i.match(/[ \t\r]+/g) ?? []).map((r) => r.length)),
    );
    return { lines, regexRuns: inputs.length, longestBlankRun };
  };

  it('parseAuthorizedKeys — long runs of blanks never reach a regular expression: the work does not grow with them', () => {
    // Quadratic backtracking over blanks (what `/[ \t\r]+$/` did) needs a regex to see them;
    // a parser that skips blanks with loops hands every regex the same strings whatever their length.
    const file = (blanks: string) =>
      `${ED.keyType}${blanks}${ED.keyBase64}${blanks}c${blanks}\nx${blanks}y\n${blanks}\r\n`;
    const short = parseRecordingRegexes(file(' \t'));
    const long = parseRecordingRegexes(file(' \t'.repeat(10_000)));
    expect(long.lines.map((l) => l.kind)).toEqual(['key', 'invalid', 'blank']);
    expect(keyLine(long.lines, 0).comment).toBe('c');
    expect(short.lines.map((l) => l.kind)).toEqual(long.lines.map((l) => l.kind));
    expect(long.regexRuns).toBe(short.regexRuns);
    expect(long.longestBlankRun).toBe(short.longestBlankRun);
  });

  it('parseAuthorizedKeys — for any line, stretching the blanks between its fields changes neither the result nor the regex work', () => {
    // No lone double quote: blanks inside quotes are content, not separators.
    const field = fc.constantFrom(
      ED.keyType,
      ED.keyBase64,
      'restrict,pty',
      'command="echo hi",from="10.0.0.0/8"',
      '#',
      'ssh-rsa',
      'x',
      'comment@host',
      'fleetward:grant=g-1',
      '\r',
    );
    fc.assert(
      fc.property(
        fc.array(field, { minLength: 1, maxLength: 6 }),
        fc.array(fc.constantFrom(' ', '\t'), { minLength: 1, maxLength: 7 }),
        fc.integer({ min: 200, max: 5000 }),
        (fields, separators, stretch) => {
          const line = (scale: number) =>
            fields
              .map((f, i) => (i === 0 ? f : `${separators[i % separators.length]!.repeat(scale)}${f}`))
              .join('');
          const short = parseRecordingRegexes(line(1));
          const long = parseRecordingRegexes(line(stretch));
          const shape = (l: AuthorizedKeysLine) => ('error' in l ? `${l.kind}: ${l.error}` : l.kind);
          expect(long.lines.map(shape)).toEqual(short.lines.map(shape));
          expect(long.regexRuns).toBe(short.regexRuns);
          expect(long.longestBlankRun).toBeLessThanOrEqual(Math.max(short.longestBlankRun, 1));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('parseAuthorizedKeys — an empty file has no lines, and a missing final newline is added on render', () => {
    expect(parseAuthorizedKeys('')).toEqual([]);
    expect(renderAuthorizedKeys([])).toBe('');
    expect(renderAuthorizedKeys(parseAuthorizedKeys(ED.publicKey))).toBe(`${ED.publicKey}\n`);
    expect(parseAuthorizedKeys('\n').map((l) => l.kind)).toEqual(['blank']);
  });
});

describe('renderAuthorizedKeyLine', () => {
  it('renderAuthorizedKeyLine — quotes values, escapes their quotes, and round-trips through the parser', () => {
    const options = [
      { name: 'restrict' },
      { name: 'command', value: 'printf "%s\\n" "a, b" \\"x\\"' },
      { name: 'from', value: '10.0.0.0/8,!10.0.9.*' },
      { name: 'expiry-time', value: '20260131120000Z' },
    ];
    const line = renderAuthorizedKeyLine({
      options,
      keyType: ED.keyType,
      keyBase64: ED.keyBase64,
      comment: 'a b',
    });
    expect(line).toBe(
      `restrict,command="printf \\"%s\\n\\" \\"a, b\\" \\\\"x\\\\"",from="10.0.0.0/8,!10.0.9.*",expiry-time="20260131120000Z" ${ED.keyType} ${ED.keyBase64} a b`,
    );
    expect(keyLine(parseAuthorizedKeys(line), 0)).toMatchObject({
      options,
      comment: 'a b',
      keyBase64: ED.keyBase64,
    });
  });

  it('renderAuthorizedKeyLine — no comment means no trailing blank', () => {
    expect(renderAuthorizedKeyLine({ keyType: ED.keyType, keyBase64: ED.keyBase64 })).toBe(
      `${ED.keyType} ${ED.keyBase64}`,
    );
  });

  it.each([
    [
      'a newline in a value',
      { options: [{ name: 'command', value: 'a\nssh-ed25519 AAAA' }] },
      'options.0.value',
    ],
    ['a CR in a value', { options: [{ name: 'from', value: 'a\r' }] }, 'options.0.value'],
    ['a NUL in a value', { options: [{ name: 'from', value: 'a\0' }] }, 'options.0.value'],
    [
      'a value ending in a backslash',
      { options: [{ name: 'command', value: 'echo \\' }] },
      'options.0.value',
    ],
    ['an upper-case option name', { options: [{ name: 'Restrict' }] }, 'options.0.name'],
    ['an option name with a quote', { options: [{ name: 'a"b' }] }, 'options.0.name'],
    ['an option name with a comma', { options: [{ name: 'pty,restrict' }] }, 'options.0.name'],
    ['a flag with a value', { options: [{ name: 'restrict', value: 'yes' }] }, 'options.0.value'],
    ['a valued option without value', { options: [{ name: 'from' }] }, 'options.0.value'],
    [
      'command twice',
      {
        options: [
          { name: 'command', value: 'a' },
          { name: 'command', value: 'b' },
        ],
      },
      'options.1.name',
    ],
    [
      'a malformed expiry-time',
      { options: [{ name: 'expiry-time', value: '2026-01-31' }] },
      'options.0.value',
    ],
    [
      'an impossible expiry-time date',
      { options: [{ name: 'expiry-time', value: '20260230Z' }] },
      'options.0.value',
    ],
    [
      'an environment without NAME=',
      { options: [{ name: 'environment', value: 'novalue' }] },
      'options.0.value',
    ],
    ['a newline in the comment', { comment: 'a\nssh-rsa AAAA' }, 'comment'],
    ['a CR in the comment', { comment: 'a\r' }, 'comment'],
    ['an unknown key type', { keyType: 'ssh-foo' }, 'keyType'],
    [
      'base64 with a blank',
      { keyBase64: `${ED.keyBase64.slice(0, 8)} ${ED.keyBase64.slice(8)}` },
      'keyBase64',
    ],
    ['a key of another type', { keyType: 'ssh-rsa' }, 'keyBase64'],
  ])('renderAuthorizedKeyLine — refuses %s', (_name, change, path) => {
    const entry = { keyType: ED.keyType, keyBase64: ED.keyBase64, comment: 'c', ...change };
    expect(validationPaths(() => renderAuthorizedKeyLine(entry))).toContain(path);
  });

  it('renderAuthorizedKeyLine — unknown well-formed option names pass: which ones sshd knows depends on its version', () => {
    const line = renderAuthorizedKeyLine({
      options: [{ name: 'future-flag' }],
      keyType: ED.keyType,
      keyBase64: ED.keyBase64,
    });
    expect(line.startsWith('future-flag ')).toBe(true);
  });
});

describe('renderAuthorizedKeys', () => {
  it('renderAuthorizedKeys — re-renders only the edited line and keeps the others byte for byte', () => {
    const file = `#  keep   me\n${ED.publicKey}\r\nfrom="10.0.0.1"   ${OTHER.publicKey}   \n`;
    const lines = parseAuthorizedKeys(file);
    const edited = lines.map((line) =>
      line.kind === 'key' && line.keyBase64 === OTHER.keyBase64
        ? { ...line, options: [...line.options, { name: 'expiry-time', value: '20260131Z' }] }
        : line,
    );
    expect(renderAuthorizedKeys(edited)).toBe(
      `#  keep   me\n${ED.publicKey}\r\nfrom="10.0.0.1",expiry-time="20260131Z" ${OTHER.publicKey}\n`,
    );
  });

  it('renderAuthorizedKeys — a new entry with an empty raw is rendered from its fields', () => {
    const lines = parseAuthorizedKeys(`${ED.publicKey}\n`);
    const added: AuthorizedKeyEntry = {
      ...keyLine(parseAuthorizedKeys(OTHER.publicKey), 0),
      raw: '',
      lineNo: 2,
    };
    expect(renderAuthorizedKeys([...lines, added])).toBe(`${ED.publicKey}\n${OTHER.publicKey}\n`);
  });

  it('renderAuthorizedKeys — refuses a raw that would inject lines or that lies about its kind', () => {
    expect(
      validationPaths(() =>
        renderAuthorizedKeys([{ kind: 'comment', lineNo: 1, raw: `# x\n${ED.publicKey}` }]),
      ),
    ).toEqual(['0.raw']);
    expect(
      validationPaths(() => renderAuthorizedKeys([{ kind: 'comment', lineNo: 1, raw: ED.publicKey }])),
    ).toEqual(['0.raw']);
    expect(validationPaths(() => renderAuthorizedKeys([{ kind: 'blank', lineNo: 1, raw: '#' }]))).toEqual([
      '0.raw',
    ]);
    expect(
      validationPaths(() =>
        renderAuthorizedKeys([{ kind: 'invalid', lineNo: 1, raw: ED.publicKey, error: 'x' }]),
      ),
    ).toEqual(['0.raw']);
    const entry = keyLine(parseAuthorizedKeys(ED.publicKey), 0);
    expect(
      validationPaths(() => renderAuthorizedKeys([{ ...entry, comment: `x\n${OTHER.publicKey}` }])),
    ).toEqual(['comment']);
  });
});

describe('fingerprintOf', () => {
  it('fingerprintOf — refuses what is not base64', () => {
    expect(validationPaths(() => fingerprintOf('not base64!'))).toEqual(['keyBase64']);
  });
});

describe('parsePublicKey', () => {
  it('parsePublicKey — reads type, data and a comment with blanks; one trailing newline is allowed', () => {
    expect(parsePublicKey(`${ED.keyType} ${ED.keyBase64} alice at laptop\n`)).toEqual({
      keyType: ED.keyType,
      keyBase64: ED.keyBase64,
      comment: 'alice at laptop',
      fingerprint: ED.fingerprint,
    });
  });

  it.each([
    ['options in front', `restrict ${ED.publicKey}`, 'keyType'],
    ['bad base64', `${ED.keyType} AAAA!`, 'keyBase64'],
    ['a blob of another type', `ssh-rsa ${ED.keyBase64}`, 'keyBase64'],
    ['two lines', `${ED.publicKey}\n${OTHER.publicKey}`, ''],
  ])('parsePublicKey — refuses %s, naming the field', (_name, line, path) => {
    expect(validationPaths(() => parsePublicKey(line))).toEqual([path]);
  });
});

describe('fleetwardMarker', () => {
  const entry = (comment: string) => ({ ...parsePublicKey(ED.publicKey), comment });

  it('fleetwardMarker — reads grant and credential ids from comment tokens', () => {
    expect(fleetwardMarker(entry('alice fleetward:grant=g_01J.x:y-z fleetward:credential=c1'))).toEqual({
      grantId: 'g_01J.x:y-z',
      credentialId: 'c1',
    });
    expect(fleetwardMarker(entry('alice'))).toEqual({});
  });

  it('fleetwardMarker — ignores malformed ids and reports conflicting ones as absent', () => {
    expect(fleetwardMarker(entry('fleetward:grant=a/b fleetward:grant= xfleetward:grant=c'))).toEqual({});
    expect(fleetwardMarker(entry(`fleetward:grant=${'a'.repeat(129)}`))).toEqual({});
    expect(fleetwardMarker(entry('fleetward:grant=a fleetward:grant=b fleetward:credential=c'))).toEqual({
      credentialId: 'c',
    });
    expect(fleetwardMarker(entry('fleetward:grant=a fleetward:grant=a'))).toEqual({ grantId: 'a' });
  });

  it('withFleetwardMarker — replaces existing markers and round-trips through fleetwardMarker', () => {
    const comment = withFleetwardMarker('alice  fleetward:grant=old laptop', {
      grantId: 'g2',
      credentialId: 'c2',
    });
    expect(comment).toBe('alice laptop fleetward:grant=g2 fleetward:credential=c2');
    expect(fleetwardMarker(entry(comment))).toEqual({ grantId: 'g2', credentialId: 'c2' });
    expect(withFleetwardMarker(comment, {})).toBe('alice laptop');
  });

  it('withFleetwardMarker — refuses bad ids and comments with line breaks', () => {
    expect(validationPaths(() => withFleetwardMarker('a', { grantId: 'x y' }))).toEqual(['marker.grantId']);
    expect(validationPaths(() => withFleetwardMarker('a', { credentialId: '' }))).toEqual([
      'marker.credentialId',
    ]);
    expect(validationPaths(() => withFleetwardMarker('a\nb', {}))).toEqual(['comment']);
  });
});

describe('isCloudAgentManaged', () => {
  it('isCloudAgentManaged — the Google marker and the next non-empty line belong to the agent', () => {
    const lines = parseAuthorizedKeys(
      [
        ED.publicKey,
        '# Added by Google',
        '',
        OTHER.publicKey,
        ED.publicKey,
        '# Added by Google',
        '# Added by Google',
        OTHER.publicKey,
        `${ED.keyType} ${ED.keyBase64} google-ssh {"userName":"ops","expireOn":"2026-01-31T12:00:00+0000"}`,
        `${ED.keyType} ${ED.keyBase64} google-sshx`,
      ].join('\n'),
    );
    expect(lines.map((_, i) => isCloudAgentManaged(lines, i))).toEqual([
      false,
      true,
      false,
      true,
      false,
      true,
      // The agent reads the second marker as the "key" of the first, so the key after it is not the agent's.
      true,
      false,
      true,
      false,
    ]);
    expect(isCloudAgentManaged(lines, 99)).toBe(false);
  });
});

describeIfAvailable('authorized_keys against ssh-keygen', keygenUnavailable(), () => {
  let dir: { dir: string; remove: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir('ak');
  });
  afterAll(async () => {
    await dir?.remove();
  });

  it.each(['ed25519', 'rsa', 'ecdsa'] as const)(
    'parsePublicKey — a %s key from ssh-keygen has the fingerprint ssh-keygen prints',
    async (type) => {
      const key = await sshKeygen(dir.dir, `id_${type}`, type, 'x');
      const parsed = parsePublicKey(await readFile(`${key.path}.pub`, 'utf8'));
      expect(parsed.comment).toBe('x');
      expect(parsed.fingerprint).toBe(key.fingerprint);
      expect(fingerprintOf(parsed.keyBase64)).toBe(key.fingerprint);
      expect(keyLine(parseAuthorizedKeys(`restrict ${key.publicKey}`), 0).fingerprint).toBe(key.fingerprint);
    },
  );

  it('parseAuthorizedKeys — a certificate from ssh-keygen -s parses, fingerprinted as its key like ssh-keygen -l does', async () => {
    const ca = await sshKeygen(dir.dir, 'ca', 'ed25519', 'user-ca');
    const user = await sshKeygen(dir.dir, 'user', 'ecdsa', 'user');
    await run(SSH_KEYGEN, [
      '-q',
      '-s',
      ca.path,
      '-I',
      'alice@corp:req-1',
      '-n',
      'alice',
      '-z',
      '4711',
      `${user.path}.pub`,
    ]);
    const certFile = `${user.path}-cert.pub`;
    const cert = parsePublicKey(await readFile(certFile, 'utf8'));
    expect(cert.keyType).toBe('ecdsa-sha2-nistp256-cert-v01@openssh.com');
    expect(cert.fingerprint).toBe(await keygenFingerprint(certFile));
    expect(cert.fingerprint).toBe(user.fingerprint);
    const tampered = Buffer.from(cert.keyBase64, 'base64');
    const truncated = tampered.subarray(0, tampered.length - 10).toString('base64');
    expect(parseAuthorizedKeys(`${cert.keyType} ${truncated}`)[0]).toMatchObject({
      kind: 'invalid',
      error: 'key data is truncated',
    });
  });
});
