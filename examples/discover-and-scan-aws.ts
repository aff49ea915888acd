// Discovers the EC2 instances of an AWS account and scans the ones SSM manages for pending
// patches, through SSM Run Command. Uses an in-memory store: nothing is kept.
//
// Run (credentials from the SDK's default chain: AWS_PROFILE, environment, instance role):
//   AWS_REGIONS=eu-west-1,us-east-1 npx tsx --tsconfig tsconfig.json examples/discover-and-scan-aws.ts
// A customer's account through a cross-account role (the MSP pattern):
//   AWS_ROLE_ARN=arn:aws:iam::222222222222:role/fleetward AWS_EXTERNAL_ID=acme-7f3a AWS_REGIONS=eu-west-1 npx tsx ...
// FLEETWARD_AWS_ENDPOINT points the clients at another endpoint (a VPC endpoint, the testkit's fake).
import { createAwsAdapter } from '@fleetward/adapter-aws';
import { createFleet, createMemoryStore, MemorySecretStore } from '@fleetward/core';

const regions = (process.env.AWS_REGIONS ?? '')
  .split(',')
  .map((r) => r.trim())
  .filter(Boolean);
const endpoint = process.env.FLEETWARD_AWS_ENDPOINT;
const roleArn = process.env.AWS_ROLE_ARN;

const secrets = new MemorySecretStore();
const fleet = createFleet({
  store: createMemoryStore(),
  secrets,
  adapters: [createAwsAdapter(endpoint ? { endpoint } : {})],
});
try {
  await fleet.bootstrapTenant({
    tenant: { id: 'example', name: 'Example' },
    admin: { id: 'me', name: 'Me', kind: 'human', affiliation: 'employee' },
  });
  const me = fleet.as({ tenantId: 'example', principalId: 'me' });
  if (roleArn) {
    const externalId = process.env.AWS_EXTERNAL_ID;
    await secrets.set(
      'example/aws',
      JSON.stringify({ type: 'assume-role', roleArn, ...(externalId ? { externalId } : {}) }),
    );
  }
  await me.accounts.add({
    id: 'aws',
    name: 'AWS',
    provider: 'aws',
    regions, // empty: every region the account has
    ...(roleArn ? { credentialsRef: 'example/aws' } : {}),
  });

  const { accounts } = await me.inventory.discover({ accountIds: ['aws'] });
  for (const account of accounts) {
    console.log(
      `discovery: ${account.status}, ${account.added.length} added, ${account.changed.length} changed, ${account.gone.length} gone`,
    );
    if (account.error) console.error(`  ${account.error.code}: ${account.error.message}`);
    for (const { region, error } of account.regionFailures)
      console.error(`  ${region}: ${error.code} ${error.message}`);
    if (account.status === 'failed') process.exitCode = 1;
  }

  const servers = (await me.servers.list()).filter((s) => !s.goneAt);
  const reachable = servers.filter((s) => s.agent?.managed && s.agent.status === 'Online');
  for (const s of servers.filter((s) => !reachable.includes(s))) {
    console.log(
      `${s.name} (${s.providerId}): not scanned, SSM agent ${s.agent?.managed ? s.agent.status : 'absent'}`,
    );
  }
  if (reachable.length > 0) {
    const { results } = await me.scan({ serverIds: reachable.map((s) => s.id) });
    for (const result of results) {
      const server = reachable.find((s) => s.id === result.serverId);
      const label = `${server?.name} (${server?.providerId}, ${server?.region})`;
      if (result.status === 'failed') {
        console.error(`${label}: ${result.error?.code} ${result.error?.message}`);
        process.exitCode = 1;
        continue;
      }
      const security = result.patches.filter((p) => p.category === 'security');
      console.log(`${label}: ${result.patches.length} pending, ${security.length} security`);
      for (const p of security)
        console.log(`  ${p.name} ${p.installedVersion ?? '(new)'} -> ${p.candidateVersion}`);
    }
  }
} finally {
  await fleet.close();
}
