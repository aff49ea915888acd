/**
 * Authorization throughput: Fleetward's compiled evaluator against casbin and CASL on the same
 * policy and the same random (principal, action, server) triples. Prints checks/second and
 * ratios, and checks that all engines agree. Indicative only; nothing asserts timings.
 *
 *   node --import tsx bench/authz.ts [--checks 200000] [--casbin-checks 5000] [--seed 7]
 *
 * Encodings of the one policy (seeded: 100 roles of 1–3 allow rules with 1–2 action patterns and
 * a label-equality or `all` selector, a third with a deny rule; 10,000 servers; 300 principals
 * with 1–4 tenant-wide bindings):
 * - Fleetward: `compileAuthorization` per principal; the uncompiled `evaluate` as reference.
 * - casbin: RBAC `g`, deny-override effect, `keyMatch` for `x.*`/`*`, and a custom
 *   `labelMatch(r.obj, p.obj)` where r.obj is the server's label map and p.obj is `k=v&k=v`.
 * - CASL: one ability per principal; patterns expanded over the action catalogue (CASL has no
 *   wildcards but `manage`); `labels.k` conditions; every `cannot` after every `can`, because
 *   CASL's deny only overrides earlier rules.
 * casbin scans every policy line per check (about 1 ms here), so it is timed on the first
 * `--casbin-checks` triples only. Fleetward returns a full Decision, CASL and casbin a boolean.
 * The policy uses only what all encodings express exactly (no projects, affiliations, expiry or
 * label expressions), so no case is excluded from the agreement check.
 */
import { createMongoAbility, type MongoAbility, type RawRuleOf } from '@casl/ability';
import {
  ACTION_NAMES,
  type Action,
  type AuthorizationContext,
  actionMatches,
  compileAuthorization,
  evaluate,
  type Principal,
  type Role,
  type RoleBinding,
  type Server,
} from '@fleetward/core';
import { newEnforcer, newModelFromString } from 'casbin';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : Number.NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const CHECKS = arg('checks', 200_000);
const SEED = arg('seed', 7);
const CASBIN_CHECKS = Math.min(CHECKS, arg('casbin-checks', 5_000));
const SERVERS = 10_000;
const ROLES = 100;
const PRINCIPALS = 300;

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
const rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

// ---- The policy --------------------------------------------------------------------------------
const now = new Date('2026-05-01T00:00:00Z');
const meta = { tenantId: 't', version: 1, createdAt: now.toISOString(), updatedAt: now.toISOString() };
const LABELS = {
  env: ['prod', 'stage', 'dev'],
  team: Array.from({ length: 20 }, (_, i) => `team-${i}`),
  tier: ['web', 'db', 'cache', 'batch'],
  region: ['eu', 'us', 'ap'],
} as const;
type LabelKey = keyof typeof LABELS;
const KEYS = Object.keys(LABELS) as LabelKey[];
const FAMILIES = [...new Set(ACTION_NAMES.map((a) => `${a.split('.')[0]}.*`))];

const servers: Server[] = Array.from({ length: SERVERS }, (_, i) => ({
  ...meta,
  id: `srv-${i}`,
  name: `srv-${i}`,
  accountId: 'acc',
  provider: 'ssh',
  labels: Object.fromEntries(KEYS.map((k) => [k, pick(LABELS[k])])),
}));

/** A label selector: 1–2 equalities, or (rarely) none meaning every server. */
function randomLabels(): Record<string, string> | undefined {
  if (rand() < 0.1) return undefined;
  const keys = new Set([pick(KEYS), ...(rand() < 0.5 ? [pick(KEYS)] : [])]);
  return Object.fromEntries([...keys].map((k) => [k, pick(LABELS[k])]));
}
function randomPattern(): string {
  const r = rand();
  if (r < 0.05) return '*';
  if (r < 0.45) return pick(FAMILIES);
  return pick(ACTION_NAMES);
}
const roles: Role[] = Array.from({ length: ROLES }, (_, i) => {
  const rules: Role['rules'] = Array.from({ length: 1 + int(3) }, () => {
    const labels = randomLabels();
    return {
      effect: 'allow' as const,
      actions: [...new Set([randomPattern(), randomPattern()])],
      servers: labels ? { labels } : { all: true },
    };
  });
  // A third of the roles also deny something (production changes, a team's databases…).
  if (rand() < 0.33) {
    const labels = randomLabels() ?? { env: 'prod' };
    rules.push({
      effect: 'deny',
      actions: [rand() < 0.5 ? pick(FAMILIES) : pick(ACTION_NAMES)],
      servers: { labels },
    });
  }
  return { ...meta, id: `role-${i}`, name: `Role ${i}`, rules };
});
const principals: Principal[] = Array.from({ length: PRINCIPALS }, (_, i) => ({
  ...meta,
  id: `user-${i}`,
  name: `user-${i}`,
  kind: 'human',
  affiliation: 'employee',
  disabled: false,
  labels: {},
}));
const bindings: RoleBinding[] = principals.flatMap((p) =>
  [...new Set(Array.from({ length: 1 + int(4) }, () => pick(roles).id))].map((roleId) => ({
    ...meta,
    id: `${p.id}:${roleId}`,
    principalId: p.id,
    roleId,
  })),
);
const roleMap = new Map(roles.map((r) => [r.id, r]));
const contexts: AuthorizationContext[] = principals.map((principal) => ({
  principal,
  bindings: bindings.filter((b) => b.principalId === principal.id),
  roles: roleMap,
  projects: new Map(),
  now,
}));
const ruleCount = roles.reduce((n, r) => n + r.rules.length, 0);
const denyCount = roles.reduce((n, r) => n + r.rules.filter((x) => x.effect === 'deny').length, 0);

// The same triples for every engine.
const triples = Array.from({ length: CHECKS }, () => ({
  p: int(PRINCIPALS),
  a: pick(ACTION_NAMES),
  s: int(SERVERS),
}));

// ---- Encodings ---------------------------------------------------------------------------------
/** `env=prod&tier=web`, or `*` for every server: casbin's object pattern for a rule. */
const selectorKey = (labels: Record<string, string> | undefined) =>
  labels
    ? Object.entries(labels)
        .map(([k, v]) => `${k}=${v}`)
        .join('&')
    : '*';

async function buildCasbin() {
  const model = newModelFromString(`
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act, eft
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = g(r.sub, p.sub) && keyMatch(r.act, p.act) && labelMatch(r.obj, p.obj)
`);
  const enforcer = await newEnforcer(model);
  // r.obj is the server's label map; p.obj a selector key, parsed once and cached.
  const parsed = new Map<string, [string, string][]>();
  await enforcer.addFunction('labelMatch', (labels: Record<string, string>, key: string) => {
    if (key === '*') return true;
    let pairs = parsed.get(key);
    if (!pairs) {
      pairs = key.split('&').map((kv) => kv.split('=') as [string, string]);
      parsed.set(key, pairs);
    }
    for (const [k, v] of pairs) if (labels[k] !== v) return false;
    return true;
  });
  const policies: string[][] = [];
  for (const role of roles) {
    for (const rule of role.rules) {
      for (const pattern of rule.actions) {
        policies.push([role.id, selectorKey(rule.servers?.labels), pattern, rule.effect]);
      }
    }
  }
  await enforcer.addPolicies(policies);
  await enforcer.addGroupingPolicies(bindings.map((b) => [b.principalId, b.roleId]));
  return { enforcer, policies: policies.length };
}

type AppAbility = MongoAbility<[Action, 'Server']>;
function buildCasl(ctx: AuthorizationContext): AppAbility {
  const allow: RawRuleOf<AppAbility>[] = [];
  const deny: RawRuleOf<AppAbility>[] = [];
  for (const b of ctx.bindings) {
    for (const rule of roleMap.get(b.roleId)!.rules) {
      // CASL has no action wildcards but `manage`; expand patterns over the catalogue.
      const action = ACTION_NAMES.filter((a) => rule.actions.some((p) => actionMatches(p, a)));
      const labels = rule.servers?.labels;
      const conditions = labels
        ? Object.fromEntries(Object.entries(labels).map(([k, v]) => [`labels.${k}`, v]))
        : undefined;
      const raw = { action, subject: 'Server' as const, ...(conditions ? { conditions } : {}) };
      if (rule.effect === 'deny') deny.push({ ...raw, inverted: true });
      else allow.push(raw);
    }
  }
  // CASL's `cannot` only overrides `can` rules declared before it: put every deny last.
  return createMongoAbility<AppAbility>([...allow, ...deny], { detectSubjectType: () => 'Server' });
}

// ---- Timing ------------------------------------------------------------------------------------
/** Runs `check` over the first `n` triples (once to warm up, once timed); returns rate and answers. */
function time(label: string, n: number, check: (t: (typeof triples)[number]) => boolean) {
  const answers = new Uint8Array(n);
  for (let i = 0; i < Math.min(n, 1000); i++) check(triples[i]!); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) answers[i] = check(triples[i]!) ? 1 : 0;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const rate = n / (ms / 1000);
  const allowed = answers.reduce((a, b) => a + b, 0);
  console.log(
    `${label.padEnd(32)} ${n.toLocaleString('en').padStart(8)} checks ${ms.toFixed(0).padStart(7)} ms ` +
      `${Math.round(rate).toLocaleString('en').padStart(11)} checks/s  (${allowed.toLocaleString('en')} allowed)`,
  );
  return { rate, answers };
}

async function main() {
  console.log(
    `policy: ${ROLES} roles (${ruleCount} rules, ${denyCount} deny), ${SERVERS.toLocaleString('en')} servers, ` +
      `${PRINCIPALS} principals, ${bindings.length} bindings; ${CHECKS.toLocaleString('en')} triples, seed ${SEED}`,
  );
  let t0 = performance.now();
  const compiled = contexts.map((c) => compileAuthorization(c));
  console.log(
    `build: fleetward compile, ${PRINCIPALS} principals: ${(performance.now() - t0).toFixed(1)} ms`,
  );
  t0 = performance.now();
  const { enforcer, policies } = await buildCasbin();
  console.log(
    `build: casbin enforcer, ${policies} p + ${bindings.length} g lines: ${(performance.now() - t0).toFixed(1)} ms`,
  );
  t0 = performance.now();
  const abilities = contexts.map(buildCasl);
  console.log(`build: casl abilities, ${PRINCIPALS} principals: ${(performance.now() - t0).toFixed(1)} ms`);
  console.log();

  const fleet = time(
    'fleetward compileAuthorization',
    CHECKS,
    (t) => compiled[t.p]!.decide(t.a, { type: 'server', server: servers[t.s]! }).allowed,
  );
  const reference = time(
    'fleetward evaluate (reference)',
    CHECKS,
    (t) => evaluate(contexts[t.p]!, t.a, { type: 'server', server: servers[t.s]! }).allowed,
  );
  const casl = time('@casl/ability can()', CHECKS, (t) => abilities[t.p]!.can(t.a, servers[t.s]! as never));
  // casbin scans every p line per check (about 1 ms here): time it on a prefix of the same triples.
  const casbin = time('casbin enforceSync()', CASBIN_CHECKS, (t) =>
    enforcer.enforceSync(principals[t.p]!.id, servers[t.s]!.labels, t.a),
  );
  console.log();
  console.log(`ratio compiled / evaluate: ${(fleet.rate / reference.rate).toFixed(1)}x`);
  console.log(`ratio compiled / casl:     ${(fleet.rate / casl.rate).toFixed(1)}x`);
  console.log(`ratio compiled / casbin:   ${(fleet.rate / casbin.rate).toFixed(0)}x`);
  console.log(`ratio casl / casbin:       ${(casl.rate / casbin.rate).toFixed(0)}x`);

  // Agreement over the timed answers. For this policy the encodings express the same semantics
  // (label-equality selectors, tenant-wide bindings, no affiliations, projects or expiry), so no
  // case is excluded; casbin is compared on its prefix.
  let agree = 0;
  let agreeCasbin = 0;
  const differs: string[] = [];
  for (let i = 0; i < CHECKS; i++) {
    const f = fleet.answers[i];
    const same = f === reference.answers[i] && f === casl.answers[i];
    const sameCasbin = i >= CASBIN_CHECKS || f === casbin.answers[i];
    if (same) agree++;
    if (same && sameCasbin && i < CASBIN_CHECKS) agreeCasbin++;
    if ((!same || !sameCasbin) && differs.length < 5) {
      const t = triples[i]!;
      differs.push(
        `${principals[t.p]!.id} ${t.a} ${servers[t.s]!.id}: compiled=${f} evaluate=${reference.answers[i]} ` +
          `casl=${casl.answers[i]} casbin=${i < CASBIN_CHECKS ? casbin.answers[i] : '-'}`,
      );
    }
  }
  console.log();
  console.log(
    `agreement compiled/evaluate/casl: ${agree.toLocaleString('en')} / ${CHECKS.toLocaleString('en')}`,
  );
  console.log(
    `agreement all four (casbin prefix): ${agreeCasbin.toLocaleString('en')} / ${CASBIN_CHECKS.toLocaleString('en')}`,
  );
  for (const d of differs) console.log(`  differs: ${d}`);
  if (agree !== CHECKS || agreeCasbin !== CASBIN_CHECKS) process.exitCode = 1;
}

await main();
