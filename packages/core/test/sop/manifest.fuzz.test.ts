import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Script } from '../../src/domain/index.js';
import { scriptContentHash } from '../../src/sop/content.js';
import { MANIFEST_FILE, manifestEntry, readRepository } from '../../src/sop/files.js';
import { expectTypedOutcomeAsync, hostileText } from '../hostile-input.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetward-manifest-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const body = 'echo hello\n';
const content = {
  interpreter: 'sh' as const,
  body,
  osFamilies: ['debian' as const],
  parameters: [],
  tags: ['demo'],
  risky: false,
  runAsRoot: false,
};
const script = {
  ...content,
  name: 'hello',
  revision: 1,
  contentHash: scriptContentHash(content),
} as unknown as Script;
const manifest = JSON.stringify({ format: 'fleetward-scripts/1', scripts: [manifestEntry(script)] }, null, 2);
writeFileSync(join(dir, 'hello.sh'), body);

/** The manifest as JSON with reserved keys and hostile values planted in it. */
const planted = fc
  .tuple(
    fc.constantFrom('__proto__', 'constructor', 'prototype'),
    fc.constantFrom('root', 'entry'),
    fc.jsonValue({ maxDepth: 2 }),
  )
  .map(([key, where, value]) => {
    const doc = JSON.parse(manifest) as { scripts: Record<string, unknown>[] } & Record<string, unknown>;
    const target = where === 'root' ? doc : doc.scripts[0]!;
    const text = JSON.stringify({ ...target, [`@@${key}`]: value });
    const edited = JSON.parse(text.replace(`"@@${key}"`, JSON.stringify(key)));
    return JSON.stringify(where === 'root' ? edited : { ...doc, scripts: [edited] });
  });

describe('script repository manifest under hostile input', () => {
  it('readRepository — versions to add, or a ValidationError naming the manifest', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(hostileText([manifest]), planted), async (text) => {
        writeFileSync(join(dir, MANIFEST_FILE), text);
        await expectTypedOutcomeAsync(
          () => readRepository(dir),
          (inputs) => {
            for (const input of inputs) {
              expect(input.name).toBe('hello');
              expect(input.body).toBe(body);
            }
          },
        );
      }),
      { numRuns: 200 },
    );
  });

  it('readRepository — the exported manifest itself reads back', async () => {
    writeFileSync(join(dir, MANIFEST_FILE), manifest);
    expect((await readRepository(dir)).map((s) => s.name)).toEqual(['hello']);
  });
});
