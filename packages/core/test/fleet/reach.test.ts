import {
  ACTION_NAMES,
  type AuthorizationContext,
  AuthorizationError,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  evaluate,
  type Fleet,
  type FleetSession,
  ValidationError,
} from '@fleetward/core';
import { ManualClock } from '@fleetward/testkit';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const T = 'acme';
const OTHER = 'other';

let fleet: Fleet;
let clock: ManualClock;

const server = (id: string, labels: Record<string, string>) => ({
  id,
  name: id,
  accountId: 'dc',
  provider: 'ssh' as const,
  address: '10.250.0.9',
  adapter: 'local',
  labels,
});

async function setup(): Promise<void> {
  clock = new ManualClock('2026-05-01T00:00:00.000Z');
  fleet = createFleet({ store: createMemoryStore({ clock }), adapters: [createLocalAdapter()], clock });
  for (const [tenantId, adminId] of [
    [T, 'alice'],
    [OTHER, 'olga'],
  ] as const) {
    await fleet.bootstrapTenant({
      tenant: { id: tenantId, name: tenantId },
      admin: { id: adminId, name: adminId, kind: 'human', affiliation: 'employee' },
    });
  }
}

const alice = () => fleet.as({ tenantId: T, principalId: 'alice' });
const as = (principalId: string) => fleet.as({ tenantId: T, principalId });

/** Every action × server pair `principalId` may do now, decided by the reference evaluator. */
async function serverReach(principalId: string): Promise<Set<string>> {
  const store = fleet.store;
  const principal = await store.principals.get(T, principalId);
  if (!principal) return new Set();
  const ctx: AuthorizationContext = {
    principal,
    bindings: await store.roleBindings.listAll(T, { where: { principalId } }),
    roles: new Map((await store.roles.listAll(T)).map((r) => [r.id, r])),
    projects: new Map((await store.projects.listAll(T)).map((p) => [p.id, p])),
    now: clock.now(),
  };
  const reach = new Set<string>();
  for (const s of await store.servers.listAll(T)) {
    for (const action of ACTION_NAMES) {
      if (evaluate(ctx, action, { type: 'server', server: s }).allowed) reach.add(`${action} ${s.id}`);
    }
  }
  return reach;
}

async function addPrincipal(id: string): Promise<void> {
  await alice().iam.addPrincipal({ id, name: id, kind: 'human', affiliation: 'contractor' });
}

async function expectDenied(call: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuthorizationError);
  expect((error as Error).message).toMatch(pattern);
}

describe('scoped principals cannot widen their reach', () => {
  beforeEach(async () => {
    await setup();
    await alice().servers.add(server('web-1', { tier: 'web', env: 'prod' }));
    await alice().servers.add(server('db-1', { tier: 'db', env: 'prod' }));
    await alice().projects.add({ id: 'web', name: 'web', selector: { labels: { tier: 'web' } } });
    await addPrincipal('carol');
    await alice().iam.bindRole('carol', 'tenant-admin', { projectIds: ['web'] });
  });
  afterEach(() => fleet.close());

  for (const [name, selector] of [
    ['all', { all: true }],
    ['ids with db-1', { ids: ['web-1', 'db-1'] }],
    ['labels that also choose db-1', { labels: { env: 'prod' } }],
  ] as const) {
    it(`projects.update — a selector that brings in a server out of reach (${name}) is refused and audited as denied`, async () => {
      const carol = as('carol');
      const before = await serverReach('carol');
      const version = (await fleet.store.projects.require(T, 'web')).version;
      await expectDenied(
        carol.projects.update('web', { selector: selector as never }, { expectedVersion: version }),
        /carol may not inventory\.write/,
      );
      expect((await fleet.store.projects.require(T, 'web')).selector).toEqual({ labels: { tier: 'web' } });
      expect(await serverReach('carol')).toEqual(before);
      const last = (await fleet.store.audit.list(T)).at(-1)!;
      expect(last).toMatchObject({
        action: 'inventory.write',
        decision: 'deny',
        result: 'denied',
        actor: { principalId: 'carol' },
        target: { type: 'project', id: 'web' },
      });
      await expect(carol.servers.get('db-1')).rejects.toBeInstanceOf(AuthorizationError);
    });
  }

  it('projects.update — narrowing or keeping the selector within reach is allowed', async () => {
    const carol = as('carol');
    const version = (await fleet.store.projects.require(T, 'web')).version;
    const updated = await carol.projects.update(
      'web',
      { selector: { ids: ['web-1'] } },
      { expectedVersion: version },
    );
    expect(updated.selector).toEqual({ ids: ['web-1'] });
  });

  it('projects.remove then projects.add — re-creating the bound project with a wider selector is refused', async () => {
    const carol = as('carol');
    await carol.projects.remove('web');
    await expectDenied(
      carol.projects.add({ id: 'web', name: 'web', selector: { all: true } }),
      /carol may not inventory\.write/,
    );
    await expect(carol.servers.get('db-1')).rejects.toBeInstanceOf(AuthorizationError);
    expect(await fleet.store.projects.get(T, 'web')).toBeUndefined();
  });

  it('projects.update — the tenant-wide admin may widen a project (it holds everything it hands out)', async () => {
    const version = (await fleet.store.projects.require(T, 'web')).version;
    await alice().projects.update('web', { selector: { all: true } }, { expectedVersion: version });
    expect(await as('carol').servers.get('db-1')).toMatchObject({ id: 'db-1' });
  });

  it('servers.update — relabelling a server into a scope where another role gives the caller more is refused', async () => {
    await fleet.store.roles.create({
      tenantId: T,
      id: 'web-inventory',
      name: 'web inventory',
      rules: [{ effect: 'allow', actions: ['inventory.*'], servers: { labels: { tier: 'web' } } }],
    });
    await fleet.store.roles.create({
      tenantId: T,
      id: 'staging-scripts',
      name: 'staging scripts',
      rules: [{ effect: 'allow', actions: ['script.run'], servers: { labels: { env: 'staging' } } }],
    });
    await addPrincipal('dave');
    await alice().iam.bindRole('dave', 'web-inventory');
    await alice().iam.bindRole('dave', 'staging-scripts');
    const dave = as('dave');
    const web1 = await fleet.store.servers.require(T, 'web-1');
    await expectDenied(
      dave.servers.update(
        'web-1',
        { labels: { tier: 'web', env: 'staging' } },
        { expectedVersion: web1.version },
      ),
      /widen dave's own reach \(script\.run on server web-1\)/,
    );
    expect((await fleet.store.servers.require(T, 'web-1')).labels).toEqual({ tier: 'web', env: 'prod' });
    // A label change that gives nothing new is allowed.
    await dave.servers.update(
      'web-1',
      { labels: { tier: 'web', env: 'prod', owner: 'x' } },
      { expectedVersion: web1.version },
    );
  });
});

describe('iam.bindRole', () => {
  beforeEach(setup);
  afterEach(() => fleet.close());

  it('iam.bindRole — a tenantId in the options is refused and nothing is written into another tenant', async () => {
    await addPrincipal('carol');
    const otherBefore = await fleet.store.roleBindings.listAll(OTHER);
    const otherHead = await fleet.store.audit.head(OTHER);
    for (const options of [
      { tenantId: OTHER },
      { tenantId: OTHER, projectIds: ['web'] },
      { tenant: OTHER },
    ]) {
      const error = await alice()
        .iam.bindRole('carol', 'tenant-admin', options as never)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toMatch(/BindRoleOptions/);
    }
    expect(await fleet.store.roleBindings.listAll(OTHER)).toEqual(otherBefore);
    expect(await fleet.store.audit.head(OTHER)).toEqual(otherHead);
    expect(await fleet.store.roleBindings.listAll(T, { where: { principalId: 'carol' } })).toEqual([]);
  });

  it('iam.bindRole — an IAM-only admin can neither grant itself more nor hand out what it lacks', async () => {
    await fleet.store.roles.create({
      tenantId: T,
      id: 'iam-admin',
      name: 'IAM admin',
      rules: [{ effect: 'allow', actions: ['iam.*'] }],
    });
    await fleet.store.roles.create({
      tenantId: T,
      id: 'reader',
      name: 'reader',
      rules: [{ effect: 'allow', actions: ['iam.read'] }],
    });
    await addPrincipal('ian');
    await addPrincipal('eve');
    await alice().iam.bindRole('ian', 'iam-admin');
    await alice().servers.add(server('web-1', { tier: 'web' }));
    const ian = as('ian');
    await expectDenied(ian.iam.bindRole('ian', 'tenant-admin'), /widen ian's own reach/);
    await expectDenied(ian.iam.bindRole('eve', 'tenant-admin'), /give eve .*which ian may not do itself/);
    expect(await fleet.store.roleBindings.listAll(T, { where: { principalId: 'eve' } })).toEqual([]);
    // What it holds itself, it may hand out.
    const binding = await ian.iam.bindRole('eve', 'reader');
    expect(binding).toMatchObject({ tenantId: T, principalId: 'eve', roleId: 'reader' });
  });
});

/**
 * The class, as a property: principals with scoped roles, acting alone or together, make random
 * sequences of the SDK calls that change scopes (project selectors, server labels, bindings,
 * projects removed and re-added). Whatever succeeds, no member of the group may ever act on a
 * server in a way that nobody in the group could before (grants are the only way to more, and
 * are not among these calls).
 */
describe('no call widens its caller reach (property)', () => {
  const LABELS = fc.record({
    tier: fc.constantFrom('web', 'db'),
    env: fc.constantFrom('prod', 'staging'),
  });
  const SELECTOR = fc.oneof(
    fc.constant({ all: true }),
    fc.record({
      labels: fc.dictionary(fc.constantFrom('tier', 'env'), fc.constantFrom('web', 'db', 'prod', 'staging'), {
        minKeys: 1,
      }),
    }),
    fc.record({ ids: fc.uniqueArray(fc.constantFrom('s1', 's2', 's3', 's4'), { minLength: 1 }) }),
  );
  const ROLES = [
    'tenant-admin',
    'web-inventory',
    'staging-scripts',
    'no-prod-scripts',
    'iam-admin',
    'reader',
  ];
  const ACTORS = ['mallory', 'eve'] as const;
  const PROJECTS = ['p1', 'p2', 'p3'];

  type Command =
    | { kind: 'project.update'; actor: string; project: string; selector: unknown }
    | { kind: 'project.add'; actor: string; project: string; selector: unknown }
    | { kind: 'project.remove'; actor: string; project: string }
    | { kind: 'server.update'; actor: string; server: string; labels: Record<string, string> }
    | { kind: 'bind'; actor: string; principal: string; role: string; projectIds?: string[] };

  const actor = fc.constantFrom(...ACTORS);
  const project = fc.constantFrom(...PROJECTS);
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ kind: fc.constant('project.update' as const), actor, project, selector: SELECTOR }),
    fc.record({ kind: fc.constant('project.add' as const), actor, project, selector: SELECTOR }),
    fc.record({ kind: fc.constant('project.remove' as const), actor, project }),
    fc.record({
      kind: fc.constant('server.update' as const),
      actor,
      server: fc.constantFrom('s1', 's2', 's3', 's4'),
      labels: LABELS,
    }),
    fc.record(
      {
        kind: fc.constant('bind' as const),
        actor,
        principal: fc.constantFrom(...ACTORS),
        role: fc.constantFrom(...ROLES),
        projectIds: fc.uniqueArray(project, { minLength: 1 }),
      },
      { requiredKeys: ['kind', 'actor', 'principal', 'role'] },
    ),
  );
  const binding = fc.record(
    { role: fc.constantFrom(...ROLES), projectIds: fc.uniqueArray(project, { minLength: 1 }) },
    { requiredKeys: ['role'] },
  );
  const scenario = fc.record({
    servers: fc.array(LABELS, { minLength: 4, maxLength: 4 }),
    projects: fc.array(SELECTOR, { minLength: 2, maxLength: 2 }),
    mallory: fc.array(binding, { minLength: 1, maxLength: 3 }),
    eve: fc.array(binding, { maxLength: 2 }),
    commands: fc.array(command, { minLength: 1, maxLength: 8 }),
  });

  async function run(session: FleetSession, c: Command): Promise<void> {
    const store = fleet.store;
    switch (c.kind) {
      case 'project.update': {
        const current = await store.projects.get(T, c.project);
        if (!current) return;
        await session.projects.update(
          c.project,
          { selector: c.selector as never },
          { expectedVersion: current.version },
        );
        return;
      }
      case 'project.add':
        await session.projects.add({ id: c.project, name: c.project, selector: c.selector as never });
        return;
      case 'project.remove':
        await session.projects.remove(c.project);
        return;
      case 'server.update': {
        const current = await store.servers.require(T, c.server);
        await session.servers.update(c.server, { labels: c.labels }, { expectedVersion: current.version });
        return;
      }
      case 'bind':
        await session.iam.bindRole(c.principal, c.role, c.projectIds ? { projectIds: c.projectIds } : {});
        return;
    }
  }

  it('random scope changes by scoped principals — the group never acts on a server beyond its initial reach', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        await setup();
        try {
          const store = fleet.store;
          for (const [i, labels] of s.servers.entries())
            await alice().servers.add(server(`s${i + 1}`, labels));
          for (const [i, selector] of s.projects.entries()) {
            await alice().projects.add({ id: `p${i + 1}`, name: `p${i + 1}`, selector: selector as never });
          }
          for (const [id, rules] of [
            [
              'web-inventory',
              [{ effect: 'allow', actions: ['inventory.*'], servers: { labels: { tier: 'web' } } }],
            ],
            [
              'staging-scripts',
              [
                {
                  effect: 'allow',
                  actions: ['script.run', 'patch.*'],
                  servers: { labels: { env: 'staging' } },
                },
              ],
            ],
            [
              'no-prod-scripts',
              [{ effect: 'deny', actions: ['script.run'], servers: { labels: { env: 'prod' } } }],
            ],
            ['iam-admin', [{ effect: 'allow', actions: ['iam.*'] }]],
            ['reader', [{ effect: 'allow', actions: ['inventory.read', 'patch.read'] }]],
          ] as const) {
            await store.roles.create({ tenantId: T, id, name: id, rules: rules as never });
          }
          for (const who of ACTORS) {
            await addPrincipal(who);
            for (const b of s[who]) {
              await store.roleBindings.create({
                tenantId: T,
                principalId: who,
                roleId: b.role,
                ...(b.projectIds ? { projectIds: b.projectIds } : {}),
              });
            }
          }
          const initial = new Set<string>();
          for (const who of ACTORS) for (const pair of await serverReach(who)) initial.add(pair);
          for (const c of s.commands) {
            try {
              await run(as(c.actor), c);
            } catch (error) {
              if (!(error instanceof AuthorizationError) && !(error instanceof Error && 'code' in error))
                throw error;
            }
            for (const who of ACTORS) {
              for (const pair of await serverReach(who)) {
                if (!initial.has(pair)) {
                  throw new Error(`${who} gained ${pair} after ${JSON.stringify(c)}`);
                }
              }
            }
          }
        } finally {
          await fleet.close();
        }
      }),
      { numRuns: 120 },
    );
  }, 300_000);
});
