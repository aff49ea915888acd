import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { auditRecordHash, GENESIS_HASH } from '../audit/chain.js';
import {
  type AuditInput,
  AuditInputSchema,
  type AuditRecord,
  ENTITY_KINDS,
  ENTITY_SCHEMAS,
  type EntityInputs,
  type EntityKind,
  type EntityTypes,
  INDEXED_FIELDS,
  matchesSelector,
  type Selectable,
  validate,
} from '../domain/index.js';
import {
  AlreadyExistsError,
  ConflictError,
  NotFoundError,
  redact,
  StoreError,
  ValidationError,
} from '../errors.js';
import type { Clock } from '../ports/clock.js';
import { systemClock } from '../ports/clock.js';
import type {
  AuditLog,
  AuditQuery,
  BackendSession,
  EntityRow,
  ListOptions,
  Repository,
  Store,
  StoreBackend,
  StoreScope,
} from '../ports/store.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
const STORE_MANAGED = new Set(['tenantId', 'id', 'version', 'createdAt', 'updatedAt']);

export interface CreateStoreOptions {
  /** Time for `createdAt`/`updatedAt` and audit `at`. @default the system clock */
  clock?: Clock;
}

type Run = <T>(fn: (session: BackendSession) => Promise<T>) => Promise<T>;

function checkLimit(limit: number | undefined, subject: string): number {
  const value = limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
    throw new ValidationError(subject, [
      { path: ['limit'], message: `must be an integer from 1 to ${MAX_LIMIT}` },
    ]);
  }
  return value;
}

function checkTenant(tenantId: unknown, subject: string): asserts tenantId is string {
  if (typeof tenantId !== 'string' || tenantId.length === 0) {
    throw new ValidationError(subject, [{ path: ['tenantId'], message: 'is required' }]);
  }
}

class EntityRepository<K extends EntityKind> implements Repository<K> {
  readonly #kind: K;
  readonly #run: Run;
  readonly #clock: Clock;
  readonly #subject: string;

  constructor(kind: K, run: Run, clock: Clock) {
    this.#kind = kind;
    this.#run = run;
    this.#clock = clock;
    this.#subject = kind;
  }

  async get(tenantId: string, id: string): Promise<EntityTypes[K] | undefined> {
    checkTenant(tenantId, this.#subject);
    const row = await this.#run((s) => s.getRow(this.#kind, tenantId, id));
    return row?.data as EntityTypes[K] | undefined;
  }

  async require(tenantId: string, id: string): Promise<EntityTypes[K]> {
    const found = await this.get(tenantId, id);
    if (!found) throw new NotFoundError(this.#kind, id);
    return found;
  }

  async list(tenantId: string, options: ListOptions<EntityTypes[K]> = {}): Promise<EntityTypes[K][]> {
    checkTenant(tenantId, this.#subject);
    const limit = checkLimit(options.limit, `${this.#subject}.list`);
    const where = this.#where(options.where);
    const selector = options.selector;
    if (selector && this.#kind !== 'servers') {
      throw new ValidationError(`${this.#subject}.list`, [
        { path: ['selector'], message: 'only servers take a selector' },
      ]);
    }
    return this.#run(async (s) => {
      if (!selector) {
        const rows = await s.listRows(this.#kind, tenantId, { where, after: options.after, limit } as never);
        return rows.map((r) => r.data as EntityTypes[K]);
      }
      const out: EntityTypes[K][] = [];
      let after = options.after;
      for (;;) {
        const rows = await s.listRows(this.#kind, tenantId, { where, after, limit: MAX_LIMIT } as never);
        for (const row of rows) {
          if (matchesSelector(row.data as unknown as Selectable, selector))
            out.push(row.data as EntityTypes[K]);
          if (out.length === limit) return out;
        }
        if (rows.length < MAX_LIMIT) return out;
        after = rows[rows.length - 1]!.id;
      }
    });
  }

  async listAll(
    tenantId: string,
    options: Omit<ListOptions<EntityTypes[K]>, 'after' | 'limit'> = {},
  ): Promise<EntityTypes[K][]> {
    const out: EntityTypes[K][] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.list(tenantId, { ...options, after, limit: MAX_LIMIT });
      out.push(...page);
      if (page.length < MAX_LIMIT) return out;
      after = (page[page.length - 1] as { id: string }).id;
    }
  }

  async create(input: EntityInputs[K]): Promise<EntityTypes[K]> {
    const schemas = ENTITY_SCHEMAS[this.#kind];
    const parsed = validate(schemas.input, input, this.#subject) as Record<string, unknown>;
    const now = this.#clock.now().toISOString();
    const tenantId = parsed['tenantId'] as string;
    const id = (parsed['id'] as string | undefined) ?? randomUUID();
    if (this.#kind === 'tenants' && id !== tenantId) {
      throw new ValidationError(this.#subject, [
        { path: ['id'], message: 'a tenant’s id must equal its tenantId' },
      ]);
    }
    const entity = validate(
      schemas.stored,
      { ...parsed, id, version: 1, createdAt: now, updatedAt: now },
      this.#subject,
    ) as Record<string, unknown>;
    const row: EntityRow = { kind: this.#kind, tenantId, id, version: 1, data: entity };
    const inserted = await this.#run((s) => s.insertRow(row));
    if (!inserted) throw new AlreadyExistsError(this.#kind, id);
    return entity as EntityTypes[K];
  }

  async update(
    tenantId: string,
    id: string,
    changes: Partial<Omit<EntityInputs[K], 'tenantId' | 'id'>>,
    options: { expectedVersion: number },
  ): Promise<EntityTypes[K]> {
    checkTenant(tenantId, this.#subject);
    if (!Number.isInteger(options?.expectedVersion)) {
      throw new ValidationError(this.#subject, [
        { path: ['expectedVersion'], message: 'is required for updates' },
      ]);
    }
    const forbidden = Object.keys(changes ?? {}).filter((k) => STORE_MANAGED.has(k));
    if (forbidden.length) {
      throw new ValidationError(
        this.#subject,
        forbidden.map((k) => ({ path: [k], message: 'cannot be changed' })),
      );
    }
    return this.#run(async (s) => {
      const current = await s.getRow(this.#kind, tenantId, id);
      if (!current) throw new NotFoundError(this.#kind, id);
      if (current.version !== options.expectedVersion) {
        throw new ConflictError(
          `${this.#kind} ${JSON.stringify(id)} is at version ${current.version}, not ${options.expectedVersion}`,
        );
      }
      const { version, createdAt, updatedAt, ...rest } = current.data;
      const input = validate(ENTITY_SCHEMAS[this.#kind].input, { ...rest, ...changes }, this.#subject);
      const entity = validate(
        ENTITY_SCHEMAS[this.#kind].stored,
        { ...input, version: current.version + 1, createdAt, updatedAt: this.#clock.now().toISOString() },
        this.#subject,
      ) as Record<string, unknown>;
      const row: EntityRow = { kind: this.#kind, tenantId, id, version: current.version + 1, data: entity };
      if (!(await s.updateRow(row, current.version))) {
        throw new ConflictError(`${this.#kind} ${JSON.stringify(id)} changed while it was being updated`);
      }
      return entity as EntityTypes[K];
    });
  }

  async delete(tenantId: string, id: string, options: { expectedVersion?: number } = {}): Promise<boolean> {
    checkTenant(tenantId, this.#subject);
    return this.#run(async (s) => {
      if (options.expectedVersion !== undefined) {
        const current = await s.getRow(this.#kind, tenantId, id);
        if (!current) return false;
        if (current.version !== options.expectedVersion) {
          throw new ConflictError(
            `${this.#kind} ${JSON.stringify(id)} is at version ${current.version}, not ${options.expectedVersion}`,
          );
        }
      }
      return s.deleteRow(this.#kind, tenantId, id, options.expectedVersion);
    });
  }

  #where(where: Record<string, unknown> | undefined): Record<string, string | number | boolean> {
    const out: Record<string, string | number | boolean> = {};
    const allowed = INDEXED_FIELDS[this.#kind] as readonly string[];
    const issues = [];
    for (const [field, value] of Object.entries(where ?? {})) {
      if (value === undefined) continue;
      if (!allowed.includes(field)) {
        issues.push({ path: ['where', field], message: `is not an indexed field of ${this.#kind}` });
      } else if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        issues.push({ path: ['where', field], message: 'must be a string, number or boolean' });
      } else {
        out[field] = value;
      }
    }
    if (issues.length) throw new ValidationError(`${this.#subject}.list`, issues);
    return out;
  }
}

class ChainedAuditLog implements AuditLog {
  readonly #run: Run;
  readonly #clock: Clock;
  readonly #inTransaction: boolean;
  readonly #backend: StoreBackend;

  constructor(run: Run, clock: Clock, backend: StoreBackend, inTransaction: boolean) {
    this.#run = run;
    this.#clock = clock;
    this.#backend = backend;
    this.#inTransaction = inTransaction;
  }

  async append(input: AuditInput): Promise<AuditRecord> {
    const parsed = validate(AuditInputSchema, input, 'AuditRecord');
    const base = { ...parsed, details: redact(parsed.details) as Record<string, unknown> };
    const attempt = async (s: BackendSession): Promise<AuditRecord | undefined> => {
      const head = await s.auditHead(parsed.tenantId);
      const unhashed = {
        ...base,
        seq: (head?.seq ?? 0) + 1,
        id: randomUUID(),
        at: this.#clock.now().toISOString(),
        prevHash: head?.hash ?? GENESIS_HASH,
      };
      const record: AuditRecord = { ...unhashed, hash: auditRecordHash(unhashed) };
      return (await s.auditInsert(record)) ? record : undefined;
    };
    for (let tries = 0; tries < 20; tries++) {
      const record = this.#inTransaction
        ? await this.#run(attempt)
        : await this.#backend.session(attempt, { transactional: true });
      if (record) return record;
      if (this.#inTransaction) break;
    }
    throw new ConflictError(
      `audit chain of tenant ${JSON.stringify(parsed.tenantId)} is contended; append failed`,
    );
  }

  async list(tenantId: string, query: AuditQuery = {}): Promise<AuditRecord[]> {
    checkTenant(tenantId, 'AuditQuery');
    const limit = checkLimit(query.limit, 'AuditQuery');
    return this.#run((s) => s.auditList(tenantId, { ...query, limit }));
  }

  async head(tenantId: string): Promise<AuditRecord | undefined> {
    checkTenant(tenantId, 'AuditQuery');
    return this.#run((s) => s.auditHead(tenantId));
  }
}

function scope(run: Run, clock: Clock, backend: StoreBackend, inTransaction: boolean): StoreScope {
  const repos = Object.fromEntries(
    ENTITY_KINDS.map((kind) => [kind, new EntityRepository(kind, run, clock)]),
  );
  return {
    ...(repos as unknown as Omit<StoreScope, 'audit'>),
    audit: new ChainedAuditLog(run, clock, backend, inTransaction),
  };
}

/**
 * Builds a {@link Store} on a {@link StoreBackend}: validation, versions, timestamps, tenant
 * scoping, selectors and the audit hash chain are done here, once, so every backend behaves alike.
 */
export function createStore(backend: StoreBackend, options: CreateStoreOptions = {}): Store {
  const clock = options.clock ?? systemClock;
  // Single-connection backends serialise sessions: a store call made inside a transaction callback
  // would wait for the transaction to end, forever. Fail loudly instead, on every backend alike.
  const inTransaction = new AsyncLocalStorage<true>();
  let closed = false;
  const guard = () => {
    if (closed) throw new StoreError('the store is closed');
    if (inTransaction.getStore()) {
      throw new StoreError('inside a transaction use the transaction object it was given, not the store');
    }
  };
  const run: Run = (fn) => {
    guard();
    return backend.session(fn, { transactional: false });
  };
  const base = scope(run, clock, backend, false);
  return {
    ...base,
    leases: backend.leases,
    tenantIds: () => run((s) => s.listTenantIds()),
    async transaction<T>(fn: (tx: StoreScope) => Promise<T>): Promise<T> {
      guard();
      return backend.session(
        async (session) => {
          let open = true;
          const txRun: Run = (inner) => {
            if (!open) throw new StoreError('the transaction has ended; use the store, not the tx object');
            return inner(session);
          };
          try {
            return await inTransaction.run(true, () => fn(scope(txRun, clock, backend, true)));
          } finally {
            open = false;
          }
        },
        { transactional: true },
      );
    },
    async close() {
      if (closed) return;
      closed = true;
      await backend.close();
    },
  };
}
