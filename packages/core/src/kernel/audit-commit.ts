import { AsyncResource } from 'node:async_hooks';
import type { AuditInput, AuditRecord } from '../domain/index.js';
import type { Store } from '../ports/store.js';

/** Records appended in one transaction at most; more wait for the next one. */
const MAX_BATCH = 500;

interface Waiting {
  input: AuditInput;
  resolve: (record: AuditRecord) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit of the audit records written outside a transaction (a read's record, a denial, a
 * failure): each caller still waits until its own record is committed, but the records of
 * concurrent callers share one transaction, so one durable commit (one fsync on SQLite, one round
 * trip on PostgreSQL) serves many of them. No timer: a batch is taken one turn of the event loop
 * after the first record of it arrived (so that the I/O already waiting joins it), and the records
 * arriving while it commits go together in the next.
 *
 * Records are appended in the order they arrived (per tenant, `AuditLog.appendMany`). If a batch
 * fails as a whole, its records are appended one by one, so that one bad record fails only its own
 * caller.
 */
export class AuditGroupCommit {
  readonly #store: Store;
  readonly #pending: Waiting[] = [];
  #flushing = false;
  /**
   * The flush, bound to the async context the committer was made in: it runs for every caller of
   * the batch, so it must not inherit the context of the one that started it (a transaction's).
   */
  readonly #startFlush: () => Promise<void>;

  constructor(store: Store) {
    this.#store = store;
    this.#startFlush = AsyncResource.bind(() => this.#flush());
  }

  append(input: AuditInput): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#pending.push({ input, resolve, reject });
      if (!this.#flushing) void this.#startFlush();
    });
  }

  /** Resolves once every record appended so far is committed (or has failed). */
  async drain(): Promise<void> {
    while (this.#flushing || this.#pending.length)
      await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#pending.length) {
        // One turn of the event loop first: a synchronous store (SQLite) blocks the loop while it
        // commits, so the requests that arrived meanwhile are read only now; their records then
        // join this batch instead of each waiting for a commit of its own.
        await new Promise<void>((resolve) => setImmediate(resolve));
        const batch = this.#pending.splice(0, MAX_BATCH);
        if (batch.length === 1) {
          const [only] = batch;
          await this.#store.audit.append(only!.input).then(only!.resolve, only!.reject);
          continue;
        }
        const byTenant = new Map<string, Waiting[]>();
        for (const waiting of batch) {
          const list = byTenant.get(waiting.input.tenantId);
          if (list) list.push(waiting);
          else byTenant.set(waiting.input.tenantId, [waiting]);
        }
        let records: AuditRecord[][];
        try {
          records = await this.#store.transaction(async (tx) => {
            const out: AuditRecord[][] = [];
            for (const list of byTenant.values())
              out.push(await tx.audit.appendMany(list.map((w) => w.input)));
            return out;
          });
        } catch {
          for (const waiting of batch) {
            await this.#store.audit.append(waiting.input).then(waiting.resolve, waiting.reject);
          }
          continue;
        }
        let i = 0;
        for (const list of byTenant.values()) {
          const appended = records[i++]!;
          for (const [j, waiting] of list.entries()) waiting.resolve(appended[j]!);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }
}
