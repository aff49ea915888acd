import { setTimeout as sleep } from 'node:timers/promises';
import { CreateSnapshotsCommand, DescribeSnapshotsCommand, type Snapshot } from '@aws-sdk/client-ec2';
import {
  AbortedError,
  type Server,
  type SnapshotCapability,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import type { ClientCache } from './clients.js';
import { awsCode, awsError } from './errors.js';
import type { AwsAdapterConfig } from './options.js';

/** Tag of each snapshot: the `label` the core passed (also the snapshot's `Name`). */
export const SNAPSHOT_LABEL_TAG = 'fleetward:label';
/** Tag of each snapshot: the id of the Fleetward server whose instance it was taken from. */
export const SNAPSHOT_SERVER_TAG = 'fleetward:server';

const EC2_INSTANCE_ID = /^i-[0-9a-f]{8,32}$/;
/** Errors after which a poll is simply repeated: eventual consistency, throttling, a 5xx. */
const RETRY_POLL = new Set([
  'InvalidSnapshot.NotFound',
  'RequestLimitExceeded',
  'Throttling',
  'InternalError',
  'ServiceUnavailable',
  'Unavailable',
  'SyntaxError',
]);

/**
 * The `snapshot` capability: EBS snapshots of every volume of an instance, crash-consistent
 * across them (`CreateSnapshots`), tagged `fleetward:label` and `Name` with the label and
 * `fleetward:server` with the server id (volume tags are copied too). It resolves once every
 * snapshot is `completed`; `snapshotId` is their ids joined with `,`, boot volume first.
 *
 * @throws ValidationError when the server is not an EC2 instance (`i-…`) or the label is not a
 *   valid tag value (1 to 256 characters).
 * @throws TransportError when a snapshot ends in `error` (its id and EC2's message are named; the
 *   others are kept), or AWS refuses a call; AuthorizationError when it refuses the credentials.
 * @throws TimeoutError after `snapshotTimeoutMs`, naming the snapshots still pending.
 * @throws AbortedError when `signal` fires. Snapshots already started are never deleted: EC2
 *   finishes them, and the errors name them.
 */
export function createAwsSnapshot(config: AwsAdapterConfig, cache: ClientCache): SnapshotCapability {
  return {
    async snapshot(server: Server, options: { label: string; signal?: AbortSignal }) {
      const { label, signal } = options;
      const instanceId = server.providerId ?? '';
      const issues: { path: string[]; message: string }[] = [];
      if (!EC2_INSTANCE_ID.test(instanceId)) {
        issues.push({
          path: ['providerId'],
          message: 'must be an EC2 instance id (i-…): only those have EBS volumes',
        });
      }
      if (typeof label !== 'string' || label.length === 0 || label.length > 256) {
        issues.push({ path: ['label'], message: 'must be 1 to 256 characters (an EC2 tag value)' });
      }
      if (issues.length) throw new ValidationError('SnapshotRequest', issues);
      const region = server.region ?? config.defaultRegion;
      const where = `${instanceId} (${region})`;
      const scope = { tenantId: server.tenantId, accountId: server.accountId };
      const timeoutMs = config.snapshotTimeoutMs;
      const deadline = performance.now() + timeoutMs;
      const remaining = (): number => Math.max(0, deadline - performance.now());
      const callSignal = (): AbortSignal => {
        const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(remaining())));
        return signal ? AbortSignal.any([signal, timeout]) : timeout;
      };
      if (signal?.aborted) throw new AbortedError(`Snapshot of ${where} aborted before it started`);

      let ids: string[];
      try {
        const out = await cache.send(scope, region, ({ ec2 }) =>
          ec2.send(
            new CreateSnapshotsCommand({
              InstanceSpecification: { InstanceId: instanceId, ExcludeBootVolume: false },
              Description: `Fleetward backup ${label}`.slice(0, 255),
              CopyTagsFromSource: 'volume',
              TagSpecifications: [
                {
                  ResourceType: 'snapshot',
                  Tags: [
                    { Key: SNAPSHOT_LABEL_TAG, Value: label },
                    { Key: 'Name', Value: label },
                    { Key: SNAPSHOT_SERVER_TAG, Value: server.id },
                  ],
                },
              ],
            }),
            { abortSignal: callSignal() },
          ),
        );
        ids = (out.Snapshots ?? []).map((s) => s.SnapshotId ?? '').filter((id) => id !== '');
      } catch (error) {
        // EC2 may have started snapshots whose ids never reached us: the tags find them.
        const unknown = `snapshots may have been started; look for tag ${SNAPSHOT_LABEL_TAG}=${label}`;
        if (signal?.aborted) {
          throw new AbortedError(`Snapshot of ${where} aborted during CreateSnapshots; ${unknown}`);
        }
        if (remaining() === 0) {
          throw new TimeoutError(
            `EC2 CreateSnapshots for ${where} did not answer within ${timeoutMs} ms; ${unknown}`,
            { details: { instanceId, region } },
          );
        }
        throw awsError(error, 'CreateSnapshots', where);
      }
      if (ids.length === 0) throw new TransportError(`EC2 CreateSnapshots for ${where} returned no snapshot`);

      const pending = new Set(ids);
      const maxInterval = Math.max(config.maxPollIntervalMs, 4 * config.snapshotPollIntervalMs);
      let interval = config.snapshotPollIntervalMs;
      for (;;) {
        try {
          await sleep(Math.ceil(Math.min(interval, remaining())), undefined, signal ? { signal } : {});
        } catch {
          // only the caller's signal rejects the sleep
        }
        const left = [...pending].join(', ');
        if (signal?.aborted) {
          throw new AbortedError(
            `Snapshot of ${where} aborted; snapshots ${left} go on in EC2 and were not deleted`,
            { details: { instanceId, region, snapshotIds: ids, pending: [...pending] } },
          );
        }
        if (remaining() === 0) {
          throw new TimeoutError(
            `Snapshots of ${where} not completed within ${timeoutMs} ms: ${left} still pending (not deleted; they go on in EC2)`,
            { details: { instanceId, region, snapshotIds: ids, pending: [...pending] } },
          );
        }
        let described: Snapshot[];
        try {
          described = await describe(cache, scope, region, [...pending], callSignal());
          interval = config.snapshotPollIntervalMs;
        } catch (error) {
          const code = awsCode(error) ?? '';
          const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (code === 'AbortError' || code === 'TimeoutError') continue; // the loop decides
          if (RETRY_POLL.has(code) || (status !== undefined && status >= 500)) {
            if (code !== 'InvalidSnapshot.NotFound') interval = Math.min(interval * 2, maxInterval);
            continue;
          }
          throw awsError(error, 'DescribeSnapshots', where);
        }
        for (const s of described) {
          const id = s.SnapshotId ?? '';
          if (!pending.has(id)) continue;
          if (s.State === 'completed') pending.delete(id);
          else if (s.State === 'error') {
            const others = ids.filter((x) => x !== id);
            throw new TransportError(
              `EBS snapshot ${id} of ${where} (volume ${s.VolumeId ?? '?'}) failed: ${s.StateMessage ?? 'no message'}${others.length ? `; snapshots ${others.join(', ')} were kept` : ''}`,
              {
                details: {
                  instanceId,
                  region,
                  snapshotId: id,
                  stateMessage: s.StateMessage,
                  snapshotIds: ids,
                },
              },
            );
          }
        }
        if (pending.size === 0) return { snapshotId: ids.join(',') };
      }
    },
  };
}

/** Every snapshot of `ids`, across pages. */
async function describe(
  cache: ClientCache,
  scope: { tenantId: string; accountId: string },
  region: string,
  ids: string[],
  abortSignal: AbortSignal,
): Promise<Snapshot[]> {
  const all: Snapshot[] = [];
  let nextToken: string | undefined;
  do {
    const token = nextToken;
    const out = await cache.send(scope, region, ({ ec2 }) =>
      ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ids, ...(token ? { NextToken: token } : {}) }), {
        abortSignal,
      }),
    );
    all.push(...(out.Snapshots ?? []));
    nextToken = out.NextToken;
  } while (nextToken);
  return all;
}
