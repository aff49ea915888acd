import type { EC2Client } from '@aws-sdk/client-ec2';
import type { EC2InstanceConnectClient } from '@aws-sdk/client-ec2-instance-connect';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';

/** The SDK clients the adapter uses for one account and region. */
export interface AwsClients {
  ssm: SSMClient;
  ec2: EC2Client;
  /** For output beyond what SSM keeps inline, when the account has an output bucket. */
  s3?: S3Client;
  /** For keyless SSH through EC2 Instance Connect. */
  instanceConnect?: EC2InstanceConnectClient;
}

/**
 * Returns the clients for an account (Fleetward's account id, `server.accountId` / `account.id`,
 * of tenant `tenantId`) and a region. The adapter calls it once per triple and keeps the result;
 * the factory owns the clients' credentials (an account's `credentialsRef` is not read).
 */
export type AwsClientsFactory = (accountId: string, region: string, tenantId: string) => AwsClients;

/** Static AWS credentials, or a provider of them (the SDK's `AwsCredentialIdentityProvider`). */
export type AwsCredentialsOption =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }
  | (() => Promise<{
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken?: string;
      expiration?: Date;
    }>);

const fn = <T>(what: string) =>
  z.custom<T>((v) => typeof v === 'function', { message: `must be a function (${what})` });

const StaticCredentialsSchema = z.object({
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1).optional(),
  expiration: z.date().optional(),
});

/** Options of {@link createAwsAdapter}; see each field. */
export const AwsAdapterOptionsSchema = z.strictObject({
  /** Registration name of the adapter. @default 'aws' */
  name: z.string().min(1).max(64).default('aws'),
  /**
   * Builds the SDK clients for an account and region. When absent the adapter creates an
   * `SSMClient` and an `EC2Client` per region from `credentials`, `endpoint` and `maxAttempts`.
   */
  clients: fn<AwsClientsFactory>('(accountId, region) => ({ ssm, ec2 })').optional(),
  /**
   * The adapter's own credentials: those of accounts without `credentialsRef`, and the ones that
   * assume an account's role (`credentialsRef` → `{"type":"assume-role",…}`).
   * @default the SDK's default credential chain
   */
  credentials: z
    .union([StaticCredentialsSchema, fn<() => Promise<unknown>>('credential provider')])
    .optional(),
  /**
   * Region of the STS client that assumes accounts' roles (a regional STS endpoint keeps the
   * traffic in a region). @default `defaultRegion`
   */
  stsRegion: z.string().min(1).max(64).optional(),
  /**
   * Assumed-role credentials are renewed this long before they expire. @default 300000 (5 minutes,
   * as the SDK itself does)
   */
  credentialsRefreshMarginMs: z.number().int().min(0).max(3_600_000).default(300_000),
  /** Endpoint for the clients the adapter creates (a VPC endpoint, a fake in tests). */
  endpoint: z.url().optional(),
  /** Attempts per SDK call, retries of throttling and 5xx included. @default 3 */
  maxAttempts: z.number().int().min(1).max(20).default(3),
  /** Delay between two `GetCommandInvocation` polls. @default 1000 */
  pollIntervalMs: z.number().int().min(1).max(60_000).default(1000),
  /** Longest delay between polls after throttling (the delay doubles per throttled poll). @default 15000 */
  maxPollIntervalMs: z.number().int().min(1).max(300_000).default(15_000),
  /**
   * Ask SSM for the agent's `PingStatus` before sending a command, and fail at once with a
   * `TransportError` when it is not `Online`. @default true
   */
  checkAgent: z.boolean().default(true),
  /**
   * Region listed when an account has no `regions` (through `DescribeRegions`), and the region of
   * servers that have none. @default 'us-east-1'
   */
  defaultRegion: z.string().min(1).max(64).default('us-east-1'),
  /**
   * Instance states `discover` lists. Terminated instances are never listed.
   * @default ['pending', 'running', 'stopping', 'stopped']
   */
  instanceStates: z
    .array(z.enum(['pending', 'running', 'shutting-down', 'stopping', 'stopped']))
    .min(1)
    .default(['pending', 'running', 'stopping', 'stopped']),
  /**
   * How long `snapshot` waits for every EBS snapshot of an instance to be `completed`. Snapshots
   * still pending then are not deleted: they go on in EC2. @default 7200000 (2 hours)
   */
  snapshotTimeoutMs: z.number().int().min(1).max(172_800_000).default(7_200_000),
  /**
   * Delay between two `DescribeSnapshots` polls of `snapshot`; after throttling it doubles, up to
   * four times this or `maxPollIntervalMs`, whichever is larger. @default 15000
   */
  snapshotPollIntervalMs: z.number().int().min(1).max(600_000).default(15_000),
  /**
   * S3 bucket where SSM writes the full output of every command, for accounts without the label
   * `aws.fleetward.dev/ssm-output-bucket` (which wins). `exec` reads a stream from it when SSM cut
   * the inline copy (24,000 / 8,000 characters). The instances' role must be allowed to
   * `s3:PutObject` into it, the adapter's credentials to `s3:GetObject`. @default none
   */
  outputBucket: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name')
    .optional(),
  /**
   * Key prefix of that output, for accounts without the label `aws.fleetward.dev/ssm-output-prefix`.
   * @default none (keys start with the command id)
   */
  outputPrefix: z.string().min(1).max(500).optional(),
});

/** Options of {@link createAwsAdapter}; see {@link AwsAdapterOptionsSchema}. */
export type AwsAdapterOptions = z.input<typeof AwsAdapterOptionsSchema>;
/** Validated options, defaults applied. */
export type AwsAdapterConfig = z.output<typeof AwsAdapterOptionsSchema>;
