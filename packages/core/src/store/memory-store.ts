import { auditColumnsOf } from '../audit/columns.js';
import type { ComplianceState } from '../domain/compliance-state.js';
import type { AuditRecord, EntityKind } from '../domain/index.js';
import { LeaseNotHeldError } from '../errors.js';
import type { Clock } from '../ports/clock.js';
import { systemClock } from '../ports/clock.js';
import type { BackendSession, EntityRow, Lease, Leases, Store, StoreBackend } from '../ports/store.js';
import { Mutex } from '../util/mutex.js';
import { matchesAuditQuery } from './audit-query.js';
import { createStore } from './create-store.js';

export { matchesAuditQuery } from './audit-query.js';

const key = (kind: EntityKind, tenantId: string, id: string) => `${kind}\u0000${tenantId}\u0000${id}`;
const clone = <T>(value: T): T => structuredClone(value);

class MemoryLeases implements Leases {
  readonly #leases = new Map<string, Lease>();
  readonly #clock: Clock;
  #tokens = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<Lease | undefined> {
    const now = this.#clock.now().getTime();
    const current = this.#leases.get(name);
    if (current && current.holder !== holder && current.expiresAt.getTime() > now) return undefined;
    const sameHolder = current && current.holder === holder && current.expiresAt.getTime() > now;
    const lease = {
      name,
      holder,
      token: sameHolder ? current.token : ++this.#tokens,
      expiresAt: new Date(now + ttlMs),
    };
    this.#leases.set(name, lease);
    return { ...lease };
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease> {
    const now = this.#clock.now().getTime();
    const current = this.#leases.get(lease.name);
    if (
      !current ||
      current.token !== lease.token ||
      current.holder !== lease.holder ||
      current.expiresAt.getTime() <= now
    ) {
      throw new LeaseNotHeldError(
        `lease ${JSON.stringify(lease.name)} is no longer held by ${JSON.stringify(lease.holder)}`,
      );
    }
    current.expiresAt = new Date(now + ttlMs);
    return { ...current };
  }

  async release(lease: Lease): Promise<boolean> {
    const current = this.#leases.get(lease.name);
    if (!current || current.token !== lease.token || current.holder !== lease.holder) return false;
    this.#leases.delete(lease.name);
    return current.expiresAt.getTime() > this.#clock.now().getTime();
  }

  async get(name: string): Promise<Lease | undefined> {
    const current = this.#leases.get(name);
    if (!current || current.expiresAt.getTime() <= this.#clock.now().getTime()) return undefined;
    return { ...current };
  }
}

/** The in-memory backend: the reference every other backend is measured against. */
class MemoryBackend implements StoreBackend {
  readonly #rows = new Map<string, EntityRow>();
  readonly #audit = new Map<string, AuditRecord[]>();
  readonly #states = new Map<string, ComplianceState>();
  /** The change feed: per tenant, each server id's latest position (see `complianceStateChanges`). */
  readonly #stateChanges = new Map<string, Map<string, number>>();
  #stateRevision = 0;
  readonly #mutex = new Mutex();
  readonly leases: Leases;

  constructor(clock: Clock) {
    this.leases = new MemoryLeases(clock);
  }

  session<T>(fn: (session: BackendSession) => Promise<T>, options: { transactional: boolean }): Promise<T> {
    return this.#mutex.run(async () => {
      const undo: (() => void)[] = [];
      try {
        return await fn(this.#session(options.transactional ? undo : undefined));
      } catch (error) {
        for (const step of undo.reverse()) step();
        throw error;
      }
    });
  }

  async close() {}

  #session(undo: (() => void)[] | undefined): BackendSession {
    const rows = this.#rows;
    const audit = this.#audit;
    const states = this.#states;
    // Sessions run one at a time, so a counter orders the changes as they commit. A change rolled
    // back stays in the feed: a reader then re-reads a state that did not change, which is harmless.
    const recordChange = (tenantId: string, serverId: string) => {
      let changes = this.#stateChanges.get(tenantId);
      if (!changes) {
        changes = new Map();
        this.#stateChanges.set(tenantId, changes);
      }
      changes.set(serverId, ++this.#stateRevision);
    };
    const remember = (k: string) => {
      if (!undo) return;
      const before = rows.get(k);
      undo.push(() => (before ? rows.set(k, before) : rows.delete(k)));
    };
    const stateKey = (tenantId: string, serverId: string) => `${tenantId}\u0000${serverId}`;
    const rememberState = (k: string) => {
      if (!undo) return;
      const before = states.get(k);
      undo.push(() => (before ? states.set(k, before) : states.delete(k)));
    };
    return {
      async listTenantIds() {
        return [...rows.values()]
          .filter((r) => r.kind === 'tenants')
          .map((r) => r.tenantId)
          .sort();
      },
      async getRow(kind, tenantId, id) {
        const row = rows.get(key(kind, tenantId, id));
        return row && clone(row);
      },
      async listRows(kind, tenantId, { where, after, limit }) {
        const prefix = `${kind}\u0000${tenantId}\u0000`;
        const out: EntityRow[] = [];
        for (const [k, row] of rows) {
          if (!k.startsWith(prefix)) continue;
          if (after !== undefined && row.id <= after) continue;
          if (!Object.entries(where).every(([f, v]) => row.data[f] === v)) continue;
          out.push(row);
        }
        out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        return out.slice(0, limit).map(clone);
      },
      async insertRow(row) {
        const k = key(row.kind, row.tenantId, row.id);
        if (rows.has(k)) return false;
        remember(k);
        rows.set(k, clone(row));
        return true;
      },
      async updateRow(row, expectedVersion) {
        const k = key(row.kind, row.tenantId, row.id);
        if (rows.get(k)?.version !== expectedVersion) return false;
        remember(k);
        rows.set(k, clone(row));
        return true;
      },
      async deleteRow(kind, tenantId, id, expectedVersion) {
        const k = key(kind, tenantId, id);
        const current = rows.get(k);
        if (!current || (expectedVersion !== undefined && current.version !== expectedVersion)) return false;
        remember(k);
        rows.delete(k);
        return true;
      },
      async auditHead(tenantId) {
        const chain = audit.get(tenantId);
        const last = chain?.[chain.length - 1];
        return last && { columns: auditColumnsOf(last), record: clone(last) };
      },
      async auditInsert(record) {
        const chain = audit.get(record.tenantId) ?? [];
        if ((chain[chain.length - 1]?.seq ?? 0) + 1 !== record.seq) return false;
        chain.push(clone(record));
        audit.set(record.tenantId, chain);
        undo?.push(() => {
          chain.pop();
        });
        return true;
      },
      async getComplianceState(tenantId, serverId) {
        const state = states.get(stateKey(tenantId, serverId));
        return state && clone(state);
      },
      async putComplianceState(tenantId, state) {
        const k = stateKey(tenantId, state.serverId);
        rememberState(k);
        states.set(k, clone(state));
        recordChange(tenantId, state.serverId);
      },
      async deleteComplianceState(tenantId, serverId) {
        const k = stateKey(tenantId, serverId);
        if (!states.has(k)) return;
        rememberState(k);
        states.delete(k);
        recordChange(tenantId, serverId);
      },
      getComplianceStates: async (tenantId, serverIds) => {
        const out: ComplianceState[] = [];
        for (const id of serverIds) {
          const state = states.get(stateKey(tenantId, id));
          if (state) out.push(clone(state));
        }
        return out;
      },
      complianceStateChanges: async (tenantId, since) => {
        const cursor = String(this.#stateRevision);
        if (since === undefined) return { cursor, serverIds: [] };
        const from = Number(since);
        const serverIds: string[] = [];
        for (const [id, revision] of this.#stateChanges.get(tenantId) ?? []) {
          if (!(revision <= from)) serverIds.push(id);
        }
        return { cursor, serverIds };
      },
      async listComplianceStates(tenantId, { after, limit }) {
        const prefix = stateKey(tenantId, '');
        const out: ComplianceState[] = [];
        for (const [k, state] of states) {
          if (!k.startsWith(prefix) || !state.server) continue;
          if (after !== undefined && state.serverId <= after) continue;
          out.push(state);
        }
        out.sort((a, b) => (a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0));
        return out.slice(0, limit).map(clone);
      },
      async auditList(tenantId, query) {
        const chain = audit.get(tenantId) ?? [];
        // Memory keeps no columns apart from the record: they are the record's own values.
        return chain
          .filter((r) => matchesAuditQuery(r, query))
          .slice(0, query.limit)
          .map((r) => ({ columns: auditColumnsOf(r), record: clone(r) }));
      },
    };
  }
}

export interface MemoryStoreOptions {
  clock?: Clock;
}

/** A store that lives in this process only. The reference implementation; also handy in tests. */
export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const clock = options.clock ?? systemClock;
  return createStore(new MemoryBackend(clock), { clock });
}
