import type { KeyObject } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import { type AuditRecord, AuditRecordSchema } from '../domain/audit.js';
import { IdSchema, TimestampSchema } from '../domain/common.js';
import { toIssues, validate } from '../domain/validate.js';
import { ValidationError } from '../errors.js';
import type { StoredAuditRow } from '../ports/store.js';
import { canonicalJson } from '../util/canonical-json.js';
import { auditRecordHash, GENESIS_HASH } from './chain.js';
import {
  type AuditCheckpoint,
  AuditCheckpointSchema,
  auditSigningKeyId,
  toPublicKey,
  verifyAuditCheckpoint,
} from './checkpoint.js';
import { auditColumnMismatches, storedRecord } from './columns.js';

/** The `format` of an export's header line. */
export const AUDIT_EXPORT_FORMAT = 'fleetward-audit-export/1';

/**
 * Longest line {@link verifyAuditExport} reads (in UTF-16 code units). Records are small; a longer
 * line is reported as malformed and skipped rather than held in memory.
 */
export const AUDIT_EXPORT_MAX_LINE = 8 * 1024 * 1024;

const HexHash = z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 lowercase hex characters');

/** Line 1 of an export: what the exporter says the file holds. Unsigned: checkpoints anchor it. */
export const AuditExportHeaderSchema = z.strictObject({
  format: z.literal(AUDIT_EXPORT_FORMAT),
  tenantId: IdSchema,
  exportedAt: TimestampSchema,
  /** `seq` of the first record in the file; nothing before it is checked. */
  fromSeq: z.number().int().positive(),
  /** `seq` of the last record (the log's head when the export was taken); `fromSeq - 1` when empty. */
  toSeq: z.number().int().nonnegative(),
  /** Number of record lines. */
  count: z.number().int().nonnegative(),
  /** `hash` of the record at `toSeq`. */
  headHash: HexHash,
});
export type AuditExportHeader = z.infer<typeof AuditExportHeaderSchema>;

const CheckpointLineSchema = z.strictObject({ checkpoint: z.unknown() });

const ExportInputSchema = z.object({
  tenantId: IdSchema,
  exportedAt: z.date(),
  checkpoints: z.array(AuditCheckpointSchema).optional(),
  head: z.object({ seq: z.number().int().nonnegative(), hash: HexHash }).optional(),
});

/** Input of {@link exportAuditLog}. */
export interface ExportAuditLogInput {
  tenantId: string;
  /**
   * The records to export, in `seq` order, exactly as stored: the export is faithful, so that a
   * damaged log shows up as damaged when the file is verified.
   */
  records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>;
  /** Signed checkpoints of this tenant to carry along (written right after the header). */
  checkpoints?: readonly AuditCheckpoint[];
  exportedAt: Date;
  /**
   * The log's head when the export was taken (e.g. `store.audit.head(tenantId)`, or
   * `{ seq: 0, hash: GENESIS_HASH }` for an empty log). The header is line 1 but states the last
   * `seq` and hash, so without `head` the exporter has to see every record first: that works for
   * an array, and `head` is required for any other iterable so that it can be streamed. Pass only
   * records up to `head.seq`; later ones were appended after the export was taken.
   */
  head?: { seq: number; hash: string };
}

/** One finding of {@link verifyAuditRecords} or {@link verifyAuditExport}. */
export interface AuditProblem {
  /** The record concerned (for a gap, the first missing one). */
  seq?: number;
  /** The concerned record's id, when the record is there to name. */
  id?: string;
  /** Line of the export (from 1), when verifying an export. */
  line?: number;
  problem:
    | 'hash-mismatch'
    | 'broken-link'
    | 'gap'
    | 'reordered'
    | 'duplicate'
    | 'truncated'
    | 'bad-signature'
    | 'unknown-key'
    | 'checkpoint-mismatch'
    | 'missing-checkpoint'
    | 'malformed'
    | 'wrong-tenant'
    | 'column-mismatch';
  /**
   * For `column-mismatch`: the store column (see `AUDIT_COLUMNS`) whose value is not the hashed
   * record's. `seq` and `id` are then the row's columns, which may themselves be the edited ones.
   */
  column?: string;
  /** A sentence for people, naming the record, e.g. `record 17 (id …) was changed: …`. */
  message: string;
}

/** The outcome of a verification. `ok` exactly when `problems` is empty. */
export interface AuditLogVerification {
  ok: boolean;
  tenantId?: string;
  /** Records examined (every record line of an export, readable or not). */
  checked: number;
  /** Lowest and highest `seq` among the tenant's records examined. */
  firstSeq?: number;
  lastSeq?: number;
  /** `hash` of the record at `lastSeq` (the starting hash when there is none). */
  headHash: string;
  /** Checkpoints with a valid signature by a trusted key that matched their record. */
  checkpointsVerified: number;
  /**
   * The highest `seq` a verified checkpoint vouches for. Records after it are protected by the
   * chain alone: a rewrite of them, with every later hash recomputed, is not detectable.
   */
  anchoredSeq?: number;
  problems: AuditProblem[];
}

/** Options of {@link verifyAuditRecords}. */
export interface VerifyAuditRecordsOptions {
  checkpoints?: readonly AuditCheckpoint[];
  /** Trusted checkpoint keys (SPKI PEM or key objects). A checkpoint by any other key is `unknown-key`. */
  publicKeys?: readonly (KeyObject | string)[];
  /** A known-good record to continue from. @default genesis: `{ seq: 0, hash: GENESIS_HASH }` */
  from?: { seq: number; hash: string };
  /** The tenant the records must belong to. @default the first record's */
  tenantId?: string;
}

/** Options of {@link verifyAuditExport}. */
export interface VerifyAuditExportOptions {
  /** Trusted checkpoint keys (SPKI PEM or key objects). A checkpoint by any other key is `unknown-key`. */
  publicKeys?: readonly (KeyObject | string)[];
  /** Report `missing-checkpoint` when no checkpoint in the export could be verified. @default false */
  requireCheckpoint?: boolean;
}

const recordName = (seq: number, id: string | undefined) =>
  id === undefined ? `record ${seq}` : `record ${seq} (id ${id})`;

async function* iterate<T>(items: Iterable<T> | AsyncIterable<T>): AsyncGenerator<T> {
  yield* items;
}

/**
 * Writes one tenant's log as JSON Lines: line 1 the header `{ format: 'fleetward-audit-export/1',
 * tenantId, exportedAt, fromSeq, toSeq, count, headHash }`, then one `{ "checkpoint": … }` line per
 * checkpoint, then one line per record in the order given, each the record's canonical JSON. Every
 * line ends with `\n`.
 *
 * Checkpoints come before the records so that a verifier reading the file once knows which
 * records to compare as they go by, holding nothing but the checkpoints in memory.
 *
 * Lines are produced as they are read, so memory does not grow with the log when `records` is
 * a stream (a paging async generator) and `head` is given.
 * @throws ValidationError (at the call, before any line) for a bad tenant id, date, checkpoint,
 *   a checkpoint of another tenant, or a non-array `records` without `head`.
 */
export function exportAuditLog(input: ExportAuditLogInput): AsyncGenerator<string> {
  const opts = validate(ExportInputSchema, input, 'ExportAuditLogInput');
  const issues = (opts.checkpoints ?? []).flatMap((cp, i) =>
    cp.tenantId === opts.tenantId
      ? []
      : [{ path: ['checkpoints', i, 'tenantId'], message: `must be ${JSON.stringify(opts.tenantId)}` }],
  );
  const records = input.records as unknown;
  const isArray = Array.isArray(records);
  const iterable =
    records !== null &&
    typeof records === 'object' &&
    (Symbol.iterator in records || Symbol.asyncIterator in records);
  if (!iterable)
    issues.push({ path: ['records'], message: 'must be an iterable or async iterable of records' });
  else if (!isArray && !opts.head) {
    issues.push({
      path: ['head'],
      message: 'is required unless records is an array, so that it can be streamed',
    });
  }
  if (issues.length) throw new ValidationError('ExportAuditLogInput', issues);
  return writeExport(opts, input.records);
}

async function* writeExport(
  opts: z.infer<typeof ExportInputSchema>,
  records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>,
): AsyncGenerator<string> {
  const source = iterate(records);
  try {
    // One record is read ahead: the header needs the first `seq` before anything is written.
    const first = await source.next();
    // A damaged first record still gets exported; the header then names no start it cannot know.
    const firstSeq = first.done || !Number.isSafeInteger(first.value.seq) ? undefined : first.value.seq;
    let toSeq: number;
    let headHash: string;
    let count: number;
    if (opts.head) {
      toSeq = opts.head.seq;
      headHash = opts.head.hash;
      count = Math.max(0, toSeq - (firstSeq ?? toSeq + 1) + 1);
    } else {
      const all = records as readonly AuditRecord[];
      const last = all.at(-1);
      toSeq = last?.seq ?? 0;
      headHash = last?.hash ?? GENESIS_HASH;
      count = all.length;
    }
    const header: AuditExportHeader = {
      format: AUDIT_EXPORT_FORMAT,
      tenantId: opts.tenantId,
      exportedAt: opts.exportedAt.toISOString(),
      fromSeq: firstSeq ?? toSeq + 1,
      toSeq,
      count,
      headHash,
    };
    yield `${canonicalJson(header)}\n`;
    for (const checkpoint of opts.checkpoints ?? []) yield `${canonicalJson({ checkpoint })}\n`;
    if (first.done) return;
    yield `${canonicalJson(first.value)}\n`;
    for (let next = await source.next(); !next.done; next = await source.next()) {
      yield `${canonicalJson(next.value)}\n`;
    }
  } finally {
    await source.return(undefined);
  }
}

interface PreparedCheckpoint {
  cp: AuditCheckpoint;
  line: number | undefined;
}

interface LinkClaim {
  seq: number;
  id: string | undefined;
  line: number | undefined;
  prevHash: string;
  outcome: 'pending' | 'ok' | 'mismatch';
}

interface MissingRange {
  lo: number;
  hi: number;
  /** The ranges reported together (one gap, possibly split since). */
  group: MissingRange[];
}

type Entry = AuditProblem | (() => AuditProblem[]);

interface VerifierSetup {
  tenantId: string | undefined;
  /** `hash` undefined: trust the `prevHash` of the record at `seq + 1` (an export that starts late). */
  from: { seq: number; hash: string | undefined };
  publicKeys: readonly (KeyObject | string)[];
}

/**
 * One pass over a tenant's records. Memory grows with the number of checkpoints and anomalies,
 * never with the number of records: only hashes next to a gap or an out-of-order record are kept.
 */
class ChainVerifier {
  readonly #entries: Entry[] = [];
  readonly #trusted: Map<string, KeyObject>;
  readonly #from: { seq: number; hash: string | undefined };
  #tenantId: string | undefined;
  #queued: PreparedCheckpoint[] = [];
  #prepared = false;
  readonly #bySeq = new Map<number, PreparedCheckpoint[]>();
  #checked = 0;
  #firstSeq: number | undefined;
  #maxSeq: number;
  #head: { hash: string; id: string | undefined } | undefined;
  #last: { seq: number; hash: string; successorSeen: boolean } | undefined;
  /** Hashes of records whose successor has not arrived yet, by `seq`. */
  readonly #orphans = new Map<number, string>();
  /** Links that point at a record not seen yet, by the `seq` they point at. */
  readonly #claims = new Map<number, LinkClaim>();
  #missing: MissingRange[] = [];
  #verified = 0;
  #anchoredSeq: number | undefined;

  constructor(setup: VerifierSetup) {
    this.#tenantId = setup.tenantId;
    this.#from = { ...setup.from };
    this.#maxSeq = setup.from.seq;
    this.#trusted = new Map(
      setup.publicKeys.map((k) => {
        const key = toPublicKey(k);
        return [auditSigningKeyId(key), key] as const;
      }),
    );
  }

  get hasRecords(): boolean {
    return this.#checked > 0;
  }

  push(problem: AuditProblem): void {
    this.#entries.push(problem);
  }

  /** Counts a stored row whose record cannot be read at all, naming it by its columns. */
  addUnreadable(seq: number, id: string): void {
    this.#checked++;
    this.push({
      seq,
      id,
      problem: 'malformed',
      message: `${recordName(seq, id)} holds no audit record (not a JSON object): it was tampered with`,
    });
  }

  addCheckpoint(raw: unknown, line?: number): void {
    const parsed = AuditCheckpointSchema.safeParse(raw);
    if (!parsed.success) {
      const where = line === undefined ? 'a checkpoint' : `line ${line}`;
      this.push({
        line,
        problem: 'malformed',
        message: `${where} is not a valid checkpoint: ${summary(parsed.error)}`,
      });
      return;
    }
    this.#queued.push({ cp: parsed.data, line });
    if (this.#prepared) this.#prepare();
  }

  /** Takes one record as read: anything, since an export or a damaged store can hold anything. */
  addRecord(raw: unknown, line?: number): void {
    this.#checked++;
    const at = line === undefined ? '' : ` (line ${line})`;
    if (!isPlainObject(raw)) {
      this.push({ line, problem: 'malformed', message: `an item${at} is not an audit record object` });
      return;
    }
    const r = raw;
    const seq = typeof r.seq === 'number' && Number.isSafeInteger(r.seq) && r.seq > 0 ? r.seq : undefined;
    const id = typeof r.id === 'string' ? r.id : undefined;
    const name = seq === undefined ? `a record${id === undefined ? '' : ` (id ${id})`}` : recordName(seq, id);
    const parsed = AuditRecordSchema.safeParse(raw);
    if (!parsed.success) {
      this.push({
        seq,
        id,
        line,
        problem: 'malformed',
        message: `${name}${at} is not a valid audit record: ${summary(parsed.error)}`,
      });
    }
    if (this.#tenantId === undefined && typeof r.tenantId === 'string') this.#tenantId = r.tenantId;
    if (typeof r.tenantId === 'string' && r.tenantId !== this.#tenantId) {
      this.push({
        seq,
        id,
        line,
        problem: 'wrong-tenant',
        message: `${name} belongs to tenant ${JSON.stringify(r.tenantId)}, not ${JSON.stringify(this.#tenantId)}`,
      });
      return;
    }
    if (seq === undefined || typeof r.hash !== 'string' || typeof r.prevHash !== 'string') return;
    this.#chain(r, { seq, id, line, hash: r.hash, prevHash: r.prevHash });
  }

  #chain(
    raw: Record<string, unknown>,
    r: { seq: number; id: string | undefined; line: number | undefined; hash: string; prevHash: string },
  ): void {
    if (!this.#prepared) this.#prepare();
    const { seq: s, id, line } = r;
    const name = recordName(s, id);
    const hashMatches = auditRecordHash(raw as unknown as AuditRecord) === r.hash;
    const hashProblem = (): AuditProblem => ({
      seq: s,
      id,
      line,
      problem: 'hash-mismatch',
      message: `${name} was changed: its hash does not match its content`,
    });

    if (s <= this.#maxSeq) {
      if (s <= this.#from.seq || !this.#takeMissing(s)) {
        const message =
          s <= this.#from.seq
            ? `${name} is already covered by the starting point (record ${this.#from.seq})`
            : `${name} appears more than once`;
        this.push({ seq: s, id, line, problem: 'duplicate', message });
        if (!hashMatches) this.push(hashProblem());
        return;
      }
      this.push({
        seq: s,
        id,
        line,
        problem: 'reordered',
        message: `${name} is out of order: it comes after record ${this.#maxSeq}`,
      });
    } else if (s > this.#maxSeq + 1) {
      this.#addMissing(this.#maxSeq + 1, s - 1);
    }

    if (!hashMatches) this.push(hashProblem());

    const last = this.#last;
    if (last && last.seq !== s - 1 && !last.successorSeen) this.#orphans.set(last.seq, last.hash);
    let predecessor: string | undefined;
    if (s - 1 === this.#from.seq) {
      if (this.#from.hash === undefined) {
        this.#from.hash = r.prevHash;
        this.#matchCheckpoints(this.#from.seq, r.prevHash, undefined, undefined);
      }
      predecessor = this.#from.hash;
    } else if (last?.seq === s - 1) {
      predecessor = last.hash;
    } else if (this.#orphans.has(s - 1)) {
      predecessor = this.#orphans.get(s - 1);
      this.#orphans.delete(s - 1);
    }
    if (predecessor !== undefined) {
      if (r.prevHash !== predecessor) {
        this.push({
          seq: s,
          id,
          line,
          problem: 'broken-link',
          message: `${name} does not link to record ${s - 1}: its prevHash is not that record's hash`,
        });
      }
    } else {
      const claim: LinkClaim = { seq: s, id, line, prevHash: r.prevHash, outcome: 'pending' };
      this.#claims.set(s - 1, claim);
      this.#entries.push(() => {
        if (claim.outcome === 'ok') return [];
        const message =
          claim.outcome === 'mismatch'
            ? `${name} does not link to record ${s - 1}: its prevHash is not that record's hash`
            : `${name} links to record ${s - 1}, which is missing`;
        return [{ seq: s, id, line, problem: 'broken-link', message }];
      });
    }

    const claim = this.#claims.get(s);
    if (claim) {
      this.#claims.delete(s);
      claim.outcome = claim.prevHash === r.hash ? 'ok' : 'mismatch';
    }
    this.#last = { seq: s, hash: r.hash, successorSeen: claim !== undefined };

    this.#matchCheckpoints(s, r.hash, id, line);
    if (s > this.#maxSeq) {
      this.#maxSeq = s;
      this.#head = { hash: r.hash, id };
    }
    if (this.#firstSeq === undefined || s < this.#firstSeq) this.#firstSeq = s;
  }

  #addMissing(lo: number, hi: number): void {
    // An out-of-order record may later fill part of the range: the pieces left stay in `group`
    // and are reported where the gap was found.
    const group: MissingRange[] = [];
    const range: MissingRange = { lo, hi, group };
    group.push(range);
    this.#missing.push(range);
    this.#entries.push(() =>
      group.map((g) => ({
        seq: g.lo,
        problem: 'gap' as const,
        message:
          g.lo === g.hi
            ? `record ${g.lo} is missing`
            : `records ${g.lo} to ${g.hi} are missing (${g.hi - g.lo + 1} records)`,
      })),
    );
  }

  /** Whether `seq` was missing so far (and is not any more). */
  #takeMissing(seq: number): boolean {
    const index = this.#missing.findIndex((g) => g.lo <= seq && seq <= g.hi);
    const range = this.#missing[index];
    if (!range) return false;
    const pieces: MissingRange[] = [];
    if (range.lo < seq) pieces.push({ lo: range.lo, hi: seq - 1, group: range.group });
    if (seq < range.hi) pieces.push({ lo: seq + 1, hi: range.hi, group: range.group });
    this.#missing.splice(index, 1, ...pieces);
    range.group.splice(range.group.indexOf(range), 1, ...pieces);
    return true;
  }

  #prepare(): void {
    this.#prepared = true;
    const queued = this.#queued;
    this.#queued = [];
    this.#tenantId ??= queued[0]?.cp.tenantId;
    for (const item of queued) {
      const { cp, line } = item;
      const what = `checkpoint at record ${cp.seq} (${cp.at}, key ${cp.keyId})${line === undefined ? '' : ` on line ${line}`}`;
      if (cp.tenantId !== this.#tenantId) {
        this.push({
          seq: cp.seq,
          line,
          problem: 'wrong-tenant',
          message: `${what} is for tenant ${JSON.stringify(cp.tenantId)}, not ${JSON.stringify(this.#tenantId)}`,
        });
        continue;
      }
      const key = this.#trusted.get(cp.keyId);
      if (!key) {
        this.push({
          seq: cp.seq,
          line,
          problem: 'unknown-key',
          message: `${what} is signed by a key that is not trusted`,
        });
        continue;
      }
      if (!verifyAuditCheckpoint(cp, key)) {
        this.push({
          seq: cp.seq,
          line,
          problem: 'bad-signature',
          message: `${what} has an invalid signature: it was forged or altered`,
        });
        continue;
      }
      const list = this.#bySeq.get(cp.seq) ?? [];
      list.push(item);
      this.#bySeq.set(cp.seq, list);
    }
    if (this.#from.hash !== undefined) {
      this.#matchCheckpoints(this.#from.seq, this.#from.hash, undefined, undefined);
    }
  }

  #matchCheckpoints(seq: number, hash: string, id: string | undefined, line: number | undefined): void {
    const list = this.#bySeq.get(seq);
    if (!list) return;
    this.#bySeq.delete(seq);
    for (const { cp } of list) {
      if (cp.hash === hash) {
        this.#verified++;
        if (this.#anchoredSeq === undefined || seq > this.#anchoredSeq) this.#anchoredSeq = seq;
        continue;
      }
      const name = seq === this.#from.seq ? `the starting point (record ${seq})` : recordName(seq, id);
      this.push({
        seq,
        id,
        line,
        problem: 'checkpoint-mismatch',
        message: `${name} does not match the checkpoint signed at ${cp.at}: the log was rewritten from this record or earlier`,
      });
    }
  }

  finish(): Omit<AuditLogVerification, 'ok'> & { headId: string | undefined } {
    if (!this.#prepared) this.#prepare();
    let beyond: AuditCheckpoint | undefined;
    for (const [seq, list] of this.#bySeq) {
      for (const { cp } of list) {
        if (seq > this.#maxSeq) {
          if (!beyond || cp.seq > beyond.seq) beyond = cp;
        } else if (seq > this.#from.seq) {
          this.push({
            seq,
            problem: 'checkpoint-mismatch',
            message: `record ${seq} is missing, so the checkpoint signed at ${cp.at} cannot be matched`,
          });
        }
      }
    }
    if (beyond) {
      const end =
        this.#maxSeq > this.#from.seq
          ? `ends at ${recordName(this.#maxSeq, this.#head?.id)}`
          : 'has no records';
      this.push({
        ...(this.#maxSeq > this.#from.seq ? { seq: this.#maxSeq, id: this.#head?.id } : {}),
        problem: 'truncated',
        message: `the log ${end}, but the checkpoint signed at ${beyond.at} says it had ${beyond.seq} records`,
      });
    }
    return {
      tenantId: this.#tenantId,
      checked: this.#checked,
      firstSeq: this.#firstSeq,
      lastSeq: this.#firstSeq === undefined ? undefined : this.#maxSeq,
      headHash: this.#head?.hash ?? this.#from.hash ?? GENESIS_HASH,
      headId: this.#head?.id,
      checkpointsVerified: this.#verified,
      anchoredSeq: this.#anchoredSeq,
      problems: this.#entries.flatMap((e) => (typeof e === 'function' ? e() : [e])),
    };
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function summary(error: z.ZodError): string {
  return toIssues(error)
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

function result(
  state: Omit<AuditLogVerification, 'ok'> & { headId?: string | undefined },
): AuditLogVerification {
  const { headId: _headId, problems, ...rest } = state;
  // Absent rather than `undefined`, so results compare and serialise cleanly.
  const defined = <T extends object>(o: T): T =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  return defined({ ok: problems.length === 0, ...rest, problems: problems.map(defined) });
}

const FromSchema = z.strictObject({ seq: z.number().int().nonnegative(), hash: HexHash });

/**
 * Verifies one tenant's records in the order given, from a known start (default genesis): every
 * hash matches its record, every record links to the one before, no `seq` is missing, repeated
 * or out of order, and every record belongs to the tenant. Each checkpoint is checked against
 * `publicKeys` (`unknown-key`, `bad-signature`) and must match the record at its `seq`
 * (`checkpoint-mismatch`); one beyond the last record means the log was cut short (`truncated`).
 *
 * Reads `records` once; memory does not grow with their number.
 * @throws ValidationError for a bad `from`, `tenantId` or key (the caller's mistakes; everything
 *   wrong with the records is a problem in the result).
 */
export async function verifyAuditRecords(
  records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>,
  options: VerifyAuditRecordsOptions = {},
): Promise<AuditLogVerification> {
  const verifier = chainVerifierFor(options);
  for await (const record of records) verifier.addRecord(record);
  return result(verifier.finish());
}

/** SQL-ish names of the columns, as a person looking at the table sees them. */
const COLUMN_NAMES: Record<string, string> = { tenantId: 'tenant_id', actorId: 'actor_id' };

/** Options of {@link verifyStoredAuditRows}. */
export interface VerifyStoredAuditRowsOptions extends VerifyAuditRecordsOptions {
  /** Report `missing-checkpoint` when no checkpoint could be verified. @default false */
  requireCheckpoint?: boolean;
}

/** A chain verifier set up from the options both verifications share (validated here). */
function chainVerifierFor(options: VerifyAuditRecordsOptions): ChainVerifier {
  const from = options.from
    ? validate(FromSchema, options.from, 'VerifyAuditRecordsOptions.from')
    : undefined;
  const tenantId =
    options.tenantId === undefined
      ? undefined
      : validate(IdSchema, options.tenantId, 'VerifyAuditRecordsOptions.tenantId');
  const verifier = new ChainVerifier({
    tenantId,
    from: from ?? { seq: 0, hash: GENESIS_HASH },
    publicKeys: options.publicKeys ?? [],
  });
  for (const cp of options.checkpoints ?? []) verifier.addCheckpoint(cp);
  return verifier;
}

/**
 * Verifies a tenant's log as a store keeps it (`store.audit.rows`, in `seq` column order):
 * everything {@link verifyAuditRecords} checks on the records, and for every row each column kept
 * beside the record (`tenant_id`, `seq`, `id`, `at`, `action`, `actor_id`, `hash`) against the
 * hashed record (`column-mismatch`, naming the row and the column). A row whose record is not a
 * JSON object is `malformed`. Nothing in the rows makes it throw: a damaged log is a result.
 * @throws ValidationError for bad options only.
 */
export async function verifyStoredAuditRows(
  rows: Iterable<StoredAuditRow> | AsyncIterable<StoredAuditRow>,
  options: VerifyStoredAuditRowsOptions = {},
): Promise<AuditLogVerification> {
  const verifier = chainVerifierFor(options);
  for await (const row of rows) {
    const { seq, id } = row.columns;
    for (const m of auditColumnMismatches(row)) {
      const name = COLUMN_NAMES[m.column] ?? m.column;
      verifier.push({
        seq,
        id,
        column: m.column,
        problem: 'column-mismatch',
        message: `${recordName(seq, id)}: column ${name} is ${JSON.stringify(m.stored)} but the hashed record says ${m.recorded === undefined ? 'nothing' : JSON.stringify(m.recorded)}: the row was edited underneath the store`,
      });
    }
    if (storedRecord(row)) verifier.addRecord(row.record);
    else verifier.addUnreadable(seq, id);
  }
  const state = verifier.finish();
  if (options.requireCheckpoint && state.checkpointsVerified === 0) {
    state.problems.push({
      problem: 'missing-checkpoint',
      message: 'no checkpoint could be verified: nothing anchors the head of the log',
    });
  }
  return result(state);
}

async function* readLines(
  input: string | AsyncIterable<string | Buffer>,
): AsyncGenerator<{ text: string; line: number } | { oversized: true; line: number }> {
  const decoder = new StringDecoder('utf8');
  let buffer = '';
  let line = 0;
  let skipping = false;
  const chunks = typeof input === 'string' ? [input] : input;
  for await (const chunk of chunks) {
    buffer += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    for (let nl = buffer.indexOf('\n', start); nl !== -1; nl = buffer.indexOf('\n', start)) {
      line++;
      if (skipping) {
        skipping = false;
        yield { oversized: true, line };
      } else {
        yield { text: buffer.slice(start, nl), line };
      }
      start = nl + 1;
    }
    buffer = buffer.slice(start);
    if (buffer.length > AUDIT_EXPORT_MAX_LINE) {
      skipping = true;
      buffer = '';
    }
  }
  buffer += decoder.end();
  if (skipping) yield { oversized: true, line: line + 1 };
  else if (buffer.length > 0) yield { text: buffer, line: line + 1 };
}

/**
 * Verifies an export offline: a string, or an async iterable of lines or chunks (for instance
 * `fs.createReadStream(path)`), read once in a single pass. Everything {@link verifyAuditRecords}
 * finds, plus lines that are not JSON or not records (`malformed`), records of another tenant
 * than the header's (`wrong-tenant`), and a file that ends before the record its header names
 * (`truncated`) or whose last record does not match the header's `headHash`.
 *
 * An export that starts after record 1 is checked from its first record's `prevHash`: nothing
 * before it is covered, except by a checkpoint at `fromSeq - 1`.
 * @throws ValidationError for a bad key or input that is neither a string nor an async iterable.
 */
export async function verifyAuditExport(
  input: string | AsyncIterable<string | Buffer>,
  options: VerifyAuditExportOptions = {},
): Promise<AuditLogVerification> {
  if (typeof input !== 'string' && !(input && typeof input === 'object' && Symbol.asyncIterator in input)) {
    throw new ValidationError('verifyAuditExport input', [
      { path: [], message: 'must be a string or an async iterable of strings or Buffers' },
    ]);
  }
  const publicKeys = options.publicKeys ?? [];
  let header: AuditExportHeader | undefined;
  let verifier: ChainVerifier | undefined;
  const start = (h: AuditExportHeader | undefined) =>
    new ChainVerifier({
      tenantId: h?.tenantId,
      from: !h || h.fromSeq === 1 ? { seq: 0, hash: GENESIS_HASH } : { seq: h.fromSeq - 1, hash: undefined },
      publicKeys,
    });

  for await (const item of readLines(input)) {
    const { line } = item;
    let value: unknown;
    let unreadable: string | undefined;
    if ('oversized' in item) {
      unreadable = `line ${line} is longer than ${AUDIT_EXPORT_MAX_LINE} characters`;
    } else {
      try {
        value = JSON.parse(item.text);
      } catch {
        unreadable = `line ${line} is not valid JSON`;
      }
    }
    if (!verifier) {
      const parsed = unreadable === undefined ? AuditExportHeaderSchema.safeParse(value) : undefined;
      if (parsed?.success) {
        header = parsed.data;
        verifier = start(header);
        continue;
      }
      verifier = start(undefined);
      const why = parsed ? summary(parsed.error) : (unreadable ?? '');
      verifier.push({ line, problem: 'malformed', message: `line 1 is not an export header: ${why}` });
      // Without a header, a first line that is a record is still checked as one.
      if (unreadable !== undefined || (isPlainObject(value) && 'format' in value)) continue;
    }
    if (unreadable !== undefined) {
      verifier.push({ line, problem: 'malformed', message: unreadable });
      continue;
    }
    if (isPlainObject(value) && 'checkpoint' in value) {
      const wrapper = CheckpointLineSchema.safeParse(value);
      if (!wrapper.success) {
        verifier.push({
          line,
          problem: 'malformed',
          message: `line ${line} is not a checkpoint line: ${summary(wrapper.error)}`,
        });
      } else if (verifier.hasRecords) {
        verifier.push({
          line,
          problem: 'malformed',
          message: `line ${line} is a checkpoint after the records: checkpoints come right after the header`,
        });
      } else {
        verifier.addCheckpoint(wrapper.data.checkpoint, line);
      }
      continue;
    }
    verifier.addRecord(value, line);
  }

  if (!verifier) {
    verifier = start(undefined);
    verifier.push({ line: 1, problem: 'malformed', message: 'the export is empty: it has no header' });
  }
  const state = verifier.finish();
  if (header) {
    const problems = state.problems;
    const lastSeq = state.lastSeq ?? header.fromSeq - 1;
    if (lastSeq < header.toSeq) {
      const end =
        state.lastSeq === undefined ? 'has no records' : `ends at ${recordName(lastSeq, state.headId)}`;
      problems.push({
        ...(state.lastSeq === undefined ? {} : { seq: lastSeq, id: state.headId }),
        problem: 'truncated',
        message: `the export ${end}, but its header says it runs to record ${header.toSeq} (${header.count} records)`,
      });
    } else if (lastSeq > header.toSeq) {
      problems.push({
        line: 1,
        problem: 'malformed',
        message: `the header says the export ends at record ${header.toSeq}, but it holds ${recordName(lastSeq, state.headId)}`,
      });
    } else if (state.headHash !== header.headHash && (state.lastSeq !== undefined || header.fromSeq === 1)) {
      problems.push({
        ...(state.lastSeq === undefined ? {} : { seq: lastSeq, id: state.headId }),
        line: 1,
        problem: 'checkpoint-mismatch',
        message: `${state.lastSeq === undefined ? 'the starting point' : recordName(lastSeq, state.headId)} does not match the headHash in the export's header`,
      });
    } else if (state.checked !== header.count && problems.length === 0) {
      problems.push({
        line: 1,
        problem: 'malformed',
        message: `the header says the export holds ${header.count} records, but it holds ${state.checked}`,
      });
    }
  }
  if (options.requireCheckpoint && state.checkpointsVerified === 0) {
    state.problems.push({
      problem: 'missing-checkpoint',
      message: 'no checkpoint in the export could be verified: nothing anchors the head of the log',
    });
  }
  return result(state);
}
