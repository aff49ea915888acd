import type { SessionInternals } from '../fleet/fleet.js';
import type { Lease } from '../ports/store.js';

/**
 * A run's lease, renewed every third of its TTL while the run goes on, and a watch for a
 * cancellation requested through the store (by another process or call).
 */
export class RunLease {
  #lease: Lease | undefined;
  readonly #ctx: SessionInternals;
  readonly #timers: NodeJS.Timeout[] = [];

  private constructor(ctx: SessionInternals, lease: Lease) {
    this.#ctx = ctx;
    this.#lease = lease;
  }

  /** Takes the lease `name`, or resolves `undefined` while another holder has it. */
  static async acquire(
    ctx: SessionInternals,
    name: string,
    holder: string,
    ttlMs: number,
  ): Promise<RunLease | undefined> {
    const lease = await ctx.fleet.store.leases.acquire(name, holder, ttlMs);
    if (!lease) return undefined;
    const kept = new RunLease(ctx, lease);
    const renew = setInterval(() => {
      if (!kept.#lease) return;
      ctx.fleet.store.leases.renew(kept.#lease, ttlMs).then(
        (l) => {
          kept.#lease = l;
        },
        () => {
          kept.#lease = undefined;
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

  async release(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#lease) await this.#ctx.fleet.store.leases.release(this.#lease).catch(() => undefined);
    this.#lease = undefined;
  }
}
