import { randomUUID } from 'node:crypto';
import { toFleetwardError } from '../errors.js';
import type { RedactingLogger } from '../kernel/log.js';
import type { Runtime } from '../kernel/runtime.js';
import { Ticker } from '../util/ticker.js';
import { type SweepResult, sweepAccess } from './api.js';
import { dueCredentials } from './keys.js';
import { type RotationReport, rotateCredential } from './rotation.js';

export interface AccessSweeperOptions {
  fleet: Runtime;
  /** Also rotate managed keys that are due under their projects' policies. @default true */
  rotateKeys?: boolean;
  /** Called with failures; never throws into the loop. Each is also logged (error) to the fleet's `logger`. */
  onError?: (error: unknown, context: { tenantId?: string; credentialId?: string }) => void;
  /** Identifies this process in leases. @default a random id */
  holder?: string;
}

export interface AccessSweepTick {
  tenants: { tenantId: string; sweep: SweepResult; rotations: RotationReport[] }[];
}

/**
 * Runs access housekeeping for every tenant, as the system: expires pending requests, starts
 * scheduled grants, removes ended grants from servers (verified), and rotates overdue keys. One
 * process at a time per tenant (a lease), so several processes can run sweepers on one store.
 * Expiry itself never depends on this: sshd refuses an ended grant's key by itself.
 */
export class AccessSweeper {
  readonly #fleet: Runtime;
  readonly #options: AccessSweeperOptions;
  readonly holder: string;
  readonly #log: RedactingLogger;
  readonly #ticker = new Ticker(
    () => this.tick(),
    (error) => this.#failed(error, {}, 'access sweeper tick failed'),
  );

  constructor(options: AccessSweeperOptions) {
    this.#fleet = options.fleet;
    this.#options = options;
    this.holder = options.holder ?? `access-sweeper-${randomUUID()}`;
    this.#log = options.fleet.logger.child({ component: 'access-sweeper', holder: this.holder });
  }

  #failed(error: unknown, context: { tenantId?: string; credentialId?: string }, message: string): void {
    this.#log.error({ ...context, err: error }, message);
    this.#options.onError?.(error, context);
  }

  /** One pass over every tenant. */
  async tick(): Promise<AccessSweepTick> {
    const store = this.#fleet.store;
    const tenants: AccessSweepTick['tenants'] = [];
    for (const tenantId of await store.tenantIds()) {
      const lease = await store.leases.acquire(`access-sweep:${tenantId}`, this.holder, 10 * 60_000);
      if (!lease) continue;
      try {
        const sweep = await sweepAccess(this.#fleet, tenantId);
        const rotations: RotationReport[] = [];
        if (this.#options.rotateKeys !== false && this.#fleet.secrets) {
          for (const due of await dueCredentials(this.#fleet, tenantId)) {
            try {
              rotations.push(
                await rotateCredential(
                  this.#fleet,
                  tenantId,
                  { principalId: 'system', kind: 'system' },
                  due.credential.id,
                  {
                    graceMinutes: due.policy.graceMinutes,
                  },
                ),
              );
            } catch (error) {
              this.#failed(
                toFleetwardError(error, `rotating ${due.credential.id}`),
                { tenantId, credentialId: due.credential.id },
                'scheduled key rotation failed',
              );
            }
          }
        }
        tenants.push({ tenantId, sweep, rotations });
        for (const failure of sweep.failures) {
          // Access that should have ended may still work on that server until its own expiry.
          this.#log.warn(
            { tenantId, grantId: failure.grantId, serverId: failure.serverId, error: failure.message },
            'access grant change failed on a server',
          );
        }
        this.#log.debug(
          { tenantId, ...sweepCounts(sweep), rotations: rotations.length },
          'access sweep done',
        );
      } catch (error) {
        this.#failed(
          toFleetwardError(error, `access sweep of ${tenantId}`),
          { tenantId },
          'access sweep failed',
        );
      } finally {
        await store.leases.release(lease).catch(() => {});
      }
    }
    return { tenants };
  }

  /** Ticks every `intervalMs` (default 30 s) until `stop()`; ticks never overlap. */
  start(options: { intervalMs?: number } = {}): void {
    this.#ticker.start(options.intervalMs ?? 30_000);
  }

  /** Stops ticking and waits for a tick in progress. */
  stop(): Promise<void> {
    return this.#ticker.stop();
  }
}

const sweepCounts = (sweep: SweepResult) => ({
  expiredRequests: sweep.expiredRequests.length,
  startedGrants: sweep.started.length,
  expiredGrants: sweep.expiredGrants.length,
  installed: sweep.installed,
  removed: sweep.removed,
  failures: sweep.failures.length,
});

/** Creates an {@link AccessSweeper}. */
export function createAccessSweeper(options: AccessSweeperOptions): AccessSweeper {
  return new AccessSweeper(options);
}
