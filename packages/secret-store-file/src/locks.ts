/** Runs tasks with the same key one at a time, in call order. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `task` once every earlier task under `key` has settled. */
  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const tail = previous.then(() => new Promise<void>((done) => (release = done)));
    this.#tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/** Many shared holders or one exclusive holder; a waiting exclusive holder keeps new shared ones out. */
export class SharedExclusiveLock {
  #shared = 0;
  #exclusive: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  /** Runs `task` beside other shared holders, once no exclusive holder runs or waits. */
  async shared<T>(task: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    this.#shared++;
    try {
      return await task();
    } finally {
      this.#shared--;
      if (this.#shared === 0) this.#drained?.();
    }
  }

  /** Runs `task` alone, once the shared holders in flight have finished. */
  async exclusive<T>(task: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    let release!: () => void;
    this.#exclusive = new Promise<void>((done) => (release = done));
    try {
      if (this.#shared > 0) await new Promise<void>((done) => (this.#drained = done));
      this.#drained = undefined;
      return await task();
    } finally {
      this.#exclusive = undefined;
      release();
    }
  }
}
