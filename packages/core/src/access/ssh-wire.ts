/**
 * The SSH wire encoding (RFC 4251 §5) used inside key blobs and OpenSSH private key containers.
 * Internal to `access/`: not exported from the package.
 */

/** Thrown by {@link WireReader} when a blob ends early; callers turn it into their own error. */
export class WireFormatError extends Error {}

/** Reads SSH wire values from a buffer, never past its end. */
export class WireReader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  uint32(): number {
    if (this.offset + 4 > this.buffer.length) throw new WireFormatError('truncated uint32');
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint64(): bigint {
    if (this.offset + 8 > this.buffer.length) throw new WireFormatError('truncated uint64');
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  string(): Buffer {
    const length = this.uint32();
    if (length > this.buffer.length - this.offset) throw new WireFormatError('truncated string');
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** How many bytes were read so far. */
  get position(): number {
    return this.offset;
  }

  /** Whether every byte was consumed. */
  done(): boolean {
    return this.offset === this.buffer.length;
  }
}

export function encodeUint32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

export function encodeString(value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([encodeUint32(bytes.length), bytes]);
}
