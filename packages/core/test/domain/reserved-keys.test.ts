import * as core from '@fleetward/core';
import {
  AccessRequestOptionsSchema,
  AccessRequestSchemas,
  AuditInputSchema,
  createFleet,
  createMemoryStore,
  IntegrationSchemas,
  matchesSelector,
  PlainDataRecordSchema,
  ProjectSchemas,
  RESERVED_KEYS,
  RoleRuleSchema,
  ScriptNameSchema,
  ServerSchemas,
  ServerSelectorSchema,
  ValidationError,
  validate,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ACTION_NAMES, isAction, isActionPattern } from '../../src/authz/actions.js';

/** What every object inherits: none of these may pass for an action, a script or a kind. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);

/** The ways a reserved key reaches a schema: a JSON body, or an SDK caller's own object. */
type Build = 'JSON.parse' | 'defineProperty';
function objectWith(entries: [string, unknown][], build: Build): Record<string, unknown> {
  if (build === 'JSON.parse')
    return JSON.parse(JSON.stringify(Object.fromEntries(entries)).replace('"K__', '"'));
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) {
    Object.defineProperty(out, k.replace(/^K__/, ''), {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}
/**
 * `{ [key]: value, ...rest }` with `key` an own property whatever its name. `K__` marks the key
 * until the object exists, since `Object.fromEntries` would hand `__proto__` to the setter.
 */
const withKey = (key: string, value: unknown, rest: [string, unknown][], build: Build) =>
  objectWith([[`K__${key}`, value], ...rest], build);

// ---------------------------------------------------------------------------------------------
// Every record of every exported schema
// ---------------------------------------------------------------------------------------------

type AnySchema = z.ZodType & { _zod: { def: Record<string, unknown>; traits: Set<string> } };
const isSchema = (v: unknown): v is AnySchema => v instanceof z.ZodType;

/** Every record inside `root`, with the path that leads to it, for the failure message. */
function recordsIn(root: AnySchema, at: string, seen: Set<unknown>, out: Map<AnySchema, string>): void {
  if (seen.has(root)) return;
  seen.add(root);
  const def = root._zod.def;
  const visit = (child: unknown, where: string) => {
    if (isSchema(child)) recordsIn(child, where, seen, out);
  };
  switch (def.type) {
    case 'record':
      if (!out.has(root)) out.set(root, at);
      visit(def.keyType, `${at}.<key>`);
      visit(def.valueType, `${at}.*`);
      break;
    case 'object':
      for (const [k, v] of Object.entries(def.shape as Record<string, unknown>)) visit(v, `${at}.${k}`);
      visit(def.catchall, `${at}.*`);
      break;
    case 'array':
      visit(def.element, `${at}[]`);
      break;
    case 'union':
      for (const [i, option] of (def.options as unknown[]).entries()) visit(option, `${at}|${i}`);
      break;
    case 'intersection':
      visit(def.left, at);
      visit(def.right, at);
      break;
    case 'pipe':
      visit(def.in, at);
      visit(def.out, at);
      break;
    case 'lazy':
      visit((def.getter as () => unknown)(), at);
      break;
    case 'tuple':
      for (const item of def.items as unknown[]) visit(item, `${at}[]`);
      visit(def.rest, `${at}[]`);
      break;
    default:
      visit(def.innerType, at);
  }
}

function exportedRecords(): Map<AnySchema, string> {
  const out = new Map<AnySchema, string>();
  const seen = new Set<unknown>();
  for (const [name, value] of Object.entries(core)) {
    if (isSchema(value)) recordsIn(value, name, seen, out);
    else if (value && typeof value === 'object') {
      // Groups like `ServerSchemas` ({ input, stored }) and `ENTITY_SCHEMAS` (kind → group).
      for (const [k, v] of Object.entries(value)) {
        if (isSchema(v)) recordsIn(v, `${name}.${k}`, seen, out);
        else if (v && typeof v === 'object') {
          for (const [k2, v2] of Object.entries(v))
            if (isSchema(v2)) recordsIn(v2, `${name}.${k}.${k2}`, seen, out);
        }
      }
    }
  }
  return out;
}

/** A record whose keys are free-form (not an enum, where any other key is unrecognized anyway). */
const freeFormKeys = (record: AnySchema) =>
  !(record._zod.def.keyType as AnySchema)._zod.values &&
  !(record._zod.def.keyType as AnySchema)._zod.def.values;

const SAMPLE_KEYS = ['env', 'MY_PARAM', 'web-1', 'a'];
const SAMPLE_VALUES: unknown[] = ['x', 1, true, {}, { param: 'MY_PARAM' }, { status: 'pending' }];

/** A key and a value the record accepts, so that only the reserved key can make it fail. */
function validEntry(record: AnySchema): [string, unknown] | undefined {
  const keyType = record._zod.def.keyType as AnySchema;
  const valueType = record._zod.def.valueType as AnySchema;
  const key = SAMPLE_KEYS.find((k) => keyType.safeParse(k).success);
  const value = SAMPLE_VALUES.find((v) => valueType.safeParse(v).success);
  return key === undefined || value === undefined ? undefined : [key, value];
}

const RECORDS = [...exportedRecords()].filter(([record]) => freeFormKeys(record));

describe('reserved record keys', () => {
  it('plainRecord — every free-form record of every exported schema refuses reserved keys', () => {
    // The enumeration itself: labels, selectors, parameters, details, payloads, config, targets…
    const where = RECORDS.map(([, at]) => at).join('\n');
    expect(RECORDS.length, where).toBeGreaterThanOrEqual(10);
    for (const needle of ['selector.labels', 'AuditInputSchema.details', '.params', '.config', '.env'])
      expect(where).toContain(needle);
    const plain = RECORDS.filter(([record]) => !record._zod.traits.has('ZodPlainRecord')).map(([, at]) => at);
    expect(plain, 'records built with z.record instead of plainRecord').toEqual([]);
  });

  it('plainRecord — a reserved key is a ValidationError at that key, however the object was built', () => {
    const samples = RECORDS.map(([record, at]) => ({ record, at, entry: validEntry(record) }));
    expect(
      samples.filter((s) => !s.entry).map((s) => s.at),
      'add a sample key or value for these records',
    ).toEqual([]);
    fc.assert(
      fc.property(
        fc.constantFrom(...samples),
        fc.constantFrom(...RESERVED_KEYS),
        fc.constantFrom<Build>('JSON.parse', 'defineProperty'),
        fc.boolean(),
        ({ record, at, entry }, key, build, sibling) => {
          const [okKey, okValue] = entry!;
          expect(record.safeParse(Object.fromEntries([[okKey, okValue]])).success, at).toBe(true);
          const input = withKey(key, okValue, sibling ? [[okKey, okValue]] : [], build);
          expect(Object.hasOwn(input, key)).toBe(true);
          const error = (() => {
            try {
              validate(record, input, at);
            } catch (e) {
              return e;
            }
          })();
          expect(error, `${at} accepted ${key}`).toBeInstanceOf(ValidationError);
          expect((error as ValidationError).paths, at).toContain(key);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('PlainDataSchema — a reserved key at any depth of free-form data is refused with its path', () => {
    const segment = fc.constantFrom('a', 'b', 'items', 'env');
    fc.assert(
      fc.property(
        fc.array(fc.oneof(segment, fc.nat({ max: 2 })), { maxLength: 4 }),
        fc.constantFrom(...RESERVED_KEYS),
        fc.jsonValue({ maxDepth: 2 }),
        (path, key, leaf) => {
          // Built as JSON text, as a request body or a stored row reaches us.
          let json = `{${JSON.stringify(key)}:${JSON.stringify(leaf ?? null)}}`;
          for (const p of [...path].reverse()) {
            json = typeof p === 'number' ? `[${'0,'.repeat(p)}${json}]` : `{${JSON.stringify(p)}:${json}}`;
          }
          const input = { top: JSON.parse(json) };
          const result = PlainDataRecordSchema.safeParse(input);
          expect(result.success).toBe(false);
          expect(result.error!.issues.map((i) => i.path)).toContainEqual(['top', ...path, key]);
        },
      ),
      { numRuns: 300 },
    );
    expect(PlainDataRecordSchema.parse({ a: [{ b: 'constructors' }], proto: 1 })).toEqual({
      a: [{ b: 'constructors' }],
      proto: 1,
    });
  });

  it('validate — a project selector with a __proto__ label is refused, not stored as "every server"', () => {
    const body = '{"tenantId":"t","name":"web","selector":{"labels":{"__proto__":"x"}}}';
    expect(() => validate(ProjectSchemas.input, JSON.parse(body), 'Project')).toThrow(
      expect.objectContaining({ name: 'ValidationError', paths: ['selector.labels.__proto__'] }),
    );
    const selector = { labels: withKey('__proto__', 'x', [], 'defineProperty') };
    expect(() => validate(ServerSelectorSchema, selector, 'ServerSelector')).toThrow(
      expect.objectContaining({ paths: ['labels.__proto__'] }),
    );
    for (const key of RESERVED_KEYS) {
      const server = {
        tenantId: 't',
        accountId: 'a',
        provider: 'ssh',
        name: 'web-1',
        address: '10.0.0.1',
        labels: withKey(key, 'x', [['env', 'prod']], 'JSON.parse'),
      };
      expect(() => validate(ServerSchemas.input, server, 'Server')).toThrow(
        expect.objectContaining({ paths: [`labels.${key}`] }),
      );
    }
    expect(() =>
      validate(
        ServerSelectorSchema,
        { expressions: [{ key: 'constructor', operator: 'Exists' }] },
        'ServerSelector',
      ),
    ).toThrow(expect.objectContaining({ paths: ['expressions.0.key'] }));
  });

  it('validate — an audit record whose details hide a reserved key is refused', () => {
    const input = {
      tenantId: 't',
      actor: { principalId: 'p', kind: 'human' },
      action: 'inventory.server.create',
      decision: 'allow',
      result: 'success',
      details: JSON.parse('{"changes":{"labels":{"__proto__":{"polluted":true}}}}'),
    };
    expect(() => validate(AuditInputSchema, input, 'AuditRecord')).toThrow(
      expect.objectContaining({ paths: ['details.changes.labels.__proto__'] }),
    );
  });

  it('matchesSelector — matches own labels only, never inherited ones', () => {
    const server = { id: 's', provider: 'ssh', accountId: 'a', labels: Object.create({ env: 'prod' }) };
    expect(matchesSelector(server, { labels: { env: 'prod' } })).toBe(false);
    expect(matchesSelector(server, { expressions: [{ key: 'env', operator: 'In', values: ['prod'] }] })).toBe(
      false,
    );
    expect(matchesSelector({ ...server, labels: { env: 'prod' } }, { labels: { env: 'prod' } })).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Names looked up in catalogues
// ---------------------------------------------------------------------------------------------

const requestOptions = (over: Record<string, unknown>) => ({
  servers: { serverIds: ['web-1'] },
  mode: 'actions',
  durationMinutes: 30,
  reason: 'needs to look at the web servers',
  ticket: 'CHG-1',
  ...over,
});

const storedRequest = (over: Record<string, unknown>) => ({
  tenantId: 't',
  requesterId: 'p',
  mode: 'actions',
  servers: { ids: ['web-1'] },
  serverIds: ['web-1'],
  actions: ['script.run'],
  durationMinutes: 30,
  reason: 'needs to look at the web servers',
  ticket: 'CHG-1',
  status: 'pending',
  ...over,
});

function refused(schema: z.ZodType, input: unknown, path: string): void {
  let error: unknown;
  try {
    validate(schema, input, 'input');
  } catch (e) {
    error = e;
  }
  expect(error, JSON.stringify(input)).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).paths).toContain(path);
}

describe('catalogue names', () => {
  it('isAction — no name of Object.prototype is an action or an action pattern', () => {
    for (const name of PROTOTYPE_NAMES) {
      expect(isAction(name), name).toBe(false);
      expect(isActionPattern(name), name).toBe(false);
      expect(isActionPattern(`${name}.*`), name).toBe(false);
    }
    for (const action of ACTION_NAMES) expect(isAction(action) && isActionPattern(action)).toBe(true);
    expect(['*', 'patch.*', 'iam.*'].every(isActionPattern)).toBe(true);
    expect(['patch.typo', 'nope.*', ''].some(isActionPattern)).toBe(false);
  });

  it('validate — every name of Object.prototype is refused as an action, role action, script or kind', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PROTOTYPE_NAMES), (name) => {
        // Access request options (what requestAccess takes) and the stored request.
        refused(AccessRequestOptionsSchema, requestOptions({ actions: [name] }), 'actions.0');
        refused(AccessRequestSchemas.input, storedRequest({ actions: [name] }), 'actions.0');
        refused(AccessRequestSchemas.input, storedRequest({ scripts: [name] }), 'scripts.0');
        // Role rules.
        refused(RoleRuleSchema, { effect: 'allow', actions: [name] }, 'actions.0');
        refused(RoleRuleSchema, { effect: 'deny', actions: [`${name}.*`] }, 'actions.0');
        refused(RoleRuleSchema, { effect: 'allow', actions: ['script.run'], scripts: [name] }, 'scripts.0');
        // Script names and integration kinds.
        refused(ScriptNameSchema, name, '');
        refused(IntegrationSchemas.input, { tenantId: 't', kind: name, name: 'x', config: {} }, 'kind');
      }),
      { numRuns: PROTOTYPE_NAMES.length * 3 },
    );
  });

  it('validate — catalogue actions, patterns and ordinary script names still pass', () => {
    expect(
      validate(RoleRuleSchema, { effect: 'allow', actions: ['patch.*', 'script.run', '*'] }, 'r'),
    ).toBeTruthy();
    const options = validate(AccessRequestOptionsSchema, requestOptions({ actions: ['script.run'] }), 'o');
    expect(options.actions).toEqual(['script.run']);
    expect(validate(ScriptNameSchema, 'constructor-check', 's')).toBe('constructor-check');
    expect(() => validate(RoleRuleSchema, { effect: 'allow', actions: ['patch.typo'] }, 'r')).toThrow(
      ValidationError,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Through the SDK
// ---------------------------------------------------------------------------------------------

async function sdkFleet() {
  const clock = new ManualClock('2026-06-01T10:00:00.000Z');
  const fleet = createFleet({ store: createMemoryStore({ clock }), adapters: [], clock });
  await fleet.bootstrapTenant({
    tenant: { id: 't', name: 'T' },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  const admin = fleet.as({ tenantId: 't', principalId: 'admin' });
  await admin.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
  for (const [id, tier] of [
    ['web-1', 'web'],
    ['db-1', 'db'],
  ] as const) {
    await admin.servers.add({
      id,
      name: id,
      accountId: 'dc',
      provider: 'ssh',
      address: '10.0.0.1',
      labels: { tier },
    });
  }
  return { fleet, admin };
}

const thrown = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (e) {
    return e as ValidationError;
  }
  throw new Error('resolved');
};

describe('reserved keys through the SDK', () => {
  it('projects.add / projects.update — a reserved label key in a selector is refused and nothing changes', async () => {
    const { fleet, admin } = await sdkFleet();
    const project = await admin.projects.add({
      id: 'web',
      name: 'web',
      selector: { labels: { tier: 'web' } },
    });
    for (const key of RESERVED_KEYS) {
      for (const build of ['JSON.parse', 'defineProperty'] as const) {
        const labels = withKey(key, 'web', [], build) as Record<string, string>;
        const added = await thrown(admin.projects.add({ id: 'p2', name: 'p2', selector: { labels } }));
        expect(added, `${key} ${build}`).toBeInstanceOf(ValidationError);
        expect(added.paths).toContain(`selector.labels.${key}`);
        const updated = await thrown(
          admin.projects.update('web', { selector: { labels } }, { expectedVersion: project.version }),
        );
        expect(updated).toBeInstanceOf(ValidationError);
        expect(updated.paths.some((p) => p.endsWith(`labels.${key}`))).toBe(true);
      }
    }
    expect((await admin.projects.get('web'))?.selector).toEqual({ labels: { tier: 'web' } });
    expect((await admin.projects.servers('web')).map((s) => s.id)).toEqual(['web-1']);
    expect((await admin.projects.list()).map((p) => p.id)).toEqual(['web']);
    await fleet.close();
  });

  it('access.request — an Object.prototype name as an action is a ValidationError', async () => {
    const { fleet, admin } = await sdkFleet();
    for (const name of PROTOTYPE_NAMES) {
      const error = await thrown(admin.access.request(requestOptions({ actions: [name] }) as never));
      expect(error, name).toBeInstanceOf(ValidationError);
      expect(error.paths).toContain('actions.0');
    }
    expect(await fleet.store.accessRequests.listAll('t')).toEqual([]);
    await fleet.close();
  });
});
