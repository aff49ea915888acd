import {
  executeRollout,
  type KnownServerState,
  planWaves,
  RolloutSchema,
  type Server,
  type ServerOutcome,
  stopConditionFor,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const server = (id: string, labels: Record<string, string> = {}): Server => ({
  tenantId: 't',
  id,
  version: 1,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  accountId: 'a',
  provider: 'local',
  name: id,
  labels,
});

const ids = (n: number) => Array.from({ length: n }, (_, i) => `s${String(i + 1).padStart(2, '0')}`);

/** A rollout over `n` servers where `broken` fail; records the order servers ran in. */
async function roll(
  n: number,
  broken: ReadonlySet<string>,
  rollout: Parameters<typeof RolloutSchema.parse>[0],
  extra: Partial<Parameters<typeof executeRollout>[0]> = {},
) {
  const policy = RolloutSchema.parse(rollout);
  const all = ids(n);
  const waves = planWaves(
    policy.waves,
    all.map((id) => server(id)),
  );
  const ran: string[] = [];
  let running = 0;
  let peak = 0;
  const outcome = await executeRollout({
    waves,
    stopCondition: stopConditionFor(policy, n),
    maxConcurrency: policy.maxConcurrency,
    states: new Map(all.map((id) => [id, { state: 'pending' } as KnownServerState])),
    runServer: async (id): Promise<ServerOutcome> => {
      running++;
      peak = Math.max(peak, running);
      ran.push(id);
      await new Promise((r) => setTimeout(r, 2));
      running--;
      return broken.has(id)
        ? { state: 'failed', countsAgainstBudget: true }
        : { state: 'succeeded', countsAgainstBudget: false };
    },
    ...extra,
  });
  return { outcome, ran, peak };
}

describe('planWaves', () => {
  it('planWaves — each server in the first wave whose selector matches, the rest in "remaining", by id', () => {
    const servers = [
      server('c', { tier: 'web' }),
      server('a', { canary: 'yes' }),
      server('b', { tier: 'web' }),
    ];
    const waves = planWaves(
      [
        { name: 'canary', selector: { labels: { canary: 'yes' } } },
        { name: 'web', selector: { labels: { tier: 'web' } } },
        { name: 'empty', selector: { labels: { tier: 'db' } } },
      ],
      [...servers, server('d')],
    );
    expect(waves).toEqual([
      { name: 'canary', serverIds: ['a'] },
      { name: 'web', serverIds: ['b', 'c'] },
      { name: 'remaining', serverIds: ['d'] },
    ]);
    expect(planWaves([], servers)).toEqual([{ name: 'all', serverIds: ['a', 'b', 'c'] }]);
  });
});

describe('stopConditionFor', () => {
  it('stopConditionFor — a percentage is rounded down over the targets, and the sentence says what happens', () => {
    const condition = stopConditionFor(
      RolloutSchema.parse({ errorBudget: { percent: 20 }, maxConcurrency: 1 }),
      14,
    );
    expect(condition.maxFailures).toBe(2);
    expect(condition.description).toContain('once more than 2 of 14 servers have failed');
    expect(condition.description).toContain('error budget 20% of 14 = 2');
    expect(condition.description).toContain('reported as not started');
  });

  it('stopConditionFor — with concurrency it says how many may fail in the worst case', () => {
    const condition = stopConditionFor(
      RolloutSchema.parse({ errorBudget: { count: 2 }, maxConcurrency: 4, unreachableCountsAsError: false }),
      10,
    );
    expect(condition.description).toContain('up to 4 servers run at once');
    expect(condition.description).toContain('up to 6 servers may fail');
    expect(condition.description).toContain('do not count against the budget');
  });
});

describe('executeRollout', () => {
  it('executeRollout — budget 2, three broken servers, one at a time: stops at the third failure, the rest untouched', async () => {
    const broken = new Set(['s02', 's04', 's06']);
    const { outcome, ran } = await roll(10, broken, { errorBudget: { count: 2 }, maxConcurrency: 1 });
    expect(ran).toEqual(['s01', 's02', 's03', 's04', 's05', 's06']);
    expect(outcome.status).toBe('stopped');
    expect(outcome.untouched).toEqual(['s07', 's08', 's09', 's10']);
    expect(outcome.reason).toBe(
      'error budget spent (3 failed servers counted, at most 2 allowed); 4 server(s) not started',
    );
    expect(outcome.counts).toEqual({ succeeded: 3, failed: 3, cancelled: 0, untouched: 4 });
  });

  it('executeRollout — failures within the budget end as partial; none as succeeded; all failed as failed', async () => {
    expect((await roll(4, new Set(['s01']), { errorBudget: { count: 1 } })).outcome.status).toBe('partial');
    expect((await roll(4, new Set(), {})).outcome.status).toBe('succeeded');
    expect((await roll(2, new Set(['s01', 's02']), { errorBudget: { count: 5 } })).outcome.status).toBe(
      'failed',
    );
  });

  it('executeRollout — never more servers at once than maxConcurrency', async () => {
    const { peak, ran } = await roll(12, new Set(), { maxConcurrency: 3 });
    expect(peak).toBe(3);
    expect(ran).toHaveLength(12);
  });

  it('executeRollout — waves run one after the other: a spent budget in the first leaves the second untouched', async () => {
    const policy = {
      errorBudget: { count: 0 },
      waves: [{ name: 'canary', selector: { ids: ['s01', 's02'] } }],
    };
    const { outcome, ran } = await roll(5, new Set(['s01']), policy);
    expect(ran.sort()).toEqual(['s01', 's02']);
    expect(outcome.untouched).toEqual(['s03', 's04', 's05']);
  });

  it('executeRollout — a failure that does not count (unreachable) leaves the budget intact', async () => {
    const outcome = await executeRollout({
      waves: [{ name: 'all', serverIds: ['a', 'b'] }],
      stopCondition: stopConditionFor(RolloutSchema.parse({ unreachableCountsAsError: false }), 2),
      maxConcurrency: 1,
      states: new Map(),
      runServer: async (id) =>
        id === 'a'
          ? { state: 'failed', countsAgainstBudget: false }
          : { state: 'succeeded', countsAgainstBudget: false },
    });
    expect(outcome).toMatchObject({ status: 'partial', failures: 0, untouched: [] });
  });

  it('executeRollout — pause keeps the untouched servers pending; a resume that acknowledges the failures runs them', async () => {
    const policy = RolloutSchema.parse({ onBudgetSpent: 'pause', maxConcurrency: 1 });
    const stopCondition = stopConditionFor(policy, 3);
    const waves = [{ name: 'all', serverIds: ['a', 'b', 'c'] }];
    const first = await executeRollout({
      waves,
      stopCondition,
      maxConcurrency: 1,
      states: new Map(),
      runServer: async (id) =>
        id === 'a'
          ? { state: 'failed', countsAgainstBudget: true }
          : { state: 'succeeded', countsAgainstBudget: false },
    });
    expect(first.status).toBe('paused');
    expect(first.untouched).toEqual(['b', 'c']);
    const states = new Map<string, KnownServerState>([
      ['a', { state: 'failed', countsAgainstBudget: true }],
      ['b', { state: 'pending' }],
      ['c', { state: 'pending' }],
    ]);
    const ran: string[] = [];
    const runServer = async (id: string): Promise<ServerOutcome> => {
      ran.push(id);
      return { state: 'succeeded', countsAgainstBudget: false };
    };
    const unacknowledged = await executeRollout({
      waves,
      stopCondition,
      maxConcurrency: 1,
      states,
      runServer,
    });
    expect(unacknowledged.status).toBe('paused');
    expect(ran).toEqual([]);
    const resumed = await executeRollout({
      waves,
      stopCondition,
      maxConcurrency: 1,
      states,
      runServer,
      acknowledgeFailures: true,
    });
    expect(ran).toEqual(['b', 'c']);
    expect(resumed).toMatchObject({ status: 'partial', untouched: [] });
  });

  it('executeRollout — servers past pending are never started again', async () => {
    const ran: string[] = [];
    await executeRollout({
      waves: [{ name: 'all', serverIds: ['a', 'b', 'c'] }],
      stopCondition: stopConditionFor(RolloutSchema.parse({ errorBudget: { count: 5 } }), 3),
      maxConcurrency: 2,
      states: new Map<string, KnownServerState>([
        ['a', { state: 'succeeded' }],
        ['b', { state: 'failed' }],
      ]),
      runServer: async (id) => {
        ran.push(id);
        return { state: 'succeeded', countsAgainstBudget: false };
      },
    });
    expect(ran).toEqual(['c']);
  });

  it('executeRollout — a cancelled signal starts nothing more; a stop reason from checkStop or a server ends it as stopped', async () => {
    const controller = new AbortController();
    const cancelled = await roll(
      5,
      new Set(),
      { maxConcurrency: 1 },
      {
        signal: controller.signal,
        runServer: async () => {
          controller.abort();
          return { state: 'succeeded', countsAgainstBudget: false };
        },
      },
    );
    expect(cancelled.outcome).toMatchObject({ status: 'cancelled', untouched: ['s02', 's03', 's04', 's05'] });

    let checks = 0;
    const lost = await roll(
      4,
      new Set(),
      { maxConcurrency: 1 },
      {
        checkStop: () => (++checks > 2 ? 'this process lost the run’s lease' : undefined),
      },
    );
    expect(lost.outcome).toMatchObject({ status: 'stopped', untouched: ['s03', 's04'] });
    expect(lost.outcome.reason).toBe('this process lost the run’s lease; 2 server(s) not started');

    const hostKey = await roll(
      3,
      new Set(),
      { maxConcurrency: 1, errorBudget: { count: 9 } },
      {
        runServer: async () => ({
          state: 'failed',
          countsAgainstBudget: true,
          stopRollout: 'the host key of s01 changed',
        }),
      },
    );
    expect(hostKey.outcome).toMatchObject({ status: 'stopped', untouched: ['s02', 's03'] });
  });
});

describe('executeRollout failures', () => {
  it('executeRollout — when runServer throws, nothing more starts, the running servers finish, then the error is rethrown', async () => {
    const finished: string[] = [];
    const started: string[] = [];
    // b is still running when a throws, and finishes only after the rollout has seen the error:
    // setImmediate runs after every pending promise reaction, the rollout's included.
    let release = () => {};
    const aHasThrown = new Promise<void>((resolve) => {
      release = resolve;
    });
    const error = await executeRollout({
      waves: [{ name: 'all', serverIds: ['a', 'b', 'c', 'd'] }],
      stopCondition: stopConditionFor(RolloutSchema.parse({}), 4),
      maxConcurrency: 2,
      states: new Map(),
      runServer: async (id) => {
        started.push(id);
        if (id === 'a') {
          setImmediate(release);
          throw new Error('the store is gone');
        }
        await aHasThrown;
        finished.push(id);
        return { state: 'succeeded', countsAgainstBudget: false };
      },
    }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('the store is gone');
    expect(started).toEqual(['a', 'b']);
    expect(finished).toEqual(['b']);
  });
});
