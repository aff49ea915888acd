import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import md4 from 'js-md4';

// Server side of NTLMv2 (MS-NLMP): parse NEGOTIATE, build CHALLENGE, verify AUTHENTICATE.

const SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1');

const FLAG_UNICODE = 0x00000001;
const FLAG_OEM = 0x00000002;
const FLAG_REQUEST_TARGET = 0x00000004;
const FLAG_SIGN = 0x00000010;
const FLAG_SEAL = 0x00000020;
const FLAG_NTLM = 0x00000200;
const FLAG_ALWAYS_SIGN = 0x00008000;
const FLAG_TARGET_TYPE_SERVER = 0x00020000;
const FLAG_EXTENDED_SESSION_SECURITY = 0x00080000;
const FLAG_TARGET_INFO = 0x00800000;
const FLAG_VERSION = 0x02000000;
const FLAG_128 = 0x20000000;
const FLAG_KEY_EXCH = 0x40000000;
const FLAG_56 = 0x80000000;

const ECHOED_FLAGS =
  FLAG_UNICODE |
  FLAG_OEM |
  FLAG_SIGN |
  FLAG_SEAL |
  FLAG_NTLM |
  FLAG_ALWAYS_SIGN |
  FLAG_EXTENDED_SESSION_SECURITY |
  FLAG_128 |
  FLAG_KEY_EXCH |
  FLAG_56;

/** The NTLM message type (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE) of a token, or undefined if it is not NTLM. */
export function ntlmMessageType(token: Buffer): number | undefined {
  if (token.length < 12 || !token.subarray(0, 8).equals(SIGNATURE)) return undefined;
  return token.readUInt32LE(8);
}

/** A CHALLENGE message the server sent, kept until the AUTHENTICATE message arrives. */
export interface NtlmChallenge {
  message: Buffer;
  serverChallenge: Buffer;
}

/** Builds the CHALLENGE message answering a NEGOTIATE message, with a random server challenge and Windows-like target info. */
export function createNtlmChallenge(
  negotiate: Buffer,
  computerName: string,
  now = new Date(),
): NtlmChallenge {
  const clientFlags = negotiate.length >= 16 ? negotiate.readUInt32LE(12) : FLAG_UNICODE | FLAG_NTLM;
  let flags =
    (clientFlags & ECHOED_FLAGS) | FLAG_NTLM | FLAG_TARGET_INFO | FLAG_TARGET_TYPE_SERVER | FLAG_VERSION;
  if (clientFlags & FLAG_REQUEST_TARGET) flags |= FLAG_REQUEST_TARGET;
  if (flags & FLAG_UNICODE) flags &= ~FLAG_OEM;
  const serverChallenge = randomBytes(8);
  const name = computerName.toUpperCase();
  const targetName = Buffer.from(name, 'utf16le');
  const filetime = Buffer.alloc(8);
  filetime.writeBigUInt64LE((BigInt(now.getTime()) + 11644473600000n) * 10000n);
  const targetInfo = Buffer.concat([
    avPair(2, Buffer.from(name, 'utf16le')),
    avPair(1, Buffer.from(name, 'utf16le')),
    avPair(4, Buffer.from(name.toLowerCase(), 'utf16le')),
    avPair(3, Buffer.from(name.toLowerCase(), 'utf16le')),
    avPair(7, filetime),
    avPair(0, Buffer.alloc(0)),
  ]);
  const header = Buffer.alloc(56);
  SIGNATURE.copy(header, 0);
  header.writeUInt32LE(2, 8);
  writeField(header, 12, targetName.length, 56);
  header.writeUInt32LE(flags >>> 0, 20);
  serverChallenge.copy(header, 24);
  writeField(header, 40, targetInfo.length, 56 + targetName.length);
  Buffer.from([10, 0, 0x63, 0x45, 0, 0, 0, 15]).copy(header, 48);
  return { message: Buffer.concat([header, targetName, targetInfo]), serverChallenge };
}

/** The fields of an AUTHENTICATE message the verification needs. */
export interface NtlmAuthenticate {
  username: string;
  domain: string;
  workstation: string;
  ntChallengeResponse: Buffer;
}

/** Parses an AUTHENTICATE message; undefined when it is malformed. */
export function parseNtlmAuthenticate(message: Buffer): NtlmAuthenticate | undefined {
  if (ntlmMessageType(message) !== 3 || message.length < 64) return undefined;
  const flags = message.readUInt32LE(60);
  const field = (offset: number): Buffer | undefined => {
    const length = message.readUInt16LE(offset);
    const start = message.readUInt32LE(offset + 4);
    return start + length <= message.length ? message.subarray(start, start + length) : undefined;
  };
  const text = (b: Buffer | undefined): string | undefined =>
    b && (flags & FLAG_UNICODE ? b.toString('utf16le') : b.toString('latin1'));
  const ntChallengeResponse = field(20);
  const domain = text(field(28));
  const username = text(field(36));
  const workstation = text(field(44));
  if (!ntChallengeResponse || domain === undefined || username === undefined || workstation === undefined) {
    return undefined;
  }
  return { username, domain, workstation, ntChallengeResponse };
}

/** NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain)). */
export function ntowfv2(password: string, username: string, domain: string): Buffer {
  const ntHash = Buffer.from(md4.arrayBuffer(Buffer.from(password, 'utf16le')));
  return createHmac('md5', ntHash)
    .update(Buffer.from(username.toUpperCase() + domain, 'utf16le'))
    .digest();
}

/**
 * Whether an NTLMv2 response proves the password: NTProofStr (its first 16 bytes) must equal
 * HMAC-MD5(NTOWFv2, serverChallenge + the rest). NTLMv1 (24-byte) and anonymous responses fail.
 */
export function verifyNtlmV2Response(
  ntChallengeResponse: Buffer,
  serverChallenge: Buffer,
  password: string,
  username: string,
  domain: string,
): boolean {
  if (ntChallengeResponse.length <= 24) return false;
  const proof = ntChallengeResponse.subarray(0, 16);
  const blob = ntChallengeResponse.subarray(16);
  const expected = createHmac('md5', ntowfv2(password, username, domain))
    .update(Buffer.concat([serverChallenge, blob]))
    .digest();
  return timingSafeEqual(proof, expected);
}

function avPair(id: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(id, 0);
  head.writeUInt16LE(value.length, 2);
  return Buffer.concat([head, value]);
}

function writeField(buffer: Buffer, offset: number, length: number, start: number): void {
  buffer.writeUInt16LE(length, offset);
  buffer.writeUInt16LE(length, offset + 2);
  buffer.writeUInt32LE(start, offset + 4);
}
