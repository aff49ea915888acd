/**
 * Gives each per-server task of an operation an abort signal of its own, every one aborted when the
 * operation's signal aborts, with a single listener on the operation's signal however many tasks
 * run or have run.
 *
 * Why: an adapter listens on the signal it is given for the length of its call. Handed the
 * operation's signal itself, 50 servers at a time put 50 listeners on one signal (Node warns with
 * `MaxListenersExceededWarning` past 10), and an adapter that forgets one listener leaks one per
 * server for the whole run. A task's own signal is dropped when the task settles, together with
 * anything an adapter left on it.
 */
export class AbortFanout {
  readonly #parent: AbortSignal | undefined;
  readonly #live = new Set<AbortController>();
  readonly #onAbort = () => {
    for (const controller of this.#live) controller.abort(this.#parent?.reason);
  };

  /** @param parent The operation's signal; without one, tasks get signals that never abort. */
  constructor(parent: AbortSignal | undefined) {
    this.#parent = parent;
    if (parent && !parent.aborted) parent.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Tasks running now (whose signals the parent would abort). */
  get active(): number {
    return this.#live.size;
  }

  /**
   * Runs `task` with a signal of its own, already aborted when the parent is; the signal is let go
   * when the task settles, whichever way.
   */
  async run<T>(task: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    if (this.#parent?.aborted) controller.abort(this.#parent.reason);
    else this.#live.add(controller);
    try {
      return await task(controller.signal);
    } finally {
      this.#live.delete(controller);
    }
  }

  /** Removes the listener from the parent. Tasks started afterwards still see an aborted parent. */
  close(): void {
    this.#parent?.removeEventListener('abort', this.#onAbort);
  }
}
