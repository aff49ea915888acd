import { setTimeout as sleep } from 'node:timers/promises';
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
} from '@aws-sdk/client-ssm';
import {
  AbortedError,
  type Command,
  type ExecCapability,
  type ExecOptions,
  type ExecResult,
  OutputCollector,
  type OutputSummary,
  type Server,
  TimeoutError,
  TransportError,
  ValidationError,
  validateCommand,
} from '@fleetward/core';
import type { ClientCache } from './clients.js';
import { awsCode, awsError, sanitized } from './errors.js';
import type { AwsAdapterConfig, AwsClients } from './options.js';
import { type OutputLocation, outputKey, outputLocation, readOutput } from './output.js';
import { PACK_RUN_LINES, PACK_SETUP_LINES, unpackStream } from './packed.js';
import { buildRunPowerShellScript } from './powershell.js';

/** SSM keeps at most this many characters of standard output inline (`GetCommandInvocation`). */
export const SSM_STDOUT_LIMIT = 24_000;
/** SSM keeps at most this many characters of standard error inline (`GetCommandInvocation`). */
export const SSM_STDERR_LIMIT = 8_000;

const DEFAULT_TIMEOUT_MS = 300_000;
const DEFAULT_MAX_OUTPUT_BYTES = 1_048_576;
/** `AWS-RunShellScript` accepts an `executionTimeout` of at most 48 hours. */
const MAX_EXECUTION_SECONDS = 172_800;
const INSTANCE_ID = /^(i|mi)-[0-9a-f]{8,32}$/;
const STILL_RUNNING = new Set(['Pending', 'InProgress', 'Delayed', 'Cancelling']);
const RETRY_POLL = new Set([
  'InvocationDoesNotExist',
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'InternalServerError',
  'InternalError',
  'ServiceUnavailable',
  'SyntaxError',
]);

/**
 * The constant part of every script. The values come before it as variable assignments whose
 * values hold only base64 characters, `_`, `=` and names matching `ENV_NAME_PATTERN`: nothing a
 * shell could read as syntax. Each value is decoded with `base64 -d` into an argument or an
 * exported variable; a trailing `x` keeps trailing newlines that `$(…)` would strip.
 */
const RUNNER_LINES = [
  'set -f',
  // The lists below are split on spaces, whatever IFS the agent's environment had.
  "IFS=' '",
  // Found before any env value is exported, so a PATH in `env` cannot change the decoder.
  'fw_b64=$(command -v base64)',
  ...PACK_SETUP_LINES,
  'fw_dec() { printf \'%s\' "$1" | "$fw_b64" -d; }',
  'set --',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
  'for fw_a in $fw_argv; do fw_v=$(fw_dec "${fw_a#_}"; printf x); set -- "$@" "${fw_v%x}"; done',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
  'for fw_e in $fw_env; do fw_v=$(fw_dec "${fw_e#*=}"; printf x); export "${fw_e%%=*}=${fw_v%x}"; done',
  'unset fw_e fw_a fw_v fw_argv fw_env',
  ...PACK_RUN_LINES,
] as const;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * The `commands` lines of `AWS-RunShellScript` that run `command` with its argv, env and stdin
 * exactly as given. A script command runs its interpreter with the script on standard input.
 * `sudo` adds nothing: the SSM agent runs commands as root.
 */
export function buildRunShellScript(command: Command): string[] {
  const argv = 'interpreter' in command ? command.interpreter : command.argv;
  const stdin = 'interpreter' in command ? command.script : command.stdin;
  const env = Object.entries(command.env ?? {}).map(([name, value]) => `${name}=${b64(value)}`);
  return [
    `fw_argv='${argv.map((a) => `_${b64(a)}`).join(' ')}'`,
    `fw_env='${env.join(' ')}'`,
    stdin === undefined ? 'fw_has_stdin=0' : 'fw_has_stdin=1',
    `fw_stdin='${stdin === undefined ? '' : b64(stdin)}'`,
    ...RUNNER_LINES,
  ];
}

/**
 * The summary of one stream as SSM returned it. When SSM returned as many characters as it keeps
 * inline, the stream was (probably) cut by SSM: `truncated` is true, and `bytes` and `sha256`
 * cover only what SSM returned. (With an output bucket, `exec` reads such a stream from S3
 * instead.)
 */
export function ssmOutputSummary(text: string, ssmLimit: number, maxBytes: number): OutputSummary {
  const collector = new OutputCollector(maxBytes);
  collector.push(Buffer.from(text, 'utf8'));
  const summary = collector.summary();
  return text.length >= ssmLimit ? { ...summary, truncated: true } : summary;
}

const abortReason = (signal: AbortSignal | undefined): boolean => signal?.aborted === true;

export function createAwsExec(config: AwsAdapterConfig, cache: ClientCache): ExecCapability {
  return {
    async exec(server: Server, command: Command, options: ExecOptions = {}): Promise<ExecResult> {
      validateCommand(command);
      const instanceId = server.providerId ?? '';
      if (!INSTANCE_ID.test(instanceId)) {
        throw new ValidationError('Server', [
          { path: ['providerId'], message: 'must be an EC2 or managed instance id (i-…, mi-…)' },
        ]);
      }
      const region = server.region ?? config.defaultRegion;
      const where = `${instanceId} (${region})`;
      const scope = { tenantId: server.tenantId, accountId: server.accountId };
      const windows = server.os?.family === 'windows';
      const document = windows
        ? { name: 'AWS-RunPowerShellScript', plugin: 'aws:runPowerShellScript' }
        : { name: 'AWS-RunShellScript', plugin: 'aws:runShellScript' };
      const send = <T>(op: (ssm: AwsClients['ssm']) => Promise<T>): Promise<T> =>
        cache.send(scope, region, ({ ssm }) => op(ssm));
      const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
      const userSignal = options.signal;
      const started = performance.now();
      const deadline = started + timeoutMs;
      const remaining = (): number => Math.max(0, deadline - performance.now());
      const aborted = (): AbortedError => new AbortedError(`Command on ${where} aborted`);
      const callSignal = (): AbortSignal => {
        const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(remaining())));
        return userSignal ? AbortSignal.any([userSignal, timeout]) : timeout;
      };
      if (abortReason(userSignal)) throw aborted();
      const location = outputLocation(await cache.account(scope), config);

      const beforeSend = (error: unknown, operation: string): Error => {
        if (abortReason(userSignal)) return aborted();
        if (remaining() === 0) {
          return new TransportError(`SSM ${operation} for ${where} did not answer within ${timeoutMs} ms`, {
            cause: sanitized(error),
            details: { instanceId, region, operation },
          });
        }
        return awsError(error, operation, where);
      };

      if (config.checkAgent) {
        let ping: string | undefined;
        try {
          const info = await send((ssm) =>
            ssm.send(
              new DescribeInstanceInformationCommand({
                Filters: [{ Key: 'InstanceIds', Values: [instanceId] }],
              }),
              { abortSignal: callSignal() },
            ),
          );
          const entry = info.InstanceInformationList?.find((i) => i.InstanceId === instanceId);
          ping = entry?.PingStatus ?? 'NotRegistered';
        } catch (error) {
          throw beforeSend(error, 'DescribeInstanceInformation');
        }
        if (ping !== 'Online') {
          throw new TransportError(
            ping === 'NotRegistered'
              ? `${where} is not managed by SSM: no SSM agent is registered for it`
              : `The SSM agent of ${where} is offline (PingStatus ${ping}); nothing was sent`,
            { details: { instanceId, region, pingStatus: ping } },
          );
        }
      }

      const executionSeconds = Math.min(MAX_EXECUTION_SECONDS, Math.max(1, Math.ceil(timeoutMs / 1000)));
      let commandId: string;
      try {
        const sent = await send((ssm) =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: document.name,
              InstanceIds: [instanceId],
              Parameters: {
                commands: windows ? buildRunPowerShellScript(command) : buildRunShellScript(command),
                executionTimeout: [String(executionSeconds)],
              },
              ...(location
                ? {
                    OutputS3BucketName: location.bucket,
                    ...(location.prefix ? { OutputS3KeyPrefix: location.prefix } : {}),
                  }
                : {}),
              // Delivery time-out: SSM accepts 30 s at the least.
              TimeoutSeconds: Math.max(30, executionSeconds),
              Comment: 'fleetward exec',
            }),
            // Not the caller's signal: once sent, the command must be cancelled by its id.
            { abortSignal: AbortSignal.timeout(Math.max(1, Math.ceil(remaining()))) },
          ),
        );
        commandId = sent.Command?.CommandId ?? '';
      } catch (error) {
        throw beforeSend(error, 'SendCommand');
      }
      if (!commandId) throw new TransportError(`SSM SendCommand for ${where} returned no CommandId`);

      const cancel = async (): Promise<void> => {
        try {
          await send((ssm) =>
            ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }), {
              abortSignal: AbortSignal.timeout(10_000),
            }),
          );
        } catch {
          // Best effort: the command's own executionTimeout still ends it on the instance.
        }
      };

      let interval = config.pollIntervalMs;
      let lastStatus = 'Pending';
      let out: GetCommandInvocationCommandOutput | undefined;
      for (;;) {
        try {
          await sleep(
            Math.ceil(Math.min(interval, remaining())),
            undefined,
            userSignal ? { signal: userSignal } : {},
          );
        } catch {
          // only the user's signal rejects the sleep
        }
        if (abortReason(userSignal)) {
          await cancel();
          throw aborted();
        }
        if (remaining() === 0) {
          await cancel();
          const details = { instanceId, region, commandId, status: lastStatus };
          if (lastStatus === 'Pending' || lastStatus === 'Delayed') {
            throw new TransportError(
              `The SSM agent of ${where} did not pick up the command within ${timeoutMs} ms (agent offline or delivery delayed); it was cancelled`,
              { details },
            );
          }
          throw new TimeoutError(`Command on ${where} did not end within ${timeoutMs} ms; it was cancelled`, {
            details,
          });
        }
        try {
          out = await send((ssm) =>
            ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }), {
              abortSignal: callSignal(),
            }),
          );
          interval = config.pollIntervalMs;
        } catch (error) {
          const code = awsCode(error) ?? '';
          const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (code === 'AbortError' || code === 'TimeoutError') continue; // the loop decides
          if (RETRY_POLL.has(code) || (status !== undefined && status >= 500)) {
            // Not found yet right after sending, throttled past the SDK's retries, or a 5xx: back off.
            if (code !== 'InvocationDoesNotExist')
              interval = Math.min(interval * 2, config.maxPollIntervalMs);
            continue;
          }
          throw awsError(error, 'GetCommandInvocation', where);
        }
        lastStatus = out.Status ?? 'Pending';
        if (!STILL_RUNNING.has(lastStatus)) break;
      }

      const details = {
        instanceId,
        region,
        commandId,
        status: lastStatus,
        statusDetails: out?.StatusDetails,
      };
      switch (lastStatus) {
        case 'Success':
        case 'Failed': {
          const code = out?.ResponseCode;
          if (typeof code !== 'number' || code < 0) {
            throw new TransportError(`SSM reported ${lastStatus} for ${where} without an exit code`, {
              details,
            });
          }
          const stream = (name: 'stdout' | 'stderr', inline: string, limit: number) =>
            streamSummary({
              name,
              packed: !windows,
              inline,
              limit,
              maxOutputBytes,
              location,
              key: (l) => outputKey(l, commandId, instanceId, document.plugin, name),
              read: (op) => cache.send(scope, region, ({ s3 }) => op(s3)),
              signal: userSignal,
              onOutput: options.onOutput,
            });
          const stdout = await stream('stdout', out?.StandardOutputContent ?? '', SSM_STDOUT_LIMIT);
          const stderr = await stream('stderr', out?.StandardErrorContent ?? '', SSM_STDERR_LIMIT);
          return {
            exitCode: code,
            signal: null,
            stdout,
            stderr,
            durationMs: Math.round(performance.now() - started),
          };
        }
        case 'TimedOut':
          if (out?.StatusDetails === 'DeliveryTimedOut') {
            throw new TransportError(
              `The SSM agent of ${where} never received the command (DeliveryTimedOut): the agent is offline or unreachable`,
              { details },
            );
          }
          throw new TimeoutError(
            `Command on ${where} timed out on the instance (${out?.StatusDetails ?? 'TimedOut'})`,
            {
              details,
            },
          );
        case 'Cancelled':
          throw new TransportError(`Command on ${where} was cancelled outside this call`, { details });
        default:
          throw new TransportError(
            `SSM could not run the command on ${where}: ${lastStatus}${out?.StatusDetails ? ` (${out.StatusDetails})` : ''}`,
            { details },
          );
      }
    },
  };
}

/** How long reading one stream from S3 may take once the command has ended. */
const S3_READ_TIMEOUT_MS = 60_000;

/**
 * The summary of one finished stream, passed to `onOutput` too. A stream that SSM cut inline
 * (`limit` characters) is read in full from the output bucket, if there is one, and is then
 * truncated only beyond `maxOutputBytes`. When that read fails (no object, no right, no S3
 * client, the signal) the inline text stays, `truncated: true`.
 */
async function streamSummary(s: {
  name: 'stdout' | 'stderr';
  /** The stream is packed by the shell runner (gzip, base64): see `packed.ts`. */
  packed: boolean;
  inline: string;
  limit: number;
  maxOutputBytes: number;
  location: OutputLocation | undefined;
  key: (location: OutputLocation) => string;
  read: <T>(op: (s3: AwsClients['s3']) => Promise<T>) => Promise<T>;
  signal: AbortSignal | undefined;
  onOutput: ExecOptions['onOutput'];
}): Promise<OutputSummary> {
  const location = s.location;
  if (s.inline.length >= s.limit && location) {
    const kept: Buffer[] = [];
    try {
      const summary = await s.read(async (s3) => {
        if (!s3) throw new Error('no S3 client for this account');
        kept.length = 0;
        const timeout = AbortSignal.timeout(S3_READ_TIMEOUT_MS);
        const signal = s.signal ? AbortSignal.any([s.signal, timeout]) : timeout;
        return readOutput(
          s3,
          location,
          s.key(location),
          s.maxOutputBytes,
          signal,
          s.onOutput ? kept : undefined,
          s.packed,
        );
      });
      for (const chunk of kept) s.onOutput?.(s.name, chunk);
      return summary;
    } catch {
      // The inline text is all there is; `truncated` says so.
    }
  }
  if (s.packed) {
    const { data, truncated } = unpackStream(s.inline, s.inline.length >= s.limit);
    if (data.length > 0) s.onOutput?.(s.name, data);
    const collector = new OutputCollector(s.maxOutputBytes);
    collector.push(data);
    const summary = collector.summary();
    return truncated ? { ...summary, truncated: true } : summary;
  }
  if (s.inline) s.onOutput?.(s.name, Buffer.from(s.inline, 'utf8'));
  return ssmOutputSummary(s.inline, s.limit, s.maxOutputBytes);
}
