import { GetObjectCommand } from '@aws-sdk/client-s3';
import { type Account, OutputCollector, type OutputSummary, ValidationError } from '@fleetward/core';
import type { AwsAdapterConfig, AwsClients } from './options.js';
import { unpackChunks } from './packed.js';

/** Account label naming the S3 bucket SSM writes the full output of commands to (wins over `outputBucket`). */
export const SSM_OUTPUT_BUCKET_LABEL = 'aws.fleetward.dev/ssm-output-bucket';
/** Account label with the key prefix of that output (wins over `outputPrefix`). */
export const SSM_OUTPUT_PREFIX_LABEL = 'aws.fleetward.dev/ssm-output-prefix';

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Where SSM writes a command's output: a bucket and a key prefix without trailing `/` (maybe empty). */
export interface OutputLocation {
  bucket: string;
  prefix: string;
}

/**
 * The output location of an account's commands: its labels, else the adapter's options, else none.
 * @throws ValidationError when the account's bucket label is not a bucket name.
 */
export function outputLocation(
  account: Account | undefined,
  config: AwsAdapterConfig,
): OutputLocation | undefined {
  const labels = account?.labels ?? {};
  const bucket = labels[SSM_OUTPUT_BUCKET_LABEL] ?? config.outputBucket;
  if (bucket === undefined) return undefined;
  if (!BUCKET_NAME.test(bucket)) {
    throw new ValidationError('Account', [
      { path: ['labels', SSM_OUTPUT_BUCKET_LABEL], message: 'must be an S3 bucket name' },
    ]);
  }
  const prefix = (labels[SSM_OUTPUT_PREFIX_LABEL] ?? config.outputPrefix ?? '').replace(/\/+$/, '');
  return { bucket, prefix };
}

/**
 * The key SSM writes a stream to: `<prefix>/<commandId>/<instanceId>/<plugin>/0.<plugin>/<stream>`,
 * the plugin being the document's plugin name without `:` (`awsrunShellScript`).
 */
export function outputKey(
  location: OutputLocation,
  commandId: string,
  instanceId: string,
  plugin: string,
  stream: 'stdout' | 'stderr',
): string {
  const dir = plugin.replace(':', '');
  return `${location.prefix ? `${location.prefix}/` : ''}${commandId}/${instanceId}/${dir}/0.${dir}/${stream}`;
}

/**
 * Reads a stream from S3 into a summary bounded by `maxBytes` (the full text is never held unless
 * `keep` collects the chunks). Rejects with the SDK's error when the object cannot be read. `packed`: the object holds the
 * stream packed by the shell runner (see `packed.ts`), decoded as it is read.
 */
export async function readOutput(
  s3: NonNullable<AwsClients['s3']>,
  location: OutputLocation,
  key: string,
  maxBytes: number,
  abortSignal: AbortSignal,
  keep?: Buffer[],
  packed = false,
): Promise<OutputSummary> {
  const out = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: key }), { abortSignal });
  const collector = new OutputCollector(maxBytes);
  const body: AsyncIterable<Uint8Array> =
    (out.Body as AsyncIterable<Uint8Array> | undefined) ?? (async function* () {})();
  for await (const chunk of packed ? unpackChunks(body) : body) {
    const buffer = Buffer.from(chunk);
    collector.push(buffer);
    keep?.push(buffer);
  }
  return collector.summary();
}
