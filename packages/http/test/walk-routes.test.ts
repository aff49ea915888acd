import { ENTITY_KINDS, generateEd25519KeyPair } from '@fleetward/core';
import { issueApiToken } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALPHA_MARK,
  type AlphaIds,
  type Harness,
  problemOf,
  type Reply,
  startHarness,
} from './support/harness.js';

// Rules 1 and 8 on every route of the served OpenAPI document: each call is authorized and audited,
// and bad input gets a 400/422 problem naming the field, with nothing stored.

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

interface Parameter {
  name: string;
  in: string;
  schema?: { type?: string; enum?: string[] };
}

type Operation = {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { example?: unknown }> };
};

interface Call {
  name: string;
  method: string;
  path: string;
  template: string;
  query: Parameter[];
  body: unknown;
  takesBody: boolean;
}

let h: Harness;
let calls: Call[];
let nobodyToken: string;

/**
 * Bodies that are valid for alpha where the document's example names ids alpha does not have: a
 * call that stops at "not found" would never reach the authorization and validation under test.
 */
async function validBodies(ids: AlphaIds): Promise<Record<string, unknown>> {
  const plan = await h.fleet.store.patchPlans.require('alpha', ids.planId);
  const targets = { serverIds: [ids.serverId] };
  return {
    runScan: { targets },
    planPatchRun: { policyId: ids.policyId },
    approvePatchPlan: { hash: plan.hash },
    requestAccess: {
      servers: targets,
      mode: 'actions',
      actions: ['inventory.read'],
      durationMinutes: 60,
      reason: 'needs to read the inventory',
      ticket: 'INC-2',
    },
    registerCredential: {
      id: `${ALPHA_MARK}-cred-2`,
      login: 'deploy',
      publicKey: generateEd25519KeyPair('walk').publicKey,
      caretakerId: ids.principalId,
      serverIds: [ids.serverId],
    },
    setCredentialCaretaker: { caretakerId: ids.principalId },
    runKeyInventory: { targets },
    planScriptRun: { script: ids.scriptName, targets },
    startRunbookRun: { runbook: ids.runbookName, targets },
    bindRole: { roleId: 'tenant-admin', projectIds: [ids.projectId] },
  };
}

/** Every operation of the served document, its path filled in with alpha's ids and a valid body. */
async function walk(ids: AlphaIds): Promise<Call[]> {
  const bodies = await validBodies(ids);
  const doc = (await h.call('GET', '/openapi.json')).json() as {
    paths: Record<string, Record<string, Operation>>;
  };
  const out: Call[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const path = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
        const id = ids[name as keyof AlphaIds];
        if (!id) throw new Error(`no id of alpha for path parameter ${name} of ${op.operationId}`);
        return encodeURIComponent(id);
      });
      out.push({
        name: `${op.operationId} (${method.toUpperCase()} ${template})`,
        method: method.toUpperCase(),
        path,
        template,
        query: (op.parameters ?? []).filter((p) => p.in === 'query'),
        body: bodies[op.operationId] ?? op.requestBody?.content['application/json']?.example,
        takesBody: op.requestBody !== undefined,
      });
    }
  }
  return out;
}

/** Every entity of alpha, by kind, except when tokens were last used (each call stamps its own). */
async function alphaEntities(): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const kind of ENTITY_KINDS) {
    const rows = (await h.fleet.store[kind].listAll('alpha')) as Record<string, unknown>[];
    out[kind] =
      kind === 'apiTokens' ? rows.map(({ lastUsedAt: _, version: __, updatedAt: ___, ...t }) => t) : rows;
  }
  return out;
}

async function auditSeq(): Promise<number> {
  return (await h.fleet.store.audit.head('alpha'))?.seq ?? 0;
}

async function recordsSince(seq: number) {
  return h.fleet.store.audit.list('alpha', { afterSeq: seq, limit: 1000 });
}

function changedKinds(before: Record<string, unknown[]>, after: Record<string, unknown[]>): string[] {
  return Object.keys(after).filter((kind) => JSON.stringify(before[kind]) !== JSON.stringify(after[kind]));
}

beforeAll(async () => {
  h = await startHarness();
  calls = await walk(h.alpha);
  const admin = h.fleet.as({ tenantId: 'alpha', principalId: h.alpha.principalId });
  await admin.iam.addPrincipal({
    id: `${ALPHA_MARK}-nobody`,
    name: 'No role',
    kind: 'human',
    affiliation: 'employee',
  });
  nobodyToken = (
    await issueApiToken(h.fleet, { tenantId: 'alpha', principalId: `${ALPHA_MARK}-nobody`, name: 'no role' })
  ).token;
});
afterAll(() => h.close());

/**
 * Breaks of rule 1 on routes found by this walk and not fixed yet. The walk asserts the list
 * exactly: a new break fails it, and so does a fix (then delete the line).
 */
const KNOWN_RULE_1: string[] = [];

describe('every route — rule 1', () => {
  it('every route — with the token of a principal without roles, answers 403 problem+json and audits a deny naming the principal', async () => {
    const problems: string[] = [];
    let before = await alphaEntities();
    const nobody = `${ALPHA_MARK}-nobody`;
    for (const call of calls) {
      const seq = await auditSeq();
      const response = await h.call(call.method, call.path, { token: nobodyToken, body: call.body });
      const records = await recordsSince(seq);
      const after = await alphaEntities();
      const changed = changedKinds(before, after);
      if (changed.length) problems.push(`${call.name}: changed ${changed.join(', ')}`);
      before = after;
      if (response.status !== 403) problems.push(`${call.name}: answered ${response.status}`);
      else {
        const problem = problemOf(response);
        if (problem.contentType !== 'application/problem+json' || problem.code !== 'FORBIDDEN')
          problems.push(`${call.name}: 403 without a FORBIDDEN problem+json`);
      }
      if (
        !records.some((r) => r.decision === 'deny' && r.result === 'denied' && r.actor.principalId === nobody)
      )
        problems.push(`${call.name}: no deny record`);
    }
    expect(problems).toEqual(KNOWN_RULE_1);
  });
});

/** A response to bad input: a 400/422 problem+json whose field errors name `path` (when given). */
function badInputProblem(response: Reply, path: (string | number)[] | undefined): string | undefined {
  if (response.status !== 400 && response.status !== 422) return `answered ${response.status}`;
  const problem = problemOf(response);
  if (problem.contentType !== 'application/problem+json') return `${response.status} without problem+json`;
  if (!path || path.length === 0) return undefined;
  const named = (problem.errors ?? []).some(
    (e) =>
      e.path.join('.') === path.join('.') ||
      e.path.join('.').startsWith(`${path.join('.')}.`) ||
      (e.path.length === 0 && e.message.includes(String(path.at(-1)))),
  );
  return named
    ? undefined
    : `errors name ${(problem.errors ?? []).map((e) => e.path.join('.') || '(root)').join(', ') || 'nothing'}`;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function wrongType(value: unknown): unknown {
  if (typeof value === 'string') return 42;
  if (typeof value === 'number' || typeof value === 'boolean') return 'not-a-number';
  if (Array.isArray(value)) return 'not-a-list';
  return 'not-an-object';
}

/** Bad bodies made from an example: each breaks one place. `raw` bodies are sent as written. */
function badBodies(
  example: unknown,
): { where: string; path?: (string | number)[]; body?: unknown; raw?: string }[] {
  const out: { where: string; path?: (string | number)[]; body?: unknown; raw?: string }[] = [
    { where: 'body: not JSON', raw: '{"unterminated' },
    { where: 'body: a list', path: [], body: [] },
    { where: 'body: a string', path: [], body: 'text' },
  ];
  if (!isPlainObject(example)) return out;
  out.push({ where: 'body.zzUnknown', path: ['zzUnknown'], body: { ...example, zzUnknown: 'x' } });
  out.push({
    where: 'body.__proto__',
    path: ['__proto__'],
    raw: `${JSON.stringify(example).slice(0, -1)}${Object.keys(example).length ? ',' : ''}"__proto__":{"polluted":"yes"}}`,
  });
  for (const [key, value] of Object.entries(example)) {
    out.push({ where: `body.${key}`, path: [key], body: { ...example, [key]: wrongType(value) } });
    if (isPlainObject(value)) {
      out.push({
        where: `body.${key}.__proto__`,
        path: [key, '__proto__'],
        raw: JSON.stringify({ ...example, [key]: '@@' }).replace(
          '"@@"',
          `${JSON.stringify(value).slice(0, -1)}${Object.keys(value).length ? ',' : ''}"__proto__":"x"}`,
        ),
      });
    }
  }
  return out;
}

/**
 * Breaks of rule 8 on routes found by this walk and not fixed yet. The walk asserts the list
 * exactly: a new break fails it, and so does a fix (then delete the line).
 */
const KNOWN_BAD_INPUT: string[] = [];

describe('every route — rule 8', () => {
  it('every route — a bad body, query or path parameter gets 400/422 problem+json naming the field, and nothing is stored', async () => {
    const problems: string[] = [];
    for (const call of calls) {
      const tries: {
        where: string;
        path?: (string | number)[];
        url: string;
        body?: unknown;
        raw?: string;
      }[] = [];
      if (call.takesBody) for (const b of badBodies(call.body)) tries.push({ ...b, url: call.path });
      for (const q of call.query) {
        const values = q.schema?.enum ? ['bogus'] : q.schema?.type === 'integer' ? ['abc', '-5', '1.5'] : [];
        for (const v of values) {
          tries.push({
            where: `query ${q.name}=${v}`,
            path: [q.name],
            url: `${call.path}?${q.name}=${v}`,
            body: call.body,
          });
        }
      }
      let before = await alphaEntities();
      for (const t of tries) {
        const seq = await auditSeq();
        const response = await h.call(call.method, t.url, {
          token: h.tokens.alpha,
          ...(t.raw !== undefined
            ? { raw: t.raw, headers: { 'content-type': 'application/json' } }
            : t.body !== undefined
              ? { body: t.body }
              : {}),
        });
        const label = `${call.name} ${t.where}`;
        const why = badInputProblem(response, t.path);
        if (why) problems.push(`${label}: ${why}`);
        const after = await alphaEntities();
        const changed = changedKinds(before, after);
        if (changed.length) problems.push(`${label}: changed ${changed.join(', ')}`);
        before = after;
        if (
          (await recordsSince(seq)).some(
            (r) => r.result === 'success' && r.decision === 'allow' && r.action.endsWith('write'),
          )
        )
          problems.push(`${label}: audited a successful write`);
        if ((Object.prototype as Record<string, unknown>)['polluted'] !== undefined) {
          delete (Object.prototype as Record<string, unknown>)['polluted'];
          problems.push(`${label}: polluted Object.prototype`);
        }
      }
    }
    expect(problems).toEqual(KNOWN_BAD_INPUT);
  });

  it('every route — hostile path ids get a typed 4xx problem, never a 500', async () => {
    const problems: string[] = [];
    const hostile = [
      '..%2F..%2Fetc%2Fpasswd',
      '%00',
      '%24(reboot)',
      'x'.repeat(5000),
      '__proto__',
      'constructor',
    ];
    for (const call of calls.filter((c) => c.template.includes('{'))) {
      for (const id of hostile) {
        const url = call.template.replace(/\{[^}]+\}/g, id);
        const response = await h.call(call.method, url, { token: h.tokens.alpha, body: call.body });
        if (response.status >= 500 || response.status < 400)
          problems.push(`${call.name} ${id.slice(0, 20)}: ${response.status}`);
        else if (problemOf(response).contentType !== 'application/problem+json')
          problems.push(`${call.name} ${id.slice(0, 20)}: no problem+json`);
      }
    }
    expect(problems).toEqual([]);
  });
});
