import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '@fleetward/cli';
import { openFileSecretStore } from '@fleetward/secret-store-file';
import { type AwsFake, type AwsFakeInstance, startAwsFake } from '@fleetward/testkit/aws';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCliIn } from './support/run.js';

// OWN: the operator's own AWS account, whose keys the CLI gets from its environment. CUST: a
// customer's account, reached only by assuming its role with an external id (the MSP pattern).
const OWN = {
  id: '111111111111',
  accessKeyId: 'AKIAOWNOWNOWNOWNOWN1',
  secretAccessKey: 'own-secret-never-shown',
};
const EXTERNAL_ID = 'ext-7f3a9c2b-cust';
const CUST = {
  id: '222222222222',
  accessKeyId: 'AKIACUSTCUSTCUSTCUS2',
  secretAccessKey: 'cust-secret-never-shown',
  roles: [{ name: 'fleetward', externalId: EXTERNAL_ID }],
};
const ROLE_ARN = `arn:aws:iam::${CUST.id}:role/fleetward`;

let fake: AwsFake;
let dir: string;
let env: NodeJS.ProcessEnv;
let instances: { web: AwsFakeInstance; db: AwsFakeInstance; legacy: AwsFakeInstance };

beforeAll(() => {
  // The SDK reads ~/.aws even with explicit credentials: isolate it (see the cloud fakes notes).
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/x');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/y');
});
afterAll(() => {
  vi.unstubAllEnvs();
});

beforeEach(async () => {
  fake = await startAwsFake({ accounts: [OWN, CUST] });
  instances = {
    web: fake.addInstance({ accountId: CUST.id, region: 'us-east-1', tags: { Name: 'web-1', team: 'shop' } }),
    db: fake.addInstance({
      accountId: CUST.id,
      region: 'eu-west-1',
      tags: { Name: 'db-1' },
      ssm: { pingStatus: 'ConnectionLost', agentVersion: '3.2.0.0' },
    }),
    legacy: fake.addInstance({
      accountId: CUST.id,
      region: 'eu-west-1',
      tags: { Name: 'legacy' },
      ssm: false,
    }),
  };
  dir = mkdtempSync(join(tmpdir(), 'fleetward-aws-cli-'));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ aws: { endpoint: fake.endpoint, pollIntervalMs: 20 } }));
  env = {
    HOME: dir,
    FLEETWARD_CONFIG: config,
    AWS_ACCESS_KEY_ID: OWN.accessKeyId,
    AWS_SECRET_ACCESS_KEY: OWN.secretAccessKey,
    AWS_CONFIG_FILE: '/nonexistent/x',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/y',
  };
});
afterEach(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
  runCliIn(join(dir, 'data'), args, { ...env, ...extraEnv });

const addCustomer = (externalId = EXTERNAL_ID) =>
  cli([
    'accounts',
    'add',
    'cust',
    '--provider',
    'aws',
    '--region',
    'us-east-1,eu-west-1',
    '--role-arn',
    ROLE_ARN,
    '--external-id',
    externalId,
  ]);

/** The secret store of the CLI's SQLite store, read directly (the back channel). */
async function storedSecret(ref: string): Promise<string | undefined> {
  const secrets = await openFileSecretStore({
    directory: join(dir, 'data', 'secrets'),
    key: readFileSync(join(dir, 'data', 'secrets.key')),
  });
  return secrets.get(ref);
}

describe('fleetward and an AWS fleet', () => {
  it('accounts add --role-arn --external-id — stores the role in the secret store, prints only its reference, never overwrites the credentials of a taken id; accounts remove deletes them', async () => {
    const added = await addCustomer();
    expect(added.code, added.stderr).toBe(EXIT.ok);
    expect(added.stdout).toContain('default/aws/cust');
    const shown = await cli(['accounts', 'show', 'cust']);
    expect(shown.stdout).toContain('credentials default/aws/cust');
    const json = await cli(['accounts', 'show', 'cust', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      id: 'cust',
      provider: 'aws',
      credentialsRef: 'default/aws/cust',
    });
    for (const r of [added, shown, json]) expect(r.stdout + r.stderr).not.toContain(EXTERNAL_ID);
    expect(JSON.parse((await storedSecret('default/aws/cust'))!)).toEqual({
      type: 'assume-role',
      roleArn: ROLE_ARN,
      externalId: EXTERNAL_ID,
    });
    const taken = await addCustomer('ext-other-value');
    expect(taken.code).toBe(EXIT.failure);
    expect(JSON.parse((await storedSecret('default/aws/cust'))!)).toMatchObject({ externalId: EXTERNAL_ID });
    expect((await cli(['accounts', 'remove', 'cust'])).code).toBe(EXIT.ok);
    expect(await storedSecret('default/aws/cust')).toBeUndefined();
  });

  it("discover — lists the customer's instances in both regions through the assumed role; servers list and show give region, agent and provider id", async () => {
    await addCustomer();
    const r = await cli(['discover', '-a', 'cust']);
    expect(r.code, r.stderr + r.stdout).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/ACCOUNT\s+STATUS\s+ADDED\s+CHANGED\s+GONE\s+UNCHANGED/);
    expect(r.stdout).toMatch(/cust\s+succeeded\s+3\s+0\s+0\s+0/);
    const assumed = fake.requests.filter((q) => q.operation === 'AssumeRole');
    expect(assumed.map((q) => q.status)).toEqual([200]);
    expect(fake.issuedCredentials().map((c) => c.externalId)).toEqual([EXTERNAL_ID]);
    const listedIn = new Set(
      fake.requests
        .filter((q) => q.operation === 'DescribeInstances' && q.accountId === CUST.id)
        .map((q) => q.region),
    );
    expect(listedIn).toEqual(new Set(['us-east-1', 'eu-west-1']));

    const list = await cli(['servers', 'list']);
    expect(list.code).toBe(EXIT.ok);
    const lines = list.stdout.split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+REGION\s+OS\s+AGENT\s+LAST SCAN\s+STATUS$/);
    const row = (instanceId: string) => lines.find((l) => l.startsWith(`aws-${instanceId}`)) ?? '';
    expect(row(instances.web.instanceId)).toMatch(
      /web-1\s+us-east-1\s+.*Online 3\.3\.1142\.0\s+never\s+never-scanned/,
    );
    expect(row(instances.db.instanceId)).toMatch(/db-1\s+eu-west-1\s+.*ConnectionLost 3\.2\.0\.0/);
    expect(row(instances.legacy.instanceId)).toMatch(/legacy\s+eu-west-1\s+.*not managed/);
    // The machine init added has no region or agent: dashes, in the same columns.
    expect(lines.find((l) => l.startsWith('localhost'))).toMatch(/^localhost\s+localhost\s+-\s/);

    const listJson = JSON.parse((await cli(['servers', 'list', '--json'])).stdout) as Record<
      string,
      unknown
    >[];
    expect(listJson.find((s) => s['providerId'] === instances.web.instanceId)).toMatchObject({
      id: `aws-${instances.web.instanceId}`,
      provider: 'aws',
      region: 'us-east-1',
      agent: { name: 'amazon-ssm-agent', managed: true, status: 'Online', version: '3.3.1142.0' },
      status: 'never-scanned',
    });

    const show = await cli(['servers', 'show', `aws-${instances.db.instanceId}`]);
    expect(show.stdout).toContain(`provider id ${instances.db.instanceId}`);
    expect(show.stdout).toContain('agent      amazon-ssm-agent: ConnectionLost 3.2.0.0');
    expect(show.stdout).toContain('region eu-west-1');
    expect(show.stdout).not.toContain('gone');
  });

  it('discover — an instance the account no longer has is gone: counted, and marked in servers list and show', async () => {
    await addCustomer();
    expect((await cli(['discover', '-a', 'cust'])).code).toBe(EXIT.ok);
    instances.legacy.state = 'terminated';
    const again = await cli(['discover']);
    expect(again.code, again.stdout + again.stderr).toBe(EXIT.ok);
    expect(again.stdout).toMatch(/cust\s+succeeded\s+0\s+0\s+1\s+2/);
    const id = `aws-${instances.legacy.instanceId}`;
    const list = await cli(['servers', 'list']);
    expect(list.stdout.split('\n').find((l) => l.startsWith(id))).toMatch(/gone \(never-scanned\)$/);
    const show = JSON.parse((await cli(['servers', 'show', id, '--json'])).stdout) as { goneAt?: string };
    expect(Date.parse(show.goneAt ?? '')).not.toBeNaN();
    expect((await cli(['servers', 'show', id])).stdout).toContain(`gone       since ${show.goneAt}`);
  });

  it('discover --json — prints the outcome: per account its status, the ids added, changed, gone, unchanged, and failures', async () => {
    await addCustomer();
    const r = await cli(['discover', '--json']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stderr).toBe('');
    const outcome = JSON.parse(r.stdout) as { accounts: Record<string, unknown>[] };
    const cust = outcome.accounts.find((a) => a['accountId'] === 'cust');
    expect(cust).toEqual({
      accountId: 'cust',
      status: 'succeeded',
      added: expect.arrayContaining(Object.values(instances).map((i) => `aws-${i.instanceId}`)),
      changed: [],
      gone: [],
      unchanged: [],
      unverified: [],
      regionFailures: [],
      rejected: [],
      tags: { dropped: 0, sanitized: 0 },
    });
    expect(cust?.['added']).toHaveLength(3);
    const ids = await cli(['discover', '-o', 'id']);
    expect(ids.stdout.trim().split('\n').sort()).toEqual(
      Object.values(instances)
        .map((i) => `aws-${i.instanceId}`)
        .sort(),
    );
  });

  it('discover — a wrong external id fails the account with FORBIDDEN, exits non-zero, and shows the external id nowhere', async () => {
    const wrong = 'ext-wrong-00000000';
    await addCustomer(wrong);
    const r = await cli(['discover', '-a', 'cust']);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stdout).toMatch(/cust\s+failed\s+0\s+0\s+0\s+0/);
    expect(r.stdout).toMatch(/failed cust: FORBIDDEN /);
    const json = await cli(['discover', '-a', 'cust', '--json']);
    expect(json.code).toBe(EXIT.failure);
    const cust = (JSON.parse(json.stdout) as { accounts: { status: string; error?: { code: string } }[] })
      .accounts[0];
    expect(cust).toMatchObject({ status: 'failed', error: { code: 'FORBIDDEN' } });
    for (const out of [r, json]) {
      for (const secret of [wrong, EXTERNAL_ID, OWN.secretAccessKey]) {
        expect(out.stdout + out.stderr).not.toContain(secret);
      }
    }
    expect(fake.requests.filter((q) => q.operation === 'AssumeRole').every((q) => q.status === 403)).toBe(
      true,
    );
    expect((await cli(['servers', 'list', '-o', 'id'])).stdout.trim()).toBe('localhost');
  });

  it('discover — one account failing and another succeeding exits 3 (partial); an access key read from the environment works', async () => {
    await addCustomer('ext-wrong-00000000');
    const own = await cli(
      [
        'accounts',
        'add',
        'own',
        '--provider',
        'aws',
        '--region',
        'us-east-1',
        '--access-key-id',
        OWN.accessKeyId,
        '--secret-access-key-env',
        'OWN_SECRET',
      ],
      { OWN_SECRET: OWN.secretAccessKey },
    );
    expect(own.code, own.stderr).toBe(EXIT.ok);
    expect(own.stdout + own.stderr).not.toContain(OWN.secretAccessKey);
    expect(JSON.parse((await storedSecret('default/aws/own'))!)).toEqual({
      type: 'static',
      accessKeyId: OWN.accessKeyId,
      secretAccessKey: OWN.secretAccessKey,
    });
    const mine = fake.addInstance({ accountId: OWN.id, region: 'us-east-1', tags: { Name: 'ops-1' } });
    const r = await cli(['discover', '--account', 'cust', '--account', 'own']);
    expect(r.code).toBe(EXIT.partial);
    expect(r.stdout).toMatch(/own\s+succeeded\s+1/);
    expect(r.stdout).toMatch(/cust\s+failed/);
    expect((await cli(['servers', 'list', '-o', 'id'])).stdout).toContain(`aws-${mine.instanceId}`);
  });

  it('discover — a region the account cannot list makes it partial: exit 3, the region and its code printed, the servers of the other regions added', async () => {
    await cli([
      'accounts',
      'add',
      'cust',
      '--provider',
      'aws',
      '--region',
      'us-east-1,eu-west-1,ap-south-1',
      '--role-arn',
      ROLE_ARN,
      '--external-id',
      EXTERNAL_ID,
    ]);
    const r = await cli(['discover']);
    expect(r.code).toBe(EXIT.partial);
    expect(r.stdout).toMatch(/cust\s+partial\s+3\s/);
    expect(r.stdout).toMatch(/region failed cust ap-south-1: FORBIDDEN /);
    const json = JSON.parse((await cli(['discover', '--json'])).stdout) as {
      accounts: { status: string; regionFailures: { region: string; error: { code: string } }[] }[];
    };
    expect(json.accounts[0]).toMatchObject({
      status: 'partial',
      regionFailures: [{ region: 'ap-south-1', error: { code: 'FORBIDDEN' } }],
    });
  });

  it('discover on a terminal — a progress line per account on stderr, none in a pipe', async () => {
    await addCustomer();
    const stderr: string[] = [];
    const code = await runCli(['--data-dir', join(dir, 'data'), 'discover'], {
      stdout: () => {},
      stderr: (t) => stderr.push(t),
      env: { ...env, NO_COLOR: '1' },
      isTTY: true,
    });
    expect(code).toBe(EXIT.ok);
    expect(stderr.join('')).toMatch(
      /Discovering every account…\nsucceeded\s+cust: 3 added, 0 changed, 0 gone, 0 unchanged/,
    );
    expect((await cli(['discover'])).stderr).toBe('');
  });

  it('accounts add — invalid credential flags are usage errors naming the flag, and store nothing', async () => {
    const cases: [string[], RegExp, NodeJS.ProcessEnv?][] = [
      [['--provider', 'aws', '--external-id', EXTERNAL_ID], /--external-id needs --role-arn/],
      [['--role-arn', ROLE_ARN], /--role-arn: only with --provider aws/],
      [['--provider', 'aws', '--role-arn', 'arn:aws:iam::12:role/x'], /--role-arn: must be an IAM role ARN/],
      [
        ['--provider', 'aws', '--role-arn', ROLE_ARN, '--external-id', 'x'],
        /--external-id: must be 2 to 1224/,
      ],
      [
        ['--provider', 'aws', '--role-arn', ROLE_ARN, '--credentials-ref', 'aws/x'],
        /--credentials-ref cannot be combined with --role-arn/,
      ],
      [
        ['--provider', 'aws', '--role-arn', ROLE_ARN, '--access-key-id', OWN.accessKeyId],
        /--role-arn cannot be combined with --access-key-id/,
      ],
      [
        ['--provider', 'aws', '--access-key-id', OWN.accessKeyId],
        /--access-key-id needs --secret-access-key-env/,
      ],
      [
        ['--provider', 'aws', '--access-key-id', OWN.accessKeyId, '--secret-access-key-env', 'UNSET_VAR'],
        /--secret-access-key-env: the environment variable "UNSET_VAR" is not set/,
      ],
      [
        ['--provider', 'aws', '--access-key-id', 'short', '--secret-access-key-env', 'S'],
        /--access-key-id: /,
        { S: 'a-secret-value' },
      ],
    ];
    for (const [flags, message, extra] of cases) {
      const r = await cli(['accounts', 'add', 'bad', ...flags], extra);
      expect(r.code, flags.join(' ')).toBe(EXIT.usage);
      expect(r.stderr, flags.join(' ')).toMatch(message);
      expect(r.stderr).not.toContain('a-secret-value');
    }
    const ids = (await cli(['accounts', 'list', '-o', 'id'])).stdout;
    expect(ids).not.toContain('bad');
    expect(await storedSecret('default/aws/bad')).toBeUndefined();
  });

  it('accounts add — without a usable secret store the error says how to get one, and no account is added', async () => {
    const config = join(dir, 'locked.json');
    writeFileSync(
      config,
      JSON.stringify({
        aws: { endpoint: fake.endpoint },
        secrets: { directory: join(dir, 'locked'), passphraseEnv: 'FLEETWARD_TEST_PASSPHRASE' },
      }),
    );
    await cli(['servers', 'list']);
    const r = await cli(
      ['accounts', 'add', 'cust', '--provider', 'aws', '--role-arn', ROLE_ARN, '--external-id', EXTERNAL_ID],
      { FLEETWARD_CONFIG: config },
    );
    expect(r.code).toBe(EXIT.failure);
    expect(r.stderr).toContain('secret store, whose passphrase is read from FLEETWARD_TEST_PASSPHRASE');
    expect(r.stderr).not.toContain(EXTERNAL_ID);
    expect((await cli(['accounts', 'list', '-o', 'id'])).stdout).not.toContain('cust');
  });

  it('config show — lists the aws section with the source of each value; a bad one names the field', async () => {
    const r = await cli(['config', 'show']);
    expect(r.stdout).toContain(`aws          endpoint ${fake.endpoint}  [config]`);
    expect(r.stdout).toContain('default region us-east-1  [default]');
    expect(r.stdout).toContain('poll interval 20 ms  [config]');
    const json = JSON.parse((await cli(['config', 'show', '--json'])).stdout) as { aws: unknown };
    expect(json.aws).toEqual({
      endpoint: fake.endpoint,
      defaultRegion: 'us-east-1',
      pollIntervalMs: 20,
      sources: { endpoint: 'config', defaultRegion: 'default', pollIntervalMs: 'config' },
    });
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({ aws: { endpoint: 'ftp://x', defaultRegion: 'Mars', pollIntervalMs: 0, key: 'k' } }),
    );
    const refused = await cli(['config', 'show'], { FLEETWARD_CONFIG: bad });
    expect(refused.code).toBe(EXIT.failure);
    for (const field of ['aws.endpoint', 'aws.defaultRegion', 'aws.pollIntervalMs'])
      expect(refused.stderr).toContain(field);
    expect(refused.stderr).toMatch(/key/);
  });

  it('completion — knows discover and the credential flags of accounts add', async () => {
    const r = await cli(['completion', 'bash']);
    for (const word of [
      'discover',
      '--role-arn',
      '--external-id',
      '--access-key-id',
      '--secret-access-key-env',
    ])
      expect(r.stdout).toContain(word);
  });
});
