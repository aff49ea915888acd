import {
  AlreadyExistsError,
  AUDIT_COLUMNS,
  type AuditColumns,
  AuditIntegrityError,
  type AuditRecord,
  auditColumnsOf,
  ConflictError,
  ENTITY_KINDS,
  ENTITY_SCHEMAS,
  INDEXED_FIELDS,
  LeaseNotHeldError,
  NotFoundError,
  type Store,
  StoreError,
  ValidationError,
  verifyAuditChain,
  verifyStoredAuditRows,
} from '@fleetward/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from './clock.js';
import { SAMPLE_CHANGES, sampleInput } from './fixtures.js';

export const STORE_CONFORMANCE_GROUPS = [
  'crud',
  'validation',
  'isolation',
  'selectors',
  'concurrency',
  'transactions',
  'audit',
  'leases',
  'persistence',
  'compliance-states',
] as const;
export type StoreConformanceGroup = (typeof STORE_CONFORMANCE_GROUPS)[number];

export interface StoreConformanceContext {
  clock: ManualClock;
}

export interface StoreConformanceOptions {
  /** A new, empty store using `ctx.clock`. */
  create(ctx: StoreConformanceContext): Store | Promise<Store>;
  /**
   * Opens the same storage again after `close()` (file-backed stores). Without it the
   * `persistence` group must be skipped with a reason.
   */
  reopen?(ctx: StoreConformanceContext): Store | Promise<Store>;
  /** Called after each test, e.g. to delete files. */
  cleanup?(): void | Promise<void>;
  /** Groups switched off, each with the reason (printed in the test name). */
  skip?: Partial<Record<StoreConformanceGroup, string>>;
  /** More tests of the implementation, run with the same setup. */
  additionalTests?(get: () => { store: Store; clock: ManualClock }): void;
  /**
   * A back channel to the audit table of the store under test, as someone holding the database
   * has it (append-only triggers dropped). With it the `audit` group also proves that edited
   * columns and forged rows are caught; a store that keeps nothing outside the record (memory)
   * leaves it out and those tests are skipped, saying so.
   */
  auditTamper?: AuditTamper;
}

/** Raw writes to a store's audit table, bypassing the store: see `auditTamper`. */
export interface AuditTamper {
  /** Sets one column of the row at (`tenantId`, `seq`) as stored, leaving the record as it is. */
  setColumn(tenantId: string, seq: number, column: keyof AuditColumns, value: string | number): Promise<void>;
  /** Inserts a row with these columns and this record text (any JSON), as a forger would. */
  insertRow(columns: AuditColumns, record: string): Promise<void>;
}

const T1 = 'tenant-a';
const T2 = 'tenant-b';

async function expectError<E>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${type.name}`).toBeInstanceOf(type);
  return error as E;
}

/**
 * The definition of a correct {@link Store}: every implementation runs this suite and must pass
 * it whole (or skip a group for a stated reason).
 */
export function describeStoreConformance(name: string, options: StoreConformanceOptions): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    let clock: ManualClock;

    beforeEach(async () => {
      clock = new ManualClock('2026-03-01T12:00:00.000Z');
      store = await options.create({ clock });
    });
    afterEach(async () => {
      await store.close();
      await options.cleanup?.();
    });

    const group = (g: StoreConformanceGroup, body: () => void) => {
      const reason = options.skip?.[g];
      if (reason) describe.skip(`${g} (skipped: ${reason})`, body);
      else describe(g, body);
    };

    group('crud', () => {
      for (const kind of ENTITY_KINDS) {
        it(`${kind}.create/get/update/delete — round-trips with versions and timestamps`, async () => {
          const repo = store[kind] as Store['servers'];
          const input = sampleInput(kind, T1, 1) as never;
          const created = (await repo.create(input)) as {
            id: string;
            version: number;
            createdAt: string;
            tenantId: string;
          };
          expect(created.version).toBe(1);
          expect(created.tenantId).toBe(T1);
          expect(created.createdAt).toBe('2026-03-01T12:00:00.000Z');
          expect(await repo.get(T1, created.id)).toEqual(created);

          clock.advance(1000);
          const changes = SAMPLE_CHANGES[kind] as never;
          const updated = (await repo.update(T1, created.id, changes, { expectedVersion: 1 })) as Record<
            string,
            unknown
          >;
          expect(updated['version']).toBe(2);
          expect(updated['createdAt']).toBe(created.createdAt);
          expect(updated['updatedAt']).toBe('2026-03-01T12:00:01.000Z');
          for (const [k, v] of Object.entries(SAMPLE_CHANGES[kind])) expect(updated[k]).toEqual(v);
          expect(await repo.get(T1, created.id)).toEqual(updated);

          expect(await repo.delete(T1, created.id)).toBe(true);
          expect(await repo.get(T1, created.id)).toBeUndefined();
          expect(await repo.delete(T1, created.id)).toBe(false);
        });
      }

      it('create — keeps a caller-chosen id and refuses a duplicate', async () => {
        await store.servers.create({ ...sampleInput('servers', T1), id: 'web-1' });
        await expectError(
          store.servers.create({ ...sampleInput('servers', T1, 2), id: 'web-1' }),
          AlreadyExistsError,
        );
        expect((await store.servers.require(T1, 'web-1')).name).toBe('web-1');
      });

      it('require — a missing entity is a NotFoundError', async () => {
        await expectError(store.servers.require(T1, 'nope'), NotFoundError);
      });

      it('update — a missing entity is a NotFoundError', async () => {
        await expectError(
          store.servers.update(T1, 'nope', { name: 'x' }, { expectedVersion: 1 }),
          NotFoundError,
        );
      });

      it('list — orders by id and pages with after/limit without gaps or repeats', async () => {
        for (let i = 0; i < 25; i++) {
          await store.servers.create({
            ...sampleInput('servers', T1, i),
            id: `s-${String(i).padStart(2, '0')}`,
          });
        }
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.servers.list(T1, { limit: 7, after });
          seen.push(...page.map((s) => s.id));
          if (page.length < 7) break;
          after = page[page.length - 1]!.id;
        }
        expect(seen).toEqual([...Array(25).keys()].map((i) => `s-${String(i).padStart(2, '0')}`));
        expect(await store.servers.listAll(T1)).toHaveLength(25);
      });

      it('list — filters on indexed fields with where', async () => {
        for (let i = 0; i < 6; i++) await store.servers.create(sampleInput('servers', T1, i));
        const dc1 = await store.servers.list(T1, { where: { region: 'dc-1' } });
        expect(dc1.map((s) => s.name).sort()).toEqual(['web-1', 'web-3', 'web-5']);
        expect(await store.servers.list(T1, { where: { region: 'dc-1', name: 'web-3' } })).toHaveLength(1);
      });

      it('list — where on a field that is not indexed is a ValidationError', async () => {
        const error = await expectError(
          store.servers.list(T1, { where: { address: 'x' } as never }),
          ValidationError,
        );
        expect(error.paths).toContain('where.address');
      });
    });

    group('validation', () => {
      it('create — an invalid entity is a ValidationError naming every bad field, and nothing is stored', async () => {
        const bad = {
          ...sampleInput('servers', T1),
          id: 'bad-1',
          address: 'web; rm -rf /',
          labels: { 'bad key!': 'x' },
          port: 70000,
        };
        const error = await expectError(store.servers.create(bad as never), ValidationError);
        expect(error.code).toBe('VALIDATION_FAILED');
        expect(error.paths).toEqual(expect.arrayContaining(['address', 'port', 'labels.bad key!']));
        expect(await store.servers.get(T1, 'bad-1')).toBeUndefined();
        expect(await store.servers.list(T1)).toEqual([]);
      });

      it('create — unknown fields are refused, not silently dropped', async () => {
        const error = await expectError(
          store.principals.create({ ...sampleInput('principals', T1), isAdmin: true } as never),
          ValidationError,
        );
        expect(error.message).toMatch(/isAdmin/);
      });

      it('update — an invalid change is a ValidationError and the stored entity is unchanged', async () => {
        const s = await store.servers.create(sampleInput('servers', T1));
        await expectError(
          store.servers.update(T1, s.id, { port: -1 }, { expectedVersion: 1 }),
          ValidationError,
        );
        await expectError(
          store.servers.update(T1, s.id, { tenantId: T2 } as never, { expectedVersion: 1 }),
          ValidationError,
        );
        expect(await store.servers.get(T1, s.id)).toEqual(s);
      });

      it('create — a credential without its one caretaker is refused', async () => {
        const { caretakerId: _c, ...noCaretaker } = sampleInput('credentials', T1);
        const error = await expectError(store.credentials.create(noCaretaker as never), ValidationError);
        expect(error.paths).toContain('caretakerId');
      });

      it('create — an access request without reason or ticket is refused', async () => {
        const error = await expectError(
          store.accessRequests.create({ ...sampleInput('accessRequests', T1), reason: ' ', ticket: '' }),
          ValidationError,
        );
        expect(error.paths).toEqual(expect.arrayContaining(['reason', 'ticket']));
      });
    });

    group('isolation', () => {
      /** Every row of every kind, and the audit chain, of one tenant. */
      const tenantSnapshot = async (tenantId: string) => ({
        entities: Object.fromEntries(
          await Promise.all(
            ENTITY_KINDS.map(async (kind) => [
              kind,
              await (store[kind] as Store['servers']).listAll(tenantId),
            ]),
          ),
        ),
        audit: await store.audit.list(tenantId),
      });

      it('get/list/update/delete — never reach another tenant’s rows', async () => {
        const a = await store.servers.create({ ...sampleInput('servers', T1), id: 'shared-id' });
        const b = await store.servers.create({ ...sampleInput('servers', T2, 2), id: 'shared-id' });
        expect((await store.servers.get(T1, 'shared-id'))?.name).toBe(a.name);
        expect((await store.servers.get(T2, 'shared-id'))?.name).toBe(b.name);
        expect((await store.servers.list(T1)).map((s) => s.tenantId)).toEqual([T1]);
        expect(await store.servers.list(T1, { selector: { all: true } })).toHaveLength(1);
        await store.servers.update(T1, 'shared-id', { name: 'changed' }, { expectedVersion: 1 });
        expect((await store.servers.get(T2, 'shared-id'))?.name).toBe(b.name);
        await store.servers.delete(T1, 'shared-id');
        expect(await store.servers.get(T2, 'shared-id')).toBeDefined();
        expect(await store.servers.get('tenant-c', 'shared-id')).toBeUndefined();
      });

      // The kinds come from the registry (`ENTITY_KINDS`, which createStore builds the store
      // from), so a kind added later is covered without touching this suite.
      for (const kind of ENTITY_KINDS) {
        it(`${kind}.get/list/update/delete — one tenant never sees or changes another’s rows`, async () => {
          const repo = store[kind] as unknown as Store['servers'];
          // Tenants are their own id; every other kind shares one id across the two tenants.
          const input = (tenantId: string, n: number, id: string) =>
            ({ ...sampleInput(kind, tenantId, n), ...(kind === 'tenants' ? {} : { id }) }) as never;
          const mine = (await repo.create(input(T1, 1, 'shared-id'))) as unknown as Record<string, unknown>;
          const theirs = (await repo.create(input(T2, 2, 'shared-id'))) as unknown as Record<string, unknown>;
          const theirsOnly =
            kind === 'tenants'
              ? theirs
              : ((await repo.create(input(T2, 3, 'theirs-only'))) as unknown as Record<string, unknown>);
          const before = await tenantSnapshot(T2);

          const ownRows = (rows: readonly unknown[]) =>
            (rows as Record<string, unknown>[]).every((r) => r['tenantId'] === T1);
          expect(await repo.get(T1, mine['id'] as string)).toEqual(mine);
          expect(await repo.get(T1, theirsOnly['id'] as string)).toBeUndefined();
          expect(await repo.list(T1)).toEqual([mine]);
          expect(await repo.listAll(T1)).toEqual([mine]);
          for (const field of INDEXED_FIELDS[kind] as readonly string[]) {
            const value = theirs[field];
            if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
              continue;
            expect(ownRows(await repo.list(T1, { where: { [field]: value } as never })), field).toBe(true);
          }
          if (theirsOnly !== theirs) {
            await expectError(
              repo.update(T1, theirsOnly['id'] as string, SAMPLE_CHANGES[kind] as never, {
                expectedVersion: 1,
              }),
              NotFoundError,
            );
            expect(await repo.delete(T1, theirsOnly['id'] as string)).toBe(false);
          }
          await repo.update(T1, mine['id'] as string, SAMPLE_CHANGES[kind] as never, { expectedVersion: 1 });
          expect(await repo.delete(T1, mine['id'] as string)).toBe(true);

          expect(await tenantSnapshot(T2)).toEqual(before);
          expect(await repo.get('tenant-c', 'shared-id')).toBeUndefined();
        });
      }

      it('ENTITY_KINDS — names every repository of the store, and each kind has a valid sample', () => {
        const repositories = new Set<string>();
        for (let o: object | null = store; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
          for (const key of Object.getOwnPropertyNames(o)) {
            const value = (store as unknown as Record<string, unknown>)[key];
            if (value && typeof value === 'object' && ['create', 'get', 'list'].every((m) => m in value))
              repositories.add(key);
          }
        }
        expect([...repositories].sort()).toEqual([...ENTITY_KINDS].sort());
        for (const kind of ENTITY_KINDS) {
          for (const n of [1, 2, 3]) {
            const parsed = ENTITY_SCHEMAS[kind].input.safeParse(sampleInput(kind, T1, n));
            expect(parsed.success, `sampleInput('${kind}', …, ${n}): ${parsed.error?.message}`).toBe(true);
          }
          expect(Object.keys(SAMPLE_CHANGES[kind]).length, `SAMPLE_CHANGES.${kind}`).toBeGreaterThan(0);
        }
      });

      it('tenantIds — lists every tenant, sorted, for process-wide workers', async () => {
        await store.tenants.create(sampleInput('tenants', T2));
        await store.tenants.create(sampleInput('tenants', T1));
        await store.servers.create(sampleInput('servers', 'tenant-c'));
        expect(await store.tenantIds()).toEqual([T1, T2]);
      });

      it('audit.list — returns only the tenant’s own chain', async () => {
        const actor = { principalId: 'p-1', kind: 'human' as const };
        await store.audit.append({
          tenantId: T1,
          actor,
          action: 'x.a',
          decision: 'allow',
          result: 'success',
        });
        await store.audit.append({
          tenantId: T2,
          actor,
          action: 'x.b',
          decision: 'allow',
          result: 'success',
        });
        expect((await store.audit.list(T1)).map((r) => r.action)).toEqual(['x.a']);
        expect((await store.audit.list(T2)).map((r) => r.seq)).toEqual([1]);
      });
    });

    group('selectors', () => {
      beforeEach(async () => {
        const rows = [
          {
            id: 'a',
            provider: 'aws',
            accountId: 'acc-1',
            region: 'eu-west-1',
            labels: { env: 'prod', tier: 'web' },
          },
          {
            id: 'b',
            provider: 'aws',
            accountId: 'acc-2',
            region: 'us-east-1',
            labels: { env: 'staging', tier: 'web' },
          },
          {
            id: 'c',
            provider: 'gcp',
            accountId: 'acc-3',
            region: 'europe-west1',
            labels: { env: 'prod', tier: 'db' },
          },
          { id: 'd', provider: 'ssh', accountId: 'dc', labels: { env: 'prod' } },
        ] as const;
        for (const r of rows) {
          await store.servers.create({ tenantId: T1, name: `srv-${r.id}`, ...r, labels: { ...r.labels } });
        }
        await store.servers.create({
          tenantId: T2,
          id: 'z',
          name: 'other',
          provider: 'aws',
          accountId: 'acc-1',
          labels: { env: 'prod' },
        });
      });
      const ids = async (selector: Parameters<Store['servers']['list']>[1]) =>
        (await store.servers.list(T1, selector)).map((s) => s.id);

      it('list — matches labels, providers, accounts, regions and expressions together', async () => {
        expect(await ids({ selector: { labels: { env: 'prod' } } })).toEqual(['a', 'c', 'd']);
        expect(await ids({ selector: { labels: { env: 'prod' }, providers: ['aws', 'gcp'] } })).toEqual([
          'a',
          'c',
        ]);
        expect(await ids({ selector: { accountIds: ['acc-2', 'acc-3'] } })).toEqual(['b', 'c']);
        expect(await ids({ selector: { regions: ['eu-west-1'] } })).toEqual(['a']);
        expect(await ids({ selector: { expressions: [{ key: 'tier', operator: 'DoesNotExist' }] } })).toEqual(
          ['d'],
        );
        expect(
          await ids({
            selector: { expressions: [{ key: 'tier', operator: 'In', values: ['db', 'cache'] }] },
          }),
        ).toEqual(['c']);
        expect(
          await ids({ selector: { expressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] } }),
        ).toEqual(['b']);
        expect(await ids({ selector: { ids: ['d', 'b', 'z'] } })).toEqual(['b', 'd']);
      });

      it('list — an empty selector matches nothing; all: true matches the whole tenant', async () => {
        expect(await ids({ selector: {} })).toEqual([]);
        expect(await ids({ selector: { all: true } })).toEqual(['a', 'b', 'c', 'd']);
      });

      it('list — limit applies after the selector', async () => {
        expect(await ids({ selector: { labels: { env: 'prod' } }, limit: 2 })).toEqual(['a', 'c']);
      });

      it('list — named ids give what walking the tenant in id order would, for every subset, cursor, limit and where', async () => {
        const all = await store.servers.listAll(T1);
        const names = ['a', 'b', 'c', 'd', 'x', 'z'];
        const subsets = Array.from({ length: 1 << names.length }, (_, mask) =>
          names.filter((_, i) => mask & (1 << i)),
        );
        for (const subset of subsets) {
          // Reversed and repeated: order and duplicates in the selector change nothing.
          const named = [...subset].reverse().concat(subset.slice(0, 1));
          for (const after of [undefined, 'a', 'b0', 'c']) {
            for (const limit of [1, 2, 10]) {
              for (const where of [undefined, { provider: 'aws' as const }]) {
                const selector = { ids: named, ...(subset.length % 2 ? { labels: { env: 'prod' } } : {}) };
                const expected = all
                  .filter((s) => subset.includes(s.id) && (after === undefined || s.id > after))
                  .filter((s) => !where || s.provider === where.provider)
                  .filter((s) => !('labels' in selector) || s.labels['env'] === 'prod')
                  .slice(0, limit)
                  .map((s) => s.id);
                const got = await ids({
                  selector,
                  limit,
                  ...(after === undefined ? {} : { after }),
                  ...(where ? { where } : {}),
                });
                expect(got, JSON.stringify({ named, after, limit, where, selector })).toEqual(expected);
              }
            }
          }
        }
      });
    });

    group('concurrency', () => {
      it('update — a stale expectedVersion is a ConflictError and the newer write stays', async () => {
        const s = await store.servers.create(sampleInput('servers', T1));
        await store.servers.update(T1, s.id, { name: 'first' }, { expectedVersion: 1 });
        const error = await expectError(
          store.servers.update(T1, s.id, { name: 'second' }, { expectedVersion: 1 }),
          ConflictError,
        );
        expect(error.retryable).toBe(true);
        expect((await store.servers.require(T1, s.id)).name).toBe('first');
      });

      it('update — of two concurrent writers from the same version exactly one wins', async () => {
        const s = await store.servers.create(sampleInput('servers', T1));
        const results = await Promise.allSettled(
          ['x', 'y', 'z'].map((name) => store.servers.update(T1, s.id, { name }, { expectedVersion: 1 })),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        expect(
          results
            .filter((r) => r.status === 'rejected')
            .every((r) => (r as PromiseRejectedResult).reason instanceof ConflictError),
        ).toBe(true);
        expect((await store.servers.require(T1, s.id)).version).toBe(2);
      });

      it('delete — a stale expectedVersion is a ConflictError and nothing is deleted', async () => {
        const s = await store.servers.create(sampleInput('servers', T1));
        await store.servers.update(T1, s.id, { name: 'v2' }, { expectedVersion: 1 });
        await expectError(store.servers.delete(T1, s.id, { expectedVersion: 1 }), ConflictError);
        expect(await store.servers.get(T1, s.id)).toBeDefined();
      });
    });

    group('transactions', () => {
      it('transaction — commits every write together', async () => {
        await store.transaction(async (tx) => {
          await tx.servers.create({ ...sampleInput('servers', T1), id: 'tx-1' });
          await tx.projects.create({ ...sampleInput('projects', T1), id: 'p-1' });
          await tx.audit.append({
            tenantId: T1,
            actor: { principalId: 'u', kind: 'human' },
            action: 'x',
            decision: 'allow',
            result: 'success',
          });
        });
        expect(await store.servers.get(T1, 'tx-1')).toBeDefined();
        expect(await store.projects.get(T1, 'p-1')).toBeDefined();
        expect(await store.audit.list(T1)).toHaveLength(1);
      });

      it('transaction — rolls back every write, audit included, when the callback throws', async () => {
        const existing = await store.servers.create({ ...sampleInput('servers', T1), id: 'keep' });
        const failure = new Error('boom');
        await expect(
          store.transaction(async (tx) => {
            await tx.servers.create({ ...sampleInput('servers', T1, 2), id: 'tx-2' });
            await tx.servers.update(T1, 'keep', { name: 'changed' }, { expectedVersion: 1 });
            await tx.servers.delete(T1, 'keep-not-there');
            await tx.audit.append({
              tenantId: T1,
              actor: { principalId: 'u', kind: 'human' },
              action: 'x',
              decision: 'allow',
              result: 'success',
            });
            throw failure;
          }),
        ).rejects.toBe(failure);
        expect(await store.servers.get(T1, 'tx-2')).toBeUndefined();
        expect(await store.servers.get(T1, 'keep')).toEqual(existing);
        expect(await store.audit.list(T1)).toEqual([]);
        const next = await store.audit.append({
          tenantId: T1,
          actor: { principalId: 'u', kind: 'human' },
          action: 'y',
          decision: 'allow',
          result: 'success',
        });
        expect(next.seq).toBe(1);
      });

      it('transaction — rolls back when a write inside it fails validation', async () => {
        await expect(
          store.transaction(async (tx) => {
            await tx.servers.create({ ...sampleInput('servers', T1), id: 'ok' });
            await tx.servers.create({ ...sampleInput('servers', T1), id: 'bad', port: 0 });
          }),
        ).rejects.toBeInstanceOf(ValidationError);
        expect(await store.servers.get(T1, 'ok')).toBeUndefined();
      });

      it('transaction — reads its own writes', async () => {
        const seen = await store.transaction(async (tx) => {
          await tx.servers.create({ ...sampleInput('servers', T1), id: 'mine' });
          return tx.servers.get(T1, 'mine');
        });
        expect(seen?.id).toBe('mine');
      });

      it('transaction — using the store itself inside the callback fails loudly instead of deadlocking', async () => {
        await expect(
          store.transaction(async () => {
            await store.servers.list(T1);
          }),
        ).rejects.toBeInstanceOf(StoreError);
      });

      it('transaction — a tx object used after the transaction ended is refused', async () => {
        let leaked: Parameters<Parameters<Store['transaction']>[0]>[0] | undefined;
        await store.transaction(async (tx) => {
          leaked = tx;
        });
        await expect(leaked!.servers.list(T1)).rejects.toBeInstanceOf(StoreError);
      });
    });

    group('audit', () => {
      const actor = { principalId: 'alice', kind: 'human' as const };

      it('append — numbers records from 1 and chains their hashes', async () => {
        for (let i = 0; i < 5; i++) {
          clock.advance(1000);
          await store.audit.append({
            tenantId: T1,
            actor,
            action: `a.${i}`,
            decision: 'allow',
            result: 'success',
            details: { i },
          });
        }
        const records = await store.audit.list(T1);
        expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(records[0]!.prevHash).toBe('0'.repeat(64));
        expect(records[1]!.prevHash).toBe(records[0]!.hash);
        expect(verifyAuditChain(records)).toMatchObject({ ok: true, checked: 5 });
        expect((await store.audit.head(T1))?.seq).toBe(5);
      });

      it('append — concurrent appends keep one gapless chain', async () => {
        await Promise.all(
          [...Array(20).keys()].map((i) =>
            store.audit.append({
              tenantId: T1,
              actor,
              action: `c.${i}`,
              decision: 'allow',
              result: 'success',
            }),
          ),
        );
        const records = await store.audit.list(T1);
        expect(records).toHaveLength(20);
        expect(verifyAuditChain(records).ok).toBe(true);
      });

      it('appendMany — one stretch of the chain, in order, interleaved with concurrent appends and batches', async () => {
        const batch = (tag: string, n: number) =>
          [...Array(n).keys()].map((i) => ({
            tenantId: T1,
            actor,
            action: `${tag}.${i}`,
            decision: 'allow' as const,
            result: 'success' as const,
            details: { password: 'hunter2', i },
          }));
        const [first] = await Promise.all([
          store.audit.appendMany(batch('m', 5)),
          store.audit.append({ tenantId: T1, actor, action: 'single', decision: 'allow', result: 'success' }),
          store.transaction((tx) => tx.audit.appendMany(batch('t', 3))),
        ]);
        expect(first.map((r) => r.action)).toEqual(['m.0', 'm.1', 'm.2', 'm.3', 'm.4']);
        // Gapless and consecutive: nothing else was chained in between the records of one batch.
        expect(first.map((r) => r.seq - first[0]!.seq)).toEqual([0, 1, 2, 3, 4]);
        expect(first[1]!.prevHash).toBe(first[0]!.hash);
        const records = await store.audit.list(T1);
        expect(records).toHaveLength(9);
        expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
        expect(verifyAuditChain(records).ok).toBe(true);
        expect(JSON.stringify(records)).not.toContain('hunter2');
      });

      it('appendMany — refuses records of two tenants, and a rolled-back batch leaves nothing', async () => {
        const record = (tenantId: string) => ({
          tenantId,
          actor,
          action: 'x',
          decision: 'allow' as const,
          result: 'success' as const,
        });
        await expectError(store.audit.appendMany([record(T1), record(T2)]), ValidationError);
        await expectError(store.audit.appendMany([]), ValidationError);
        const failure = new Error('boom');
        await expect(
          store.transaction(async (tx) => {
            await tx.audit.appendMany([record(T1), record(T1)]);
            throw failure;
          }),
        ).rejects.toBe(failure);
        expect(await store.audit.list(T1)).toEqual([]);
        expect(await store.audit.list(T2)).toEqual([]);
        expect((await store.audit.appendMany([record(T1)]))[0]!.seq).toBe(1);
      });

      it('append — redacts secret-looking details before they are kept', async () => {
        const r = await store.audit.append({
          tenantId: T1,
          actor,
          action: 'keys.rotate',
          decision: 'allow',
          result: 'success',
          details: { password: 'hunter2', nested: { privateKey: 'x' }, host: 'web-1' },
        });
        expect(JSON.stringify(await store.audit.list(T1))).not.toContain('hunter2');
        expect(r.details).toEqual({
          password: '[REDACTED]',
          nested: { privateKey: '[REDACTED]' },
          host: 'web-1',
        });
      });

      it('append — an invalid record is a ValidationError and the chain is unchanged', async () => {
        await expectError(
          store.audit.append({
            tenantId: T1,
            actor,
            action: '',
            decision: 'maybe',
            result: 'success',
          } as never),
          ValidationError,
        );
        expect(await store.audit.head(T1)).toBeUndefined();
      });

      it('list — filters by action, actor, time and afterSeq', async () => {
        for (let i = 0; i < 6; i++) {
          clock.advance(60_000);
          await store.audit.append({
            tenantId: T1,
            actor: { principalId: i % 2 ? 'bob' : 'alice', kind: 'human' },
            action: i % 3 ? 'patch.scan' : 'access.request',
            decision: 'allow',
            result: 'success',
          });
        }
        expect((await store.audit.list(T1, { actorId: 'bob' })).map((r) => r.seq)).toEqual([2, 4, 6]);
        expect((await store.audit.list(T1, { action: 'access.request' })).map((r) => r.seq)).toEqual([1, 4]);
        expect((await store.audit.list(T1, { afterSeq: 4 })).map((r) => r.seq)).toEqual([5, 6]);
        expect((await store.audit.list(T1, { limit: 2 })).map((r) => r.seq)).toEqual([1, 2]);
        const since = new Date('2026-03-01T12:03:00.000Z');
        const until = new Date('2026-03-01T12:05:00.000Z');
        expect((await store.audit.list(T1, { since, until })).map((r) => r.seq)).toEqual([3, 4]);
      });

      it('rows — every stored row carries columns equal to its record’s own fields', async () => {
        for (let i = 0; i < 4; i++) {
          clock.advance(1000);
          await store.audit.append({
            tenantId: T1,
            actor,
            action: `r.${i}`,
            decision: 'allow',
            result: 'success',
          });
        }
        const rows = await store.audit.rows(T1);
        expect(rows.map((r) => r.columns.seq)).toEqual([1, 2, 3, 4]);
        for (const row of rows) expect(row.columns).toEqual(auditColumnsOf(row.record as AuditRecord));
        expect((await store.audit.rows(T1, { afterSeq: 2, limit: 1 })).map((r) => r.columns.seq)).toEqual([
          3,
        ]);
        expect((await store.audit.headRow(T1))?.columns.seq).toBe(4);
        expect(await store.audit.headRow(T2)).toBeUndefined();
        expect(await verifyStoredAuditRows(await store.audit.rows(T1), { tenantId: T1 })).toMatchObject({
          ok: true,
          checked: 4,
        });
      });

      it('list — answers every query exactly as filtering the records themselves does', async () => {
        const actors = ['alice', 'bob', 'carol'];
        const actions = ['patch.scan', 'access.request', 'audit.read'];
        for (let i = 0; i < 12; i++) {
          clock.advance(((i * 7) % 5) * 60_000 + 1);
          await store.audit.append({
            tenantId: T1,
            actor: { principalId: actors[i % 3]!, kind: 'human' },
            action: actions[(i * 2) % 3]!,
            decision: 'allow',
            result: 'success',
          });
        }
        const all = await store.audit.list(T1);
        const times = [undefined, ...all.map((r) => new Date(r.at))];
        const seqs = [undefined, 0, 5, 12];
        // Every combination of filters, against the same filters applied to the records by hand.
        for (const actorId of [undefined, ...actors, 'nobody'])
          for (const action of [undefined, ...actions])
            for (const since of [times[0], times[3], times[9]])
              for (const until of [times[0], times[6], times[12]])
                for (const afterSeq of seqs) {
                  const query = { actorId, action, since, until, afterSeq };
                  const expected = all.filter(
                    (r) =>
                      (actorId === undefined || r.actor.principalId === actorId) &&
                      (action === undefined || r.action === action) &&
                      (since === undefined || Date.parse(r.at) >= since.getTime()) &&
                      (until === undefined || Date.parse(r.at) < until.getTime()) &&
                      (afterSeq === undefined || r.seq > afterSeq),
                  );
                  const defined = Object.fromEntries(
                    Object.entries(query).filter(([, v]) => v !== undefined),
                  );
                  const got = await store.audit.list(T1, defined);
                  expect(
                    got.map((r) => r.seq),
                    JSON.stringify(defined),
                  ).toEqual(expected.map((r) => r.seq));
                  const limited = await store.audit.list(T1, { ...defined, limit: 2 });
                  expect(limited.map((r) => r.seq)).toEqual(expected.slice(0, 2).map((r) => r.seq));
                }
      });

      const tamper = options.auditTamper;
      const tampered = tamper ? describe : describe.skip;
      tampered(
        `tampered underneath${tamper ? '' : ' (skipped: this store keeps no column outside the hashed record)'}`,
        () => {
          const appendSome = async (tenantId: string, n: number) => {
            for (let i = 0; i < n; i++) {
              clock.advance(60_000);
              await store.audit.append({
                tenantId,
                actor: { principalId: i % 2 ? 'bob' : 'alice', kind: 'human' },
                action: i % 2 ? 'patch.scan' : 'access.request',
                decision: 'allow',
                result: 'success',
              });
            }
            return store.audit.list(tenantId);
          };

          it('list — an edited actor_id, action or at column neither hides a record nor smuggles one in', async () => {
            const records = await appendSome(T1, 6);
            await tamper!.setColumn(T1, 1, 'actorId', 'mallory');
            await tamper!.setColumn(T1, 2, 'action', 'access.request');
            await tamper!.setColumn(T1, 3, 'at', '2099-01-01T00:00:00.000Z');
            await tamper!.setColumn(T1, 4, 'actorId', 'bob');
            const seqs = async (q: Parameters<Store['audit']['list']>[1]) =>
              (await store.audit.list(T1, q)).map((r) => r.seq);
            expect(await seqs({ actorId: 'alice' })).toEqual([1, 3, 5]);
            expect(await seqs({ actorId: 'mallory' })).toEqual([]);
            expect(await seqs({ actorId: 'bob' })).toEqual([2, 4, 6]);
            expect(await seqs({ action: 'access.request' })).toEqual([1, 3, 5]);
            expect(await seqs({ since: new Date(records[2]!.at), until: new Date(records[3]!.at) })).toEqual([
              3,
            ]);
            expect(await seqs({ since: new Date('2099-01-01T00:00:00.000Z') })).toEqual([]);
          });

          it('verify — names every edited column of every row (column-mismatch: seq, id, column)', async () => {
            const records = await appendSome(T1, 3);
            const forged: Record<keyof AuditColumns, string | number> = {
              tenantId: T2,
              seq: 1000,
              id: 'forged-id',
              at: '2099-01-01T00:00:00.000Z',
              action: 'forged.action',
              actorId: 'mallory',
              hash: 'f'.repeat(64),
            };
            for (const column of AUDIT_COLUMNS) {
              for (const record of records) {
                const original = auditColumnsOf(record)[column];
                await tamper!.setColumn(T1, record.seq, column, forged[column]);
                // A moved row is found where it now is: the other tenant's log, or its new seq.
                const tenantId = column === 'tenantId' ? T2 : T1;
                const seq = column === 'seq' ? 1000 : record.seq;
                const result = await verifyStoredAuditRows(await store.audit.rows(tenantId), { tenantId });
                expect(result.ok, `${column} of record ${record.seq}`).toBe(false);
                expect(result.problems).toContainEqual(
                  expect.objectContaining({
                    problem: 'column-mismatch',
                    column,
                    seq,
                    id: column === 'id' ? 'forged-id' : record.id,
                  }),
                );
                await tamper!.setColumn(tenantId, seq, column, original);
                expect((await verifyStoredAuditRows(await store.audit.rows(T1), { tenantId: T1 })).ok).toBe(
                  true,
                );
              }
            }
          });

          it('append — a forged row at the head does not block appends, and verify names it', async () => {
            const records = await appendSome(T1, 3);
            const head = records[2]!;
            // A copy of the head under the next seq: the row a forger inserts with database access.
            await tamper!.insertRow(
              { ...auditColumnsOf(head), seq: 4, id: 'forged-4' },
              JSON.stringify(head),
            );
            const next = await store.audit.append({
              tenantId: T1,
              actor,
              action: 'after.forgery',
              decision: 'allow',
              result: 'success',
            });
            expect(next.seq).toBe(5);
            expect(next.prevHash).toBe(head.hash);
            expect((await store.audit.list(T1)).map((r) => r.seq)).toEqual([1, 2, 3, 5]);
            const result = await verifyStoredAuditRows(await store.audit.rows(T1), { tenantId: T1 });
            expect(result.ok).toBe(false);
            expect(result.problems).toEqual(
              expect.arrayContaining([
                expect.objectContaining({
                  problem: 'column-mismatch',
                  column: 'seq',
                  seq: 4,
                  id: 'forged-4',
                }),
                expect.objectContaining({ problem: 'column-mismatch', column: 'id', seq: 4, id: 'forged-4' }),
                expect.objectContaining({ problem: 'duplicate', seq: 3 }),
              ]),
            );
          });

          it('append — a forged head that holds no record does not block appends, and verify names it', async () => {
            const records = await appendSome(T1, 2);
            await tamper!.insertRow({ ...auditColumnsOf(records[1]!), seq: 3, id: 'forged-3' }, 'null');
            await expectError(store.audit.head(T1), AuditIntegrityError);
            const next = await store.audit.append({
              tenantId: T1,
              actor,
              action: 'x',
              decision: 'allow',
              result: 'success',
            });
            expect(next).toMatchObject({ seq: 4, prevHash: records[1]!.hash });
            const result = await verifyStoredAuditRows(await store.audit.rows(T1), { tenantId: T1 });
            expect(result.problems).toContainEqual(
              expect.objectContaining({ problem: 'malformed', seq: 3, id: 'forged-3' }),
            );
          });

          it('append — a head seq with no successor is an AuditIntegrityError, and verify still runs', async () => {
            const records = await appendSome(T1, 1);
            await tamper!.insertRow(
              { ...auditColumnsOf(records[0]!), seq: Number.MAX_SAFE_INTEGER, id: 'forged-max' },
              JSON.stringify(records[0]),
            );
            const error = await expectError(
              store.audit.append({ tenantId: T1, actor, action: 'x', decision: 'allow', result: 'success' }),
              AuditIntegrityError,
            );
            expect(error.message).toMatch(
              /audit log head of tenant "tenant-a" is damaged: .*run audit verify/,
            );
            const result = await verifyStoredAuditRows(await store.audit.rows(T1), { tenantId: T1 });
            expect(result.problems).toContainEqual(
              expect.objectContaining({
                problem: 'column-mismatch',
                column: 'seq',
                seq: Number.MAX_SAFE_INTEGER,
              }),
            );
          });
        },
      );

      it('audit — offers no way to change or delete a record', () => {
        const methods = Object.keys(store.audit).concat(
          Object.getOwnPropertyNames(Object.getPrototypeOf(store.audit)),
        );
        expect(methods.filter((m) => /update|delete|remove|put|set|truncate|clear/i.test(m))).toEqual([]);
      });
    });

    group('leases', () => {
      it('acquire — one holder at a time; others get undefined', async () => {
        const a = await store.leases.acquire('job', 'proc-a', 10_000);
        expect(a).toMatchObject({ name: 'job', holder: 'proc-a' });
        expect(await store.leases.acquire('job', 'proc-b', 10_000)).toBeUndefined();
        expect((await store.leases.get('job'))?.holder).toBe('proc-a');
      });

      it('acquire — concurrent attempts yield exactly one holder', async () => {
        const results = await Promise.all(
          [...Array(10).keys()].map((i) => store.leases.acquire('race', `proc-${i}`, 10_000)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it('acquire — the same holder extends its lease and keeps its token', async () => {
        const first = (await store.leases.acquire('job', 'proc-a', 10_000))!;
        clock.advance(5000);
        const again = (await store.leases.acquire('job', 'proc-a', 10_000))!;
        expect(again.token).toBe(first.token);
        expect(again.expiresAt.getTime()).toBe(first.expiresAt.getTime() + 5000);
      });

      it('acquire — after expiry another holder takes it with a higher token, and the old holder cannot renew', async () => {
        const a = (await store.leases.acquire('job', 'proc-a', 10_000))!;
        clock.advance(10_001);
        expect(await store.leases.get('job')).toBeUndefined();
        const b = (await store.leases.acquire('job', 'proc-b', 10_000))!;
        expect(b.token).toBeGreaterThan(a.token);
        await expectError(store.leases.renew(a, 10_000), LeaseNotHeldError);
        expect(await store.leases.release(a)).toBe(false);
        expect((await store.leases.get('job'))?.holder).toBe('proc-b');
      });

      it('renew — extends a held lease; release frees it for others', async () => {
        const a = (await store.leases.acquire('job', 'proc-a', 10_000))!;
        clock.advance(9000);
        const renewed = await store.leases.renew(a, 10_000);
        clock.advance(9000);
        expect((await store.leases.get('job'))?.holder).toBe('proc-a');
        expect(await store.leases.release(renewed)).toBe(true);
        expect(await store.leases.acquire('job', 'proc-b', 10_000)).toBeDefined();
      });

      it('renew — an expired lease is not renewed even if nobody took it', async () => {
        const a = (await store.leases.acquire('job', 'proc-a', 1000))!;
        clock.advance(1001);
        await expectError(store.leases.renew(a, 1000), LeaseNotHeldError);
      });
    });

    group('persistence', () => {
      it('reopen — keeps entities, versions, the audit chain and leases', async () => {
        if (!options.reopen) throw new Error('persistence needs options.reopen');
        const s = await store.servers.create({ ...sampleInput('servers', T1), id: 'persist' });
        await store.servers.update(T1, s.id, { name: 'persisted' }, { expectedVersion: 1 });
        for (let i = 0; i < 3; i++) {
          await store.audit.append({
            tenantId: T1,
            actor: { principalId: 'u', kind: 'human' },
            action: `p.${i}`,
            decision: 'allow',
            result: 'success',
          });
        }
        const lease = (await store.leases.acquire('job', 'proc-a', 60_000))!;
        await store.close();
        store = await options.reopen({ clock });
        expect(await store.servers.require(T1, 'persist')).toMatchObject({ name: 'persisted', version: 2 });
        const records = await store.audit.list(T1);
        expect(verifyAuditChain(records)).toMatchObject({ ok: true, checked: 3 });
        const next = await store.audit.append({
          tenantId: T1,
          actor: { principalId: 'u', kind: 'human' },
          action: 'p.3',
          decision: 'allow',
          result: 'success',
        });
        expect(next.prevHash).toBe(records[2]!.hash);
        expect(await store.leases.get('job')).toMatchObject({ holder: 'proc-a', token: lease.token });
      });
    });

    group('compliance-states', () => {
      const server = (id: string, fields: Record<string, unknown> = {}) =>
        store.servers.create({ ...sampleInput('servers', T1), id, ...fields } as never);
      const scan = (serverId: string, scannedAt: string, fields: Record<string, unknown> = {}) =>
        store.scanResults.create({
          tenantId: T1,
          serverId,
          scannedAt,
          status: 'succeeded',
          ...fields,
        } as never);
      const pending = (category: string, severity: string, firstSeenAt: string) => ({
        name: `p-${category}-${severity}-${firstSeenAt}`,
        arch: 'amd64',
        installedVersion: '1',
        candidateVersion: '2',
        origins: [],
        category,
        severity,
        firstSeenAt,
      });

      it('complianceStates.get — follows the newest scan and keeps failed attempts apart', async () => {
        await server('s1', { name: 'one', labels: { env: 'prod' } });
        const first = await scan('s1', '2026-02-20T00:00:00.000Z', {
          patches: [
            pending('security', 'critical', '2026-02-01T00:00:00.000Z'),
            pending('security', 'critical', '2026-01-15T00:00:00.000Z'),
            pending('bugfix', 'low', '2026-02-10T00:00:00.000Z'),
          ],
          lastUpdatedAt: '2026-02-01T00:00:00.000Z',
        });
        // An older scan recorded late changes nothing; a newer failed one is only the attempt.
        await scan('s1', '2026-02-10T00:00:00.000Z', { patches: [] });
        const failed = await scan('s1', '2026-02-25T00:00:00.000Z', { status: 'failed' });
        const state = await store.complianceStates.get(T1, 's1');
        expect(state?.server).toMatchObject({ id: 's1', name: 'one', labels: { env: 'prod' } });
        expect(state?.succeeded).toMatchObject({
          id: first.id,
          scannedAt: '2026-02-20T00:00:00.000Z',
          lastUpdatedAt: '2026-02-01T00:00:00.000Z',
        });
        expect([...state!.succeeded!.patches].sort((a, b) => (a.category < b.category ? -1 : 1))).toEqual([
          { category: 'bugfix', severity: 'low', count: 1, oldestSeenAt: '2026-02-10T00:00:00.000Z' },
          { category: 'security', severity: 'critical', count: 2, oldestSeenAt: '2026-01-15T00:00:00.000Z' },
        ]);
        expect(state?.attempt).toMatchObject({ id: failed.id, status: 'failed' });
        // Deleting the newest success falls back to the next one.
        await store.scanResults.delete(T1, first.id);
        expect((await store.complianceStates.get(T1, 's1'))?.succeeded).toMatchObject({
          scannedAt: '2026-02-10T00:00:00.000Z',
          patches: [],
        });
      });

      it('complianceStates.list — one per existing server, by id, paged, per tenant', async () => {
        await server('b');
        await server('a', { name: 'renamed later' });
        await server('c');
        await store.servers.update(T1, 'a', { name: 'alpha' }, { expectedVersion: 1 });
        await store.servers.delete(T1, 'c');
        await scan('ghost', '2026-02-20T00:00:00.000Z');
        await store.servers.create({ ...sampleInput('servers', T2), id: 'other' } as never);
        const all = await store.complianceStates.listAll(T1);
        expect(all.map((s) => [s.serverId, s.server?.name])).toEqual([
          ['a', 'alpha'],
          ['b', sampleInput('servers', T1)['name']],
        ]);
        expect(
          (await store.complianceStates.list(T1, { after: 'a', limit: 1 })).map((s) => s.serverId),
        ).toEqual(['b']);
        // A scan of a server that does not exist yet counts once the server is created.
        await server('ghost');
        expect((await store.complianceStates.get(T1, 'ghost'))?.succeeded?.scannedAt).toBe(
          '2026-02-20T00:00:00.000Z',
        );
        expect(await store.complianceStates.get(T2, 'a')).toBeUndefined();
      });

      it('transaction — a rolled-back scan leaves the state as it was', async () => {
        await server('s1');
        await scan('s1', '2026-02-20T00:00:00.000Z');
        const before = await store.complianceStates.get(T1, 's1');
        await expect(
          store.transaction(async (tx) => {
            await tx.scanResults.create({
              tenantId: T1,
              serverId: 's1',
              scannedAt: '2026-02-28T00:00:00.000Z',
              status: 'succeeded',
            } as never);
            throw new Error('rollback');
          }),
        ).rejects.toThrow('rollback');
        expect(await store.complianceStates.get(T1, 's1')).toEqual(before);
      });

      it('complianceStates.getMany — the states of the ids asked, of the tenant, once each', async () => {
        await server('a');
        await server('b');
        await scan('ghost', '2026-02-20T00:00:00.000Z');
        await store.servers.create({ ...sampleInput('servers', T2), id: 'c' } as never);
        const got = await store.complianceStates.getMany(T1, ['b', 'a', 'ghost', 'c', 'nobody', 'a']);
        expect(got.map((s) => s.serverId).sort()).toEqual(['a', 'b', 'ghost']);
        expect(got.find((s) => s.serverId === 'ghost')?.server).toBeUndefined();
        expect(await store.complianceStates.getMany(T1, [])).toEqual([]);
        await expect(store.complianceStates.getMany(T1, [''])).rejects.toThrow(/serverIds/);
      });

      it('complianceStates.changes — after any mix of writes, every state changed since a cursor comes with the next answer', async () => {
        const first = await store.complianceStates.changes(T1);
        if (!first) return; // a backend without a feed: views read every state instead
        expect(first.serverIds).toEqual([]);
        // A seeded walk over writes of servers and scans, with the feed read in between.
        let seed = 7;
        const random = (n: number) => {
          seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
          return seed % n;
        };
        const ids = ['s0', 's1', 's2', 's3', 's4', 's5'];
        const exists = new Set<string>();
        let cursor = first.cursor;
        let changed = new Set<string>();
        for (let step = 0; step < 60; step++) {
          const id = ids[random(ids.length)]!;
          const op = random(5);
          if (op === 0 && !exists.has(id)) {
            await server(id);
            exists.add(id);
          } else if (op === 1 && exists.has(id)) {
            await store.servers.delete(T1, id);
            exists.delete(id);
          } else if (op === 2 && exists.has(id)) {
            const current = await store.servers.require(T1, id);
            await store.servers.update(T1, id, { name: `n${step}` }, { expectedVersion: current.version });
          } else if (op === 3) {
            await scan(id, new Date(Date.UTC(2026, 1, 1) + step * 60_000).toISOString());
          } else {
            const answer = (await store.complianceStates.changes(T1, cursor))!;
            for (const changedId of changed) expect(answer.serverIds).toContain(changedId);
            cursor = answer.cursor;
            changed = new Set();
            continue;
          }
          changed.add(id);
        }
        // Another tenant's writes are not in this tenant's feed.
        const before = (await store.complianceStates.changes(T1, cursor))!;
        await store.servers.create({ ...sampleInput('servers', T2), id: 'other' } as never);
        expect((await store.complianceStates.changes(T1, before.cursor))!.serverIds).not.toContain('other');
        // A cursor this store did not give reads the feed from its start: nothing is missed.
        const all = (await store.complianceStates.changes(T1, 'not a cursor'))!.serverIds;
        for (const id of exists) expect(all).toContain(id);
      });

      it('complianceStates.changes — a write of a transaction still open when the feed was read comes in a later answer', async () => {
        await server('s1');
        const start = await store.complianceStates.changes(T1);
        if (!start) return;
        let written!: () => void;
        let release!: () => void;
        const wrote = new Promise<void>((resolve) => (written = resolve));
        const released = new Promise<void>((resolve) => (release = resolve));
        const tx = store.transaction(async (scope) => {
          await scope.scanResults.create({
            tenantId: T1,
            serverId: 's1',
            scannedAt: '2026-02-20T00:00:00.000Z',
            status: 'succeeded',
          } as never);
          written();
          await released;
        });
        await wrote;
        // Read while the transaction is open (a backend that serialises sessions answers after it).
        let during: { cursor: string; serverIds: string[] } | undefined;
        const read = store.complianceStates.changes(T1, start.cursor).then((answer) => {
          during = answer;
        });
        await new Promise((resolve) => setTimeout(resolve, 50));
        release();
        await tx;
        await read;
        const after = (await store.complianceStates.changes(T1, during!.cursor))!;
        expect([...during!.serverIds, ...after.serverIds]).toContain('s1');
      });
    });

    options.additionalTests?.(() => ({ store, clock }));
  });
}
