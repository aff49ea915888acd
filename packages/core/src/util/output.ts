import { createHash, type Hash } from 'node:crypto';
import type { OutputSummary } from '../domain/index.js';

/**
 * Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence.
 *
 * Only the last (at most four) bytes are inspected: a cut can only break the final character.
 * Bytes that are not valid UTF-8 at all are left alone, since there is no character to protect.
 */
export function utf8SafeLength(bytes: Uint8Array): number {
  const end = bytes.length;
  let start = end - 1;
  while (start >= 0 && end - start < 4 && ((bytes[start] ?? 0) & 0xc0) === 0x80) start--;
  if (start < 0) return end;
  const lead = bytes[start] ?? 0;
  const needed =
    lead < 0x80
      ? 1
      : (lead & 0xe0) === 0xc0
        ? 2
        : (lead & 0xf0) === 0xe0
          ? 3
          : (lead & 0xf8) === 0xf0
            ? 4
            : 1;
  return start + needed > end ? start : end;
}

/**
 * Collects one output stream of a command under a byte cap.
 *
 * Keeps at most `maxBytes` bytes, counts every byte and hashes every byte (sha256), so a caller
 * can tell exactly what was lost and prove what the command wrote. Transport-independent: the
 * local and SSH transports feed it chunks as they arrive.
 */
export class OutputCollector {
  readonly maxBytes: number;
  readonly #hash: Hash = createHash('sha256');
  readonly #kept: Buffer[] = [];
  #keptBytes = 0;
  #totalBytes = 0;

  /**
   * @param maxBytes How many bytes to keep; a non-negative integer. `0` keeps nothing but still counts and hashes.
   * @throws RangeError when `maxBytes` is not a non-negative safe integer.
   */
  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new RangeError(`maxBytes must be a non-negative integer, got ${String(maxBytes)}`);
    }
    this.maxBytes = maxBytes;
  }

  /** Adds a chunk of the stream. The chunk is copied, so the caller may reuse its buffer. */
  push(chunk: Buffer): void {
    this.#hash.update(chunk);
    this.#totalBytes += chunk.length;
    const room = this.maxBytes - this.#keptBytes;
    if (room <= 0 || chunk.length === 0) return;
    const take = Math.min(room, chunk.length);
    this.#kept.push(Buffer.from(chunk.subarray(0, take)));
    this.#keptBytes += take;
  }

  /** Total bytes pushed so far, kept or not. */
  get bytes(): number {
    return this.#totalBytes;
  }

  /**
   * The summary of everything pushed so far. Can be called repeatedly (e.g. for partial output on a
   * timeout) and pushing may continue afterwards.
   *
   * When the stream was cut, `text` ends on a UTF-8 character boundary, so it may hold up to three
   * bytes fewer than `maxBytes`.
   */
  summary(): OutputSummary {
    const kept = Buffer.concat(this.#kept, this.#keptBytes);
    const truncated = this.#totalBytes > this.#keptBytes;
    // A stream that was not cut is returned as the command wrote it, even if its last bytes are
    // not valid UTF-8: only our own cut must not invent a broken character.
    const usable = truncated ? kept.subarray(0, utf8SafeLength(kept)) : kept;
    return {
      text: usable.toString('utf8'),
      bytes: this.#totalBytes,
      // The hash keeps running while the command does; digest a copy so later chunks still count.
      sha256: this.#hash.copy().digest('hex'),
      truncated,
    };
  }
}
