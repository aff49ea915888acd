import { DescribeRegionsCommand, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import { type InstanceInformation, paginateDescribeInstanceInformation } from '@aws-sdk/client-ssm';
import {
  AbortedError,
  type Account,
  type AgentFacts,
  type DiscoverCapability,
  type DiscoveredServer,
  type DiscoveryRegionFailure,
  type DiscoveryResult,
  type OsFacts,
} from '@fleetward/core';
import type { AccountScope, ClientCache } from './clients.js';
import { awsError } from './errors.js';
import type { AwsAdapterConfig } from './options.js';

/** OS facts from what SSM knows of a managed instance, when its platform is recognised. */
export function osFromSsm(info: InstanceInformation | undefined): OsFacts | undefined {
  if (!info?.PlatformType) return undefined;
  const name = (info.PlatformName ?? '').toLowerCase();
  const versionId = info.PlatformVersion ?? '';
  const prettyName = `${info.PlatformName ?? ''} ${versionId}`.trim();
  if (info.PlatformType === 'Windows') return { family: 'windows', id: 'windows', versionId, prettyName };
  const known: [RegExp, OsFacts['family'], string][] = [
    [/ubuntu/, 'debian', 'ubuntu'],
    [/debian/, 'debian', 'debian'],
    [/amazon linux/, 'rhel', 'amzn'],
    [/red hat|rhel/, 'rhel', 'rhel'],
    [/centos/, 'rhel', 'centos'],
    [/rocky/, 'rhel', 'rocky'],
    [/alma/, 'rhel', 'almalinux'],
    [/fedora/, 'rhel', 'fedora'],
    [/suse|sles/, 'suse', 'sles'],
  ];
  const hit = known.find(([re]) => re.test(name));
  return hit ? { family: hit[1], id: hit[2], versionId, prettyName } : undefined;
}

const scopeOf = (account: Account): AccountScope => ({
  tenantId: account.tenantId,
  accountId: account.id,
  account,
});

/** The SSM agent of an instance as SSM reports it; `managed: false` when SSM does not list it. */
export function agentFromSsm(info: InstanceInformation | undefined): AgentFacts {
  if (!info) return { name: 'amazon-ssm-agent', managed: false };
  return {
    name: 'amazon-ssm-agent',
    managed: true,
    ...(info.PingStatus ? { status: info.PingStatus } : {}),
    ...(info.AgentVersion ? { version: info.AgentVersion } : {}),
  };
}

export function createAwsDiscover(config: AwsAdapterConfig, cache: ClientCache): DiscoverCapability {
  async function regionsOf(account: Account, signal: AbortSignal | undefined): Promise<string[]> {
    if (account.regions.length > 0) return [...account.regions];
    try {
      const out = await cache.send(scopeOf(account), config.defaultRegion, ({ ec2 }) =>
        ec2.send(new DescribeRegionsCommand({}), signal ? { abortSignal: signal } : {}),
      );
      return (out.Regions ?? []).flatMap((r) => (r.RegionName ? [r.RegionName] : []));
    } catch (error) {
      if (signal?.aborted) throw new AbortedError(`Discovery of account ${account.id} aborted`);
      throw awsError(error, 'DescribeRegions', `account ${account.id}`);
    }
  }

  async function listRegion(
    account: Account,
    region: string,
    signal?: AbortSignal,
  ): Promise<DiscoveredServer[]> {
    const scope = scopeOf(account);
    const where = `account ${account.id} region ${region}`;
    const managed = new Map<string, InstanceInformation>();
    let operation = 'DescribeInstanceInformation';
    const servers: DiscoveredServer[] = [];
    try {
      // Credentials are read (or a role assumed) here, so that their failure is the region's.
      const { ssm } = await cache.get(scope, region);
      for await (const page of paginateDescribeInstanceInformation({ client: ssm }, { MaxResults: 50 })) {
        for (const info of page.InstanceInformationList ?? []) {
          if (info.InstanceId) managed.set(info.InstanceId, info);
        }
        if (signal?.aborted) throw new AbortedError();
      }
      operation = 'DescribeInstances';
      const { ec2 } = await cache.get(scope, region);
      for await (const page of paginateDescribeInstances(
        { client: ec2 },
        { Filters: [{ Name: 'instance-state-name', Values: config.instanceStates }] },
      )) {
        for (const reservation of page.Reservations ?? []) {
          for (const instance of reservation.Instances ?? []) {
            const providerId = instance.InstanceId;
            if (!providerId) continue;
            const labels: Record<string, string> = {};
            for (const tag of instance.Tags ?? []) {
              if (tag.Key !== undefined) labels[tag.Key] = tag.Value ?? '';
            }
            const address = instance.PrivateIpAddress ?? instance.PublicIpAddress;
            const info = managed.get(providerId);
            const os = osFromSsm(info);
            servers.push({
              providerId,
              name: labels.Name || providerId,
              region,
              ...(address ? { address } : {}),
              ...(os ? { os } : {}),
              agent: agentFromSsm(info),
              labels,
            });
          }
        }
        if (signal?.aborted) throw new AbortedError();
      }
    } catch (error) {
      if (signal?.aborted || error instanceof AbortedError) {
        throw new AbortedError(`Discovery of ${where} aborted`);
      }
      throw awsError(error, operation, where);
    }
    return servers;
  }

  return {
    /**
     * Lists the EC2 instances of `account` in each of its regions (all regions from
     * `DescribeRegions` when it lists none), joined with SSM's view of their agents. A region
     * that fails is reported in `failures`; when every region fails, the first failure is thrown.
     * @throws AbortedError when `signal` fired.
     * @throws AuthorizationError / TransportError when no region could be listed.
     */
    async discover(account: Account, options: { signal?: AbortSignal } = {}): Promise<DiscoveryResult> {
      const { signal } = options;
      const regions = await regionsOf(account, signal);
      const settled = await Promise.allSettled(regions.map((region) => listRegion(account, region, signal)));
      if (signal?.aborted) throw new AbortedError(`Discovery of account ${account.id} aborted`);
      const servers: DiscoveredServer[] = [];
      const failures: DiscoveryRegionFailure[] = [];
      settled.forEach((result, i) => {
        if (result.status === 'fulfilled') servers.push(...result.value);
        else failures.push({ region: regions[i] as string, error: result.reason });
      });
      if (regions.length > 0 && failures.length === regions.length) throw failures[0]?.error;
      return { servers, failures };
    },
  };
}
