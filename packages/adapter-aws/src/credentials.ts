import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { type Account, NotFoundError, ValidationError } from '@fleetward/core';
import { z } from 'zod';
import { awsError } from './errors.js';
import type { AwsAdapterConfig } from './options.js';

/**
 * What an account's `credentialsRef` names in the SecretStore: a JSON document of one of these
 * shapes. An account without `credentialsRef` uses the adapter's `credentials` option, or the
 * SDK's default credential chain.
 *
 * - `assume-role`: the MSP pattern. The adapter's own credentials assume `roleArn` through STS,
 *   passing `externalId` when the role's trust policy asks for one. The temporary credentials are
 *   renewed before they expire (see `credentialsRefreshMarginMs`), and at once when AWS answers
 *   `ExpiredToken`.
 * - `static`: an access key of an IAM user of the account (with a session token when temporary).
 * - `default`: the adapter's own credentials, said explicitly.
 *
 * @example
 * ```json
 * {"type":"assume-role","roleArn":"arn:aws:iam::222222222222:role/fleetward","externalId":"tenant-7f3a"}
 * ```
 */
export const AwsAccountCredentialsSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('assume-role'),
    roleArn: z
      .string()
      .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'must be an IAM role ARN'),
    externalId: z
      .string()
      .regex(/^[\w+=,.@:/-]{2,1224}$/, 'must be 2 to 1224 of letters, digits and +=,.@:/-')
      .optional(),
    /** @default `fleetward-<account id>`, cut to 64 characters */
    sessionName: z
      .string()
      .regex(/^[\w+=,.@-]{2,64}$/, 'must be 2 to 64 of letters, digits and +=,.@-')
      .optional(),
    /** @default 3600 */
    durationSeconds: z.number().int().min(900).max(43_200).optional(),
  }),
  z.strictObject({
    type: z.literal('static'),
    accessKeyId: z.string().min(16).max(128),
    secretAccessKey: z.string().min(1).max(256),
    sessionToken: z.string().min(1).max(8192).optional(),
  }),
  z.strictObject({ type: z.literal('default') }),
]);

/** The parsed secret an account's `credentialsRef` names; see {@link AwsAccountCredentialsSchema}. */
export type AwsAccountCredentials = z.infer<typeof AwsAccountCredentialsSchema>;

/** Credentials as the SDK clients take them. */
export interface AwsIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** Where an account's clients get their credentials from. */
export type CredentialSource =
  /** The adapter's `credentials` option, or the SDK's default chain when it has none. */
  | { kind: 'base' }
  | { kind: 'static'; identity: AwsIdentity }
  /** Temporary credentials of an assumed role, renewed before they expire. */
  | { kind: 'assumed'; provider: () => Promise<AwsIdentity>; invalidate: () => void };

/**
 * Parses the secret stored under `ref`. Errors name the reference and the fields at fault, never
 * a value: the document holds secrets.
 * @throws ValidationError (subject `AwsAccountCredentials`) when it is not JSON or not one of the shapes.
 */
export function parseAccountCredentials(ref: string, value: string): AwsAccountCredentials {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    throw new ValidationError('AwsAccountCredentials', [
      { path: [], message: `the secret ${JSON.stringify(ref)} is not a JSON document` },
    ]);
  }
  const parsed = AwsAccountCredentialsSchema.safeParse(json);
  if (!parsed.success) {
    throw new ValidationError(
      'AwsAccountCredentials',
      parsed.error.issues.map((issue) => ({
        path: issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
        // zod's messages name expectations, never the input; the ref says which secret.
        message: `${issue.message} (secret ${JSON.stringify(ref)})`,
      })),
    );
  }
  return parsed.data;
}

/**
 * Temporary credentials of `roleArn`, assumed with `sts` and kept until `marginMs` before they
 * expire; callers at the same time share one `AssumeRole`. `invalidate` forgets them (after AWS
 * answered `ExpiredToken`: a clock skew, or a session revoked early).
 */
export function assumedRoleProvider(
  sts: STSClient,
  spec: Extract<AwsAccountCredentials, { type: 'assume-role' }>,
  account: Pick<Account, 'id'>,
  marginMs: number,
  now: () => number = Date.now,
): { provider: () => Promise<AwsIdentity>; invalidate: () => void } {
  let current: AwsIdentity | undefined;
  let pending: Promise<AwsIdentity> | undefined;
  const sessionName = spec.sessionName ?? `fleetward-${account.id}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  const fresh = (identity: AwsIdentity | undefined): identity is AwsIdentity =>
    identity !== undefined &&
    (identity.expiration === undefined || identity.expiration.getTime() - now() > marginMs);

  async function assume(): Promise<AwsIdentity> {
    try {
      const out = await sts.send(
        new AssumeRoleCommand({
          RoleArn: spec.roleArn,
          RoleSessionName: sessionName,
          ...(spec.externalId ? { ExternalId: spec.externalId } : {}),
          DurationSeconds: spec.durationSeconds ?? 3600,
        }),
      );
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey) {
        throw new Error('AssumeRole answered without credentials');
      }
      return {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        ...(c.SessionToken ? { sessionToken: c.SessionToken } : {}),
        ...(c.Expiration ? { expiration: c.Expiration } : {}),
      };
    } catch (error) {
      throw awsError(error, 'AssumeRole', `account ${account.id} (role ${spec.roleArn})`);
    }
  }

  return {
    async provider() {
      if (fresh(current)) return current;
      pending ??= assume().finally(() => {
        pending = undefined;
      });
      current = await pending;
      return current;
    },
    invalidate() {
      current = undefined;
    },
  };
}

/** Reads an account's credential source through the Fleet's secret store. */
export async function credentialSourceOf(
  account: Account,
  secrets: { get(ref: string): Promise<string | undefined> } | undefined,
  sts: () => STSClient,
  config: AwsAdapterConfig,
): Promise<CredentialSource> {
  const ref = account.credentialsRef;
  if (ref === undefined) return { kind: 'base' };
  if (!secrets) {
    throw new ValidationError('Account', [
      {
        path: ['credentialsRef'],
        message: `account ${account.id} names credentials ${JSON.stringify(ref)} but the Fleet has no secret store`,
      },
    ]);
  }
  const value = await secrets.get(ref);
  if (value === undefined) {
    throw new NotFoundError('secret', ref, { details: { accountId: account.id, field: 'credentialsRef' } });
  }
  const spec = parseAccountCredentials(ref, value);
  switch (spec.type) {
    case 'default':
      return { kind: 'base' };
    case 'static':
      return {
        kind: 'static',
        identity: {
          accessKeyId: spec.accessKeyId,
          secretAccessKey: spec.secretAccessKey,
          ...(spec.sessionToken ? { sessionToken: spec.sessionToken } : {}),
        },
      };
    case 'assume-role':
      return {
        kind: 'assumed',
        ...assumedRoleProvider(sts(), spec, account, config.credentialsRefreshMarginMs),
      };
  }
}

/** An STS client with the adapter's own credentials, for `AssumeRole`. */
export function createStsClient(config: AwsAdapterConfig): STSClient {
  return new STSClient({
    region: config.stsRegion ?? config.defaultRegion,
    maxAttempts: config.maxAttempts,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    ...(config.credentials ? { credentials: config.credentials as never } : {}),
  });
}
