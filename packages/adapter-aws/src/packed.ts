import { pipeline, Readable } from 'node:stream';
import { constants, createGunzip, gunzipSync } from 'node:zlib';
import { TransportError } from '@fleetward/core';

/**
 * How a stream of a command run through `AWS-RunShellScript` comes back: the script keeps the
 * command's stdout and stderr in files, then prints each gzip-compressed and base64-encoded after
 * this marker. SSM keeps only 24,000 / 8,000 characters of a stream inline; packed, that holds
 * several times more text (a scan's package list), and bytes that are not UTF-8 survive.
 */
export const PACKED_MARKER = 'fwz:';

/**
 * Lines run before the command's env is exported: the tools the packing needs are found with the
 * agent's PATH, so that a PATH in `env` cannot replace them.
 */
export const PACK_SETUP_LINES = [
  'fw_gz=$(command -v gzip) || { echo "fleetward: gzip is missing on this instance" >&2; exit 127; }',
  'fw_tr=$(command -v tr)',
  'fw_rm=$(command -v rm)',
  'fw_t=$(mktemp -d) || exit 125',
  // Best effort: a command killed by CancelCommand leaves nothing behind where the shell can help it.
  'trap \'"$fw_rm" -rf "$fw_t"\' EXIT',
] as const;

/** Lines that run the command (`"$@"`) with its streams kept, then print them packed. */
export const PACK_RUN_LINES = [
  'if [ "$fw_has_stdin" = 1 ]; then fw_dec "$fw_stdin" | "$@" >"$fw_t/o" 2>"$fw_t/e"; else "$@" </dev/null >"$fw_t/o" 2>"$fw_t/e"; fi',
  'fw_rc=$?',
  `printf '${PACKED_MARKER}'; "$fw_gz" -c <"$fw_t/o" | "$fw_b64" | "$fw_tr" -d '\\n'`,
  `{ printf '${PACKED_MARKER}'; "$fw_gz" -c <"$fw_t/e" | "$fw_b64" | "$fw_tr" -d '\\n'; } >&2`,
  'exit "$fw_rc"',
] as const;

/** One stream as the command wrote it, from what SSM (or S3) returned. */
export interface UnpackedStream {
  data: Buffer;
  /** Only a prefix of the command's stream is in `data`: SSM cut the packed text. */
  truncated: boolean;
}

/**
 * The command's stream from `text`, the stream as SSM returned it. `cut` says that SSM cut it
 * (it returned as many characters as it keeps inline); the prefix it kept is decoded as far as it
 * goes. Text without the marker (the agent's own messages, a script that never reached the
 * command) is returned as it is.
 * @throws TransportError when the packed text is complete but does not decode.
 */
export function unpackStream(text: string, cut: boolean): UnpackedStream {
  if (!text.startsWith(PACKED_MARKER)) return { data: Buffer.from(text, 'utf8'), truncated: cut };
  let packed = text.slice(PACKED_MARKER.length).replace(/\s+$/, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(packed)) {
    throw new TransportError('The output SSM returned is not the packed stream the script prints');
  }
  if (cut) packed = packed.slice(0, packed.length - (packed.length % 4));
  const bytes = Buffer.from(packed, 'base64');
  if (bytes.length === 0) return { data: Buffer.alloc(0), truncated: cut };
  try {
    // A cut stream decodes as far as its bytes go: Z_SYNC_FLUSH stops there instead of failing.
    const data = cut ? gunzipSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH }) : gunzipSync(bytes);
    return { data, truncated: cut };
  } catch (error) {
    if (cut) return { data: Buffer.alloc(0), truncated: true };
    throw new TransportError('The output SSM returned does not decode (gzip)', { cause: error });
  }
}

/**
 * The command's stream from a packed object (the whole stream, as the output bucket holds it),
 * decoded as it arrives: base64 in pieces of whole quanta, then gunzip, so that nothing but the
 * current piece is held. An object without the marker is passed through as it is.
 */
export async function* unpackChunks(body: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  const it = body[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < PACKED_MARKER.length) {
    const next = await it.next();
    if (next.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, Buffer.from(next.value)]);
  }
  async function* rest(): AsyncGenerator<Buffer> {
    if (ended) return;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield Buffer.from(next.value);
    }
  }
  if (!head.subarray(0, PACKED_MARKER.length).equals(Buffer.from(PACKED_MARKER))) {
    if (head.length > 0) yield head;
    yield* rest();
    return;
  }
  let carry = head.subarray(PACKED_MARKER.length).toString('latin1');
  const take = (final: boolean): Buffer => {
    const text = carry.replace(/\s+/g, '');
    const usable = final ? text : text.slice(0, text.length - (text.length % 4));
    carry = text.slice(usable.length);
    return Buffer.from(usable, 'base64');
  };
  const decoded = async function* (): AsyncGenerator<Buffer> {
    yield take(false);
    for await (const chunk of rest()) {
      carry += chunk.toString('latin1');
      yield take(false);
    }
    yield take(true);
  };
  const gunzip = pipeline(Readable.from(decoded()), createGunzip(), () => undefined);
  for await (const chunk of gunzip) yield chunk as Buffer;
}
