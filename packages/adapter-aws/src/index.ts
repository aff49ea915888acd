import type { Adapter } from '@fleetward/core';
import { CapabilityMissingError, validate } from '@fleetward/core';
import { ClientCache } from './clients.js';
import { createAwsDiscover } from './discover.js';
import { createAwsExec } from './exec.js';
import {
  type InstanceConnectCredentials,
  type InstanceConnectOptions,
  InstanceConnectOptionsSchema,
  instanceConnectCredentialsWith,
  offerInstanceConnectKey,
  type SendSshPublicKey,
} from './instance-connect.js';
import { type AwsAdapterOptions, AwsAdapterOptionsSchema } from './options.js';
import { createAwsSnapshot } from './snapshot.js';

/** The AWS adapter: an {@link Adapter}, and the source of keyless SSH logins for the SSH adapter. */
export interface AwsAdapter extends Adapter {
  /**
   * {@link instanceConnectCredentials} sending `SendSSHPublicKey` with this adapter's clients: each
   * server's account's own credentials (its `credentialsRef`, an assumed role included), so it
   * needs no `client`. Use it as `createSshAdapter({ credentialsFor })`.
   * @throws ValidationError (subject `InstanceConnectOptions`) when `options` are invalid.
   */
  instanceConnectCredentials(options?: Omit<InstanceConnectOptions, 'client'>): InstanceConnectCredentials;
}

/**
 * An adapter for EC2 instances, with the `exec`, `discover`, `snapshot` and `ephemeralKeys`
 * capabilities. A server is an instance: `server.providerId` is its instance id, `server.region`
 * its region.
 *
 * - `exec` runs through SSM Run Command (`AWS-RunShellScript`). SSM has no argv: the script text
 *   is constant and argv, env and stdin travel base64-encoded in variable assignments that the
 *   script decodes, so no value can become shell syntax. It polls `GetCommandInvocation` until a
 *   final status, surviving `InvocationDoesNotExist` right after sending and throttling (backing
 *   off). SSM keeps 24,000 / 8,000 characters of output inline: a stream that long is reported
 *   `truncated`, unless the account has an output bucket (label `aws.fleetward.dev/ssm-output-bucket`
 *   or option `outputBucket`): then it is read in full from S3. `sudo` adds nothing: the SSM agent
 *   runs commands as root. Windows servers (`os.family` `windows`) run through
 *   `AWS-RunPowerShellScript` the same way (see `buildRunPowerShellScript`).
 * - An instance whose agent is not `Online`, or that never picks the command up, rejects with a
 *   `TransportError` saying so, within `timeoutMs`. Timeout and abort send `CancelCommand`.
 * - `discover` lists `DescribeInstances` in every region of the account, joined with SSM's
 *   `DescribeInstanceInformation` (OS facts of managed instances).
 * - `snapshot` takes EBS snapshots of every volume of the instance (`CreateSnapshots`) and waits
 *   until all are `completed`; `snapshotId` is their ids joined with `,`.
 * - `ephemeralKeys` pushes a caller's public key for a login with EC2 Instance Connect
 *   (`SendSSHPublicKey`, the server's account's own credentials): sshd accepts it for 60 seconds
 *   and nothing stays on the instance. Just-in-time grants of mode `ephemeral-key` use it.
 * - SDK errors become `AuthorizationError` (credentials or rights refused) or `TransportError`,
 *   with a sanitized copy of the SDK error as the cause.
 *
 * @throws ValidationError (subject `AwsAdapterOptions`) when `options` are invalid.
 */
export function createAwsAdapter(options: AwsAdapterOptions = {}): AwsAdapter {
  const config = validate(AwsAdapterOptionsSchema, options, 'AwsAdapterOptions');
  const cache = new ClientCache(config);
  const sendSshPublicKey: SendSshPublicKey = async (server, region, command) => {
    const scope = { tenantId: server.tenantId, accountId: server.accountId };
    await cache.send(scope, region, async ({ instanceConnect }) => {
      if (!instanceConnect) {
        throw new CapabilityMissingError(
          `the clients given for account ${server.accountId} have no instanceConnect client`,
        );
      }
      await instanceConnect.send(command);
    });
  };
  return {
    name: config.name,
    instanceConnectCredentials(icOptions = {}) {
      const ic = validate(
        InstanceConnectOptionsSchema.omit({ client: true }),
        icOptions,
        'InstanceConnectOptions',
      );
      return instanceConnectCredentialsWith(ic, sendSshPublicKey);
    },
    ephemeralKeys: { offer: (server, offer) => offerInstanceConnectKey(server, offer, sendSshPublicKey) },
    exec: createAwsExec(config, cache),
    discover: createAwsDiscover(config, cache),
    snapshot: createAwsSnapshot(config, cache),
    attach: (context) => cache.attach(context),
    close: async () => cache.close(),
  };
}

export {
  type AwsAccountCredentials,
  AwsAccountCredentialsSchema,
  parseAccountCredentials,
} from './credentials.js';
export { osFromSsm } from './discover.js';
export { buildRunShellScript, SSM_STDERR_LIMIT, SSM_STDOUT_LIMIT, ssmOutputSummary } from './exec.js';
export {
  INSTANCE_CONNECT_KEY_LIFETIME_MS,
  type InstanceConnectClientFactory,
  type InstanceConnectCredentials,
  type InstanceConnectLogin,
  type InstanceConnectOptions,
  InstanceConnectOptionsSchema,
  instanceConnectCredentials,
  SSH_USER_LABEL,
} from './instance-connect.js';
export {
  type AwsAdapterOptions,
  AwsAdapterOptionsSchema,
  type AwsClients,
  type AwsClientsFactory,
  type AwsCredentialsOption,
} from './options.js';
export { SSM_OUTPUT_BUCKET_LABEL, SSM_OUTPUT_PREFIX_LABEL } from './output.js';
export { buildRunPowerShellScript } from './powershell.js';
export { SNAPSHOT_LABEL_TAG, SNAPSHOT_SERVER_TAG } from './snapshot.js';
