import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { NotFoundError, ValidationError } from '@fleetward/core';
import type {
  AwsFake,
  AwsFakeAccountSpec,
  AwsFakeInstance,
  AwsFakeInstanceSpec,
  AwsFakeInvocationStatus,
  AwsFakeIssuedCredentials,
  AwsFakeOptions,
  AwsFakePingStatus,
  AwsFakeRequest,
  AwsFakeRunner,
  AwsFakeRunResult,
  AwsFakeSnapshot,
} from './types.js';
import {
  credentialScope,
  el,
  type Protocol,
  pageOf,
  queryFilters,
  queryList,
  readBody,
  sendError,
  sendHtml,
  sendJson,
  sendXml,
  text,
  WireError,
} from './wire.js';

/** SSM keeps only this much output inline in `GetCommandInvocation`. */
export const SSM_STDOUT_LIMIT = 24_000;
export const SSM_STDERR_LIMIT = 8_000;
const EIC_KEY_LIFETIME_MS = 60_000;
const EC2_NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

interface Principal {
  accountId: string;
  secretAccessKey: string;
  arn: string;
  userId: string;
  sessionToken?: string;
  expiresAt?: Date;
}

interface InstanceRecord {
  instanceId: string;
  accountId: string;
  region: string;
  tags: Record<string, string>;
  state: AwsFakeInstance['state'];
  privateIp: string;
  publicIp: string | undefined;
  platform: 'linux' | 'windows';
  instanceType: string;
  launchTime: Date;
  ssm:
    | {
        pingStatus: AwsFakePingStatus;
        agentVersion: string;
        platformName: string;
        platformVersion: string;
        computerName: string;
      }
    | undefined;
  runner: AwsFakeRunner | undefined;
  sshKeys: { osUser: string; publicKey: string; expiresAt: Date }[];
  onSshPublicKey: AwsFakeInstanceSpec['onSshPublicKey'];
  volumes: { volumeId: string; device: string; sizeGiB: number }[];
}

interface Invocation {
  commandId: string;
  instance: InstanceRecord;
  documentName: string;
  /** `OutputS3BucketName` / `OutputS3KeyPrefix` of the command. */
  outputBucket: string | undefined;
  outputPrefix: string;
  comment: string;
  script: string;
  workingDirectory: string | undefined;
  deliveryTimeoutMs: number;
  executionTimeoutMs: number;
  sentAt: Date;
  startedAt: Date | undefined;
  endedAt: Date | undefined;
  status: AwsFakeInvocationStatus;
  statusDetails: string;
  responseCode: number;
  stdout: string;
  stderr: string;
  notFoundPolls: number;
  abort: AbortController | undefined;
}

const ACCOUNT_ID = /^\d{12}$/;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const FINAL: ReadonlySet<AwsFakeInvocationStatus> = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut']);

/**
 * Starts the AWS fake on `127.0.0.1` (a free port). See `AwsFake` for what it serves.
 * @throws ValidationError when the options are invalid (account ids, duplicate keys, page size).
 */
export async function startAwsFake(options: AwsFakeOptions): Promise<AwsFake> {
  const clock = options.clock ?? (() => new Date());
  const defaultRegions = options.regions ?? ['us-east-1', 'eu-west-1'];
  const pageSize = options.pageSize ?? 2;
  const sessionSeconds = options.sessionDurationSeconds ?? 3600;
  let notFoundPolls = options.invocationNotFoundPolls ?? 0;
  validateOptions(options, pageSize);

  const accounts = new Map<string, AwsFakeAccountSpec>(options.accounts.map((a) => [a.id, a]));
  const principals = new Map<string, Principal>();
  for (const a of options.accounts) {
    const userName = a.userName ?? 'fleetward-test';
    principals.set(a.accessKeyId, {
      accountId: a.id,
      secretAccessKey: a.secretAccessKey,
      arn: `arn:aws:iam::${a.id}:user/${userName}`,
      userId: `AIDA${hex(8).toUpperCase()}`,
    });
  }
  const regionsOf = (accountId: string): string[] => accounts.get(accountId)?.regions ?? defaultRegions;
  const instances = new Map<string, InstanceRecord>();
  const commands = new Map<string, Invocation[]>();
  const requests: AwsFakeRequest[] = [];
  const issued: AwsFakeIssuedCredentials[] = [];
  const throttles = new Map<string, number>();
  const serverErrors = new Map<string, { count: number; status: number; html: boolean }>();
  let ipCounter = 10;
  const snapshotPendingPolls = options.snapshotPendingPolls ?? 1;
  const snapshots = new Map<string, SnapshotRecord>();
  const snapshotFailures = new Set<string>();
  const buckets = new Map<string, { accountId: string; objects: Map<string, string> }>();
  for (const a of options.accounts) for (const b of a.buckets ?? []) addBucket(a.id, b);

  function runOn(inv: Invocation): void {
    inv.status = 'InProgress';
    inv.statusDetails = 'InProgress';
    inv.startedAt = clock();
    const runner = inv.instance.runner;
    if (!runner) return;
    const abort = new AbortController();
    inv.abort = abort;
    const context = {
      signal: abort.signal,
      instanceId: inv.instance.instanceId,
      documentName: inv.documentName,
      ...(inv.workingDirectory !== undefined ? { workingDirectory: inv.workingDirectory } : {}),
    };
    new Promise<AwsFakeRunResult>((resolve) => resolve(runner(inv.script, context))).then(
      (r) => {
        if (!FINAL.has(inv.status)) storeOutput(inv, r.stdout, r.stderr);
        finish(inv, r.exitCode === 0 ? 'Success' : 'Failed', r.exitCode, r.stdout, r.stderr);
      },
      (e: unknown) => finish(inv, 'Failed', 1, '', e instanceof Error ? e.message : String(e)),
    );
  }

  function finish(
    inv: Invocation,
    status: AwsFakeInvocationStatus,
    code: number,
    stdout: string,
    stderr: string,
    details: string = status,
  ): void {
    if (FINAL.has(inv.status)) return;
    inv.status = status;
    inv.statusDetails = details;
    inv.responseCode = code;
    inv.stdout = stdout.slice(0, SSM_STDOUT_LIMIT);
    inv.stderr = stderr.slice(0, SSM_STDERR_LIMIT);
    inv.endedAt = clock();
    inv.abort = undefined;
  }

  /** Applies what the passing of time decides: delivery and execution time-outs. */
  function refresh(inv: Invocation): void {
    const now = clock().getTime();
    if (inv.status === 'Pending' && now - inv.sentAt.getTime() >= inv.deliveryTimeoutMs) {
      finish(inv, 'TimedOut', -1, '', '', 'DeliveryTimedOut');
    } else if (
      inv.status === 'InProgress' &&
      inv.startedAt &&
      now - inv.startedAt.getTime() >= inv.executionTimeoutMs
    ) {
      const abort = inv.abort;
      finish(inv, 'TimedOut', -1, '', '', 'ExecutionTimedOut');
      abort?.abort(new Error('execution timed out'));
    }
  }

  function record(instanceId: string): InstanceRecord {
    const r = instances.get(instanceId);
    if (!r) throw new NotFoundError('AWS fake instance', instanceId);
    return r;
  }

  function publicInstance(r: InstanceRecord): AwsFakeInstance {
    return {
      instanceId: r.instanceId,
      accountId: r.accountId,
      region: r.region,
      get tags() {
        return r.tags;
      },
      set tags(t) {
        r.tags = t;
      },
      get state() {
        return r.state;
      },
      set state(s) {
        r.state = s;
      },
      get ssm() {
        return r.ssm ? { pingStatus: r.ssm.pingStatus, agentVersion: r.ssm.agentVersion } : undefined;
      },
      bind(runner) {
        r.runner = runner;
      },
      sshPublicKeys() {
        const now = clock().getTime();
        return r.sshKeys.filter((k) => k.expiresAt.getTime() > now).map((k) => ({ ...k }));
      },
    };
  }

  function authenticate(req: IncomingMessage, protocol: Protocol): { principal: Principal; region: string } {
    const scope = credentialScope(req.headers.authorization);
    if (!scope)
      throw new WireError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const principal = principals.get(scope.accessKeyId);
    const token = req.headers['x-amz-security-token'];
    if (!principal || (principal.sessionToken !== undefined && principal.sessionToken !== token)) {
      throw protocol === 'json'
        ? new WireError(
            400,
            'UnrecognizedClientException',
            'The security token included in the request is invalid.',
          )
        : protocol === 'ec2'
          ? new WireError(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials')
          : new WireError(
              403,
              'InvalidClientTokenId',
              'The security token included in the request is invalid.',
            );
    }
    if (principal.expiresAt && principal.expiresAt.getTime() <= clock().getTime()) {
      throw protocol === 'json'
        ? new WireError(400, 'ExpiredTokenException', 'The security token included in the request is expired')
        : new WireError(400, 'ExpiredToken', 'The security token included in the request is expired');
    }
    if (scope.service !== 'sts' && !regionsOf(principal.accountId).includes(scope.region)) {
      throw protocol === 'json'
        ? new WireError(
            400,
            'UnrecognizedClientException',
            'The security token included in the request is invalid.',
          )
        : new WireError(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    }
    return { principal, region: scope.region };
  }

  function takeFault(
    operation: string,
    protocol: Protocol,
    res: ServerResponse,
    requestId: string,
  ): string | undefined {
    const t = throttles.get(operation) ?? 0;
    if (t > 0) {
      throttles.set(operation, t - 1);
      const err =
        protocol === 'json'
          ? new WireError(400, 'ThrottlingException', 'Rate exceeded')
          : protocol === 'ec2'
            ? new WireError(503, 'RequestLimitExceeded', 'Request limit exceeded.')
            : new WireError(400, 'Throttling', 'Rate exceeded');
      sendError(res, protocol, err, requestId);
      return err.code;
    }
    const s = serverErrors.get(operation);
    if (s && s.count > 0) {
      s.count--;
      if (s.html) sendHtml(res, s.status);
      else
        sendError(
          res,
          protocol,
          new WireError(s.status, 'InternalError', 'We encountered an internal error. Please try again.'),
          requestId,
        );
      return s.html ? 'html' : 'InternalError';
    }
    return undefined;
  }

  // --- SSM and EC2 Instance Connect (awsJson1_1) ---

  function ssmInstances(accountId: string, region: string): InstanceRecord[] {
    return [...instances.values()].filter(
      (r) => r.accountId === accountId && r.region === region && r.ssm && r.state !== 'terminated',
    );
  }

  function managedInstance(accountId: string, region: string, id: unknown): InstanceRecord {
    const r = typeof id === 'string' ? instances.get(id) : undefined;
    if (!r || r.accountId !== accountId || r.region !== region || !r.ssm || r.state === 'terminated') {
      throw new WireError(
        400,
        'InvalidInstanceId',
        `Instance ${String(id)} is not a valid managed instance.`,
      );
    }
    return r;
  }

  function ssmOperation(
    operation: string,
    input: Record<string, unknown>,
    accountId: string,
    region: string,
  ): unknown {
    switch (operation) {
      case 'DescribeInstanceInformation': {
        const wanted = new Set<string>();
        for (const f of (input.Filters as { Key?: string; Values?: string[] }[] | undefined) ?? []) {
          if (f.Key === 'InstanceIds') for (const v of f.Values ?? []) wanted.add(v);
        }
        for (const f of (input.InstanceInformationFilterList as
          | { key?: string; valueSet?: string[] }[]
          | undefined) ?? []) {
          if (f.key === 'InstanceIds') for (const v of f.valueSet ?? []) wanted.add(v);
        }
        const all = ssmInstances(accountId, region).filter(
          (r) => wanted.size === 0 || wanted.has(r.instanceId),
        );
        const { page, nextToken } = pageOf(
          all,
          input.NextToken as string | undefined,
          input.MaxResults as number | undefined,
          pageSize,
          'json',
        );
        return {
          InstanceInformationList: page.map((r) => {
            const s = r.ssm as NonNullable<InstanceRecord['ssm']>;
            return {
              InstanceId: r.instanceId,
              PingStatus: s.pingStatus,
              LastPingDateTime: Math.floor(clock().getTime() / 1000),
              AgentVersion: s.agentVersion,
              IsLatestVersion: true,
              PlatformType: r.platform === 'windows' ? 'Windows' : 'Linux',
              PlatformName: s.platformName,
              PlatformVersion: s.platformVersion,
              ResourceType: 'EC2Instance',
              IPAddress: r.privateIp,
              ComputerName: s.computerName,
            };
          }),
          ...(nextToken ? { NextToken: nextToken } : {}),
        };
      }
      case 'SendCommand': {
        const documentName = String(input.DocumentName);
        if (!PLUGINS[documentName]) {
          throw new WireError(
            400,
            'InvalidDocument',
            `Document ${documentName} does not exist in this fake (only AWS-RunShellScript, AWS-RunPowerShellScript).`,
          );
        }
        const outputBucket =
          typeof input.OutputS3BucketName === 'string' ? input.OutputS3BucketName : undefined;
        const outputPrefix = typeof input.OutputS3KeyPrefix === 'string' ? input.OutputS3KeyPrefix : '';
        const ids = input.InstanceIds;
        if (!Array.isArray(ids) || ids.length === 0 || ids.length > 50) {
          throw new WireError(
            400,
            'ValidationException',
            'InstanceIds must list 1 to 50 instances (Targets are not supported by the fake).',
          );
        }
        const params = (input.Parameters ?? {}) as Record<string, unknown>;
        const lines = params.commands;
        if (!Array.isArray(lines) || lines.length === 0 || !lines.every((l) => typeof l === 'string')) {
          throw new WireError(
            400,
            'InvalidParameters',
            'Parameter "commands" is required and must be a non-empty list of strings.',
          );
        }
        const targets = ids.map((id) => managedInstance(accountId, region, id));
        const wd = Array.isArray(params.workingDirectory)
          ? (params.workingDirectory[0] as string | undefined)
          : undefined;
        const execSeconds = Array.isArray(params.executionTimeout)
          ? Number(params.executionTimeout[0])
          : 3600;
        const deliverySeconds = typeof input.TimeoutSeconds === 'number' ? input.TimeoutSeconds : 3600;
        const commandId = randomUUID();
        const sentAt = clock();
        const comment = typeof input.Comment === 'string' ? input.Comment : '';
        const invs = targets.map(
          (instance): Invocation => ({
            commandId,
            instance,
            documentName,
            outputBucket,
            outputPrefix,
            comment,
            script: (lines as string[]).join('\n'),
            workingDirectory: wd,
            deliveryTimeoutMs: deliverySeconds * 1000,
            executionTimeoutMs: (Number.isFinite(execSeconds) && execSeconds > 0 ? execSeconds : 3600) * 1000,
            sentAt,
            startedAt: undefined,
            endedAt: undefined,
            status: 'Pending',
            statusDetails: 'Pending',
            responseCode: -1,
            stdout: '',
            stderr: '',
            notFoundPolls,
            abort: undefined,
          }),
        );
        commands.set(commandId, invs);
        for (const inv of invs) if (inv.instance.ssm?.pingStatus === 'Online') runOn(inv);
        return {
          Command: {
            CommandId: commandId,
            DocumentName: documentName,
            ...(outputBucket !== undefined
              ? { OutputS3BucketName: outputBucket, OutputS3KeyPrefix: outputPrefix }
              : {}),
            Comment: comment,
            InstanceIds: ids,
            Parameters: params,
            RequestedDateTime: Math.floor(sentAt.getTime() / 1000),
            Status: 'Pending',
            StatusDetails: 'Pending',
            TargetCount: invs.length,
            CompletedCount: 0,
            ErrorCount: 0,
            TimeoutSeconds: deliverySeconds,
          },
        };
      }
      case 'GetCommandInvocation': {
        const inv = commands
          .get(String(input.CommandId))
          ?.find((i) => i.instance.instanceId === input.InstanceId);
        if (!inv || inv.instance.accountId !== accountId || inv.instance.region !== region) {
          throw new WireError(400, 'InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist)');
        }
        if (inv.notFoundPolls > 0) {
          inv.notFoundPolls--;
          throw new WireError(400, 'InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist)');
        }
        refresh(inv);
        const done = FINAL.has(inv.status);
        const iso = (d: Date | undefined): string => (d ? d.toISOString() : '');
        return {
          CommandId: inv.commandId,
          InstanceId: inv.instance.instanceId,
          Comment: inv.comment,
          DocumentName: inv.documentName,
          DocumentVersion: '$DEFAULT',
          PluginName: PLUGINS[inv.documentName],
          ResponseCode: inv.responseCode,
          ExecutionStartDateTime: iso(inv.startedAt),
          ExecutionEndDateTime: iso(inv.endedAt),
          ExecutionElapsedTime:
            inv.startedAt && inv.endedAt ? elapsed(inv.endedAt.getTime() - inv.startedAt.getTime()) : '',
          Status: inv.status,
          StatusDetails: inv.statusDetails,
          StandardOutputContent: done ? inv.stdout : '',
          StandardOutputUrl: done ? outputUrl(inv, 'stdout') : '',
          StandardErrorContent: done ? inv.stderr : '',
          StandardErrorUrl: done ? outputUrl(inv, 'stderr') : '',
        };
      }
      case 'CancelCommand': {
        const invs = commands.get(String(input.CommandId));
        if (!invs || invs[0]?.instance.accountId !== accountId || invs[0]?.instance.region !== region) {
          throw new WireError(400, 'InvalidCommandId', `Command ${String(input.CommandId)} does not exist.`);
        }
        const only =
          Array.isArray(input.InstanceIds) && input.InstanceIds.length
            ? new Set(input.InstanceIds as string[])
            : undefined;
        for (const inv of invs) {
          if (only && !only.has(inv.instance.instanceId)) continue;
          refresh(inv);
          if (FINAL.has(inv.status)) continue;
          const abort = inv.abort;
          finish(inv, 'Cancelled', -1, '', '');
          abort?.abort(new Error('command cancelled'));
        }
        return {};
      }
      default:
        throw new WireError(
          400,
          'UnknownOperationException',
          `The fake does not implement AmazonSSM.${operation}`,
        );
    }
  }

  async function eicOperation(
    operation: string,
    input: Record<string, unknown>,
    accountId: string,
    region: string,
  ): Promise<unknown> {
    if (operation !== 'SendSSHPublicKey') {
      throw new WireError(400, 'UnknownOperationException', `The fake does not implement ${operation}`);
    }
    const r = typeof input.InstanceId === 'string' ? instances.get(input.InstanceId) : undefined;
    if (!r || r.accountId !== accountId || r.region !== region) {
      throw new WireError(
        400,
        'EC2InstanceNotFoundException',
        `Instance ${String(input.InstanceId)} not found`,
      );
    }
    if (r.state !== 'running') {
      throw new WireError(400, 'EC2InstanceStateInvalidException', 'Instance is not in a running state');
    }
    // The service's own constraints: a login name of 1 to 32 characters and a one-line key.
    if (
      typeof input.InstanceOSUser !== 'string' ||
      !/^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$/.test(input.InstanceOSUser) ||
      typeof input.SSHPublicKey !== 'string' ||
      !/^ssh-(ed25519|rsa) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]*)?$/.test(input.SSHPublicKey)
    ) {
      throw new WireError(
        400,
        'InvalidArgsException',
        'InstanceOSUser and an ssh-ed25519 or ssh-rsa SSHPublicKey are required',
      );
    }
    const key = {
      osUser: input.InstanceOSUser,
      publicKey: input.SSHPublicKey,
      expiresAt: new Date(clock().getTime() + EIC_KEY_LIFETIME_MS),
    };
    await r.onSshPublicKey?.({ ...key, expiresAt: new Date(key.expiresAt) });
    r.sshKeys.push(key);
    return { RequestId: randomUUID(), Success: true };
  }

  // --- EC2 and STS (query protocol, XML) ---

  function ec2Operation(
    operation: string,
    form: URLSearchParams,
    accountId: string,
    region: string,
    requestId: string,
  ): string {
    if (operation === 'CreateSnapshots') return createSnapshots(form, accountId, region, requestId);
    if (operation === 'DescribeSnapshots') return describeSnapshots(form, accountId, region, requestId);
    if (operation === 'DescribeRegions') {
      return el(
        'DescribeRegionsResponse',
        text('requestId', requestId),
        el(
          'regionInfo',
          ...regionsOf(accountId).map((r) =>
            el(
              'item',
              text('regionName', r),
              text('regionEndpoint', `ec2.${r}.amazonaws.com`),
              text('optInStatus', 'opt-in-not-required'),
            ),
          ),
        ),
      ).replace('<DescribeRegionsResponse>', `<DescribeRegionsResponse xmlns="${EC2_NS}">`);
    }
    if (operation !== 'DescribeInstances') {
      throw new WireError(400, 'InvalidAction', `The action ${operation} is not valid for this web service.`);
    }
    const ids = new Set(queryList(form, 'InstanceId'));
    const filters = queryFilters(form);
    const all = [...instances.values()].filter(
      (r) =>
        r.accountId === accountId &&
        r.region === region &&
        (ids.size === 0 || ids.has(r.instanceId)) &&
        filters.every((f) => matchesFilter(r, f.name, f.values)),
    );
    for (const id of ids) {
      const r = instances.get(id);
      if (!r || r.accountId !== accountId || r.region !== region) {
        throw new WireError(400, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
      }
    }
    const maxResults = form.has('MaxResults') ? Number(form.get('MaxResults')) : undefined;
    const { page, nextToken } = pageOf(all, form.get('NextToken') ?? undefined, maxResults, pageSize, 'ec2');
    return el(
      'DescribeInstancesResponse',
      text('requestId', requestId),
      el(
        'reservationSet',
        ...page.map((r) =>
          el(
            'item',
            text('reservationId', `r-${r.instanceId.slice(2)}`),
            text('ownerId', r.accountId),
            el('instancesSet', instanceXml(r)),
          ),
        ),
      ),
      text('nextToken', nextToken),
    ).replace('<DescribeInstancesResponse>', `<DescribeInstancesResponse xmlns="${EC2_NS}">`);
  }

  function stsOperation(
    operation: string,
    form: URLSearchParams,
    principal: Principal,
    requestId: string,
  ): string {
    if (operation === 'GetCallerIdentity') {
      return el(
        'GetCallerIdentityResponse',
        el(
          'GetCallerIdentityResult',
          text('Arn', principal.arn),
          text('UserId', principal.userId),
          text('Account', principal.accountId),
        ),
        el('ResponseMetadata', text('RequestId', requestId)),
      );
    }
    if (operation !== 'AssumeRole') {
      throw new WireError(
        400,
        'InvalidAction',
        `Could not find operation ${operation} for version 2011-06-15`,
      );
    }
    const roleArn = form.get('RoleArn') ?? '';
    const sessionName = form.get('RoleSessionName') ?? '';
    const m = /^arn:aws:iam::(\d{12}):role\/(.+)$/.exec(roleArn);
    const account = m ? accounts.get(m[1] as string) : undefined;
    const role = account?.roles?.find((r) => r.name === m?.[2]);
    if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) {
      throw new WireError(
        400,
        'ValidationError',
        'RoleSessionName must be 2 to 64 characters of [\\w+=,.@-]',
      );
    }
    if (!account || !role || (role.externalId !== undefined && role.externalId !== form.get('ExternalId'))) {
      throw new WireError(
        403,
        'AccessDenied',
        `User: ${principal.arn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
      );
    }
    const duration = form.has('DurationSeconds') ? Number(form.get('DurationSeconds')) : sessionSeconds;
    const accessKeyId = `ASIA${hex(8).toUpperCase()}`;
    const secretAccessKey = randomBytes(30).toString('base64');
    const sessionToken = randomBytes(48).toString('base64');
    const expiresAt = new Date(clock().getTime() + duration * 1000);
    const externalId = form.get('ExternalId') ?? undefined;
    issued.push({
      roleArn,
      ...(externalId !== undefined ? { externalId } : {}),
      accessKeyId,
      secretAccessKey,
      sessionToken,
      expiresAt,
    });
    const roleId = `AROA${hex(8).toUpperCase()}`;
    const arn = `arn:aws:sts::${account.id}:assumed-role/${role.name}/${sessionName}`;
    principals.set(accessKeyId, {
      accountId: account.id,
      secretAccessKey,
      sessionToken,
      expiresAt,
      arn,
      userId: `${roleId}:${sessionName}`,
    });
    return el(
      'AssumeRoleResponse',
      el(
        'AssumeRoleResult',
        el(
          'Credentials',
          text('AccessKeyId', accessKeyId),
          text('SecretAccessKey', secretAccessKey),
          text('SessionToken', sessionToken),
          text('Expiration', expiresAt.toISOString()),
        ),
        el('AssumedRoleUser', text('AssumedRoleId', `${roleId}:${sessionName}`), text('Arn', arn)),
      ),
      el('ResponseMetadata', text('RequestId', requestId)),
    );
  }

  // --- EBS snapshots (EC2 query protocol) ---

  function createSnapshots(
    form: URLSearchParams,
    accountId: string,
    region: string,
    requestId: string,
  ): string {
    const instanceId = form.get('InstanceSpecification.InstanceId') ?? '';
    const r = instances.get(instanceId);
    if (!r || r.accountId !== accountId || r.region !== region || r.state === 'terminated') {
      throw new WireError(
        400,
        'InvalidInstanceID.NotFound',
        `The instance ID '${instanceId}' does not exist`,
      );
    }
    const copy = form.get('CopyTagsFromSource');
    if (copy !== null && copy !== 'volume') {
      throw new WireError(
        400,
        'InvalidParameterValue',
        `Value (${copy}) for parameter CopyTagsFromSource is invalid`,
      );
    }
    const tags: Record<string, string> = {};
    for (let i = 1; form.has(`TagSpecification.${i}.ResourceType`); i++) {
      const type = form.get(`TagSpecification.${i}.ResourceType`);
      if (type !== 'snapshot') {
        throw new WireError(
          400,
          'InvalidParameterValue',
          `'${String(type)}' is not a valid taggable resource type for this operation.`,
        );
      }
      for (let j = 1; form.has(`TagSpecification.${i}.Tag.${j}.Key`); j++) {
        tags[form.get(`TagSpecification.${i}.Tag.${j}.Key`) as string] =
          form.get(`TagSpecification.${i}.Tag.${j}.Value`) ?? '';
      }
    }
    const volumes =
      form.get('InstanceSpecification.ExcludeBootVolume') === 'true' ? r.volumes.slice(1) : r.volumes;
    if (volumes.length === 0) {
      throw new WireError(400, 'InvalidParameterCombination', 'The instance has no volumes to snapshot.');
    }
    const fails = snapshotFailures.delete(instanceId);
    const made = volumes.map(
      (v): SnapshotRecord => ({
        snapshotId: `snap-${hex(17)}`,
        volumeId: v.volumeId,
        instanceId,
        accountId,
        region,
        state: 'pending',
        tags: { ...tags },
        startTime: clock(),
        volumeSizeGiB: v.sizeGiB,
        description: form.get('Description') ?? '',
        describes: 0,
        fails,
      }),
    );
    for (const s of made) snapshots.set(s.snapshotId, s);
    return el(
      'CreateSnapshotsResponse',
      text('requestId', requestId),
      el(
        'snapshotSet',
        ...made.map((s) =>
          el(
            'item',
            text('snapshotId', s.snapshotId),
            text('volumeId', s.volumeId),
            text('state', s.state),
            text('startTime', s.startTime.toISOString()),
            text('progress', ''),
            text('ownerId', s.accountId),
            text('volumeSize', s.volumeSizeGiB),
            text('description', s.description),
            text('encrypted', false),
            tagSetXml(s.tags),
          ),
        ),
      ),
    ).replace('<CreateSnapshotsResponse>', `<CreateSnapshotsResponse xmlns="${EC2_NS}">`);
  }

  function describeSnapshots(
    form: URLSearchParams,
    accountId: string,
    region: string,
    requestId: string,
  ): string {
    const ids = queryList(form, 'SnapshotId');
    for (const id of ids) {
      const s = snapshots.get(id);
      if (!s || s.accountId !== accountId || s.region !== region) {
        throw new WireError(400, 'InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
      }
    }
    const filters = queryFilters(form);
    const all = [...snapshots.values()].filter(
      (s) =>
        s.accountId === accountId &&
        s.region === region &&
        (ids.length === 0 || ids.includes(s.snapshotId)) &&
        filters.every((f) => matchesSnapshotFilter(s, f.name, f.values)),
    );
    const maxResults = form.has('MaxResults') ? Number(form.get('MaxResults')) : undefined;
    const { page, nextToken } = pageOf(all, form.get('NextToken') ?? undefined, maxResults, pageSize, 'ec2');
    for (const s of page) {
      if (s.state !== 'pending') continue;
      if (s.describes < snapshotPendingPolls) s.describes++;
      else if (s.fails) {
        s.state = 'error';
        s.stateMessage = 'The snapshot failed: an internal error occurred (fake fault snapshotFails).';
      } else s.state = 'completed';
    }
    return el(
      'DescribeSnapshotsResponse',
      text('requestId', requestId),
      el(
        'snapshotSet',
        ...page.map((s) =>
          el(
            'item',
            text('snapshotId', s.snapshotId),
            text('volumeId', s.volumeId),
            text('status', s.state),
            text('statusMessage', s.stateMessage),
            text('startTime', s.startTime.toISOString()),
            text('progress', s.state === 'pending' ? '0%' : '100%'),
            text('ownerId', s.accountId),
            text('volumeSize', s.volumeSizeGiB),
            text('description', s.description),
            text('encrypted', false),
            tagSetXml(s.tags),
          ),
        ),
      ),
      text('nextToken', nextToken),
    ).replace('<DescribeSnapshotsResponse>', `<DescribeSnapshotsResponse xmlns="${EC2_NS}">`);
  }

  // --- S3 (path-style REST, XML errors) and SSM's output upload ---

  function addBucket(accountId: string, name: string): void {
    const issues: { path: string[]; message: string }[] = [];
    if (!accounts.has(accountId))
      issues.push({ path: ['accountId'], message: `unknown account ${accountId}` });
    if (!BUCKET_NAME.test(name))
      issues.push({ path: ['name'], message: 'must be an S3 bucket name (3 to 63 of a-z 0-9 . -)' });
    if (buckets.has(name)) issues.push({ path: ['name'], message: `bucket ${name} already exists` });
    if (issues.length) throw new ValidationError('AwsFakeBucket', issues);
    buckets.set(name, { accountId, objects: new Map() });
  }

  /** The key SSM writes a stream of `inv` to, or undefined when the command has no output bucket. */
  function outputKey(inv: Invocation, stream: 'stdout' | 'stderr'): string | undefined {
    if (inv.outputBucket === undefined) return undefined;
    const dir = (PLUGINS[inv.documentName] as string).replace(':', '');
    const prefix = inv.outputPrefix.replace(/\/+$/, '');
    return `${prefix ? `${prefix}/` : ''}${inv.commandId}/${inv.instance.instanceId}/${dir}/0.${dir}/${stream}`;
  }

  /** What the agent uploads: each non-empty stream, in full, when the instance may write the bucket. */
  function storeOutput(inv: Invocation, stdout: string, stderr: string): void {
    const bucket = inv.outputBucket === undefined ? undefined : buckets.get(inv.outputBucket);
    // The agent writes with the instance's role: a bucket of another account refuses it.
    if (!bucket || bucket.accountId !== inv.instance.accountId) return;
    for (const [stream, content] of [
      ['stdout', stdout],
      ['stderr', stderr],
    ] as const) {
      if (content) bucket.objects.set(outputKey(inv, stream) as string, content);
    }
  }

  function outputUrl(inv: Invocation, stream: 'stdout' | 'stderr'): string {
    const key = outputKey(inv, stream);
    const bucket = inv.outputBucket === undefined ? undefined : buckets.get(inv.outputBucket);
    if (key === undefined || !bucket?.objects.has(key)) return '';
    return `https://s3.${inv.instance.region}.amazonaws.com/${inv.outputBucket}/${key}`;
  }

  async function s3Request(
    req: IncomingMessage,
    res: ServerResponse,
    body: string,
    requestId: string,
  ): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname.slice(1);
    const slash = path.indexOf('/');
    const bucketName = decodeURIComponent(slash < 0 ? path : path.slice(0, slash));
    const key = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
    const operation =
      req.method === 'GET'
        ? 'GetObject'
        : req.method === 'HEAD'
          ? 'HeadObject'
          : req.method === 'PUT'
            ? 'PutObject'
            : `S3.${req.method}`;
    const entry: AwsFakeRequest = { service: 's3', operation, status: 200 };
    requests.push(entry);
    try {
      const throttled = throttles.get(operation) ?? 0;
      if (throttled > 0) {
        throttles.set(operation, throttled - 1);
        throw new WireError(503, 'SlowDown', 'Please reduce your request rate.');
      }
      const failure = serverErrors.get(operation);
      if (failure && failure.count > 0) {
        failure.count--;
        throw new WireError(
          failure.status,
          'InternalError',
          'We encountered an internal error. Please try again.',
        );
      }
      let principal: Principal;
      try {
        principal = authenticate(req, 'ec2').principal;
      } catch (e) {
        if (!(e instanceof WireError)) throw e;
        throw e.code === 'ExpiredToken'
          ? e
          : e.code === 'MissingAuthenticationToken'
            ? new WireError(403, 'AccessDenied', 'Access Denied')
            : new WireError(
                403,
                'InvalidAccessKeyId',
                'The AWS Access Key Id you provided does not exist in our records.',
              );
      }
      entry.accountId = principal.accountId;
      if (!['GetObject', 'HeadObject', 'PutObject'].includes(operation) || !bucketName || !key) {
        throw new WireError(
          501,
          'NotImplemented',
          'The fake serves only path-style GetObject, HeadObject and PutObject.',
        );
      }
      const bucket = buckets.get(bucketName);
      if (!bucket)
        throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', {
          BucketName: bucketName,
        });
      if (bucket.accountId !== principal.accountId) throw new WireError(403, 'AccessDenied', 'Access Denied');
      if (operation === 'PutObject') {
        bucket.objects.set(key, body);
        res.writeHead(200, { 'x-amz-request-id': requestId, etag: `"${md5(body)}"` });
        res.end();
        return;
      }
      const content = bucket.objects.get(key);
      if (content === undefined)
        throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key });
      const bytes = Buffer.from(content, 'utf8');
      res.writeHead(200, {
        'x-amz-request-id': requestId,
        'content-type': 'text/plain; charset=utf-8',
        'content-length': String(bytes.length),
        etag: `"${md5(content)}"`,
        'last-modified': clock().toUTCString(),
      });
      res.end(operation === 'HeadObject' ? undefined : bytes);
    } catch (e) {
      const err =
        e instanceof WireError ? e : new WireError(500, 'InternalError', 'The fake failed; see its console');
      if (!(e instanceof WireError)) console.error('AWS fake:', e);
      entry.status = err.status;
      entry.errorCode = err.code;
      res.writeHead(err.status, { 'content-type': 'application/xml', 'x-amz-request-id': requestId });
      // HEAD answers carry no body; the SDK names the error from the status alone.
      res.end(
        req.method === 'HEAD'
          ? undefined
          : `<?xml version="1.0" encoding="UTF-8"?>\n${el(
              'Error',
              text('Code', err.code),
              text('Message', err.message),
              ...Object.entries(err instanceof S3Error ? err.extra : {}).map(([k, v]) => text(k, v)),
              text('RequestId', requestId),
            )}`,
      );
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const body = await readBody(req);
    const target = req.headers['x-amz-target'];
    if (typeof target !== 'string' && isS3Request(req)) return s3Request(req, res, body, requestId);
    let protocol: Protocol = 'json';
    let service: AwsFakeRequest['service'] = 'unknown';
    let operation = '';
    let form: URLSearchParams | undefined;
    if (typeof target === 'string') {
      const [prefix, op] = target.split('.');
      operation = op ?? '';
      service =
        prefix === 'AmazonSSM'
          ? 'ssm'
          : prefix === 'AWSEC2InstanceConnectService'
            ? 'ec2-instance-connect'
            : 'unknown';
    } else {
      form = new URLSearchParams(body);
      operation = form.get('Action') ?? '';
      if (operation === 'AssumeRole' || operation === 'GetCallerIdentity') {
        protocol = 'sts';
        service = 'sts';
      } else {
        protocol = 'ec2';
        service = 'ec2';
      }
    }
    const entry: AwsFakeRequest = { service, operation, status: 200 };
    requests.push(entry);
    try {
      const faulted = takeFault(operation, protocol, res, requestId);
      if (faulted !== undefined) {
        entry.status = res.statusCode;
        entry.errorCode = faulted;
        return;
      }
      if (service === 'unknown')
        throw new WireError(
          400,
          'UnknownOperationException',
          `Unknown operation ${String(target ?? operation)}`,
        );
      const { principal, region } = authenticate(req, protocol);
      entry.accountId = principal.accountId;
      entry.region = region;
      if (protocol === 'json') {
        let input: Record<string, unknown>;
        try {
          input = body ? (JSON.parse(body) as Record<string, unknown>) : {};
        } catch {
          throw new WireError(400, 'SerializationException', 'The request body is not valid JSON');
        }
        const out =
          service === 'ssm'
            ? ssmOperation(operation, input, principal.accountId, region)
            : await eicOperation(operation, input, principal.accountId, region);
        sendJson(res, 200, out, requestId);
      } else if (protocol === 'ec2') {
        sendXml(
          res,
          200,
          ec2Operation(operation, form as URLSearchParams, principal.accountId, region, requestId),
          requestId,
        );
      } else {
        sendXml(res, 200, stsOperation(operation, form as URLSearchParams, principal, requestId), requestId);
      }
    } catch (e) {
      const err =
        e instanceof WireError
          ? e
          : new WireError(500, 'InternalFailure', 'The fake failed; see its console');
      if (!(e instanceof WireError)) console.error('AWS fake:', e);
      entry.status = err.status;
      entry.errorCode = err.code;
      sendError(res, protocol, err, requestId);
    }
  }

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    void handle(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    accounts: options.accounts.map((a) => ({
      id: a.id,
      roleArns: (a.roles ?? []).map((r) => `arn:aws:iam::${a.id}:role/${r.name}`),
    })),
    requests,
    issuedCredentials() {
      return issued.map((c) => ({ ...c, expiresAt: new Date(c.expiresAt) }));
    },
    faults: {
      throttle(operation, count) {
        throttles.set(operation, count);
      },
      serverError(operation, count, opts = {}) {
        serverErrors.set(operation, { count, status: opts.status ?? 500, html: opts.html ?? false });
      },
      invocationNotFound(polls) {
        notFoundPolls = polls;
      },
      agentOffline(instanceId) {
        const r = record(instanceId);
        if (r.ssm) r.ssm.pingStatus = 'ConnectionLost';
      },
      agentOnline(instanceId) {
        const r = record(instanceId);
        if (!r.ssm) return;
        r.ssm.pingStatus = 'Online';
        for (const invs of commands.values()) {
          for (const inv of invs) {
            if (inv.instance !== r) continue;
            refresh(inv);
            if (inv.status === 'Pending') runOn(inv);
          }
        }
      },
      expireCredentials() {
        const past = new Date(clock().getTime() - 1);
        for (const p of principals.values()) if (p.expiresAt) p.expiresAt = past;
      },
      snapshotFails(instanceId) {
        snapshotFailures.add(record(instanceId).instanceId);
      },
    },
    snapshots() {
      return [...snapshots.values()].map(publicSnapshot);
    },
    createBucket(accountId, name) {
      addBucket(accountId, name);
    },
    bucketObjects(name) {
      const b = buckets.get(name);
      if (!b) throw new NotFoundError('AWS fake bucket', name);
      return Object.fromEntries(b.objects);
    },
    addInstance(spec: AwsFakeInstanceSpec): AwsFakeInstance {
      const issues: { path: string[]; message: string }[] = [];
      if (!accounts.has(spec.accountId))
        issues.push({ path: ['accountId'], message: `unknown account ${spec.accountId}` });
      else if (!regionsOf(spec.accountId).includes(spec.region)) {
        issues.push({
          path: ['region'],
          message: `region ${spec.region} is not enabled for account ${spec.accountId}`,
        });
      }
      const instanceId = spec.instanceId ?? `i-${hex(17).slice(0, 17)}`;
      if (!INSTANCE_ID.test(instanceId))
        issues.push({ path: ['instanceId'], message: 'must be i- and 8 to 17 hex digits' });
      if (instances.has(instanceId))
        issues.push({ path: ['instanceId'], message: `${instanceId} already exists` });
      if (issues.length) throw new ValidationError('AwsFakeInstanceSpec', issues);
      ipCounter++;
      const platform = spec.platform ?? 'linux';
      const ssmSpec = spec.ssm === false ? undefined : (spec.ssm ?? {});
      const r: InstanceRecord = {
        instanceId,
        accountId: spec.accountId,
        region: spec.region,
        tags: { ...(spec.tags ?? {}) },
        state: spec.state ?? 'running',
        privateIp: spec.privateIp ?? `10.0.${Math.floor(ipCounter / 250)}.${(ipCounter % 250) + 1}`,
        publicIp: spec.publicIp,
        platform,
        instanceType: spec.instanceType ?? 't3.micro',
        launchTime: clock(),
        ssm: ssmSpec && {
          pingStatus: ssmSpec.pingStatus ?? 'Online',
          agentVersion: ssmSpec.agentVersion ?? '3.3.1142.0',
          platformName:
            ssmSpec.platformName ??
            (platform === 'windows' ? 'Microsoft Windows Server 2022 Datacenter' : 'Ubuntu'),
          platformVersion: ssmSpec.platformVersion ?? (platform === 'windows' ? '10.0.20348' : '22.04'),
          computerName: ssmSpec.computerName ?? instanceId,
        },
        runner: spec.runner ?? options.defaultRunner,
        sshKeys: [],
        onSshPublicKey: spec.onSshPublicKey,
        volumes: (spec.volumes ?? [{}]).map((v, i) => ({
          volumeId: v.volumeId ?? `vol-${hex(17)}`,
          device: v.device ?? (i === 0 ? '/dev/xvda' : `/dev/sd${String.fromCharCode(101 + i)}`),
          sizeGiB: v.sizeGiB ?? 8,
        })),
      };
      instances.set(instanceId, r);
      return publicInstance(r);
    },
    instance(instanceId) {
      return publicInstance(record(instanceId));
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const invs of commands.values())
          for (const inv of invs) inv.abort?.abort(new Error('AWS fake closed'));
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closed;
    },
  };
}

function validateOptions(options: AwsFakeOptions, pageSize: number): void {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const keys = new Set<string>();
  const ids = new Set<string>();
  options.accounts.forEach((a, i) => {
    if (!ACCOUNT_ID.test(a.id)) issues.push({ path: ['accounts', i, 'id'], message: 'must be 12 digits' });
    if (ids.has(a.id)) issues.push({ path: ['accounts', i, 'id'], message: `duplicate account ${a.id}` });
    ids.add(a.id);
    if (!a.accessKeyId || keys.has(a.accessKeyId)) {
      issues.push({ path: ['accounts', i, 'accessKeyId'], message: 'must be non-empty and unique' });
    }
    keys.add(a.accessKeyId);
  });
  if (!options.accounts.length)
    issues.push({ path: ['accounts'], message: 'at least one account is needed' });
  if (!Number.isInteger(pageSize) || pageSize < 1)
    issues.push({ path: ['pageSize'], message: 'must be a positive integer' });
  if (issues.length) throw new ValidationError('AwsFakeOptions', issues);
}

function matchesFilter(r: InstanceRecord, name: string, values: string[]): boolean {
  if (name === 'instance-state-name') return values.includes(r.state);
  if (name === 'instance-id') return values.includes(r.instanceId);
  if (name === 'tag-key') return values.some((v) => v in r.tags);
  if (name.startsWith('tag:')) {
    const v = r.tags[name.slice(4)];
    return v !== undefined && values.includes(v);
  }
  if (name === 'platform') return r.platform === 'windows' && values.includes('windows');
  throw new WireError(400, 'InvalidParameterValue', `The filter '${name}' is invalid`);
}

const STATE_CODES: Record<InstanceRecord['state'], number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

function instanceXml(r: InstanceRecord): string {
  return el(
    'item',
    text('instanceId', r.instanceId),
    text('imageId', 'ami-0fa1ce0000000000f'),
    el('instanceState', text('code', STATE_CODES[r.state]), text('name', r.state)),
    text('privateDnsName', `ip-${r.privateIp.replaceAll('.', '-')}.${r.region}.compute.internal`),
    text('instanceType', r.instanceType),
    text('launchTime', r.launchTime.toISOString()),
    el('placement', text('availabilityZone', `${r.region}a`)),
    r.platform === 'windows' ? text('platform', 'windows') : undefined,
    text('platformDetails', r.platform === 'windows' ? 'Windows' : 'Linux/UNIX'),
    text('privateIpAddress', r.privateIp),
    text('ipAddress', r.publicIp),
    el('tagSet', ...Object.entries(r.tags).map(([k, v]) => el('item', text('key', k), text('value', v)))),
  );
}

function hex(n: number): string {
  return randomBytes(Math.ceil(n / 2))
    .toString('hex')
    .slice(0, n);
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  const pad = (x: number): string => String(x).padStart(2, '0');
  return `PT${pad(Math.floor(s / 3600))}H${pad(Math.floor((s % 3600) / 60))}M${pad(s % 60)}.${String(ms % 1000).padStart(3, '0')}S`;
}

/** The plugin of each SSM document the fake runs; S3 output goes under the plugin's name without ':'. */
const PLUGINS: Record<string, string> = {
  'AWS-RunShellScript': 'aws:runShellScript',
  'AWS-RunPowerShellScript': 'aws:runPowerShellScript',
};
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

interface SnapshotRecord extends AwsFakeSnapshot {
  description: string;
  /** `DescribeSnapshots` calls that have seen it pending. */
  describes: number;
  /** Ends in `error` (fault `snapshotFails`). */
  fails: boolean;
}

/** An S3 error, with the elements S3 adds to its `<Error>` document (`Key`, `BucketName`). */
class S3Error extends WireError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly extra: Record<string, string>,
  ) {
    super(status, code, message);
  }
}

/** S3's REST protocol: anything but a `POST /` (which the query and JSON protocols use). */
function isS3Request(req: IncomingMessage): boolean {
  return req.method !== 'POST' || new URL(req.url ?? '/', 'http://fake').pathname !== '/';
}

function matchesSnapshotFilter(s: SnapshotRecord, name: string, values: string[]): boolean {
  if (name === 'status') return values.includes(s.state);
  if (name === 'volume-id') return values.includes(s.volumeId);
  if (name === 'snapshot-id') return values.includes(s.snapshotId);
  if (name === 'owner-id') return values.includes(s.accountId);
  if (name === 'tag-key') return values.some((v) => v in s.tags);
  if (name.startsWith('tag:')) {
    const v = s.tags[name.slice(4)];
    return v !== undefined && values.includes(v);
  }
  throw new WireError(400, 'InvalidParameterValue', `The filter '${name}' is invalid`);
}

function publicSnapshot(s: SnapshotRecord): AwsFakeSnapshot {
  return {
    snapshotId: s.snapshotId,
    volumeId: s.volumeId,
    instanceId: s.instanceId,
    accountId: s.accountId,
    region: s.region,
    state: s.state,
    ...(s.stateMessage !== undefined ? { stateMessage: s.stateMessage } : {}),
    tags: { ...s.tags },
    startTime: new Date(s.startTime),
    volumeSizeGiB: s.volumeSizeGiB,
  };
}

function tagSetXml(tags: Record<string, string>): string {
  return el('tagSet', ...Object.entries(tags).map(([k, v]) => el('item', text('key', k), text('value', v))));
}

function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}
