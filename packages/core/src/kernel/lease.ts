import type { Lease, Store } from '../ports/store.js';
import { RedactingLogger } from './log.js';

/**
 * A run's lease, renewed every third of its TTL while the run goes on, and a watch for a
 * cancellation requested through the store (by another process or call). Every long-running
 * workflow (patch runs, script runs, runbook runs) holds one, so that only one process executes a
 * run and a crashed holder's run can be resumed once its lease expired.
 */
export class RunLease {
  #lease: Lease | undefined;
  readonly #store: Pick<Store, 'leases'>;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #log: RedactingLogger;

  private constructor(store: Pick<Store, 'leases'>, lease: Lease, log: RedactingLogger) {
    this.#store = store;
    this.#lease = lease;
    this.#log = log.child({ lease: lease.name, holder: lease.holder });
  }

  /**
   * Takes the lease `name`, or resolves `undefined` while another holder has it.
   * @param log Where a lost lease and a takeover are reported. @default nowhere
   */
  static async acquire(
    store: Pick<Store, 'leases'>,
    name: string,
    holder: string,
    ttlMs: number,
    log: RedactingLogger = new RedactingLogger(),
  ): Promise<RunLease | undefined> {
    const lease = await store.leases.acquire(name, holder, ttlMs);
    if (!lease) return undefined;
    const kept = new RunLease(store, lease, log);
    const renew = setInterval(() => {
      if (!kept.#lease) return;
      store.leases.renew(kept.#lease, ttlMs).then(
        (l) => {
          kept.#lease = l;
        },
        (error: unknown) => {
          if (!kept.#lease) return;
          kept.#lease = undefined;
          kept.#log.warn({ err: error }, 'run lease lost: this process starts no further server of the run');
        },
      );
    }, ttlMs / 3);
    renew.unref();
    kept.#timers.push(renew);
    return kept;
  }

  /** False once a renewal failed: another process may have taken the run over. */
  get held(): boolean {
    return this.#lease !== undefined;
  }

  /**
   * Tells the operator (warn) that this process took over a run left unfinished by a holder that
   * stopped renewing its lease: the process died, hung or lost its store. The caller knows that
   * from the run's state (still `running` when the lease was free); `fields` name the run.
   */
  reportTakeover(fields: Record<string, unknown>): void {
    this.#log.warn(
      { ...fields, ...(this.#lease ? { token: this.#lease.token } : {}) },
      'run taken over from a process that stopped renewing its lease',
    );
  }

  /** Calls `cancel` once `requested()` says a cancellation was asked for (checked every `everyMs`). */
  watchCancel(requested: () => Promise<boolean>, everyMs: number, cancel: () => void): void {
    const poll = setInterval(() => {
      requested().then(
        (yes) => {
          if (yes) cancel();
        },
        () => undefined,
      );
    }, everyMs);
    poll.unref();
    this.#timers.push(poll);
  }

  /** Stops renewing and watching, and gives the lease back (a failure to give it back is ignored: it expires). */
  async release(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#lease) await this.#store.leases.release(this.#lease).catch(() => undefined);
    this.#lease = undefined;
  }
}
