import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FleetwardError, TENANT_ADMIN_ROLE_ID, ValidationError } from '@fleetward/core';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import {
  callMethod,
  createWalkFixture,
  OTHER,
  outcomeOf,
  snapshotTenant,
  T,
  WALK_TABLE,
  WalkFixtures,
} from './walk-table.js';

// Rule 7, from the input side: the session's tenant is never taken from an argument.

const FOREIGN = { tenantId: OTHER, tenant: OTHER, tenant_id: OTHER };

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The sample arguments with the foreign tenant fields put into one object argument (or a field of it). */
function foreignVariants(args: readonly unknown[]): { where: string; args: unknown[] }[] {
  const out: { where: string; args: unknown[] }[] = [];
  for (const [i, arg] of args.entries()) {
    if (!isPlainObject(arg)) continue;
    const replaced = (value: unknown) => args.map((a, j) => (j === i ? value : a));
    out.push({ where: `arg${i}`, args: replaced({ ...arg, ...FOREIGN }) });
    for (const [key, value] of Object.entries(arg)) {
      if (isPlainObject(value)) {
        out.push({ where: `arg${i}.${key}`, args: replaced({ ...arg, [key]: { ...value, ...FOREIGN } }) });
      }
    }
  }
  return out;
}

const fixtures = new WalkFixtures();
afterAll(() => fixtures.close());

describe('foreign tenant walk', () => {
  it('iam.bindRole — a tenantId in its options is refused or ignored, never written into that tenant', async () => {
    const f = await createWalkFixture();
    try {
      const other = await snapshotTenant(f.fleet, OTHER);
      const outcome = await outcomeOf(
        f.admin.iam.bindRole('nobody', TENANT_ADMIN_ROLE_ID, { tenantId: OTHER } as {
          projectIds?: string[];
        }),
      );
      if (!outcome.ok) expect(outcome.error).toBeInstanceOf(ValidationError);
      expect(await snapshotTenant(f.fleet, OTHER)).toEqual(other);
      if (outcome.ok) {
        const bindings = await f.fleet.store.roleBindings.listAll(T, { where: { principalId: 'nobody' } });
        expect(bindings).toHaveLength(1);
      }
    } finally {
      await f.close();
    }
  });

  const rows = Object.entries(WALK_TABLE).filter(([, row]) => row.args(PLACEHOLDER_IDS).some(isPlainObject));

  it('walk — covers every method that takes an options or input object', () => {
    expect(rows.length).toBeGreaterThan(60);
  });

  for (const [name, row] of rows) {
    it(`${name} — a foreign tenantId, tenant or tenant_id in an argument object writes nothing into that tenant`, async () => {
      const f = await fixtures.get();
      const problems: string[] = [];
      for (const variant of foreignVariants(row.args(f.ids))) {
        const other = await snapshotTenant(f.fleet, OTHER);
        const outcome = await outcomeOf(callMethod(f.admin, name, variant.args));
        if (!outcome.ok && !(outcome.error instanceof FleetwardError)) {
          problems.push(`${variant.where}: threw ${(outcome.error as Error)?.name}`);
        }
        const after = await snapshotTenant(f.fleet, OTHER);
        for (const kind of Object.keys(after.entities)) {
          if (JSON.stringify(after.entities[kind]) !== JSON.stringify(other.entities[kind]))
            problems.push(`${variant.where}: wrote ${kind} of ${OTHER}`);
        }
        if (after.auditSeq !== other.auditSeq)
          problems.push(`${variant.where}: appended to the audit log of ${OTHER}`);
      }
      expect(problems).toEqual([]);
    });
  }
});

/**
 * The walk table's argument shapes do not depend on the ids, so placeholders tell which rows take
 * an object without building a fixture at collection time.
 */
const PLACEHOLDER_IDS = new Proxy({} as Parameters<(typeof WALK_TABLE)[string]['args']>[0], {
  get: (_, key) => (String(key).endsWith('Version') ? 1 : `placeholder-${String(key)}`),
});

// ---- the source side: every object literal that sets tenantId sets it after any spread

const SRC = join(import.meta.dirname, '../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** A spread that cannot carry `tenantId`: `...(cond ? { a } : {})` or `...{ a }` with literal keys. */
function isLiteralSpread(expression: ts.Expression): boolean {
  let e = expression;
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  if (ts.isConditionalExpression(e)) return isLiteralSpread(e.whenTrue) && isLiteralSpread(e.whenFalse);
  if (!ts.isObjectLiteralExpression(e)) return false;
  return e.properties.every(
    (p) =>
      (ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p)) && p.name.getText() !== 'tenantId',
  );
}

/** Methods whose object argument becomes stored or trusted data: a store write, an audit record, a parse. */
const WRITES = new Set(['create', 'update', 'append', 'audit', 'enqueueEvent', 'parse', 'safeParse']);

function isWrittenOrParsed(node: ts.ObjectLiteralExpression): boolean {
  const call = node.parent;
  if (!call || !ts.isCallExpression(call) || !call.arguments.includes(node)) return false;
  const callee = call.expression;
  const name = ts.isPropertyAccessExpression(callee)
    ? callee.name.text
    : ts.isIdentifier(callee)
      ? callee.text
      : '';
  return WRITES.has(name);
}

describe('store writes', () => {
  it('every store write or parse in packages/core/src sets tenantId after any spread of a non-literal', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node) => {
        if (ts.isObjectLiteralExpression(node) && isWrittenOrParsed(node)) {
          let tenantAt = -1;
          node.properties.forEach((p, i) => {
            if (
              (ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p)) &&
              p.name.getText() === 'tenantId'
            )
              tenantAt = i;
            if (ts.isSpreadAssignment(p) && tenantAt >= 0 && i > tenantAt && !isLiteralSpread(p.expression)) {
              const { line } = source.getLineAndCharacterOfPosition(p.getStart());
              offenders.push(`${file.slice(SRC.length + 1)}:${line + 1} ${p.getText().slice(0, 60)}`);
            }
          });
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(offenders).toEqual([]);
  });
});
