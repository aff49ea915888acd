import {
  ConflictError,
  type RolloutRef,
  type RolloutServerOutcome,
  type RolloutSubmission,
  type RolloutSubmitted,
  type RolloutTally,
  ValidationError,
  type WaveStart,
} from '@fleetward/core';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import { quoteIdent } from './schema.js';

/** The pg-boss queue of per-server tasks. */
export const TASK_QUEUE = 'fleetward-tasks';
/** The pg-boss queue of rollout ends (recording a run's end once its last server finished). */
export const END_QUEUE = 'fleetward-ends';

/** A task job's data: which server of which rollout. */
export interface TaskJobData {
  rollout: string;
  server: string;
}

/** An end job's data. */
export interface EndJobData {
  rollout: string;
  generation: number;
}

/** How jobs are retried and expire on the queue. */
export interface JobPolicy {
  /** Attempts after a failed one (the store was down, say); a lost worker's tasks are taken over, not retried. */
  retryLimit: number;
  retryDelaySeconds: number;
  /** A job active this long is given up by pg-boss (a backstop: the heartbeat takes over sooner). */
  expireInSeconds: number;
}

interface RolloutRow {
  id: string;
  kind: RolloutRef['kind'];
  tenant_id: string;
  run_id: string;
  generation: number;
  wave: number;
  wave_count: number;
  max_concurrency: number;
  max_failures: number;
  on_budget_spent: 'stop' | 'pause';
  failures: number;
  in_flight: number;
  status: 'active' | 'ending' | 'ended';
  stop_reason: string | null;
  cancelled: boolean;
  /** Servers of the current wave wait for room under a tenant or account cap. */
  blocked: boolean;
  /** The last wave whose start was announced (-1: none yet). */
  wave_announced: number;
}

/** A wave a pump started, for the workflow to announce. */
export interface WaveAnnouncement {
  ref: RolloutRef;
  start: WaveStart;
}

/**
 * A cap on servers in flight (queued or running) over all runs on the queue: a tenant's, or one
 * account's of a tenant. `*` as `tenantId` is the default of every tenant without a cap of its own;
 * `*` as `accountId` the default of every account (of the tenant, or of every tenant).
 */
export interface QueueLimit {
  tenantId: string;
  /** The account (`Server.accountId`) the cap is on; without it, the cap is on the whole tenant. */
  accountId?: string;
  maxInFlight: number;
}

/** The caps that apply to one tenant's servers, resolved from the `limits` table. */
interface Caps {
  tenant?: number;
  accounts: Map<string, number>;
  accountDefault?: number;
}

/** Advisory lock class of the caps: every pump of a capped tenant holds it (with the tenant's hash). */
const CAPS_LOCK = 0x666c_7478;
/** "No cap" in SQL comparisons. */
const UNCAPPED = 2_147_483_647;

/** Where a rollout stands on the queue, for tools and tests. */
export interface RolloutState {
  id: string;
  status: 'active' | 'ending' | 'ended';
  /** Index of the wave being started. */
  wave: number;
  /** Servers queued or running now. */
  inFlight: number;
  /** Failures counted against the budget. */
  failures: number;
  cancelled: boolean;
  stopReason?: string;
  /** Servers by state: not started, on the queue, taken by a worker, counted. */
  servers: Record<'pending' | 'queued' | 'running' | 'done', number>;
}

/** One server's report to its rollout: the server and how it ended. */
export interface Completion {
  rollout: string;
  server: string;
  outcome: RolloutServerOutcome;
}

/** A task a worker took from the queue and now owns. */
export interface ClaimedTask {
  jobId: string;
  rollout: string;
  server: string;
  ref: RolloutRef;
}

const MAX_SERVERS = 1_000_000;
/** The workflows workers carry out (`RolloutKind`). */
const ROLLOUT_KINDS = new Set<unknown>(['script', 'scan', 'patch'] satisfies RolloutRef['kind'][]);

/**
 * The rollout state machine on PostgreSQL, shared by every worker and every process that submits:
 * which servers are queued, when a wave is done, when the budget is spent, when a run has ended.
 * Every decision is taken in a transaction holding the rollout's row lock, and the jobs it puts on
 * the pg-boss queue are inserted in that same transaction, so a crash leaves either the decision
 * and its jobs or neither.
 */
export class Coordinator {
  readonly #pool: pg.Pool;
  readonly #q: string;
  readonly #boss: PgBoss;
  readonly #jobs: JobPolicy;

  constructor(pool: pg.Pool, schema: string, boss: PgBoss, jobs: JobPolicy) {
    this.#pool = pool;
    this.#q = quoteIdent(schema);
    this.#boss = boss;
    this.#jobs = jobs;
  }

  async #tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  #db(client: pg.PoolClient): PgBoss.Db {
    return { executeSql: (text, values) => client.query(text, values) };
  }

  /** See `RolloutQueue.submit`. */
  async submit(submission: RolloutSubmission): Promise<RolloutSubmitted> {
    const s = checkSubmission(submission);
    const announced: WaveAnnouncement[] = [];
    await this.#tx(async (client) => {
      const existing = await client.query<RolloutRow>(
        `SELECT * FROM ${this.#q}.rollouts WHERE kind = $1 AND tenant_id = $2 AND run_id = $3 FOR UPDATE`,
        [s.kind, s.tenantId, s.runId],
      );
      const row = existing.rows[0];
      if (row && row.status !== 'ended') return; // already handed over and not ended: nothing to do
      announced.length = 0;
      const done = Object.entries(s.states).filter(([, st]) => st.state !== 'pending');
      const failures = s.acknowledgeFailures
        ? 0
        : done.filter(([, st]) => countsAsFailure(st.state) && st.countsAgainstBudget !== false).length;
      const values = [s.jobId, s.waves.length, s.maxConcurrency, s.maxFailures, s.onBudgetSpent, failures];
      let rollout: RolloutRow;
      if (row) {
        await client.query(`DELETE FROM ${this.#q}.rollout_servers WHERE rollout_id = $1`, [row.id]);
        rollout = (
          await client.query<RolloutRow>(
            `UPDATE ${this.#q}.rollouts SET job_id = $2, wave_count = $3, max_concurrency = $4,
               max_failures = $5, on_budget_spent = $6, failures = $7, generation = generation + 1,
               wave = 0, in_flight = 0, status = 'active', stop_reason = NULL, cancelled = false,
               blocked = false, wave_announced = -1, updated_at = now()
             WHERE id = $1 RETURNING *`,
            [row.id, ...values],
          )
        ).rows[0]!;
      } else {
        rollout = (
          await client.query<RolloutRow>(
            `INSERT INTO ${this.#q}.rollouts (kind, tenant_id, run_id, job_id, wave_count,
               max_concurrency, max_failures, on_budget_spent, failures, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active') RETURNING *`,
            [s.kind, s.tenantId, s.runId, ...values],
          )
        ).rows[0]!;
      }
      const ids: string[] = [];
      const waves: number[] = [];
      const positions: number[] = [];
      const states: string[] = [];
      const outcomes: (string | null)[] = [];
      const counts: boolean[] = [];
      const accounts: (string | null)[] = [];
      for (const [w, wave] of s.waves.entries()) {
        for (const [p, serverId] of wave.serverIds.entries()) {
          const st = s.states[serverId] ?? { state: 'pending' };
          accounts.push(s.accounts?.[serverId] ?? null);
          ids.push(serverId);
          waves.push(w);
          positions.push(p);
          states.push(st.state === 'pending' ? 'pending' : 'done');
          outcomes.push(st.state === 'pending' ? null : outcomeOf(st.state));
          counts.push(countsAsFailure(st.state) && st.countsAgainstBudget !== false);
        }
      }
      await client.query(
        `INSERT INTO ${this.#q}.rollout_servers (rollout_id, server_id, wave, position, state, outcome, counts,
           account_id)
         SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::bool[], $8::text[])`,
        [rollout.id, ids, waves, positions, states, outcomes, counts, accounts],
      );
      await this.#pump(client, rollout, announced);
    });
    return { wavesStarted: announced.map((a) => a.start) };
  }

  /** See `RolloutQueue.isActive`. */
  async isActive(ref: RolloutRef): Promise<boolean> {
    const { rows } = await this.#pool.query<{ status: string }>(
      `SELECT status FROM ${this.#q}.rollouts WHERE kind = $1 AND tenant_id = $2 AND run_id = $3`,
      [ref.kind, ref.tenantId, ref.runId],
    );
    return rows[0] !== undefined && rows[0].status !== 'ended';
  }

  /**
   * Takes up to `max` task jobs off the queue for `workerId`, in one transaction: the jobs are
   * fetched (pg-boss marks them active) and their servers marked `running` by this worker. A job
   * whose server is no longer `queued` (a duplicate after a takeover) is completed at once, doing
   * nothing.
   */
  async claim(workerId: string, max: number): Promise<ClaimedTask[]> {
    return this.#tx(async (client) => {
      const jobs = await this.#boss.fetch<TaskJobData>(TASK_QUEUE, { batchSize: max, db: this.#db(client) });
      if (jobs.length === 0) return [];
      const { rows } = await client.query<{
        rollout_id: string;
        server_id: string;
        kind: RolloutRef['kind'];
        tenant_id: string;
        run_id: string;
      }>(
        `UPDATE ${this.#q}.rollout_servers s SET state = 'running', worker_id = $1
         FROM unnest($2::bigint[], $3::text[]) AS j (rollout_id, server_id), ${this.#q}.rollouts r
         WHERE s.rollout_id = j.rollout_id AND s.server_id = j.server_id AND s.state = 'queued'
           AND r.id = s.rollout_id
         RETURNING s.rollout_id, s.server_id, r.kind, r.tenant_id, r.run_id`,
        [workerId, jobs.map((j) => j.data.rollout), jobs.map((j) => j.data.server)],
      );
      const claimed = new Map(rows.map((r) => [`${r.rollout_id}\u0000${r.server_id}`, r]));
      const tasks: ClaimedTask[] = [];
      const duplicates: string[] = [];
      for (const job of jobs) {
        const key = `${job.data.rollout}\u0000${job.data.server}`;
        const row = claimed.get(key);
        if (!row) {
          duplicates.push(job.id);
          continue;
        }
        claimed.delete(key); // a second job for the same server in this batch is a duplicate too
        tasks.push({
          jobId: job.id,
          rollout: String(row.rollout_id),
          server: row.server_id,
          ref: { kind: row.kind, tenantId: row.tenant_id, runId: row.run_id },
        });
      }
      if (duplicates.length) await this.#boss.complete(TASK_QUEUE, duplicates, { db: this.#db(client) });
      return tasks;
    });
  }

  /**
   * Counts finished servers into their rollouts and starts whatever may start next, in one
   * transaction per rollout; the task jobs `jobIds` are completed in the same transactions. A
   * server already counted (a duplicate report) changes nothing.
   */
  async complete(
    completions: readonly Completion[],
    jobIds: ReadonlyMap<string, string>,
    announced: WaveAnnouncement[] = [],
  ): Promise<void> {
    const byRollout = new Map<string, Completion[]>();
    for (const c of completions) {
      const list = byRollout.get(c.rollout) ?? [];
      list.push(c);
      byRollout.set(c.rollout, list);
    }
    const tenants = new Set<string>();
    for (const [rolloutId, list] of byRollout) {
      await this.#tx(async (client) => {
        const rollout = await this.#lock(client, rolloutId);
        tenants.add(rollout.tenant_id);
        const { rows } = await client.query<{ server_id: string }>(
          `UPDATE ${this.#q}.rollout_servers s SET state = 'done', outcome = c.outcome, counts = c.counts,
             worker_id = NULL
           FROM unnest($2::text[], $3::text[], $4::bool[]) AS c (server_id, outcome, counts)
           WHERE s.rollout_id = $1 AND s.server_id = c.server_id AND s.state IN ('queued', 'running')
           RETURNING s.server_id`,
          [
            rolloutId,
            list.map((c) => c.server),
            list.map((c) => c.outcome.state),
            list.map((c) => c.outcome.state === 'failed' && c.outcome.countsAgainstBudget),
          ],
        );
        const counted = new Set(rows.map((r) => r.server_id));
        for (const c of list) {
          if (!counted.has(c.server)) continue;
          rollout.in_flight--;
          if (c.outcome.state === 'failed' && c.outcome.countsAgainstBudget) rollout.failures++;
          if (c.outcome.stopRollout && rollout.stop_reason === null)
            rollout.stop_reason = c.outcome.stopRollout;
        }
        const ids = list
          .map((c) => jobIds.get(`${c.rollout}\u0000${c.server}`))
          .filter((id) => id !== undefined);
        if (ids.length) await this.#boss.complete(TASK_QUEUE, ids, { db: this.#db(client) });
        if (rollout.in_flight < 0) rollout.in_flight = 0;
        const waves: WaveAnnouncement[] = [];
        await this.#pump(client, rollout, waves);
        return waves;
      }).then((waves) => announced.push(...waves));
    }
    // Room freed under a cap goes to the runs of the same tenant waiting for it, oldest first.
    for (const tenantId of tenants) await this.#unblock(tenantId, announced);
  }

  /** Pumps the active rollouts of `tenantId` (every tenant for `*`) that wait for room under a cap. */
  async #unblock(tenantId: string, announced: WaveAnnouncement[] = []): Promise<void> {
    const { rows } = await this.#pool.query<{ id: string }>(
      `SELECT id FROM ${this.#q}.rollouts WHERE blocked AND status = 'active'
         AND ($1 = '*' OR tenant_id = $1) ORDER BY id`,
      [tenantId],
    );
    for (const { id } of rows) {
      const waves: WaveAnnouncement[] = [];
      await this.#tx(async (client) => {
        const rollout = await this.#lock(client, String(id));
        if (rollout.blocked && rollout.status === 'active') await this.#pump(client, rollout, waves);
      });
      announced.push(...waves);
    }
  }

  /** See `PostgresRolloutQueue.setLimit`. */
  async setLimit(
    limit: QueueLimit | (Omit<QueueLimit, 'maxInFlight'> & { maxInFlight: null }),
  ): Promise<void> {
    const account = limit.accountId ?? '';
    if (limit.maxInFlight === null) {
      await this.#pool.query(`DELETE FROM ${this.#q}.limits WHERE tenant_id = $1 AND account_id = $2`, [
        limit.tenantId,
        account,
      ]);
    } else {
      await this.#pool.query(
        `INSERT INTO ${this.#q}.limits (tenant_id, account_id, max_in_flight) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, account_id) DO UPDATE SET max_in_flight = $3, updated_at = now()`,
        [limit.tenantId, account, limit.maxInFlight],
      );
    }
    // A cap raised or removed lets waiting runs go on.
    await this.#unblock(limit.tenantId);
  }

  /** Every cap set, tenants' first. */
  async limits(): Promise<QueueLimit[]> {
    const { rows } = await this.#pool.query<{ tenant_id: string; account_id: string; max_in_flight: number }>(
      `SELECT tenant_id, account_id, max_in_flight FROM ${this.#q}.limits ORDER BY tenant_id, account_id`,
    );
    return rows.map((r) => ({
      tenantId: r.tenant_id,
      ...(r.account_id !== '' ? { accountId: r.account_id } : {}),
      maxInFlight: r.max_in_flight,
    }));
  }

  /** The caps on `tenantId`'s servers, or undefined when none applies. */
  async #caps(client: pg.PoolClient, tenantId: string): Promise<Caps | undefined> {
    const { rows } = await client.query<{ tenant_id: string; account_id: string; max_in_flight: number }>(
      `SELECT tenant_id, account_id, max_in_flight FROM ${this.#q}.limits WHERE tenant_id IN ($1, '*')`,
      [tenantId],
    );
    if (rows.length === 0) return undefined;
    const own = rows.filter((r) => r.tenant_id === tenantId);
    const star = rows.filter((r) => r.tenant_id === '*');
    const find = (list: typeof rows, account: string) =>
      list.find((r) => r.account_id === account)?.max_in_flight;
    const caps: Caps = { accounts: new Map() };
    const tenant = find(own, '') ?? find(star, '');
    if (tenant !== undefined) caps.tenant = tenant;
    const accountDefault = find(own, '*') ?? find(star, '*');
    if (accountDefault !== undefined) caps.accountDefault = accountDefault;
    for (const r of own)
      if (r.account_id !== '' && r.account_id !== '*') caps.accounts.set(r.account_id, r.max_in_flight);
    return caps;
  }

  /**
   * Moves up to `free` pending servers of the rollout's current wave to `queued`, in order, within
   * the tenant's and the accounts' caps: the servers in flight of every run of the tenant are counted
   * under the tenant's advisory lock (taken by `#pump`), so two runs never both take the last room.
   * A server whose account is full is passed over for a later one of another account.
   */
  async #pickWithinCaps(
    client: pg.PoolClient,
    rollout: RolloutRow,
    free: number,
    caps: Caps,
  ): Promise<Array<{ server_id: string; position: number }>> {
    const inFlight = await client.query<{ account_id: string | null; n: string }>(
      `SELECT s.account_id, count(*) AS n FROM ${this.#q}.rollout_servers s
         JOIN ${this.#q}.rollouts r ON r.id = s.rollout_id
       WHERE r.tenant_id = $1 AND r.status <> 'ended' AND s.state IN ('queued', 'running')
       GROUP BY s.account_id`,
      [rollout.tenant_id],
    );
    const total = inFlight.rows.reduce((sum, r) => sum + Number(r.n), 0);
    const room = Math.min(free, caps.tenant === undefined ? free : caps.tenant - total);
    if (room <= 0) return [];
    const capOf = (account: string) => caps.accounts.get(account) ?? caps.accountDefault ?? UNCAPPED;
    const rooms = new Map<string, number>();
    for (const [account, cap] of caps.accounts) rooms.set(account, cap);
    for (const r of inFlight.rows) {
      if (r.account_id !== null) rooms.set(r.account_id, capOf(r.account_id) - Number(r.n));
    }
    const { rows } = await client.query<{ server_id: string; position: number }>(
      `UPDATE ${this.#q}.rollout_servers s SET state = 'queued'
       FROM (
         SELECT c.server_id FROM (
           SELECT server_id, position, account_id,
                  row_number() OVER (PARTITION BY account_id ORDER BY position) AS rn
           FROM ${this.#q}.rollout_servers
           WHERE rollout_id = $1 AND wave = $2 AND state = 'pending'
         ) AS c
         LEFT JOIN unnest($4::text[], $5::int[]) AS room (account_id, room) ON room.account_id = c.account_id
         WHERE c.account_id IS NULL OR c.rn <= coalesce(room.room, $6)
         ORDER BY c.position LIMIT $3
       ) AS next
       WHERE s.rollout_id = $1 AND s.server_id = next.server_id
       RETURNING s.server_id, s.position`,
      [
        rollout.id,
        rollout.wave,
        room,
        [...rooms.keys()],
        [...rooms.values()].map((n) => Math.max(0, n)),
        caps.accountDefault ?? UNCAPPED,
      ],
    );
    return rows;
  }

  /**
   * Gives a task this worker took back to the worker that runs it (this one found its task
   * running there: that worker was taken for dead and is not), and completes this job. If that
   * worker dies before it reports, the heartbeat takes the server over from it.
   */
  async reassign(task: ClaimedTask, workerId: string, owner: string): Promise<void> {
    await this.#tx(async (client) => {
      await client.query(
        `UPDATE ${this.#q}.rollout_servers SET worker_id = $4
         WHERE rollout_id = $1 AND server_id = $2 AND state = 'running' AND worker_id = $3`,
        [task.rollout, task.server, workerId, owner],
      );
      await this.#boss.complete(TASK_QUEUE, task.jobId, { db: this.#db(client) });
    });
  }

  /** See `RolloutQueue.cancel`: the rollout of `ref`, when it is active. */
  async cancelRun(ref: RolloutRef): Promise<void> {
    const { rows } = await this.#pool.query<{ id: string }>(
      `SELECT id FROM ${this.#q}.rollouts WHERE kind = $1 AND tenant_id = $2 AND run_id = $3 AND status = 'active'`,
      [ref.kind, ref.tenantId, ref.runId],
    );
    if (rows[0]) await this.cancel(String(rows[0].id));
  }

  /** Stops a rollout from starting further servers: its run was cancelled. */
  async cancel(rolloutId: string): Promise<void> {
    await this.#tx(async (client) => {
      const rollout = await this.#lock(client, rolloutId);
      if (rollout.status !== 'active' || rollout.cancelled) return;
      rollout.cancelled = true;
      await this.#pump(client, rollout);
    });
  }

  /**
   * Active rollouts: the heartbeat asks the workflows of those not cancelled whether a cancel was
   * requested, and aborts its own running tasks of those cancelled.
   */
  async activeRollouts(): Promise<Array<{ id: string; ref: RolloutRef; cancelled: boolean }>> {
    const { rows } = await this.#pool.query<
      Pick<RolloutRow, 'id' | 'kind' | 'tenant_id' | 'run_id' | 'cancelled'>
    >(`SELECT id, kind, tenant_id, run_id, cancelled FROM ${this.#q}.rollouts WHERE status = 'active'`);
    return rows.map((r) => ({
      id: String(r.id),
      ref: { kind: r.kind, tenantId: r.tenant_id, runId: r.run_id },
      cancelled: r.cancelled,
    }));
  }

  /** Records that `workerId` is alive (and registers it on its first beat, or after it was reaped). */
  async heartbeat(workerId: string, hostname: string, pid: number): Promise<void> {
    await this.#pool.query(
      `INSERT INTO ${this.#q}.workers (id, hostname, pid) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET seen_at = now()`,
      [workerId, hostname, pid],
    );
  }

  /** Whether `workerId` beat within the last `takeoverMs`. */
  async alive(workerId: string, takeoverMs: number): Promise<boolean> {
    const { rows } = await this.#pool.query(
      `SELECT 1 FROM ${this.#q}.workers WHERE id = $1 AND seen_at > now() - make_interval(secs => $2)`,
      [workerId, takeoverMs / 1000],
    );
    return rows.length > 0;
  }

  /**
   * Takes over from dead workers (silent for `takeoverMs`): their running servers are queued again
   * with new jobs, and they are removed. Returns how many servers were taken over.
   */
  async reap(takeoverMs: number): Promise<number> {
    await this.#tx(async (client) => {
      // An end job that failed past its retries (the store was down too long) is queued again.
      const stale = await client.query<{ id: string; generation: number }>(
        `UPDATE ${this.#q}.rollouts SET updated_at = now()
         WHERE status = 'ending' AND updated_at < now() - make_interval(secs => $1)
         RETURNING id, generation`,
        [(takeoverMs * 4) / 1000],
      );
      if (stale.rows.length) {
        await this.#boss.insert(
          stale.rows.map((r) => this.#endJob(String(r.id), r.generation)),
          { db: this.#db(client) },
        );
      }
    });
    return this.#tx(async (client) => {
      const dead = await client.query<{ id: string }>(
        `DELETE FROM ${this.#q}.workers WHERE seen_at < now() - make_interval(secs => $1) RETURNING id`,
        [takeoverMs / 1000],
      );
      if (dead.rows.length === 0) return 0;
      const { rows } = await client.query<{ rollout_id: string; server_id: string }>(
        `UPDATE ${this.#q}.rollout_servers SET state = 'queued', worker_id = NULL
         WHERE state = 'running' AND worker_id = ANY($1::text[])
         RETURNING rollout_id, server_id`,
        [dead.rows.map((r) => r.id)],
      );
      if (rows.length) {
        await this.#boss.insert(
          rows.map((r) => this.#taskJob(String(r.rollout_id), r.server_id)),
          { db: this.#db(client) },
        );
      }
      return rows.length;
    });
  }

  /** Removes a worker that stopped cleanly (nothing of its own is running any more). */
  async leave(workerId: string): Promise<void> {
    await this.#pool.query(`DELETE FROM ${this.#q}.workers WHERE id = $1`, [workerId]);
  }

  /**
   * What a rollout's end is decided on, once it is ending: its run, its counters and untouched
   * servers. Undefined when it is not ending in `generation` any more (a duplicate end job).
   */
  async tally(
    rolloutId: string,
    generation: number,
  ): Promise<{ ref: RolloutRef; tally: RolloutTally } | undefined> {
    const { rows } = await this.#pool.query<RolloutRow>(`SELECT * FROM ${this.#q}.rollouts WHERE id = $1`, [
      rolloutId,
    ]);
    const rollout = rows[0];
    if (rollout?.status !== 'ending' || rollout.generation !== generation) return undefined;
    const outcomes = await this.#pool.query<{ outcome: string; n: string }>(
      `SELECT outcome, count(*) AS n FROM ${this.#q}.rollout_servers
       WHERE rollout_id = $1 AND state = 'done' GROUP BY outcome`,
      [rolloutId],
    );
    const count = (outcome: string) => Number(outcomes.rows.find((r) => r.outcome === outcome)?.n ?? 0);
    const untouched = await this.#pool.query<{ server_id: string }>(
      `SELECT server_id FROM ${this.#q}.rollout_servers
       WHERE rollout_id = $1 AND state = 'pending' ORDER BY wave, position`,
      [rolloutId],
    );
    return {
      ref: { kind: rollout.kind, tenantId: rollout.tenant_id, runId: rollout.run_id },
      tally: {
        failures: rollout.failures,
        maxFailures: rollout.max_failures,
        onBudgetSpent: rollout.on_budget_spent,
        ...(rollout.stop_reason !== null ? { stopReason: rollout.stop_reason } : {}),
        cancelled: rollout.cancelled,
        untouched: untouched.rows.map((r) => r.server_id),
        counts: { succeeded: count('succeeded'), failed: count('failed'), cancelled: count('cancelled') },
      },
    };
  }

  /** Marks an ending rollout ended (its run's end is recorded) and completes its end job. */
  async ended(rolloutId: string, generation: number, jobId: string): Promise<void> {
    await this.#tx(async (client) => {
      await client.query(
        `UPDATE ${this.#q}.rollouts SET status = 'ended', updated_at = now()
         WHERE id = $1 AND generation = $2 AND status = 'ending'`,
        [rolloutId, generation],
      );
      await this.#boss.complete(END_QUEUE, jobId, { db: this.#db(client) });
    });
  }

  /** The counters of a rollout, for tests and tools. */
  async state(ref: RolloutRef): Promise<RolloutState | undefined> {
    const { rows } = await this.#pool.query<RolloutRow>(
      `SELECT * FROM ${this.#q}.rollouts WHERE kind = $1 AND tenant_id = $2 AND run_id = $3`,
      [ref.kind, ref.tenantId, ref.runId],
    );
    const r = rows[0];
    if (!r) return undefined;
    const states = await this.#pool.query<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM ${this.#q}.rollout_servers WHERE rollout_id = $1 GROUP BY state`,
      [r.id],
    );
    const servers = { pending: 0, queued: 0, running: 0, done: 0 };
    for (const s of states.rows) servers[s.state as keyof typeof servers] = Number(s.n);
    return {
      id: String(r.id),
      status: r.status,
      wave: r.wave,
      inFlight: r.in_flight,
      failures: r.failures,
      cancelled: r.cancelled,
      ...(r.stop_reason !== null ? { stopReason: r.stop_reason } : {}),
      servers,
    };
  }

  async #lock(client: pg.PoolClient, rolloutId: string): Promise<RolloutRow> {
    const { rows } = await client.query<RolloutRow>(
      `SELECT * FROM ${this.#q}.rollouts WHERE id = $1 FOR UPDATE`,
      [rolloutId],
    );
    if (!rows[0]) throw new ConflictError(`rollout ${rolloutId} no longer exists`);
    return rows[0];
  }

  #endJob(rollout: string, generation: number): PgBoss.JobInsert<EndJobData> {
    return {
      name: END_QUEUE,
      data: { rollout, generation },
      retryLimit: this.#jobs.retryLimit,
      retryDelay: this.#jobs.retryDelaySeconds,
      expireInSeconds: this.#jobs.expireInSeconds,
    };
  }

  #taskJob(rollout: string, server: string): PgBoss.JobInsert<TaskJobData> {
    return {
      name: TASK_QUEUE,
      data: { rollout, server },
      retryLimit: this.#jobs.retryLimit,
      retryDelay: this.#jobs.retryDelaySeconds,
      expireInSeconds: this.#jobs.expireInSeconds,
    };
  }

  /**
   * Starts what may start now, under the rollout's lock: while it is not halted (cancelled, budget
   * spent, told to stop), the next pending servers of the current wave in order, up to the free
   * concurrency; the next wave only once the current one has nothing pending or running. With
   * nothing running and nothing more to start, the rollout is ending and its end job is queued.
   * Writes the rollout's counters back.
   */
  async #pump(client: pg.PoolClient, rollout: RolloutRow, announced: WaveAnnouncement[] = []): Promise<void> {
    const halted =
      rollout.cancelled || rollout.failures > rollout.max_failures || rollout.stop_reason !== null;
    const jobs: PgBoss.JobInsert[] = [];
    rollout.blocked = false;
    // Under a cap, every pump of the tenant's rollouts holds the tenant's lock, halted or not: a
    // rollout that finds no room is marked blocked before any other can count its servers done and
    // look for blocked rollouts to wake, so no rollout waits for a wake-up that already went by.
    const caps = await this.#caps(client, rollout.tenant_id);
    if (caps) {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
        CAPS_LOCK,
        `${this.#q}:${rollout.tenant_id}`,
      ]);
    }
    if (rollout.status === 'active' && !halted) {
      for (;;) {
        const free = rollout.max_concurrency - rollout.in_flight;
        if (free <= 0) break;
        const rows = caps
          ? await this.#pickWithinCaps(client, rollout, free, caps)
          : (
              await client.query<{ server_id: string; position: number }>(
                `UPDATE ${this.#q}.rollout_servers s SET state = 'queued'
                 FROM (SELECT server_id FROM ${this.#q}.rollout_servers
                       WHERE rollout_id = $1 AND wave = $2 AND state = 'pending'
                       ORDER BY position LIMIT $3) AS next
                 WHERE s.rollout_id = $1 AND s.server_id = next.server_id
                 RETURNING s.server_id, s.position`,
                [rollout.id, rollout.wave, free],
              )
            ).rows;
        rows.sort((a, b) => a.position - b.position);
        for (const row of rows) jobs.push(this.#taskJob(String(rollout.id), row.server_id));
        rollout.in_flight += rows.length;
        if (rows.length > 0 && rollout.wave > rollout.wave_announced) {
          // The wave's first servers: it starts now, with every server of it not yet finished.
          const { rows: wave } = await client.query<{ server_id: string }>(
            `SELECT server_id FROM ${this.#q}.rollout_servers
             WHERE rollout_id = $1 AND wave = $2 AND state <> 'done' ORDER BY position`,
            [rollout.id, rollout.wave],
          );
          rollout.wave_announced = rollout.wave;
          announced.push({
            ref: { kind: rollout.kind, tenantId: rollout.tenant_id, runId: rollout.run_id },
            start: { wave: rollout.wave, serverIds: wave.map((r) => r.server_id) },
          });
        }
        if (rows.length === free) break;
        if (caps) {
          // Fewer than asked while the wave still has pending servers: they wait for room under a cap.
          const { rows: left } = await client.query(
            `SELECT 1 FROM ${this.#q}.rollout_servers WHERE rollout_id = $1 AND wave = $2 AND state = 'pending' LIMIT 1`,
            [rollout.id, rollout.wave],
          );
          if (left.length > 0) {
            rollout.blocked = true;
            break;
          }
        }
        // The wave has nothing pending: the next one starts once this one has nothing running.
        if (rollout.in_flight > 0 || rollout.wave + 1 >= rollout.wave_count) break;
        rollout.wave++;
      }
    }
    if (jobs.length) await this.#boss.insert(jobs, { db: this.#db(client) });
    if (rollout.status === 'active' && rollout.in_flight === 0 && !rollout.blocked) {
      rollout.status = 'ending';
      await this.#boss.insert([this.#endJob(String(rollout.id), rollout.generation)], {
        db: this.#db(client),
      });
    }
    await client.query(
      `UPDATE ${this.#q}.rollouts SET wave = $2, in_flight = $3, failures = $4, status = $5,
         stop_reason = $6, cancelled = $7, blocked = $8, wave_announced = $9, updated_at = now()
       WHERE id = $1`,
      [
        rollout.id,
        rollout.wave,
        rollout.in_flight,
        rollout.failures,
        rollout.status,
        rollout.stop_reason,
        rollout.cancelled,
        rollout.blocked,
        rollout.wave_announced,
      ],
    );
  }
}

function countsAsFailure(state: string): boolean {
  return state === 'failed' || state === 'running';
}

/** A server's recorded state as the rollout counts it: a task left running by a dead process failed. */
function outcomeOf(state: string): string {
  if (state === 'running') return 'failed';
  return state;
}

/** Checks a submission's shape and limits: a typed error naming what is wrong. */
function checkSubmission(s: RolloutSubmission): RolloutSubmission {
  const issues: Array<{ path: (string | number)[]; message: string }> = [];
  const text = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 256;
  if (!ROLLOUT_KINDS.has(s?.kind)) {
    issues.push({
      path: ['kind'],
      message: `must be a rollout kind workers carry out (${[...ROLLOUT_KINDS].join(', ')})`,
    });
  }
  for (const key of ['tenantId', 'runId', 'jobId'] as const) {
    if (!text(s?.[key]))
      issues.push({ path: [key], message: 'must be a non-empty string of at most 256 characters' });
  }
  if (!Number.isInteger(s?.maxConcurrency) || s.maxConcurrency < 1)
    issues.push({ path: ['maxConcurrency'], message: 'must be a positive integer' });
  if (!Number.isInteger(s?.maxFailures) || s.maxFailures < 0)
    issues.push({ path: ['maxFailures'], message: 'must be a non-negative integer' });
  if (s?.onBudgetSpent !== 'stop' && s?.onBudgetSpent !== 'pause')
    issues.push({ path: ['onBudgetSpent'], message: "must be 'stop' or 'pause'" });
  const seen = new Set<string>();
  if (!Array.isArray(s?.waves) || s.waves.length === 0) {
    issues.push({ path: ['waves'], message: 'must list at least one wave' });
  } else {
    for (const [w, wave] of s.waves.entries()) {
      for (const [p, id] of (wave?.serverIds ?? []).entries()) {
        if (!text(id)) issues.push({ path: ['waves', w, 'serverIds', p], message: 'must be a server id' });
        else if (seen.has(id))
          issues.push({
            path: ['waves', w, 'serverIds', p],
            message: `server ${id} is in the rollout twice`,
          });
        seen.add(id);
      }
    }
  }
  if (s?.accounts !== undefined) {
    if (typeof s.accounts !== 'object' || s.accounts === null || Array.isArray(s.accounts)) {
      issues.push({ path: ['accounts'], message: 'must map server ids to account ids' });
    } else {
      for (const [serverId, account] of Object.entries(s.accounts)) {
        if (!text(account)) issues.push({ path: ['accounts', serverId], message: 'must be an account id' });
      }
    }
  }
  if (seen.size > MAX_SERVERS)
    issues.push({ path: ['waves'], message: `must hold at most ${MAX_SERVERS} servers` });
  if (issues.length) throw new ValidationError('RolloutSubmission', issues);
  return s;
}
