import type { Adapter } from '@fleetward/core';
import { validate } from '@fleetward/core';
import { ClientCache } from './clients.js';
import { createAwsDiscover } from './discover.js';
import { createAwsExec } from './exec.js';
import { type AwsAdapterOptions, AwsAdapterOptionsSchema } from './options.js';

/**
 * An adapter for EC2 instances, with the `exec` and `discover` capabilities. A server is an
 * instance: `server.providerId` is its instance id, `server.region` its region.
 *
 * - `exec` runs through SSM Run Command (`AWS-RunShellScript`). SSM has no argv: the script text
 *   is constant and argv, env and stdin travel base64-encoded in variable assignments that the
 *   script decodes, so no value can become shell syntax. It polls `GetCommandInvocation` until a
 *   final status, surviving `InvocationDoesNotExist` right after sending and throttling (backing
 *   off). SSM keeps 24,000 / 8,000 characters of output inline: a stream that long is reported
 *   `truncated`. `sudo` adds nothing: the SSM agent runs commands as root.
 * - An instance whose agent is not `Online`, or that never picks the command up, rejects with a
 *   `TransportError` saying so, within `timeoutMs`. Timeout and abort send `CancelCommand`.
 * - `discover` lists `DescribeInstances` in every region of the account, joined with SSM's
 *   `DescribeInstanceInformation` (OS facts of managed instances).
 * - SDK errors become `AuthorizationError` (credentials or rights refused) or `TransportError`,
 *   with a sanitized copy of the SDK error as the cause.
 *
 * @throws ValidationError (subject `AwsAdapterOptions`) when `options` are invalid.
 */
export function createAwsAdapter(options: AwsAdapterOptions = {}): Adapter {
  const config = validate(AwsAdapterOptionsSchema, options, 'AwsAdapterOptions');
  const cache = new ClientCache(config);
  return {
    name: config.name,
    exec: createAwsExec(config, cache),
    discover: createAwsDiscover(config, cache),
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
  type AwsAdapterOptions,
  AwsAdapterOptionsSchema,
  type AwsClients,
  type AwsClientsFactory,
  type AwsCredentialsOption,
} from './options.js';
