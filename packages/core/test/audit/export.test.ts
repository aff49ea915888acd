import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type AuditCheckpoint,
  type AuditRecord,
  auditRecordHash,
  canonicalJson,
  createMemoryStore,
  exportAuditLog,
  GENESIS_HASH,
  generateAuditSigningKey,
  type Store,
  signAuditCheckpoint,
  ValidationError,
  verifyAuditExport,
  verifyAuditRecords,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const key = generateAuditSigningKey();
const attacker = generateAuditSigningKey();
const exportedAt = new Date('2025-03-01T12:00:00.000Z');
const publicKeys = [key.publicKeyPem];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-audit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function append(store: Store, tenantId: string, n: number) {
  for (let i = 1; i <= n; i++) {
    await store.audit.append({
      tenantId,
      actor: { principalId: 'alice', kind: 'human' },
      action: i % 2 ? 'patch.scan' : 'inventory.server.create',
      target: { type: 'server', id: `web-${i}` },
      decision: 'allow',
      result: 'success',
      reason: i === 2 ? 'café ☕ — maintenance' : undefined,
      details: { i, note: '日本語' },
    });
  }
}

/** A real chain from the real store: records of `acme`, and a second tenant `globex` beside it. */
async function realLog(n = 10) {
  const store = createMemoryStore();
  await append(store, 'acme', n);
  await append(store, 'globex', 5);
  const records = await store.audit.list('acme', { limit: 10_000 });
  const others = await store.audit.list('globex', { limit: 10_000 });
  return { store, records, others };
}

function checkpointAt(records: readonly AuditRecord[], seq: number, signer = key.privateKeyPem) {
  const r = records[seq - 1]!;
  return signAuditCheckpoint({ tenantId: r.tenantId, seq, hash: r.hash, at: r.at }, signer);
}

async function collect(lines: AsyncIterable<string>): Promise<string> {
  let out = '';
  for await (const line of lines) out += line;
  return out;
}

/** The export as lines (without their `\n`), so that a test can tamper with them like an attacker. */
async function exportLines(records: AuditRecord[], checkpoints: AuditCheckpoint[] = []) {
  const text = await collect(exportAuditLog({ tenantId: 'acme', records, checkpoints, exportedAt }));
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

const join_ = (lines: string[]) => `${lines.join('\n')}\n`;
/** Index in the lines of record `seq`, with `k` checkpoint lines after the header. */
const at = (seq: number, k: number) => k + seq;
const lineOf = (seq: number, k: number) => at(seq, k) + 1;

describe('exportAuditLog', () => {
  it('exportAuditLog — writes the header, the checkpoint lines, then each record as canonical JSON', async () => {
    const { records } = await realLog(4);
    const cp = checkpointAt(records, 4);
    const lines = await exportLines(records, [cp]);
    expect(lines).toHaveLength(1 + 1 + 4);
    expect(JSON.parse(lines[0]!)).toEqual({
      format: 'fleetward-audit-export/1',
      tenantId: 'acme',
      exportedAt: '2025-03-01T12:00:00.000Z',
      fromSeq: 1,
      toSeq: 4,
      count: 4,
      headHash: records[3]!.hash,
    });
    expect(lines[0]).toBe(canonicalJson(JSON.parse(lines[0]!)));
    expect(JSON.parse(lines[1]!)).toEqual({ checkpoint: cp });
    expect(lines.slice(2)).toEqual(records.map((r) => canonicalJson(r)));
  });

  it('exportAuditLog — an empty log is a header alone, and verifies', async () => {
    const text = await collect(exportAuditLog({ tenantId: 'acme', records: [], exportedAt }));
    expect(JSON.parse(text)).toMatchObject({ fromSeq: 1, toSeq: 0, count: 0, headHash: GENESIS_HASH });
    expect(await verifyAuditExport(text)).toMatchObject({ ok: true, checked: 0, headHash: GENESIS_HASH });
  });

  it('exportAuditLog — streams: the first records are written before the source has produced the rest', async () => {
    const { records } = await realLog(10);
    let produced = 0;
    async function* source() {
      for (const r of records) {
        produced++;
        yield r;
      }
    }
    const head = records.at(-1)!;
    const lines = exportAuditLog({ tenantId: 'acme', records: source(), exportedAt, head });
    const seen: [number, number | undefined][] = [];
    for await (const line of lines) {
      seen.push([produced, JSON.parse(line).seq]);
      if (seen.length === 3) break;
    }
    // Header after one record read ahead, then record 1, then record 2.
    expect(seen).toEqual([
      [1, undefined],
      [1, 1],
      [2, 2],
    ]);
  });

  it('exportAuditLog — a stream with its head verifies like the array', async () => {
    const { records } = await realLog(6);
    const text = await collect(
      exportAuditLog({
        tenantId: 'acme',
        records: (async function* () {
          yield* records;
        })(),
        exportedAt,
        head: records.at(-1)!,
        checkpoints: [checkpointAt(records, 6)],
      }),
    );
    expect(text).toBe(join_(await exportLines(records, [checkpointAt(records, 6)])));
    expect(await verifyAuditExport(text, { publicKeys })).toMatchObject({ ok: true, checkpointsVerified: 1 });
  });

  it('exportAuditLog — a part of the log from a later record verifies from that record on', async () => {
    const { records } = await realLog(10);
    const text = await collect(
      exportAuditLog({
        tenantId: 'acme',
        records: records.slice(4),
        exportedAt,
        checkpoints: [checkpointAt(records, 4), checkpointAt(records, 10)],
      }),
    );
    expect(JSON.parse(text.split('\n')[0]!)).toMatchObject({ fromSeq: 5, toSeq: 10, count: 6 });
    expect(await verifyAuditExport(text, { publicKeys })).toEqual({
      ok: true,
      tenantId: 'acme',
      checked: 6,
      firstSeq: 5,
      lastSeq: 10,
      headHash: records[9]!.hash,
      checkpointsVerified: 2,
      anchoredSeq: 10,
      problems: [],
    });
  });

  it('exportAuditLog — refuses, before writing anything, a stream without head and a checkpoint of another tenant', async () => {
    const { records, others } = await realLog(3);
    const stream = (async function* () {
      yield* records;
    })();
    expect(() => exportAuditLog({ tenantId: 'acme', records: stream, exportedAt })).toThrow(ValidationError);
    const foreign = checkpointAt(others, 2);
    try {
      exportAuditLog({ tenantId: 'acme', records, exportedAt, checkpoints: [foreign] });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['checkpoints.0.tenantId']);
    }
    expect(() => exportAuditLog({ tenantId: 'acme', records, exportedAt: new Date('x') })).toThrow(
      /exportedAt/,
    );
  });
});

describe('verifyAuditExport', () => {
  it('verifyAuditExport — accepts an untouched export with its checkpoints', async () => {
    const { records } = await realLog(10);
    const text = join_(await exportLines(records, [checkpointAt(records, 5), checkpointAt(records, 10)]));
    expect(await verifyAuditExport(text, { publicKeys, requireCheckpoint: true })).toEqual({
      ok: true,
      tenantId: 'acme',
      checked: 10,
      firstSeq: 1,
      lastSeq: 10,
      headHash: records[9]!.hash,
      checkpointsVerified: 2,
      anchoredSeq: 10,
      problems: [],
    });
  });

  it('verifyAuditExport — an edited record is a hash-mismatch naming its seq, id and line', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records, [checkpointAt(records, 10)]);
    const i = at(4, 1);
    expect(lines[i]).toContain('"i":4');
    lines[i] = lines[i]!.replace('"i":4', '"i":5');
    const result = await verifyAuditExport(join_(lines), { publicKeys });
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([
      {
        seq: 4,
        id: records[3]!.id,
        line: lineOf(4, 1),
        problem: 'hash-mismatch',
        message: `record 4 (id ${records[3]!.id}) was changed: its hash does not match its content`,
      },
    ]);
  });

  it('verifyAuditExport — every single-byte edit of a record line is found on that line', async () => {
    const { records } = await realLog(6);
    const lines = await exportLines(records);
    const target = Buffer.from(lines[at(3, 0)]!, 'utf8');
    const missed: number[] = [];
    for (let pos = 0; pos < target.length; pos++) {
      const edited = Buffer.from(target);
      edited[pos] = edited[pos] === 0x61 ? 0x62 : 0x61;
      const copy = [...lines];
      copy[at(3, 0)] = edited.toString('utf8');
      const result = await verifyAuditExport(join_(copy));
      if (result.ok || !result.problems.some((p) => p.line === lineOf(3, 0))) missed.push(pos);
    }
    expect(missed).toEqual([]);
  });

  it('verifyAuditExport — a line that is not JSON is malformed, and the chain shows the record missing', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    lines[at(4, 0)] = `x${lines[at(4, 0)]!.slice(1)}`;
    const problems = (await verifyAuditExport(join_(lines))).problems;
    expect(problems).toEqual([
      { line: lineOf(4, 0), problem: 'malformed', message: `line ${lineOf(4, 0)} is not valid JSON` },
      { seq: 4, problem: 'gap', message: 'record 4 is missing' },
      {
        seq: 5,
        id: records[4]!.id,
        line: lineOf(5, 0),
        problem: 'broken-link',
        message: `record 5 (id ${records[4]!.id}) links to record 4, which is missing`,
      },
    ]);
  });

  it('verifyAuditExport — a record that fails the schema is malformed, naming the line, seq and id', async () => {
    const { records } = await realLog(5);
    const lines = await exportLines(records);
    lines[at(2, 0)] = lines[at(2, 0)]!.replace('"decision":"allow"', '"decision":"maybe"');
    const problems = (await verifyAuditExport(join_(lines))).problems;
    expect(problems.map(({ seq, id, line, problem }) => ({ seq, id, line, problem }))).toEqual([
      { seq: 2, id: records[1]!.id, line: lineOf(2, 0), problem: 'malformed' },
      { seq: 2, id: records[1]!.id, line: lineOf(2, 0), problem: 'hash-mismatch' },
    ]);
    expect(problems[0]!.message).toMatch(
      /^record 2 \(id .+\) \(line 3\) is not a valid audit record: decision:/,
    );
  });

  it('verifyAuditExport — a deleted middle record is a gap and the next record a broken link', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    lines.splice(at(5, 0), 1);
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      { seq: 5, problem: 'gap', message: 'record 5 is missing' },
      {
        seq: 6,
        id: records[5]!.id,
        line: lineOf(5, 0),
        problem: 'broken-link',
        message: `record 6 (id ${records[5]!.id}) links to record 5, which is missing`,
      },
    ]);
  });

  it('verifyAuditExport — several deleted records are one gap naming the range', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    lines.splice(at(3, 0), 4);
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      { seq: 3, problem: 'gap', message: 'records 3 to 6 are missing (4 records)' },
      expect.objectContaining({ seq: 7, id: records[6]!.id, problem: 'broken-link' }),
    ]);
  });

  it('verifyAuditExport — two swapped records are reported as reordered, and nothing else', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    [lines[at(4, 0)], lines[at(5, 0)]] = [lines[at(5, 0)]!, lines[at(4, 0)]!];
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      {
        seq: 4,
        id: records[3]!.id,
        line: lineOf(5, 0),
        problem: 'reordered',
        message: `record 4 (id ${records[3]!.id}) is out of order: it comes after record 5`,
      },
    ]);
  });

  it('verifyAuditExport — out-of-order records are still checked link by link', async () => {
    const { records } = await realLog(6);
    const forged = records.map((r) => ({ ...r }));
    // Record 3 rewritten with its own hash recomputed: only record 4's link can tell.
    forged[2] = { ...forged[2]!, result: 'failure' };
    forged[2] = { ...forged[2]!, hash: auditRecordHash(forged[2]!) };
    const lines = await exportLines(forged);
    [lines[at(3, 0)], lines[at(4, 0)]] = [lines[at(4, 0)]!, lines[at(3, 0)]!];
    // In the order the lines are read: record 4 first, then record 3.
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      {
        seq: 4,
        id: records[3]!.id,
        line: lineOf(3, 0),
        problem: 'broken-link',
        message: `record 4 (id ${records[3]!.id}) does not link to record 3: its prevHash is not that record's hash`,
      },
      expect.objectContaining({ seq: 3, id: records[2]!.id, line: lineOf(4, 0), problem: 'reordered' }),
    ]);
  });

  it('verifyAuditExport — records moved far apart are reordered, with no gap or broken link', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    [lines[at(3, 0)], lines[at(7, 0)]] = [lines[at(7, 0)]!, lines[at(3, 0)]!];
    const problems = (await verifyAuditExport(join_(lines))).problems;
    expect(new Set(problems.map((p) => p.problem))).toEqual(new Set(['reordered']));
    expect(problems.map((p) => p.seq)).toContain(3);
  });

  it('verifyAuditExport — a repeated record is a duplicate', async () => {
    const { records } = await realLog(5);
    const lines = await exportLines(records);
    lines.splice(at(4, 0), 0, lines[at(2, 0)]!);
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      {
        seq: 2,
        id: records[1]!.id,
        line: lineOf(4, 0),
        problem: 'duplicate',
        message: `record 2 (id ${records[1]!.id}) appears more than once`,
      },
    ]);
  });

  it('verifyAuditExport — a dropped tail is truncated, by the checkpoint and by the header', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records, [checkpointAt(records, 10)]);
    lines.splice(at(8, 1));
    const last = records[6]!;
    expect((await verifyAuditExport(join_(lines), { publicKeys })).problems).toEqual([
      {
        seq: 7,
        id: last.id,
        problem: 'truncated',
        message: `the log ends at record 7 (id ${last.id}), but the checkpoint signed at ${records[9]!.at} says it had 10 records`,
      },
      {
        seq: 7,
        id: last.id,
        problem: 'truncated',
        message: `the export ends at record 7 (id ${last.id}), but its header says it runs to record 10 (10 records)`,
      },
    ]);
  });

  it('verifyAuditExport — a dropped tail with a rewritten header is still truncated by the checkpoint', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records, [checkpointAt(records, 10)]);
    lines.splice(at(8, 1));
    lines[0] = canonicalJson({ ...JSON.parse(lines[0]!), toSeq: 7, count: 7, headHash: records[6]!.hash });
    const result = await verifyAuditExport(join_(lines), { publicKeys });
    expect(result.problems).toEqual([
      expect.objectContaining({ seq: 7, id: records[6]!.id, problem: 'truncated' }),
    ]);
  });

  it('verifyAuditExport — without a checkpoint a cut log with a rewritten header passes, unless one is required', async () => {
    const { records } = await realLog(10);
    const lines = await exportLines(records);
    lines.splice(at(8, 0));
    lines[0] = canonicalJson({ ...JSON.parse(lines[0]!), toSeq: 7, count: 7, headHash: records[6]!.hash });
    expect(await verifyAuditExport(join_(lines))).toMatchObject({ ok: true, lastSeq: 7 });
    expect((await verifyAuditExport(join_(lines), { requireCheckpoint: true })).problems).toEqual([
      expect.objectContaining({ problem: 'missing-checkpoint' }),
    ]);
  });

  it('verifyAuditExport — a chain recomputed after an edit is caught by the checkpoints after the edit', async () => {
    const { records } = await realLog(10);
    const checkpoints = [checkpointAt(records, 4), checkpointAt(records, 7), checkpointAt(records, 10)];
    // The attacker rewrites record 5 and every hash and link after it, and fixes the header.
    const forged: AuditRecord[] = records.map((r) => ({ ...r }));
    forged[4] = { ...forged[4]!, details: { i: 5, note: 'nothing happened here' } };
    for (let i = 4; i < forged.length; i++) {
      const prevHash = forged[i - 1]!.hash;
      const unhashed = { ...forged[i]!, prevHash };
      forged[i] = { ...unhashed, hash: auditRecordHash(unhashed) };
    }
    const lines = await exportLines(forged, checkpoints);
    expect(await verifyAuditExport(join_(await exportLines(forged)))).toMatchObject({ ok: true });
    const result = await verifyAuditExport(join_(lines), { publicKeys });
    expect(result).toMatchObject({ ok: false, checkpointsVerified: 1, anchoredSeq: 4 });
    expect(result.problems).toEqual([
      {
        seq: 7,
        id: records[6]!.id,
        line: lineOf(7, 3),
        problem: 'checkpoint-mismatch',
        message: `record 7 (id ${records[6]!.id}) does not match the checkpoint signed at ${records[6]!.at}: the log was rewritten from this record or earlier`,
      },
      expect.objectContaining({ seq: 10, id: records[9]!.id, problem: 'checkpoint-mismatch' }),
    ]);
  });

  it('verifyAuditExport — forged checkpoints are unknown-key or bad-signature and vouch for nothing', async () => {
    const { records } = await realLog(6);
    const genuine = checkpointAt(records, 6);
    const ownKey = checkpointAt(records, 6, attacker.privateKeyPem);
    const claimedKey = { ...ownKey, keyId: key.keyId };
    const altered = { ...genuine, seq: 5, hash: records[4]!.hash };
    const lines = await exportLines(records, [ownKey, claimedKey, altered]);
    const result = await verifyAuditExport(join_(lines), { publicKeys });
    expect(result.checkpointsVerified).toBe(0);
    expect(result.problems.map(({ seq, line, problem }) => ({ seq, line, problem }))).toEqual([
      { seq: 6, line: 2, problem: 'unknown-key' },
      { seq: 6, line: 3, problem: 'bad-signature' },
      { seq: 5, line: 4, problem: 'bad-signature' },
    ]);
    expect(result.problems[1]!.message).toContain('has an invalid signature');
  });

  it('verifyAuditExport — with no trusted key given, every checkpoint is unknown-key', async () => {
    const { records } = await realLog(3);
    const lines = await exportLines(records, [checkpointAt(records, 3)]);
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      expect.objectContaining({ seq: 3, line: 2, problem: 'unknown-key' }),
    ]);
  });

  it("verifyAuditExport — another tenant's record slipped in is wrong-tenant, naming it", async () => {
    const { records, others } = await realLog(6);
    const lines = await exportLines(records);
    const intruder = others[1]!;
    lines.splice(at(4, 0), 0, canonicalJson(intruder));
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      {
        seq: 2,
        id: intruder.id,
        line: lineOf(4, 0),
        problem: 'wrong-tenant',
        message: `record 2 (id ${intruder.id}) belongs to tenant "globex", not "acme"`,
      },
    ]);
  });

  it("verifyAuditExport — a record replaced by another tenant's leaves a gap in the tenant's chain", async () => {
    const { records, others } = await realLog(6);
    const lines = await exportLines(records);
    lines[at(4, 0)] = canonicalJson(others[3]!);
    expect((await verifyAuditExport(join_(lines))).problems.map((p) => [p.problem, p.seq])).toEqual([
      ['wrong-tenant', 4],
      ['gap', 4],
      ['broken-link', 5],
    ]);
  });

  it('verifyAuditExport — a checkpoint of another tenant or after the records is reported', async () => {
    const { records, others } = await realLog(4);
    const lines = await exportLines(records);
    lines.splice(1, 0, canonicalJson({ checkpoint: checkpointAt(others, 2) }));
    lines.push(canonicalJson({ checkpoint: checkpointAt(records, 4) }));
    expect(
      (await verifyAuditExport(join_(lines), { publicKeys })).problems.map((p) => [p.problem, p.line]),
    ).toEqual([
      ['wrong-tenant', 2],
      ['malformed', 7],
    ]);
  });

  it("verifyAuditExport — a last record that does not match the header's headHash is reported", async () => {
    const { records } = await realLog(4);
    const lines = await exportLines(records);
    lines[0] = canonicalJson({ ...JSON.parse(lines[0]!), headHash: records[2]!.hash });
    expect((await verifyAuditExport(join_(lines))).problems).toEqual([
      expect.objectContaining({ seq: 4, id: records[3]!.id, line: 1, problem: 'checkpoint-mismatch' }),
    ]);
  });

  it('verifyAuditExport — a missing header, an empty input and an overlong line are malformed', async () => {
    const { records } = await realLog(3);
    const lines = await exportLines(records);
    expect((await verifyAuditExport(join_(lines.slice(1)))).problems).toEqual([
      expect.objectContaining({ line: 1, problem: 'malformed' }),
    ]);
    expect((await verifyAuditExport('')).problems).toEqual([
      expect.objectContaining({
        line: 1,
        problem: 'malformed',
        message: 'the export is empty: it has no header',
      }),
    ]);
    const huge = `{"pad":"${'x'.repeat(9 * 1024 * 1024)}"}`;
    const problems = (await verifyAuditExport(join_([...lines.slice(0, 3), huge, ...lines.slice(3)])))
      .problems;
    expect(problems).toEqual([expect.objectContaining({ line: 4, problem: 'malformed' })]);
  });

  it('verifyAuditExport — reads a file in small chunks that split lines and UTF-8 characters', async () => {
    const { records } = await realLog(10);
    const path = join(dir, 'audit.jsonl');
    writeFileSync(path, join_(await exportLines(records, [checkpointAt(records, 10)])));
    expect(readFileSync(path, 'utf8')).toContain('☕');
    const result = await verifyAuditExport(createReadStream(path, { highWaterMark: 7 }), { publicKeys });
    expect(result).toMatchObject({ ok: true, checked: 10, checkpointsVerified: 1 });
  });

  it('verifyAuditExport — a 100,000-record log exported to a file verifies in one streaming pass', {
    timeout: 180_000,
  }, async () => {
    const n = 100_000;
    const chain = function* () {
      let prevHash = GENESIS_HASH;
      const start = Date.UTC(2025, 0, 1);
      for (let seq = 1; seq <= n; seq++) {
        const unhashed = {
          tenantId: 'acme',
          actor: { principalId: 'svc-patcher', kind: 'service' as const },
          action: 'patch.scan',
          target: { type: 'server', id: `web-${seq % 1000}` },
          decision: 'allow' as const,
          result: 'success' as const,
          details: { seq },
          seq,
          id: `rec-${seq}`,
          at: new Date(start + seq * 1000).toISOString(),
          prevHash,
        };
        const record: AuditRecord = { ...unhashed, hash: auditRecordHash(unhashed) };
        prevHash = record.hash;
        yield record;
      }
    };
    // The generator is deterministic: one pass to learn the hashes to sign, one to export.
    const signed = new Map<number, AuditRecord>();
    for (const r of chain()) if (r.seq === 50_000 || r.seq === n) signed.set(r.seq, r);
    const checkpoints = [...signed.values()].map((r) =>
      signAuditCheckpoint({ tenantId: 'acme', seq: r.seq, hash: r.hash, at: r.at }, key.privateKeyPem),
    );
    const path = join(dir, 'big.jsonl');
    const head = signed.get(n)!;
    await pipeline(
      Readable.from(exportAuditLog({ tenantId: 'acme', records: chain(), checkpoints, exportedAt, head })),
      createWriteStream(path),
    );
    const result = await verifyAuditExport(createReadStream(path), { publicKeys, requireCheckpoint: true });
    expect(result).toEqual({
      ok: true,
      tenantId: 'acme',
      checked: n,
      firstSeq: 1,
      lastSeq: n,
      headHash: head.hash,
      checkpointsVerified: 2,
      anchoredSeq: n,
      problems: [],
    });
  });
});

describe('verifyAuditRecords', () => {
  it('verifyAuditRecords — accepts a real chain straight from the store', async () => {
    const { store, records } = await realLog(10);
    const result = await verifyAuditRecords(await store.audit.list('acme'), {
      checkpoints: [checkpointAt(records, 10)],
      publicKeys,
    });
    expect(result).toMatchObject({
      ok: true,
      tenantId: 'acme',
      checked: 10,
      checkpointsVerified: 1,
      anchoredSeq: 10,
    });
  });

  it('verifyAuditRecords — continues from a known-good record, checking a checkpoint at that record', async () => {
    const { records } = await realLog(10);
    const from = { seq: 6, hash: records[5]!.hash };
    const ok = await verifyAuditRecords(records.slice(6), {
      from,
      checkpoints: [checkpointAt(records, 6)],
      publicKeys,
    });
    expect(ok).toMatchObject({ ok: true, checked: 4, firstSeq: 7, lastSeq: 10, checkpointsVerified: 1 });
    const wrongStart = await verifyAuditRecords(records.slice(6), {
      from: { seq: 6, hash: records[4]!.hash },
    });
    expect(wrongStart.problems).toEqual([expect.objectContaining({ seq: 7, problem: 'broken-link' })]);
  });

  it('verifyAuditRecords — a checkpoint beyond the last record means the log was truncated', async () => {
    const { records } = await realLog(10);
    const result = await verifyAuditRecords(records.slice(0, 8), {
      checkpoints: [checkpointAt(records, 10)],
      publicKeys,
    });
    expect(result.problems).toEqual([
      expect.objectContaining({ seq: 8, id: records[7]!.id, problem: 'truncated' }),
    ]);
    const empty = await verifyAuditRecords([], { checkpoints: [checkpointAt(records, 10)], publicKeys });
    expect(empty.problems).toEqual([
      expect.objectContaining({
        problem: 'truncated',
        message: `the log has no records, but the checkpoint signed at ${records[9]!.at} says it had 10 records`,
      }),
    ]);
  });

  it('verifyAuditRecords — records of another tenant than the one asked for are wrong-tenant', async () => {
    const { others } = await realLog(2);
    const result = await verifyAuditRecords(others, { tenantId: 'acme' });
    expect(result.problems.map((p) => [p.problem, p.seq, p.id])).toEqual(
      others.map((r) => ['wrong-tenant', r.seq, r.id]),
    );
  });

  it('verifyAuditRecords — a bad starting point or key is a ValidationError', async () => {
    await expect(verifyAuditRecords([], { from: { seq: 1, hash: 'nope' } })).rejects.toThrow(ValidationError);
    await expect(verifyAuditRecords([], { publicKeys: ['not a key'] })).rejects.toThrow(ValidationError);
  });

  it('verifyAuditRecords — names a record edited inside the SQLite file behind the store', async () => {
    const path = join(dir, 'fleetward.sqlite');
    let store = createSqliteStore({ path });
    await append(store, 'acme', 5);
    const before = await store.audit.list('acme');
    await store.close();

    // An attacker with the file: drop the append-only trigger, change one byte of record 3.
    const db = new Database(path);
    db.exec('DROP TRIGGER audit_log_no_update');
    const row = db.prepare("SELECT record FROM audit_log WHERE tenant_id = 'acme' AND seq = 3").get() as {
      record: string;
    };
    expect(row.record).toContain('"i":3');
    db.prepare("UPDATE audit_log SET record = ? WHERE tenant_id = 'acme' AND seq = 3").run(
      row.record.replace('"i":3', '"i":4'),
    );
    db.close();

    store = createSqliteStore({ path });
    try {
      const result = await verifyAuditRecords(await store.audit.list('acme'));
      expect(result.problems).toEqual([
        {
          seq: 3,
          id: before[2]!.id,
          problem: 'hash-mismatch',
          message: `record 3 (id ${before[2]!.id}) was changed: its hash does not match its content`,
        },
      ]);
    } finally {
      await store.close();
    }
  });
});
