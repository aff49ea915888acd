import { randomBytes } from 'node:crypto';
import { createAwsAdapter } from '@fleetward/adapter-aws';
import {
  type Adapter,
  AuthorizationError,
  createFleet,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  type Logger,
  MemorySecretStore,
  type Server,
  TransportError,
  verifyAuditChain,
} from '@fleetward/core';
import { type AwsFake, type AwsFakeInstanceSpec, labHostRunner, startAwsFake } from '@fleetward/testkit/aws';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { dpkgVersion } from './support/fleet.js';

// Issue #14: an AWS fleet end to end. Two AWS accounts live in the wire fake; account A is reached
// with its static keys (the adapter's default credentials), account B only through a role assumed
// with an external id that sits in the Fleet's SecretStore. One instance of each account is bound
// to a lab host, so SSM Run Command really runs the OS drivers there; the back channel checks the
// hosts without trusting the adapter.

const TENANT = 'aws-lab';
const secret = (prefix: string) => `${prefix}${randomBytes(18).toString('base64url')}`;
const A = {
  id: '111111111111',
  accessKeyId: 'AKIAFLEETWARDLABAAAA',
  secretAccessKey: secret('a-secret-'),
};
const B = {
  id: '222222222222',
  accessKeyId: 'AKIAFLEETWARDLABBBBB',
  secretAccessKey: secret('b-secret-'),
  externalId: secret('b-external-'),
};
const ROLE_ARN = `arn:aws:iam::${B.id}:role/fleetward`;
const WRONG_EXTERNAL_ID = secret('wrong-external-');
const REGIONS = ['us-east-1', 'eu-west-1'];

/** Instance ids: fixed, so that expectations can name them. */
const ID = {
  deb: 'i-0a00000000000deb1',
  bare: 'i-0a0000000000000b1',
  old: 'i-0a00000000000001d',
  web: 'i-0a000000000000e01',
  rhel: 'i-0b0000000000000e1',
  tmp: 'i-0b00000000000007e',
} as const;
const serverId = (instanceId: string) => `aws-${instanceId}`;
const DEB = serverId(ID.deb);
const RHEL = serverId(ID.rhel);

/** What one run of the test leaks nowhere: collected from every channel a secret could take. */
const seen = { logs: [] as string[], events: [] as string[], errors: [] as string[] };
const stringify = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_k, v: unknown) =>
      v instanceof Error ? { ...v, name: v.name, message: v.message, cause: v.cause } : v,
    );
  } catch {
    return String(value);
  }
};
const capture = (level: string) => (fields: object | string, message?: string) => {
  seen.logs.push(stringify({ level, fields, message }));
};
const logger: Logger = {
  error: capture('error'),
  warn: capture('warn'),
  info: capture('info'),
  debug: capture('debug'),
};
/** Keeps an error (message, JSON, cause) for the leak check, and returns it. */
const keep = <T>(error: T): T => {
  seen.errors.push(error instanceof Error ? `${error.message} ${stringify(error)}` : stringify(error));
  return error;
};

let lab: Lab;
let fake: AwsFake;
let fleet: Fleet;
let adapter: Adapter;
let alice: FleetSession;
let bob: FleetSession;

/** `name=version` of every package the host's own package manager would upgrade, sorted. */
async function pendingOnHost(host: string): Promise<string[]> {
  const h = lab.host(host);
  if (h.flavour === 'debian') {
    const r = await h.exec(['apt', 'list', '--upgradable']);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout
      .split('\n')
      .flatMap((line) => {
        const m = /^([^/\s]+)\/\S+\s+(\S+)\s/.exec(line);
        return m ? [`${m[1]}=${m[2]}`] : [];
      })
      .sort();
  }
  // exit 100: updates are available.
  const r = await h.exec(['dnf', '-C', '-q', '--color=never', 'check-update']);
  expect([0, 100], r.stderr).toContain(r.exitCode);
  return r.stdout
    .split('\n')
    .flatMap((line) => {
      const m = /^(\S+)\.[^.\s]+\s+(?:\d+:)?(\S+)\s+\S+\s*$/.exec(line);
      return m ? [`${m[1]}=${m[2]}`] : [];
    })
    .sort();
}

/** `VERSION-RELEASE` of installed rpm packages, read on the host. */
async function rpmVersion(host: string, pkg: string): Promise<string> {
  return (await lab.host(host).exec(['rpm', '-q', '--qf', '%{VERSION}-%{RELEASE}', pkg])).stdout;
}

/** The installed `version-release` of a package on a lab host, from dpkg or rpm there. */
async function installedVersion(host: string, pkg: string): Promise<string> {
  return lab.host(host).flavour === 'debian' ? dpkgVersion(lab, host, pkg) : rpmVersion(host, pkg);
}

/** Scans the two lab-bound servers and checks each result against the host's package manager. */
async function scanMatchesHosts(options: { timeoutMs?: number } = {}): Promise<void> {
  const outcome = await alice.scan({ serverIds: [DEB, RHEL] }, options);
  for (const r of outcome.results) if (r.error) keep(r.error);
  const byServer = Object.fromEntries(outcome.results.map((r) => [r.serverId, r]));
  for (const [id, host] of [
    [DEB, 'deb1'],
    [RHEL, 'rhel1'],
  ] as const) {
    const result = byServer[id];
    expect(result?.status, stringify(result?.error)).toBe('succeeded');
    const scanned = result!.patches
      .filter((p) => !p.held && !p.keptBack)
      .map((p) => `${p.name}=${p.candidateVersion}`)
      .sort();
    expect(scanned, host).toEqual(await pendingOnHost(host));
  }
}

describeWithLab(
  'an AWS fleet (SSM and EC2 through the wire fake) on lab hosts',
  () => {
    beforeAll(async () => {
      vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
      vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
      lab = await startLab({
        hosts: [
          { name: 'deb1', flavour: 'debian' },
          { name: 'rhel1', flavour: 'rhel' },
        ],
      });
      fake = await startAwsFake({
        accounts: [
          { id: A.id, accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
          {
            id: B.id,
            accessKeyId: B.accessKeyId,
            secretAccessKey: B.secretAccessKey,
            roles: [{ name: 'fleetward', externalId: B.externalId }],
          },
        ],
        regions: REGIONS,
        pageSize: 1,
      });
      const instances: AwsFakeInstanceSpec[] = [
        {
          accountId: A.id,
          region: 'us-east-1',
          instanceId: ID.deb,
          tags: { Name: 'deb-a', env: 'prod', 'team:x': 'Ops Team' },
          privateIp: lab.host('deb1').address,
          ssm: { platformName: 'Debian GNU/Linux', platformVersion: '12' },
          runner: labHostRunner(lab.host('deb1')),
        },
        {
          accountId: A.id,
          region: 'us-east-1',
          instanceId: ID.bare,
          tags: { Name: 'bare-a' },
          state: 'stopped',
          ssm: false,
        },
        {
          accountId: A.id,
          region: 'us-east-1',
          instanceId: ID.old,
          tags: { Name: 'old-a' },
          state: 'terminated',
        },
        {
          accountId: A.id,
          region: 'eu-west-1',
          instanceId: ID.web,
          tags: { Name: 'web-eu', 'aws:cloudformation:stack-name': 'app' },
          privateIp: '10.0.9.9',
        },
        {
          accountId: B.id,
          region: 'us-east-1',
          instanceId: ID.rhel,
          tags: { Name: 'rhel-b', env: 'prod' },
          privateIp: lab.host('rhel1').address,
          ssm: { platformName: 'Rocky Linux', platformVersion: '9.4' },
          runner: labHostRunner(lab.host('rhel1')),
        },
        { accountId: B.id, region: 'eu-west-1', instanceId: ID.tmp, tags: { Name: 'tmp-b' } },
      ];
      for (const spec of instances) fake.addInstance(spec);

      const secrets = new MemorySecretStore();
      await secrets.set(
        'aws/b',
        JSON.stringify({ type: 'assume-role', roleArn: ROLE_ARN, externalId: B.externalId }),
      );
      await secrets.set(
        'aws/bad',
        JSON.stringify({ type: 'assume-role', roleArn: ROLE_ARN, externalId: WRONG_EXTERNAL_ID }),
      );
      adapter = createAwsAdapter({
        endpoint: fake.endpoint,
        credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
        pollIntervalMs: 50,
        maxPollIntervalMs: 400,
        maxAttempts: 4,
        snapshotPollIntervalMs: 50,
      });
      fleet = createFleet({ store: createMemoryStore(), secrets, adapters: [adapter], logger });
      const emit = fleet.events.emit.bind(fleet.events) as (name: string, ...args: unknown[]) => boolean;
      fleet.events.emit = ((name: string, ...args: unknown[]) => {
        seen.events.push(stringify({ name, args }));
        return emit(name, ...args);
      }) as typeof fleet.events.emit;

      await fleet.bootstrapTenant({
        tenant: { id: TENANT, name: 'AWS lab' },
        admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
      });
      await fleet.store.principals.create({
        tenantId: TENANT,
        id: 'bob',
        name: 'Bob',
        kind: 'human',
        affiliation: 'employee',
      });
      await fleet.store.roleBindings.create({ tenantId: TENANT, principalId: 'bob', roleId: 'tenant-admin' });
      alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
      bob = fleet.as({ tenantId: TENANT, principalId: 'bob' });
      await alice.accounts.add({ id: 'aws-a', name: 'AWS A', provider: 'aws', regions: REGIONS });
      // No regions: the adapter asks DescribeRegions, with the assumed role.
      await alice.accounts.add({ id: 'aws-b', name: 'AWS B', provider: 'aws', credentialsRef: 'aws/b' });
      await alice.accounts.add({
        id: 'aws-bad',
        name: 'AWS B, wrong external id',
        provider: 'aws',
        regions: REGIONS,
        credentialsRef: 'aws/bad',
      });
      await alice.projects.add({ id: 'aws', name: 'AWS lab hosts', selector: { ids: [DEB, RHEL] } });
    }, 180_000);
    afterAll(async () => {
      await fleet?.close();
      await fake?.close();
      await lab?.stop();
      vi.unstubAllEnvs();
    }, 120_000);

    it('discover — two accounts, two regions each: exactly the live instances, tags as labels; a terminated one goes', async () => {
      const first = await alice.inventory.discover({ accountIds: ['aws-a', 'aws-b'] });
      for (const a of first.accounts) if (a.error) keep(a.error);
      expect(
        first.accounts.map((a) => ({ id: a.accountId, status: a.status, added: [...a.added].sort() })),
      ).toEqual([
        { id: 'aws-a', status: 'succeeded', added: [ID.bare, ID.deb, ID.web].map(serverId).sort() },
        { id: 'aws-b', status: 'succeeded', added: [ID.rhel, ID.tmp].map(serverId).sort() },
      ]);
      const servers = await fleet.store.servers.listAll(TENANT);
      const view = (s: Server) => ({
        id: s.id,
        accountId: s.accountId,
        provider: s.provider,
        providerId: s.providerId,
        name: s.name,
        region: s.region,
        address: s.address,
        labels: s.labels,
      });
      expect(servers.map(view).sort((x, y) => (x.id < y.id ? -1 : 1))).toEqual(
        [
          {
            id: DEB,
            accountId: 'aws-a',
            provider: 'aws',
            providerId: ID.deb,
            name: 'deb-a',
            region: 'us-east-1',
            address: lab.host('deb1').address,
            labels: { 'tag.aws/Name': 'deb-a', 'tag.aws/env': 'prod', 'tag.aws/team-x': 'Ops-Team' },
          },
          {
            id: serverId(ID.bare),
            accountId: 'aws-a',
            provider: 'aws',
            providerId: ID.bare,
            name: 'bare-a',
            region: 'us-east-1',
            address: expect.any(String),
            labels: { 'tag.aws/Name': 'bare-a' },
          },
          {
            id: serverId(ID.web),
            accountId: 'aws-a',
            provider: 'aws',
            providerId: ID.web,
            name: 'web-eu',
            region: 'eu-west-1',
            address: '10.0.9.9',
            labels: { 'tag.aws/Name': 'web-eu', 'tag.aws/aws-cloudformation-stack-name': 'app' },
          },
          {
            id: RHEL,
            accountId: 'aws-b',
            provider: 'aws',
            providerId: ID.rhel,
            name: 'rhel-b',
            region: 'us-east-1',
            address: lab.host('rhel1').address,
            labels: { 'tag.aws/Name': 'rhel-b', 'tag.aws/env': 'prod' },
          },
          {
            id: serverId(ID.tmp),
            accountId: 'aws-b',
            provider: 'aws',
            providerId: ID.tmp,
            name: 'tmp-b',
            region: 'eu-west-1',
            address: expect.any(String),
            labels: { 'tag.aws/Name': 'tmp-b' },
          },
        ].sort((x, y) => (x.id < y.id ? -1 : 1)),
      );
      const byId = Object.fromEntries(servers.map((s) => [s.id, s]));
      expect(byId[DEB]!.os).toMatchObject({ family: 'debian', id: 'debian', versionId: '12' });
      expect(byId[RHEL]!.os).toMatchObject({ family: 'rhel', id: 'rocky', versionId: '9.4' });
      expect(byId[serverId(ID.bare)]!.os).toBeUndefined();
      // B was listed with the role's credentials, in both regions DescribeRegions named.
      const bCalls = fake.requests.filter((r) => r.accountId === B.id && r.operation === 'DescribeInstances');
      expect(new Set(bCalls.map((r) => r.region))).toEqual(new Set(REGIONS));
      expect(
        fake.issuedCredentials().some((c) => c.roleArn === ROLE_ARN && c.externalId === B.externalId),
      ).toBe(true);

      fake.instance(ID.tmp).state = 'terminated';
      const second = await alice.inventory.discover({ accountIds: ['aws-a', 'aws-b'] });
      for (const a of second.accounts) if (a.error) keep(a.error);
      expect(
        second.accounts.map((a) => ({
          id: a.accountId,
          status: a.status,
          added: a.added,
          changed: a.changed,
          gone: a.gone,
          unchanged: [...a.unchanged].sort(),
        })),
      ).toEqual([
        {
          id: 'aws-a',
          status: 'succeeded',
          added: [],
          changed: [],
          gone: [],
          unchanged: [ID.bare, ID.deb, ID.web].map(serverId).sort(),
        },
        {
          id: 'aws-b',
          status: 'succeeded',
          added: [],
          changed: [],
          gone: [serverId(ID.tmp)],
          unchanged: [RHEL],
        },
      ]);
      expect((await fleet.store.servers.require(TENANT, serverId(ID.tmp))).goneAt).toEqual(
        expect.any(String),
      );
      expect((await fleet.store.servers.require(TENANT, RHEL)).goneAt).toBeUndefined();
    }, 60_000);

    it('scan — the OS drivers run over SSM on the lab hosts: pending patches equal what apt and dnf say there', async () => {
      expect(await pendingOnHost('deb1')).toEqual(['labdemo=1.1-1', 'labtool=2.1-1']);
      expect(await pendingOnHost('rhel1')).toEqual([
        'labdemo=1.1-1',
        'labextra=1.0-1',
        'labplain=1.1-1',
        'labtool=2.1-1',
      ]);
      await scanMatchesHosts();
      const scans = await alice.latestScans({ serverIds: [DEB, RHEL] });
      expect(Object.fromEntries(scans.map((s) => [s.server.id, s.scan?.os?.packageManager]))).toEqual({
        [DEB]: 'apt',
        [RHEL]: 'dnf',
      });
      const sent = fake.requests.filter((r) => r.operation === 'SendCommand' && r.status === 200);
      expect(new Set(sent.map((r) => r.accountId))).toEqual(new Set([A.id, B.id]));
    }, 60_000);

    it('planPatchRun/executePlan — over the AWS servers, snapshots the EBS volumes before and after, installs exactly the pinned versions (checked on the hosts)', async () => {
      await alice.patch.policies.add({
        id: 'sec',
        name: 'Security',
        projectId: 'aws',
        categories: ['security'],
        backups: 'both',
        rollout: {
          waves: [],
          maxConcurrency: 2,
          errorBudget: { count: 0 },
          unreachableCountsAsError: true,
          onBudgetSpent: 'stop',
        },
      });
      const plan = await alice.patch.planPatchRun({ policyId: 'sec' });
      expect(
        Object.fromEntries(
          plan.servers.map((s) => [s.serverId, s.resolved.map((p) => `${p.name}=${p.version}`)]),
        ),
      ).toEqual({ [DEB]: ['labdemo=1.1-1'], [RHEL]: ['labdemo=1.1-1'] });
      for (const s of plan.servers) expect(s.blocked, s.serverId).toBeUndefined();
      await bob.patch.approvePlan(plan.id, { hash: plan.hash });
      const job = await bob.patch.executePlan(plan.id, { commandTimeoutMs: 60_000 });
      const tasks = await fleet.store.taskResults.list(TENANT, { where: { jobId: job.id } });
      for (const t of tasks) if (t.error) keep(t.error);
      expect(job.status, stringify(tasks.map((t) => t.error))).toBe('succeeded');
      for (const host of ['deb1', 'rhel1']) {
        expect(await installedVersion(host, 'labdemo'), host).toBe('1.1-1');
        expect(await installedVersion(host, 'labtool'), host).toBe('2.0-1');
      }
      expect(await rpmVersion('rhel1', 'labextra')).toBe('0.9-1');
      // Backups: each server's task names the snapshots the fake made of its instance's volumes,
      // tagged with the plan, completed before the run went on.
      const snapshots = fake.snapshots();
      for (const [serverId, instanceId] of [
        [DEB, ID.deb],
        [RHEL, ID.rhel],
      ] as const) {
        const details = tasks.find((t) => t.serverId === serverId)?.details as Record<string, unknown>;
        for (const phase of ['pre', 'post'] as const) {
          const ids = String(details[`${phase}SnapshotId`] ?? '').split(',');
          const made = snapshots.filter((x) => ids.includes(x.snapshotId));
          expect(made.length, `${serverId} ${phase}`).toBeGreaterThan(0);
          for (const x of made) {
            expect(x).toMatchObject({ instanceId, state: 'completed' });
            expect(x.tags['fleetward:label']).toBe(`fleetward-${plan.id}-${phase}`);
          }
        }
      }
      expect(verifyAuditChain(await fleet.store.audit.list(TENANT, { limit: 10_000 })).ok).toBe(true);
    }, 90_000);

    it('runScript — a hostile parameter reaches the script over SSM as a literal value', async () => {
      const value = `it's "quoted" $(touch /tmp/pwned-1) \`touch /tmp/pwned-2\`; touch /tmp/pwned-3 \\ $HOME\nsecond line: ünïcødé 🚀 $IFS`;
      await alice.scripts.add({
        name: 'write-param',
        interpreter: 'sh',
        body: 'printf "%s" "$X" > /tmp/fleetward-param\n',
        parameters: [{ name: 'X', type: 'string', required: true }],
      });
      const results = await alice.scripts.runScript({
        script: 'write-param',
        params: { X: value },
        targets: { serverIds: [DEB, RHEL] },
      });
      for (const s of results.servers) if (s.error) keep(s.error);
      expect(results.run.status, stringify(results.servers)).toBe('succeeded');
      for (const host of ['deb1', 'rhel1']) {
        expect(await lab.host(host).readFile('/tmp/fleetward-param'), host).toBe(value);
        const pwned = await lab.host(host).sh('ls /tmp/pwned-* 2>/dev/null; true');
        expect(pwned.stdout, host).toBe('');
      }
    }, 60_000);

    it('scan — throttled GetCommandInvocation calls and invocations that do not exist yet are survived', async () => {
      const before = fake.requests.length;
      fake.faults.throttle('GetCommandInvocation', 6);
      fake.faults.invocationNotFound(2);
      try {
        await scanMatchesHosts();
      } finally {
        fake.faults.invocationNotFound(0);
      }
      const answered = fake.requests.slice(before).filter((r) => r.operation === 'GetCommandInvocation');
      expect(answered.filter((r) => r.errorCode === 'ThrottlingException')).toHaveLength(6);
      expect(answered.filter((r) => r.errorCode === 'InvocationDoesNotExist').length).toBeGreaterThanOrEqual(
        2 * 2,
      );
    }, 60_000);

    it('scan — an offline SSM agent fails that server only, with a TransportError naming the agent, in time', async () => {
      fake.faults.agentOffline(ID.rhel);
      try {
        const started = performance.now();
        const outcome = await alice.scan({ serverIds: [DEB, RHEL] }, { timeoutMs: 20_000 });
        expect(performance.now() - started).toBeLessThan(20_000);
        const byServer = Object.fromEntries(outcome.results.map((r) => [r.serverId, r]));
        expect(byServer[DEB]?.status, stringify(byServer[DEB]?.error)).toBe('succeeded');
        expect(byServer[RHEL]).toMatchObject({ status: 'failed', error: { code: 'TRANSPORT_FAILED' } });
        keep(byServer[RHEL]!.error);
        expect(byServer[RHEL]!.error!.message).toContain(ID.rhel);
        expect(byServer[RHEL]!.error!.message).toMatch(/agent/i);

        const server = await fleet.store.servers.require(TENANT, RHEL);
        const error = await adapter.exec!.exec(server, { argv: ['true'] }, { timeoutMs: 5000 }).catch(keep);
        expect(error).toBeInstanceOf(TransportError);
        expect((error as Error).message).toContain(ID.rhel);
        expect((error as Error).message).toMatch(/agent/i);
      } finally {
        fake.faults.agentOnline(ID.rhel);
      }
    }, 60_000);

    it('credentials — no secret reaches an error, an event, an audit record or a log line', async () => {
      const refused = await alice.inventory.discover({ accountIds: ['aws-bad'] });
      expect(refused.accounts[0]).toMatchObject({ status: 'failed', error: { code: 'FORBIDDEN' } });
      keep(refused);
      const wrong = await adapter
        .discover!.discover(await fleet.store.accounts.require(TENANT, 'aws-bad'))
        .catch(keep);
      expect(wrong).toBeInstanceOf(AuthorizationError);

      const issued = fake.issuedCredentials();
      expect(issued.filter((c) => c.externalId === B.externalId).length).toBeGreaterThan(0);
      const secrets = [
        A.secretAccessKey,
        B.secretAccessKey,
        B.externalId,
        WRONG_EXTERNAL_ID,
        ...issued.flatMap((c) => [c.secretAccessKey, c.sessionToken]),
      ];
      const audit = (await fleet.store.audit.list(TENANT, { limit: 10_000 })).map(stringify);
      const channels = { ...seen, audit };
      // Each channel carried the run, so an empty one cannot pass for a clean one.
      for (const [name, lines] of Object.entries(channels)) expect(lines.length, name).toBeGreaterThan(0);
      expect(seen.logs.join('\n')).toContain(ID.rhel);
      for (const [name, lines] of Object.entries(channels)) {
        const text = lines.join('\n');
        for (const s of secrets) expect(text.includes(s), `${name} holds a secret`).toBe(false);
      }
    }, 60_000);
  },
  { flavours: ['debian', 'rhel'] },
);
