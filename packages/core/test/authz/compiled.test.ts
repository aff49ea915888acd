import {
  ACTION_NAMES,
  type Action,
  type AuthorizationContext,
  compileAuthorization,
  compileSelector,
  evaluate,
  matchesSelector,
  type Principal,
  type Project,
  type Resource,
  type Role,
  type RoleBinding,
  type RoleRule,
  type Server,
  type ServerSelector,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const now = new Date('2026-05-01T00:00:00Z');
const meta = { tenantId: 't', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() };

/** mulberry32: a small seeded PRNG so failures reproduce. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(20260501);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const chance = (p: number) => rand() < p;
const some = <T>(xs: readonly T[], max = 3): T[] => [
  ...new Set(Array.from({ length: 1 + int(max) }, () => pick(xs))),
];

const LABELS: Record<string, string[]> = {
  env: ['prod', 'dev', 'stage'],
  team: ['a', 'b', 'c'],
  tier: ['web', 'db'],
};
const LABEL_KEYS = Object.keys(LABELS);
const PATTERNS = ['*', 'patch.*', 'inventory.*', 'script.*', 'access.*', 'iam.*', 'nope.*', ...ACTION_NAMES];

function randomLabels(): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const k of LABEL_KEYS) if (chance(0.7)) labels[k] = pick(LABELS[k]!);
  return labels;
}

function randomSelector(): ServerSelector {
  const sel: ServerSelector = {};
  if (chance(0.1)) return sel; // empty: matches nothing
  if (chance(0.2)) sel.all = true;
  if (chance(0.5)) sel.labels = Object.fromEntries(some(LABEL_KEYS, 2).map((k) => [k, pick(LABELS[k]!)]));
  if (chance(0.15)) sel.providers = some(['ssh', 'aws', 'gcp'] as const);
  if (chance(0.15)) sel.regions = some(['eu', 'us', 'ap']);
  if (chance(0.1)) sel.accountIds = some(['a1', 'a2']);
  if (chance(0.1))
    sel.ids = some(
      Array.from({ length: 30 }, (_, i) => `s-${i}`),
      5,
    );
  if (chance(0.3)) {
    sel.expressions = some(LABEL_KEYS, 2).map((key) => {
      const operator = pick(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
      return operator === 'In' || operator === 'NotIn'
        ? { key, operator, values: some(LABELS[key]!, 2) }
        : { key, operator };
    });
  }
  return sel;
}

function randomRule(): RoleRule {
  return {
    effect: chance(0.25) ? 'deny' : 'allow',
    actions: some(PATTERNS, 3),
    ...(chance(0.5) ? { servers: randomSelector() } : {}),
    ...(chance(0.2) ? { affiliations: some(['employee', 'contractor'] as const, 1) } : {}),
    ...(chance(0.15) ? { scripts: some(['backup', 'restart', 'cleanup'], 2) } : {}),
    ...(chance(0.15) ? { mfaWithinMinutes: pick([5, 30]) } : {}),
  };
}

const servers: Server[] = Array.from({ length: 30 }, (_, i) => ({
  ...meta,
  id: `s-${i}`,
  name: `s-${i}`,
  accountId: pick(['a1', 'a2', 'a3']),
  provider: pick(['ssh', 'aws', 'gcp'] as const),
  ...(chance(0.8) ? { region: pick(['eu', 'us', 'ap']) } : {}),
  labels: randomLabels(),
}));
const projects: Project[] = Array.from({ length: 4 }, (_, i) => ({
  ...meta,
  id: `prj-${i}`,
  name: `prj-${i}`,
  selector: randomSelector(),
  labels: {},
}));
const PROJECT_IDS = [...projects.map((p) => p.id), 'prj-missing'];

function randomContext(): AuthorizationContext {
  const roles: Role[] = Array.from({ length: 1 + int(5) }, (_, i) => ({
    ...meta,
    id: `r-${i}`,
    name: `Role ${i}`,
    rules: Array.from({ length: 1 + int(4) }, randomRule),
  }));
  const principal: Principal = {
    ...meta,
    id: 'p',
    name: 'P',
    kind: 'human',
    affiliation: chance(0.5) ? 'employee' : 'contractor',
    disabled: chance(0.05),
    labels: {},
  };
  const bindings: RoleBinding[] = Array.from({ length: int(5) }, (_, i) => ({
    ...meta,
    id: `b-${i}`,
    principalId: chance(0.9) ? 'p' : 'other',
    roleId: chance(0.95) ? pick(roles).id : 'r-missing',
    ...(chance(0.3) ? { projectIds: some(PROJECT_IDS, 2) } : {}),
    ...(chance(0.2) ? { expiresAt: chance(0.5) ? '2026-04-30T00:00:00Z' : '2026-05-02T00:00:00Z' } : {}),
  }));
  return {
    principal,
    bindings,
    roles: new Map(roles.map((r) => [r.id, r])),
    projects: new Map(projects.map((p) => [p.id, p])),
    now,
    ...(chance(0.6) ? { mfaVerifiedAt: new Date(now.getTime() - pick([1, 10, 60]) * 60_000) } : {}),
  };
}

function randomResource(): Resource {
  const r = rand();
  if (r < 0.7) return { type: 'server', server: pick(servers) };
  if (r < 0.8) return { type: 'policy', id: `pol-${int(3)}`, projectId: pick(PROJECT_IDS) };
  if (r < 0.9) return { type: 'script', id: pick(['backup', 'restart', 'other']) };
  return { type: 'tenant' };
}

describe('compileAuthorization', () => {
  it('compileAuthorization — decides exactly like evaluate on 2,000 random principal/role/server/action combinations', () => {
    let allowed = 0;
    let denied = 0;
    for (let c = 0; c < 200; c++) {
      const ctx = randomContext();
      const compiled = compileAuthorization(ctx);
      for (let i = 0; i < 10; i++) {
        const action: Action = pick(ACTION_NAMES);
        const resource = randomResource();
        const expected = evaluate(ctx, action, resource);
        expect(compiled.decide(action, resource)).toStrictEqual(expected);
        if (expected.allowed) allowed++;
        else if (expected.matched) denied++;
      }
    }
    // The generator exercises both outcomes, not just the default deny.
    expect(allowed).toBeGreaterThan(50);
    expect(denied).toBeGreaterThan(50);
  });

  it('compileSelector — agrees with matchesSelector on random selectors and servers', () => {
    for (let i = 0; i < 500; i++) {
      const sel = randomSelector();
      const pred = compileSelector(sel);
      for (const s of servers) expect(pred(s)).toBe(matchesSelector(s, sel));
    }
  });

  it('compileAuthorization — re-evaluates project membership when a server object with the same id changes', () => {
    const ctx: AuthorizationContext = {
      principal: {
        ...meta,
        id: 'p',
        name: 'P',
        kind: 'human',
        affiliation: 'employee',
        disabled: false,
        labels: {},
      },
      bindings: [{ ...meta, id: 'b', principalId: 'p', roleId: 'r', projectIds: ['web'] }],
      roles: new Map([['r', { ...meta, id: 'r', name: 'R', rules: [{ effect: 'allow', actions: ['*'] }] }]]),
      projects: new Map([
        ['web', { ...meta, id: 'web', name: 'web', selector: { labels: { env: 'prod' } }, labels: {} }],
      ]),
      now,
    };
    const compiled = compileAuthorization(ctx);
    const s: Server = {
      ...meta,
      id: 'x',
      name: 'x',
      accountId: 'a',
      provider: 'ssh',
      labels: { env: 'prod' },
    };
    expect(compiled.decide('patch.scan', { type: 'server', server: s }).allowed).toBe(true);
    const moved = { ...s, labels: { env: 'dev' } };
    expect(compiled.decide('patch.scan', { type: 'server', server: moved }).allowed).toBe(false);
  });
});
