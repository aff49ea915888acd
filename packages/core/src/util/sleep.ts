import { AbortedError } from '../errors.js';

/**
 * Waits `ms` milliseconds, or rejects with `AbortedError` (carrying `message`) as soon as `signal`
 * aborts, also when it already has. The timer and the abort listener are both released either way,
 * so a long wait neither keeps the process alive past an abort nor leaks a listener per call.
 */
export function sleep(ms: number, signal?: AbortSignal, message?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(message));
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(new AbortedError(message));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
