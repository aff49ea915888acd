import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { type AwsFake, startAwsFake } from '@fleetward/testkit/aws';
import { afterEach, describe, expect } from 'vitest';
import { localRunner } from './support/local-runner.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../..', import.meta.url));
const OWN = { id: '111111111111', accessKeyId: 'AKIAEXAMPLEOWN000000', secretAccessKey: 'own-secret' };
const CUSTOMER = {
  id: '222222222222',
  accessKeyId: 'AKIAEXAMPLECUST00000',
  secretAccessKey: 'customer-secret',
  roles: [{ name: 'fleetward', externalId: 'acme-7f3a' }],
};

let fake: AwsFake | undefined;
afterEach(async () => {
  await fake?.close();
});

describe('examples/discover-and-scan-aws.ts', () => {
  // The managed instance's commands run on this machine, whose apt the scan reads.
  itIfAvailable(
    'discovers a customer account through its role and scans the managed instance, as its header says',
    unavailableWithout({ commands: ['apt-get', 'dpkg-query'] }),
    async () => {
      fake = await startAwsFake({ accounts: [OWN, CUSTOMER], defaultRunner: localRunner });
      const managed = fake.addInstance({
        accountId: CUSTOMER.id,
        region: 'eu-west-1',
        tags: { Name: 'web-1' },
        ssm: { platformName: 'Debian GNU/Linux', platformVersion: '12' },
      });
      const unmanaged = fake.addInstance({
        accountId: CUSTOMER.id,
        region: 'eu-west-1',
        tags: { Name: 'legacy' },
        ssm: false,
      });
      fake.addInstance({ accountId: OWN.id, region: 'eu-west-1', tags: { Name: 'not-this-account' } });
      const { stdout, stderr } = await run(
        'npx',
        ['tsx', '--tsconfig', 'tsconfig.json', 'examples/discover-and-scan-aws.ts'],
        {
          cwd: root,
          env: {
            ...process.env,
            AWS_CONFIG_FILE: '/nonexistent/aws-config',
            AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
            AWS_ACCESS_KEY_ID: OWN.accessKeyId,
            AWS_SECRET_ACCESS_KEY: OWN.secretAccessKey,
            AWS_REGIONS: 'eu-west-1',
            AWS_ROLE_ARN: `arn:aws:iam::${CUSTOMER.id}:role/fleetward`,
            AWS_EXTERNAL_ID: 'acme-7f3a',
            FLEETWARD_AWS_ENDPOINT: fake.endpoint,
          },
          timeout: 120_000,
        },
      );
      expect(stdout).toContain('discovery: succeeded, 2 added, 0 changed, 0 gone');
      expect(stdout).toMatch(
        new RegExp(`web-1 \\(${managed.instanceId}, eu-west-1\\): \\d+ pending, \\d+ security`),
      );
      expect(stdout).toContain(`legacy (${unmanaged.instanceId}): not scanned, SSM agent absent`);
      expect(stdout).not.toContain('not-this-account');
      expect(stderr).not.toMatch(/TRANSPORT|FORBIDDEN|NOT_FOUND/);
      expect(fake.requests.some((r) => r.operation === 'AssumeRole' && r.status === 200)).toBe(true);
      expect(fake.requests.some((r) => r.operation === 'SendCommand' && r.accountId === CUSTOMER.id)).toBe(
        true,
      );
    },
    120_000,
  );
});
