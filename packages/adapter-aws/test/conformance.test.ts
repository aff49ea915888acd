import { EC2Client } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { createAwsAdapter } from '@fleetward/adapter-aws';
import type { Server } from '@fleetward/core';
import { describeTransportConformance } from '@fleetward/testkit';
import { startAwsFake } from '@fleetward/testkit/aws';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { afterAll, beforeAll, vi } from 'vitest';
import { localRunner } from './support/local-runner.js';

const A = { id: '111111111111', accessKeyId: 'AKIAAAAAAAAAAAAAAAAA', secretAccessKey: 'secret-a' };

beforeAll(() => {
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/aws-credentials');
});
afterAll(() => {
  vi.unstubAllEnvs();
});

describeTransportConformance('aws (SSM Run Command through the fake, local sh runner)', {
  // What SSM Run Command cannot do, by design of the service (see the README's caveats); this
  // adapter's own tests cover timeouts and cancellation through CancelCommand.
  skip: {
    'large-output': 'SSM returns at most 24,000 characters of stdout: the rest is neither counted nor hashed',
    binary: 'SSM returns output as text: bytes that are not UTF-8 do not survive',
    signals: 'SSM reports an exit code only, never the signal that ended a command',
    timeouts: 'SSM returns no output before a command ends: no partial output on a timeout',
    cancellation: 'SSM returns no output before a command ends: no partial output on an abort',
  },
  async create() {
    const fake = await startAwsFake({ accounts: [A] });
    const instance = fake.addInstance({ accountId: A.id, region: 'us-east-1', runner: localRunner });
    const adapter = createAwsAdapter({
      pollIntervalMs: 20,
      maxPollIntervalMs: 200,
      clients: (_accountId, region) => {
        const config = {
          region,
          endpoint: fake.endpoint,
          credentials: { accessKeyId: A.accessKeyId, secretAccessKey: A.secretAccessKey },
          retryStrategy: new ConfiguredRetryStrategy(4, 0),
        };
        return { ssm: new SSMClient(config), ec2: new EC2Client(config) };
      },
    });
    const server = {
      tenantId: 't1',
      id: 'srv-aws-1',
      accountId: 'acct-a',
      provider: 'aws',
      providerId: instance.instanceId,
      region: 'us-east-1',
      name: 'aws-1',
      labels: {},
    } as unknown as Server;
    return { adapter, server, cleanup: () => fake.close() };
  },
});
