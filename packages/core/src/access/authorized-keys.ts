import { createHash } from 'node:crypto';
import { ValidationError, type ValidationIssue } from '../errors.js';
import { encodeString, WireFormatError, WireReader } from './ssh-wire.js';

/** One option in front of a key, e.g. `restrict` or `from="10.0.0.0/8"`. */
export interface AuthorizedKeyOption {
  /** Lower case: sshd matches option names without regard to case. */
  name: string;
  /** The value without its surrounding quotes and with `\"` turned back into `"`; absent for flags. */
  value?: string;
}

/** A public key as it appears in a `.pub` file or an authorized_keys line. */
export interface PublicKey {
  /** e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-ed25519-cert-v01@openssh.com`. */
  keyType: string;
  keyBase64: string;
  /** Everything after the key data, trailing blanks removed; `''` when there is none. */
  comment: string;
  /** `SHA256:` and the unpadded base64 digest of the key blob, as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** A line of authorized_keys that holds a key. */
export interface AuthorizedKeyEntry extends PublicKey {
  kind: 'key';
  /** 1-based. */
  lineNo: number;
  /** The line exactly as read, without its `\n` (a `\r` of a CRLF file stays). */
  raw: string;
  options: AuthorizedKeyOption[];
}

/** Every line of an authorized_keys file, including the ones sshd ignores. */
export type AuthorizedKeysLine =
  | AuthorizedKeyEntry
  | { kind: 'comment' | 'blank'; lineNo: number; raw: string }
  | { kind: 'invalid'; lineNo: number; raw: string; error: string };

type KeyBase = 'ed25519' | 'rsa' | 'dss' | 'ecdsa' | 'sk-ecdsa' | 'sk-ed25519';

interface KeyTypeSpec {
  base: KeyBase;
  certificate: boolean;
  /** The type of the key itself, which is the type name for a plain key. */
  plainType: string;
  curve?: string;
}

const ECDSA_POINT_LENGTH: Record<string, number> = { nistp256: 65, nistp384: 97, nistp521: 133 };

/** The key types sshd reads from authorized_keys (XMSS, compiled in only by explicit choice, is left out). */
const KEY_TYPES = new Map<string, KeyTypeSpec>();
for (const [name, spec] of [
  ['ssh-ed25519', { base: 'ed25519' }],
  ['ssh-rsa', { base: 'rsa' }],
  ['ssh-dss', { base: 'dss' }],
  ['ecdsa-sha2-nistp256', { base: 'ecdsa', curve: 'nistp256' }],
  ['ecdsa-sha2-nistp384', { base: 'ecdsa', curve: 'nistp384' }],
  ['ecdsa-sha2-nistp521', { base: 'ecdsa', curve: 'nistp521' }],
  ['sk-ecdsa-sha2-nistp256@openssh.com', { base: 'sk-ecdsa', curve: 'nistp256' }],
  ['sk-ssh-ed25519@openssh.com', { base: 'sk-ed25519' }],
] as const) {
  KEY_TYPES.set(name, { ...spec, certificate: false, plainType: name });
  const certName = name.endsWith('@openssh.com')
    ? name.replace('@openssh.com', '-cert-v01@openssh.com')
    : `${name}-cert-v01@openssh.com`;
  KEY_TYPES.set(certName, { ...spec, certificate: true, plainType: name });
}

/** Options sshd knows that take no value, and those that must have one (sshd(8) AUTHORIZED_KEYS FILE FORMAT). */
const FLAG_OPTIONS = new Set([
  'agent-forwarding',
  'cert-authority',
  'no-agent-forwarding',
  'no-port-forwarding',
  'no-pty',
  'no-touch-required',
  'no-user-rc',
  'no-x11-forwarding',
  'port-forwarding',
  'pty',
  'restrict',
  'user-rc',
  'verify-required',
  'x11-forwarding',
]);
const VALUE_OPTIONS = new Set([
  'command',
  'environment',
  'expiry-time',
  'from',
  'permitlisten',
  'permitopen',
  'principals',
  'tunnel',
]);
/** sshd refuses the whole line when one of these appears twice. */
const SINGLE_OPTIONS = new Set(['command', 'principals', 'tunnel']);

const OPTION_NAME = /^[a-z][a-z0-9-]*$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const EXPIRY_TIME = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?Z?$/;
const MARKER_TOKEN = /^fleetward:(grant|credential)=([A-Za-z0-9._:-]{1,128})$/;
const MARKER_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const MARKER_PREFIX = /^fleetward:(grant|credential)=/;
const GOOGLE_BLOCK_COMMENT = '# Added by Google';

function isBlank(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

function skipBlanks(s: string, i: number): number {
  let j = i;
  while (isBlank(s[j])) j++;
  return j;
}

/** `s` without trailing blanks and CRs; a loop, because `/[ \t\r]+$/` backtracks quadratically on long blank runs. */
function trimLineEnd(s: string): string {
  let end = s.length;
  while (end > 0 && (isBlank(s[end - 1]) || s[end - 1] === '\r')) end--;
  return s.slice(0, end);
}

function tokenEnd(s: string, i: number): number {
  let j = i;
  while (j < s.length && !isBlank(s[j])) j++;
  return j;
}

/** Decodes base64 only when it is canonical (padded, no stray characters), as sshd's b64_pton demands. */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0 || !BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

function readKeyBody(reader: WireReader, spec: KeyTypeSpec): string | undefined {
  switch (spec.base) {
    case 'ed25519':
    case 'sk-ed25519': {
      if (reader.string().length !== 32) return 'Ed25519 public key is not 32 bytes';
      if (spec.base === 'sk-ed25519') reader.string();
      return undefined;
    }
    case 'rsa': {
      reader.string();
      if (reader.string().length === 0) return 'RSA modulus is empty';
      return undefined;
    }
    case 'dss': {
      for (let i = 0; i < 4; i++) reader.string();
      return undefined;
    }
    case 'ecdsa':
    case 'sk-ecdsa': {
      const curve = reader.string().toString('latin1');
      if (curve !== spec.curve)
        return `key blob names curve ${JSON.stringify(curve)}, the type says ${spec.curve}`;
      const point = reader.string();
      if (point.length !== ECDSA_POINT_LENGTH[curve] || point[0] !== 0x04) return 'ECDSA point is malformed';
      if (spec.base === 'sk-ecdsa') reader.string();
      return undefined;
    }
  }
}

type BlobInspection = { problem: string } | { plainBlob: Buffer };

/**
 * Checks that a key blob holds a `keyType` key (PROTOCOL.certkeys for certificates) and returns
 * the blob of the key itself: for a certificate, the certified key, which is what ssh-keygen and
 * sshd fingerprint.
 */
function inspectKeyBlob(keyType: string, blob: Buffer): BlobInspection {
  const spec = KEY_TYPES.get(keyType);
  if (!spec) return { problem: `unknown key type ${JSON.stringify(keyType.slice(0, 64))}` };
  const reader = new WireReader(blob);
  try {
    const embedded = reader.string().toString('latin1');
    if (embedded !== keyType) {
      return {
        problem: `key data holds a ${JSON.stringify(embedded.slice(0, 64))} key, the line says ${keyType}`,
      };
    }
    if (spec.certificate) reader.string();
    const bodyStart = reader.position;
    const problem = readKeyBody(reader, spec);
    if (problem) return { problem };
    const bodyEnd = reader.position;
    if (spec.certificate) {
      reader.uint64();
      reader.uint32();
      for (let i = 0; i < 2; i++) reader.string();
      reader.uint64();
      reader.uint64();
      for (let i = 0; i < 5; i++) reader.string();
    }
    if (!reader.done()) return { problem: 'key data has trailing bytes' };
    if (!spec.certificate) return { plainBlob: blob };
    return { plainBlob: Buffer.concat([encodeString(spec.plainType), blob.subarray(bodyStart, bodyEnd)]) };
  } catch (error) {
    if (error instanceof WireFormatError) return { problem: 'key data is truncated' };
    throw error;
  }
}

function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Reads options the way sshd's `sshauthopt_parse` does: comma-separated names, values always in
 * double quotes, and inside them only `\"` is an escape (any other backslash is literal).
 */
function parseOptions(text: string): AuthorizedKeyOption[] | string {
  const options: AuthorizedKeyOption[] = [];
  let i = 0;
  while (i < text.length) {
    const start = i;
    while (i < text.length && text[i] !== '=' && text[i] !== ',') i++;
    const name = text.slice(start, i);
    if (name === '') return 'empty option';
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(name)) {
      return `malformed option name ${JSON.stringify(name.slice(0, 64))}`;
    }
    const option: AuthorizedKeyOption = { name: name.toLowerCase() };
    if (text[i] === '=') {
      i++;
      if (text[i] !== '"') return `value of option ${name} is not in double quotes`;
      i++;
      let value = '';
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && text[i + 1] === '"') i++;
        value += text[i];
        i++;
      }
      if (i >= text.length) return `value of option ${name} has no closing quote`;
      i++;
      option.value = value;
    }
    options.push(option);
    if (i >= text.length) break;
    if (text[i] !== ',') return `unexpected ${JSON.stringify(text[i])} after option ${name}`;
    // sshd accepts a comma right before the blank that ends the options, so this parser does too.
    i++;
  }
  return options;
}

/** Where the options end, as sshd's `sshkey_advance_past_options` finds it; -1 on an unterminated quote. */
function endOfOptions(s: string, from: number): number {
  let quoted = false;
  let i = from;
  for (; i < s.length && (quoted || !isBlank(s[i])); i++) {
    if (s[i] === '\\' && s[i + 1] === '"') i++;
    else if (s[i] === '"') quoted = !quoted;
  }
  return quoted ? -1 : i;
}

type KeyParse =
  | { entry: Omit<AuthorizedKeyEntry, 'kind' | 'lineNo' | 'raw'> }
  | { error: string; field?: 'options' | 'keyType' | 'keyBase64' };

function parseKeyText(text: string, allowOptions: boolean): KeyParse {
  let i = skipBlanks(text, 0);
  let options: AuthorizedKeyOption[] = [];
  const firstEnd = tokenEnd(text, i);
  if (!KEY_TYPES.has(text.slice(i, firstEnd))) {
    if (!allowOptions) {
      return {
        error: `unknown key type ${JSON.stringify(text.slice(i, firstEnd).slice(0, 64))}`,
        field: 'keyType',
      };
    }
    const end = endOfOptions(text, i);
    if (end < 0) return { error: 'options have an unterminated quote', field: 'options' };
    const parsed = parseOptions(text.slice(i, end));
    if (typeof parsed === 'string') return { error: parsed, field: 'options' };
    options = parsed;
    i = skipBlanks(text, end);
  }
  const typeEnd = tokenEnd(text, i);
  const keyType = text.slice(i, typeEnd);
  if (keyType === '') return { error: 'no key after the options', field: 'keyType' };
  if (!KEY_TYPES.has(keyType)) {
    return { error: `unknown key type ${JSON.stringify(keyType.slice(0, 64))}`, field: 'keyType' };
  }
  i = skipBlanks(text, typeEnd);
  const dataEnd = tokenEnd(text, i);
  const keyBase64 = text.slice(i, dataEnd);
  if (keyBase64 === '') return { error: 'no key data after the key type', field: 'keyBase64' };
  const blob = decodeBase64(keyBase64);
  if (!blob) return { error: 'key data is not valid base64', field: 'keyBase64' };
  const inspection = inspectKeyBlob(keyType, blob);
  if ('problem' in inspection) return { error: inspection.problem, field: 'keyBase64' };
  const comment = text.slice(skipBlanks(text, dataEnd));
  return {
    entry: { options, keyType, keyBase64, comment, fingerprint: fingerprintOfBlob(inspection.plainBlob) },
  };
}

function parseLine(raw: string, lineNo: number): AuthorizedKeysLine {
  // Trailing blanks and the CR of a CRLF file are not part of any field (sshd's base64 decoder skips them too).
  const text = trimLineEnd(raw);
  const start = skipBlanks(text, 0);
  if (start === text.length) return { kind: 'blank', lineNo, raw };
  if (text[start] === '#') return { kind: 'comment', lineNo, raw };
  const parsed = parseKeyText(text, true);
  if ('error' in parsed) return { kind: 'invalid', lineNo, raw, error: parsed.error };
  return { kind: 'key', lineNo, raw, ...parsed.entry };
}

/**
 * Parses an authorized_keys file. Every line is kept — comments, blanks and lines sshd would
 * refuse (as `invalid`, with the reason) — so {@link renderAuthorizedKeys} can write the file
 * back unchanged except for the lines a caller edited. A key line is `invalid` when its options
 * are malformed, its key type is unknown, its base64 is not canonical, or its blob does not hold
 * a key of the type the line names. Unknown but well-formed option names are kept as they are:
 * which names an sshd accepts depends on its version.
 */
export function parseAuthorizedKeys(text: string): AuthorizedKeysLine[] {
  if (text === '') return [];
  const rawLines = text.split('\n');
  if (rawLines[rawLines.length - 1] === '') rawLines.pop();
  return rawLines.map((raw, index) => parseLine(raw, index + 1));
}

/**
 * Parses one public key, `type base64 [comment]`, as found in a `.pub` file (one trailing
 * newline is allowed). Options are not accepted here.
 * @throws ValidationError naming the problem (`keyType`, `keyBase64` or the whole line).
 */
export function parsePublicKey(line: string): PublicKey {
  const text = line.replace(/\r?\n$/, '');
  if (/[\r\n\0]/.test(text)) {
    throw new ValidationError('PublicKey', [{ path: [], message: 'must be a single line' }]);
  }
  const parsed = parseKeyText(trimLineEnd(text), false);
  if ('error' in parsed) {
    throw new ValidationError('PublicKey', [
      { path: parsed.field ? [parsed.field] : [], message: parsed.error },
    ]);
  }
  const { keyType, keyBase64, comment, fingerprint } = parsed.entry;
  return { keyType, keyBase64, comment, fingerprint };
}

/**
 * The fingerprint `ssh-keygen -l` prints for a key: `SHA256:` and the unpadded base64 SHA-256 of
 * the key blob. For a certificate it is the certified key's fingerprint, as ssh-keygen and sshd's
 * log show it; a blob that is not a well-formed key of a known type is hashed as it is.
 * @throws ValidationError when `keyBase64` is not canonical base64.
 */
export function fingerprintOf(keyBase64: string): string {
  const blob = typeof keyBase64 === 'string' ? decodeBase64(keyBase64) : undefined;
  if (!blob)
    throw new ValidationError('PublicKey', [{ path: ['keyBase64'], message: 'is not valid base64' }]);
  let embedded: string | undefined;
  try {
    embedded = new WireReader(blob).string().toString('latin1');
  } catch (error) {
    if (!(error instanceof WireFormatError)) throw error;
  }
  const inspection = embedded === undefined ? undefined : inspectKeyBlob(embedded, blob);
  return fingerprintOfBlob(inspection && 'plainBlob' in inspection ? inspection.plainBlob : blob);
}

function optionValueProblem(name: string, value: string): string | undefined {
  if (/[\r\n\0]/.test(value)) return 'must not contain a line break or NUL';
  // sshd reads `\"` as an escaped quote, so a value ending in a backslash would swallow its closing quote.
  if (value.endsWith('\\')) return 'must not end with a backslash';
  if (name === 'expiry-time') {
    const m = EXPIRY_TIME.exec(value);
    if (!m || !isCalendarTime(m)) return 'must be YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z] and a real date';
  }
  if (name === 'environment' && !/^[A-Za-z0-9_]+=/.test(value)) return 'must be NAME=value';
  if (name === 'tunnel' && !/^\d+$/.test(value)) return 'must be a tunnel device number';
  return undefined;
}

function isCalendarTime(m: RegExpExecArray): boolean {
  const [year, month, day, hour = 0, minute = 0, second = 0] = m
    .slice(1)
    .map((p) => (p === undefined ? undefined : Number(p)));
  const t = new Date(Date.UTC(year!, month! - 1, day!, hour, minute, second));
  return (
    t.getUTCFullYear() === year &&
    t.getUTCMonth() === month! - 1 &&
    t.getUTCDate() === day &&
    t.getUTCHours() === hour &&
    t.getUTCMinutes() === minute &&
    t.getUTCSeconds() === second
  );
}

/**
 * Writes one authorized_keys line (no trailing newline): options, key type, key data, comment.
 * Values are quoted and their `"` escaped as `\"`, the only escape sshd understands.
 * @throws ValidationError for anything that would make sshd refuse or misread the line, or spill
 * onto another line: a line break or NUL anywhere, an option name not matching
 * `/^[a-z][a-z0-9-]*$/`, a known flag given a value or a known valued option given none, a value
 * ending in a backslash, a malformed `expiry-time`, a repeated `command`/`principals`/`tunnel`, an
 * unknown key type, or key data that is not a key of that type. Whether the target sshd knows an
 * option (e.g. `expiry-time` before 7.7) is the caller's check — see `expiryTimeOption`.
 */
export function renderAuthorizedKeyLine(entry: {
  options?: AuthorizedKeyOption[];
  keyType: string;
  keyBase64: string;
  comment?: string;
}): string {
  const issues: ValidationIssue[] = [];
  const options = entry.options ?? [];
  const seen = new Set<string>();
  options.forEach((option, index) => {
    const { name, value } = option;
    if (typeof name !== 'string' || !OPTION_NAME.test(name)) {
      issues.push({ path: ['options', index, 'name'], message: 'must match /^[a-z][a-z0-9-]*$/' });
      return;
    }
    if (SINGLE_OPTIONS.has(name) && seen.has(name)) {
      issues.push({ path: ['options', index, 'name'], message: `sshd refuses a line with ${name} twice` });
    }
    seen.add(name);
    if (value === undefined) {
      if (VALUE_OPTIONS.has(name))
        issues.push({ path: ['options', index, 'value'], message: `${name} needs a value` });
      return;
    }
    if (typeof value !== 'string') {
      issues.push({ path: ['options', index, 'value'], message: 'must be a string' });
      return;
    }
    if (FLAG_OPTIONS.has(name))
      issues.push({ path: ['options', index, 'value'], message: `${name} takes no value` });
    const problem = optionValueProblem(name, value);
    if (problem) issues.push({ path: ['options', index, 'value'], message: problem });
  });
  const blob = typeof entry.keyBase64 === 'string' ? decodeBase64(entry.keyBase64) : undefined;
  if (!KEY_TYPES.has(entry.keyType)) {
    issues.push({
      path: ['keyType'],
      message: `unknown key type ${JSON.stringify(String(entry.keyType).slice(0, 64))}`,
    });
  } else if (!blob) {
    issues.push({ path: ['keyBase64'], message: 'is not valid base64' });
  } else {
    const inspection = inspectKeyBlob(entry.keyType, blob);
    if ('problem' in inspection) issues.push({ path: ['keyBase64'], message: inspection.problem });
  }
  const comment = entry.comment ?? '';
  if (typeof comment !== 'string' || /[\r\n\0]/.test(comment)) {
    issues.push({ path: ['comment'], message: 'must not contain a line break or NUL' });
  }
  if (issues.length) throw new ValidationError('AuthorizedKeyLine', issues);

  const optionText = options
    .map(({ name, value }) => (value === undefined ? name : `${name}="${value.replaceAll('"', '\\"')}"`))
    .join(',');
  return [optionText, entry.keyType, entry.keyBase64, comment].filter((part) => part !== '').join(' ');
}

function sameKeyFields(a: AuthorizedKeyEntry, b: AuthorizedKeyEntry): boolean {
  return (
    a.keyType === b.keyType &&
    a.keyBase64 === b.keyBase64 &&
    a.comment === b.comment &&
    a.options.length === b.options.length &&
    a.options.every((o, i) => o.name === b.options[i]!.name && o.value === b.options[i]!.value)
  );
}

/**
 * Writes lines back into a file, the inverse of {@link parseAuthorizedKeys}. A key line whose
 * fields still match its `raw` text is written as `raw`, byte for byte; an edited one (or a new
 * one, whose `raw` may be `''`) is rendered with {@link renderAuthorizedKeyLine}. Comment, blank
 * and invalid lines are written as `raw`, which must still read as that kind of line.
 * The result ends with `\n` unless there are no lines.
 * @throws ValidationError when a line's `raw` holds a line break (it would inject lines) or no
 * longer reads as the kind it claims, or when an edited key line cannot be rendered.
 */
export function renderAuthorizedKeys(lines: readonly AuthorizedKeysLine[]): string {
  const out: string[] = [];
  lines.forEach((line, index) => {
    const raw = typeof line.raw === 'string' ? line.raw : '';
    if (/[\n\0]/.test(raw) || /\r(?!$)/.test(raw)) {
      throw new ValidationError('AuthorizedKeysLine', [
        { path: [index, 'raw'], message: 'must be one line (only a final CR is kept)' },
      ]);
    }
    const reread = parseLine(raw, line.lineNo);
    if (line.kind === 'key') {
      out.push(reread.kind === 'key' && sameKeyFields(reread, line) ? raw : renderAuthorizedKeyLine(line));
      return;
    }
    if (reread.kind !== line.kind) {
      throw new ValidationError('AuthorizedKeysLine', [
        { path: [index, 'raw'], message: `reads as a ${reread.kind} line, not a ${line.kind} line` },
      ]);
    }
    out.push(raw);
  });
  return out.length ? `${out.join('\n')}\n` : '';
}

/** The first option named `name` (compared without regard to case, as sshd does). */
export function optionOf(entry: AuthorizedKeyEntry, name: string): AuthorizedKeyOption | undefined {
  const wanted = name.toLowerCase();
  return entry.options.find((option) => option.name.toLowerCase() === wanted);
}

/**
 * Fleetward marks the lines it manages with a comment token `fleetward:grant=<id>` or
 * `fleetward:credential=<id>` (id = [A-Za-z0-9._:-]{1,128}). A kind that appears with two
 * different ids is ambiguous and reported as absent, so a tampered line is never attributed.
 */
export function fleetwardMarker(entry: PublicKey): { grantId?: string; credentialId?: string } {
  const found: { grant: Set<string>; credential: Set<string> } = { grant: new Set(), credential: new Set() };
  for (const token of entry.comment.split(/[ \t]+/)) {
    const m = MARKER_TOKEN.exec(token);
    if (m) found[m[1] as 'grant' | 'credential'].add(m[2]!);
  }
  const marker: { grantId?: string; credentialId?: string } = {};
  if (found.grant.size === 1) marker.grantId = [...found.grant][0]!;
  if (found.credential.size === 1) marker.credentialId = [...found.credential][0]!;
  return marker;
}

/**
 * The comment with any existing Fleetward marker tokens replaced by `marker`'s (appended at the
 * end; blanks between words collapse to one space). An empty marker just removes them.
 * @throws ValidationError for an id outside [A-Za-z0-9._:-]{1,128} or a comment with a line break or NUL.
 */
export function withFleetwardMarker(
  comment: string,
  marker: { grantId?: string; credentialId?: string },
): string {
  const issues: ValidationIssue[] = [];
  if (/[\r\n\0]/.test(comment))
    issues.push({ path: ['comment'], message: 'must not contain a line break or NUL' });
  for (const field of ['grantId', 'credentialId'] as const) {
    const id = marker[field];
    if (id !== undefined && !MARKER_ID.test(id)) {
      issues.push({ path: ['marker', field], message: 'must match [A-Za-z0-9._:-]{1,128}' });
    }
  }
  if (issues.length) throw new ValidationError('FleetwardMarker', issues);
  const words = comment.split(/[ \t]+/).filter((word) => word !== '' && !MARKER_PREFIX.test(word));
  if (marker.grantId !== undefined) words.push(`fleetward:grant=${marker.grantId}`);
  if (marker.credentialId !== undefined) words.push(`fleetward:credential=${marker.credentialId}`);
  return words.join(' ');
}

/**
 * Whether the Google guest agent owns line `index`, which must then never be edited: the agent
 * rewrites its keys from metadata and drops any `# Added by Google` line together with the next
 * non-empty line, whatever that line holds. Keys whose comment starts with `google-ssh` carry the
 * agent's expiry JSON and are treated as the agent's too. The marker is matched after trimming
 * trailing blanks and CR, which is broader than the agent and errs towards leaving lines alone.
 */
export function isCloudAgentManaged(lines: readonly AuthorizedKeysLine[], index: number): boolean {
  const line = lines[index];
  if (!line) return false;
  if (line.kind === 'key' && /^google-ssh(?:\s|$)/.test(line.comment)) return true;
  let afterMarker = false;
  for (let i = 0; i <= index; i++) {
    const raw = lines[i]!.raw;
    // The agent splits on '\n' and skips empty strings before anything else.
    if (raw === '') {
      if (i === index) return false;
      continue;
    }
    if (afterMarker) {
      if (i === index) return true;
      afterMarker = false;
      continue;
    }
    if (trimLineEnd(raw) === GOOGLE_BLOCK_COMMENT) {
      if (i === index) return true;
      afterMarker = true;
    }
  }
  return false;
}
