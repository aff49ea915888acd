/**
 * Work a request starts and does not wait for (a patch run, a script run, a key rotation that
 * outlasted its answer), tracked so that a server shutting down can abort it and wait until it has
 * recorded how far it got.
 */
export class BackgroundRuns {
  readonly #controller = new AbortController();
  readonly #running = new Set<Promise<unknown>>();
  readonly #onError: (error: unknown, what: string) => void;

  /**
   * Made by `createFleetwardApi`, one per app (the package exports the type only).
   *
   * @param onError gets what a run throws after its request was answered, and what the run was.
   * @param signal aborts every run, present and future, when it aborts.
   * @internal
   */
  constructor(onError: (error: unknown, what: string) => void, signal?: AbortSignal) {
    this.#onError = onError;
    if (signal?.aborted) this.#controller.abort(signal.reason);
    else signal?.addEventListener('abort', () => this.#controller.abort(signal.reason), { once: true });
  }

  /** Aborts when the runs are shut down. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Tracks `run`; its failure goes to `onError` unless `handled` says the caller saw it.
   * @param what names the run for `onError`, e.g. `script run 4f1c…`.
   */
  track<T>(run: Promise<T>, handled: () => boolean, what = 'patch run'): Promise<T> {
    const tracked = run.catch((error: unknown) => {
      if (!handled()) this.#onError(error, what);
      throw error;
    });
    const settled = tracked.then(
      () => undefined,
      () => undefined,
    );
    this.#running.add(settled);
    void settled.then(() => this.#running.delete(settled));
    return tracked;
  }

  /** Aborts every run and resolves when all have settled. */
  async shutdown(): Promise<void> {
    this.#controller.abort(new Error('the HTTP API is shutting down'));
    while (this.#running.size) await Promise.all([...this.#running]);
  }
}
