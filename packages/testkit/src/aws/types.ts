/**
 * The public contract of `@fleetward/testkit/aws`: a server on loopback that speaks the wire
 * protocols of the AWS services Fleetward uses (SSM and EC2 Instance Connect in awsJson1_1, EC2
 * and STS in the query protocol with XML replies), so tests drive the official SDK v3 clients
 * unchanged. Signatures are not verified; the access key id in the `Authorization` header's
 * `Credential=` scope picks the account, and the scope's region picks the region.
 */

/** A role of an account that `AssumeRole` can assume (`arn:aws:iam::<account>:role/<name>`). */
export interface AwsFakeRoleSpec {
  /** The role's name, the last part of its ARN. */
  name: string;
  /** When set, `AssumeRole` must pass exactly this `ExternalId` (the MSP pattern), or gets `AccessDenied`. */
  externalId?: string;
}

/** One AWS account of the fake. */
export interface AwsFakeAccountSpec {
  /** The 12-digit account id. */
  id: string;
  /** Static credentials of an IAM user of this account. Access key ids must be unique across accounts. */
  accessKeyId: string;
  secretAccessKey: string;
  /** Name of the IAM user the static credentials belong to (in `GetCallerIdentity`). @default 'fleetward-test' */
  userName?: string;
  /** Roles that can be assumed (from any account of the fake) with `AssumeRole`. @default [] */
  roles?: AwsFakeRoleSpec[];
  /** Regions enabled for this account; a call signed for another region gets an auth failure. @default the fake's `regions` */
  regions?: string[];
  /** S3 buckets this account owns (names are global across the fake's accounts). @default [] */
  buckets?: string[];
}

/** Options of `startAwsFake`. */
export interface AwsFakeOptions {
  accounts: AwsFakeAccountSpec[];
  /** Regions every account has unless it lists its own. @default ['us-east-1', 'eu-west-1'] */
  regions?: string[];
  /**
   * Largest page of `DescribeInstances` and `DescribeInstanceInformation`; a smaller `MaxResults`
   * makes smaller pages. Small so that tests exercise `NextToken`. @default 2
   */
  pageSize?: number;
  /** Lifetime of credentials issued by `AssumeRole` unless the call asks for `DurationSeconds`. @default 3600 */
  sessionDurationSeconds?: number;
  /**
   * How many `GetCommandInvocation` calls right after `SendCommand` answer `InvocationDoesNotExist`
   * (SSM's propagation delay), per invocation. Counted in calls, not time, so tests stay
   * deterministic. @default 0
   */
  invocationNotFoundPolls?: number;
  /** The runner of instances added without one. @default none: their commands stay `InProgress` */
  defaultRunner?: AwsFakeRunner;
  /** The fake's clock: credential expiry, delivery and execution time-outs, timestamps. @default () => new Date() */
  clock?: () => Date;
  /**
   * How many `DescribeSnapshots` calls report a new snapshot `pending` before it is `completed`
   * (or `error`, see `faults.snapshotFails`), per snapshot. Counted in calls, not time. @default 1
   */
  snapshotPendingPolls?: number;
}

/** What an instance does with a Run Command script. */
export interface AwsFakeRunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the script of an `AWS-RunShellScript` command on an instance, as the SSM agent would.
 * `script` is the document's `commands` joined with newlines; `workingDirectory` is the
 * command's `workingDirectory` parameter when given. `signal` aborts on `CancelCommand` and on
 * the execution time-out. A rejection ends the invocation as `Failed` with the reason on stderr.
 */
export type AwsFakeRunner = (
  script: string,
  context: {
    signal: AbortSignal;
    workingDirectory?: string;
    instanceId: string;
    /** The SSM document: `AWS-RunShellScript`, or `AWS-RunPowerShellScript` (a PowerShell script). */
    documentName: string;
  },
) => Promise<AwsFakeRunResult>;

/** SSM's view of an instance's agent. */
export type AwsFakePingStatus = 'Online' | 'ConnectionLost' | 'Inactive';

/** EC2 instance states the fake reports. */
export type AwsFakeInstanceState =
  | 'pending'
  | 'running'
  | 'stopping'
  | 'stopped'
  | 'shutting-down'
  | 'terminated';

/** An EBS volume attached to an instance. */
export interface AwsFakeVolumeSpec {
  /** `vol-` and 17 hex digits. @default a generated one */
  volumeId?: string;
  /** @default '/dev/xvda' for the first volume, then '/dev/sdf', '/dev/sdg', … */
  device?: string;
  /** @default 8 */
  sizeGiB?: number;
}

/** An EBS snapshot the fake holds (`CreateSnapshots`), as `fake.snapshots()` reports it. */
export interface AwsFakeSnapshot {
  snapshotId: string;
  volumeId: string;
  /** The instance whose volume it is. */
  instanceId: string;
  accountId: string;
  region: string;
  /** `pending` until `snapshotPendingPolls` describes have seen it. */
  state: 'pending' | 'completed' | 'error';
  /** Why it ended in `error`. */
  stateMessage?: string;
  tags: Record<string, string>;
  startTime: Date;
  volumeSizeGiB: number;
}

/** An instance to add with `fake.addInstance`. */
export interface AwsFakeInstanceSpec {
  accountId: string;
  region: string;
  /** `i-` and 17 hex digits. @default a generated one */
  instanceId?: string;
  /** Tags, `Name` included. @default {} */
  tags?: Record<string, string>;
  /** @default 'running' */
  state?: AwsFakeInstanceState;
  /** @default an address in 10.0.0.0/16 */
  privateIp?: string;
  /** @default none */
  publicIp?: string;
  /** @default 'linux' */
  platform?: 'linux' | 'windows';
  /** @default 't3.micro' */
  instanceType?: string;
  /**
   * The SSM agent. `false` = not a managed instance (absent from `DescribeInstanceInformation`,
   * `SendCommand` rejects it). @default { pingStatus: 'Online', agentVersion: '3.3.1142.0' }
   */
  ssm?:
    | false
    | {
        pingStatus?: AwsFakePingStatus;
        agentVersion?: string;
        /** @default 'Ubuntu' for linux, 'Microsoft Windows Server 2022 Datacenter' for windows */
        platformName?: string;
        /** @default '22.04' for linux, '10.0.20348' for windows */
        platformVersion?: string;
        /** @default the instance id */
        computerName?: string;
      };
  /** What runs the instance's commands. @default the fake's `defaultRunner` */
  runner?: AwsFakeRunner;
  /** Its EBS volumes, boot volume first. @default one 8 GiB volume on '/dev/xvda' */
  volumes?: AwsFakeVolumeSpec[];
  /**
   * What the instance does with a key pushed by EC2 Instance Connect, as EC2's
   * `AuthorizedKeysCommand` would serve it to sshd until `expiresAt` (60 s after the push); e.g.
   * `labHostInstanceConnect(host)`. `SendSSHPublicKey` awaits it before it answers; when it
   * rejects, the call fails with HTTP 500 `InternalFailure` and the key is not recorded.
   * @default none: the key is only recorded (`instance.sshPublicKeys()`)
   */
  onSshPublicKey?: (key: { osUser: string; publicKey: string; expiresAt: Date }) => Promise<void>;
}

/** The status of one command invocation, as `GetCommandInvocation` reports it. */
export type AwsFakeInvocationStatus =
  | 'Pending'
  | 'InProgress'
  | 'Delayed'
  | 'Success'
  | 'Cancelled'
  | 'TimedOut'
  | 'Failed'
  | 'Cancelling';

/** An instance held by the fake. Changes apply to the next request. */
export interface AwsFakeInstance {
  readonly instanceId: string;
  readonly accountId: string;
  readonly region: string;
  tags: Record<string, string>;
  state: AwsFakeInstanceState;
  /** `undefined` when the instance is not managed by SSM. */
  readonly ssm: { pingStatus: AwsFakePingStatus; agentVersion: string } | undefined;
  /** Binds the instance to a runner (replaces the previous one); `undefined` unbinds it. */
  bind(runner: AwsFakeRunner | undefined): void;
  /** Public keys pushed with EC2 Instance Connect that are still valid (60 s each), newest last. */
  sshPublicKeys(): { osUser: string; publicKey: string; expiresAt: Date }[];
}

/** One request the fake answered, for assertions about retries and routing. */
export interface AwsFakeRequest {
  service: 'ssm' | 'ec2' | 'sts' | 'ec2-instance-connect' | 's3' | 'unknown';
  operation: string;
  accountId?: string;
  region?: string;
  status: number;
  /** The error code answered, when the request failed. */
  errorCode?: string;
}

/** Fault injection. Every fault applies to requests that arrive after the call. */
export interface AwsFakeFaults {
  /**
   * The next `count` calls of `operation` (e.g. `GetCommandInvocation`, `DescribeInstances`)
   * fail with the service's throttling error: `ThrottlingException` (SSM, Instance Connect),
   * `RequestLimitExceeded` (EC2, HTTP 503) or `Throttling` (STS).
   */
  throttle(operation: string, count: number): void;
  /**
   * The next `count` calls of `operation` fail with HTTP `status` (default 500). With
   * `html: true` the body is an HTML page (what a load balancer returns), not the protocol's
   * error document.
   */
  serverError(operation: string, count: number, opts?: { status?: number; html?: boolean }): void;
  /** Invocations created from now on answer `InvocationDoesNotExist` to their first `polls` `GetCommandInvocation` calls. */
  invocationNotFound(polls: number): void;
  /**
   * The instance's agent goes offline (`PingStatus: ConnectionLost`). Commands sent to it stay
   * `Pending` until it comes back, or end `TimedOut` / `DeliveryTimedOut` once the command's
   * `TimeoutSeconds` (default 3600) have passed on the fake's clock, as SSM does.
   * @throws NotFoundError when no instance has this id.
   */
  agentOffline(instanceId: string): void;
  /** The agent is back `Online`; pending commands are delivered. @throws NotFoundError when no instance has this id. */
  agentOnline(instanceId: string): void;
  /** Every credential issued by `AssumeRole` so far expires now: calls with it get `ExpiredToken`. */
  expireCredentials(): void;
  /**
   * The next `CreateSnapshots` of this instance makes snapshots that end in `error` (with a
   * `StateMessage`) instead of `completed`. @throws NotFoundError when no instance has this id.
   */
  snapshotFails(instanceId: string): void;
}

/** A credential `AssumeRole` issued. */
export interface AwsFakeIssuedCredentials {
  /** The role assumed (`arn:aws:iam::<account>:role/<name>`). */
  roleArn: string;
  /** The `ExternalId` the call passed, if any. */
  externalId?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiresAt: Date;
}

/** A running fake. */
export interface AwsFake {
  /** `http://127.0.0.1:<port>`: the `endpoint` of every SDK client. */
  readonly endpoint: string;
  /** The accounts, with their roles' ARNs. */
  readonly accounts: readonly { id: string; roleArns: readonly string[] }[];
  /** Every request answered so far, oldest first. */
  readonly requests: readonly AwsFakeRequest[];
  /**
   * Every credential `AssumeRole` issued so far, oldest first: for tests that check a secret
   * never leaks (into logs, errors, events). Read-only copies.
   */
  issuedCredentials(): AwsFakeIssuedCredentials[];
  readonly faults: AwsFakeFaults;
  /**
   * Adds an instance to an account and region.
   * @throws ValidationError when the account or region is unknown, or the instance id is malformed or taken.
   */
  addInstance(spec: AwsFakeInstanceSpec): AwsFakeInstance;
  /** The instance of that id. @throws NotFoundError when there is none. */
  instance(instanceId: string): AwsFakeInstance;
  /** Every EBS snapshot made so far, oldest first (copies). */
  snapshots(): AwsFakeSnapshot[];
  /**
   * Creates an empty S3 bucket owned by `accountId`. SSM writes a command's output into it when
   * `SendCommand` names it in `OutputS3BucketName` (key
   * `<prefix>/<commandId>/<instanceId>/<plugin dir>/stdout|stderr`); path-style `GetObject`,
   * `HeadObject` and `PutObject` read and write it.
   * @throws ValidationError when the account is unknown or the name is taken or not a bucket name.
   */
  createBucket(accountId: string, name: string): void;
  /** The objects of a bucket, key → text (a copy). @throws NotFoundError when there is no such bucket. */
  bucketObjects(name: string): Record<string, string>;
  /** Stops listening, aborts running commands and closes open connections. Idempotent. */
  close(): Promise<void>;
}
