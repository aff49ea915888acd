/**
 * Progress of long operations, for a person at a terminal: one line per step on standard error.
 * Silent when standard error is not a terminal or the output is JSON, so that logs and pipes get
 * only results.
 */
export interface Progress {
  /** Whether lines are shown at all. */
  readonly enabled: boolean;
  /** A line of progress (`[3/10] ok web-1`). */
  line(text: string): void;
  /**
   * Shows `text` with the time left until `until`, refreshed every `everyMs`, until the returned
   * function is called. For waits: a maintenance window, a rate limit.
   */
  waitingUntil(text: string, until: Date, now: () => Date, everyMs?: number): () => void;
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** Progress written through `write` when `enabled`. */
export function createProgress(write: (text: string) => void, enabled: boolean): Progress {
  return {
    enabled,
    line: (text) => {
      if (enabled) write(`${text}\n`);
    },
    waitingUntil: (text, until, now, everyMs = 60_000) => {
      if (!enabled) return () => {};
      const show = () =>
        write(`${text}: opens ${until.toISOString()} (in ${duration(until.getTime() - now().getTime())})\n`);
      show();
      const timer = setInterval(show, everyMs);
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
