/**
 * Calls `tick` now and then every `intervalMs` after the previous call settled, so calls never
 * overlap, until `stop()`. Failures go to `onError` and never end the loop.
 */
export class Ticker {
  readonly #tick: () => Promise<unknown>;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(tick: () => Promise<unknown>, onError: (error: unknown) => void) {
    this.#tick = tick;
    this.#onError = onError;
  }

  get started(): boolean {
    return this.#timer !== undefined;
  }

  start(intervalMs: number): void {
    if (this.#timer) return;
    const loop = () => {
      this.#running = this.#tick()
        .catch((error: unknown) => this.#onError(error))
        .finally(() => {
          if (this.#timer) this.#timer = setTimeout(loop, intervalMs);
        });
    };
    this.#timer = setTimeout(loop, 0);
  }

  /** Stops ticking and waits for a tick in progress. */
  async stop(): Promise<void> {
    const timer = this.#timer;
    this.#timer = undefined;
    if (timer) clearTimeout(timer);
    await this.#running;
  }
}
