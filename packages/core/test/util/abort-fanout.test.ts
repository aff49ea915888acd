import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { AbortFanout } from '../../src/util/abort-fanout.js';

/** A task that holds its signal until `release` is called, listening on it as an adapter does. */
function held() {
  let release!: () => void;
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  const seen: AbortSignal[] = [];
  const task = async (signal: AbortSignal) => {
    seen.push(signal);
    const onAbort = () => undefined;
    signal.addEventListener('abort', onAbort, { once: true });
    await done;
    signal.removeEventListener('abort', onAbort);
    return signal;
  };
  return { task, release, seen };
}

describe('AbortFanout', () => {
  it('run — 200 tasks at once put one listener on the parent and each gets a signal of its own', async () => {
    const parent = new AbortController();
    const fanout = new AbortFanout(parent.signal);
    const { task, release, seen } = held();
    const running = Array.from({ length: 200 }, () => fanout.run(task));
    await Promise.resolve();
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(1);
    expect(fanout.active).toBe(200);
    expect(new Set(seen).size).toBe(200);
    for (const signal of seen) expect(getEventListeners(signal, 'abort')).toHaveLength(1);
    release();
    await Promise.all(running);
    expect(fanout.active).toBe(0);
    fanout.close();
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
  });

  it('run — aborting the parent aborts every running task with its reason, not the finished ones', async () => {
    const parent = new AbortController();
    const fanout = new AbortFanout(parent.signal);
    const finished = await fanout.run(async (signal) => signal);
    const { task, seen } = held();
    void fanout.run(task);
    void fanout.run(task);
    await Promise.resolve();
    const reason = new Error('stop');
    parent.abort(reason);
    expect(seen.map((s) => s.aborted)).toEqual([true, true]);
    expect(seen[0]!.reason).toBe(reason);
    expect(finished.aborted).toBe(false);
  });

  it('run — a task started after the parent aborted gets an aborted signal', async () => {
    const parent = new AbortController();
    const fanout = new AbortFanout(parent.signal);
    parent.abort();
    const signal = await fanout.run(async (s) => s);
    expect(signal.aborted).toBe(true);
    expect(fanout.active).toBe(0);
  });

  it('run — a task that throws is released too', async () => {
    const fanout = new AbortFanout(new AbortController().signal);
    await expect(
      fanout.run(async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(fanout.active).toBe(0);
  });

  it('run — without a parent, tasks get signals that are not aborted', async () => {
    const fanout = new AbortFanout(undefined);
    const signal = await fanout.run(async (s) => s);
    expect(signal.aborted).toBe(false);
    fanout.close();
  });
});
