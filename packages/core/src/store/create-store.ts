import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { auditRecordHash, GENESIS_HASH } from '../audit/chain.js';
import { storedRecord } from '../audit/columns.js';
import {
  type AuditInput,
  AuditInputSchema,
  type AuditRecord,
  ENTITY_KINDS,
  ENTITY_NOUNS,
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
  AuditIntegrityError,
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
  StoredAuditRow,
  StoreScope,
} from '../ports/store.js';
import { matchesAuditQuery } from './audit-query.js';
import { keepComplianceState, StoredComplianceStates, tracksComplianceState } from './compliance-states.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
const STORE_MANAGED = new Set(['tenantId', 'id', 'version', 'createdAt', 'updatedAt']);

export interface CreateStoreOptions {
  /** Time for `createdAt`/`updatedAt` and audit `at`. @default the system clock */
  clock?: Clock;
}

type Run = <T>(fn: (session: BackendSession) => Promise<T>) => Promise<T>;

/** How a scope runs work: `run` for reads, `atomic` for writes that must commit with derived rows. */
interface Runners {
  run: Run;
  atomic: Run;
}

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

/** Whether a row's data has every `where` field equal to its value (what a backend's `where` does). */
function matchesWhere(
  data: Record<string, unknown>,
  where: Record<string, string | number | boolean>,
): boolean {
  return Object.entries(where).every(([field, value]) => data[field] === value);
}

/** An id from a caller is data, never code: anything but a string is refused before it is used as a key. */
function checkId(id: unknown, subject: string): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new ValidationError(subject, [{ path: ['id'], message: 'must be a non-empty string' }]);
  }
}

class EntityRepository<K extends EntityKind> implements Repository<K> {
  readonly #kind: K;
  readonly #run: Run;
  readonly #write: Run;
  readonly #clock: Clock;
  readonly #subject: string;

  constructor(kind: K, runners: Runners, clock: Clock) {
    this.#kind = kind;
    this.#run = runners.run;
    // A server's or scan's write also updates the server's compliance state: both commit together.
    this.#write = tracksComplianceState(kind) ? runners.atomic : runners.run;
    this.#clock = clock;
    this.#subject = kind;
  }

  async get(tenantId: string, id: string): Promise<EntityTypes[K] | undefined> {
    checkTenant(tenantId, this.#subject);
    checkId(id, this.#subject);
    const row = await this.#run((s) => s.getRow(this.#kind, tenantId, id));
    return row?.data as EntityTypes[K] | undefined;
  }

  async require(tenantId: string, id: string): Promise<EntityTypes[K]> {
    const found = await this.get(tenantId, id);
    if (!found) throw new NotFoundError(ENTITY_NOUNS[this.#kind], id);
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
      if (selector.ids) {
        // Only the named servers can match: read those rows, in id order, instead of walking the
        // tenant's servers (a page of 50 named ids must not read 10,000 rows).
        const start = after;
        const ids = [...new Set(selector.ids)].filter((id) => start === undefined || id > start).sort();
        for (const id of ids) {
          const row = await s.getRow(this.#kind, tenantId, id);
          if (!row || !matchesWhere(row.data, where)) continue;
          if (!matchesSelector(row.data as unknown as Selectable, selector)) continue;
          out.push(row.data as EntityTypes[K]);
          if (out.length === limit) break;
        }
        return out;
      }
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
    const inserted = await this.#write(async (s) => {
      if (!(await s.insertRow(row))) return false;
      await keepComplianceState(s, this.#kind, tenantId, entity);
      return true;
    });
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
    checkId(id, this.#subject);
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
    return this.#write(async (s) => {
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
      await keepComplianceState(s, this.#kind, tenantId, entity, current.data);
      return entity as EntityTypes[K];
    });
  }

  async delete(tenantId: string, id: string, options: { expectedVersion?: number } = {}): Promise<boolean> {
    checkTenant(tenantId, this.#subject);
    checkId(id, this.#subject);
    return this.#write(async (s) => {
      const tracked = tracksComplianceState(this.#kind);
      let current: EntityRow | undefined;
      if (options.expectedVersion !== undefined || tracked) {
        current = await s.getRow(this.#kind, tenantId, id);
        if (!current) return false;
      }
      if (options.expectedVersion !== undefined && current && current.version !== options.expectedVersion) {
        throw new ConflictError(
          `${this.#kind} ${JSON.stringify(id)} is at version ${current.version}, not ${options.expectedVersion}`,
        );
      }
      if (!(await s.deleteRow(this.#kind, tenantId, id, options.expectedVersion))) return false;
      if (current) await keepComplianceState(s, this.#kind, tenantId, undefined, current.data);
      return true;
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

const HASH = /^[a-f0-9]{64}$/;

/**
 * The `seq` after the stored head. It comes from the head's `seq` column, the one the store's
 * uniqueness rule is on: taking it from the record instead let one forged row (a copy of the head
 * under the next `seq`) make every append collide with it forever.
 */
function nextSeq(tenantId: string, head: StoredAuditRow | undefined): number {
  const seq = (head?.columns.seq ?? 0) + 1;
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new AuditIntegrityError(
      `audit log head of tenant ${JSON.stringify(tenantId)} is damaged: its seq column is ${String(head?.columns.seq)}, which leaves no next seq; run audit verify`,
      { details: { tenantId, seq: head?.columns.seq } },
    );
  }
  return seq;
}

/**
 * The hash a new record links to: the head record's own `hash` (what verification compares
 * `prevHash` with), or the hash column when the record has none. A damaged head is then reported
 * once, at its own row, instead of breaking every record after it too.
 */
function linkOf(head: StoredAuditRow | undefined): string {
  if (!head) return GENESIS_HASH;
  const recorded = storedRecord(head)?.hash;
  if (typeof recorded === 'string' && HASH.test(recorded)) return recorded;
  return HASH.test(head.columns.hash) ? head.columns.hash : GENESIS_HASH;
}

/** Whether a stored row answers `query` for `tenantId`, judged on the hashed record only. */
function answers(tenantId: string, row: StoredAuditRow, query: AuditQuery): AuditRecord | undefined {
  const record = storedRecord(row);
  if (!record || record.tenantId !== tenantId || record.seq !== row.columns.seq) return undefined;
  return matchesAuditQuery(record, query) ? record : undefined;
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
        seq: nextSeq(parsed.tenantId, head),
        id: randomUUID(),
        at: this.#clock.now().toISOString(),
        prevHash: linkOf(head),
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

  async appendMany(inputs: readonly AuditInput[]): Promise<AuditRecord[]> {
    if (!Array.isArray(inputs) || inputs.length === 0) {
      throw new ValidationError('AuditRecord', [
        { path: [], message: 'must be a non-empty array of records' },
      ]);
    }
    const parsed = inputs.map((input, i) => validate(AuditInputSchema, input, `AuditRecord[${i}]`));
    const tenantId = parsed[0]!.tenantId;
    const strangers = parsed.flatMap((p, i) => (p.tenantId === tenantId ? [] : [i]));
    if (strangers.length) {
      throw new ValidationError(
        'AuditRecord',
        strangers.map((i) => ({
          path: [i, 'tenantId'],
          message: `must be ${tenantId}, as the first record's`,
        })),
      );
    }
    const attempt = async (s: BackendSession): Promise<AuditRecord[] | undefined> => {
      const head = await s.auditHead(tenantId);
      let seq = nextSeq(tenantId, head);
      let prevHash = linkOf(head);
      const records: AuditRecord[] = [];
      for (const p of parsed) {
        const unhashed = {
          ...p,
          details: redact(p.details) as Record<string, unknown>,
          seq,
          id: randomUUID(),
          at: this.#clock.now().toISOString(),
          prevHash,
        };
        const record: AuditRecord = { ...unhashed, hash: auditRecordHash(unhashed) };
        // A lost race for the next seq can only happen to the first record: the chain is locked after the head read.
        if (!(await s.auditInsert(record))) {
          if (records.length)
            throw new ConflictError(
              `audit chain of tenant ${JSON.stringify(tenantId)} changed during an append`,
            );
          return undefined;
        }
        records.push(record);
        seq++;
        prevHash = record.hash;
      }
      return records;
    };
    for (let tries = 0; tries < 20; tries++) {
      const records = this.#inTransaction
        ? await this.#run(attempt)
        : await this.#backend.session(attempt, { transactional: true });
      if (records) return records;
      if (this.#inTransaction) break;
    }
    throw new ConflictError(`audit chain of tenant ${JSON.stringify(tenantId)} is contended; append failed`);
  }

  async list(tenantId: string, query: AuditQuery = {}): Promise<AuditRecord[]> {
    checkTenant(tenantId, 'AuditQuery');
    const limit = checkLimit(query.limit, 'AuditQuery');
    return this.#run(async (s) => {
      const out: AuditRecord[] = [];
      let afterSeq = query.afterSeq;
      for (;;) {
        const rows = await s.auditList(tenantId, { ...query, afterSeq, limit });
        for (const row of rows) {
          const record = answers(tenantId, row, query);
          if (record) out.push(record);
          if (out.length === limit) return out;
        }
        // Rows left out above must not end the page early: read on after the last row seen.
        if (rows.length < limit) return out;
        afterSeq = rows[rows.length - 1]!.columns.seq;
      }
    });
  }

  async head(tenantId: string): Promise<AuditRecord | undefined> {
    const row = await this.headRow(tenantId);
    if (!row) return undefined;
    const record = storedRecord(row);
    if (!record) {
      throw new AuditIntegrityError(
        `audit log head of tenant ${JSON.stringify(tenantId)} is damaged: row ${row.columns.seq} (id ${row.columns.id}) holds no record; run audit verify`,
        { details: { tenantId, seq: row.columns.seq, id: row.columns.id } },
      );
    }
    return record;
  }

  async rows(
    tenantId: string,
    options: { afterSeq?: number; limit?: number } = {},
  ): Promise<StoredAuditRow[]> {
    checkTenant(tenantId, 'AuditQuery');
    const limit = checkLimit(options.limit, 'AuditQuery');
    const after = options.afterSeq === undefined ? {} : { afterSeq: options.afterSeq };
    return this.#run((s) => s.auditList(tenantId, { ...after, limit }));
  }

  async headRow(tenantId: string): Promise<StoredAuditRow | undefined> {
    checkTenant(tenantId, 'AuditQuery');
    return this.#run((s) => s.auditHead(tenantId));
  }
}

function scope(runners: Runners, clock: Clock, backend: StoreBackend, inTransaction: boolean): StoreScope {
  const repos = Object.fromEntries(
    ENTITY_KINDS.map((kind) => [kind, new EntityRepository(kind, runners, clock)]),
  );
  return {
    ...(repos as unknown as Omit<StoreScope, 'audit' | 'complianceStates'>),
    audit: new ChainedAuditLog(runners.run, clock, backend, inTransaction),
    complianceStates: new StoredComplianceStates(runners.run),
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
  const atomic: Run = (fn) => {
    guard();
    return backend.session(fn, { transactional: true });
  };
  const base = scope({ run, atomic }, clock, backend, false);
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
            return await inTransaction.run(true, () =>
              fn(scope({ run: txRun, atomic: txRun }, clock, backend, true)),
            );
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
