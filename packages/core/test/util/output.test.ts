import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { OutputSummarySchema } from '../../src/domain/index.js';
import { OutputCollector, utf8SafeLength } from '../../src/util/output.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('OutputCollector', () => {
  it('summary — keeps a stream under the cap whole, with its byte count and hash', () => {
    const collector = new OutputCollector(100);
    collector.push(Buffer.from('hello '));
    collector.push(Buffer.from('wörld\n'));
    const summary = collector.summary();
    expect(summary).toEqual({
      text: 'hello wörld\n',
      bytes: Buffer.byteLength('hello wörld\n'),
      sha256: sha256(Buffer.from('hello wörld\n')),
      truncated: false,
    });
    expect(OutputSummarySchema.parse(summary)).toEqual(summary);
  });

  it('summary — of an empty stream hashes zero bytes', () => {
    expect(new OutputCollector(10).summary()).toEqual({
      text: '',
      bytes: 0,
      sha256: sha256(Buffer.alloc(0)),
      truncated: false,
    });
  });

  it('push — keeps only maxBytes across chunks but counts and hashes every byte', () => {
    const data = randomBytes(10_000);
    const collector = new OutputCollector(1_000);
    for (let i = 0; i < data.length; i += 777) collector.push(data.subarray(i, i + 777));
    const summary = collector.summary();
    expect(summary.bytes).toBe(10_000);
    expect(summary.sha256).toBe(sha256(data));
    expect(summary.truncated).toBe(true);
    expect(collector.bytes).toBe(10_000);
  });

  it('push — an ASCII stream is cut at exactly maxBytes', () => {
    const text = 'abcdefghij'.repeat(50);
    const collector = new OutputCollector(123);
    collector.push(Buffer.from(text));
    expect(collector.summary().text).toBe(text.slice(0, 123));
  });

  it('push — a stream exactly at the cap is not truncated', () => {
    const collector = new OutputCollector(5);
    collector.push(Buffer.from('12345'));
    expect(collector.summary()).toMatchObject({ text: '12345', truncated: false, bytes: 5 });
    collector.push(Buffer.from('6'));
    expect(collector.summary()).toMatchObject({ text: '12345', truncated: true, bytes: 6 });
  });

  it('summary — cuts on a UTF-8 boundary, never ending in a broken character', () => {
    const text = 'aé€😀'.repeat(20); // 1 + 2 + 3 + 4 bytes per repetition
    const bytes = Buffer.from(text);
    for (let cap = 0; cap <= 40; cap++) {
      const collector = new OutputCollector(cap);
      // Single bytes, so every cut also crosses a chunk boundary.
      for (const byte of bytes) collector.push(Buffer.from([byte]));
      const summary = collector.summary();
      expect(summary.text).not.toContain('\uFFFD');
      expect(text.startsWith(summary.text)).toBe(true);
      const kept = Buffer.byteLength(summary.text);
      expect(kept).toBeLessThanOrEqual(cap);
      expect(cap - kept).toBeLessThan(4);
      expect(summary.bytes).toBe(bytes.length);
      expect(summary.sha256).toBe(sha256(bytes));
      expect(summary.truncated).toBe(true);
    }
  });

  it('summary — inside a 4-byte character keeps the characters before it', () => {
    const collector = new OutputCollector(3);
    collector.push(Buffer.from('a😀'));
    expect(collector.summary().text).toBe('a');
    const exact = new OutputCollector(5);
    exact.push(Buffer.from('a😀b'));
    expect(exact.summary().text).toBe('a😀');
  });

  it('summary — leaves invalid bytes the command wrote alone when nothing was cut', () => {
    const collector = new OutputCollector(10);
    collector.push(Buffer.from([0x61, 0xe2, 0x82]));
    expect(collector.summary()).toMatchObject({ text: 'a\uFFFD', bytes: 3, truncated: false });
  });

  it('push — with maxBytes 0 keeps nothing but still counts and hashes', () => {
    const collector = new OutputCollector(0);
    collector.push(Buffer.from('secret-free data'));
    expect(collector.summary()).toEqual({
      text: '',
      bytes: 16,
      sha256: sha256(Buffer.from('secret-free data')),
      truncated: true,
    });
  });

  it('summary — can be taken repeatedly while the stream continues', () => {
    const collector = new OutputCollector(100);
    collector.push(Buffer.from('one '));
    const first = collector.summary();
    expect(collector.summary()).toEqual(first);
    collector.push(Buffer.from('two'));
    expect(collector.summary()).toEqual({
      text: 'one two',
      bytes: 7,
      sha256: sha256(Buffer.from('one two')),
      truncated: false,
    });
    expect(first.sha256).toBe(sha256(Buffer.from('one ')));
  });

  it('push — copies the chunk, so a reused buffer does not change what was kept', () => {
    const collector = new OutputCollector(100);
    const chunk = Buffer.from('abc');
    collector.push(chunk);
    chunk.fill(0x7a);
    expect(collector.summary().text).toBe('abc');
  });

  it('constructor — rejects a negative or fractional cap', () => {
    expect(() => new OutputCollector(-1)).toThrow(RangeError);
    expect(() => new OutputCollector(1.5)).toThrow(RangeError);
    expect(() => new OutputCollector(Number.NaN)).toThrow(RangeError);
  });
});

describe('utf8SafeLength', () => {
  it('utf8SafeLength — drops only an incomplete final character', () => {
    const euro = Buffer.from('€'); // e2 82 ac
    expect(utf8SafeLength(Buffer.concat([Buffer.from('x'), euro.subarray(0, 1)]))).toBe(1);
    expect(utf8SafeLength(Buffer.concat([Buffer.from('x'), euro.subarray(0, 2)]))).toBe(1);
    expect(utf8SafeLength(Buffer.concat([Buffer.from('x'), euro]))).toBe(4);
    expect(utf8SafeLength(Buffer.alloc(0))).toBe(0);
    expect(utf8SafeLength(Buffer.from([0x80, 0x80, 0x80, 0x80]))).toBe(4);
  });
});
