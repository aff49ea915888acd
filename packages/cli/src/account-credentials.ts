import type { Provider } from '@fleetward/core';
import { InvalidArgumentError } from 'commander';

/** The flags of `accounts add` that describe an AWS account's credentials. */
export interface AwsCredentialFlags {
  provider: Provider;
  credentialsRef?: string;
  roleArn?: string;
  externalId?: string;
  accessKeyId?: string;
  secretAccessKeyEnv?: string;
}

/** The secret-store document of `@fleetward/adapter-aws` (`AwsAccountCredentials`), as the flags give it. */
export type AwsCredentialsDocument =
  | { type: 'assume-role'; roleArn: string; externalId?: string }
  | { type: 'static'; accessKeyId: string; secretAccessKey: string };

/** The flag each field of the document comes from, for errors. */
const FLAG_OF: Record<string, string> = {
  roleArn: '--role-arn',
  externalId: '--external-id',
  accessKeyId: '--access-key-id',
  secretAccessKey: '--secret-access-key-env',
  secretAccessKeyEnv: '--secret-access-key-env',
};

/** `<tenant>/aws/<account id>`: where `accounts add` stores an AWS account's credentials. */
export function awsCredentialsRef(tenantId: string, accountId: string): string {
  return `${tenantId}/aws/${accountId}`;
}

/**
 * The credentials document the flags describe, or `undefined` when they name none (the account
 * then uses `--credentials-ref`, or the CLI's own AWS credentials). The secret access key is read
 * from the environment variable `--secret-access-key-env` names: a secret never travels on the
 * command line, where `ps` and the shell history would keep it. Checked against the adapter's
 * schema; messages name the flag at fault and never a value.
 * @throws InvalidArgumentError (a usage error) naming the flag.
 */
export async function awsCredentialsFromFlags(
  o: AwsCredentialFlags,
  env: NodeJS.ProcessEnv,
): Promise<AwsCredentialsDocument | undefined> {
  const given = (['roleArn', 'externalId', 'accessKeyId', 'secretAccessKeyEnv'] as const).filter(
    (k) => o[k] !== undefined,
  );
  if (given.length === 0) return undefined;
  const flags = given.map((k) => FLAG_OF[k]).join(', ');
  if (o.provider !== 'aws') throw new InvalidArgumentError(`${flags}: only with --provider aws`);
  if (o.credentialsRef !== undefined)
    throw new InvalidArgumentError(`--credentials-ref cannot be combined with ${flags}`);
  if (o.roleArn !== undefined && (o.accessKeyId !== undefined || o.secretAccessKeyEnv !== undefined))
    throw new InvalidArgumentError(
      '--role-arn cannot be combined with --access-key-id or --secret-access-key-env: choose a role or an access key',
    );
  if (o.externalId !== undefined && o.roleArn === undefined)
    throw new InvalidArgumentError('--external-id needs --role-arn');

  let document: AwsCredentialsDocument;
  if (o.roleArn !== undefined) {
    document = {
      type: 'assume-role',
      roleArn: o.roleArn,
      ...(o.externalId !== undefined ? { externalId: o.externalId } : {}),
    };
  } else {
    if (o.accessKeyId === undefined)
      throw new InvalidArgumentError('--secret-access-key-env needs --access-key-id');
    if (o.secretAccessKeyEnv === undefined)
      throw new InvalidArgumentError(
        '--access-key-id needs --secret-access-key-env <NAME>, the environment variable holding the secret access key',
      );
    const secretAccessKey = env[o.secretAccessKeyEnv];
    if (!secretAccessKey)
      throw new InvalidArgumentError(
        `--secret-access-key-env: the environment variable ${JSON.stringify(o.secretAccessKeyEnv)} is not set or empty`,
      );
    document = { type: 'static', accessKeyId: o.accessKeyId, secretAccessKey };
  }

  // Loaded here only: the adapter brings the AWS SDK, which a plain `accounts add` does not need.
  const { AwsAccountCredentialsSchema } = await import('@fleetward/adapter-aws');
  const parsed = AwsAccountCredentialsSchema.safeParse(document);
  if (!parsed.success) {
    // zod's messages state the expectation, never the input: safe for an external id or a key.
    const [issue] = parsed.error.issues;
    const field = String(issue?.path[0] ?? '');
    throw new InvalidArgumentError(`${FLAG_OF[field] ?? field}: ${issue?.message ?? 'is invalid'}`);
  }
  return document;
}
