import type { ComplianceState } from '../domain/compliance-state.js';
import type {
  AuditInput,
  AuditRecord,
  EntityInputs,
  EntityKind,
  EntityTypes,
  ServerSelector,
} from '../domain/index.js';

/**
 * Options of {@link Repository.list}. Results are ordered by `id` (ascending, byte order) so that
 * `after` pages through a tenant's entities without gaps or repeats while writes happen.
 */
export interface ListOptions<T> {
  /**
   * Equality on indexed fields (see `INDEXED_FIELDS`). A field not indexed for the kind is a
   * `ValidationError`: a store must not silently scan instead.
   */
  where?: { [F in keyof T]?: T[F] extends string | number | boolean | undefined ? T[F] : never };
  /** Only entities matched by the selector (servers only; other kinds reject it). */
  selector?: ServerSelector;
  /** Only ids strictly greater than this one. */
  after?: string;
  /** At most this many. @default 1000, at most 10_000 */
  limit?: number;
}

export interface WriteOptions {
  /**
   * The version the caller read. The write happens only if the stored entity still has it;
   * otherwise `ConflictError`. Required for updates so that no write can silently undo another.
   */
  expectedVersion: number;
}

/**
 * The entities of one kind. Every method is scoped to one tenant: no call can read or change
 * another tenant's rows, whatever ids it passes.
 */
export interface Repository<K extends EntityKind> {
  /** The entity, or `undefined` when there is none with this id in this tenant. */
  get(tenantId: string, id: string): Promise<EntityTypes[K] | undefined>;
  /** Like `get`, but a missing entity is a `NotFoundError`. */
  require(tenantId: string, id: string): Promise<EntityTypes[K]>;
  /** The tenant's entities, filtered and paged (see {@link ListOptions}). */
  list(tenantId: string, options?: ListOptions<EntityTypes[K]>): Promise<EntityTypes[K][]>;
  /** Every entity of the tenant matching `where`/`selector`, paging internally. */
  listAll(
    tenantId: string,
    options?: Omit<ListOptions<EntityTypes[K]>, 'after' | 'limit'>,
  ): Promise<EntityTypes[K][]>;
  /**
   * Validates and stores a new entity with `version: 1`. An `id` is generated when absent.
   * @throws ValidationError naming every bad field; nothing is stored.
   * @throws AlreadyExistsError when the id is taken in this tenant.
   */
  create(input: EntityInputs[K]): Promise<EntityTypes[K]>;
  /**
   * Applies `changes` (top-level fields; `tenantId`, `id` and the store-managed fields cannot
   * change), validates the result and stores it with `version + 1`.
   * @throws ValidationError, NotFoundError, ConflictError (stale `expectedVersion`).
   */
  update(
    tenantId: string,
    id: string,
    changes: Partial<Omit<EntityInputs[K], 'tenantId' | 'id'>>,
    options: WriteOptions,
  ): Promise<EntityTypes[K]>;
  /**
   * Removes the entity. Resolves `false` when there was none.
   * @throws ConflictError when `expectedVersion` is given and stale.
   */
  delete(tenantId: string, id: string, options?: Partial<WriteOptions>): Promise<boolean>;
}

export interface AuditQuery {
  /** Only records with `seq` greater than this. */
  afterSeq?: number;
  /** @default 1000, at most 10_000 */
  limit?: number;
  action?: string;
  actorId?: string;
  /** Inclusive lower bound on `at`. */
  since?: Date;
  /** Exclusive upper bound on `at`. */
  until?: Date;
}

/**
 * The columns a backend keeps beside an audit record to find and order it, named after the
 * record field each one copies (`actorId` copies `actor.principalId`). They are outside the hash:
 * whoever can write the table can change them without touching the record, so every one of them
 * is compared with the record on read and by verification (`auditColumnMismatches`).
 */
export interface AuditColumns {
  tenantId: string;
  seq: number;
  id: string;
  /** ISO-8601 instant (a backend with a timestamp column gives it back in this form). */
  at: string;
  action: string;
  actorId: string;
  hash: string;
}

/**
 * One audit row exactly as stored: its columns, and the record parsed from the hashed JSON. A
 * store that was tampered with can hold anything there, so `record` is `unknown`: `undefined` when
 * the stored text is not JSON.
 */
export interface StoredAuditRow {
  columns: AuditColumns;
  record: unknown;
}

/**
 * The append-only audit log: one hash chain per tenant. There is no way to change or remove a
 * record through this interface, and stores must refuse it underneath too (triggers, grants).
 */
export interface AuditLog {
  /**
   * Appends a record, assigning `seq` (one after the stored head's `seq` column), `id`, `at`
   * (store clock), `prevHash` (the head record's `hash`) and `hash`. Inside a transaction the
   * record commits or rolls back with it. A damaged head (a forged or edited last row) does not
   * stop appends: the new record links to whatever is stored, and verification names the damage.
   * @throws ConflictError when other appends keep winning the race for the next `seq`.
   * @throws AuditIntegrityError when the head row's `seq` leaves no room for a next one.
   */
  append(input: AuditInput): Promise<AuditRecord>;
  /**
   * Appends several records of one tenant as one stretch of its chain, in order (group commit):
   * the head is read once and the chain locked once for all of them, so a worker writing the
   * results of many servers holds the tenant's chain for one short turn instead of one turn per
   * record. Each record is what {@link AuditLog.append} would have made of it. Inside a
   * transaction they commit or roll back with it; outside one, all or none are appended.
   * @throws ValidationError when the inputs name more than one tenant (or none are given).
   * @throws ConflictError; AuditIntegrityError, as for `append`.
   */
  appendMany(inputs: readonly AuditInput[]): Promise<AuditRecord[]>;
  /**
   * The tenant's records in `seq` order. Every filter is applied to the hashed record (a backend
   * may use its columns to find candidates, but a row whose record does not match the query, or
   * belongs to another tenant, is left out), so editing a column cannot smuggle a record into a
   * query's answer; `verify` reports such a row.
   */
  list(tenantId: string, query?: AuditQuery): Promise<AuditRecord[]>;
  /** The tenant's last record (by the `seq` column), or `undefined` for an empty log. */
  head(tenantId: string): Promise<AuditRecord | undefined>;
  /**
   * The tenant's rows as stored, in order of their `seq` column, after `afterSeq` (a `seq`
   * column value), unfiltered and unchecked: what verification and export read, so that a
   * damaged row is seen as it is instead of failing the read. @default limit 1000, at most 10_000
   */
  rows(tenantId: string, options?: { afterSeq?: number; limit?: number }): Promise<StoredAuditRow[]>;
  /** The tenant's last row (by the `seq` column) as stored, or `undefined` for an empty log. */
  headRow(tenantId: string): Promise<StoredAuditRow | undefined>;
}

/** A lease on a named job: whoever holds it is the only process doing that job until it expires. */
export interface Lease {
  name: string;
  holder: string;
  /**
   * Increases every time the lease changes hands (fencing token): work tagged with an older token
   * than the current one came from a holder that lost the lease.
   */
  token: number;
  expiresAt: Date;
}

/**
 * Leases with expiry, so that only one process runs a scheduled job or a rollout at a time.
 * Not tenant-scoped: names are chosen by the caller (e.g. `scan-schedule:tenant-a:proj-1`).
 * Time comes from the store's clock.
 */
export interface Leases {
  /**
   * Takes the lease when it is free, expired, or already held by `holder` (then it is extended).
   * Resolves `undefined` when another holder has an unexpired lease. Atomic across processes.
   */
  acquire(name: string, holder: string, ttlMs: number): Promise<Lease | undefined>;
  /**
   * Extends a lease the caller still holds.
   * @throws LeaseNotHeldError when the lease expired and someone else took it, or was released.
   */
  renew(lease: Lease, ttlMs: number): Promise<Lease>;
  /** Gives the lease up; resolves `false` when the caller no longer held it. */
  release(lease: Lease): Promise<boolean>;
  /** The current unexpired lease, if any. */
  get(name: string): Promise<Lease | undefined>;
}

/**
 * The per-server compliance inputs (see `ComplianceState`), read-only: the store keeps them up to
 * date itself, in the same transaction as every write of a server or of a scan result, so they
 * always agree with the servers and scans they are built from. Ordered by server id.
 */
export interface ComplianceStates {
  /** The state of one server id, or `undefined` when the store has none (no server, no scan). */
  get(tenantId: string, serverId: string): Promise<ComplianceState | undefined>;
  /**
   * The tenant's states whose server exists, ordered by server id, after `after`, at most `limit`.
   * @default limit 1000, at most 10_000
   */
  list(tenantId: string, options?: { after?: string; limit?: number }): Promise<ComplianceState[]>;
  /** Every state of the tenant whose server exists, paging internally. */
  listAll(tenantId: string): Promise<ComplianceState[]>;
  /**
   * The states of the given server ids that exist (whether or not their server does), in no
   * particular order; ids without a state are left out. At most 10,000 ids.
   */
  getMany(tenantId: string, serverIds: readonly string[]): Promise<ComplianceState[]>;
  /**
   * The change feed of the tenant's states, for views kept up to date across processes (the
   * compliance summary). Without `since`: where the feed stands now, no ids. With the `cursor` of
   * an earlier answer: every server id whose state was written or removed by a transaction that
   * committed after that answer was read (an id may come more than once, or come although nothing
   * changed: re-reading it is harmless), and the cursor to ask from next. `undefined` when the
   * backend keeps no feed (see `BackendSession.complianceStateChanges`).
   */
  changes(tenantId: string, since?: string): Promise<ComplianceStateChanges | undefined>;
}

/** An answer of `ComplianceStates.changes`. */
export interface ComplianceStateChanges {
  /** Opaque: pass it as `since` to learn what changed after this answer. */
  cursor: string;
  /** The server ids whose state changed (or may have) since the `since` asked with. */
  serverIds: string[];
}

/** What a transaction sees: the repositories and the audit log, all inside the transaction. */
export interface StoreScope {
  readonly tenants: Repository<'tenants'>;
  readonly accounts: Repository<'accounts'>;
  readonly servers: Repository<'servers'>;
  readonly projects: Repository<'projects'>;
  readonly principals: Repository<'principals'>;
  readonly roles: Repository<'roles'>;
  readonly roleBindings: Repository<'roleBindings'>;
  readonly patchPolicies: Repository<'patchPolicies'>;
  readonly patchPlans: Repository<'patchPlans'>;
  readonly scripts: Repository<'scripts'>;
  readonly scriptApprovals: Repository<'scriptApprovals'>;
  readonly scriptRuns: Repository<'scriptRuns'>;
  readonly runbooks: Repository<'runbooks'>;
  readonly runbookRuns: Repository<'runbookRuns'>;
  readonly jobs: Repository<'jobs'>;
  readonly taskResults: Repository<'taskResults'>;
  readonly scanResults: Repository<'scanResults'>;
  readonly credentials: Repository<'credentials'>;
  readonly accessRequests: Repository<'accessRequests'>;
  readonly accessGrants: Repository<'accessGrants'>;
  readonly keyRotationPolicies: Repository<'keyRotationPolicies'>;
  readonly keyInventories: Repository<'keyInventories'>;
  readonly complianceStandards: Repository<'complianceStandards'>;
  readonly scanSchedules: Repository<'scanSchedules'>;
  readonly webhookEndpoints: Repository<'webhookEndpoints'>;
  readonly outbox: Repository<'outbox'>;
  readonly integrations: Repository<'integrations'>;
  readonly changeRequests: Repository<'changeRequests'>;
  readonly apiTokens: Repository<'apiTokens'>;
  readonly audit: AuditLog;
  /** Per-server compliance inputs, maintained by the store (see {@link ComplianceStates}). */
  readonly complianceStates: ComplianceStates;
}

/**
 * Where Fleetward keeps its state. Implementations must give the same semantics (the
 * `describeStoreConformance` suite in `@fleetward/testkit` is the definition), on anything from
 * memory to PostgreSQL shared by several processes.
 *
 * Most implementations should not implement this directly but provide a {@link StoreBackend}
 * to `createStore`, which supplies validation, versions, timestamps and the audit hash chain.
 */
export interface Store extends StoreScope {
  readonly leases: Leases;
  /**
   * Ids of every tenant, sorted. For process-wide workers (schedulers, dispatchers) only: every
   * other call is scoped to one tenant.
   */
  tenantIds(): Promise<string[]>;
  /**
   * Runs `fn` in a transaction: every write through `tx` commits together when `fn` resolves, and
   * none is visible (to this or other processes) if it throws; the error is rethrown. Writes made
   * outside `tx` while it runs are not part of it. Transactions do not nest.
   */
  transaction<T>(fn: (tx: StoreScope) => Promise<T>): Promise<T>;
  /** Flushes and releases resources. Later calls fail. */
  close(): Promise<void>;
}

/** One stored entity row as a backend keeps it. `data` is the full entity. */
export interface EntityRow {
  kind: EntityKind;
  tenantId: string;
  id: string;
  version: number;
  data: Record<string, unknown>;
}

/** Row-level operations a backend provides, all within one (possibly transactional) session. */
export interface BackendSession {
  /** Ids of every tenant (rows of kind `tenants`), sorted. */
  listTenantIds(): Promise<string[]>;
  getRow(kind: EntityKind, tenantId: string, id: string): Promise<EntityRow | undefined>;
  /** Rows ordered by id, with `where` equality on top-level fields, after `after`, at most `limit`. */
  listRows(
    kind: EntityKind,
    tenantId: string,
    options: { where: Record<string, string | number | boolean>; after?: string; limit: number },
  ): Promise<EntityRow[]>;
  /** Resolves `false` when the id is taken. */
  insertRow(row: EntityRow): Promise<boolean>;
  /** Writes `row` only if the stored version is `expectedVersion`; resolves whether it did. */
  updateRow(row: EntityRow, expectedVersion: number): Promise<boolean>;
  /** Deletes only if present (and at `expectedVersion` when given); resolves whether it did. */
  deleteRow(kind: EntityKind, tenantId: string, id: string, expectedVersion?: number): Promise<boolean>;
  /**
   * The tenant's row with the highest `seq` column. Inside a transaction it also serialises the
   * tenant's appends across processes (the next append links to this row).
   */
  auditHead(tenantId: string): Promise<StoredAuditRow | undefined>;
  /**
   * Stores `record` with its columns copied from it. Resolves `false` when `seq` is taken for the
   * tenant (a concurrent append won).
   */
  auditInsert(record: AuditRecord): Promise<boolean>;
  /**
   * Rows of the tenant column in `seq` column order, after `afterSeq`, at most `limit`. The
   * filters (`action`, `actorId`, `since`, `until`) should select on the stored record (e.g. an
   * expression index on the JSON) rather than on the columns beside it: `createStore` drops
   * rows whose record does not match, but cannot find rows a column hides.
   */
  auditList(
    tenantId: string,
    query: Required<Pick<AuditQuery, 'limit'>> & AuditQuery,
  ): Promise<StoredAuditRow[]>;
  /**
   * The stored compliance state of one server id. `createStore` computes states; a backend only
   * keeps them, as opaque JSON, beside the entities (a SQL backend in its own table).
   */
  getComplianceState(tenantId: string, serverId: string): Promise<ComplianceState | undefined>;
  /** Stores `state` for `(tenantId, state.serverId)`, replacing the one there. */
  putComplianceState(tenantId: string, state: ComplianceState): Promise<void>;
  /** Removes the state of one server id; nothing happens when there is none. */
  deleteComplianceState(tenantId: string, serverId: string): Promise<void>;
  /**
   * The tenant's states that have a `server`, ordered by server id (byte order), after `after`,
   * at most `limit`. A SQL backend keeps whether the server is present in a column to filter on.
   */
  listComplianceStates(
    tenantId: string,
    options: { after?: string; limit: number },
  ): Promise<ComplianceState[]>;
  /**
   * Optional: the states of many server ids at once (at most 10,000), in any order. Without it,
   * `createStore` calls `getComplianceState` once per id.
   */
  getComplianceStates?(tenantId: string, serverIds: readonly string[]): Promise<ComplianceState[]>;
  /**
   * Optional, the change feed of the states (`ComplianceStates.changes`): every
   * `putComplianceState` and `deleteComplianceState` records the server id with a position, in the
   * same transaction. Without `since`, answers the current cursor and no ids; with it, the ids
   * recorded by transactions that committed after the answer that gave `since`, and a new cursor.
   * Missing an id is the one thing it must never do: one written by a transaction still open at
   * the time of the answer has to come in a later answer (a SQL backend with concurrent writers
   * cannot use a plain counter, whose values commit out of order: PostgreSQL's uses transaction
   * ids and the snapshot's `xmin`). Without it, views such as the compliance summary read every
   * state on every call.
   */
  complianceStateChanges?(tenantId: string, since: string | undefined): Promise<ComplianceStateChanges>;
}

/**
 * The storage engine under `createStore`. A backend only moves rows; `createStore` does the rest.
 */
export interface StoreBackend {
  /**
   * Runs `fn` with a session. With `transactional`, all of `fn`'s writes commit atomically or not
   * at all, and appends to one tenant's audit chain are serialised across processes.
   */
  session<T>(fn: (session: BackendSession) => Promise<T>, options: { transactional: boolean }): Promise<T>;
  readonly leases: Leases;
  close(): Promise<void>;
}
