import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import {
  type ComplianceReportData,
  ComplianceReportDataSchema,
  parseComplianceReportData,
  renderJson,
} from '../../src/report/index.js';
import { sampleReport } from './sample.js';

/** Rebuilds every object with its keys in reverse order. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([k, v]) => [k, reverseKeys(v)]),
    );
  }
  return value;
}

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('expected a ValidationError');
}

describe('renderJson', () => {
  it('renderJson — is byte-identical whatever order the keys were written in', () => {
    const data = sampleReport();
    const shuffled = reverseKeys(data) as ComplianceReportData;
    expect(Object.keys(shuffled)[0]).not.toBe(Object.keys(data)[0]);
    expect(renderJson(shuffled)).toBe(renderJson(data));
    expect(renderJson(data)).toBe(renderJson(sampleReport()));
  });

  it('renderJson — pretty-prints in schema order with a trailing newline', () => {
    const json = renderJson(reverseKeys(sampleReport()) as ComplianceReportData);
    expect(
      json.startsWith('{\n  "title": "Patch compliance report",\n  "scope": {\n    "kind": "tenant",'),
    ).toBe(true);
    expect(json.endsWith('}\n')).toBe(true);
    expect(Object.keys(JSON.parse(json))).toEqual([
      'title',
      'scope',
      'tenant',
      'generatedAt',
      'standards',
      'totals',
      'groups',
      'servers',
      'patches',
    ]);
  });

  it('renderJson — treats an undefined optional field like an absent one', () => {
    const data = sampleReport();
    const withUndefined = sampleReport();
    delete data.servers[0]!.region;
    withUndefined.servers[0]!.region = undefined;
    expect(renderJson(withUndefined)).toBe(renderJson(data));
    expect(renderJson(data)).not.toContain('"region": null');
  });

  it('renderJson — drops unknown fields and round-trips through the schema', () => {
    const data = sampleReport();
    const leaky = {
      ...data,
      internalNotes: 'do not share',
      servers: data.servers.map((s) => ({ ...s, password: 'hunter2' })),
    };
    const json = renderJson(leaky as ComplianceReportData);
    expect(json).not.toContain('internalNotes');
    expect(json).not.toContain('hunter2');
    expect(json).toBe(renderJson(data));
    expect(ComplianceReportDataSchema.parse(JSON.parse(json))).toEqual(JSON.parse(json));
  });

  it('renderJson — keeps array order as given', () => {
    const data = sampleReport();
    data.servers.reverse();
    const parsed = JSON.parse(renderJson(data)) as ComplianceReportData;
    expect(parsed.servers.map((s) => s.id)).toEqual(data.servers.map((s) => s.id));
  });
});

describe('parseComplianceReportData', () => {
  it('parseComplianceReportData — rejects totals that disagree with the servers list', () => {
    const data = sampleReport();
    data.totals = { servers: 11, compliant: 7, nonCompliant: 3, unknown: 1 };
    const error = validationError(() => parseComplianceReportData(data));
    expect(error.subject).toBe('ComplianceReportData');
    expect(error.paths).toEqual(expect.arrayContaining(['totals.servers', 'totals.compliant']));
  });

  it('parseComplianceReportData — rejects a group whose counts do not add up', () => {
    const data = sampleReport();
    data.groups[0]!.total += 1;
    expect(validationError(() => parseComplianceReportData(data)).paths).toEqual(['groups.0.total']);
  });

  it('parseComplianceReportData — rejects a patch of a server not in the report', () => {
    const data = sampleReport();
    data.patches[1]!.serverId = 'srv-gone';
    expect(validationError(() => parseComplianceReportData(data)).paths).toEqual(['patches.1.serverId']);
  });

  it('parseComplianceReportData — rejects duplicate servers, more security than pending updates, bad values', () => {
    const data = sampleReport();
    data.servers[1]!.id = data.servers[0]!.id;
    data.servers[2]!.security = 99;
    data.servers[3]!.pending = -1;
    data.generatedAt = '2025-06-30 09:15';
    (data.servers[4] as { status: string }).status = 'green';
    data.patches[0]!.ageDays = Number.POSITIVE_INFINITY;
    expect(validationError(() => parseComplianceReportData(data)).paths).toEqual(
      expect.arrayContaining([
        'generatedAt',
        'servers.2.security',
        'servers.3.pending',
        'servers.4.status',
        'patches.0.ageDays',
      ]),
    );
    const dup = sampleReport();
    dup.servers[1]!.id = dup.servers[0]!.id;
    dup.patches = [];
    expect(validationError(() => parseComplianceReportData(dup)).paths).toEqual(['servers.1.id']);
  });

  it('parseComplianceReportData — requires an offset on timestamps', () => {
    const data = sampleReport();
    data.servers[0]!.lastScannedAt = '2025-06-30T06:00:00';
    expect(validationError(() => parseComplianceReportData(data)).paths).toEqual(['servers.0.lastScannedAt']);
    data.servers[0]!.lastScannedAt = '2025-06-30T08:00:00+02:00';
    expect(parseComplianceReportData(data).servers[0]!.lastScannedAt).toBe('2025-06-30T08:00:00+02:00');
  });
});
