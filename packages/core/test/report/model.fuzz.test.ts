import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ComplianceReportDataSchema, parseComplianceReportData } from '../../src/report/model.js';
import { expectTypedOutcome, RUNS } from '../hostile-input.js';
import { sampleReport } from './sample.js';

const RESERVED = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf'];

/** A JSON-shaped value whose objects may carry reserved keys, as JSON.parse would build it. */
const hostileJson = fc
  .jsonValue({ maxDepth: 4 })
  .chain((v) =>
    fc
      .constantFrom(...RESERVED)
      .map((k) =>
        JSON.parse(JSON.stringify({ [k]: { polluted: 1 }, x: v }).replace(`"${k}"`, JSON.stringify(k))),
      ),
  );

/** The sample report with values at random paths replaced by hostile ones. */
const mutatedReport = fc
  .array(
    fc.tuple(
      fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
      fc.oneof(
        fc.anything(),
        fc.constantFrom(
          '',
          '\0',
          'x'.repeat(100_000),
          Number.NaN,
          Number.POSITIVE_INFINITY,
          -1,
          1e308,
          '9999-99-99T99:99:99Z',
          null,
          [],
          {},
        ),
        hostileJson,
      ),
      fc.boolean(),
    ),
    { minLength: 1, maxLength: 5 },
  )
  .map((edits) => {
    const report = JSON.parse(JSON.stringify(sampleReport())) as Record<string, unknown>;
    for (const [path, value, asReservedKey] of edits) {
      let node: unknown = report;
      for (const [depth, step] of path.entries()) {
        if (node === null || typeof node !== 'object') break;
        const keys = Object.keys(node);
        if (keys.length === 0) break;
        const key = keys[step % keys.length]!;
        if (depth === path.length - 1) {
          if (asReservedKey) {
            Object.defineProperty(node, RESERVED[step % RESERVED.length]!, {
              value,
              enumerable: true,
              configurable: true,
              writable: true,
            });
          } else (node as Record<string, unknown>)[key] = value;
        } else node = (node as Record<string, unknown>)[key];
      }
    }
    return report;
  });

describe('parseComplianceReportData under hostile input', () => {
  it('parseComplianceReportData — data the schema accepts again, or a ValidationError', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedReport, fc.anything(), hostileJson), (input) =>
        expectTypedOutcome(
          () => parseComplianceReportData(input),
          (data) => expect(ComplianceReportDataSchema.safeParse(data).success).toBe(true),
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseComplianceReportData — the sample report parses', () => {
    expect(parseComplianceReportData(sampleReport()).servers.length).toBeGreaterThan(0);
  });
});
